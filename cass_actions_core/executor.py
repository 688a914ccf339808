"""The executor: runs a work unit's steps in order through the catalogue — the one path.

For each step, from the unit's first unfinished one:

1. approval: an action (or category) that needs a human yes parks the unit as
   ``awaiting_approval`` until the approval is answered;
2. budget: the action's estimate is reserved in its category; a refusal parks the unit
   as ``budget_blocked`` with the ledger's reason (never dropped: F2);
3. the run's idempotency key (local date, phase, unit, step index) is written **before**
   the side effect; a completed step is never run again;
4. the handler runs with a timeout, its LLM calls metered against the reservation and
   the action's caps;
5. the reservation is settled to the actual cost, the run's outcome stored, events
   emitted. A failing step fails the unit unless the step is optional.

When the unit ends, whatever the outcome, its work summary is written.

Between two steps the executor looks at the operator's controls in the store (another process,
``cass-actions cancel`` or ``pause``, may have written them): a cancel request ends the unit
``cancelled`` (the finished steps stay charged); a paused daemon puts the unit back in the queue,
to resume at its next step once the daemon is resumed.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from cass_actions_core import schema_files
from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult, CoreServices, InvalidResult
from cass_actions_core.catalogue import Catalogue, CatalogueAction
from cass_actions_core.clock import to_utc
from cass_actions_core.ledger import Blocked, BudgetLedger, Reservation, format_usd
from cass_actions_core.store import LeaseLostError, NotFoundError
from cass_actions_core.models import Priority
from cass_actions_core.plugins import BUILTIN_NAME
from cass_actions_core.summaries import build_summary
from cass_actions_core.supervisor import step_task_name

if TYPE_CHECKING:
    from cass_actions_core.clock import Clock
    from cass_actions_core.events import EventBus
    from cass_actions_core.llm.errors import LLMError
    from cass_actions_core.llm.metered import MeteredLLM
    from cass_actions_core.planning.costs import CostBook
    from cass_actions_core.store import ApprovalRow, Store, UnitRow

log = logging.getLogger("cass_actions.executor")

#: Builds the metered LLM client for one action run: (action, run key, gate, model or None) -> client.
LLMFactory = Callable[[CatalogueAction, str, "LedgerGate", "str | None"], "MeteredLLM"]


def step_key(unit: UnitRow, step_index: int) -> str:
    """The idempotency key of a step, ``<local date>/<phase>/<unit id>/<step index>``: the same for
    every attempt of the step (``ActionContext.run_key``; packs key their side effects on it)."""
    return f"{unit.local_date.isoformat()}/{unit.phase}/{unit.id}/{step_index}"


def run_key(unit: UnitRow, step_index: int) -> str:
    """The key of the step's current attempt in the store's action runs: :func:`step_key`, plus
    ``~<n>`` for its n-th attempt (after a temporary failure or a crash), so each attempt keeps
    its own outcome and cost."""
    base = step_key(unit, step_index)
    attempt = unit.data.get("attempt") or {}
    n = int(attempt.get("n", 1)) if attempt.get("step") == step_index else 1
    return base if n <= 1 else f"{base}~{n}"


#: Backoff before the n-th attempt of a step: RETRY_BASE * 2**(n-2), at most RETRY_CAP; a provider's
#: retry-after is honoured up to RETRY_AFTER_CAP.
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(minutes=30)
RETRY_AFTER_CAP = timedelta(hours=1)


@dataclass(frozen=True)
class Retry:
    """A step failed for a temporary reason (``error``) and may run again; the provider may have
    asked for a wait (``retry_after_seconds``)."""

    error: str
    retry_after_seconds: float | None = None


def next_attempt(unit: UnitRow, index: int, error: str, when: datetime) -> tuple[int, dict[str, Any]]:
    """The number of the attempt of step ``index`` that just ended with ``error`` (1, 2, ...) and the
    unit's ``attempt`` record for the next one: ``{"step", "n", "errors"}`` (every attempt's error, timed)."""
    previous = unit.data.get("attempt") or {}
    same = previous.get("step") == index
    n = int(previous.get("n", 1)) if same else 1
    errors = [*(previous.get("errors", []) if same else []), f"{when:%Y-%m-%d %H:%M} {error}"]
    return n, {"step": index, "n": n + 1, "errors": errors}


def retry_delay(attempt: int, retry_after_seconds: float | None) -> timedelta:
    """The wait before attempt ``attempt`` (2, 3, ...) of a step (see :data:`RETRY_BASE`)."""
    delay = min(RETRY_CAP, RETRY_BASE * 2 ** max(0, attempt - 2))
    if retry_after_seconds is not None:
        delay = max(delay, min(RETRY_AFTER_CAP, timedelta(seconds=retry_after_seconds)))
    return delay


class LedgerGate:
    """Connects a metered LLM client to one budget reservation.

    Before each call the client asks for room (the reservation grows, or the call is
    refused); after each call it reports the running total, which is kept in the store
    so a crash mid-action still settles what was really spent.
    """

    def __init__(self, ledger: BudgetLedger, reservation: Reservation, store: Store, clock: Clock) -> None:
        self.ledger, self.reservation, self.store, self.clock = ledger, reservation, store, clock
        self.spent = 0.0
        #: Whether a running spend was kept in the store (its key is removed when the step settles).
        self.kept = False
        #: Whether holds are synced to the disk before the call (its provider bills real money).
        self.durable = True

    def request(self, total_usd: float) -> bool:
        """Grow the reservation so the action's total may reach ``total_usd``."""
        return self.ledger.extend(self.reservation, total_usd, self.clock.now())

    def record(self, total_usd: float) -> None:
        """The action has actually spent ``total_usd`` so far."""
        self.spent = total_usd
        self.store.set_state(spend_key(self.reservation.id), total_usd)
        self.kept = True

    def hold(self, total_usd: float) -> None:
        """A call is about to go out: a crash before it returns settles the reservation at ``total_usd``.

        Synced to the disk before the call is made when money is about to leave (the provider
        bills real money), so even a power cut cannot lose what the call may cost."""
        with self.store.transaction(durable=self.durable):
            self.store.set_state(spend_key(self.reservation.id), total_usd)
        self.kept = True

    def atomic(self) -> Any:
        """One store transaction around a call's bookkeeping (see :class:`~cass_actions_core.llm.base.SpendGate`),
        synced to the disk when the provider bills real money, as :meth:`hold` is."""
        return self.store.transaction(durable=self.durable)

    def headroom(self) -> float:
        """The most the action's total could be granted now: its reservation plus what its category may still get."""
        current = self.ledger.reservation(self.reservation.id)
        return round(current.amount_usd + self.ledger.available(current.category, current.budget_day,
                                                                 critical=current.critical), 6)


#: State key of the whole-daemon pause (``Runtime.pause()``): ``{"by", "at", "reason"}`` while paused.
DAEMON_PAUSED_KEY = "daemon_paused"


def cancel_key(unit_id: str) -> str:
    """Where a request to cancel a running unit waits for the executor (``{"by", "at", "reason"}``)."""
    return f"cancel_request:{unit_id}"


def cancel_reason(by: str, reason: str | None, after: str = "") -> str:
    """The reason a cancelled unit carries: who cancelled it, (when) and why."""
    return f"cancelled by {by}{after}" + (f": {reason}" if reason else "")


def spend_key(reservation_id: str) -> str:
    """Where a reservation's running spend is kept until it is settled."""
    return f"spend:{reservation_id}"


class StoreKV:
    """A pack's key-value area (``ActionContext.kv``) over the store."""

    def __init__(self, store: Store, namespace: str) -> None:
        self._store, self._ns = store, namespace

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""
        return self._store.kv_get(self._ns, key, default)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON) under ``key``."""
        self._store.kv_set(self._ns, key, value)

    def delete(self, key: str) -> None:
        """Remove ``key``."""
        self._store.kv_delete(self._ns, key)

    def items(self) -> dict[str, Any]:
        """Every key and value."""
        return self._store.kv_items(self._ns)


class StoreHistory:
    """Read-only summary queries (``ActionContext.history``)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def summaries(self, *, local_date: Any = None, category: str | None = None, text: str | None = None,
                  limit: int | None = None) -> list[dict[str, Any]]:
        """Summary documents matching the filters."""
        return [row.data for row in self._store.query_summaries(local_date=local_date, category=category, text=text, limit=limit)]


class NotQueued(ValueError):
    """The unit asked to run is not queued (another writer moved it, or it ended)."""


@dataclass(frozen=True)
class _Started:
    """A step whose start is recorded: what its handler runs with and what its end settles."""

    unit: UnitRow
    index: int
    action: CatalogueAction
    key: str
    reservation: Reservation
    llm: MeteredLLM
    ctx: ActionContext
    choice: str | None
    gate: LedgerGate


@dataclass
class UnitOutcome:
    """What happened to a unit in one pass of the executor."""

    unit: UnitRow
    ran_steps: int


class Executor:
    """Runs units; everything it needs is passed in (no globals)."""

    def __init__(self, *, catalogue: Catalogue, store: Store, ledger: BudgetLedger, clock: Clock, bus: EventBus,
                 workspace: Path, llm_factory: LLMFactory, plan_source: Callable[[Any], str | None] | None = None,
                 stop_requested: Callable[[], bool] | None = None, costs: Callable[[], CostBook] | None = None) -> None:
        self.catalogue, self.store, self.ledger, self.clock, self.bus = catalogue, store, ledger, clock, bus
        self.config = catalogue.config
        self.workspace = workspace
        self.llm_factory = llm_factory
        self._plan_source = plan_source or (lambda unit: None)
        self._stop_requested = stop_requested or (lambda: False)
        self._costs = costs
        #: In a simulation: move the virtual clock on by each step's (learned) duration.
        self.advance_clock = False
        #: Why this process should be replaced (a handler that could not be stopped is still running), or None.
        self.restart_requested: str | None = None
        self._current: _Started | None = None
        self._made_dirs: set[str] = set()

    # -- approvals -------------------------------------------------------------------
    def needs_approval(self, action: CatalogueAction) -> bool:
        """Whether a run of ``action`` needs a human yes first."""
        d = action.definition
        ap = self.config.approvals
        return d.requires_approval or d.id in ap.actions or d.category in ap.categories

    # -- running ---------------------------------------------------------------------
    async def run_unit(self, unit_id: str, due: Callable[[UnitRow], bool] | None = None) -> UnitOutcome:
        """Run a queued unit from its first unfinished step until it ends, parks or is stopped (see
        :meth:`_run_unit`), honouring a cancel request stored for it: one made while it ran (or before a
        restart) ends it ``cancelled`` instead of leaving it parked or queued."""
        if self.cancel_request(unit_id) is not None:  # a request outlived a restart: the unit never runs again
            unit = self.store.get_unit(unit_id)
            if unit is not None and unit.status == "queued":
                return UnitOutcome(self.cancel_requested(unit, None), 0)
        outcome = await self._run_unit(unit_id, due)
        unit = outcome.unit
        if unit.status in ("queued", "budget_blocked", "awaiting_approval") and self.cancel_request(unit_id) is not None:
            return UnitOutcome(self.cancel_requested(unit, None), outcome.ran_steps)
        if unit.is_terminal and self.cancel_request(unit_id) is not None:
            self.store.delete_state(cancel_key(unit_id))  # came too late: the unit ended on its own
        return outcome

    async def _run_unit(self, unit_id: str, due: Callable[[UnitRow], bool] | None = None) -> UnitOutcome:
        """Run a queued unit from its first unfinished step until it ends or parks.

        Raises :class:`NotQueued` when the unit is not queued; ``due(unit)`` false leaves it
        queued, untouched (the scheduler's last look at its deadline).

        Store writes come in one transaction per step transition: the claim; the start of
        each step (approval, reservation, the run's idempotency key: written before the
        handler runs); and its end (settle, outcome, events, the next step, and the unit's
        end and summary when it ends). A crash between two transactions leaves the unit
        as a restart expects it (see ``Runtime.recover``).
        """
        store = self.store
        unit = store.get_unit(unit_id)
        if unit is None or unit.status != "queued":
            raise NotQueued(f"unit {unit_id} is not queued (status {unit.status if unit else 'missing'})")
        if due is not None and not due(unit):
            return UnitOutcome(unit, 0)
        ran = 0
        claimed = False
        for index in range(unit.next_step, len(unit.steps)):
            step = unit.steps[index]
            action = self.catalogue.actions.get(step["action"])
            key = run_key(unit, index)
            if claimed:
                halted = self._between_steps(unit, index, ran)
                if halted is not None:
                    return halted
            if ran and self._stop_requested():
                # Shutting down: the unit goes back to the queue and resumes at this step.
                with store.transaction():
                    unit = store.set_unit_status(unit.id, "queued", now=self.clock.now(),
                                                 reason=f"the scheduler stopped before step {index + 1}; it resumes there")
                    self.bus.emit("work_unit.queued", {"template_id": unit.template_id, "reason": unit.reason},
                                  unit_id=unit.id)
                return UnitOutcome(unit, ran)
            # The start of a step that cannot safely run twice must survive a power cut too.
            durable = action is not None and not action.definition.idempotent
            with store.transaction(durable=durable):
                if not claimed:  # the claim shares the first step's transaction: one commit fewer per unit
                    unit = self._claim(unit_id)
                    claimed = True
                previous = store.get_action_run(key)
                if previous is not None and previous.status in ("completed", "failed"):
                    # Finished before a restart: never run a finished step twice, and a
                    # required step that failed still fails its unit.
                    unit = store.set_next_step(unit.id, index + 1, self.clock.now())
                    if previous.status == "failed" and not step.get("optional", False):
                        return self._finish(unit, "failed",
                                            f"step {index + 1} ({previous.action_id}) failed: {previous.error}", ran)
                    continue
                if action is None or action.handler is None:
                    # The catalogue changed since the unit was planned (a pack was removed).
                    return self._finish(unit, "failed",
                                        f"step {index + 1} names {step['action']!r}, which is no longer registered", ran)
                invalid = self.invalid_params(action, step.get("params", {}))
                if invalid:
                    # Whatever stored the step (an old plan, a hand-edited file), the handler never sees
                    # parameters its schema refuses.
                    return self._finish(unit, "failed", f"step {index + 1} ({action.definition.id}): {invalid}", ran)
                parked = self._check_approval(unit, index, action)
                if parked is not None:
                    return UnitOutcome(parked, ran) if parked.status != "failed" else self._finish_written(parked, ran)
                model, choice = self.model_for(unit, index, action)
                reservation = self.ledger.reserve(
                    action.definition.category, self.reservation_for(action, model),
                    budget_day=self.clock.today(), now=self.clock.now(), unit_id=unit.id,
                    critical=Priority.of(action.definition.priority) == Priority.CRITICAL,
                    note=f"{action.definition.id} step {index + 1}",
                )
                if isinstance(reservation, Blocked):
                    return UnitOutcome(self._park_budget(unit, index, action, reservation), ran)
                started = self._begin_step(unit, index, step, action, key, reservation, model, choice)
            ok: bool | Blocked | Retry = False  # a step that could not start failed already
            invocation = await self._invoke_step(started) if isinstance(started, _Started) else None
            with store.transaction():
                if isinstance(started, _Started) and invocation is not None:
                    ok = self._end_step(started, invocation)
                if isinstance(ok, Blocked):
                    return UnitOutcome(self._park_budget(unit, index, action, ok), ran)
                ran += 1
                exhausted: list[str] = []
                if isinstance(ok, Retry):
                    outcome, exhausted = self._retry_or_fail(unit, index, action, ok, ran)
                    if outcome is not None:
                        return outcome
                    ok = False  # every attempt failed
                if not ok and not step.get("optional", False):
                    run = store.get_action_run(key)
                    why = f"step {index + 1} ({action.definition.id}) failed: {run.error if run else '?'}"
                    if len(exhausted) > 1:
                        listed = "; ".join(f"{i + 1}) {e}" for i, e in enumerate(exhausted))
                        why = f"step {index + 1} ({action.definition.id}) failed after {len(exhausted)} attempts: {listed}"
                    return self._finish(unit, "failed", why, ran, next_step=index + 1)
                if index == len(unit.steps) - 1:
                    return self._finish(unit, "completed", None, ran, next_step=index + 1)
                unit = store.set_next_step(unit.id, index + 1, self.clock.now())
        with store.transaction():
            if not claimed:
                unit = self._claim(unit_id)
            return self._finish(unit, "completed", None, ran)

    # -- operator controls ------------------------------------------------------------
    def cancel_request(self, unit_id: str) -> dict[str, Any] | None:
        """The stored request to cancel a running unit (``{"by", "at", "reason"}``), or None."""
        request = self.store.get_state(cancel_key(unit_id))
        return request if isinstance(request, dict) else None

    def _between_steps(self, unit: UnitRow, index: int, ran: int) -> UnitOutcome | None:
        """Before step ``index`` of a running unit: a cancel request ends it; a paused daemon requeues it."""
        if self.cancel_request(unit.id) is not None:
            return UnitOutcome(self.cancel_requested(unit, index), ran)
        paused = self.store.get_state(DAEMON_PAUSED_KEY)
        if isinstance(paused, dict):
            reason = (f"the daemon was paused by {paused.get('by', 'someone')} before step {index + 1}; "
                      "it resumes there when the daemon is resumed")
            with self.store.transaction():
                unit = self.store.set_unit_status(unit.id, "queued", reason=reason, now=self.clock.now())
                self.bus.emit("work_unit.queued", {"template_id": unit.template_id, "reason": reason, "paused": True},
                              unit_id=unit.id)
            return UnitOutcome(unit, ran)
        return None

    def cancel_requested(self, unit: UnitRow, index: int | None) -> UnitRow:
        """End ``unit`` as its stored cancel request asks (``index``: the step it stopped before)."""
        request = self.cancel_request(unit.id) or {}
        by = str(request.get("by") or "user")
        after = f", after step {index} of {len(unit.steps)}" if index else (
            f", after step {unit.next_step} of {len(unit.steps)}" if unit.next_step else "")
        return self.cancel(unit, cancel_reason(by, request.get("reason"), after), by=by)

    def cancel(self, unit: UnitRow, reason: str, *, by: str) -> UnitRow:
        """End a unit that is not terminal as ``cancelled``, in one transaction: a running unit goes through
        ``queued`` (the state machine's way out of ``running``); its open reservations are released (the
        spend of finished steps stays charged), its pending approvals closed, its summary written and
        ``work_unit.cancelled`` emitted. Any stored cancel request is removed."""
        now = self.clock.now()
        with self.store.transaction():
            unit = self.store.get_unit(unit.id) or unit
            if unit.status == "running":
                unit = self.store.set_unit_status(unit.id, "queued", now=now,
                                                  reason=f"cancel requested by {by}: stopped between steps")
            for reservation in self.ledger.open_reservations():
                if reservation.unit_id == unit.id:
                    self.ledger.release(reservation, now, note=f"unit cancelled by {by}")
                    self.store.delete_state(spend_key(reservation.id))
            for approval in self.store.withdraw_approvals(unit.id, by, f"unit cancelled by {by}", now):
                self.bus.emit("approval.resolved", {"approval_id": approval.id, "status": approval.status, "by": by,
                                                    "note": approval.note}, unit_id=unit.id)
            unit = self.store.set_unit_status(unit.id, "cancelled", reason=reason, now=now)
            self.store.delete_state(cancel_key(unit.id))
            self.write_summary(unit)
            self.bus.emit("work_unit.cancelled", {"template_id": unit.template_id, "reason": reason, "by": by,
                                                  "phase": unit.phase}, unit_id=unit.id)
        return unit

    def _claim(self, unit_id: str) -> UnitRow:
        """Move the unit from queued to running (inside the caller's transaction), or :class:`NotQueued`."""
        try:
            unit = self.store.claim_unit(unit_id, self.clock.now())
        except (ValueError, NotFoundError) as exc:  # another writer (a CLI cancel, another worker) came first
            raise NotQueued(f"unit {unit_id} is no longer queued: {exc}") from None
        self.bus.emit("work_unit.started", {"template_id": unit.template_id, "phase": unit.phase,
                                            "step": unit.next_step}, unit_id=unit.id)
        return unit

    def _retry_or_fail(self, unit: UnitRow, index: int, action: CatalogueAction, retry: Retry,
                       ran: int) -> tuple[UnitOutcome | None, list[str]]:
        """Re-queue the unit for another attempt of step ``index`` after its backoff; or, when the
        action's ``max_attempts`` are used up, ``(None, every attempt's error)`` for the caller to end it."""
        now = self.clock.now()
        n, attempt = next_attempt(unit, index, retry.error, now.astimezone(self.clock.tz))
        if n >= action.definition.max_attempts:
            return None, attempt["errors"]
        when = to_utc(now) + retry_delay(n + 1, retry.retry_after_seconds)
        data = {**unit.data, "attempt": attempt}
        deadline = unit.data.get("deadline")
        if deadline is None or to_utc(datetime.fromisoformat(deadline)) < when + RETRY_CAP:
            data["deadline"] = (when + RETRY_CAP).isoformat()  # room to start after the wait
        reason = (f"step {index + 1} ({action.definition.id}) attempt {n} of {action.definition.max_attempts} failed "
                  f"({retry.error}); attempt {n + 1} at {when.astimezone(self.clock.tz):%H:%M}")
        queued = self.store.set_unit_status(unit.id, "queued", reason=reason, now=now, not_before=when, data=data)
        self.bus.emit("work_unit.queued", {"template_id": unit.template_id, "reason": reason, "retry": "temporary-failure",
                                           "attempt": n + 1}, unit_id=unit.id)
        return UnitOutcome(queued, ran), attempt["errors"]

    def _check_approval(self, unit: UnitRow, index: int, action: CatalogueAction) -> UnitRow | None:
        if not self.needs_approval(action):
            return None
        now = self.clock.now()
        approval = self.store.approval_for(unit.id, index)
        if approval is None or approval.status == "pending":
            if approval is None:
                expires = to_utc(now) + timedelta(hours=self.config.approvals.expire_after_hours)
                approval = self.store.request_approval(unit.id, index, action.definition.id,
                                                       f"{action.definition.name}: {action.definition.description}", now, expires)
                self.bus.emit("approval.requested", {"approval_id": approval.id, "action_id": action.definition.id,
                                                     "step": index, "expires_at": approval.expires_at.isoformat()}, unit_id=unit.id)
            reason = f"step {index + 1} ({action.definition.id}) needs approval {approval.id}"
            parked = self.store.set_unit_status(unit.id, "awaiting_approval", reason=reason, now=now)
            self.write_summary(parked)  # parked work is visible in history, never silent
            self.bus.emit("work_unit.parked", {"status": "awaiting_approval", "reason": reason}, unit_id=unit.id)
            return parked
        why = self.refusal(approval)
        return None if why is None else self.store.set_unit_status(unit.id, "failed", reason=why, now=now)

    def invalid_params(self, action: CatalogueAction, params: Any) -> str | None:
        """Why ``params`` break the action's params schema (one sentence naming each parameter), or None."""
        if action.definition.id in self.catalogue.invalid_params_schemas:
            return None  # the catalogue check reports the schema itself
        errors = schema_files.validate_instance(action.definition.params, params)
        return ("invalid params: " + "; ".join(f"{'params' + where[1:]}: {message}" for where, message in errors)) if errors else None

    def refusal(self, approval: ApprovalRow) -> str | None:
        """Why a decided approval stops its step (rejected, or expired with ``approvals.on_expiry = "reject"``),
        or None when the step may run (approved, or expired with ``on_expiry = "approve"``) or it is pending."""
        if approval.status in ("pending", "approved") or (approval.status == "expired" and self.config.approvals.on_expiry == "approve"):
            return None
        where = f"approval {approval.id} for step {approval.step_index + 1} ({approval.action_id})"
        if approval.status == "rejected":
            return (f"{where} was rejected" + (f" by {approval.resolved_by}" if approval.resolved_by else "")
                    + (f": {approval.note}" if approval.note else ""))
        return f"{where} expired unanswered"

    def end_refused(self, unit: UnitRow, why: str) -> UnitOutcome:
        """End a unit parked for an approval that was refused: ``failed`` with the reason, its summary
        written and ``work_unit.failed`` emitted at once (no daemon needs to run for the answer to land)."""
        return self._finish(unit, "failed", why, 0)

    def _park_budget(self, unit: UnitRow, index: int, action: CatalogueAction, blocked: Blocked) -> UnitRow:
        reason = f"step {index + 1} ({action.definition.id}) blocked by budget: {blocked.reason}"
        parked = self.store.set_unit_status(unit.id, "budget_blocked", reason=reason, now=self.clock.now(),
                                            data={**unit.data, "budget_need_usd": blocked.amount_usd})
        self.write_summary(parked)
        self.bus.emit("budget.blocked", {"category": blocked.category, "needed_usd": blocked.amount_usd,
                                         "available_usd": blocked.available_usd, "reason": blocked.reason,
                                         "action_id": action.definition.id}, unit_id=unit.id)
        self.bus.emit("work_unit.parked", {"status": "budget_blocked", "reason": reason}, unit_id=unit.id)
        return parked

    def reservation_for(self, action: CatalogueAction, model: str | None = None) -> float:
        """What a step reserves before it runs: the action's learned cost (its declared estimate until runs teach better).

        The metered LLM client grows the reservation before each call to that call's worst case, so a low first
        reservation never lets a step spend money the ledger did not grant.
        """
        if self._costs is None:
            return action.definition.estimated_cost_usd
        return self._costs().cost(action.definition, model)

    def model_for(self, unit: UnitRow, index: int, action: CatalogueAction) -> tuple[str | None, str | None]:
        """The cheaper model a step's LLM calls use, if any, and why (None: the configured model).

        The planner's choice for the unit comes first; otherwise the same rule mid-day: a category
        below ``planner.cheap_below_fraction`` of its money runs its LLM actions on ``planner.cheap_model``.
        """
        d = action.definition
        if not d.uses_llm:
            return None, None
        if unit.data.get("model"):
            return str(unit.data["model"]), None  # chosen by the planner; its reason is on the unit
        planner = self.config.planner
        if not planner.cheap_model:
            return None, None
        from cass_actions_core.llm.registry import resolve_settings

        if resolve_settings(self.config.llm, d).model == planner.cheap_model:
            return None, None
        limit = self.ledger.limit(d.category, self.clock.today())
        left = self.ledger.available(d.category, self.clock.today())
        if limit <= 0 or left / limit >= planner.cheap_below_fraction:
            return None, None
        return planner.cheap_model, (f"step {index + 1} ({d.id}) on {planner.cheap_model}: {d.category} has "
                                     f"{left / limit:.0%} of its money left, below planner.cheap_below_fraction "
                                     f"{planner.cheap_below_fraction:.0%}")

    def _begin_step(self, unit: UnitRow, index: int, step: dict[str, Any], action: CatalogueAction, key: str,
                    reservation: Reservation, model: str | None, choice: str | None) -> _Started | bool:
        """Record that the step starts (its idempotency key, before any side effect) and build its context;
        ``False`` when it cannot start (no LLM client for it: the step failed, its money went back)."""
        definition = action.definition
        self.store.begin_action_run(key, unit.id, index, definition.id, self.clock.now())
        gate = LedgerGate(self.ledger, reservation, self.store, self.clock)
        try:
            llm = self.llm_factory(action, key, gate, model)
            gate.durable = getattr(getattr(llm, "provider", None), "bills_real_money", True) is not False
        except Exception as exc:  # e.g. an unknown provider: the step fails, the money goes back
            error = f"no LLM client for {definition.id}: {exc}"
            self.ledger.release(reservation, self.clock.now(), note=error)
            self.store.finish_action_run(key, "failed", 0.0, {"summary": "", "llm": {}}, error, self.clock.now())
            self.bus.emit("action.failed", {"action_id": definition.id, "step": index, "cost_usd": 0.0,
                                            "summary": "", "error": error}, unit_id=unit.id)
            return False
        pack = action.pack
        data_dir = self.workspace / pack
        if pack not in self._made_dirs:  # once per pack and process: not a system call per step
            data_dir.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(pack)
        ctx = ActionContext(
            action_id=definition.id, pack=pack, params=dict(step.get("params", {})), focus=unit.focus,
            motivation=unit.motivation, unit_id=unit.id, run_key=step_key(unit, index), daemon_id=self.config.daemon_id,
            phase=unit.phase, local_date=unit.local_date, clock=self.clock, llm=llm, workspace=self.workspace,
            data_dir=data_dir, kv=StoreKV(self.store, pack), history=StoreHistory(self.store),
            settings=self.config.pack_settings(pack),
            emit=lambda type, data: self.bus.emit(type, data, unit_id=unit.id),
            logger=logging.getLogger(f"cass_actions.pack.{pack}"),
            core=CoreServices(self.store, self.config) if pack == BUILTIN_NAME else None,
        )
        return _Started(unit, index, action, key, reservation, llm, ctx, choice, gate)

    async def _invoke_step(self, started: _Started) -> Invocation:
        """Run the step's handler (no transaction is open meanwhile); a shutdown that cancels it
        charges the step and requeues or abandons its unit before the cancellation goes on."""
        self._current = started
        try:
            invocation = await invoke(started.action, started.ctx)
        except asyncio.CancelledError:
            self._stopped_mid_step(started)
            raise
        finally:
            self._current = None
        if invocation.abandoned:
            # Only a new process stops it: ask for one (``run`` replaces its worker; see restart_requested).
            self.restart_requested = (f"step {started.index + 1} ({started.action.definition.id}) of unit "
                                      f"{started.unit.id}: {invocation.abandoned}")
        return invocation

    def _end_step(self, started: _Started, invocation: Invocation) -> bool | Blocked | Retry:
        """Settle the step's money and store its outcome (inside the caller's transaction).

        True/False for its outcome, :class:`Blocked` when an idempotent step failed only because the
        budget refused its first LLM call (nothing spent: the unit parks and the step runs again), or
        :class:`Retry` when it failed for a temporary LLM reason (rate limit, overload...)."""
        unit, index, action, key, reservation, llm = (started.unit, started.index, started.action, started.key,
                                                      started.reservation, started.llm)
        definition = action.definition
        result, llm_error = invocation.result, invocation.llm_error
        result.cost_usd = llm.spent_usd
        now = self.clock.now()
        self.ledger.settle(reservation, llm.spent_usd, now, note=f"{definition.id} {'ok' if result.success else 'failed'}")
        if started.gate.kept:
            self.store.delete_state(spend_key(reservation.id))
        if not result.success and llm.stop_reason == "budget" and not llm.spent_usd and definition.idempotent:
            # Money, not the action, stopped it before anything was spent: park, don't fail.
            self.store.withdraw_action_run(key)
            left = self.ledger.available(definition.category, self.clock.today())
            needs = llm.stop_estimate_usd or 0.0
            limit = self.ledger.limit(definition.category, self.clock.today())
            return Blocked(definition.category, self.clock.today(), needs, left,
                           f"{definition.category}: {format_usd(left)} left of {format_usd(limit)}, its next LLM call may cost "
                           f"up to {format_usd(needs)}")
        if self.advance_clock and self._costs is not None:
            # A simulated step takes its (learned) duration of virtual time, as a real one would.
            advance = getattr(self.clock, "advance", None)
            if advance is not None:
                advance(timedelta(minutes=self._costs().minutes(definition)))
                now = self.clock.now()
        record = result.to_dict()
        record["artifacts"] = [a.to_dict() for a in [*started.ctx.artifacts, *result.artifacts]]
        record["llm"] = llm_record(llm)
        if started.choice:
            record["choices"] = [started.choice]
        status = "completed" if result.success else "failed"
        self.store.finish_action_run(key, status, llm.spent_usd, record, result.error, now)
        self.bus.emit(f"action.{status}", {"action_id": definition.id, "step": index, "cost_usd": llm.spent_usd,
                                          "summary": result.summary, "error": result.error}, unit_id=unit.id)
        if not result.success and llm_error is not None and llm_error.retryable:
            return Retry(result.error or llm_error.message, llm_error.retry_after_seconds)
        return result.success

    def stop_current(self) -> bool:
        """End the step running now as stopped by a shutdown (its handler ignored the cancellation and
        goes on, abandoned); False if no step is running."""
        current, self._current = self._current, None
        if current is None:
            return False
        self._stopped_mid_step(current)
        return True

    def _stopped_mid_step(self, started: _Started) -> None:
        """The scheduler stopped (shutdown) while a step ran: charge it, then requeue or abandon its unit.

        After a lost lease nothing can be written: the new holder's crash recovery does this instead."""
        try:
            with self.store.transaction():
                self._record_stop(started)
        except LeaseLostError:
            log.warning("unit %s: the lease is lost; its new holder recovers step %d", started.unit.id, started.index + 1)

    def _record_stop(self, started: _Started) -> None:
        unit, index, action, key, reservation, llm = (started.unit, started.index, started.action, started.key,
                                                      started.reservation, started.llm)
        definition = action.definition
        now = self.clock.now()
        spent = llm.spent_usd  # includes calls that were out, at their estimate
        self.ledger.settle(reservation, spent, now, note=f"{definition.id} stopped by a shutdown")
        self.store.delete_state(spend_key(reservation.id))
        reason = f"stopped by a shutdown during step {index + 1} ({definition.id}); ${spent:.6f} charged"
        self.store.finish_action_run(key, "failed", spent, {"summary": "", "llm": llm_record(llm), "stopped": True},
                                     reason, now)
        if definition.idempotent:
            _n, attempt = next_attempt(unit, index, reason, now.astimezone(self.clock.tz))
            self.store.set_unit_status(unit.id, "queued", reason=f"{reason}; it runs again at the next start", now=now,
                                       data={**unit.data, "attempt": attempt})
        else:
            why = f"{reason}, which is not idempotent: not safe to run again"
            stopped = self.store.set_unit_status(unit.id, "abandoned", reason=why, now=now)
            self.write_summary(stopped)
            self.bus.emit("work_unit.abandoned", {"reason": why}, unit_id=unit.id)

    def _finish(self, unit: UnitRow, status: str, reason: str | None, ran: int, **fields: Any) -> UnitOutcome:
        unit = self.store.set_unit_status(unit.id, status, reason=reason, now=self.clock.now(), current=unit, **fields)
        return self._finish_written(unit, ran)

    def _finish_written(self, unit: UnitRow, ran: int) -> UnitOutcome:
        self.write_summary(unit)
        self.bus.emit(f"work_unit.{unit.status}", {"template_id": unit.template_id, "reason": unit.reason,
                                                   "phase": unit.phase}, unit_id=unit.id)
        return UnitOutcome(unit, ran)

    def write_summary(self, unit: UnitRow) -> dict[str, Any]:
        """Build and store the unit's work summary (any outcome)."""
        record = build_summary(self.store, unit, daemon_id=self.config.daemon_id, plan_source=self._plan_source(unit))
        self.store.save_summary(
            unit_id=unit.id, slug=record["slug"], local_date=unit.local_date, phase=unit.phase, category=unit.category,
            template_id=unit.template_id, status=unit.status, text=record["narrative"], data=record, now=self.clock.now(),
        )
        return record


def llm_record(llm: MeteredLLM) -> dict[str, Any]:
    """The metered client's totals, as stored with the action run."""
    usage = llm.usage
    return {
        "calls": llm.calls, "spent_usd": llm.spent_usd, "stop_reason": llm.stop_reason, "model": llm.settings.model,
        "transcript_ids": list(llm.transcript_ids),
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                  "cache_write_5m_tokens": usage.cache_write_5m_tokens, "cache_write_1h_tokens": usage.cache_write_1h_tokens,
                  "cache_read_tokens": usage.cache_read_tokens},
    }


#: How long a handler past its timeout gets to honour the cancellation before it is abandoned.
CANCEL_GRACE_SECONDS = 5.0


class Unstoppable(Exception):
    """A handler went on past its timeout and ignored the cancellation: it was abandoned (still running)."""


async def _with_time_limit(coro: Any, timeout: float, name: str | None = None) -> Any:
    """Await ``coro`` for at most ``timeout`` seconds; then cancel it and give it
    :data:`CANCEL_GRACE_SECONDS` to stop. A handler that ignores the cancellation is left behind
    (:class:`Unstoppable`): asyncio cannot stop it, only a new process can (``run`` restarts its
    worker for that; see ``docs/reliability.md``)."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            return task.result()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_SECONDS)
    except asyncio.CancelledError:
        task.cancel()  # the scheduler itself is stopping: the handler goes with it
        raise
    if task not in done:
        raise Unstoppable(f"timed out after {timeout:g} s and ignored the cancellation for {CANCEL_GRACE_SECONDS:g} s: "
                          "the handler was abandoned, still running")
    if not task.cancelled():
        task.exception()  # retrieved: whatever it raised on its way out, the step timed out
    raise asyncio.TimeoutError


class _HandlerRaised(Exception):
    """A handler raised a BaseException (CancelledError of its own, SystemExit, KeyboardInterrupt...)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.name = type(exc).__name__
        self.detail = str(exc) or "no message"


async def _guarded(coro: Any) -> Any:
    """Await a handler, turning the BaseExceptions it raises itself into :class:`_HandlerRaised`.

    asyncio re-raises SystemExit and KeyboardInterrupt out of the event loop, so they must
    be caught inside the task. A CancelledError is the handler's own unless this task is
    being cancelled (the step's timeout or the scheduler's shutdown), which still propagates.
    """
    try:
        return await coro
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise _HandlerRaised(exc) from None
    except Exception:
        raise
    except BaseException as exc:
        raise _HandlerRaised(exc) from None


def _where(exc: BaseException) -> str:
    """`` (at file.py:12 in name)``: the innermost frame of ``exc``'s traceback, or nothing."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""


class Invocation(NamedTuple):
    """What one handler call gave: its result, the LLM error that ended it (if one did: a handler
    that catches it and raises ActionFailed decides for itself, no retry), and why it was abandoned
    still running (it ignored the cancellation at its timeout), if it was."""

    result: ActionResult
    llm_error: LLMError | None
    abandoned: str | None


async def invoke(action: CatalogueAction, ctx: ActionContext) -> Invocation:
    """Call the handler with its time limit; every failure becomes a failed result with a clear error."""
    from cass_actions_core.llm.errors import LLMError

    definition = action.definition
    assert action.handler is not None
    llm_error: LLMError | None = None
    abandoned: str | None = None
    try:
        # The task's name lets a supervised worker's watchdog name this step if its handler blocks the loop.
        value = await _with_time_limit(_guarded(action.handler(ctx)), definition.timeout_seconds,
                                       name=step_task_name(ctx.daemon_id, ctx.run_key))
        result = ActionResult.from_handler(value)
        result.check()
    except Unstoppable as exc:
        log.error("action %s: %s", definition.id, exc)
        result = ActionResult(success=False, error=str(exc))
        abandoned = str(exc)
    except _HandlerRaised as exc:
        log.error("action %s raised %s", definition.id, exc.name)
        result = ActionResult(success=False, error=f"the handler raised {exc.name}: {exc.detail}")
    except asyncio.TimeoutError:
        result = ActionResult(success=False, error=f"timed out after {definition.timeout_seconds:g} s")
    except ActionFailed as exc:
        result = ActionResult(success=False, error=str(exc))
    except InvalidResult as exc:
        result = ActionResult(success=False, error=f"the handler returned an unusable result: {exc}")
    except LLMError as exc:
        llm_error = exc
        result = ActionResult(success=False, error=f"LLM call stopped ({exc.kind}): {exc}")
    except Exception as exc:  # a handler bug must not take the loop down
        # One line where it went wrong (the unit's reason says the rest); the whole traceback at DEBUG,
        # for the pack's author: a daemon's log is not the place for other people's stack traces.
        message = _storable(f"{type(exc).__name__}: {exc}")
        log.error("action %s raised %s%s", definition.id, message, _where(exc))
        log.debug("action %s raised", definition.id, exc_info=exc)
        result = ActionResult(success=False, error=message)
    if not result.success:
        # An exception's text is the handler's too: bounded, and storable whatever it holds.
        result.error = _storable(result.error or result.summary or "the handler reported failure")
    return Invocation(result, llm_error, abandoned)


#: The longest error text kept from a failed step (a unit's reason, its summary, an event).
MAX_ERROR_CHARS = 2_000


def _storable(text: str) -> str:
    """``text`` cut to :data:`MAX_ERROR_CHARS`, with what UTF-8 cannot hold (lone surrogates) escaped."""
    text = str(text)
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS - 1] + "\u2026"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
