"""A fake Anthropic Messages API on 127.0.0.1 that the real ``anthropic`` SDK can talk to.

HTTP-mocking libraries (respx, pytest-httpx) patch ``httpx``, which the SDK 2.x does
not use, so tests drive the real SDK against a real local server instead. This one
is standard library only (:class:`http.server.ThreadingHTTPServer` on an ephemeral
port), so pack authors can use it in their own test suites::

    from cass_actions_core.testing.fake_anthropic import FakeAnthropic, usage

    with FakeAnthropic() as fake:
        fake.reply_rate_limit(retry_after_ms=10)          # first request: 429
        fake.reply_json({"title": "Hello"}, usage=usage(120, 30, cache_read=1000))
        client = anthropic.AsyncAnthropic(api_key="test-key", base_url=fake.url)
        ...                                                # call the SDK
        assert [r.header("x-stainless-retry-count") for r in fake.requests] == ["0", "1"]

Replies are served first in, first out, one per request to ``POST /v1/messages``;
when the queue is empty the fallback reply answers (by default a 400 that says no
reply was scripted, which the SDK does not retry, so a missing script fails fast).
``POST /v1/messages/count_tokens`` answers ``{"input_tokens": N}`` without using
the queue. Every response carries ``content-length`` (the SDK keeps connections
alive) and a ``request-id`` header (``req_fake_000001``...), and every request is
recorded in :attr:`FakeAnthropic.requests` with its path, headers and parsed body.

A request with ``"stream": true`` gets the same scripted reply as server-sent
events, so ``messages.stream(...)`` works too.

Keep ``retry-after`` values tiny in tests: the SDK honours them without a cap.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["FakeAnthropic", "FakeReply", "RecordedRequest", "example_for_schema", "make_usage", "unused_port", "usage",
           "valid_reply"]


def usage(
    input_tokens: int = 10,
    output_tokens: int = 5,
    *,
    cache_write_5m: int = 0,
    cache_write_1h: int = 0,
    cache_read: int = 0,
    split_cache: bool = True,
) -> dict[str, Any]:
    """A ``usage`` object as the API sends it.

    ``cache_creation_input_tokens`` is the sum of both cache writes. With
    ``split_cache`` (the default) the ``cache_creation`` breakdown into
    ``ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens`` is included;
    without it the breakdown is left out, as older responses do.
    """
    body: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_write_5m + cache_write_1h,
        "cache_read_input_tokens": cache_read,
    }
    if split_cache:
        body["cache_creation"] = {
            "ephemeral_5m_input_tokens": cache_write_5m,
            "ephemeral_1h_input_tokens": cache_write_1h,
        }
    return body


#: Alias of :func:`usage` for code where a parameter named ``usage`` shadows it.
make_usage = usage


def unused_port() -> int:
    """A 127.0.0.1 port with nothing listening (for "connection refused" tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FakeReply:
    """One scripted reply.

    For ``status == 200`` ``message`` holds the Message fields to send (``content``,
    ``stop_reason``, ``usage`` and optionally ``model``; ``id``/``type``/``role`` are
    filled in). For an error status ``body`` is the JSON body. ``raw`` sends bytes as
    they are (malformed replies). ``delay`` seconds pass before the reply is written.
    """

    status: int = 200
    message: dict[str, Any] | None = None
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake received: method, path, headers (lower-case names), JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    received_at: float

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or ``None``."""
        return self.headers.get(name.lower())


def example_for_schema(schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """A small JSON value valid for ``schema`` (objects, arrays, enums, $ref/$defs, anyOf, strings, numbers)."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return example_for_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, depth + 1)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return example_for_schema(options[0], defs, depth + 1)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: example_for_schema(v, defs, depth + 1) for k, v in props.items()
                if k in schema.get("required", list(props)) and depth < 12}
    if kind == "array":
        item = schema.get("items", {"type": "string"})
        return [example_for_schema(item, defs, depth + 1) for _ in range(max(1, int(schema.get("minItems", 1))))]
    if kind == "string":
        return "x" * max(int(schema.get("minLength", 0)), 1) if "minLength" in schema else "a fake reply"
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return int(low) + (1 if "exclusiveMinimum" in schema else 0) if kind == "integer" else float(low)
    if kind == "boolean":
        return False
    return None


def valid_reply(request: RecordedRequest, *, text: str = "A fake reply.", usage_: Mapping[str, Any] | None = None) -> FakeReply:
    """A 200 reply ``request`` accepts: JSON valid for its structured-output schema if it asked for one, else ``text``."""
    body = request.body if isinstance(request.body, dict) else {}
    schema = ((body.get("output_config") or {}).get("format") or {}).get("schema")
    content = json.dumps(example_for_schema(schema)) if schema else text
    return FakeReply(200, message={"content": [{"type": "text", "text": content}], "stop_reason": "end_turn",
                                   "usage": dict(usage_ or make_usage(10, max(1, math.ceil(len(content) / 4))))})


class FakeAnthropic:
    """A scripted Messages API server on 127.0.0.1; use as a context manager.

    Args:
        model: the ``model`` reported in replies (default: echo the request's model).
        fallback: the reply used when the queue is empty (default: a 400 error).
        responder: ``fn(request) -> FakeReply | None`` consulted when the queue is empty, before
            ``fallback``: for long runs whose requests cannot be scripted one by one (fault
            soaks, rehearsals). :func:`valid_reply` builds a reply any request accepts.
    """

    def __init__(self, *, model: str | None = None, fallback: FakeReply | None = None,
                 responder: Callable[[RecordedRequest], FakeReply | None] | None = None) -> None:
        self.model = model
        self.fallback = fallback
        self.responder = responder
        #: Reply to ``/v1/messages/count_tokens`` (``None``: a chars/4 estimate of the body).
        self.count_tokens_result: int | None = None
        self._queue: deque[FakeReply] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> FakeAnthropic:
        """Bind to 127.0.0.1 on a free port and serve in a background thread."""
        if self._server is not None:
            return self
        fake = self

        class Handler(_Handler):
            owner = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True  # a slow reply must not keep the test process alive
        self._server = server
        # A short poll interval: shutdown() waits for one, and tests start many servers.
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not started; use it as a context manager or call start()")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The root URL to pass as ``base_url`` (no ``/v1``: the SDK adds it)."""
        return f"http://127.0.0.1:{self.port}"

    # -- scripting -----------------------------------------------------------------

    def enqueue(self, reply: FakeReply, times: int = 1) -> None:
        """Queue ``reply`` to answer the next ``times`` message requests."""
        with self._lock:
            self._queue.extend(reply for _ in range(times))

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        with self._lock:
            return len(self._queue)

    def reply_message(
        self,
        content: list[dict[str, Any]],
        *,
        stop_reason: str = "end_turn",
        usage: Mapping[str, Any] | None = None,
        model: str | None = None,
        delay: float = 0.0,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Queue a 200 reply with the given content blocks.

        ``usage`` defaults to 10 input tokens and ceil(len(text)/4) output tokens
        (at least 1), with no cache use.
        """
        if usage is None:
            text = "".join(str(b.get("text", "")) + json.dumps(b.get("input", "")) for b in content)
            usage = make_usage(10, max(1, math.ceil(len(text) / 4)))
        message = {"content": content, "stop_reason": stop_reason, "usage": dict(usage)}
        if model is not None:
            message["model"] = model
        self.enqueue(FakeReply(200, message=message, headers=dict(headers or {}), delay=delay), times)

    def reply_text(self, text: str, **kwargs: Any) -> None:
        """Queue a text reply (keyword arguments as for :meth:`reply_message`)."""
        self.reply_message([{"type": "text", "text": text}], **kwargs)

    def reply_json(self, obj: Any, **kwargs: Any) -> None:
        """Queue a structured-output reply: ``obj`` (JSON-able or a pydantic model) as text."""
        if hasattr(obj, "model_dump_json"):
            text = obj.model_dump_json()
        else:
            text = json.dumps(obj)
        self.reply_text(text, **kwargs)

    def reply_tool_use(self, name: str, input: Mapping[str, Any], **kwargs: Any) -> None:
        """Queue a ``tool_use`` reply (stop reason ``tool_use``)."""
        kwargs.setdefault("stop_reason", "tool_use")
        block = {"type": "tool_use", "id": f"toolu_fake_{self._counter + self.pending + 1}", "name": name, "input": dict(input)}
        self.reply_message([block], **kwargs)

    def reply_cut_off(self, text: str = '{"title": "An unfinished', **kwargs: Any) -> None:
        """Queue a reply cut off at ``max_tokens`` (truncated text, stop reason ``max_tokens``)."""
        kwargs["stop_reason"] = "max_tokens"
        self.reply_text(text, **kwargs)

    def reply_refusal(self, text: str = "I can't help with that.", **kwargs: Any) -> None:
        """Queue a refusal (stop reason ``refusal``)."""
        kwargs["stop_reason"] = "refusal"
        self.reply_text(text, **kwargs)

    def reply_error(
        self,
        status: int,
        type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """Queue an API error: ``{"type": "error", "error": {"type": ..., "message": ...}}``."""
        body = {"type": "error", "error": {"type": type, "message": message}}
        self.enqueue(FakeReply(status, body=body, headers=dict(headers or {}), delay=delay), times)

    def reply_rate_limit(self, *, retry_after_ms: int = 10, message: str = "Number of requests has exceeded your rate limit.", times: int = 1) -> None:
        """Queue a 429 ``rate_limit_error`` with a (tiny) ``retry-after-ms`` header."""
        self.reply_error(429, "rate_limit_error", message, headers={"retry-after-ms": str(retry_after_ms)}, times=times)

    def reply_overloaded(self, *, retry_after_ms: int = 10, message: str = "Overloaded", times: int = 1) -> None:
        """Queue a 529 ``overloaded_error`` with a (tiny) ``retry-after-ms`` header."""
        self.reply_error(529, "overloaded_error", message, headers={"retry-after-ms": str(retry_after_ms)}, times=times)

    def reply_raw(
        self,
        status: int,
        body: bytes | str,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        delay: float = 0.0,
    ) -> None:
        """Queue a reply sent byte for byte (for malformed or unusual responses)."""
        raw = body.encode("utf-8") if isinstance(body, str) else body
        self.enqueue(FakeReply(status, raw=raw, headers=dict(headers or {}), delay=delay, content_type=content_type))

    # -- inspection ----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """The requests to ``/v1/messages`` (not ``count_tokens``)."""
        return [r for r in self.requests if r.path.split("?", 1)[0] == "/v1/messages"]

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request (``IndexError`` if none)."""
        return self.requests[-1]

    # -- serving (called from the handler threads) ----------------------------------

    def _record(self, request: RecordedRequest) -> int:
        with self._lock:
            self._requests.append(request)
            self._counter += 1
            return self._counter

    def _next_reply(self, number: int, request: RecordedRequest | None = None) -> FakeReply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None and request is not None:
            reply = self.responder(request)
            if reply is not None:
                return reply
        if self.fallback is not None:
            return self.fallback
        return FakeReply(
            400,
            body={"type": "error", "error": {"type": "invalid_request_error",
                                             "message": f"FakeAnthropic: no reply scripted for request #{number}"}},
        )


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection for :class:`FakeAnthropic` (``owner`` is set per server)."""

    owner: FakeAnthropic
    # HTTP/1.1 so the SDK's keep-alive connections work; requires content-length.
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: test output is not the place for access logs."""

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        recorded = RecordedRequest(self.command, self.path, headers, body, raw, time.time())
        number = self.owner._record(recorded)
        request_id = f"req_fake_{number:06d}"
        path = self.path.split("?", 1)[0]

        if self.command == "POST" and path == "/v1/messages/count_tokens":
            count = self.owner.count_tokens_result
            if count is None:
                count = max(1, math.ceil(len(raw) / 4))
            self._send(200, json.dumps({"input_tokens": count}).encode(), {}, request_id)
            return
        if self.command != "POST" or path != "/v1/messages":
            error = {"type": "error", "error": {"type": "not_found_error", "message": f"FakeAnthropic: no route {self.command} {path}"}}
            self._send(404, json.dumps(error).encode(), {}, request_id)
            return

        reply = self.owner._next_reply(number, recorded)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.raw is not None:
            self._send(reply.status, reply.raw, reply.headers, request_id, reply.content_type)
        elif reply.status == 200 and reply.message is not None:
            message = self._message(reply.message, body, number)
            if isinstance(body, dict) and body.get("stream"):
                self._send(200, _sse(message), reply.headers, request_id, "text/event-stream")
            else:
                self._send(200, json.dumps(message).encode(), reply.headers, request_id)
        else:
            payload = dict(reply.body or {})
            payload.setdefault("request_id", request_id)
            self._send(reply.status, json.dumps(payload).encode(), reply.headers, request_id)

    def _message(self, scripted: Mapping[str, Any], body: Any, number: int) -> dict[str, Any]:
        requested = body.get("model") if isinstance(body, dict) else None
        return {
            "id": f"msg_fake_{number:06d}",
            "type": "message",
            "role": "assistant",
            "model": scripted.get("model") or self.owner.model or requested or "claude-haiku-5-5",
            "content": scripted["content"],
            "stop_reason": scripted["stop_reason"],
            "stop_sequence": None,
            "usage": scripted["usage"],
        }

    def _send(self, status: int, payload: bytes, headers: Mapping[str, str], request_id: str,
              content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            self.send_header("request-id", request_id)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (timeout test); nothing to answer any more.
            self.close_connection = True

    def do_POST(self) -> None:
        """Serve ``/v1/messages`` and ``/v1/messages/count_tokens``."""
        self._handle()

    def do_GET(self) -> None:
        """Answer 404 (recorded), so stray calls show up in :attr:`FakeAnthropic.requests`."""
        self._handle()


def _sse(message: Mapping[str, Any]) -> bytes:
    """``message`` as the Messages streaming events, in the standard order."""
    usage = dict(message["usage"])
    start_usage = {**usage, "output_tokens": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "usage": start_usage}}),
    ]
    for index, block in enumerate(message["content"]):
        if block.get("type") == "tool_use":
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {**block, "input": {}}}))
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block.get("input", {}))}
        else:
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}}))
            delta = {"type": "text_delta", "text": block.get("text", "")}
        events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                     "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()
