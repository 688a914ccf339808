"""The ``anthropic`` provider driving the REAL SDK against the fake Messages API.

Nothing here patches the SDK: the provider builds a real ``AsyncAnthropic`` client
whose ``base_url`` is the fake server's root URL. Expected costs are computed by hand
from the published per-MTok prices (anthropic-sdk.md section 6), not from the code's
own table.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from cass_actions_core.config import LLMSettings, ModelPrice
from cass_actions_core.llm.anthropic_provider import AnthropicProvider, usage_from_sdk
from cass_actions_core.llm.base import LLMRequest, Usage
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.testing.fake_anthropic import usage, unused_port


class Entry(BaseModel):
    """A journal entry (the structured output under test)."""

    title: str
    mood: Literal["calm", "curious", "tired"]
    tags: list[str] = Field(min_length=1)
    words: int = Field(ge=0)


ENTRY = {"title": "A quiet morning", "mood": "curious", "tags": ["garden"], "words": 120}

# USD per million tokens, typed in from the published table (as of 2026-11).
HAIKU_55 = {"input": 0.10, "write_5m": 0.125, "write_1h": 0.20, "read": 0.01, "output": 0.50}
SONNET_55 = {"input": 2.00, "write_5m": 2.50, "write_1h": 4.00, "read": 0.20, "output": 10.00}


def request(model: str = "claude-haiku-5-5", **kwargs: Any) -> LLMRequest:
    values: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Write today's journal entry."}],
        "max_tokens": 800,
        "system": "You are Cass. You keep a journal.",
        "effort": "low",
    }
    values.update(kwargs)
    return LLMRequest(**values)


def test_structured_reply_is_parsed_into_the_model(sdk: Any, fake: Any) -> None:
    fake.reply_json(ENTRY, usage=usage(250, 40))
    provider = sdk.provider()

    result = sdk.run(provider, lambda: provider.structured(request(), Entry))

    assert result.value == Entry(**ENTRY)
    assert result.response.provider == "anthropic"
    assert result.response.model == "claude-haiku-5-5"
    assert result.response.stop_reason == "end_turn"
    assert result.response.request_id == "req_fake_000001"
    assert result.response.usage == Usage(input_tokens=250, output_tokens=40)


def test_request_body_uses_structured_outputs_not_tools_or_sampling(sdk: Any, fake: Any) -> None:
    fake.reply_json(ENTRY)
    provider = sdk.provider()

    sdk.run(provider, lambda: provider.structured(request(), Entry))

    (sent,) = fake.message_requests
    body = sent.body
    assert body["output_config"]["format"]["type"] == "json_schema"
    schema = body["output_config"]["format"]["schema"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"title", "mood", "tags", "words"}
    assert schema["properties"]["mood"]["enum"] == ["calm", "curious", "tired"]
    assert body["output_config"]["effort"] == "low"
    # No forced tool, no sampling parameters, no prefill.
    for forbidden in ("tools", "tool_choice", "temperature", "top_p", "top_k"):
        assert forbidden not in body
    assert body["messages"][-1]["role"] == "user"
    assert body["system"] == "You are Cass. You keep a journal."
    assert body["model"] == "claude-haiku-5-5"
    assert body["max_tokens"] == 800
    assert sent.header("authorization") == "Bearer test-key"
    assert sent.header("anthropic-version")


def test_text_completion_sends_effort_without_a_format(sdk: Any, fake: Any) -> None:
    fake.reply_text("Dear diary, the garden was loud with bees.", usage=usage(30, 12))
    provider = sdk.provider()

    response = sdk.run(provider, lambda: provider.complete(request(effort="medium")))

    assert response.text == "Dear diary, the garden was loud with bees."
    assert fake.last_request.body["output_config"] == {"effort": "medium"}


def test_haiku_cost_with_cache_writes_and_reads(sdk: Any, fake: Any) -> None:
    fake.reply_text("ok", usage=usage(1000, 500, cache_write_5m=2000, cache_write_1h=4000, cache_read=10000))
    provider = sdk.provider()

    response = sdk.run(provider, lambda: provider.complete(request("claude-haiku-5-5")))

    p = HAIKU_55
    expected = (1000 * p["input"] + 500 * p["output"] + 2000 * p["write_5m"] + 4000 * p["write_1h"]
                + 10000 * p["read"]) / 1_000_000
    assert expected == pytest.approx(0.0015)
    assert response.cost_usd == pytest.approx(expected, abs=1e-12)
    assert response.usage == Usage(1000, 500, 2000, 4000, 10000)


def test_sonnet_cost_with_cache_writes_and_reads(sdk: Any, fake: Any) -> None:
    fake.reply_text("ok", usage=usage(1000, 500, cache_write_5m=2000, cache_write_1h=4000, cache_read=10000))
    provider = sdk.provider()

    response = sdk.run(provider, lambda: provider.complete(request("claude-sonnet-5-5")))

    p = SONNET_55
    expected = (1000 * p["input"] + 500 * p["output"] + 2000 * p["write_5m"] + 4000 * p["write_1h"]
                + 10000 * p["read"]) / 1_000_000
    assert expected == pytest.approx(0.03)
    assert response.cost_usd == pytest.approx(expected, abs=1e-12)
    assert response.model == "claude-sonnet-5-5"


def test_cache_creation_without_breakdown_is_charged_at_the_5m_rate(sdk: Any, fake: Any) -> None:
    fake.reply_text("ok", usage=usage(1000, 500, cache_write_5m=2000, cache_write_1h=4000, cache_read=10000,
                                      split_cache=False))
    provider = sdk.provider()

    response = sdk.run(provider, lambda: provider.complete(request("claude-haiku-5-5")))

    p = HAIKU_55
    # All 6000 cache-creation tokens at the 5-minute write price.
    expected = (1000 * p["input"] + 500 * p["output"] + 6000 * p["write_5m"] + 10000 * p["read"]) / 1_000_000
    assert response.usage.cache_write_5m_tokens == 6000
    assert response.usage.cache_write_1h_tokens == 0
    assert response.cost_usd == pytest.approx(expected, abs=1e-12)


def test_null_cache_fields_count_as_zero(sdk: Any, fake: Any) -> None:
    body = ('{"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5", '
            '"content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": null, '
            '"usage": {"input_tokens": 100, "output_tokens": 10, "cache_creation_input_tokens": null, '
            '"cache_read_input_tokens": null}}')
    fake.reply_raw(200, body)
    provider = sdk.provider()

    response = sdk.run(provider, lambda: provider.complete(request("claude-sonnet-5-5")))

    assert response.usage == Usage(input_tokens=100, output_tokens=10)
    assert response.cost_usd == pytest.approx((100 * 2.00 + 10 * 10.00) / 1_000_000, abs=1e-12)


@pytest.mark.parametrize("tokens", [-1_000_000, 12.5, "lots"])
def test_usage_that_is_no_token_count_makes_the_reply_unreadable_not_a_negative_bill(sdk: Any, fake: Any, tokens: Any) -> None:
    fake.reply_text("ok", usage={"input_tokens": tokens, "output_tokens": 5})
    provider = sdk.provider()

    with pytest.raises(LLMError) as caught:
        sdk.run(provider, lambda: provider.complete(request()))

    assert caught.value.kind == "malformed_response"  # sent and maybe billed: the meter charges its estimate
    assert f"a token count of {tokens!r}" in str(caught.value)


def test_config_price_override_is_used(sdk: Any, fake: Any) -> None:
    fake.reply_text("ok", usage=usage(1_000_000, 1_000_000))
    provider = sdk.provider(prices={"claude-haiku-5-5": ModelPrice(input=3.0, output=7.0)})

    response = sdk.run(provider, lambda: provider.complete(request("claude-haiku-5-5")))

    assert response.cost_usd == pytest.approx(10.0)


def test_429_is_retried_once_by_the_sdk(sdk: Any, fake: Any) -> None:
    fake.reply_rate_limit(retry_after_ms=10)
    fake.reply_text("second time lucky", usage=usage(20, 5))
    provider = sdk.provider(max_retries=2)

    response = sdk.run(provider, lambda: provider.complete(request()))

    assert response.text == "second time lucky"
    retry_counts = [r.header("x-stainless-retry-count") for r in fake.message_requests]
    assert retry_counts == ["0", "1"]
    assert response.request_id == "req_fake_000002"


def test_a_429_asking_for_a_long_wait_fails_at_once_with_its_wait_for_the_scheduler(sdk: Any, fake: Any) -> None:
    # The SDK would sleep for the hour asked inside the call, until the step's timeout ended it as a failure.
    fake.reply_rate_limit(retry_after_ms=3_600_000, times=3)
    provider = sdk.provider(max_retries=2)

    with pytest.raises(LLMError) as caught:
        sdk.run(provider, lambda: provider.complete(request()))

    assert len(fake.message_requests) == 1  # not retried in the call
    error = caught.value
    assert (error.kind, error.retryable, error.retry_after_seconds) == ("rate_limit", True, 3600.0)


def test_overloaded_after_all_retries_is_retryable_and_says_so(sdk: Any, fake: Any) -> None:
    fake.reply_overloaded(retry_after_ms=10, times=3)
    provider = sdk.provider(max_retries=2)

    with pytest.raises(LLMError) as caught:
        sdk.run(provider, lambda: provider.complete(request()))

    error = caught.value
    assert len(fake.message_requests) == 3  # 1 + max_retries, and no extra layer on top
    assert error.kind == "overloaded"
    assert error.retryable is True
    assert error.status_code == 529
    assert error.request_id == "req_fake_000003"
    assert "(HTTP 529, request id req_fake_000003, 3 attempts)" in error.message
    assert "claude-haiku-5-5" in error.message


def test_400_is_not_retried_and_is_reported_clearly(sdk: Any, fake: Any) -> None:
    fake.reply_error(400, "invalid_request_error", "max_tokens: must be at most 64000")
    provider = sdk.provider(max_retries=2)

    with pytest.raises(LLMError) as caught:
        sdk.run(provider, lambda: provider.complete(request()))

    error = caught.value
    assert len(fake.message_requests) == 1
    assert error.kind == "bad_request"
    assert error.retryable is False
    assert error.status_code == 400
    assert error.request_id == "req_fake_000001"
    assert error.message == (
        "anthropic call to claude-haiku-5-5 failed: the API rejected the request as invalid "
        "(HTTP 400, request id req_fake_000001): invalid_request_error: max_tokens: must be at most 64000."
    )
    assert "\n" not in error.message


@pytest.mark.parametrize(
    ("status", "error_type", "kind", "retryable"),
    [
        (401, "authentication_error", "auth", False),
        (403, "permission_error", "auth", False),
        (404, "not_found_error", "not_found", False),
        (413, "request_too_large", "too_large", False),
        (422, "invalid_request_error", "unprocessable", False),
        (500, "api_error", "server_error", True),
    ],
)
def test_status_errors_are_classified(sdk: Any, fake: Any, status: int, error_type: str, kind: str, retryable: bool) -> None:
    fake.reply_error(status, error_type, "nope")
    provider = sdk.provider(max_retries=0)

    with pytest.raises(LLMError) as caught:
        sdk.run(provider, lambda: provider.complete(request()))

    assert (caught.value.kind, caught.value.retryable, caught.value.status_code) == (kind, retryable, status)
    assert f"HTTP {status}" in caught.value.message


def test_cut_off_reply_is_reported_and_still_billed(sdk: Any, fake: Any) -> None:
    fake.reply_cut_off('{"title": "A quiet', usage=usage(200, 800))
    provider = sdk.provider()

    with pytest.raises(LLMError) as caught:
        sdk.run(provider, lambda: provider.structured(request(max_tokens=800), Entry))

    error = caught.value
    assert error.kind == "cut_off"
    assert error.retryable is False
    assert "cut off at max_tokens" in error.message
    assert error.request_id == "req_fake_000001"
    assert error.response is not None
    assert error.response.cost_usd == pytest.approx((200 * 0.10 + 800 * 0.50) / 1_000_000, abs=1e-12)


def test_refusal_is_reported_as_refusal(sdk: Any, fake: Any) -> None:
    fake.reply_refusal(usage=usage(200, 9))
    provider = sdk.provider()

    with pytest.raises(LLMError) as caught:
        sdk.run(provider, lambda: provider.complete(request()))

    assert caught.value.kind == "refusal"
    assert "refused" in caught.value.message
    assert caught.value.response is not None and caught.value.response.usage.output_tokens == 9


def test_json_not_matching_the_model_is_invalid_output(sdk: Any, fake: Any) -> None:
    fake.reply_json({"title": "x", "mood": "furious", "tags": ["a"], "words": 3})
    provider = sdk.provider()

    with pytest.raises(LLMError) as caught:
        sdk.run(provider, lambda: provider.structured(request(), Entry))

    assert caught.value.kind == "invalid_output"
    assert "Entry rejected mood" in caught.value.message


def test_connection_refused_is_reported_as_such() -> None:
    import asyncio

    port = unused_port()
    provider = AnthropicProvider(LLMSettings(base_url=f"http://127.0.0.1:{port}", max_retries=0), api_key="test-key")

    async def main() -> None:
        try:
            await provider.complete(request())
        finally:
            await provider.aclose()

    with pytest.raises(LLMError) as caught:
        asyncio.run(main())

    assert caught.value.kind == "connection"
    assert caught.value.retryable is True
    assert caught.value.message == (
        f"anthropic call to claude-haiku-5-5 failed: could not connect to the API: "
        f"http://127.0.0.1:{port}/ refused the connection."
    )


def test_slow_reply_times_out(sdk: Any, fake: Any) -> None:
    fake.reply_text("too late", delay=1.0)
    provider = sdk.provider(timeout_seconds=0.2, max_retries=0)

    with pytest.raises(LLMError) as caught:
        sdk.run(provider, lambda: provider.complete(request()))

    assert caught.value.kind == "timeout"
    assert caught.value.retryable is True


def test_a_call_whose_every_attempt_timed_out_is_charged_once_per_attempt(sdk: Any, fake: Any) -> None:
    # The SDK retries a timeout: each request went out and may have been billed, not only the last one.
    from cass_actions_core.llm.base import EffectiveLLMSettings
    from cass_actions_core.llm.metered import MeteredLLM
    from cass_actions_core.llm.scripted import MemorySpendGate, MemoryTranscriptSink

    fake.reply_text("too late", delay=1.0, times=3)
    provider = sdk.provider(timeout_seconds=0.2, max_retries=2)
    settings = EffectiveLLMSettings.from_llm_settings(LLMSettings(model="claude-haiku-5-5", max_tokens=100))
    gate, sink = MemorySpendGate(), MemoryTranscriptSink()
    meter = MeteredLLM(provider, settings, action_id="a.b", max_cost_usd=1.0, max_calls=1, gate=gate, transcripts=sink)
    one_attempt = meter.estimate_usd("hello")

    with pytest.raises(LLMError) as caught:
        sdk.run(provider, lambda: meter.complete("hello"))

    assert caught.value.kind == "timeout" and caught.value.attempts == 3
    assert len(fake.message_requests) == 3
    assert meter.spent_usd == pytest.approx(3 * one_attempt) and gate.recorded[-1] == meter.spent_usd
    (record,) = sink.records.values()
    assert record["cost_usd"] == pytest.approx(3 * one_attempt) and record["error"]["attempts"] == 3


def test_missing_key_is_a_clear_error_and_sends_nothing(fake: Any, run: Any) -> None:
    provider = AnthropicProvider(LLMSettings(base_url=fake.url))

    with pytest.raises(LLMError) as caught:
        run(provider.complete(request()))

    assert caught.value.kind == "no_api_key"
    assert "ANTHROPIC_API_KEY" in caught.value.message
    assert fake.requests == []


def test_key_and_base_url_come_from_the_environment(fake: Any, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    fake.reply_text("hello")
    provider = AnthropicProvider(LLMSettings(max_retries=0))

    async def main() -> str:
        try:
            return (await provider.complete(request())).text
        finally:
            await provider.aclose()

    assert run(main()) == "hello"
    assert fake.last_request.header("authorization") == "Bearer env-key"


def test_auth_token_is_used_when_no_api_key(fake: Any, run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "token-1")
    fake.reply_text("hello")
    provider = AnthropicProvider(LLMSettings(base_url=fake.url, max_retries=0))

    async def main() -> None:
        try:
            await provider.complete(request())
        finally:
            await provider.aclose()

    run(main())
    assert fake.last_request.header("authorization") == "Bearer token-1"


def test_prefill_is_refused_before_sending() -> None:
    from cass_actions_core.llm.base import normalize_messages

    with pytest.raises(LLMError) as caught:
        normalize_messages([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "{"}])
    assert caught.value.kind == "bad_request"
    assert "prefill" in caught.value.message


def test_count_tokens_uses_the_count_endpoint(sdk: Any, fake: Any) -> None:
    fake.count_tokens_result = 42
    provider = sdk.provider()

    assert sdk.run(provider, lambda: provider.count_tokens(request())) == 42
    assert fake.last_request.path == "/v1/messages/count_tokens"
    assert "max_tokens" not in fake.last_request.body


def test_usage_from_sdk_handles_missing_usage() -> None:
    assert usage_from_sdk(None) == Usage()
