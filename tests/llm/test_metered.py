"""MeteredLLM: cost cap, call cap, budget gate, transcripts, exact spend.

Per-call costs are computed by hand from the published prices:
Sonnet 5.5 is $2 input / $10 output per MTok, Haiku 5.5 $0.10 / $0.50.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from cass_actions_core.config import LLMSettings
from cass_actions_core.llm.base import EffectiveLLMSettings, LLMRequest, LLMResponse, Usage
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.llm.metered import MeteredLLM
from cass_actions_core.llm.scripted import MemorySpendGate, MemoryTranscriptSink, ScriptedProvider, ScriptedReply
from cass_actions_core.testing.fake_anthropic import usage

# 1000 input + 1000 output tokens on Sonnet 5.5: (1000 * 2 + 1000 * 10) / 1e6.
SONNET_CALL_USD = 0.012


def settings(model: str = "claude-sonnet-5-5", max_tokens: int = 1000) -> EffectiveLLMSettings:
    return EffectiveLLMSettings.from_llm_settings(LLMSettings(provider="scripted", model=model, max_tokens=max_tokens))


def looping_provider(call_usage: Usage = Usage(1000, 1000)) -> ScriptedProvider:
    return ScriptedProvider(["another paragraph"], cycle=True, usage=call_usage)


async def loop_until_refused(meter: MeteredLLM, limit: int = 1000) -> LLMError:
    """An action that keeps calling the model until something stops it."""
    for _ in range(limit):
        try:
            await meter.complete("Write the next paragraph.")
        except LLMError as exc:
            return exc
    raise AssertionError("the meter never stopped the loop")


def test_a_looping_action_is_stopped_at_its_cost_cap(run: Any) -> None:
    provider = looping_provider()
    meter = MeteredLLM(provider, settings(), action_id="research.loop", max_cost_usd=0.10, max_calls=1000)

    error = run(loop_until_refused(meter))

    # Each call may cost up to ~$0.01 (1000 output tokens at $10/MTok plus a little
    # input), so after 8 calls ($0.096) one more could pass $0.10: refused.
    assert error.kind == "cost_cap"
    assert meter.stop_reason == "cost_cap"
    assert provider.calls == 8 and meter.calls == 8
    assert meter.spent_usd == 0.096 == round(8 * SONNET_CALL_USD, 6)
    assert "cost cap of $0.100000" in error.message
    assert "research.loop" in error.message
    assert meter.usage == Usage(8000, 8000)


def test_the_stop_is_sticky(run: Any) -> None:
    provider = looping_provider()
    meter = MeteredLLM(provider, settings(), action_id="research.loop", max_cost_usd=0.05, max_calls=1000)
    run(loop_until_refused(meter))
    calls = provider.calls

    with pytest.raises(LLMError) as caught:
        # Even a tiny call is refused once the meter has stopped.
        run(meter.complete("hi", max_tokens=1))

    assert caught.value.kind == "cost_cap"
    assert "already stopped" in caught.value.message
    assert provider.calls == calls


def test_a_looping_action_is_stopped_at_its_call_cap(run: Any) -> None:
    provider = looping_provider()
    meter = MeteredLLM(provider, settings(), action_id="research.loop", max_cost_usd=100.0, max_calls=5)

    error = run(loop_until_refused(meter))

    assert error.kind == "call_cap"
    assert meter.stop_reason == "call_cap"
    assert provider.calls == 5
    assert meter.spent_usd == 0.06
    assert "max_llm_calls = 5" in error.message


def test_spend_is_exact_to_the_cent_over_many_calls(run: Any) -> None:
    # Haiku 5.5: 1234 * 0.10 + 567 * 0.50 = 406.9 micro-dollars per call.
    provider = looping_provider(Usage(1234, 567))
    meter = MeteredLLM(provider, settings("claude-haiku-5-5", max_tokens=600), action_id="a.b",
                       max_cost_usd=10.0, max_calls=100)

    async def hundred_calls() -> None:
        for _ in range(100):
            await meter.complete("x")

    run(hundred_calls())

    assert meter.spent_usd == 0.04069
    assert meter.calls == 100
    assert meter.stop_reason is None


def test_the_budget_gate_is_asked_and_told(run: Any) -> None:
    gate = MemorySpendGate(limit_usd=0.03)
    provider = looping_provider()
    meter = MeteredLLM(provider, settings(), action_id="a.b", max_cost_usd=1.0, max_calls=100, gate=gate)

    error = run(loop_until_refused(meter))

    assert error.kind == "budget"
    assert meter.stop_reason == "budget"
    # two whole calls, then one with max_tokens lowered to the $0.006 the gate leaves (596
    # tokens), then refused. (This provider bills 1000 output tokens whatever max_tokens
    # says, so the lowered call overshoots: a real API never bills past max_tokens.)
    assert provider.calls == 3 and meter.lowered_max_tokens == [(1000, 596)]
    assert provider.requests[-1].max_tokens == 596
    assert gate.recorded == [0.012, 0.024, 0.036]
    assert len(gate.requested) == 4
    # Each request asks for spent + the call's estimate (a little over $0.01).
    assert 0.010 < gate.requested[0] < 0.0102
    assert gate.requested[2] <= 0.03 < gate.requested[3]
    assert "budget cannot cover" in error.message


def test_with_an_api_that_bills_at_most_max_tokens_the_gate_is_never_passed(run: Any) -> None:
    def reply(request: LLMRequest) -> ScriptedReply:
        return ScriptedReply("p", usage=Usage(len(request.prompt_text().encode()) // 3, min(1000, request.max_tokens)),
                             stop_reason="end_turn")

    gate = MemorySpendGate(limit_usd=0.03)
    meter = MeteredLLM(ScriptedProvider(reply), settings(), action_id="a.b", max_cost_usd=1.0, max_calls=100, gate=gate)
    error = run(loop_until_refused(meter))
    assert error.kind == "budget"
    assert 0.0295 < meter.spent_usd <= 0.03  # the room left was used, never passed
    assert meter.lowered_max_tokens and all(given < asked for asked, given in meter.lowered_max_tokens)


def test_failed_calls_count_and_billed_failures_cost(run: Any) -> None:
    rate_limited = LLMError("rate limited", kind="rate_limit", status_code=429)
    cut_off = ScriptedReply("partial", usage=Usage(100, 1000), stop_reason="max_tokens")
    provider = ScriptedProvider([rate_limited, cut_off, "fine"], usage=Usage(100, 100))
    sink = MemoryTranscriptSink()
    gate = MemorySpendGate()
    meter = MeteredLLM(provider, settings(), action_id="a.b", max_cost_usd=1.0, max_calls=3,
                       gate=gate, transcripts=sink)

    async def three_calls() -> list[str]:
        kinds = []
        for _ in range(3):
            try:
                await meter.complete("go")
                kinds.append("ok")
            except LLMError as exc:
                kinds.append(exc.kind)
        return kinds

    assert run(three_calls()) == ["rate_limit", "cut_off", "ok"]
    assert meter.calls == 3
    # cut off: 100 * 2 + 1000 * 10 = 10200; fine: 100 * 2 + 100 * 10 = 1200 (micro-dollars)
    assert meter.spent_usd == 0.0114
    assert gate.recorded == [0.0, 0.0102, 0.0114]
    errors = [r["error"]["kind"] if r["error"] else None for r in sink.records.values()]
    assert errors == ["rate_limit", "cut_off", None]


def test_a_reply_whose_cost_is_no_amount_is_charged_at_its_estimate_never_as_a_refund(run: Any) -> None:
    # Negative usage from a provider (or a bug in one) priced to a negative cost used to reach the ledger,
    # where settling it failed the unit and every later restart.
    provider = ScriptedProvider([ScriptedReply("ok", usage=Usage(-1_000_000, 5)), "fine"], usage=Usage(100, 100))
    gate = MemorySpendGate()
    sink = MemoryTranscriptSink()
    meter = MeteredLLM(provider, settings(), action_id="a.b", max_cost_usd=1.0, max_calls=2, gate=gate, transcripts=sink)

    with pytest.raises(LLMError) as caught:
        run(meter.complete("go"))

    assert caught.value.kind == "malformed_response" and "is not an amount" in str(caught.value)
    assert meter.spent_usd > 0 and all(total >= 0 for total in gate.recorded)  # its estimate, charged
    first = meter.spent_usd
    assert run(meter.complete("again")).text == "fine"
    assert meter.spent_usd == pytest.approx(first + 0.0012)
    assert [r["error"]["kind"] if r["error"] else None for r in sink.records.values()] == ["malformed_response", None]


def test_transcripts_are_saved_with_everything_needed(run: Any) -> None:
    sink = MemoryTranscriptSink()
    fixed = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    provider = ScriptedProvider(["Dear diary."], usage=Usage(40, 8))
    meter = MeteredLLM(provider, settings("claude-haiku-5-5"), action_id="journal.daily", max_cost_usd=1.0,
                       max_calls=1, transcripts=sink, run_key="unit-7/attempt-1", clock=lambda: fixed)

    response = run(meter.complete("Write today's entry.", system="You are Cass."))
    with pytest.raises(LLMError):
        run(meter.complete("Again."))

    assert meter.transcript_ids == ["t1", "t2"]
    first, refused = sink.records["t1"], sink.records["t2"]
    assert first["action_id"] == "journal.daily"
    assert first["run_key"] == "unit-7/attempt-1"
    assert first["call"] == 1 and first["refused"] is False
    assert first["provider"] == "scripted" and first["model"] == "claude-haiku-5-5"
    assert first["request"]["system"] == "You are Cass."
    assert first["request"]["messages"] == [{"role": "user", "content": "Write today's entry."}]
    assert first["request"]["max_tokens"] == 1000
    assert first["response"]["text"] == "Dear diary." == response.text
    assert first["usage"]["input_tokens"] == 40 and first["usage"]["output_tokens"] == 8
    assert first["cost_usd"] == pytest.approx((40 * 0.10 + 8 * 0.50) / 1e6)
    assert first["started_at"] == first["finished_at"] == "2026-11-03T09:30:00+00:00"
    assert first["error"] is None
    assert refused["refused"] is True and refused["error"]["kind"] == "call_cap"
    assert refused["response"] is None and refused["cost_usd"] == 0.0


class Mood(BaseModel):
    name: str
    level: int


def test_structured_calls_are_metered_too(run: Any) -> None:
    provider = ScriptedProvider([{"name": "calm", "level": 3}], usage=Usage(500, 50))
    meter = MeteredLLM(provider, settings("claude-haiku-5-5", max_tokens=200), action_id="a.b",
                       max_cost_usd=1.0, max_calls=2)

    mood = run(meter.structured("How do I feel?", Mood))

    assert mood == Mood(name="calm", level=3)
    assert meter.spent_usd == round((500 * 0.10 + 50 * 0.50) / 1e6, 6)
    assert isinstance(meter.last_response, LLMResponse)


def test_concurrent_calls_reserve_their_estimates(run: Any) -> None:
    class Slow(ScriptedProvider):
        async def complete(self, request: LLMRequest) -> LLMResponse:
            await asyncio.sleep(0.01)  # let the other tasks reach the meter meanwhile
            return await super().complete(request)

    provider = Slow(["x"], cycle=True, usage=Usage(1000, 1000))
    meter = MeteredLLM(provider, settings(), action_id="a.b", max_cost_usd=0.035, max_calls=100)

    async def five_at_once() -> list[Any]:
        return await asyncio.gather(*(meter.complete("go") for _ in range(5)), return_exceptions=True)

    results = run(five_at_once())

    # Estimates of ~$0.01 each: three fit under $0.035 at once, the fourth does not.
    assert [isinstance(r, LLMError) for r in results] == [False, False, False, True, True]
    assert provider.calls == 3
    assert meter.spent_usd == 0.036  # actual costs may overshoot the estimate; the cap stops the next call


def test_estimate_is_conservative(run: Any) -> None:
    provider = ScriptedProvider(["x"])
    meter = MeteredLLM(provider, settings(max_tokens=100), action_id="a.b", max_cost_usd=1.0, max_calls=1)
    text = "é" * 300  # 600 UTF-8 bytes
    # At least ceil(600 / 3) = 200 input tokens at $2 plus 100 output tokens at $10.
    assert meter.estimate_usd(text) >= (200 * 2 + 100 * 10) / 1e6


def test_prompt_caching_is_estimated_at_the_write_rate() -> None:
    meter = MeteredLLM(ScriptedProvider([]), settings(max_tokens=1), action_id="a.b", max_cost_usd=1.0, max_calls=1)
    plain = meter.estimate_usd("x" * 3000, system="y" * 3000)
    cached = meter.estimate_usd("x" * 3000, system=[{"type": "text", "text": "y" * 3000,
                                                      "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    # 1h write is 2x the input price on Sonnet 5.5.
    assert cached > plain * 1.9


def test_metered_action_against_the_real_sdk_and_fake_server(run: Any, fake: Any) -> None:
    from cass_actions_core.llm.anthropic_provider import AnthropicProvider

    for _ in range(10):
        fake.reply_text("more", usage=usage(2000, 300, cache_read=5000))
    provider = AnthropicProvider(LLMSettings(base_url=fake.url, max_retries=0), api_key="test-key")
    eff = EffectiveLLMSettings.from_llm_settings(LLMSettings(model="claude-haiku-5-5", max_tokens=400))
    meter = MeteredLLM(provider, eff, action_id="journal.loop", max_cost_usd=0.0011, max_calls=50)

    async def main() -> LLMError:
        try:
            return await loop_until_refused(meter)
        finally:
            await provider.aclose()

    error = run(main())

    # Haiku 5.5 per call: 2000 * 0.10 + 300 * 0.50 + 5000 * 0.01 = 400 micro-dollars.
    # The estimate is about 400 * 0.50 = 200 micro-dollars (max_tokens output) plus a
    # little input: the 3rd call may start at $0.0008 spent (0.0008 + ~0.0002 <= 0.0011),
    # the 4th may not ($0.0012 + ~0.0002 > 0.0011).
    assert error.kind == "cost_cap"
    assert len(fake.message_requests) == 3
    assert meter.spent_usd == 0.0012


def test_a_call_cancelled_in_flight_is_charged_its_estimate(run: Any) -> None:
    class Hanging(ScriptedProvider):
        async def complete(self, request: LLMRequest) -> LLMResponse:
            await asyncio.sleep(10)  # sent, but the handler's timeout fires first
            return await super().complete(request)

    sink = MemoryTranscriptSink()
    gate = MemorySpendGate()
    provider = Hanging(["never"], usage=Usage(1000, 1000))
    meter = MeteredLLM(provider, settings(), action_id="a.b", max_cost_usd=1.0, max_calls=5,
                       gate=gate, transcripts=sink)
    estimate = meter.estimate_usd("go")

    async def timed_out() -> None:
        await asyncio.wait_for(meter.complete("go"), 0.1)

    with pytest.raises(TimeoutError):
        run(timed_out())

    assert estimate > 0
    assert meter.calls == 1
    assert meter.spent_usd == estimate
    assert gate.recorded == [estimate]
    (record,) = sink.records.values()
    assert record["cancelled"] is True and record["refused"] is False
    assert record["cost_usd"] == estimate == record["spent_usd"]
    assert record["error"]["kind"] == "cancelled"


def test_a_cancelled_call_still_raises_cancellation(run: Any) -> None:
    class Hanging(ScriptedProvider):
        async def complete(self, request: LLMRequest) -> LLMResponse:
            await asyncio.sleep(10)
            return await super().complete(request)

    meter = MeteredLLM(Hanging(["never"]), settings(), action_id="a.b", max_cost_usd=1.0, max_calls=5)

    async def cancel_it() -> bool:
        task = asyncio.create_task(meter.complete("go"))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert run(cancel_it()) is True
    assert meter.spent_usd == meter.estimate_usd("go")
