#!/usr/bin/env python3
"""Start-up benchmark: `cass-actions list` and friends with the installed packs, beside floors and a peer.

    .venv/bin/python bench/startup.py [--runs 9] [--no-peer] [--json-only]

Every case is a whole fresh process of this environment's interpreter (start-up
included); the figure is the median over RUNS runs of its wall time and of its CPU time
(user + system of that process). The validation cache lives in a temporary folder made
for this run (``CASS_ACTIONS_CACHE_DIR``) and is filled by one untimed run of each case
first, so the cass-actions figures are the *warm* path a user sees from the second call
on; the user's own cache folder is never touched.

Floors: ``python -c pass``; ``pluggy + entry points`` (import pluggy and enumerate the
``cass_actions`` entry points: what any pluggy host pays before it loads a plugin).
Peer: ``llm plugins`` (simonw/llm, installed in ``bench/.peers/llm`` with no plugins).

For ``list`` the script also reports which heavy modules the process imported
(anthropic, pydantic, jsonschema, rich, asyncio): none of them is needed to print the
actions of an unchanged catalogue.
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
from _common import clean_env, peer_python, report, run_timed, table  # noqa: E402

HEAVY = ["anthropic", "pydantic", "jsonschema", "rich", "asyncio", "httpx"]

FLOOR_ENTRY_POINTS = ("import pluggy; from importlib.metadata import entry_points; "
                      "[e.name for e in entry_points(group='cass_actions')]")

PROBE = ("import sys, runpy, atexit, json\n"
         "atexit.register(lambda: sys.__stderr__.write('HEAVY ' + json.dumps(sorted(m for m in {heavy!r} "
         "if m in sys.modules)) + '\\n'))\n"
         "sys.argv = ['cass-actions'] + {args!r}\n"
         "runpy.run_module('cass_actions_core.cli.main', run_name='__main__')\n")


def heavy_imports(args: list[str], env: dict[str, str]) -> list[str]:
    """Which of :data:`HEAVY` a ``cass-actions ARGS`` process imported."""
    code = PROBE.format(heavy=HEAVY, args=args)
    r = run_timed([sys.executable, "-c", code], env=env, check=False)
    for line in r["stderr"].splitlines():
        if line.startswith("HEAVY "):
            return list(json.loads(line[6:]))
    raise SystemExit(f"could not probe the imports of {args}: {r['stderr'][-1000:]}")


def main() -> None:
    """Run every case and print the table and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--no-peer", action="store_true", help="skip llm (its venv is created on first use)")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "cass_actions_core.cli.main"]
    cases: dict[str, list[str]] = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "pluggy + entry points (floor)": [sys.executable, "-c", FLOOR_ENTRY_POINTS],
        "import cass_actions_core": [sys.executable, "-c", "import cass_actions_core"],
        "cass-actions --help": [*cli, "--help"],
        "cass-actions list": [*cli, "list"],
        "cass-actions list --json": [*cli, "list", "--json"],
        "cass-actions plugins": [*cli, "plugins"],
        "cass-actions validate": [*cli, "validate"],
    }
    if not args.no_peer:
        llm_python = peer_python("llm", ["llm>=0.19,<1"])
        cases["llm plugins (peer)"] = [str(llm_python), "-m", "llm", "plugins"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = clean_env(CASS_ACTIONS_CACHE_DIR=str(Path(tmp) / "cache"), CASS_ACTIONS_DATA_DIR=str(Path(tmp) / "data"),
                        LLM_USER_PATH=str(Path(tmp) / "llm"))
        for name, cmd in cases.items():
            run_timed(cmd, env=env)  # warm-up: fills the validation cache and the OS file cache
            runs = [run_timed(cmd, env=env) for _ in range(args.runs)]
            rows.append({"case": name, "wall_ms": round(statistics.median(r["wall_ms"] for r in runs), 1),
                         "cpu_ms": round(statistics.median(r["cpu_ms"] for r in runs), 1),
                         "min_wall_ms": round(min(r["wall_ms"] for r in runs), 1)})
        imported = heavy_imports(["list"], env)
    base = rows[0]["cpu_ms"]
    for row in rows:
        row["x_python_cpu"] = round(row["cpu_ms"] / base, 1) if base else None
    title = (f"timed: whole fresh processes (start-up included), median of {args.runs}; cass-actions with a warm "
             "validation cache in a temporary folder")
    text = table(title, [("case", "case"), ("wall_ms", "wall ms"), ("cpu_ms", "CPU ms"), ("min_wall_ms", "min wall"),
                         ("x_python_cpu", "x python CPU")], rows)
    text += f"\nheavy modules imported by `cass-actions list`: {', '.join(imported) or 'none'}"
    report("startup", text, {"timed": "whole fresh processes, wall and CPU, warm cache", "runs": args.runs,
                             "rows": rows, "list_heavy_imports": imported}, args.json_only)


if __name__ == "__main__":
    main()
