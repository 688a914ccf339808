"""The DecisionEngine through the real SDK against the fake Messages API on 127.0.0.1.

Only the planning call goes to the fake server: the test pack's actions use no LLM, so
every recorded request is a planning request.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import Config
from cass_actions_core.runtime import Runtime
from cass_actions_core.testing.fake_anthropic import FakeAnthropic, unused_port, usage
from support import HandPack, action_def, template_def, only_allocations

TZ = "Europe/London"
DAY = date(2026, 11, 26)


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(TZ))


def free(action_id: str, category: str, **kw: Any) -> dict[str, Any]:
    return action_def(action_id, category=category, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, tier=1, **kw)


def pack() -> HandPack:
    return HandPack(
        [free("p.write", "creative"), free("p.think", "reflection"), free("p.read", "research"), free("p.tidy", "system")],
        [
            template_def("morning_pages", ["p.write"], category="creative", preferred_windows=[{"start_hour": 6, "end_hour": 10}]),
            template_def("deep_reading", ["p.read"], category="research", preferred_windows=[{"start_hour": 12, "end_hour": 17}]),
            template_def("evening_review", ["p.think"], category="reflection", preferred_windows=[{"start_hour": 18, "end_hour": 22}]),
            template_def("tidy_up", ["p.tidy"], category="system"),
        ],
    )


def make_runtime(tmp_path: Path, fake: FakeAnthropic | None, *, start: datetime | None = None,
                 base_url: str | None = None, **config: Any) -> Runtime:
    llm = {"provider": "anthropic", "base_url": base_url or (fake.url if fake else None), "max_retries": 1,
           "timeout_seconds": 5}
    cfg = Config.from_dict({"timezone": TZ, "llm": llm, **config})
    return Runtime(cfg, data_dir=tmp_path / "data", clock=VirtualClock(ZoneInfo(TZ), start or at(6)),
                   plugins=[("p", pack())], entry_points=False)


def plan(runtime: Runtime, from_phase: str = "morning") -> Any:
    async def go() -> Any:
        try:
            return await runtime.plan_day(DAY, from_phase=from_phase)
        finally:
            await runtime.providers.aclose()
    return asyncio.run(go())


@pytest.fixture
def fake():
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")


def good_reply() -> dict[str, Any]:
    return {"intention": "Write first, read after lunch, look back in the evening.", "items": [
        {"template": "morning_pages", "phase": "morning", "focus": "the dream about the lighthouse",
         "motivation": "writing is freshest before the day crowds in"},
        {"template": "deep_reading", "phase": "afternoon", "focus": "chapter three of the memory book",
         "motivation": "an open question about remembering"},
        {"template": "evening_review", "phase": "evening", "focus": "what the reading changed",
         "motivation": "close the loop on the day"},
    ]}


def test_a_good_reply_becomes_the_stored_plan_and_its_units_carry_focus_and_motivation(tmp_path, fake, api_key):
    fake.reply_json(good_reply(), usage=usage(1800, 240, cache_write_5m=900))
    runtime = make_runtime(tmp_path, fake)
    result = plan(runtime)

    assert result.source == "llm" and result.provider == "anthropic" and result.model == "claude-haiku-5-5"
    stored = runtime.store.get_plan(DAY)
    assert stored.source == "llm" and stored.intention == good_reply()["intention"]
    assert stored.data["input_tokens"] == 1800 and stored.data["output_tokens"] == 240
    assert stored.data["cache_write_tokens"] == 900
    # Haiku 5.5: $0.10/M input, $0.125/M 5-minute cache writes, $0.50/M output
    assert stored.data["cost_usd"] == pytest.approx((1800 * 0.10 + 900 * 0.125 + 240 * 0.50) / 1e6, abs=1e-6)
    assert len(stored.data["prompt_sha256"]) == 64
    units = {u.template_id: u for u in runtime.units(local_date=DAY)}
    assert set(units) == {"morning_pages", "deep_reading", "evening_review"}
    assert units["deep_reading"].phase == "afternoon"
    assert units["morning_pages"].focus == "the dream about the lighthouse"
    assert units["evening_review"].motivation == "close the loop on the day"

    body = fake.message_requests[0].body
    schema = body["output_config"]["format"]["schema"]
    item = schema["$defs"]["PlannedUnit"] if "$defs" in schema else schema["properties"]["items"]["items"]
    assert sorted(item["properties"]["template"]["enum"]) == ["deep_reading", "evening_review", "housekeeping", "morning_pages",
                                                                 "tidy_up"]
    assert item["properties"]["phase"]["enum"] == ["morning", "afternoon", "evening", "night"]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}  # the stable prefix is cached
    # The call is charged to its own category.
    assert runtime.ledger.spent("planning", budget_day=DAY) == pytest.approx(stored.data["cost_usd"], abs=1e-6)


def _no_key(fake, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


FAILURES = {
    "no api key": (_no_key, "ANTHROPIC_API_KEY"),
    "rate limited after retries": (lambda f, m: f.reply_rate_limit(retry_after_ms=5, times=2), "rate"),
    "overloaded after retries": (lambda f, m: f.reply_overloaded(retry_after_ms=5, times=2), "overloaded"),
    "refusal": (lambda f, m: f.reply_refusal(), "refus"),
    "cut off": (lambda f, m: f.reply_cut_off('{"intention": "half'), "cut off"),
    "invalid json": (lambda f, m: f.reply_text("this is not JSON at all"), "invalid"),
    "schema-breaking json": (lambda f, m: f.reply_json({"intention": 3, "items": "everything"}), "did not match"),
    "an empty plan": (lambda f, m: f.reply_json({"intention": "rest", "items": []}), "left nothing"),
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_each_failure_of_the_call_falls_back_to_the_plan_from_the_scores(tmp_path, fake, api_key, monkeypatch, name):
    script, expected = FAILURES[name]
    script(fake, monkeypatch)
    runtime = make_runtime(tmp_path, fake)
    result = plan(runtime)

    stored = runtime.store.get_plan(DAY)
    assert result.source == stored.source == "fallback"
    assert expected.lower() in stored.reason.lower(), stored.reason
    units = runtime.units(local_date=DAY)
    assert {u.template_id for u in units} == {"morning_pages", "deep_reading", "evening_review", "tidy_up",
                                                           "housekeeping"}
    assert all(u.motivation and "score" in u.motivation for u in units)  # the deterministic plan explains itself


def test_connection_refused_falls_back(tmp_path, api_key):
    runtime = make_runtime(tmp_path, None, base_url=f"http://127.0.0.1:{unused_port()}")
    result = plan(runtime)
    assert result.source == "fallback" and "connection" in result.reason.lower()
    assert runtime.units(local_date=DAY)


def test_a_reply_naming_an_unregistered_template_or_a_past_phase_never_creates_a_unit(tmp_path, fake, api_key):
    fake.reply_json({"intention": "mixed", "items": [
        {"template": "no_such_template", "phase": "afternoon", "focus": "x", "motivation": "y"},
        {"template": "morning_pages", "phase": "morning", "focus": "too late", "motivation": "y"},
        {"template": "deep_reading", "phase": "afternoon", "focus": "ok", "motivation": "ok"},
        {"template": "deep_reading", "phase": "afternoon", "focus": "again", "motivation": "again"},
        {"template": "tidy_up", "phase": "dusk", "focus": "x", "motivation": "y"},
    ]})
    runtime = make_runtime(tmp_path, fake, start=at(13))  # the morning is over
    result = plan(runtime, from_phase="afternoon")

    assert result.source == "llm"
    units = runtime.units(local_date=DAY)
    assert [(u.template_id, u.phase, u.focus) for u in units] == [("deep_reading", "afternoon", "ok")]
    dropped = " | ".join(result.dropped)
    assert "'no_such_template'" in dropped and "no template with that id is registered" in dropped
    assert "not a phase still to come" in dropped
    assert "duplicate" in dropped
    assert "'dusk'" in dropped and "not a day phase" in dropped
    # The schema sent offers only the phases still to come.
    schema = json.dumps(fake.message_requests[0].body["output_config"])
    assert '"morning"' not in schema


def test_a_restarted_runtime_on_a_planned_day_makes_no_second_planning_request(tmp_path, fake, api_key):
    fake.reply_json(good_reply())

    async def run_for(runtime: Runtime, until: datetime) -> None:
        runtime.acquire_lease()
        await runtime.simulate_until(until)
        runtime.release_lease()

    first = make_runtime(tmp_path, fake)
    asyncio.run(run_for(first, at(13)))
    first.close()
    assert len(fake.message_requests) == 1
    second = make_runtime(tmp_path, fake, start=at(14))
    asyncio.run(run_for(second, at(23)))
    assert len(fake.message_requests) == 1, "the plan of a planned day is never paid for twice"
    assert second.store.get_plan(DAY).source == "llm"
    assert {u.status for u in second.units(local_date=DAY)} <= {"completed"}


def test_starting_mid_day_plans_the_remaining_phases_only(tmp_path, fake, api_key):
    fake.reply_json({"intention": "evening only", "items": [
        {"template": "evening_review", "phase": "evening", "focus": "f", "motivation": "m"}]})
    runtime = make_runtime(tmp_path, fake, start=at(19))

    async def go() -> None:
        runtime.acquire_lease()
        await runtime.tick()
        await runtime.providers.aclose()

    asyncio.run(go())
    stored = runtime.store.get_plan(DAY)
    assert list(stored.data["phases"]) == ["evening", "night"]
    message = fake.message_requests[0].body["messages"][0]["content"]
    assert "- morning:" not in message and "- evening:" in message


def test_the_planning_call_is_refused_when_its_category_has_no_money(tmp_path, fake, api_key):
    runtime = make_runtime(tmp_path, fake, budget={"allocations": only_allocations(**{"creative": 0.2, "reflection": 0.2, "research": 0.2,
                                                                     "system": 0.1, "planning": 0.0})})
    result = plan(runtime)
    assert result.source == "fallback" and "planning" in result.reason and not fake.message_requests
