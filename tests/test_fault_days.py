"""Three simulated days with the four bundled packs against the fake Messages API (real SDK) while
it misbehaves at random from a fixed seed: 429/529 bursts, 500s, cut-off, invalid and unreadable
replies, bills far above the estimates. Afterwards the invariants of docs/reliability.md hold.

A step towards issue 9's 30-day soak (which adds real process kills and stops): the same
invariants, in-process, on a virtual clock.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import Config
from cass_actions_core.phases import DayPhases
from cass_actions_core.runtime import Runtime
from cass_actions_core.testing.fake_anthropic import FakeAnthropic, FakeReply, RecordedRequest, usage, valid_reply
from cass_actions_core.workspace import seed_demo_workspace

START = date(2026, 11, 23)
DAYS = 3
PARKED = {"budget_blocked", "awaiting_approval"}
ENDED = {"completed", "failed", "expired", "cancelled", "abandoned"}


def faulty(seed: int):
    rng = random.Random(seed)

    def respond(request: RecordedRequest) -> FakeReply:
        if "You plan one day of work" in str((request.body or {}).get("system")):
            # The planning call gets a final error: the day comes from the deterministic plan (a
            # schema-valid example would name one template; test_engine covers the LLM plan itself).
            return FakeReply(400, body={"type": "error", "error": {"type": "invalid_request_error", "message": "no"}})
        roll = rng.random()
        if roll < 0.06:
            return FakeReply(429, body={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
                             headers={"retry-after-ms": "5"})
        if roll < 0.10:
            return FakeReply(529, body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        if roll < 0.13:
            return FakeReply(500, body={"type": "error", "error": {"type": "api_error", "message": "boom"}})
        if roll < 0.16:
            return FakeReply(200, raw=b"<html>502 from a proxy</html>")
        if roll < 0.20:
            reply = valid_reply(request)
            reply.message["stop_reason"] = "max_tokens"  # cut off
            return reply
        if roll < 0.24:
            return FakeReply(200, message={"content": [{"type": "text", "text": "{not json"}], "stop_reason": "end_turn",
                                           "usage": usage(50, 5)})
        if roll < 0.30:  # billed far above any estimate the meter made
            return valid_reply(request, usage_=usage(200_000, 20_000))
        return valid_reply(request)

    return respond


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("fault-days")
    mp = pytest.MonkeyPatch()
    mp.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic(responder=faulty(20261123)) as fake:
        cfg = Config.from_dict({
            "timezone": "UTC", "plugins": {"load": ["journal", "memory", "wonderland", "session"]},
            "llm": {"provider": "anthropic", "base_url": fake.url, "max_retries": 0, "timeout_seconds": 10},
        })
        phases = DayPhases(cfg.phases, cfg.timezone)
        begin, end = phases.boundary(START, "morning"), phases.boundary(START + timedelta(days=DAYS), "morning")
        runtime = Runtime(cfg, data_dir=folder, clock=VirtualClock(ZoneInfo("UTC"), begin))
        seed_demo_workspace(runtime.workspace, now=begin)

        async def drive() -> None:
            runtime.acquire_lease()
            await runtime.simulate_until(end)

        asyncio.run(drive())
        yield runtime, fake
    runtime.close()
    mp.undo()


def test_the_fake_api_misbehaved_often_and_work_still_got_done(run):
    runtime, fake = run
    assert len(fake.message_requests) >= 60
    statuses = [u.status for u in runtime.units()]
    assert statuses.count("completed") >= 10
    retried = [t for u in runtime.units() for t in runtime.store.transitions(u.id) if "attempt 2" in (t.reason or "")]
    assert retried, "no temporary failure was retried"


def test_every_unit_ended_or_parked_with_a_reason(run):
    runtime, _fake = run
    for unit in runtime.units():
        assert unit.status in ENDED | PARKED, (unit.template_id, unit.status)
        if unit.status != "completed":
            assert unit.reason, (unit.template_id, unit.status)
        assert runtime.store.get_summary(unit.id) is not None


def test_no_day_or_category_passed_its_money_by_more_than_the_stated_bound(run):
    runtime, _fake = run
    budget = runtime.config.budget
    category_of = {a: c.definition.category for a, c in runtime.catalogue.actions.items()}
    category_of["planner.plan_day"] = runtime.config.planner.category
    over: dict[tuple[date, str], float] = defaultdict(float)
    for unit in runtime.units():
        for r in runtime.store.action_runs_for_unit(unit.id):
            for tid in (r.result or {}).get("llm", {}).get("transcript_ids", []):
                t = runtime.store.get_transcript(tid).data
                over[(unit.local_date, category_of[t["action_id"]])] += max(0.0, t["cost_usd"] - t["estimate_usd"])
    for offset in range(DAYS):
        day = START + timedelta(days=offset)
        for category in budget.allocations:
            spent = runtime.ledger.spent(category, budget_day=day)
            assert spent <= budget.category_limit(category) + over[(day, category)] + 1e-6, (day, category, spent)
        assert runtime.ledger.spent(budget_day=day) <= budget.daily_usd + sum(
            v for (d, _c), v in over.items() if d == day) + 1e-6


def test_history_and_the_ledger_agree(run):
    runtime, _fake = run
    for unit in runtime.units():
        settled = sum(e.amount_usd for e in runtime.store.ledger_entries() if e.unit_id == unit.id and e.kind == "settle")
        summary = runtime.store.get_summary(unit.id).data
        assert summary["cost_usd"] == pytest.approx(settled, abs=1e-6), unit.template_id


def test_the_store_is_intact(run):
    runtime, _fake = run
    assert runtime.store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
