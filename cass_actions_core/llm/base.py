"""Types shared by every LLM provider and by the meter.

Nothing here imports a provider SDK: this module is on the import path of the CLI's
``list`` and ``validate`` commands, which must stay fast and never load ``anthropic``.

- :class:`LLMRequest` is what a provider receives (model, messages, system, limits).
- :class:`LLMResponse` and :class:`Usage` are what comes back: text, token counts by
  billing category, and the USD cost priced from :mod:`cass_actions_core.llm.prices`.
- :class:`LLMProvider` is the protocol a provider implements (text completion and
  structured output into a pydantic model).
- :class:`SpendGate` and :class:`TranscriptSink` are the two seams through which the
  scheduler connects :class:`~cass_actions_core.llm.metered.MeteredLLM` to its budget
  ledger and its transcript store.
- :class:`EffectiveLLMSettings` is the provider/model/limits choice for one action,
  produced by :func:`cass_actions_core.llm.registry.resolve_settings`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from cass_actions_core.config import LLMSettings, ModelPrice
from cass_actions_core.llm.errors import LLMError, describe_failure
from cass_actions_core.models import Effort

if TYPE_CHECKING:
    from pydantic import BaseModel  # only structured calls need it; the catalogue and list import this module

T = TypeVar("T", bound="BaseModel")

#: One chat message as the Messages API takes it: ``{"role": "user", "content": ...}``
#: where ``content`` is a string or a list of content blocks.
ChatMessage = Mapping[str, Any]

#: What callers pass as the prompt: a user message as plain text, or the full list of
#: messages (alternating ``user`` / ``assistant``, ending with ``user``).
Prompt = str | Sequence[ChatMessage]

#: A system prompt: plain text, or content blocks (so callers can set ``cache_control``).
System = str | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Usage:
    """Token counts of one call (or a sum of calls), split by billing category.

    ``input_tokens`` counts input neither read from nor written to the prompt cache;
    the total prompt size is :attr:`prompt_tokens`.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """All input tokens of the request, cached or not (decides price bands)."""
        return self.input_tokens + self.cache_write_5m_tokens + self.cache_write_1h_tokens + self.cache_read_tokens

    @property
    def total_tokens(self) -> int:
        """Prompt plus output tokens."""
        return self.prompt_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_write_5m_tokens + other.cache_write_5m_tokens,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        """A JSON-ready mapping with one key per field."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_write_5m_tokens": self.cache_write_5m_tokens,
            "cache_write_1h_tokens": self.cache_write_1h_tokens,
            "cache_read_tokens": self.cache_read_tokens,
        }


@dataclass(frozen=True)
class LLMRequest:
    """One call as a provider receives it; built by :class:`~cass_actions_core.llm.metered.MeteredLLM`.

    ``messages`` are already normalised by :func:`normalize_messages` (plain dicts,
    last one from the user).
    """

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    system: System | None = None
    effort: Effort | None = None

    def prompt_text(self) -> str:
        """System and message text concatenated (for estimates and offline digests)."""
        return prompt_text(self.messages, self.system)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (stored in transcripts)."""
        system: Any = self.system if isinstance(self.system, str) or self.system is None else [dict(b) for b in self.system]
        return {
            "model": self.model,
            "system": system,
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "effort": self.effort,
        }


@dataclass(frozen=True)
class LLMResponse:
    """What one successful (or billed but unusable) call returned."""

    text: str
    stop_reason: str | None
    usage: Usage
    cost_usd: float
    model: str
    provider: str
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (stored in transcripts)."""
        return {
            "text": self.text,
            "stop_reason": self.stop_reason,
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "model": self.model,
            "provider": self.provider,
            "request_id": self.request_id,
        }


@dataclass(frozen=True)
class StructuredResult(Generic[T]):
    """A structured call's validated value together with the response it came from."""

    value: T
    response: LLMResponse


@runtime_checkable
class LLMProvider(Protocol):
    """What a provider registered through ``register_llm_providers`` must implement.

    A provider prices its own calls (``LLMResponse.cost_usd``) and raises only
    :class:`~cass_actions_core.llm.errors.LLMError`. It must not retry on its own
    beyond what its transport already does: retries are decided once (see
    ``docs/llm.md``). Providers are not metered themselves; callers go through
    :class:`~cass_actions_core.llm.metered.MeteredLLM`.
    """

    #: The name the provider is registered under (``"anthropic"``, ``"offline"``...).
    name: str

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Return the model's text reply to ``request``."""
        ...

    async def structured(
        self,
        request: LLMRequest,
        output_model: type[T],
        *,
        offline: Callable[[], T] | None = None,
    ) -> StructuredResult[T]:
        """Return a reply parsed and validated into ``output_model``.

        ``offline`` is a hint for providers that do not call a model (the offline
        provider uses it to build the value); network providers ignore it.
        """
        ...

    # Optional: ``def not_ready(self) -> str | None`` returns why the provider cannot make a
    # call at all (no API key, say) as one sentence, or None. The daemon and `simulate` ask
    # before they start, so a missing credential stops them once instead of failing every unit.
    #
    # Optional too: ``bills_real_money: bool`` (True when absent). The hold written before each
    # call is synced to the disk only for a provider whose calls cost real money; the ``offline``
    # provider sets it False (its spend is simulated), so rehearsals do not sync per call.


class SpendGate(Protocol):
    """The budget seam: the scheduler implements it with its budget ledger."""

    def request(self, total_usd: float) -> bool:
        """Make room so the action's total spend may reach total_usd; False if the budget cannot."""
        ...

    def record(self, total_usd: float) -> None:
        """The action has now actually spent total_usd."""
        ...

    def hold(self, total_usd: float) -> None:
        """A call is about to go out: should the process die before the next :meth:`record`, settle
        the action at ``total_usd`` (its spend so far plus the call's worst case: the API bills a
        call the process never saw return)."""
        ...

    def headroom(self) -> float | None:
        """The largest total the action's spend could be granted now (None: unknown). The meter
        lowers a call's max_tokens to fit it rather than refuse the call outright."""
        ...

    # Optional too: ``atomic() -> ContextManager``. The meter groups each call's bookkeeping in it
    # (headroom, request and hold before the call; the transcript, record and hold after it), so a
    # gate over a database commits once per group instead of once per write.


class TranscriptSink(Protocol):
    """The transcript seam: the scheduler implements it with its SQLite store."""

    def save(self, record: dict[str, Any]) -> str:
        """Store one call's transcript and return its id.

        The record is JSON but for message content a handler passed in, which may hold objects
        JSON cannot (an SDK content block): a sink stores those as their ``str()``.
        """
        ...


@dataclass(frozen=True)
class EffectiveLLMSettings:
    """The LLM choice for one action after applying overrides (see ``resolve_settings``).

    ``sources`` tells, for ``provider``, ``model``, ``max_tokens`` and ``effort``,
    which layer decided the value: ``"config.llm"``, ``"action:<id>"`` (the pack's
    definition) or ``"config.llm.actions.<id>"`` -- handy when a user asks why an
    action used a given model.
    """

    provider: str
    model: str
    max_tokens: int
    effort: Effort
    max_retries: int = 2
    timeout_seconds: float = 120
    base_url: str | None = None
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_llm_settings(cls, settings: LLMSettings) -> EffectiveLLMSettings:
        """The settings with no per-action override applied."""
        return cls(
            provider=settings.provider,
            model=settings.model,
            max_tokens=settings.max_tokens,
            effort=settings.effort,
            max_retries=settings.max_retries,
            timeout_seconds=settings.timeout_seconds,
            base_url=settings.base_url,
            prices=dict(settings.prices),
            sources={k: "config.llm" for k in ("provider", "model", "max_tokens", "effort")},
        )

    def provider_settings(self) -> LLMSettings:
        """An :class:`LLMSettings` carrying these values, for a provider factory."""
        return LLMSettings(
            provider=self.provider,
            model=self.model,
            max_tokens=self.max_tokens,
            effort=self.effort,
            max_retries=self.max_retries,
            timeout_seconds=self.timeout_seconds,
            base_url=self.base_url,
            prices=dict(self.prices),
        )


def normalize_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The prompt as a list of plain message dicts, checked for the API's shape.

    A string becomes one user message. A list must hold ``user``/``assistant``
    messages and end with a ``user`` message: a trailing assistant message would be a
    prefill, which the current models reject with HTTP 400, so it is refused here
    before anything is sent or billed.
    """
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(prompt):
        if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant") or "content" not in message:
            raise LLMError(
                f"LLM prompt message {i} must be a mapping with role 'user' or 'assistant' and a content, got {message!r}.",
                kind="bad_request",
            )
        messages.append(dict(message))
    if not messages:
        raise LLMError("LLM prompt has no messages.", kind="bad_request")
    if messages[-1]["role"] != "user":
        raise LLMError(
            "LLM prompt ends with an assistant message (a prefill), which current models reject; end with a user message.",
            kind="bad_request",
        )
    return messages


def content_text(content: Any) -> str:
    """The text of a message content: a string, or text blocks joined by newlines.

    Non-text blocks (images, tool results...) count as their JSON, which keeps size
    estimates on the safe side.
    """
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or ():
        if isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        else:
            parts.append(json.dumps(block, sort_keys=True, default=str))
    return "\n".join(parts)


def prompt_text(messages: Sequence[ChatMessage], system: System | None) -> str:
    """System text, then each message's text, separated by blank lines."""
    parts = [content_text(system)] if system else []
    parts.extend(content_text(m.get("content")) for m in messages)
    return "\n\n".join(p for p in parts if p)


def estimate_tokens(text: str) -> int:
    """A typical token estimate: one token per four characters, rounded up.

    Used where a plausible figure is wanted (offline and scripted usage reports).
    """
    return math.ceil(len(text) / 4)


def conservative_tokens(text: str) -> int:
    """An upper-side token estimate: one token per three UTF-8 bytes, rounded up.

    Used by the meter before a call. Bytes rather than characters, so text in
    scripts that take several bytes (and usually more tokens) per character is not
    underestimated; three rather than four, because newer tokenizers count about 30 %
    more tokens for the same English text.
    """
    return math.ceil(len(text.encode("utf-8")) / 3)


def stop_reason_error(response: LLMResponse) -> LLMError | None:
    """The :class:`LLMError` a reply's stop reason implies, or ``None`` when usable.

    ``max_tokens`` -> ``cut_off``; ``refusal`` -> ``refusal``. The response rides
    along on the error so the meter still counts its (billed) cost.
    """
    if response.stop_reason == "max_tokens":
        kind, detail = "cut_off", "raise max_tokens or shorten the requested output"
    elif response.stop_reason == "refusal":
        kind, detail = "refusal", "stop_reason was 'refusal'"
    else:
        return None
    return LLMError(
        describe_failure(kind, provider=response.provider, model=response.model, request_id=response.request_id, detail=detail),
        kind=kind,
        request_id=response.request_id,
        model=response.model,
        provider=response.provider,
        response=response,
    )


@functools.lru_cache(maxsize=256)
def output_schema(output_model: type[BaseModel]) -> dict[str, Any]:
    """``output_model.model_json_schema()``, built once per model class (pydantic rebuilds it on every
    call, and every structured call needs it). Shared: read it, never change it. Bounded: the planner
    makes a reply model per candidate set, and a daemon that runs for months must not keep them all."""
    return output_model.model_json_schema()


def validate_output(output_model: type[T], response: LLMResponse) -> T:
    """Parse ``response.text`` as JSON into ``output_model`` or raise ``invalid_output``."""
    from pydantic import ValidationError

    try:
        return output_model.model_validate_json(response.text)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "the reply"
        detail = f"{output_model.__name__} rejected {where}: {first.get('msg', 'invalid')}"
        raise LLMError(
            describe_failure("invalid_output", provider=response.provider, model=response.model,
                             request_id=response.request_id, detail=detail),
            kind="invalid_output",
            request_id=response.request_id,
            model=response.model,
            provider=response.provider,
            response=response,
        ) from None
