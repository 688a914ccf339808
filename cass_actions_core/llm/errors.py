"""The one exception type of the LLM layer: :class:`LLMError`.

Every failure an action can see from an LLM call -- a provider error, a reply that
cannot be used, or the meter refusing a call -- is an :class:`LLMError` with a
machine-readable ``kind``. Callers branch on ``kind`` and ``retryable``; the
``message`` is one readable sentence meant for logs and the events table.

``retryable`` answers "might the same work succeed if tried again later?". It does
not mean the LLM layer will retry: HTTP-level retries happen once, inside the
Anthropic SDK (``max_retries``), and nothing in this package retries on top of that,
so the two layers never multiply (see ``docs/llm.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # pragma: no cover - only for annotations
    from cass_actions_core.llm.base import LLMResponse

#: Kinds worth trying again later (the SDK has already spent its own retries on them).
RETRYABLE_KINDS: Final[frozenset[str]] = frozenset(
    {"rate_limit", "overloaded", "server_error", "connection", "timeout", "conflict", "malformed_response"}
)

#: Kinds where the request went out and no usage came back, though the provider may have
#: billed it: the meter charges the call's estimate.
MAYBE_BILLED_KINDS: Final[frozenset[str]] = frozenset({"timeout", "malformed_response"})

#: Every kind this package raises, with a short description used in messages.
KIND_DESCRIPTIONS: Final[dict[str, str]] = {
    # provider / transport errors
    "rate_limit": "rate limited by the API",
    "overloaded": "the API is overloaded",
    "server_error": "the API had a server error",
    "connection": "could not connect to the API",
    "timeout": "the request timed out",
    "conflict": "the API reported a conflict",
    "bad_request": "the API rejected the request as invalid",
    "auth": "the API rejected the credentials",
    "payment_required": "the API account needs payment",
    "not_found": "the API endpoint or model was not found",
    "too_large": "the request is too large for the API",
    "unprocessable": "the API could not process the request",
    "api_error": "the API call failed",
    "malformed_response": "the API sent a reply that could not be read",
    "no_api_key": "no API key is configured",
    # unusable replies
    "cut_off": "the reply was cut off at max_tokens",
    "refusal": "the model refused to answer",
    "invalid_output": "the reply did not match the expected output model",
    # metering refusals (raised before any request is sent)
    "cost_cap": "the action's cost cap would be exceeded",
    "budget": "the spending budget has no room for the call",
    "call_cap": "the action reached its maximum number of LLM calls",
    # configuration
    "unknown_provider": "the LLM provider is not registered",
    "script_exhausted": "the scripted provider ran out of replies",
}

#: The kinds :class:`~cass_actions_core.llm.metered.MeteredLLM` raises itself.
METER_KINDS: Final[frozenset[str]] = frozenset({"cost_cap", "budget", "call_cap"})


class LLMError(Exception):
    """An LLM call failed, produced an unusable reply, or was refused by the meter.

    Attributes:
        kind: a key of :data:`KIND_DESCRIPTIONS` (``"rate_limit"``, ``"cut_off"``, ...).
        retryable: whether the same work might succeed later (see the module docstring).
        status_code: the HTTP status behind the error, when there was one.
        request_id: the provider's request id, when known.
        message: one readable sentence (also ``str(error)``).
        model: the model the call was for, when known.
        provider: the provider name, when known.
        response: the reply that was received but could not be used (``cut_off``,
            ``refusal``, ``invalid_output``): its tokens were billed, so the meter
            counts its ``cost_usd``. ``None`` when nothing came back.
        retry_after_seconds: how long the provider asked to wait (``retry-after``), when it did.
        attempts: how many HTTP requests the call made, retries included, when the provider knows;
            the meter charges a ``timeout`` once per attempt (each may have been billed).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        retryable: bool | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        response: LLMResponse | None = None,
        retry_after_seconds: float | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        # Default from the kind so every raise site agrees on what is worth retrying.
        self.retryable = kind in RETRYABLE_KINDS if retryable is None else retryable
        self.status_code = status_code
        self.request_id = request_id
        self.model = model
        self.provider = provider
        self.response = response
        self.retry_after_seconds = retry_after_seconds
        #: HTTP requests the call made, retries included, when the provider knows (a timeout retried twice: 3).
        self.attempts = attempts

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (stored with transcripts and events)."""
        return {
            "kind": self.kind,
            "message": self.message,
            "retryable": self.retryable,
            "status_code": self.status_code,
            "request_id": self.request_id,
            "model": self.model,
            "provider": self.provider,
            "retry_after_seconds": self.retry_after_seconds,
            "attempts": self.attempts,
        }

    def __repr__(self) -> str:
        return f"LLMError(kind={self.kind!r}, status_code={self.status_code!r}, message={self.message!r})"


def describe_failure(
    kind: str,
    *,
    provider: str | None,
    model: str | None,
    status_code: int | None = None,
    request_id: str | None = None,
    attempts: int | None = None,
    detail: str | None = None,
) -> str:
    """Compose the one-sentence message used by every :class:`LLMError`.

    Example: ``"anthropic call to claude-haiku-5-5 failed: rate limited by the API
    (HTTP 429, request id req_1, 3 attempts): rate_limit_error: Too many requests."``
    """
    who = f"{provider} call" if provider else "LLM call"
    target = f" to {model}" if model else ""
    facts = []
    if status_code is not None:
        facts.append(f"HTTP {status_code}")
    if request_id:
        facts.append(f"request id {request_id}")
    if attempts and attempts > 1:
        facts.append(f"{attempts} attempts")
    where = f" ({', '.join(facts)})" if facts else ""
    text = f"{who}{target} failed: {KIND_DESCRIPTIONS.get(kind, kind)}{where}"
    if detail:
        # Collapse whitespace so multi-line provider messages stay one sentence.
        detail = " ".join(str(detail).split()).rstrip(".")
        if detail:
            text += f": {detail}"
    return text + "."
