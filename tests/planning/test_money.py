"""Money-aware degrading mid-day: the executor moves LLM steps to the cheaper model when actual
costs outrun the estimates and a category falls below ``planner.cheap_below_fraction``."""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import Config
from cass_actions_core.llm.base import Usage
from cass_actions_core.llm.scripted import ScriptedReply
from cass_actions_core.planning import DayPlan, PlanItem
from cass_actions_core.runtime import Runtime
from cass_actions_core.testing.pytest_plugin import ScriptedLLMPlugin
from support import HandPack, action_def, template_def, only_allocations

TZ = ZoneInfo("UTC")
DAY = date(2026, 11, 26)


async def write(ctx: Any) -> dict[str, Any]:
    reply = await ctx.llm.complete("write about " + (ctx.focus or "the day"))
    return {"summary": reply.text[:30]}


def make_runtime(tmp_path: Path, creative: float = 0.1, **planner: Any) -> Runtime:
    # Each call is billed 6,000 output tokens (within max_tokens 8,000): $0.06 on Sonnet 5.5,
    # $0.003 on Haiku 5.5, while the pack declares $0.01: the actual cost outruns the estimate.
    def reply(request: Any) -> ScriptedReply:  # bills like a real API: never past max_tokens
        return ScriptedReply("a draft", usage=Usage(input_tokens=0, output_tokens=min(6000, request.max_tokens)),
                             stop_reason="end_turn")

    llm = ScriptedLLMPlugin(reply)
    pack = HandPack([action_def("m.write", category="creative", estimated_cost_usd=0.01, max_cost_usd=0.09)],
                    [template_def(n, ["m.write"], category="creative") for n in ("first", "second", "third")],
                    handlers={"m.write": write})
    cfg = Config.from_dict({
        "timezone": "UTC", "llm": {"model": "claude-sonnet-5-5", "max_tokens": 8000},
        "budget": {"daily_usd": 1.0, "allocations": only_allocations(**{"creative": creative, "system": 0.05, "planning": 0.02})},
        "planner": {"cheap_model": "claude-haiku-5-5", "cheap_below_fraction": 0.5, **planner}})
    clock = VirtualClock(TZ, datetime(2026, 11, 26, 6, tzinfo=TZ))
    return Runtime(cfg, data_dir=tmp_path / "d", clock=clock, plugins=[("m", pack), ("llm", llm)],
                   entry_points=False, provider="scripted")


def run_day(runtime: Runtime) -> dict[str, Any]:
    plan = DayPlan(DAY, {"morning": [PlanItem("first"), PlanItem("second"), PlanItem("third")]}, source="file",
                   reason="by hand")
    runtime.store_plan(DAY, plan)
    runtime.acquire_lease()

    async def go() -> None:
        await runtime.simulate_until(datetime(2026, 11, 26, 12, tzinfo=TZ))
    asyncio.run(go())
    return {s.template_id: s for s in runtime.history(local_date=DAY)}


def models(runtime: Runtime, summary: Any) -> set[str]:
    runs = runtime.store.action_runs_for_unit(summary.unit_id)
    return {runtime.store.get_transcript(t).data["model"] for r in runs for t in r.result["llm"]["transcript_ids"]}


def test_the_executor_moves_steps_to_the_cheaper_model_when_a_category_runs_low(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    done = run_day(runtime)
    assert {k: s.status for k, s in done.items()} == {"first": "completed", "second": "completed", "third": "completed"}
    # first: $0.10 of $0.10 left, on Sonnet: $0.06 -> 40% left, below 50%
    assert models(runtime, done["first"]) == {"claude-sonnet-5-5"} and not done["first"].data["choices"]
    for later in ("second", "third"):
        assert models(runtime, done[later]) == {"claude-haiku-5-5"}
        (choice,) = done[later].data["choices"]
        assert choice.startswith("step 1 (m.write) on claude-haiku-5-5: creative has ")
        assert "below planner.cheap_below_fraction 50%" in choice
        assert "Choice: " + choice in done[later].text
    assert runtime.ledger.spent("creative", budget_day=DAY) == pytest.approx(0.06 + 2 * 0.003, abs=1e-6)
    runtime.close()


def test_without_a_cheaper_model_the_next_call_is_fitted_to_the_money_left_then_work_parks(tmp_path: Path):
    runtime = make_runtime(tmp_path, cheap_model=None)
    done = run_day(runtime)
    assert done["first"].status == "completed"
    # $0.04 left: the second unit's call goes out with max_tokens lowered from 8000 to what fits
    assert done["second"].status == "completed"
    (run,) = runtime.store.action_runs_for_unit(done["second"].unit_id)
    (transcript,) = run.result["llm"]["transcript_ids"]
    asked = runtime.store.get_transcript(transcript).data["request"]["max_tokens"]
    assert 2000 <= asked < 4000
    # nothing is left for the third: parked with the reason, never overspent
    assert done["third"].status == "budget_blocked"
    assert re.search(r"creative: \$0\.0[0-9]* left of \$0\.10, needs \$", done["third"].data["reason"])
    assert runtime.ledger.spent("creative", budget_day=DAY) <= 0.10 + 1e-9
    runtime.close()


def test_a_step_whose_first_call_cannot_fit_at_all_parks_and_leaves_no_run_behind(tmp_path: Path):
    # $0.01 a day: the step's reservation ($0.01 declared) fits, but even a quarter of
    # max_tokens (2,000 tokens, $0.02 on Sonnet) does not: the call is refused before it is sent.
    runtime = make_runtime(tmp_path, creative=0.01, cheap_model=None)
    done = run_day(runtime)
    first = done["first"]
    assert first.status == "budget_blocked"
    assert "its next LLM call may cost up to $0.08" in first.data["reason"]
    assert runtime.store.action_runs_for_unit(first.unit_id) == []  # withdrawn: it runs again, whole, later
    unit = runtime.store.get_unit(first.unit_id)
    assert unit.next_step == 0 and unit.data["budget_need_usd"] == pytest.approx(0.08, abs=0.001)
    assert runtime.ledger.spent("creative", budget_day=DAY) == 0.0
    runtime.close()
