"""The store's vocabulary: day phases, plan sources, unit statuses and the work-unit state machine, and the
values the other status and kind columns may hold."""

from __future__ import annotations

#: Day phases in their order within a local date (used for sorting).
PHASES: tuple[str, ...] = ("morning", "afternoon", "evening", "night")

#: Where a day plan came from.
PLAN_SOURCES: tuple[str, ...] = ("llm", "fallback", "file", "manual")

#: Every status a work unit can have.
UNIT_STATUSES: tuple[str, ...] = (
    "planned",
    "queued",
    "running",
    "completed",
    "failed",
    "budget_blocked",
    "awaiting_approval",
    "expired",
    "cancelled",
    "abandoned",
)

#: Statuses a unit never leaves.
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "expired", "cancelled", "abandoned"})

#: Statuses in which a unit waits (never dropped: F2) until money or a human frees it.
PARKED_STATUSES: frozenset[str] = frozenset({"budget_blocked", "awaiting_approval"})

#: The legal moves of the work-unit state machine.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    "planned": frozenset({"queued", "cancelled", "expired"}),
    "queued": frozenset({"running", "budget_blocked", "awaiting_approval", "expired", "cancelled"}),
    # running -> queued: a unit found running after a restart and resumed at its first
    # unfinished step.
    "running": frozenset({"completed", "failed", "budget_blocked", "awaiting_approval", "abandoned", "queued"}),
    "budget_blocked": frozenset({"queued", "expired", "cancelled"}),
    # awaiting_approval -> failed: the human said no.
    "awaiting_approval": frozenset({"queued", "cancelled", "expired", "failed"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "expired": frozenset(),
    "cancelled": frozenset(),
    "abandoned": frozenset(),
}

#: Moving into one of these needs a non-empty reason: nothing is parked, expired,
#: cancelled or abandoned without a sentence a user can read in ``history``.
REASON_REQUIRED: frozenset[str] = frozenset({"budget_blocked", "awaiting_approval", "expired", "cancelled", "abandoned"})

ACTION_RUN_STATUSES: tuple[str, ...] = ("started", "completed", "failed")
APPROVAL_STATUSES: tuple[str, ...] = ("pending", "approved", "rejected", "expired")
LEDGER_KINDS: tuple[str, ...] = ("reserve", "settle", "release")

# ORDER BY fragment putting phases in day order.
_PHASE_ORDER_SQL = "CASE phase WHEN 'morning' THEN 0 WHEN 'afternoon' THEN 1 WHEN 'evening' THEN 2 WHEN 'night' THEN 3 ELSE 4 END"
