#!/usr/bin/env python3
"""Simulation benchmark: `cass-actions simulate --days N` with the bundled packs and the offline provider.

    .venv/bin/python bench/simulate.py [--days 1,30] [--runs 3] [--json-only]

Each run is one whole `cass-actions simulate --days N --start 2026-11-23` process in a
new temporary data folder (start-up, catalogue, planning and every unit included); the
figure is its wall time, the median over RUNS runs. From two lengths the script also
derives the marginal cost of one more simulated day ((t_last - t_first) / (days_last -
days_first)), which says whether the cost is linear in days. There is no units-per-second
figure here: a rate over the whole process divides by start-up time and is not a
dispatch rate (bench/dispatch.py measures that). The median time of ``python -c pass``, taken
before and after the runs, says how fast the machine was that minute. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clean_env, python_pass_ms, report, run_timed, table  # noqa: E402


def run_once(days: int) -> dict[str, Any]:
    """Wall and CPU time, units and simulated USD of one simulation in a fresh folder."""
    with tempfile.TemporaryDirectory() as tmp:
        env = clean_env(CASS_ACTIONS_CACHE_DIR=str(Path(tmp) / "cache"))
        cmd = [sys.executable, "-m", "cass_actions_core.cli.main", "simulate", "--json", "--days", str(days),
               "--start", "2026-11-23", "--data-dir", str(Path(tmp) / "data")]
        r = run_timed(cmd, env=env)
    result = json.loads(r["stdout"])
    return {"wall_s": r["wall_ms"] / 1000, "cpu_s": r["cpu_ms"] / 1000, "units": result["units"],
            "usd": result["cost_usd"]}


def main() -> None:
    """Run the simulations and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", default="1,30", help="comma-separated simulation lengths in days")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    pace_before = python_pass_ms()
    rows = []
    for days in [int(d) for d in args.days.split(",")]:
        runs = [run_once(days) for _ in range(args.runs)]
        wall = statistics.median(r["wall_s"] for r in runs)
        rows.append({"days": days, "wall_s": round(wall, 3), "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 3),
                     "min_wall_s": round(min(r["wall_s"] for r in runs), 3), "units": runs[0]["units"],
                     "s_per_day": round(wall / days, 3), "simulated_usd": runs[0]["usd"]})
    marginal = None
    if len(rows) > 1 and rows[-1]["days"] != rows[0]["days"]:
        marginal = round((rows[-1]["wall_s"] - rows[0]["wall_s"]) / (rows[-1]["days"] - rows[0]["days"]), 3)
    title = f"timed: one whole `simulate --days N` process each (start-up included), median of {args.runs} runs"
    text = table(title, [("days", "days"), ("wall_s", "wall s"), ("cpu_s", "CPU s"), ("min_wall_s", "min wall s"),
                         ("units", "units"), ("s_per_day", "s/day")], rows)
    if marginal is not None:
        text += f"\nmarginal wall time of one more simulated day: {marginal} s"
    pace = [pace_before, python_pass_ms()]
    text += f"\nmachine pace: `python -c pass` took {pace[0]} ms before the runs and {pace[1]} ms after (median of 10)"
    report("simulate", text, {"timed": "whole simulate process wall time, start-up included", "runs": args.runs,
                              "rows": rows, "marginal_s_per_day": marginal, "python_pass_ms": pace}, args.json_only)


if __name__ == "__main__":
    main()
