"""The rows the store hands out (frozen dataclasses with aware datetimes and decoded JSON), and the mappers
that build each from its SQLite row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from cass_actions_core.store.values import _dt, _dt_opt, _unjson
from cass_actions_core.store.vocabulary import TERMINAL_STATUSES

if TYPE_CHECKING:
    import sqlite3


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a daemon's scheduler lease, from which process and host, and until when."""

    daemon_id: str
    holder: str
    pid: int
    hostname: str
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    #: The fencing token: it grows whenever another holder takes the lease, so a write fenced by an
    #: older token is refused even if a holder of the same name came back.
    token: int = 0

    def expired(self, now: datetime) -> bool:
        """Whether the lease has run out at ``now``."""
        return self.expires_at <= now


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One local date's plan: where it came from, why, the day intention and the plan document."""

    local_date: date
    created_at: datetime
    source: str
    reason: str | None
    intention: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UnitRow:
    """One work unit as stored (steps are ``{"action", "params", "optional"}`` mappings)."""

    id: str
    daemon_id: str
    local_date: date
    phase: str
    template_id: str
    name: str
    category: str
    priority: int
    position: int
    status: str
    reason: str | None
    focus: str | None
    motivation: str | None
    requires_idle: bool
    steps: list[dict[str, Any]]
    estimated_cost_usd: float
    next_step: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    not_before: datetime | None
    data: dict[str, Any]

    @property
    def is_terminal(self) -> bool:
        """Whether the unit has reached a status it never leaves."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class UnitBrief:
    """The columns of a unit the scheduler reads on every tick (see :meth:`Store.unit_briefs`)."""

    id: str
    local_date: date
    phase: str
    category: str
    not_before: datetime | None
    requires_idle: bool
    #: ``data.deadline``: when a re-queued unit must have started (None: its phase's end).
    deadline: datetime | None


@dataclass(frozen=True, slots=True)
class TransitionRow:
    """One recorded status change of a unit (``from_status`` is None for its creation)."""

    id: int
    unit_id: str
    at: datetime
    from_status: str | None
    to_status: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class ActionRunRow:
    """One run of one step of a unit, keyed by its idempotency key."""

    key: str
    unit_id: str
    step_index: int
    action_id: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    cost_usd: float
    result: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One append-only budget ledger row (see :mod:`cass_actions_core.ledger` for the encoding)."""

    id: int
    budget_day: date
    category: str
    kind: str
    amount_usd: float
    reservation_id: str
    unit_id: str | None
    note: str | None
    at: datetime
    critical: bool


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """One category's money on one budget day: settled spend and outstanding reservations."""

    category: str
    spent_usd: float
    reserved_usd: float

    @property
    def committed_usd(self) -> float:
        """Settled plus outstanding."""
        return round(self.spent_usd + self.reserved_usd, 6)


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    """A request for a human yes on one step of a unit, and its answer."""

    id: str
    unit_id: str
    step_index: int
    action_id: str
    status: str
    reason: str | None
    requested_at: datetime
    expires_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class EventRow:
    """One persisted event."""

    id: int
    at: datetime
    type: str
    unit_id: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """A unit's work summary: what ran, why, results, cost (the ``data`` document) and its text."""

    unit_id: str
    slug: str
    local_date: date
    phase: str
    category: str
    template_id: str
    status: str
    text: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BudgetOverride:
    """One change of a budget limit made at run time (``budget set`` / ``budget clear``).

    ``category`` None is the daily total (``budget.daily_usd``); ``budget_day`` None is a
    standing override, which applies to every budget day from ``from_day`` on until a later
    change; otherwise it applies to that budget day only. ``amount_usd`` None records a clear.
    """

    id: int
    category: str | None
    budget_day: date | None
    from_day: date
    amount_usd: float | None
    set_by: str
    set_at: datetime

    @property
    def standing(self) -> bool:
        """Whether it applies from ``from_day`` on (True) or to one budget day only."""
        return self.budget_day is None


@dataclass(frozen=True, slots=True)
class TranscriptRow:
    """An LLM transcript kept out of line, referenced by its id from results and summaries."""

    id: str
    run_key: str | None
    created_at: datetime
    data: dict[str, Any]


# --------------------------------------------------------------------------- row mapping


def _lease(row: sqlite3.Row) -> Lease:
    return Lease(
        daemon_id=row["daemon_id"],
        holder=row["holder"],
        pid=row["pid"],
        hostname=row["hostname"],
        acquired_at=_dt(row["acquired_at"]),
        renewed_at=_dt(row["renewed_at"]),
        expires_at=_dt(row["expires_at"]),
        token=int(row["token"]),
    )


def _plan(row: sqlite3.Row) -> PlanRow:
    return PlanRow(local_date=date.fromisoformat(row["local_date"]), created_at=_dt(row["created_at"]),
                   source=row["source"], reason=row["reason"], intention=row["intention"], data=_unjson(row["data"]))


def _transition(row: sqlite3.Row) -> TransitionRow:
    return TransitionRow(id=row["id"], unit_id=row["unit_id"], at=_dt(row["at"]), from_status=row["from_status"],
                         to_status=row["to_status"], reason=row["reason"])


def _event(row: sqlite3.Row) -> EventRow:
    return EventRow(id=row["id"], at=_dt(row["at"]), type=row["type"], unit_id=row["unit_id"], data=_unjson(row["data"]))


def _transcript(row: sqlite3.Row) -> TranscriptRow:
    return TranscriptRow(id=row["id"], run_key=row["run_key"], created_at=_dt(row["created_at"]), data=_unjson(row["data"]))


def _ledger_totals(row: sqlite3.Row) -> LedgerTotals:
    spent, reserved = row["spent_micros"], row["reserved_micros"]
    for value in (spent, reserved):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{value!r} is not a whole number of micro-dollars")
    return LedgerTotals(row["category"], spent / 1_000_000, reserved / 1_000_000)


def _unit_brief(row: sqlite3.Row) -> UnitBrief:
    return UnitBrief(id=row["id"], local_date=date.fromisoformat(row["local_date"]), phase=row["phase"],
                       category=row["category"], not_before=_dt_opt(row["not_before"]),
                       requires_idle=bool(row["requires_idle"]), deadline=_dt_opt(row["deadline"]))


def _unit(row: sqlite3.Row) -> UnitRow:
    return UnitRow(
        id=row["id"],
        daemon_id=row["daemon_id"],
        local_date=date.fromisoformat(row["local_date"]),
        phase=row["phase"],
        template_id=row["template_id"],
        name=row["name"],
        category=row["category"],
        priority=row["priority"],
        position=row["position"],
        status=row["status"],
        reason=row["reason"],
        focus=row["focus"],
        motivation=row["motivation"],
        requires_idle=bool(row["requires_idle"]),
        steps=_unjson(row["steps"]),
        estimated_cost_usd=row["estimated_cost_usd"],
        next_step=row["next_step"],
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
        started_at=_dt_opt(row["started_at"]),
        finished_at=_dt_opt(row["finished_at"]),
        not_before=_dt_opt(row["not_before"]),
        data=_unjson(row["data"]),
    )


def _action_run(row: sqlite3.Row) -> ActionRunRow:
    return ActionRunRow(
        key=row["key"],
        unit_id=row["unit_id"],
        step_index=row["step_index"],
        action_id=row["action_id"],
        status=row["status"],
        started_at=_dt(row["started_at"]),
        finished_at=_dt_opt(row["finished_at"]),
        cost_usd=row["cost_usd"],
        result=_unjson(row["result"]),
        error=row["error"],
    )


def _ledger_entry(row: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(
        id=row["id"],
        budget_day=date.fromisoformat(row["budget_day"]),
        category=row["category"],
        kind=row["kind"],
        amount_usd=row["amount_usd"],
        reservation_id=row["reservation_id"],
        unit_id=row["unit_id"],
        note=row["note"],
        at=_dt(row["at"]),
        critical=bool(row["critical"]),
    )


def _approval(row: sqlite3.Row) -> ApprovalRow:
    return ApprovalRow(
        id=row["id"],
        unit_id=row["unit_id"],
        step_index=row["step_index"],
        action_id=row["action_id"],
        status=row["status"],
        reason=row["reason"],
        requested_at=_dt(row["requested_at"]),
        expires_at=_dt(row["expires_at"]),
        resolved_at=_dt_opt(row["resolved_at"]),
        resolved_by=row["resolved_by"],
        note=row["note"],
    )


def _budget_override(row: sqlite3.Row) -> BudgetOverride:
    return BudgetOverride(
        id=row["id"],
        category=row["category"] or None,
        budget_day=None if row["budget_day"] is None else date.fromisoformat(row["budget_day"]),
        from_day=date.fromisoformat(row["from_day"]),
        amount_usd=row["amount_usd"],
        set_by=row["set_by"],
        set_at=_dt(row["set_at"]),
    )


def _summary(row: sqlite3.Row) -> SummaryRow:
    return SummaryRow(
        unit_id=row["unit_id"],
        slug=row["slug"],
        local_date=date.fromisoformat(row["local_date"]),
        phase=row["phase"],
        category=row["category"],
        template_id=row["template_id"],
        status=row["status"],
        text=row["text"],
        data=_unjson(row["data"]),
        created_at=_dt(row["created_at"]),
    )
