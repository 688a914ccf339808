"""Helpers of the HTTP tests (imported by conftest.py and the test modules): a real uvicorn server on 127.0.0.1 (a free port, in a thread) over a runtime with a simulated morning.

The runtime is built, simulated and served in the server's own thread (its store is bound to the
thread that opened it, as in ``cass-actions serve``); the tests look at the store through their own
read-only SQLite connection. A missing dependency fails the tests with the command that installs it.
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from support import HandPack, action_def, template_def

INSTALL = "install them with `.venv/bin/pip install 'cass-actions[http]' httpx schemathesis` (or `pip install -e '.[http,test]'`)"
TOKEN = "test-token-0123456789"
DAY = "2026-11-26"
#: The server's clock stands still here: the morning was simulated, the afternoon is under way.
NOW = (2026, 11, 26, 13, 0)


def need(module: str) -> Any:
    """Import ``module`` or fail (never skip) with how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"the HTTP tests need {module!r}, which is not installed ({exc}); {INSTALL}.", pytrace=False)


def pack() -> HandPack:
    quiet = dict(tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, category="system")
    return HandPack(
        actions=[action_def("t.think", category="reflection", uses_llm=False, estimated_cost_usd=0, max_cost_usd=0),
                 action_def("t.tidy", **quiet),
                 action_def("t.build", **{**quiet, "requires_approval": True})],
        templates=[template_def("morning_notes", ["t.think", "t.tidy"], preferred_windows=[{"start_hour": 6, "end_hour": 12}]),
                   template_def("afternoon_tidy", ["t.tidy"], category="system",
                                preferred_windows=[{"start_hour": 15, "end_hour": 18}]),
                   template_def("evening_notes", ["t.think"], preferred_windows=[{"start_hour": 18, "end_hour": 22}]),
                   template_def("build", ["t.tidy", "t.build"], category="system")])


@dataclass
class Live:
    """A running server: its base URL, token, data folder and a way to read the store."""

    url: str
    token: str | None
    data_dir: Path
    runtime: Any = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def store_path(self) -> Path:
        return self.data_dir / "cass-actions.sqlite"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, *, auth: bool = True, **kwargs: Any) -> Any:
        httpx = need("httpx")
        return httpx.Client(base_url=self.url, headers=self.auth() if auth else {}, timeout=10, **kwargs)

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table of the store, read through a separate read-only connection."""
        conn = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            return {t: sorted(map(tuple, conn.execute(f'SELECT * FROM "{t}"')), key=repr) for t in tables}
        finally:
            conn.close()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True)
        try:
            return [tuple(r) for r in conn.execute(sql, params)]
        finally:
            conn.close()


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def serve(data_dir: Path, *, token: str | None, simulate: bool = True) -> Iterator[Live]:
    """Build a runtime in a new thread, simulate the morning of DAY with it (two build units parked for
    approval), and serve it with uvicorn on a free loopback port until the generator is closed."""
    uvicorn = need("uvicorn")
    need("fastapi")
    from cass_actions_core.clock import VirtualClock
    from cass_actions_core.config import Config
    from cass_actions_core.http import create_app
    from cass_actions_core.runtime import Runtime

    sock = _free_socket()
    port = sock.getsockname()[1]
    live = Live(url=f"http://127.0.0.1:{port}", token=token, data_dir=data_dir)
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        zone = ZoneInfo("UTC")
        config = Config(timezone="UTC")
        clock = VirtualClock(zone, datetime(2026, 11, 26, 6, 0, tzinfo=zone))
        runtime = Runtime(config, data_dir=data_dir, clock=clock, provider="offline",
                          plugins=[("t", pack())], entry_points=False)
        try:
            if simulate:
                runtime.acquire_lease()
                try:
                    await runtime.simulate_until(datetime(*NOW, tzinfo=zone))
                finally:
                    runtime.release_lease()
                first = await runtime.run_action("t.build")
                second = await runtime.run_action("t.build")
                live.facts.update(parked=[first.id, second.id])
            live.runtime = runtime
            app = create_app(runtime, token=token)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                                   timeout_graceful_shutdown=1))
            box["server"] = server
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            ready.set()
            await task
        finally:
            runtime.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test
            box["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    if not ready.wait(60) or "error" in box or not box.get("server") or not box["server"].started:
        raise RuntimeError(f"the test server did not start: {box.get('error')!r}")
    try:
        yield live
    finally:
        box["server"].should_exit = True
        thread.join(15)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the test server did not stop within 15 s")
        if "error" in box:
            raise box["error"]
