"""The executor's temporary-failure retries (issue 9, finding 5), through the real SDK against the
fake Messages API on 127.0.0.1, on a virtual clock with a real SQLite store."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import Config
from cass_actions_core.executor import RETRY_BASE, retry_delay
from cass_actions_core.planning import DayPlan, PlanItem
from cass_actions_core.runtime import Runtime
from cass_actions_core.testing.fake_anthropic import FakeAnthropic, usage
from support import HandPack, action_def, template_def

UTC = ZoneInfo("UTC")
START = datetime(2026, 11, 26, 6, tzinfo=UTC)


async def think(ctx: Any) -> dict[str, Any]:
    reply = await ctx.llm.complete("think about the day")
    return {"summary": reply.text[:40]}


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic() as server:
        yield server


def make_runtime(tmp_path: Path, fake: FakeAnthropic, handler: Any = think, **action: Any) -> Runtime:
    pack = HandPack([action_def("r.think", category="reflection", estimated_cost_usd=0.001, max_cost_usd=0.05, **action)],
                    [template_def("think", ["r.think"])], handlers={"r.think": handler})
    cfg = Config.from_dict({"timezone": "UTC", "planner": {"enabled": False},
                                 "llm": {"provider": "anthropic", "base_url": fake.url, "max_retries": 0, "timeout_seconds": 5}})
    runtime = Runtime(cfg, data_dir=tmp_path / "d", clock=VirtualClock(UTC, START), plugins=[("r", pack)], entry_points=False)
    runtime.store_plan(START.date(), DayPlan(START.date(), {"morning": [PlanItem("think")]}, source="file", reason="test"))
    runtime.acquire_lease()
    return runtime


def simulate(runtime: Runtime, until: datetime) -> None:
    async def go() -> None:
        await runtime.simulate_until(until)
    asyncio.run(go())


def traced_simulate(runtime: Runtime, until: datetime) -> list[str]:
    """:func:`simulate`, returning every SQL statement the store sent meanwhile."""
    statements: list[str] = []
    runtime.store._conn.set_trace_callback(statements.append)
    try:
        simulate(runtime, until)
    finally:
        runtime.store._conn.set_trace_callback(None)
    return statements


def test_backoff_doubles_from_a_minute_and_honours_retry_after_with_a_cap():
    assert retry_delay(2, None) == RETRY_BASE
    assert retry_delay(3, None) == 2 * RETRY_BASE and retry_delay(4, None) == 4 * RETRY_BASE
    assert retry_delay(20, None) == timedelta(minutes=30)
    assert retry_delay(2, 600) == timedelta(minutes=10)
    assert retry_delay(2, 10**9) == timedelta(hours=1)


@pytest.mark.parametrize("script, kind", [
    (lambda f: f.reply_rate_limit(retry_after_ms=120_000), "rate_limit"),
    (lambda f: f.reply_overloaded(retry_after_ms=5), "overloaded"),
    (lambda f: f.reply_error(500, "api_error", "Internal server error"), "server_error"),
    (lambda f: f.reply_raw(200, b"<html>not json</html>"), "malformed_response"),
])
def test_a_temporary_failure_requeues_the_unit_and_the_next_attempt_completes_it(tmp_path, fake, script, kind):
    script(fake)
    fake.reply_text("a thought", usage=usage(100, 20))
    runtime = make_runtime(tmp_path, fake)
    simulate(runtime, START + timedelta(hours=3))
    (unit,) = runtime.units(template_id="think")
    assert unit.status == "completed", unit.reason
    runs = runtime.store.action_runs_for_unit(unit.id)
    assert [r.status for r in runs] == ["failed", "completed"]
    assert kind in runs[0].error
    # the second attempt waited its backoff (the provider's retry-after for the 429: 2 minutes)
    wait = runs[1].started_at - runs[0].finished_at
    assert wait >= (timedelta(minutes=2) if kind == "rate_limit" else RETRY_BASE)
    queued = [t for t in runtime.store.transitions(unit.id) if t.to_status == "queued" and "attempt 2" in (t.reason or "")]
    assert queued and "attempt 1 of 3 failed" in queued[0].reason
    # history and the ledger agree, every attempt counted
    summary = runtime.store.get_summary(unit.id).data
    assert summary["actions"][0]["attempts"] == 2
    assert summary["cost_usd"] == pytest.approx(sum(r.cost_usd for r in runs), abs=1e-9)
    assert runtime.ledger.spent("reflection", budget_day=START.date()) == pytest.approx(summary["cost_usd"], abs=1e-9)
    if kind == "malformed_response":
        assert runs[0].cost_usd > 0  # sent, maybe billed: charged at its estimate
    runtime.close()


def test_attempts_are_bounded_per_action_and_the_failure_lists_every_attempt(tmp_path, fake):
    fake.reply_overloaded(retry_after_ms=5, times=10)
    runtime = make_runtime(tmp_path, fake, max_attempts=2)
    simulate(runtime, START + timedelta(hours=3))
    (unit,) = runtime.units(template_id="think")
    assert unit.status == "failed"
    assert re.match(r"step 1 \(r\.think\) failed after 2 attempts: 1\) 2026-11-26 06:\d\d LLM call stopped \(overloaded\)"
                    r".*; 2\) 2026-11-26 06:\d\d LLM call stopped \(overloaded\)", unit.reason), unit.reason
    assert len(fake.message_requests) == 2
    runtime.close()


def test_a_final_failure_is_not_retried(tmp_path, fake):
    fake.reply_error(400, "invalid_request_error", "max_tokens: too large")
    runtime = make_runtime(tmp_path, fake)
    simulate(runtime, START + timedelta(hours=3))
    (unit,) = runtime.units(template_id="think")
    assert unit.status == "failed" and "bad_request" in unit.reason
    assert len(fake.message_requests) == 1
    runtime.close()


def test_a_step_whose_stored_params_break_the_actions_schema_fails_without_calling_the_handler(tmp_path):
    calls: list[dict[str, Any]] = []

    async def strict(ctx: Any) -> dict[str, Any]:
        calls.append(dict(ctx.params))
        return {"summary": "ran"}

    schema = {"type": "object", "additionalProperties": False, "properties": {"conversation_id": {"type": "string"}}}
    pack = HandPack([action_def("r.strict", tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, category="system",
                                params=schema)], [], handlers={"r.strict": strict})
    cfg = Config.from_dict({"timezone": "UTC", "planner": {"enabled": False}})
    runtime = Runtime(cfg, data_dir=tmp_path / "d", clock=VirtualClock(UTC, START), plugins=[("r", pack)], entry_points=False)
    runtime.acquire_lease()
    # A unit as an older version, a hand-edited store or another writer may have left it.
    unit = runtime.store.insert_unit(local_date=START.date(), phase="morning", template_id="by_hand", name="By hand",
                                     category="system", steps=[{"action": "r.strict", "params": {"conversation_id": 12345,
                                                                                                  "bogus": "x"}}],
                                     now=START, status="queued")
    outcome = asyncio.run(runtime.executor.run_unit(unit.id))
    assert calls == []
    assert outcome.unit.status == "failed"
    assert "step 1 (r.strict): invalid params" in outcome.unit.reason
    assert "params.conversation_id" in outcome.unit.reason and "bogus" in outcome.unit.reason
    runtime.close()


@pytest.mark.parametrize("provider, synced", [("anthropic", True), ("offline", False)])
def test_the_hold_before_a_call_is_synced_to_the_disk_only_when_the_provider_bills_real_money(tmp_path, fake, provider,
                                                                                             synced):
    fake.reply_text("a thought")
    runtime = make_runtime(tmp_path, fake)
    if provider == "offline":
        runtime.close()
        cfg = Config.from_dict({"timezone": "UTC", "planner": {"enabled": False}, "llm": {"provider": "offline"}})
        pack = HandPack([action_def("r.think", category="reflection", estimated_cost_usd=0.001, max_cost_usd=0.05)],
                        [template_def("think", ["r.think"])], handlers={"r.think": think})
        runtime = Runtime(cfg, data_dir=tmp_path / "o", clock=VirtualClock(UTC, START), plugins=[("r", pack)],
                          entry_points=False)
        runtime.store_plan(START.date(), DayPlan(START.date(), {"morning": [PlanItem("think")]}, source="file", reason="t"))
        runtime.acquire_lease()
    statements = traced_simulate(runtime, START + timedelta(hours=1))
    (unit,) = runtime.store.list_units(statuses=["completed"])
    holds = [i for i, s in enumerate(statements) if s.startswith("INSERT") and " INTO state " in s and "spend:" in s]
    assert len(holds) >= 1  # the hold was written in every case
    # A durable commit switches the connection to synchronous=FULL just before its BEGIN.
    synced_holds = [i for i in holds if any(s == "PRAGMA synchronous = FULL" for s in statements[max(0, i - 4):i])]
    assert bool(synced_holds) is synced
    runtime.close()


async def think_twice(ctx: Any) -> dict[str, Any]:
    from cass_actions_core.llm.errors import LLMError

    first = await ctx.llm.complete("think about the day")
    try:
        await ctx.llm.complete("and once more")
    except LLMError as exc:  # the call cap refuses it before anything is sent
        return {"summary": f"{first.text[:20]}; then {exc.kind}"}
    return {"summary": "both calls went out"}


def test_each_call_commits_its_bookkeeping_once_before_and_once_after_and_a_refusal_keeps_its_transcript(tmp_path, fake):
    fake.reply_text("a thought")
    runtime = make_runtime(tmp_path, fake, handler=think_twice, max_llm_calls=1)
    statements = traced_simulate(runtime, START + timedelta(hours=1))
    (unit,) = runtime.store.list_units(statuses=["completed"])
    (run,) = runtime.store.action_runs_for_unit(unit.id)
    assert run.result["summary"].endswith("then call_cap")
    transcripts = [runtime.store.get_transcript(t).data for t in run.result["llm"]["transcript_ids"]]
    assert [(t["refused"], t["error"]["kind"] if t["error"] else None) for t in transcripts] == [(False, None),
                                                                                                (True, "call_cap")]
    # The step's commits: its start, the first call's admission and record, the refusal (its transcript), its end.
    begin = next(i for i, s in enumerate(statements) if s.startswith("INSERT INTO action_runs"))
    end = next(i for i, s in enumerate(statements) if s.startswith("UPDATE action_runs"))
    assert statements[begin:end].count("COMMIT") == 4
    # The money: the call's real cost, settled once; nothing held after the step.
    entries = [e for e in runtime.store.ledger_entries(budget_day=START.date()) if e.unit_id == unit.id]
    assert [e.kind for e in entries][-1] == "settle" and entries[-1].amount_usd == run.cost_usd > 0
    assert runtime.store._conn.execute("SELECT count(*) FROM state WHERE key LIKE 'spend:%'").fetchone()[0] == 0
    runtime.close()
