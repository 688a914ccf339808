#!/usr/bin/env python3
"""Startup benchmark: median wall time of `cass-actions list` beside two baselines.

    .venv/bin/python bench/startup.py [--runs 9] [--json-only]

Measures, in fresh processes with the current interpreter and installed packs:
``python -c pass``, ``python -c 'import cass_actions_core'``, ``cass-actions list``,
``cass-actions list --json`` and ``cass-actions validate``. Prints a table and a JSON line.
Figures, not assertions: nothing here fails on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import cass_actions_core": [sys.executable, "-c", "import cass_actions_core"],
    "cass-actions list": [sys.executable, "-m", "cass_actions_core.cli.main", "list"],
    "cass-actions list --json": [sys.executable, "-m", "cass_actions_core.cli.main", "list", "--json"],
    "cass-actions validate": [sys.executable, "-m", "cass_actions_core.cli.main", "validate"],
}


def measure(cmd: list[str], runs: int) -> list[float]:
    """Wall times in milliseconds of ``runs`` runs after one warm-up run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
    subprocess.run(cmd, capture_output=True, env=env, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=env, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    """Run every case and print the table and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    results = {}
    for name, cmd in CASES.items():
        times = measure(cmd, args.runs)
        results[name] = {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
                         "max_ms": round(max(times), 1), "runs": args.runs}
    if not args.json_only:
        print(f"{'case':<28}{'median ms':>10}{'min':>8}{'max':>8}")
        for name, r in results.items():
            print(f"{name:<28}{r['median_ms']:>10}{r['min_ms']:>8}{r['max_ms']:>8}")
    print(json.dumps({"benchmark": "startup", "python": sys.version.split()[0], "cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
