"""The metered client: every LLM call made on behalf of an action goes through one.

A :class:`MeteredLLM` is bound to one action run. Before each call it estimates the
call's maximum cost and refuses it when

1. the action already made ``max_calls`` calls (``call_cap``) -- a runaway-loop
   stopper: the earlier system once made 680 calls and spent $15 in 35 minutes;
2. spent + in-flight + estimate would exceed ``max_cost_usd`` (``cost_cap``);
3. the :class:`~cass_actions_core.llm.base.SpendGate` cannot make room for that total
   (``budget``).

Refusals raise :class:`~cass_actions_core.llm.errors.LLMError` before anything is
sent, and they are sticky: once refused, every later call on the same meter is
refused with the same kind, so a loop that swallows the error still cannot spend.
After each call (successful or not) the actual cost is added and
``gate.record(total)`` is called; failed calls count as calls, and a reply that was
billed but unusable (cut off, refused, invalid JSON) adds its cost. A call cancelled
or timed out after it was sent (the handler's timeout, say) returns no usage although
the provider may still bill it, so its pre-call estimate is charged instead; its
transcript is marked ``cancelled``.

The estimate is deliberately on the high side: input tokens from UTF-8 bytes / 3
(:func:`~cass_actions_core.llm.base.conservative_tokens`) plus a small per-message
overhead and the output schema, priced at the cache-write rate when the prompt asks
for caching; output at the full ``max_tokens``. Actual costs can still exceed an
estimate in rare cases (an unusual tokenizer ratio); the next call then sees the
true total.

Each call's transcript (request, response, usage, cost, model, provider, timestamps,
error) goes to the :class:`~cass_actions_core.llm.base.TranscriptSink`; the ids are
kept in :attr:`MeteredLLM.transcript_ids`. A failing sink is logged, never allowed
to lose the call's result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from cass_actions_core.llm.base import (
    output_schema,
    EffectiveLLMSettings,
    LLMProvider,
    LLMRequest,
    LLMResponse,
    Prompt,
    SpendGate,
    StructuredResult,
    System,
    T,
    TranscriptSink,
    Usage,
    conservative_tokens,
    normalize_messages,
)
from cass_actions_core.llm.errors import MAYBE_BILLED_KINDS, LLMError
from cass_actions_core.llm.prices import PriceTable, price_table

if TYPE_CHECKING:  # pragma: no cover
    from cass_actions_core.models import ActionDefinition

log = logging.getLogger(__name__)

#: Tokens added per message to the estimate (role markers and formatting).
MESSAGE_OVERHEAD_TOKENS = 8
_MICRO = Decimal("0.000001")

#: The fewest output tokens a call is lowered to when its max_tokens does not fit the money left.
MIN_FITTED_TOKENS = 256
_R = TypeVar("_R", LLMResponse, StructuredResult[Any])


def _usd(value: Decimal) -> float:
    return float(value.quantize(_MICRO))


def _charge(estimate: Decimal) -> Decimal:
    # What a call cancelled in flight is charged: its estimate, rounded up like estimate_usd.
    return estimate.quantize(_MICRO, rounding=ROUND_CEILING)


def _now() -> datetime:
    return datetime.now(UTC)


def _asks_cache(value: Any) -> bool:
    """Whether a ``cache_control`` key appears anywhere in system blocks or messages (a walk, not an encoding)."""
    if isinstance(value, dict):
        return "cache_control" in value or any(_asks_cache(v) for v in value.values() if isinstance(v, (dict, list, tuple)))
    if isinstance(value, (list, tuple)):
        return any(_asks_cache(v) for v in value if isinstance(v, (dict, list, tuple)))
    return False


class MeteredLLM:
    """An action's LLM client: capped, budgeted, recorded (see the module docstring).

    Args:
        provider: the provider to call (from the registry).
        settings: the action's effective settings (model, default max tokens, effort).
        action_id: the action the calls are made for (stored with transcripts).
        max_cost_usd: the action's cost cap for this run.
        max_calls: the action's call cap for this run.
        gate: the budget seam (``None``: only the caps apply).
        transcripts: where transcripts go (``None``: not stored).
        run_key: identifies the run (work unit / attempt), stored with transcripts.
        prices: the table used for estimates (default: shipped table plus
            ``settings.prices``).
        clock: the time source for transcript timestamps (tests pass a fixed one).
    """

    def __init__(
        self,
        provider: LLMProvider,
        settings: EffectiveLLMSettings,
        *,
        action_id: str,
        max_cost_usd: float,
        max_calls: int,
        gate: SpendGate | None = None,
        transcripts: TranscriptSink | None = None,
        run_key: str | None = None,
        prices: PriceTable | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.action_id = action_id
        self.max_cost_usd = max_cost_usd
        self.max_calls = max_calls
        self.gate = gate
        self.transcripts = transcripts
        self.run_key = run_key
        self.prices = prices or price_table(settings.prices)
        self._clock = clock
        self._cap = Decimal(str(max_cost_usd))
        self._spent = Decimal(0)
        # Estimates of calls in flight: concurrent calls (asyncio.gather) must not all
        # pass the cap check against the same spent total.
        self._reserved = Decimal(0)
        self._calls = 0
        self._usage = Usage()
        self._transcript_ids: list[str] = []
        self._stop: LLMError | None = None
        self._last: LLMResponse | None = None
        #: ``(asked, given)`` for each call whose max_tokens was lowered to fit the money left.
        self.lowered_max_tokens: list[tuple[int, int]] = []

    @classmethod
    def for_action(
        cls,
        provider: LLMProvider,
        settings: EffectiveLLMSettings,
        definition: ActionDefinition,
        **kwargs: Any,
    ) -> MeteredLLM:
        """A meter with the definition's id, ``max_cost_usd`` and ``max_llm_calls``."""
        return cls(provider, settings, action_id=definition.id, max_cost_usd=definition.max_cost_usd,
                   max_calls=definition.max_llm_calls, **kwargs)

    # -- state ---------------------------------------------------------------------

    @property
    def spent_usd(self) -> float:
        """Actual cost of all calls so far, in USD, rounded to 6 decimals."""
        return _usd(self._spent)

    @property
    def remaining_usd(self) -> float:
        """What is left under the cost cap (never negative)."""
        return _usd(max(Decimal(0), self._cap - self._spent))

    @property
    def calls(self) -> int:
        """Calls made (successful or failed; refused ones are not made and not counted)."""
        return self._calls

    @property
    def usage(self) -> Usage:
        """Token totals over all calls."""
        return self._usage

    @property
    def transcript_ids(self) -> list[str]:
        """Ids returned by the transcript sink, one per stored record, in order."""
        return list(self._transcript_ids)

    @property
    def stop_reason(self) -> str | None:
        """``None``, or the kind (``cost_cap``, ``call_cap``, ``budget``) that stopped the meter."""
        return self._stop.kind if self._stop else None

    @property
    def stop_estimate_usd(self) -> float | None:
        """The estimate of the call the meter refused when it stopped (USD), or None."""
        return getattr(self, "_stop_estimate", None)

    @property
    def last_response(self) -> LLMResponse | None:
        """The response of the most recent call that returned one."""
        return self._last

    # -- estimates -----------------------------------------------------------------

    def _request(self, prompt: Prompt, system: System | None, max_tokens: int | None) -> LLMRequest:
        return LLMRequest(
            model=self.settings.model,
            messages=normalize_messages(prompt),
            max_tokens=max_tokens if max_tokens is not None else self.settings.max_tokens,
            system=system,
            effort=self.settings.effort,
        )

    def _estimate(self, request: LLMRequest, output_model: type[BaseModel] | None) -> Decimal:
        text = request.prompt_text()
        tokens = conservative_tokens(text) + MESSAGE_OVERHEAD_TOKENS * (len(request.messages) + (1 if request.system else 0))
        if output_model is not None:
            tokens += conservative_tokens(json.dumps(output_schema(output_model)))
        price = self.prices.price_for(request.model, tokens)
        input_rate = price.input
        wants_cache = _asks_cache(request.system) or _asks_cache(request.messages)
        if wants_cache:
            # A cache write costs more than plain input; assume the dearest write.
            input_rate = max(price.input, price.cache_write_5m or 0.0, price.cache_write_1h or 0.0)
        cost = tokens * Decimal(str(input_rate)) + request.max_tokens * Decimal(str(price.output))
        return cost / Decimal(1_000_000)

    def estimate_usd(
        self,
        prompt: Prompt,
        *,
        system: System | None = None,
        max_tokens: int | None = None,
        output_model: type[BaseModel] | None = None,
    ) -> float:
        """The maximum cost the meter assumes for such a call (USD, 6 decimals, rounded up)."""
        estimate = self._estimate(self._request(prompt, system, max_tokens), output_model)
        return float(estimate.quantize(_MICRO, rounding=ROUND_CEILING))

    # -- admission -----------------------------------------------------------------

    def _refuse(self, kind: str, message: str, request: LLMRequest, estimate: Decimal) -> LLMError:
        error = LLMError(message, kind=kind, model=request.model, provider=self.provider.name)
        self._stop = error
        self._stop_estimate = _usd(estimate)
        now = self._clock()
        self._save(request, None, error, estimate, now, now, 0.0, output_model=None, refused=True)
        return error

    def _fit_output(self, request: LLMRequest, output_model: type[BaseModel] | None,
                    estimate: Decimal) -> tuple[LLMRequest, Decimal]:
        """Lower ``max_tokens`` so the call's worst case fits the money the budget has left, when it
        would not fit whole but at least :data:`MIN_FITTED_TOKENS` output tokens (or a quarter of
        the asked ``max_tokens``) would; otherwise leave the request for :meth:`_admit` to refuse.

        The action's own cost cap is a runaway guard, not money left: a call over it is refused."""
        if self._stop is not None or self._spent + self._reserved + estimate > self._cap:
            return request, estimate
        headroom = getattr(self.gate, "headroom", None) if self.gate is not None else None
        room = headroom() if callable(headroom) else None
        if room is None:
            return request, estimate
        spare = Decimal(str(room)) - self._spent - self._reserved
        if spare >= estimate:
            return request, estimate
        out_price = Decimal(str(self.prices.price_for(request.model, request.max_tokens).output)) / Decimal(1_000_000)
        if out_price <= 0:
            return request, estimate
        input_cost = estimate - request.max_tokens * out_price
        tokens = int((spare - input_cost) / out_price)
        if tokens < max(MIN_FITTED_TOKENS, request.max_tokens // 4) or tokens >= request.max_tokens:
            return request, estimate
        lowered = replace(request, max_tokens=tokens)
        self.lowered_max_tokens.append((request.max_tokens, tokens))
        log.info("action %s: max_tokens lowered from %d to %d to fit the money left", self.action_id,
                 request.max_tokens, tokens)
        return lowered, self._estimate(lowered, output_model)

    def _admit(self, request: LLMRequest, estimate: Decimal) -> None:
        if self._stop is not None:
            raise LLMError(
                f"action {self.action_id}: LLM call refused because the meter already stopped ({self._stop.kind}): "
                f"{self._stop.message.rstrip('.')}.",
                kind=self._stop.kind, model=request.model, provider=self.provider.name,
            )
        where = f"action {self.action_id}: LLM call to {request.model} refused"
        if self._calls >= self.max_calls:
            raise self._refuse(
                "call_cap",
                f"{where}: it already made {self._calls} calls, the action's limit (max_llm_calls = {self.max_calls}); "
                f"spent ${_usd(self._spent):.6f}.",
                request, estimate,
            )
        total = self._spent + self._reserved + estimate
        if total > self._cap:
            raise self._refuse(
                "cost_cap",
                f"{where}: its estimated cost of up to ${_usd(estimate):.6f} would bring the action to "
                f"${_usd(total):.6f}, over its cost cap of ${self.max_cost_usd:.6f} "
                f"(spent ${_usd(self._spent):.6f} in {self._calls} calls).",
                request, estimate,
            )
        if self.gate is not None and not self.gate.request(_usd(total)):
            raise self._refuse(
                "budget",
                f"{where}: the budget cannot cover a total of ${_usd(total):.6f} for this action "
                f"(spent ${_usd(self._spent):.6f} in {self._calls} calls, call estimate ${_usd(estimate):.6f}).",
                request, estimate,
            )

    # -- calls ---------------------------------------------------------------------

    async def _metered(
        self,
        request: LLMRequest,
        output_model: type[BaseModel] | None,
        invoke: Callable[[LLMRequest], Awaitable[_R]],
    ) -> _R:
        hold = getattr(self.gate, "hold", None) if self.gate is not None else None
        refused: LLMError | None = None
        with self._atomic():  # the admission's reads and writes: one store transaction
            estimate = self._estimate(request, output_model)
            request, estimate = self._fit_output(request, output_model, estimate)
            try:
                self._admit(request, estimate)
            except LLMError as exc:  # its transcript is written: keep it, raise after the commit
                refused = exc
            else:
                # Count and reserve before awaiting, so concurrent calls see each other.
                self._calls += 1
                self._reserved += estimate
                if callable(hold):
                    # If the process dies with this call out, it was billed all the same: settle at the worst case.
                    hold(_usd(_charge(self._spent + self._reserved)))
        if refused is not None:
            raise refused
        started, t0 = self._clock(), time.perf_counter()
        response: LLMResponse | None = None
        error: BaseException | None = None
        cancelled = False
        charged: Decimal | None = None  # what a call that went out with no usage back is charged
        try:
            result = await invoke(request)
            reply = result if isinstance(result, LLMResponse) else result.response
            cost = reply.cost_usd
            if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) or cost < 0:
                # A provider (or the API's usage figures) gave a cost that is no amount: never let it reach
                # the ledger; the call went out, so it is charged at its estimate, as an unreadable reply is.
                raise LLMError(
                    f"action {self.action_id}: provider {self.provider.name!r} reported a cost of {cost!r} USD for a "
                    f"call to {request.model}, which is not an amount; the call is charged at its estimate",
                    kind="malformed_response", model=request.model, provider=self.provider.name,
                )
            response = reply
            return result
        except LLMError as exc:
            error, response = exc, exc.response  # a billed but unusable reply still costs
            # Sent, no usage back, maybe billed (a timeout, an unreadable 200): charge the estimate; a timeout
            # once per request the call made (the SDK retries timeouts, and any attempt may have been billed).
            if response is None and exc.kind in MAYBE_BILLED_KINDS:
                charged = _charge(estimate) * (exc.attempts if exc.kind == "timeout" and exc.attempts else 1)
            raise
        except (asyncio.CancelledError, TimeoutError) as exc:
            # Cancelled or timed out after the request went out: no usage came back, but
            # the provider may bill the call anyway, so charge its estimate.
            error, cancelled, charged = exc, True, _charge(estimate)
            raise
        except BaseException as exc:  # the call still counts
            error = exc
            raise
        finally:
            self._reserved -= estimate
            if response is not None:
                self._spent += Decimal(str(response.cost_usd))
                self._usage = self._usage + response.usage
                self._last = response
            elif charged is not None:
                self._spent += charged
            elapsed_ms = (time.perf_counter() - t0) * 1000
            try:
                with self._atomic():  # the transcript and the running spend: one store transaction
                    self._save(request, response, error, estimate, started, self._clock(), elapsed_ms,
                               output_model=output_model, cancelled=cancelled, charged=charged)
                    if self.gate is not None:
                        self.gate.record(self.spent_usd)
                        if callable(hold) and self._reserved > 0:  # other calls of this action are still out
                            hold(_usd(_charge(self._spent + self._reserved)))
            except Exception:
                if error is None:
                    raise
                log.exception("action %s: spend gate failed to record %.6f USD", self.action_id, self.spent_usd)

    def _atomic(self) -> AbstractContextManager[Any]:
        """The gate's ``atomic()`` block, if it has one: a call's bookkeeping commits once, not once per write."""
        atomic = getattr(self.gate, "atomic", None) if self.gate is not None else None
        return atomic() if callable(atomic) else nullcontext()

    def _save(
        self,
        request: LLMRequest,
        response: LLMResponse | None,
        error: BaseException | None,
        estimate: Decimal,
        started: datetime,
        finished: datetime,
        elapsed_ms: float,
        *,
        output_model: type[BaseModel] | None,
        refused: bool = False,
        cancelled: bool = False,
        charged: Decimal | None = None,
    ) -> None:
        if self.transcripts is None:
            return
        if isinstance(error, LLMError):
            error_info: dict[str, Any] | None = error.to_dict()
        elif cancelled:
            what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            error_info = {"kind": "cancelled",
                          "message": f"{what} (charged at the call's estimate: the provider may still bill it)"}
        elif error is not None:
            error_info = {"kind": "exception", "message": f"{type(error).__name__}: {error}"}
        else:
            error_info = None
        record = {
            "action_id": self.action_id,
            "run_key": self.run_key,
            "call": None if refused else self._calls,
            "refused": refused,
            "cancelled": cancelled,
            "provider": self.provider.name,
            "model": response.model if response else request.model,
            "request": {**request.to_dict(), "output_model": output_model.__name__ if output_model else None},
            "response": response.to_dict() if response else None,
            "usage": (response.usage if response else Usage()).to_dict(),
            "cost_usd": response.cost_usd if response else (_usd(charged) if charged is not None else 0.0),
            "estimate_usd": _usd(estimate),
            "spent_usd": self.spent_usd,
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat(),
            "duration_ms": round(elapsed_ms, 3),
            "error": error_info,
        }
        try:
            self._transcript_ids.append(self.transcripts.save(record))
        except Exception:
            log.exception("action %s: could not store an LLM transcript", self.action_id)

    async def complete(
        self,
        prompt: Prompt,
        *,
        system: System | None = None,
        max_tokens: int | None = None,
    ) -> LLMResponse:
        """A metered text completion.

        ``prompt`` is the user's text or the full message list (ending with a user
        message); ``max_tokens`` defaults to the action's setting.
        """
        request = self._request(prompt, system, max_tokens)
        return await self._metered(request, None, self.provider.complete)

    async def structured(
        self,
        prompt: Prompt,
        output_model: type[T],
        *,
        system: System | None = None,
        max_tokens: int | None = None,
        offline: Callable[[], T] | None = None,
    ) -> T:
        """A metered structured call returning a validated ``output_model`` instance.

        ``offline`` builds the value when the offline provider is in use; other
        providers ignore it. The response is in :attr:`last_response`.
        """
        request = self._request(prompt, system, max_tokens)

        async def invoke(req: LLMRequest) -> StructuredResult[T]:
            return await self.provider.structured(req, output_model, offline=offline)

        result = await self._metered(request, output_model, invoke)
        return result.value
