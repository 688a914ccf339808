#!/usr/bin/env python3
"""Fleet benchmark: units per second with 1, 2 and 4 `cass-actions worker` processes on PostgreSQL, beside
one `cass-actions run` process on SQLite.

    .venv/bin/python bench/fleet.py [--daemons 8] [--units 100] [--workers 1,2,4] [--json-only]

What is timed: single-step no-op units (a pack installed in a temporary folder, the handler does
nothing) through the whole durable path of real processes: claim (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), reservation, action-run row, settle, transitions, summary, events, lease fencing.

* PostgreSQL, W workers: D daemons are registered (``daemons add``) in a fresh schema and each gets N
  units queued with ``trigger`` (not timed); then W worker processes start (``worker --all``) and share
  the daemons out. The figure is D×N divided by the time from the first unit's start to the last
  unit's end, read from the store's own timestamps: process start-up, pack loading and lease
  balancing before the first unit are outside it.
* SQLite, 1 process: one daemon (an SQLite file holds one) gets the same D×N units, and one
  ``cass-actions run`` process runs them; the same first-start-to-last-end window is timed.

The server is ``$CASS_ACTIONS_TEST_PG_URL``, else a private one started from the machine's PostgreSQL
binaries (tests/pg_server.py, fsync off: the figures say nothing about disk sync). Every daemon runs one
unit at a time (``max_concurrent_units = 1``), so the workers' parallelism is across daemons.
Prints a table and a JSON line. Figures, not assertions: nothing here fails on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _common import clean_env, report, table  # noqa: E402

PACK = '''
from pathlib import Path
from cass_actions_core import hookimpl

HERE = Path(__file__).resolve().parent

async def noop(ctx):
    return {"summary": "nothing"}

@hookimpl
def register_actions(register):
    register.load(HERE / "benchfleet_actions.json")
    register.handler("benchfleet.noop", noop)

@hookimpl
def register_templates(register):
    register.load(HERE / "benchfleet_templates.json")
'''


def write_pack(site: Path) -> None:
    """The no-op pack as an installed distribution in ``site`` (entry point ``benchfleet``)."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "benchfleet.py").write_text(PACK)
    (site / "benchfleet_actions.json").write_text(json.dumps({"actions": [{
        "id": "benchfleet.noop", "name": "No-op", "description": "Does nothing.", "tier": 1, "category": "system",
        "uses_llm": False, "estimated_cost_usd": 0, "max_cost_usd": 0, "default_duration_minutes": 1,
        "timeout_seconds": 60, "priority": "normal", "requires_idle": False, "requires_approval": False,
        "idempotent": True, "params": {"type": "object"}}]}))
    (site / "benchfleet_templates.json").write_text(json.dumps({"templates": [{
        "id": "noop_unit", "name": "No-op unit", "description": "One no-op step.", "category": "system",
        "steps": [{"action": "benchfleet.noop"}]}]}))
    info = site / "cass_actions_benchfleet-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cass-actions-benchfleet\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[cass_actions]\nbenchfleet = benchfleet\n")


def config_text(daemon_id: str, url: str | None) -> str:
    store = f'[store]\nurl = "{url}"\n' if url else ""
    return (f'daemon_id = "{daemon_id}"\ntimezone = "UTC"\n{store}[plugins]\nload = ["benchfleet"]\n'
            '[planner]\nenabled = false\n[llm]\nprovider = "offline"\n'
            "[scheduler]\nlease_ttl_seconds = 3\ntick_seconds = 1\n")


def queue_units(config: Path, data_dir: Path, site: Path, n: int) -> None:
    """Queue ``n`` no-op units for the config's daemon (in this process, with the pack importable)."""
    from cass_actions_core.config import load_config
    from cass_actions_core.runtime import Runtime

    runtime = Runtime(load_config(config, env={}), data_dir=data_dir)
    try:
        with runtime.store.transaction():
            for _ in range(n):
                runtime.trigger("noop_unit")
    finally:
        runtime.close()


def window(url: Any, daemons: list[str]) -> tuple[int, float]:
    """Units completed, and seconds from the first unit's start to the last unit's end (store timestamps)."""
    from cass_actions_core.store import open_store

    starts, ends, done = [], [], 0
    for daemon_id in daemons:
        with open_store(url, daemon_id) as store:
            for unit in store.list_units(template_id="noop_unit"):
                if unit.status == "completed":
                    done += 1
                    starts.append(unit.started_at)
                    ends.append(unit.finished_at)
    return done, (max(ends) - min(starts)).total_seconds() if starts else float("nan")


def wait_done(url: Any, daemons: list[str], total: int, procs: list[subprocess.Popen[bytes]]) -> None:
    from cass_actions_core.store import open_store

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        left = 0
        for daemon_id in daemons:
            with open_store(url, daemon_id) as store:
                left += len(store.list_units(template_id="noop_unit", statuses=["queued", "running"]))
        if left == 0:
            return
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a worker process exited early")
        time.sleep(0.5)
    raise SystemExit(f"units still queued after 15 minutes ({total} in all)")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


def run_postgres(base_url: str, workers: int, daemons: int, units: int, site: Path, tmp: Path) -> dict[str, Any]:
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}"
    root = tmp / f"pg{workers}"
    env = clean_env(PYTHONPATH=str(site), CASS_ACTIONS_DATA_DIR=str(root / "cli"))
    cli = [sys.executable, "-m", "cass_actions_core.cli.main"]
    ids = [f"b{i:02d}" for i in range(daemons)]
    try:
        for daemon_id in ids:
            toml = root / f"{daemon_id}.toml"
            root.mkdir(parents=True, exist_ok=True)
            toml.write_text(config_text(daemon_id, url))
            added = subprocess.run([*cli, "daemons", "add", daemon_id, "--config", str(toml), "--workspace",
                                    str(root / "ws" / daemon_id)], env=env, capture_output=True, text=True)
            if added.returncode != 0:
                raise SystemExit(f"daemons add {daemon_id} failed: {added.stderr}")
            queue_units(toml, root / "q" / daemon_id, site, units)
        worker_toml = root / "worker.toml"
        worker_toml.write_text(config_text("worker", url))
        procs = [subprocess.Popen([*cli, "worker", "--all", "--config", str(worker_toml)],
                                  env={**env, "CASS_ACTIONS_DATA_DIR": str(root / f"w{n}")},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in range(workers)]
        try:
            wait_done(url, ids, daemons * units, procs)
        finally:
            stop(procs)
        done, seconds = window(url, ids)
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    return {"store": "postgresql", "processes": workers, "daemons": daemons, "units": done, "seconds": seconds,
            "units_per_s": done / seconds}


def run_sqlite(daemons: int, units: int, site: Path, tmp: Path) -> dict[str, Any]:
    root = tmp / "sqlite"
    data = root / "data"
    data.mkdir(parents=True)
    toml = root / "cass.toml"
    toml.write_text(config_text("cass", None))
    queue_units(toml, data, site, daemons * units)
    env = clean_env(PYTHONPATH=str(site), CASS_ACTIONS_DATA_DIR=str(data))
    proc = subprocess.Popen([sys.executable, "-m", "cass_actions_core.cli.main", "run", "--config", str(toml)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = data / "cass-actions.sqlite"
    try:
        wait_done(path, ["cass"], daemons * units, [proc])
    finally:
        stop([proc])
    done, seconds = window(path, ["cass"])
    return {"store": "sqlite", "processes": 1, "daemons": 1, "units": done, "seconds": seconds,
            "units_per_s": done / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--daemons", type=int, default=8, help="daemons in the fleet (default 8)")
    parser.add_argument("--units", type=int, default=100, help="units queued per daemon (default 100)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to run (default 1,2,4)")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    server = None
    base_url = os.environ.get("CASS_ACTIONS_TEST_PG_URL")
    tmp = Path(tempfile.mkdtemp(prefix="cass-bench-fleet-"))
    site = tmp / "site"
    write_pack(site)
    sys.path.insert(0, str(site))
    if not base_url:
        import pg_server

        pg_bin = pg_server.find_bin()
        if pg_bin is None:
            raise SystemExit("no PostgreSQL: set CASS_ACTIONS_TEST_PG_URL or install PostgreSQL's server binaries")
        server = pg_server.start(pg_bin)
        base_url = server.url
    rows = []
    try:
        for w in workers:
            rows.append(run_postgres(base_url, w, args.daemons, args.units, site, tmp))
        rows.append(run_sqlite(args.daemons, args.units, site, tmp))
    finally:
        if server is not None:
            server.stop()
    timed = ("units completed / seconds from the first unit's start to the last unit's end (store timestamps); "
             "single-step no-op units, queued before the processes start; start-up and balancing not timed")
    text = table(f"fleet: {args.daemons} daemons x {args.units} no-op units on PostgreSQL (workers), the same "
                 f"{args.daemons * args.units} units in one SQLite daemon (run); {datetime.now():%Y-%m-%d}\n"
                 f"timed: {timed}",
                 [("store", "store"), ("processes", "processes"), ("daemons", "daemons"), ("units", "units"),
                  ("seconds", "seconds"), ("units_per_s", "units/s")], rows)
    report("fleet", text, {"timed": timed, "results": rows}, json_only=args.json_only)


if __name__ == "__main__":
    main()
