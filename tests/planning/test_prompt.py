"""The planning prompt: bounded whatever the catalogue size, top-K only, a stable cached prefix."""

from __future__ import annotations

import random
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cass_actions_core import hookimpl
from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import Config
from cass_actions_core.planning.prompt import PROMPT_TOKEN_BOUND
from cass_actions_core.runtime import Runtime
from support import HandPack, action_def

DAY = date(2026, 11, 26)
CATEGORIES = ["reflection", "growth", "curiosity", "research", "creative", "journal", "memory"]
WORDS = ("review summarise explore draft revisit question map collect compare sketch memory attention essay notes "
         "conversation garden lighthouse growth patience feed sources story journal week questions").split()


def generated_templates(n: int, seed: int = 8) -> list[dict[str, Any]]:
    """``n`` varied templates: long descriptions, tags, windows, optional steps."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        start = rng.randrange(24)
        out.append({
            "id": f"{category}_{i:05d}", "name": f"{category.title()} {i}", "category": category,
            "description": " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60))),
            "steps": [{"action": f"g.{category}"}, {"action": "g.tidy", "optional": rng.random() < 0.5}],
            "preferred_windows": [{"start_hour": start, "end_hour": min(24, start + rng.randint(2, 8))}],
            "priority": rng.choice(["high", "normal", "low"]), "tags": rng.sample(WORDS, 3),
        })
    return out


class Facts:
    @hookimpl
    def gather_context(self, context: Any) -> None:
        context.set("identity", ["A curious daemon that keeps a journal."])
        context.set("values", ["honesty", "small steady progress"])
        context.set("mood", {"curiosity": 0.8, "tiredness": 0.3})
        context.set("growth_edges", [{"area": "patience with open questions"}])
        context.set("open_questions", ["How does attention shape memory?"])


def runtime_with(tmp_path: Path, n: int, **config: Any) -> Runtime:
    actions = [action_def(f"g.{c}", category=c, estimated_cost_usd=0.004, max_cost_usd=0.02) for c in CATEGORIES]
    actions.append(action_def("g.tidy", category="system", uses_llm=False, tier=1, estimated_cost_usd=0, max_cost_usd=0))
    pack = HandPack(actions, generated_templates(n))
    cfg = Config.from_dict({"timezone": "UTC", **config})
    clock = VirtualClock(ZoneInfo("UTC"), datetime(2026, 11, 26, 6, tzinfo=ZoneInfo("UTC")))
    return Runtime(cfg, data_dir=tmp_path / "d", clock=clock, plugins=[("g", pack), ("facts", Facts())],
                   entry_points=False, provider="offline")


def test_ten_thousand_templates_keep_the_prompt_under_its_bound(tmp_path: Path):
    runtime = runtime_with(tmp_path, 10_000)
    info = runtime.plan_dry_run(DAY)
    assert len(info["candidates"]) == 10_001  # and the core's housekeeping
    assert len(info["offered"]) == runtime.config.planner.top_k == 24
    prompt = info["prompt"]
    assert prompt["tokens_bound"] == PROMPT_TOKEN_BOUND == 6000
    assert prompt["tokens_estimate"] <= PROMPT_TOKEN_BOUND
    # only the offered ids are in the prompt and the output schema
    text = prompt["message"] + str(prompt["schema"])
    offered = set(info["offered"])
    mentioned = {t["id"] for t in generated_templates(10_000) if t["id"] in text}
    assert mentioned == offered - {"housekeeping"}
    # the dry run called and stored nothing
    assert runtime.store.get_plan(DAY) is None and runtime.ledger.spent("planning", budget_day=DAY) == 0
    runtime.close()


def test_the_prompt_is_the_same_size_for_a_hundred_and_for_ten_thousand_templates(tmp_path: Path):
    small = runtime_with(tmp_path / "s", 100).plan_dry_run(DAY)["prompt"]["tokens_estimate"]
    large = runtime_with(tmp_path / "l", 10_000).plan_dry_run(DAY)["prompt"]["tokens_estimate"]
    assert abs(large - small) / small < 0.25, (small, large)


def test_a_smaller_top_k_gives_a_smaller_prompt_and_the_plan_stays_inside_it(tmp_path: Path):
    import asyncio

    runtime = runtime_with(tmp_path, 500, planner={"top_k": 5})
    info = runtime.plan_dry_run(DAY)
    assert len(info["offered"]) == 5
    plan = asyncio.run(runtime.plan_day(DAY))
    assert plan.source == "llm" and {i.template for _p, i in plan.items()} <= set(info["offered"])
    runtime.close()


def test_the_system_prompt_is_a_stable_cached_prefix(tmp_path: Path):
    runtime = runtime_with(tmp_path, 50)
    first = runtime.plan_dry_run(DAY)["prompt"]
    runtime.clock.set(datetime(2026, 11, 26, 13, tzinfo=ZoneInfo("UTC")))
    later = runtime.plan_dry_run(DAY, from_phase="afternoon")["prompt"]
    assert first["system"] == later["system"]  # the day's facts live in the message, not the prefix
    assert first["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first["message"] != later["message"]
    runtime.close()
