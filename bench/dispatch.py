#!/usr/bin/env python3
"""Dispatch benchmark: single-step no-op units through the durable runtime, beside APScheduler 3.

    .venv/bin/python bench/dispatch.py [--units 1000,10000] [--runs 1] [--no-peer] [--profile FILE] [--json-only]

What is timed, for cass-actions: N units of a one-step template whose handler does
nothing are queued in a fresh SQLite store (not timed), then ``Runtime.tick()`` is
called until every unit is terminal. The figure is N divided by the seconds spent in
those ticks: start-up, catalogue build and queueing are outside it. Every unit goes
through the whole durable path: claim, budget reservation, action-run row, settle,
transitions, work summary, events. The clock is virtual, so no unit waits for time.
Each size runs in its own fresh process.

What is timed, for the peer: N one-off jobs (``date`` trigger, run now) are added to
APScheduler 3's ``SQLAlchemyJobStore`` on a fresh SQLite file while the scheduler is
paused (not timed); the scheduler is then resumed and the time until the last job has
run is measured (its default thread-pool executor). APScheduler runs in its own virtual
environment, ``bench/.peers/apscheduler3``, created on first use; it is not a dependency
of the project.

Prints a table and a JSON line. Figures, not assertions: nothing here fails on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clean_env, peer_python, report, table  # noqa: E402

PEER_REQUIREMENTS = ["apscheduler>=3.10,<4", "sqlalchemy>=2,<3"]

PEER_SCRIPT = textwrap.dedent('''
    import json, sys, tempfile, threading, time, os
    from datetime import datetime, timezone
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    n = int(sys.argv[1])
    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    def noop():
        with lock:
            count[0] += 1
            if count[0] == n:
                done.set()

    with tempfile.TemporaryDirectory() as tmp:
        url = "sqlite:///" + os.path.join(tmp, "jobs.sqlite")
        sched = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)},
                                    job_defaults={"misfire_grace_time": None, "coalesce": False})
        sched.start(paused=True)
        now = datetime.now(timezone.utc)
        for i in range(n):
            sched.add_job(noop, "date", run_date=now, id=f"job-{i}")
        start = time.perf_counter()
        sched.resume()
        done.wait(600)
        elapsed = time.perf_counter() - start
        sched.shutdown(wait=True)
    print(json.dumps({"jobs": n, "ran": count[0], "seconds": elapsed}))
''')


def run_peer(python: Path, n: int) -> dict[str, Any]:
    """Seconds APScheduler 3 takes to run ``n`` one-off jobs from its SQLite job store."""
    out = subprocess.run([str(python), "-c", PEER_SCRIPT, str(n)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["ran"] != n:
        raise SystemExit(f"APScheduler ran {result['ran']} of {n} jobs")
    return result


async def _noop(ctx: Any) -> dict[str, Any]:
    return {"summary": "nothing"}


def _bench_pack() -> Any:
    from cass_actions_core import hookimpl

    class BenchPack:
        """One free, non-LLM action and a one-step template that uses it."""

        @hookimpl
        def register_actions(self, register: Any) -> None:
            register.load({"actions": [{
                "id": "bench.noop", "name": "No-op", "description": "Does nothing.", "tier": 1, "category": "memory",
                "uses_llm": False, "estimated_cost_usd": 0.0, "max_cost_usd": 0.0, "default_duration_minutes": 1,
                "timeout_seconds": 60, "priority": "normal", "requires_idle": False, "requires_approval": False,
                "idempotent": True, "params": {"type": "object", "properties": {}, "additionalProperties": False}}]})
            register.handler("bench.noop", _noop)

        @hookimpl
        def register_templates(self, register: Any) -> None:
            register.load({"templates": [{"id": "bench_noop_unit", "name": "No-op unit", "description": "One no-op step.",
                                          "category": "memory", "steps": [{"action": "bench.noop"}],
                                          "max_per_day": 100}]})

    return BenchPack()


def queued_runtime(tmp: Path, n: int) -> Any:
    """A runtime on a fresh store in ``tmp`` holding the lease, its day's bookkeeping done, with ``n``
    one-step no-op units queued (nothing timed here)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from cass_actions_core.clock import VirtualClock
    from cass_actions_core.config import Config
    from cass_actions_core.planning.plans import DayPlan
    from cass_actions_core.runtime import Runtime

    os.environ["CASS_ACTIONS_CACHE_DIR"] = str(tmp / "cache")
    clock = VirtualClock("UTC", datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("UTC")))
    runtime = Runtime(Config(timezone="UTC"), data_dir=tmp / "data", clock=clock,
                      plugins=[("bench", _bench_pack())], entry_points=False)
    runtime.acquire_lease()
    # The day's plan is empty, so only the bench's units run.
    runtime.store_plan(clock.today(), DayPlan(day=clock.today(), phases={}, source="manual",
                                              reason="benchmark: no planned work"))
    asyncio.run(runtime.tick())  # the day's phase bookkeeping happens here, outside the timing
    for _ in range(n):
        runtime.trigger("bench_noop_unit")
    return runtime


def run_ours(n: int, profile: str | None = None) -> dict[str, Any]:
    """Seconds the durable runtime spends in ``tick()`` running ``n`` queued no-op units (this process)."""
    with tempfile.TemporaryDirectory() as tmp:
        runtime = queued_runtime(Path(tmp), n)
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        ticks = 0
        start = time.perf_counter()
        while True:
            report = asyncio.run(runtime.tick())
            ticks += 1
            if not report.ran:
                break
        elapsed = time.perf_counter() - start
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        done = len(runtime.store.list_units(statuses=["completed"]))
        runtime.release_lease()
        runtime.close()
    if done != n:
        raise SystemExit(f"cass-actions completed {done} of {n} units")
    return {"units": n, "seconds": elapsed, "ticks": ticks}


def run_ours_in_child(n: int, profile: str | None) -> dict[str, Any]:
    """:func:`run_ours` in a fresh process of this interpreter."""
    cmd = [sys.executable, __file__, "--child", str(n)] + (["--profile", profile] if profile else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=clean_env())
    if out.returncode != 0:
        raise SystemExit(f"the cass-actions run of {n} units failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run both sides for every size and print the table and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", default="1000,10000", help="comma-separated unit counts")
    parser.add_argument("--runs", type=int, default=1, help="runs per size (the median is reported)")
    parser.add_argument("--no-peer", action="store_true", help="skip APScheduler")
    parser.add_argument("--profile", help="write a cProfile of the timed part (largest size) to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_ours(args.child, args.profile)))
        return
    sizes = [int(s) for s in args.units.split(",")]
    python = None if args.no_peer else peer_python("apscheduler3", PEER_REQUIREMENTS)
    rows = []
    for n in sizes:
        profile = args.profile if n == max(sizes) else None
        ours = statistics.median(run_ours_in_child(n, profile)["seconds"] for _ in range(args.runs))
        row: dict[str, Any] = {"units": n, "cass_s": round(ours, 3), "cass_units_per_s": round(n / ours, 1),
                               "cass_us_per_unit": round(ours / n * 1e6, 1)}
        if python is not None:
            peer = statistics.median(run_peer(python, n)["seconds"] for _ in range(args.runs))
            row.update(aps_s=round(peer, 3), aps_jobs_per_s=round(n / peer, 1), ratio=round(peer / ours, 2))
        rows.append(row)
    flatness = round(rows[-1]["cass_us_per_unit"] / rows[0]["cass_us_per_unit"], 2) if len(rows) > 1 else None
    title = ("timed: Runtime.tick() until N queued one-step no-op units are terminal (cass-actions); resume() until N "
             "one-off date jobs from the SQLite job store have run (APScheduler 3); ratio = cass rate / APScheduler rate")
    text = table(title, [("units", "units"), ("cass_s", "cass s"), ("cass_units_per_s", "units/s"),
                         ("cass_us_per_unit", "us/unit"), ("aps_s", "APS s"), ("aps_jobs_per_s", "APS jobs/s"),
                         ("ratio", "ratio")], rows)
    if flatness is not None:
        text += f"\nper-unit cost at {rows[-1]['units']:,} units / at {rows[0]['units']:,}: {flatness}x"
    report("dispatch", text, {"timed": "Runtime.tick() until all queued one-step no-op units are terminal",
                              "peer_timed": "APScheduler 3 resume() until all one-off jobs from SQLAlchemyJobStore(sqlite) ran",
                              "per_unit_cost_ratio_last_to_first": flatness, "rows": rows}, args.json_only)


if __name__ == "__main__":
    main()
