#!/usr/bin/env python3
"""Simulation benchmark: wall time of `cass-actions simulate` with the installed packs.

    .venv/bin/python bench/simulate.py [--days 1] [--runs 3] [--json-only]

Each run simulates DAYS days (offline provider) in a new temporary data folder and
reports the wall time, the number of units and units per second. Prints a table and a
JSON line. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def run_once(days: int) -> tuple[float, int, float]:
    """(seconds, units, USD) of one simulation in a fresh folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
    with tempfile.TemporaryDirectory() as tmp:
        env["CASS_ACTIONS_CACHE_DIR"] = os.path.join(tmp, "cache")
        cmd = [sys.executable, "-m", "cass_actions_core.cli.main", "simulate", "--json", "--days", str(days),
               "--start", "2026-11-23", "--data-dir", os.path.join(tmp, "data")]
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        elapsed = time.perf_counter() - start
    result = json.loads(out.stdout)
    return elapsed, result["units"], result["cost_usd"]


def main() -> None:
    """Run the simulations and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    runs = [run_once(args.days) for _ in range(args.runs)]
    seconds = [r[0] for r in runs]
    units = runs[0][1]
    median = statistics.median(seconds)
    figures = {"days": args.days, "runs": args.runs, "median_s": round(median, 3), "min_s": round(min(seconds), 3),
               "max_s": round(max(seconds), 3), "units": units, "units_per_s": round(units / median, 1),
               "simulated_usd": runs[0][2]}
    if not args.json_only:
        print(f"{'days':>5}{'median s':>10}{'min':>8}{'max':>8}{'units':>7}{'units/s':>9}")
        print(f"{args.days:>5}{figures['median_s']:>10}{figures['min_s']:>8}{figures['max_s']:>8}{units:>7}{figures['units_per_s']:>9}")
    print(json.dumps({"benchmark": "simulate", "python": sys.version.split()[0], "cpus": os.cpu_count(), **figures}))


if __name__ == "__main__":
    main()
