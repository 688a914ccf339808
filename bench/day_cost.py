#!/usr/bin/env python3
"""Day cost over a long simulation: does a simulated day get dearer as the daemon's history grows?

    .venv/bin/python bench/day_cost.py [--days 90] [--bucket 10] [--json-only]

One ``cass-actions simulate --days N --start 2026-11-23`` (bundled packs, offline provider) in a new
temporary data folder, run in a child process that records the wall time between one day's planning
call and the next: one simulated day's work (its ticks, units, handlers, LLM calls and the next day's
planning), start-up excluded. Prints the mean per bucket of days, and the ratio of the last bucket to
the first: 1.0 is a day costing the same on day 90 as on day 1. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clean_env, report, table  # noqa: E402

CHILD = textwrap.dedent('''
    import json, sys, time
    from cass_actions_core import runtime
    from cass_actions_core.cli.main import main

    marks = []
    plan_day = runtime.Runtime.plan_day

    async def timed(self, day, **kwargs):
        marks.append(time.perf_counter())
        return await plan_day(self, day, **kwargs)

    runtime.Runtime.plan_day = timed
    sys.argv = ["cass-actions", "simulate", "--data-dir", sys.argv[1], "--days", sys.argv[2], "--start", "2026-11-23",
                "--json"]
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise
    print("DAYS " + json.dumps([b - a for a, b in zip(marks, marks[1:])]))
''')


def day_costs(days: int) -> list[float]:
    """Seconds of each simulated day after the first, from one child process."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-c", CHILD, str(Path(tmp) / "sim"), str(days)], capture_output=True,
                              text=True, check=True, env=clean_env())
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("DAYS "))
    return [float(x) for x in json.loads(line[5:])]


def main() -> None:
    """Measure, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--bucket", type=int, default=10)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    costs = day_costs(args.days)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(costs), args.bucket):
        chunk = costs[start:start + args.bucket]
        rows.append({"days": f"{start + 1}-{start + len(chunk)}", "ms_per_day": round(1000 * sum(chunk) / len(chunk), 1)})
    ratio = round(rows[-1]["ms_per_day"] / rows[0]["ms_per_day"], 2) if rows else None
    text = table(f"timed: wall time between one simulated day's planning call and the next, in one simulate --days "
                 f"{args.days} process (start-up excluded); last bucket / first: {ratio}x",
                 [("days", "days"), ("ms_per_day", "ms per day")], rows)
    report("day_cost", text, {"timed": "wall time between consecutive planning calls of one simulate process",
                              "days": args.days, "rows": rows, "last_to_first": ratio}, args.json_only)


if __name__ == "__main__":
    main()
