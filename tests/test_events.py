"""EventBus: listeners run in the background, and a stuck one never holds up shutdown."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cass_actions_core import events, hookimpl
from cass_actions_core.clock import VirtualClock
from cass_actions_core.events import EventBus
from cass_actions_core.plugins import new_plugin_manager
from cass_actions_core.store import Store, open_store

START = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)

_STUCK_LISTENER_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from datetime import UTC, datetime

    from cass_actions_core import events, hookimpl
    from cass_actions_core.clock import VirtualClock
    from cass_actions_core.events import EventBus
    from cass_actions_core.plugins import new_plugin_manager
    from cass_actions_core.store import open_store

    events.LISTENER_TIMEOUT = 0.2


    class Stuck:
        @hookimpl
        def on_event(self, event):
            time.sleep(30)  # a blocking listener that never finishes in time


    store = open_store(sys.argv[1], daemon_id="cass")
    pm = new_plugin_manager()
    pm.register(Stuck(), name="stuck")
    bus = EventBus(store, pm, VirtualClock("UTC", datetime(2026, 11, 3, 9, 0, tzinfo=UTC)))


    async def main():
        bus.emit("journal.entry_created", {"n": 1})
        await bus.drain()


    t0 = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - t0
    failed = [row.data for row in store.list_events(types=["listener.failed"])]
    store.close()
    print(json.dumps({"elapsed": elapsed, "failed": failed}))
    """
)


def test_a_stuck_blocking_listener_does_not_hang_shutdown(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(_STUCK_LISTENER_SCRIPT, "utf-8")
    t0 = time.monotonic()
    try:
        done = subprocess.run([sys.executable, str(script), str(tmp_path / "s.sqlite")],
                              capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the process waited for a timed-out on_event listener at shutdown")
    wall = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["elapsed"] < 5
    assert wall < 15  # interpreter exit did not wait for the listener thread either
    assert [(f["plugin"], f["event_type"], f["error"]) for f in report["failed"]] == [
        ("stuck", "journal.entry_created", "timed out")
    ]


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def on_event(self, event: Any) -> None:
        if event.type == "boom":
            raise ValueError("bad listener")
        self.seen.append(event.type)


def _bus(tmp_path: Path, plugin: Any) -> tuple[EventBus, Store]:
    store = open_store(tmp_path / "s.sqlite", daemon_id="cass")
    pm = new_plugin_manager()
    pm.register(plugin, name="recorder")
    return EventBus(store, pm, VirtualClock("UTC", START)), store


def test_blocking_listeners_get_events_and_their_errors_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "LISTENER_TIMEOUT", 2.0)
    recorder = _Recorder()
    bus, store = _bus(tmp_path, recorder)

    async def main() -> None:
        bus.emit("one")
        bus.emit("boom")
        bus.emit("two")
        await bus.drain()

    asyncio.run(main())
    failed = store.list_events(types=["listener.failed"])
    store.close()

    assert sorted(recorder.seen) == ["one", "two"]
    assert bus.listener_failures == [("recorder", "boom", "ValueError: bad listener")]
    (row,) = failed
    assert row.data["error"] == "ValueError: bad listener"
