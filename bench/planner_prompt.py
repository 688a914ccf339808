#!/usr/bin/env python3
"""Planner benchmark: planning-prompt size and cost per planned day against catalogue size.

    .venv/bin/python bench/planner_prompt.py [--sizes 10,100,1000,10000] [--repeat 3] [--json]

For each size N it registers, in-process, a hand-made pack with a handful of actions and
N generated templates (several budget categories, varied windows, descriptions, tags,
priorities, optional steps), builds a ``Runtime`` on a virtual clock in a temporary
folder (offline provider, no installed packs), and

- times the catalogue build (``Runtime(...)``) and ``runtime.plan_dry_run(day)``;
- reads the candidates, the offered top-K and the prompt's token estimate (UTF-8 bytes / 3,
  system prompt, day message and output schema included) against ``PROMPT_TOKEN_BOUND``;
- runs ``plan_day`` once with the offline provider to measure the size of a real plan reply;
- prices one planned day at the default model (``llm.model``) with ``price_table()``:
  *worst case* = the estimate at the input price + ``planner.max_tokens`` at the output price;
  *typical* = the estimate at the input price + the offline reply's output tokens at the output price.

Prints a table, then the same figures as JSON (``--json``: the JSON only). Figures, not
assertions: nothing here fails on timing or cost. Standard library and this package only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cass_actions_core import hookimpl
from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import Config
from cass_actions_core.llm.prices import price_table
from cass_actions_core.planning.prompt import PROMPT_TOKEN_BOUND
from cass_actions_core.runtime import Runtime

TARGET_USD = 0.002
TZ = "Europe/London"
DAY = date(2026, 11, 26)  # a Thursday
SEED = 20261126

#: The bench pack's actions: (id, category, uses_llm, estimated USD, minutes).
ACTIONS = [
    ("bench.reflect", "reflection", True, 0.004, 6),
    ("bench.research", "research", True, 0.008, 12),
    ("bench.write", "creative", True, 0.006, 10),
    ("bench.recall", "memory", True, 0.003, 4),
    ("bench.note", "journal", True, 0.002, 3),
    ("bench.explore", "curiosity", True, 0.005, 8),
    ("bench.tidy", "system", False, 0.0, 2),
]
CATEGORIES = ["reflection", "growth", "curiosity", "research", "creative", "journal", "memory"]
MAIN_ACTION = {"reflection": "bench.reflect", "growth": "bench.reflect", "curiosity": "bench.explore",
               "research": "bench.research", "creative": "bench.write", "journal": "bench.note", "memory": "bench.recall"}
TAGS = ["growth", "curiosity", "research", "creative", "writing", "reflection", "memory", "social", "exploration",
        "maintenance", "journal", "knowledge", "rest", "building"]
VERBS = ["Review", "Summarise", "Explore", "Draft", "Revisit", "Question", "Map", "Collect", "Compare", "Sketch"]
OBJECTS = ["recent conversations", "open questions about memory", "the reading list", "yesterday's notes",
           "a half-finished essay", "the self model", "patterns in the feed", "unanswered user requests",
           "the growth plan", "ideas for a short story", "sources on attention", "the week's journal entries"]
TAILS = ["and write down what changed.", "then pick one thread to follow tomorrow.", "with a short list of next steps.",
         "looking for contradictions and gaps.", "and link it to earlier insights, keeping it to a page.",
         "in plain words, without inventing facts, and note what remains unclear for a later session."]


async def _ok(ctx: Any) -> dict[str, Any]:
    return {"summary": f"ran {ctx.action_id}"}


def action_defs() -> list[dict[str, Any]]:
    """The bench pack's action definitions."""
    return [{
        "id": aid, "name": aid.split(".")[1].title(), "description": f"Bench action {aid}.", "tier": 2 if llm else 1,
        "category": category, "uses_llm": llm, "estimated_cost_usd": cost, "max_cost_usd": max(cost * 4, 0.0),
        "default_duration_minutes": minutes, "timeout_seconds": 120, "priority": "normal", "requires_idle": False,
        "requires_approval": False, "idempotent": True,
        "params": {"type": "object", "additionalProperties": False, "properties": {}},
    } for aid, category, llm, cost, minutes in ACTIONS]


def template_defs(n: int, seed: int = SEED) -> list[dict[str, Any]]:
    """``n`` varied templates over the categories (deterministic for a seed)."""
    rng = random.Random(seed + n)
    out = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        steps: list[dict[str, Any]] = [{"action": MAIN_ACTION[category]}]
        if rng.random() < 0.4:
            steps.append({"action": rng.choice(["bench.note", "bench.recall"]), "optional": rng.random() < 0.6})
        if rng.random() < 0.5:
            steps.append({"action": "bench.tidy"})
        windows = []
        for _ in range(rng.choice([0, 1, 1, 2])):
            start = rng.randrange(24)
            window: dict[str, Any] = {"start_hour": start, "end_hour": min(24, start + rng.randint(2, 8)),
                                      "weight": rng.choice([0.5, 0.8, 1.0])}
            if rng.random() < 0.2:
                window["weekdays"] = sorted(rng.sample(range(7), rng.randint(2, 5)))
            windows.append(window)
        description = " ".join([rng.choice(VERBS), rng.choice(OBJECTS), *rng.sample(TAILS, rng.randint(1, 3))])
        t: dict[str, Any] = {
            "id": f"{category}_{i:05d}", "name": f"{category.title()} {i}", "description": description,
            "category": category, "steps": steps, "preferred_windows": windows,
            "priority": rng.choice(["high", "normal", "normal", "low", "idle"]),
            "max_per_day": rng.choice([1, 1, 2]), "tags": sorted(set(rng.sample(TAGS, rng.randint(0, 3)))),
        }
        if rng.random() < 0.3:
            t["cooldown"] = rng.choice(["4h", "8h", "1d"])
        out.append(t)
    return out


class BenchPack:
    """A pack registered by hand: the actions, their handler, N templates and some planning facts."""

    def __init__(self, n: int) -> None:
        self.actions = action_defs()
        self.templates = template_defs(n)

    @hookimpl
    def register_actions(self, register: Any) -> None:
        register.load({"actions": self.actions})
        for a in self.actions:
            register.handler(a["id"], _ok)

    @hookimpl
    def register_templates(self, register: Any) -> None:
        register.load({"templates": self.templates})

    @hookimpl
    def gather_context(self, context: Any) -> None:
        # Facts as a self-model pack would give them, so the prompt carries every section.
        context.set("identity", ["A curious, patient daemon that keeps a journal and a self model.",
                                 "Works alone most of the day; talks with one user in the evenings."])
        context.set("values", ["honesty about what it does not know", "small steady progress", "kindness"])
        context.set("mood", {"curiosity": 0.8, "tiredness": 0.3, "contentment": 0.6, "loneliness": 0.4})
        context.set("growth_edges", [{"area": "writing shorter, clearer essays"}, {"area": "memory consolidation"},
                                     {"area": "asking better research questions"}])
        context.set("open_questions", ["How does attention shape what is remembered?",
                                       "Which sources on attention are worth a second reading?",
                                       "What makes a conversation feel finished?"])


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def measure(n: int, repeat: int) -> dict[str, Any]:
    """Every figure for a catalogue of ``n`` generated templates."""
    cfg = Config.from_dict({"timezone": TZ})
    pack = BenchPack(n)
    with tempfile.TemporaryDirectory(prefix="cass-bench-planner-") as tmp:
        clock = VirtualClock(ZoneInfo(TZ), datetime(DAY.year, DAY.month, DAY.day, 6, tzinfo=ZoneInfo(TZ)))
        started = time.perf_counter()
        runtime = Runtime(cfg, data_dir=Path(tmp) / "data", clock=clock, plugins=[("bench", pack)],
                          entry_points=False, provider="offline")
        build_s = time.perf_counter() - started
        try:
            times, info = [], None
            for _ in range(max(1, repeat)):
                started = time.perf_counter()
                info = runtime.plan_dry_run(DAY)
                times.append(time.perf_counter() - started)
            assert info is not None

            async def plan() -> None:
                try:
                    await runtime.plan_day(DAY)
                finally:
                    await runtime.providers.aclose()

            started = time.perf_counter()
            asyncio.run(plan())
            plan_s = time.perf_counter() - started
            row = runtime.store.get_plan(DAY)
            plan_data = row.data if row is not None else {}
            templates = len(runtime.catalogue.templates)
        finally:
            runtime.close()

    settings = cfg.planner
    model = settings.model or cfg.llm.model
    tokens = int(info["prompt"]["tokens_estimate"])
    price = price_table(cfg.llm.prices).price_for(model, tokens)
    out_typical = int(plan_data.get("output_tokens") or 0)
    input_usd = tokens * price.input / 1e6
    worst = input_usd + settings.max_tokens * price.output / 1e6
    typical = input_usd + out_typical * price.output / 1e6
    return {
        "templates_generated": n,
        "templates_in_catalogue": templates,
        "candidates": len(info["candidates"]),
        "excluded": len(info["excluded"]),
        "offered": len(info["offered"]),
        "top_k": settings.top_k,
        "prompt_tokens_estimate": tokens,
        "prompt_tokens_bound": info["prompt"]["tokens_bound"],
        "within_bound": tokens <= PROMPT_TOKEN_BOUND,
        "deterministic_units": sum(len(v) for v in info["deterministic_plan"].values()),
        "offline_plan": {"source": plan_data.get("source"), "units": sum(len(v) for v in plan_data.get("phases", {}).values()),
                         "input_tokens": plan_data.get("input_tokens"), "output_tokens": out_typical,
                         "cost_usd": plan_data.get("cost_usd")},
        "model": model,
        "price_per_mtok": {"input": price.input, "output": price.output},
        "cost_usd": {
            "input": round(input_usd, 6),
            "worst_case": round(worst, 6),
            "worst_case_output_tokens": settings.max_tokens,
            "typical": round(typical, 6),
            "typical_output_tokens": out_typical,
        },
        "within_target": worst <= TARGET_USD,
        "catalogue_build_ms": _ms(build_s),
        "dry_run_ms": {"median": _ms(statistics.median(times)), "min": _ms(min(times)), "runs": len(times)},
        "plan_day_offline_ms": _ms(plan_s),
    }


def print_table(results: list[dict[str, Any]]) -> None:
    """The figures as a fixed-width table, with the labels spelt out underneath."""
    head = ["templates", "candidates", "offered", "tokens", "bound", "worst $/day", "typical $/day",
            "build ms", "dry-run ms"]
    rows = [[f"{r['templates_generated']:,}", f"{r['candidates']:,}", str(r["offered"]), f"{r['prompt_tokens_estimate']:,}",
             f"{r['prompt_tokens_bound']:,}", f"${r['cost_usd']['worst_case']:.6f}", f"${r['cost_usd']['typical']:.6f}",
             f"{r['catalogue_build_ms']:,.0f}", f"{r['dry_run_ms']['median']:,.0f}"] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    r0 = results[0]
    p = r0["price_per_mtok"]
    print()
    print(f"model {r0['model']}: ${p['input']}/MTok in, ${p['output']}/MTok out (price_table()); target <= ${TARGET_USD} per planned day")
    print("tokens       prompt token estimate: UTF-8 bytes / 3 of system prompt + day message + output schema")
    print(f"worst $/day  tokens at the input price + planner.max_tokens ({r0['cost_usd']['worst_case_output_tokens']}) "
          "output tokens at the output price")
    print("typical $/day tokens at the input price + the output tokens of an actual offline plan reply "
          f"({', '.join(str(r['cost_usd']['typical_output_tokens']) for r in results)} tokens)")
    print("build ms     catalogue build time (Runtime construction, N templates registered and checked)")
    print(f"dry-run ms   plan --dry-run wall time, catalogue already built (median of {r0['dry_run_ms']['runs']})")
    over = [r["templates_generated"] for r in results if not r["within_target"]]
    print("target met for every size (worst case)" if not over else f"target NOT met (worst case) for sizes {over}")


def main() -> None:
    """Parse the options, measure every size, print the table and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000", help="catalogue sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="dry runs per size (the median is reported)")
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args()
    try:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: expected comma-separated integers, got {args.sizes!r}")
    if not sizes or any(s < 1 for s in sizes):
        parser.error("--sizes: give at least one size, each >= 1")
    results = [measure(n, args.repeat) for n in sizes]
    doc = {"benchmark": "planner_prompt", "python": sys.version.split()[0], "cpus": os.cpu_count(),
           "day": DAY.isoformat(), "target_usd_per_day": TARGET_USD, "prompt_token_bound": PROMPT_TOKEN_BOUND,
           "results": results}
    if not args.json:
        print_table(results)
        print()
    print(json.dumps(doc, indent=None if not args.json else 2))


if __name__ == "__main__":
    main()
