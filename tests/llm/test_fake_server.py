"""The fake Messages API itself: recording, routes, headers, streaming, lifecycle."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from cass_actions_core.llm.base import LLMRequest
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.testing.fake_anthropic import FakeAnthropic, FakeReply, usage


def raw_post(fake: FakeAnthropic, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json", "x-test": "yes"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data)
    finally:
        conn.close()


def test_replies_in_order_with_request_id_and_content_length(fake: FakeAnthropic) -> None:
    fake.reply_text("one", usage=usage(7, 3, cache_write_1h=11, cache_read=13))
    fake.reply_error(429, "rate_limit_error", "slow down", headers={"retry-after-ms": "10"})

    status1, headers1, body1 = raw_post(fake, "/v1/messages", {"model": "claude-sonnet-5-5", "messages": []})
    status2, headers2, body2 = raw_post(fake, "/v1/messages", {"model": "claude-sonnet-5-5", "messages": []})

    assert status1 == 200
    assert body1["content"] == [{"type": "text", "text": "one"}]
    assert body1["model"] == "claude-sonnet-5-5"
    assert body1["usage"] == {"input_tokens": 7, "output_tokens": 3, "cache_creation_input_tokens": 11,
                              "cache_read_input_tokens": 13,
                              "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 11}}
    assert headers1["request-id"] == "req_fake_000001"
    assert int(headers1["content-length"]) > 0
    assert status2 == 429
    assert body2["error"] == {"type": "rate_limit_error", "message": "slow down"}
    assert headers2["retry-after-ms"] == "10"
    assert headers2["request-id"] == "req_fake_000002"
    assert fake.pending == 0


def test_requests_are_recorded_with_headers_and_parsed_body(fake: FakeAnthropic) -> None:
    fake.reply_text("x")
    raw_post(fake, "/v1/messages", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})

    (recorded,) = fake.requests
    assert recorded.method == "POST"
    assert recorded.path == "/v1/messages"
    assert recorded.header("X-Test") == "yes"
    assert recorded.body == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_count_tokens_and_unknown_routes(fake: FakeAnthropic) -> None:
    fake.count_tokens_result = 99
    assert raw_post(fake, "/v1/messages/count_tokens", {"messages": []})[2] == {"input_tokens": 99}
    status, _, body = raw_post(fake, "/v1/v1/messages", {})
    assert status == 404 and body["error"]["type"] == "not_found_error"
    assert [r.path for r in fake.requests] == ["/v1/messages/count_tokens", "/v1/v1/messages"]
    assert fake.message_requests == []


def test_an_unscripted_request_fails_fast_with_a_clear_message(sdk: Any, fake: FakeAnthropic) -> None:
    provider = sdk.provider(max_retries=2)
    req = LLMRequest(model="claude-haiku-5-5", messages=[{"role": "user", "content": "hi"}], max_tokens=10)

    with pytest.raises(LLMError) as caught:
        sdk.run(provider, lambda: provider.complete(req))

    assert caught.value.kind == "bad_request"
    assert "no reply scripted for request #1" in caught.value.message
    assert len(fake.requests) == 1


def test_fallback_reply_answers_when_the_queue_is_empty() -> None:
    fallback = FakeReply(200, message={"content": [{"type": "text", "text": "always"}], "stop_reason": "end_turn",
                                       "usage": usage(1, 1)})
    with FakeAnthropic(fallback=fallback) as fake:
        for _ in range(3):
            assert raw_post(fake, "/v1/messages", {"model": "m"})[2]["content"][0]["text"] == "always"


def test_streaming_reply_works_with_the_sdk(fake: FakeAnthropic, run: Any) -> None:
    import anthropic

    fake.reply_text("streamed words", usage=usage(12, 4))

    async def main() -> Any:
        client = anthropic.AsyncAnthropic(api_key="test-key", base_url=fake.url, max_retries=0)
        try:
            async with client.messages.stream(model="claude-haiku-5-5", max_tokens=50,
                                              messages=[{"role": "user", "content": "go"}]) as stream:
                return await stream.get_final_message()
        finally:
            await client.close()

    message = run(main())
    assert message.content[0].text == "streamed words"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 4)
    assert fake.last_request.body["stream"] is True


def test_closing_releases_the_port() -> None:
    fake = FakeAnthropic().start()
    port = fake.port
    fake.close()
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.url
