#!/usr/bin/env python3
"""Catalogue benchmark: `validate` and `list` with a generated pack of 1,000 actions and 10,000 templates.

    .venv/bin/python bench/catalogue.py [--actions 1000] [--templates 10000] [--runs 3] [--json-only]

A pack ``cass-actions-big`` (entry point ``big``) is generated in a temporary folder: N
actions, each with a params schema of three properties, and M templates of three steps,
each step with params. It is made installed by putting that folder (the package and its
``.dist-info`` with the entry point) on ``PYTHONPATH``, beside the bundled packs of this
environment. Each figure is the median over RUNS fresh processes of the whole command,
start-up included:

* ``validate, cold``: a new, empty validation cache folder for every run;
* ``validate, warm``: the same cache folder, filled by one untimed run first;
* ``list, warm``: ``cass-actions list`` with that warm cache (what a user types most);
* ``list --json, warm``.

Wall and CPU time (user + system of the command's process) are both printed. Figures,
not assertions: nothing here fails on timing.
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
from _common import clean_env, report, run_timed, table  # noqa: E402

CATEGORIES = ["memory", "research", "reflection", "curiosity", "creative", "growth", "journal"]

PLUGIN = '''"""A generated pack for the catalogue benchmark: every action shares one no-op handler."""
import json
from importlib.resources import files

from cass_actions_core.packs import file_pack_hooks


async def noop(ctx):
    """Do nothing."""
    return {"summary": "nothing"}


_IDS = json.loads((files(__package__) / "ids.json").read_text("utf-8"))
register_actions, register_templates = file_pack_hooks(__package__, {i: noop for i in _IDS})
'''


def action(i: int) -> dict[str, Any]:
    """The i-th generated action definition."""
    llm = i % 2 == 0
    return {
        "id": f"big.action_{i:05d}", "name": f"Action {i}", "description": f"Generated action number {i}.",
        "tier": 2 if llm else 1, "category": CATEGORIES[i % len(CATEGORIES)], "uses_llm": llm,
        "estimated_cost_usd": 0.01 if llm else 0.0, "max_cost_usd": 0.05 if llm else 0.0,
        "default_duration_minutes": 2, "timeout_seconds": 60, "priority": "normal", "requires_idle": False,
        "requires_approval": False, "idempotent": True,
        "params": {"type": "object", "additionalProperties": False, "required": ["topic"], "properties": {
            "topic": {"type": "string", "minLength": 1, "maxLength": 200},
            "depth": {"type": "integer", "minimum": 1, "maximum": 5},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8}}},
    }


def template(i: int, actions: int) -> dict[str, Any]:
    """The i-th generated template: three steps, each with params."""
    steps = [{"action": f"big.action_{(i * 7 + j * 13) % actions:05d}",
              "params": {"topic": f"topic {i}-{j}", "depth": 1 + (i + j) % 5, "tags": [f"t{i % 10}"]}}
             for j in range(3)]
    return {"id": f"big_template_{i:05d}", "name": f"Template {i}", "description": f"Generated template {i}.",
            "category": CATEGORIES[i % len(CATEGORIES)], "steps": steps,
            "preferred_windows": [{"start_hour": i % 20, "end_hour": i % 20 + 3, "weight": 1.0}],
            "max_per_day": 1, "cooldown": "4h"}


def write_pack(site: Path, n_actions: int, n_templates: int) -> None:
    """Write the package and its dist-info into ``site`` (a folder to put on PYTHONPATH)."""
    pkg = site / "cass_actions_big"
    pkg.mkdir(parents=True)
    actions = [action(i) for i in range(n_actions)]
    (pkg / "__init__.py").write_text('"""Generated benchmark pack."""\n')
    (pkg / "plugin.py").write_text(PLUGIN)
    (pkg / "actions.json").write_text(json.dumps({"actions": actions}))
    (pkg / "ids.json").write_text(json.dumps([a["id"] for a in actions]))
    (pkg / "templates.json").write_text(json.dumps({"templates": [template(i, n_actions) for i in range(n_templates)]}))
    info = site / "cass_actions_big-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cass-actions-big\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[cass_actions]\nbig = cass_actions_big.plugin\n")
    (info / "RECORD").write_text("")


def main() -> None:
    """Generate the pack, time the commands, print the table and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=1000)
    parser.add_argument("--templates", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "cass_actions_core.cli.main"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        write_pack(site, args.actions, args.templates)
        base = clean_env(PYTHONPATH=str(site))

        def median(case: str, cmd: list[str], fresh_cache: bool) -> None:
            walls, cpus, code = [], [], None
            warm = str(Path(tmp) / "cache-warm")
            for n in range(args.runs):
                cache = str(Path(tmp) / f"cache-cold-{case}-{n}") if fresh_cache else warm
                env = {**base, "CASS_ACTIONS_CACHE_DIR": cache, "CASS_ACTIONS_DATA_DIR": str(Path(tmp) / "data")}
                if not fresh_cache and n == 0:
                    run_timed(cmd, env=env, check=False)  # fills the warm cache; not timed
                r = run_timed(cmd, env=env, check=False)
                walls.append(r["wall_ms"])
                cpus.append(r["cpu_ms"])
                code = r["returncode"]
                if code not in (0,):
                    raise SystemExit(f"{case}: exit {code}\n{r['stderr'][-3000:]}")
            rows.append({"case": case, "wall_ms": round(statistics.median(walls), 1),
                         "cpu_ms": round(statistics.median(cpus), 1), "runs": args.runs, "exit": code})

        median("validate, cold", [*cli, "validate"], fresh_cache=True)
        median("validate, warm", [*cli, "validate"], fresh_cache=False)
        median("list, warm", [*cli, "list"], fresh_cache=False)
        median("list --json, warm", [*cli, "list", "--json"], fresh_cache=False)
    title = (f"timed: whole commands (start-up included), median of {args.runs} fresh processes, with a generated pack of "
             f"{args.actions:,} actions and {args.templates:,} templates (3 steps each, with params) and the bundled packs")
    text = table(title, [("case", "command"), ("wall_ms", "wall ms"), ("cpu_ms", "CPU ms")], rows)
    report("catalogue", text, {"timed": "whole command wall and CPU time, start-up included", "actions": args.actions,
                               "templates": args.templates, "rows": rows}, args.json_only)


if __name__ == "__main__":
    main()
