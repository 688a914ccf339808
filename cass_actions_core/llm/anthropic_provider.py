"""The ``anthropic`` provider: the official SDK's ``AsyncAnthropic`` client.

This is the only module that imports the ``anthropic`` package, and it does so
inside functions only, so importing this module (or registering the provider) costs
nothing; the SDK loads on the first call.

How calls are made:

- Plain ``messages.create``; no ``temperature`` (SDK 2.x and API version 2026-10-21
  reject sampling parameters) and no assistant prefill (rejected by the current
  models; :func:`~cass_actions_core.llm.base.normalize_messages` refuses one early).
- Structured output uses the API's structured outputs, never a forced tool:
  ``output_config={"format": {"type": "json_schema", "schema":
  anthropic.transform_schema(Model)}, "effort": ...}``. ``create`` rather than
  ``parse`` so the stop reason is checked before validation and the usage of a
  cut-off or refused reply is still read and billed.
- Usage is read from every response and priced from the dated price table (the
  config's ``llm.prices`` rows applied).

Retries happen in exactly one place: the SDK client (``max_retries`` from the
settings; it honours ``retry-after``/``retry-after-ms`` and retries 408, 409, 429,
5xx/529, connection errors and timeouts). This provider never retries on top of
that, so a 429 costs at most ``1 + max_retries`` requests. A reply asking to wait
longer than :data:`IN_CALL_WAIT_CAP` seconds is not waited out inside the call (the
SDK would sleep for as long as it asks, past the step's timeout): it fails the call
at once, and the scheduler re-queues the unit for that time. The resulting
:class:`~cass_actions_core.llm.errors.LLMError` says whether trying again later is
worthwhile (``retryable``), which is the scheduler's decision, not this module's.

Credentials come from the environment (``ANTHROPIC_API_KEY``, else
``ANTHROPIC_AUTH_TOKEN``) and the endpoint from ``settings.base_url``, else
``ANTHROPIC_BASE_URL``. Both are looked up on the first call, so a configuration
that never calls the model needs no key.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from cass_actions_core.config import LLMSettings
from cass_actions_core.llm.base import (
    LLMRequest,
    LLMResponse,
    StructuredResult,
    T,
    Usage,
    stop_reason_error,
    validate_output,
)
from cass_actions_core.llm.errors import LLMError, describe_failure
from cass_actions_core.llm.prices import PriceTable, price_table

if TYPE_CHECKING:  # pragma: no cover - annotations only; the SDK loads lazily
    from anthropic import AsyncAnthropic

PROVIDER_NAME = "anthropic"
API_KEY_ENV = "ANTHROPIC_API_KEY"
AUTH_TOKEN_ENV = "ANTHROPIC_AUTH_TOKEN"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"

# HTTP status -> LLMError kind; anything else >= 500 is a server error.
_STATUS_KINDS: dict[int, str] = {
    400: "bad_request",
    401: "auth",
    402: "payment_required",
    403: "auth",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    422: "unprocessable",
    429: "rate_limit",
    529: "overloaded",
}


def _int(value: Any) -> int:
    """A token count: missing or ``None`` (older and fake responses) counts 0; anything but a whole,
    non-negative number raises :class:`ValueError` (the reply is then unreadable, not a negative bill)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0 or value != int(value):
        raise ValueError(f"a token count of {value!r}")
    return int(value)


def usage_from_sdk(usage: Any) -> Usage:
    """Convert an SDK ``Usage`` (or any object with the same attributes) to :class:`Usage`.

    Cache writes are split by TTL from ``usage.cache_creation`` when present; without
    the breakdown all ``cache_creation_input_tokens`` count as 5-minute writes.
    """
    if usage is None:
        return Usage()
    creation = getattr(usage, "cache_creation", None)
    if creation is not None:
        write_5m = _int(getattr(creation, "ephemeral_5m_input_tokens", 0))
        write_1h = _int(getattr(creation, "ephemeral_1h_input_tokens", 0))
    else:
        write_5m, write_1h = _int(getattr(usage, "cache_creation_input_tokens", 0)), 0
    return Usage(
        input_tokens=_int(getattr(usage, "input_tokens", 0)),
        output_tokens=_int(getattr(usage, "output_tokens", 0)),
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=_int(getattr(usage, "cache_read_input_tokens", 0)),
    )


def _attempts(exc: Any) -> int | None:
    """How many HTTP attempts the SDK made, from the last request's retry-count header."""
    request = getattr(exc, "request", None)
    try:
        return int(request.headers.get("x-stainless-retry-count")) + 1 if request is not None else None
    except (TypeError, ValueError):
        return None


def _root_cause(exc: BaseException) -> str:
    """The innermost cause of a connection failure, in words ("refused the connection"...)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for cause in reversed(chain):
        if isinstance(cause, ConnectionRefusedError):
            return "refused the connection"
        if isinstance(cause, ConnectionResetError):
            return "the server reset the connection"
    # httpx's wording ("All connection attempts failed", name resolution...) beats the SDK's generic one.
    for cause in chain[1:]:
        if str(cause):
            return " ".join(str(cause).split())
    return "connection error"


#: The longest ``retry-after`` the SDK may wait out inside one call, in seconds (a step's own timeout is
#: usually a minute or two); a longer wait becomes the scheduler's, which re-queues the unit for it.
IN_CALL_WAIT_CAP = 30.0


async def _no_long_waits(response: Any) -> None:
    """An httpx response hook: a reply asking for a wait past :data:`IN_CALL_WAIT_CAP` is not retried in the call
    (``x-should-retry: false``, which the SDK obeys); its ``retry-after`` still reaches the error."""
    wait = retry_after_seconds(response.headers)
    if wait is not None and wait > IN_CALL_WAIT_CAP:
        response.headers["x-should-retry"] = "false"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a response asks for (``retry-after-ms``, or ``retry-after`` in seconds), if any."""
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        if headers.get("retry-after"):
            return max(0.0, float(headers["retry-after"]))
    except (TypeError, ValueError):
        return None  # an HTTP date or garbage: the scheduler's own backoff applies
    return None


def classify_error(exc: BaseException, *, model: str) -> LLMError:
    """Turn an SDK exception into an :class:`LLMError` with a kind and one-sentence message.

    Retry-worthy (``retryable=True``): rate limit 429, overloaded 529 and other 5xx,
    408 and 409, connection errors and timeouts. Final: 400, 401/403, 402, 404, 413,
    422 and anything unrecognised.
    """
    import anthropic

    attempts = _attempts(exc)

    def error(kind: str, detail: str | None, status: int | None = None, request_id: str | None = None,
              retry_after: float | None = None) -> LLMError:
        message = describe_failure(kind, provider=PROVIDER_NAME, model=model, status_code=status,
                                   request_id=request_id, attempts=attempts, detail=detail)
        return LLMError(message, kind=kind, status_code=status, request_id=request_id, model=model, provider=PROVIDER_NAME,
                        retry_after_seconds=retry_after, attempts=attempts)

    if isinstance(exc, anthropic.APITimeoutError):
        return error("timeout", f"no reply from {exc.request.url.copy_with(path='/')}")
    if isinstance(exc, anthropic.APIConnectionError):
        root = exc.request.url.copy_with(path="/")
        reason = _root_cause(exc)
        return error("connection", f"{root} {reason}" if reason.startswith("refused") else f"{root}: {reason}")
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        kind = _STATUS_KINDS.get(status) or ("server_error" if status >= 500 else "api_error")
        if exc.type == "overloaded_error":
            kind = "overloaded"
        api_type = f"{exc.type}: " if exc.type else ""
        return error(kind, f"{api_type}{exc.api_message or exc.message}", status, exc.request_id,
                     retry_after_seconds(exc.response.headers))
    if isinstance(exc, anthropic.APIResponseValidationError):
        return error("malformed_response", "the response did not have the expected shape", exc.status_code)
    return error("api_error", f"{type(exc).__name__}: {exc}")


class AnthropicProvider:
    """The ``anthropic`` provider (see the module docstring for how calls are made).

    Args:
        settings: provider settings (``max_retries``, ``timeout_seconds``,
            ``base_url``, ``prices``); the model and limits come with each request.
        api_key: a key to use instead of the environment (tests pass ``"test-key"``).
        env: the environment to read credentials and ``ANTHROPIC_BASE_URL`` from
            (default ``os.environ``, read at the first call).
        prices: the price table (default: the shipped table plus ``settings.prices``).
    """

    name = PROVIDER_NAME

    def __init__(
        self,
        settings: LLMSettings,
        *,
        api_key: str | None = None,
        env: Mapping[str, str] | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        self.settings = settings
        self.prices = prices or price_table(settings.prices)
        self._api_key = api_key
        self._env = env
        # One client per event loop: the SDK's connection pool belongs to the loop
        # that opened it, and tests (or a CLI command) may run several loops in turn.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncAnthropic] = weakref.WeakKeyDictionary()

    # -- client --------------------------------------------------------------------

    def _credentials(self) -> dict[str, str]:
        if self._api_key:
            return {"api_key": self._api_key}
        env = os.environ if self._env is None else self._env
        if env.get(API_KEY_ENV):
            return {"api_key": env[API_KEY_ENV]}
        if env.get(AUTH_TOKEN_ENV):
            return {"auth_token": env[AUTH_TOKEN_ENV]}
        raise LLMError(
            f"anthropic provider has no API key: set the {API_KEY_ENV} environment variable "
            f"(or {AUTH_TOKEN_ENV}), or choose the offline provider with llm.provider = \"offline\".",
            kind="no_api_key",
            model=self.settings.model,
            provider=PROVIDER_NAME,
        )

    def not_ready(self) -> str | None:
        """Why no call can be made (no API key in the environment), or None; reads nothing else."""
        try:
            self._credentials()
        except LLMError as exc:
            return str(exc)
        return None

    def base_url(self) -> str | None:
        """The endpoint: ``settings.base_url``, else ``$ANTHROPIC_BASE_URL``, else the SDK default."""
        env = os.environ if self._env is None else self._env
        return self.settings.base_url or env.get(BASE_URL_ENV) or None

    def client(self) -> AsyncAnthropic:
        """The SDK client for the running event loop, created (and the SDK imported) on first use."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            credentials = self._credentials()  # raise no_api_key before importing anything
            from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient

            client = AsyncAnthropic(
                **credentials,
                base_url=self.base_url(),
                max_retries=self.settings.max_retries,
                timeout=self.settings.timeout_seconds,
                http_client=DefaultAsyncHttpxClient(timeout=self.settings.timeout_seconds,
                                                    event_hooks={"response": [_no_long_waits]}),
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the running loop's client and its connections (safe to call twice)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.close()

    # -- calls ---------------------------------------------------------------------

    def _params(self, request: LLMRequest, output_config: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": request.messages,
        }
        if request.system:
            params["system"] = request.system if isinstance(request.system, str) else [dict(b) for b in request.system]
        if request.effort is not None:
            output_config = {**output_config, "effort": request.effort}
        if output_config:
            params["output_config"] = output_config
        return params

    async def _send(self, request: LLMRequest, output_config: dict[str, Any]) -> LLMResponse:
        client = self.client()
        import anthropic

        try:
            message = await client.messages.create(**self._params(request, output_config))
        except anthropic.AnthropicError as exc:
            raise classify_error(exc, model=request.model) from exc
        except json.JSONDecodeError as exc:
            # A 200 whose body is not JSON: sent (and maybe billed), worth another try.
            raise LLMError(
                describe_failure("malformed_response", provider=PROVIDER_NAME, model=request.model,
                                 detail=f"the body is not JSON: {exc.msg} at position {exc.pos}"),
                kind="malformed_response", model=request.model, provider=PROVIDER_NAME,
            ) from exc
        except ValueError as exc:
            # The SDK refuses some requests before sending (e.g. a max_tokens that
            # would need streaming); nothing was billed.
            raise LLMError(
                describe_failure("bad_request", provider=PROVIDER_NAME, model=request.model, detail=str(exc)),
                kind="bad_request", model=request.model, provider=PROVIDER_NAME,
            ) from exc
        try:
            usage = usage_from_sdk(getattr(message, "usage", None))
        except ValueError as exc:
            # Sent and maybe billed, but its usage says nothing a bill can be made of: charged at its estimate.
            raise LLMError(
                describe_failure("malformed_response", provider=PROVIDER_NAME, model=request.model,
                                 detail=f"its usage reports {exc}"),
                kind="malformed_response", model=request.model, provider=PROVIDER_NAME,
            ) from None
        billed_model = getattr(message, "model", None) or request.model
        text = "".join(block.text for block in message.content if getattr(block, "type", None) == "text")
        return LLMResponse(
            text=text,
            stop_reason=message.stop_reason,
            usage=usage,
            cost_usd=self.prices.cost(billed_model, usage),
            model=billed_model,
            provider=PROVIDER_NAME,
            request_id=getattr(message, "_request_id", None),
        )

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Send ``request`` and return the text reply (``cut_off``/``refusal`` raise)."""
        response = await self._send(request, {})
        error = stop_reason_error(response)
        if error is not None:
            raise error
        return response

    async def structured(
        self,
        request: LLMRequest,
        output_model: type[T],
        *,
        offline: Callable[[], T] | None = None,
    ) -> StructuredResult[T]:
        """Send ``request`` with ``output_model``'s JSON schema and validate the reply.

        ``offline`` is ignored (it is for the offline provider).
        """
        import anthropic

        try:
            schema = anthropic.transform_schema(output_model)
        except (ValueError, TypeError) as exc:
            # E.g. a bare `list` field: the API needs every node typed. Nothing sent yet.
            raise LLMError(
                describe_failure("bad_request", provider=PROVIDER_NAME, model=request.model,
                                 detail=f"{output_model.__name__} cannot be used for structured output: {exc}"),
                kind="bad_request", model=request.model, provider=PROVIDER_NAME,
            ) from exc
        response = await self._send(request, {"format": {"type": "json_schema", "schema": schema}})
        error = stop_reason_error(response)
        if error is not None:
            raise error
        return StructuredResult(validate_output(output_model, response), response)

    async def count_tokens(self, request: LLMRequest) -> int:
        """The API's input-token count for ``request`` (one extra round trip, not billed)."""
        client = self.client()
        import anthropic

        params = self._params(request, {})
        params.pop("max_tokens")
        params.pop("output_config", None)
        try:
            result = await client.messages.count_tokens(**params)
        except anthropic.AnthropicError as exc:
            raise classify_error(exc, model=request.model) from exc
        return int(result.input_tokens)


def create_anthropic_provider(settings: LLMSettings) -> AnthropicProvider:
    """The factory registered under ``"anthropic"``."""
    return AnthropicProvider(settings)
