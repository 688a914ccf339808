"""Test doubles for the LLM layer: a scripted provider and in-memory gate and sink.

- :class:`ScriptedProvider` answers from a list of replies (or a function of the
  request) and reports token usage for each, priced like a real provider, so the
  meter, caps and budgets can be tested without HTTP.
- :class:`MemorySpendGate` and :class:`MemoryTranscriptSink` are minimal in-memory
  implementations of :class:`~cass_actions_core.llm.base.SpendGate` and
  :class:`~cass_actions_core.llm.base.TranscriptSink`.

Pack authors can use all three in their own tests::

    provider = ScriptedProvider(["first answer", {"title": "x"}], usage=Usage(1000, 200))
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cass_actions_core.config import LLMSettings
from cass_actions_core.llm.base import (
    output_schema,
    LLMRequest,
    LLMResponse,
    StructuredResult,
    T,
    Usage,
    estimate_tokens,
    stop_reason_error,
    validate_output,
)
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.llm.prices import PriceTable, price_table


@dataclass(frozen=True)
class ScriptedReply:
    """One scripted reply with full control over what the provider reports.

    ``usage`` ``None`` means "estimate" (ceil(chars/4) of prompt and text, unless the
    provider has a default usage). ``stop_reason`` ``"max_tokens"`` or ``"refusal"``
    makes the call fail as ``cut_off`` / ``refusal`` -- billed, like the real thing.
    """

    text: str = ""
    usage: Usage | None = None
    stop_reason: str = "end_turn"
    model: str | None = None


#: What a script may hold: plain text, a JSON-able mapping or a pydantic model (sent as
#: JSON text), a :class:`ScriptedReply`, or an :class:`LLMError` to raise.
Reply = str | Mapping[str, Any] | BaseModel | ScriptedReply | LLMError

#: A list of replies used in order, or a function from the request to a reply.
Script = Sequence[Reply] | Callable[[LLMRequest], Reply]


class ScriptedProvider:
    """A provider that replies from a script; every reply reports usage and cost.

    Args:
        script: replies in order, or ``fn(request) -> reply``.
        usage: the usage every reply reports unless it carries its own (``None``:
            estimate from characters).
        cycle: start the list over when it runs out (else ``script_exhausted``).
        name: the provider name reported in responses.
        settings: used for ``settings.prices`` only.
        prices: the price table (default: shipped table plus ``settings.prices``).
    """

    def __init__(
        self,
        script: Script,
        *,
        usage: Usage | None = None,
        cycle: bool = False,
        name: str = "scripted",
        settings: LLMSettings | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        self.name = name
        self.default_usage = usage
        self.prices = prices or price_table(settings.prices if settings else None)
        self._script: Callable[[LLMRequest], Reply]
        if callable(script):
            self._script = script
        else:
            replies = list(script)
            source = itertools.cycle(replies) if cycle and replies else iter(replies)

            def next_reply(request: LLMRequest) -> Reply:
                try:
                    return next(source)
                except StopIteration:
                    raise LLMError(
                        f"scripted provider ran out of replies after {len(replies)} (call {len(self.requests)}).",
                        kind="script_exhausted", model=request.model, provider=self.name,
                    ) from None

            self._script = next_reply
        #: Every request received, in order.
        self.requests: list[LLMRequest] = []

    @classmethod
    def factory(cls, script: Script, **kwargs: Any) -> Callable[[LLMSettings], ScriptedProvider]:
        """A provider factory for ``register(name, factory)``; all instances share nothing."""
        return lambda settings: cls(script, settings=settings, **kwargs)

    @property
    def calls(self) -> int:
        """How many requests the provider has received."""
        return len(self.requests)

    def _respond(self, request: LLMRequest, extra_input: str = "") -> LLMResponse:
        self.requests.append(request)
        reply = self._script(request)
        if isinstance(reply, LLMError):
            raise reply
        if isinstance(reply, ScriptedReply):
            text, usage, stop_reason, model = reply.text, reply.usage, reply.stop_reason, reply.model
        elif isinstance(reply, BaseModel):
            text, usage, stop_reason, model = reply.model_dump_json(), None, "end_turn", None
        elif isinstance(reply, Mapping):
            text, usage, stop_reason, model = json.dumps(reply), None, "end_turn", None
        else:
            text, usage, stop_reason, model = str(reply), None, "end_turn", None
        if usage is None:
            usage = self.default_usage or Usage(
                input_tokens=estimate_tokens(request.prompt_text() + extra_input),
                output_tokens=estimate_tokens(text),
            )
        billed = model or request.model
        response = LLMResponse(
            text=text,
            stop_reason=stop_reason,
            usage=usage,
            cost_usd=self.prices.cost(billed, usage),
            model=billed,
            provider=self.name,
            request_id=f"scripted-{len(self.requests)}",
        )
        error = stop_reason_error(response)
        if error is not None:
            raise error
        return response

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """The next scripted reply as text."""
        return self._respond(request)

    async def structured(
        self,
        request: LLMRequest,
        output_model: type[T],
        *,
        offline: Callable[[], T] | None = None,
    ) -> StructuredResult[T]:
        """The next scripted reply parsed into ``output_model`` (``invalid_output`` if it does not fit)."""
        response = self._respond(request, json.dumps(output_schema(output_model)))
        return StructuredResult(validate_output(output_model, response), response)


class MemorySpendGate:
    """A :class:`~cass_actions_core.llm.base.SpendGate` with a fixed allowance.

    ``request(total)`` grants any total up to ``limit_usd`` (``None``: unlimited);
    every request and record is kept for assertions.
    """

    def __init__(self, limit_usd: float | None = None) -> None:
        self.limit_usd = limit_usd
        #: Totals asked for, in order.
        self.requested: list[float] = []
        #: Totals recorded as actually spent, in order.
        self.recorded: list[float] = []
        #: Pessimistic totals held while calls were out, in order.
        self.held: list[float] = []

    def request(self, total_usd: float) -> bool:
        """Grant ``total_usd`` when it fits the limit."""
        self.requested.append(total_usd)
        # A tiny tolerance: totals are rounded to 6 decimals by the meter.
        return self.limit_usd is None or total_usd <= self.limit_usd + 1e-9

    def record(self, total_usd: float) -> None:
        """Remember the action's actual total."""
        self.recorded.append(total_usd)

    def hold(self, total_usd: float) -> None:
        """Remember the pessimistic total held while a call is out."""
        self.held.append(total_usd)

    def headroom(self) -> float | None:
        """The fixed allowance (None: unlimited)."""
        return self.limit_usd

    @property
    def spent_usd(self) -> float:
        """The last recorded total (0 before any record)."""
        return self.recorded[-1] if self.recorded else 0.0


class MemoryTranscriptSink:
    """A :class:`~cass_actions_core.llm.base.TranscriptSink` keeping records in a dict.

    Records are round-tripped through JSON on save, as the store keeps them: a value JSON
    cannot hold becomes its ``str()``, and a NaN fails here too.
    """

    def __init__(self) -> None:
        #: Saved records by id, in save order.
        self.records: dict[str, dict[str, Any]] = {}

    def save(self, record: dict[str, Any]) -> str:
        """Store ``record`` and return its id (``t1``, ``t2``, ...)."""
        transcript_id = f"t{len(self.records) + 1}"
        self.records[transcript_id] = json.loads(json.dumps(record, allow_nan=False, default=str))
        return transcript_id
