#!/usr/bin/env python3
"""The SQL floor of dispatch: what the durable runtime's own statements cost with no Python around them.

    .venv/bin/python bench/sql_floor.py [--units 3000] [--runs 3] [--json-only]

The same set-up as ``bench/dispatch.py`` (N one-step no-op units queued in a fresh SQLite store, not
timed). Two figures per run, from one process:

- **runtime**: ``Runtime.tick()`` until every unit is terminal, as ``bench/dispatch.py`` times it, while
  every statement the store sends (text, parameters, each BEGIN and COMMIT) is recorded;
- **bare SQL**: those same statements, in the same order with the same parameters, replayed through a
  plain ``sqlite3`` connection (the same pragmas: WAL, ``synchronous=NORMAL``, foreign keys) on a copy
  of the store as it was before the first tick. No scheduler, no row objects, no JSON.

N divided by each time gives units/s; the bare figure is the most this machine could dispatch with these
statements and commits per unit, whatever the Python around them cost. The recording itself adds a
little to the runtime figure, so ``bench/dispatch.py`` is the one to quote for the runtime. Median of
RUNS runs. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report, table  # noqa: E402
from dispatch import queued_runtime  # noqa: E402


def measure(n: int) -> dict[str, Any]:
    """One run: the runtime's time for ``n`` units while recording, then the bare replay's time."""
    from cass_actions_core.store import adapters

    log: list[tuple[str, tuple[Any, ...]]] = []
    originals = adapters.SQLiteDB.execute, adapters.SQLiteDB.commit, adapters.SQLiteDB.begin

    def execute(self: Any, sql: str, params: Any = ()) -> Any:
        log.append((sql, tuple(params)))
        return originals[0](self, sql, params)

    def commit(self: Any) -> None:
        log.append(("COMMIT", ()))
        originals[1](self)

    def begin(self: Any, immediate: bool, daemon_id: str) -> None:
        log.append(("BEGIN IMMEDIATE" if immediate else "BEGIN", ()))
        originals[2](self, immediate, daemon_id)

    with tempfile.TemporaryDirectory() as tmp:
        runtime = queued_runtime(Path(tmp), n)
        runtime.store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        copy = Path(tmp) / "before.sqlite"
        shutil.copy(runtime.store.path, copy)
        adapters.SQLiteDB.execute, adapters.SQLiteDB.commit, adapters.SQLiteDB.begin = execute, commit, begin
        try:
            start = time.perf_counter()
            while asyncio.run(runtime.tick()).ran:
                pass
            ticking = time.perf_counter() - start
        finally:
            adapters.SQLiteDB.execute, adapters.SQLiteDB.commit, adapters.SQLiteDB.begin = originals
            runtime.release_lease()
            runtime.close()
        conn = sqlite3.connect(copy, isolation_level=None)
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON", "wal_autocheckpoint = 10000"):
            conn.execute(f"PRAGMA {pragma}")
        start = time.perf_counter()
        for sql, params in log:
            cursor = conn.execute(sql, params)
            if cursor.description:
                cursor.fetchall()
        bare = time.perf_counter() - start
        conn.close()
    commits = sum(1 for sql, _ in log if sql == "COMMIT")
    return {"runtime_s": ticking, "bare_s": bare, "statements": len(log), "commits": commits}


def main() -> None:
    """Measure, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    n = args.units
    runs = [measure(n) for _ in range(args.runs)]
    runtime_s = statistics.median(r["runtime_s"] for r in runs)
    bare_s = statistics.median(r["bare_s"] for r in runs)
    row = {"units": n, "statements_per_unit": round(runs[0]["statements"] / n, 1),
           "commits_per_unit": round(runs[0]["commits"] / n, 1),
           "runtime_units_per_s": round(n / runtime_s, 1), "runtime_us_per_unit": round(runtime_s / n * 1e6, 1),
           "bare_sql_units_per_s": round(n / bare_s, 1), "bare_sql_us_per_unit": round(bare_s / n * 1e6, 1),
           "sql_share_of_runtime": round(bare_s / runtime_s, 2)}
    text = table("timed: Runtime.tick() until N one-step no-op units are terminal (recording every statement), then "
                 f"the same statements replayed on a bare sqlite3 connection; median of {args.runs} runs",
                 [("units", "units"), ("statements_per_unit", "stmts/unit"), ("commits_per_unit", "commits/unit"),
                  ("runtime_units_per_s", "runtime units/s"), ("bare_sql_units_per_s", "bare SQL units/s"),
                  ("sql_share_of_runtime", "SQL share")], [row])
    report("sql_floor", text, {"timed": "Runtime.tick() while recording statements; the same statements replayed bare",
                               "runs": args.runs, "rows": [row]}, args.json_only)


if __name__ == "__main__":
    main()
