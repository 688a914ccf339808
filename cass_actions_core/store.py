"""The durable store: one SQLite file per daemon holding everything that must survive a restart.

What lives here: the day plans, the work units and every status change they went
through, the action runs (each keyed by its idempotency key and written *before* the side
effect), the append-only budget ledger, approvals, events, work summaries, LLM
transcripts (kept out of line and referenced by id), a per-pack key-value area, scheduler
state, and the lease that keeps two processes from running one daemon's scheduler.

Design choices, and why:

* **One file, one daemon.** The daemon id is written into the ``meta`` table when the
  file is created; opening it with another id is refused, so two daemons can never mix
  their history (the earlier system lost summaries to a wrong daemon id, B2).
* **WAL journal, explicit transactions.** The connection runs with
  ``isolation_level=None`` and every multi-step update goes through
  :meth:`Store.transaction` (``BEGIN IMMEDIATE`` ... ``COMMIT``/``ROLLBACK``), so a
  crash leaves either all of an update or none of it, and a second connection (another
  process, or a thread with its own :class:`Store`) waits for the write lock instead of
  interleaving.
* **Durability contract.** ``synchronous=NORMAL`` in WAL mode: a *process* crash
  (SIGKILL, the OOM killer, a segfault) loses nothing that was committed, because a
  commit is in the operating system's hands before it returns. A *power cut or kernel
  crash* may lose the last commits since the WAL was last synced, and only bookkeeping
  of work that spent no money: every write that precedes money or a side effect that
  cannot be repeated leaving the process is committed with ``durable=True``, which syncs
  the WAL to the disk before the commit returns (the hold before each LLM call, the start
  of a step that is not idempotent). After a power cut the store is always consistent
  (SQLite's guarantee); a step whose finish was lost runs again as after a crash.
* **Aware datetimes only.** Every datetime is stored as an ISO-8601 string that keeps
  the offset it was given (the daemon's local offset, readable in history); a naive
  datetime raises :class:`ValueError` (F4). Time comparisons in SQL go through
  ``julianday()``, which understands offsets, never through string order.
* **Never destroy a file we do not understand.** A file that is not a database, is
  truncated or fails ``PRAGMA quick_check``, is some other program's database, or was
  written by a newer schema, is refused with :class:`StoreError` *before* anything is
  written to it (the checks only read, under SQLite's own locks).
* **Thread use.** A :class:`Store` wraps one :mod:`sqlite3` connection opened with the
  default ``check_same_thread=True``: use it only from the thread that opened it (the
  asyncio loop thread). Other threads or processes open their own :class:`Store` on the
  same file; ``BEGIN IMMEDIATE`` and the 5 s busy timeout serialise their writes. Never
  ``await`` inside a ``with store.transaction():`` block: another task would run its
  statements inside your transaction.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from cass_actions_core import __version__

_T = TypeVar("_T")

__all__ = [
    "ACTION_RUN_STATUSES",
    "ALLOWED_TRANSITIONS",
    "APPROVAL_STATUSES",
    "LEDGER_KINDS",
    "MIGRATIONS",
    "PARKED_STATUSES",
    "PHASES",
    "PLAN_SOURCES",
    "REASON_REQUIRED",
    "SCHEMA_VERSION",
    "TERMINAL_STATUSES",
    "UNIT_STATUSES",
    "ActionRunRow",
    "ApprovalRow",
    "BudgetOverride",
    "EventRow",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "LedgerEntry",
    "LedgerTotals",
    "Migration",
    "NotFoundError",
    "PlanRow",
    "QueuedBrief",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SummaryRow",
    "TranscriptRow",
    "TransitionRow",
    "UnitRow",
]

# --------------------------------------------------------------------------- errors


class StoreError(Exception):
    """The store cannot do what was asked; the message is one paragraph a person can act on."""


class StoreUnavailable(StoreError):
    """The store could not be written or read right now (disk full, read-only, locked); nothing was changed.
    The scheduler waits and tries again instead of stopping."""


class NotFoundError(StoreError, LookupError):
    """A row named by id (approval, action run, reservation, unit) does not exist."""


class LeaseHeldError(StoreError):
    """Another live process holds this daemon's scheduler lease."""


class LeaseLostError(StoreError):
    """The caller no longer holds the lease it tries to renew (it expired and was taken over, or was released)."""


# --------------------------------------------------------------------------- vocabulary

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

#: Unit columns that :meth:`Store.set_unit_status` may change besides status and reason.
_STATUS_FIELDS: frozenset[str] = frozenset({"started_at", "finished_at", "not_before", "next_step", "data"})

_SQLITE_HEADER = b"SQLite format 3\x00"
_BUSY_TIMEOUT_MS = 5000
_WAL_CHECKPOINT_PAGES = 10_000

# ORDER BY fragment putting phases in day order.
_PHASE_ORDER_SQL = "CASE phase WHEN 'morning' THEN 0 WHEN 'afternoon' THEN 1 WHEN 'evening' THEN 2 WHEN 'night' THEN 3 ELSE 4 END"


# --------------------------------------------------------------------------- value helpers


def _ts(value: datetime, what: str = "datetime") -> str:
    """An aware datetime as ISO-8601 text with its offset; naive datetimes are refused (F4)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{what}: {value.isoformat()} is a naive datetime; the store keeps only timezone-aware "
            "datetimes (use the daemon clock, or datetime.now(tz))"
        )
    return value.isoformat()


def _ts_opt(value: datetime | None, what: str = "datetime") -> str | None:
    return None if value is None else _ts(value, what)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _dt_opt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _day(value: date, what: str = "date") -> str:
    # datetime is a subclass of date; a datetime here is almost certainly a caller bug
    # (a local date must come from the daemon's time zone, not be truncated blindly).
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"{what}: expected a datetime.date, got {type(value).__name__}")
    return value.isoformat()


def _json(value: Any) -> str:
    # allow_nan=False: the columns must stay valid JSON for any other reader.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _unjson(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _money(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what}: expected a number of USD, got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{what}: {value} is not a finite amount")
    if value < 0:
        raise ValueError(f"{what}: {value} is negative")
    return round(float(value), 6)


def _check_phase(phase: str) -> str:
    if phase not in PHASES:
        raise ValueError(f"unknown day phase {phase!r}; expected one of {', '.join(PHASES)}")
    return phase


def _micros(usd: float) -> int:
    """USD (already rounded to 6 decimals) as integer micro-dollars, so sums are exact."""
    return int(round(usd * 1_000_000))


def _new_id() -> str:
    return uuid.uuid4().hex


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still exists (a zombie counts as dead)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        # os.kill on Windows terminates the process whatever the signal; never probe
        # there: rely on the lease's expiry instead.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True  # cannot tell: assume alive, the expiry still frees the lease
    # A SIGKILLed child that its parent has not reaped yet is a zombie: it answers
    # kill(0) but will never renew the lease.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state = stat.rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


# --------------------------------------------------------------------------- rows


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
class QueuedBrief:
    """The columns of a queued unit the scheduler reads on every tick (see :meth:`Store.queued_briefs`)."""

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


# --------------------------------------------------------------------------- migrations


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``apply`` runs inside the migration transaction (no COMMIT inside)."""

    version: int
    description: str
    apply: Callable[[sqlite3.Connection], None] = field(repr=False)


def _run_statements(conn: sqlite3.Connection, statements: Iterable[str]) -> None:
    # executescript() would COMMIT the surrounding transaction first; run one by one.
    for statement in statements:
        conn.execute(statement)


_SCHEMA_V1: tuple[str, ...] = (
    """CREATE TABLE plans (
        local_date TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('llm','fallback','file','templates')),
        reason TEXT,
        intention TEXT,
        data TEXT NOT NULL
    )""",
    """CREATE TABLE units (
        id TEXT PRIMARY KEY,
        daemon_id TEXT NOT NULL,
        local_date TEXT NOT NULL,
        phase TEXT NOT NULL CHECK (phase IN ('morning','afternoon','evening','night')),
        template_id TEXT NOT NULL,
        name TEXT NOT NULL,
        category TEXT NOT NULL,
        priority INTEGER NOT NULL,
        position INTEGER NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        focus TEXT,
        motivation TEXT,
        requires_idle INTEGER NOT NULL DEFAULT 0,
        steps TEXT NOT NULL,
        estimated_cost_usd REAL NOT NULL DEFAULT 0,
        next_step INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        not_before TEXT,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX units_by_day ON units (local_date, phase, status)",
    "CREATE INDEX units_by_status ON units (status)",
    "CREATE INDEX units_by_template ON units (template_id, local_date)",
    """CREATE TABLE unit_transitions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        unit_id TEXT NOT NULL REFERENCES units(id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        from_status TEXT,
        to_status TEXT NOT NULL,
        reason TEXT
    )""",
    "CREATE INDEX unit_transitions_by_unit ON unit_transitions (unit_id, id)",
    """CREATE TABLE action_runs (
        key TEXT PRIMARY KEY,
        unit_id TEXT NOT NULL REFERENCES units(id),
        step_index INTEGER NOT NULL,
        action_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('started','completed','failed')),
        started_at TEXT NOT NULL,
        finished_at TEXT,
        cost_usd REAL NOT NULL DEFAULT 0,
        result TEXT,
        error TEXT
    )""",
    "CREATE INDEX action_runs_by_unit ON action_runs (unit_id, step_index)",
    """CREATE TABLE ledger_entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        budget_day TEXT NOT NULL,
        category TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('reserve','settle','release')),
        amount_usd REAL NOT NULL CHECK (amount_usd >= 0),
        reservation_id TEXT NOT NULL,
        unit_id TEXT,
        note TEXT,
        at TEXT NOT NULL,
        critical INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX ledger_by_day ON ledger_entries (budget_day, category)",
    "CREATE INDEX ledger_by_reservation ON ledger_entries (reservation_id, kind)",
    # The ledger only appends (F3): the database itself refuses to rewrite history, so no
    # later "sync" or bug can replace spend an action recorded.
    """CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
       BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: rows are never updated'); END""",
    """CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
       BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: rows are never deleted'); END""",
    # INSERT OR REPLACE deletes the clashing row without firing delete triggers (unless
    # recursive_triggers is on), so a replacing insert is refused explicitly.
    """CREATE TRIGGER ledger_entries_no_replace BEFORE INSERT ON ledger_entries
       WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM ledger_entries WHERE id = NEW.id)
       BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: rows are never replaced'); END""",
    """CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        unit_id TEXT NOT NULL REFERENCES units(id),
        step_index INTEGER NOT NULL,
        action_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending','approved','rejected','expired')),
        reason TEXT,
        requested_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        resolved_at TEXT,
        resolved_by TEXT,
        note TEXT
    )""",
    # At most one pending request per unit step, whatever the callers race on.
    "CREATE UNIQUE INDEX approvals_one_pending ON approvals (unit_id, step_index) WHERE status = 'pending'",
    "CREATE INDEX approvals_by_status ON approvals (status)",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        type TEXT NOT NULL,
        unit_id TEXT,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX events_by_type ON events (type, id)",
    """CREATE TABLE summaries (
        unit_id TEXT PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        local_date TEXT NOT NULL,
        phase TEXT NOT NULL,
        category TEXT NOT NULL,
        template_id TEXT NOT NULL,
        status TEXT NOT NULL,
        text TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX summaries_by_day ON summaries (local_date, phase)",
    "CREATE INDEX summaries_by_category ON summaries (category)",
    "CREATE INDEX summaries_by_template ON summaries (template_id)",
    """CREATE TABLE transcripts (
        id TEXT PRIMARY KEY,
        run_key TEXT,
        created_at TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX transcripts_by_run ON transcripts (run_key)",
    """CREATE TABLE kv (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (namespace, key)
    )""",
    """CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE lease (
        daemon_id TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        pid INTEGER NOT NULL,
        hostname TEXT NOT NULL,
        acquired_at TEXT NOT NULL,
        renewed_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    )""",
)

#: Version 2: the planner's plan sources (the plans table is rebuilt for its CHECK).
_PLAN_SOURCES_V2: tuple[str, ...] = (
    """CREATE TABLE plans_v2 (
        local_date TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('llm','fallback','file','manual')),
        reason TEXT,
        intention TEXT,
        data TEXT NOT NULL
    )""",
    # Plans built from the templates in order were deterministic: they are fallbacks now.
    "INSERT INTO plans_v2 SELECT local_date, created_at, CASE source WHEN 'templates' THEN 'fallback' ELSE source END,"
    " reason, intention, data FROM plans",
    "DROP TABLE plans",
    "ALTER TABLE plans_v2 RENAME TO plans",
)

#: Version 3: running ledger totals per budget day and category, kept in the same transaction
#: as each ledger row, so a reservation check reads one row per category instead of summing
#: the day's ledger. Amounts are integer micro-dollars, so the totals equal the sum of the
#: rows exactly. Existing ledgers are summed once here.
_LEDGER_TOTALS_V3: tuple[str, ...] = (
    """CREATE TABLE ledger_totals (
        budget_day TEXT NOT NULL,
        category TEXT NOT NULL,
        spent_micros INTEGER NOT NULL DEFAULT 0,
        reserved_micros INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (budget_day, category)
    ) WITHOUT ROWID""",
    """INSERT INTO ledger_totals (budget_day, category, spent_micros, reserved_micros)
       SELECT budget_day, category,
              SUM(CASE WHEN kind = 'settle' THEN CAST(ROUND(amount_usd * 1000000) AS INTEGER) ELSE 0 END),
              SUM(CASE WHEN kind = 'reserve' AND NOT EXISTS (
                      SELECT 1 FROM ledger_entries c
                      WHERE c.reservation_id = e.reservation_id AND c.kind IN ('settle', 'release'))
                  THEN CAST(ROUND(amount_usd * 1000000) AS INTEGER) ELSE 0 END)
       FROM ledger_entries e GROUP BY budget_day, category""",
)

#: Version 4: every action id is ``<pack>.<name>``, the pack being its entry-point name. The
#: bundled packs' ids outside their own namespace were renamed; stored units, runs, approvals
#: and plans are rewritten so a daemon that slept through the upgrade resumes its queue.
#: (Summaries and events are history: they keep the ids they were written with.)
RENAMED_ACTION_IDS: dict[str, str] = {
    "research.refresh_queue": "session.refresh_research_queue",
    "system.prune_history": "core.prune_history",
    "self.add_observation": "session.add_observation",
    "self.record_insight": "session.record_insight",
    "self.update_growth_edge": "session.update_growth_edge",
    "wiki.create_note": "memory.create_wiki_note",
    "wiki.update_note": "memory.update_wiki_note",
    "research.run_batch": "session.research_batch",
    "research.run_single": "session.research_single",
    "dream.nightly": "journal.dream",
}


def _rename_action_ids(conn: sqlite3.Connection) -> None:
    for old, new in RENAMED_ACTION_IDS.items():
        for table in ("action_runs", "approvals"):
            conn.execute(f"UPDATE {table} SET action_id = ? WHERE action_id = ?", (new, old))
        # Steps sit in JSON text as {"action": "<id>", ...}; matching the key with the value renames
        # ids only, never a parameter that happens to hold the same text. Both separators json writes.
        for sep in (": ", ":"):
            was, now = f'"action"{sep}"{old}"', f'"action"{sep}"{new}"'
            conn.execute("UPDATE units SET steps = REPLACE(steps, ?, ?) WHERE instr(steps, ?) > 0", (was, now, was))
            conn.execute("UPDATE plans SET data = REPLACE(data, ?, ?) WHERE instr(data, ?) > 0", (was, now, was))


#: Version 5: budget limits changed at run time (``Runtime.set_budget``), with who and when. Rows are
#: only appended: the latest row for a (category, budget day) wins, a NULL amount records a clear, and a
#: standing row (``budget_day`` NULL) applies from its ``from_day`` on. Category '' is the daily total.
_BUDGET_OVERRIDES_V5: tuple[str, ...] = (
    # IF NOT EXISTS: a file whose version number was set back by hand may hold the table already.
    """CREATE TABLE IF NOT EXISTS budget_overrides (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        category TEXT NOT NULL,
        budget_day TEXT,
        from_day TEXT NOT NULL,
        amount_usd REAL CHECK (amount_usd IS NULL OR amount_usd >= 0),
        set_by TEXT NOT NULL,
        set_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS budget_overrides_by_day ON budget_overrides (budget_day, from_day)",
)

#: Every schema step, in order; a file's ``meta.schema_version`` says how many were applied.
#: Append new steps at the end; never edit a released one.
MIGRATIONS: list[Migration] = [
    Migration(1, "initial schema", lambda conn: _run_statements(conn, _SCHEMA_V1)),
    Migration(2, "plan sources: llm, fallback, file, manual", lambda conn: _run_statements(conn, _PLAN_SOURCES_V2)),
    Migration(3, "running ledger totals", lambda conn: _run_statements(conn, _LEDGER_TOTALS_V3)),
    Migration(4, "action ids in their pack's namespace", _rename_action_ids),
    Migration(5, "budget overrides set at run time", lambda conn: _run_statements(conn, _BUDGET_OVERRIDES_V5)),
]

#: The schema version this code writes.
SCHEMA_VERSION: int = len(MIGRATIONS)


# --------------------------------------------------------------------------- the store


class Store:
    """One daemon's SQLite store; open it with :meth:`Store.open`.

    Use from one thread only (see the module docstring); it is a context manager that
    closes the connection on exit.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, daemon_id: str) -> None:
        """Wrap an already validated and migrated connection (use :meth:`open`)."""
        self._conn = conn
        self._depth = 0
        self._closed = False
        #: The lease holder this store writes for, once it acquired the lease (fencing), else None.
        self._fence: str | None = None
        self._lease_write = False
        # Callbacks to run once the outermost transaction commits (dropped on rollback).
        self._after_commit: list[Callable[[], None]] = []
        # A nested block asked for durability: sync the WAL after the outer commit.
        self._sync_after = False
        #: The database file.
        self.path = path
        #: The daemon whose data this file holds.
        self.daemon_id = daemon_id
        #: This host's name, recorded in the lease to tell local dead processes apart.
        self.hostname = socket.gethostname()

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, path: Path | str, *, daemon_id: str) -> Store:
        """Open (creating and migrating if needed) the store at ``path`` for ``daemon_id``.

        Raises :class:`StoreError` without writing anything to an existing file when it
        is not a readable SQLite database, fails its integrity check, is not a
        cass-actions store, was written by a newer schema, or belongs to another daemon.
        """
        if not daemon_id or not isinstance(daemon_id, str):
            raise ValueError("daemon_id must be a non-empty string")
        path = Path(path).expanduser()
        if not path.exists() and not path.is_symlink():
            cls._create(path, daemon_id)
        _preflight(path)
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the store: {exc}.") from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # Everything up to here only reads: a bad file must be refused untouched.
            _inspect(conn, path, daemon_id)
            # Only now may we write (switching to WAL rewrites two header bytes).
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # see "Durability contract" above
            # Checkpoints (each syncs the WAL and the database file) every ~40 MB of WAL rather
            # than SQLite's default 4 MB: a busy day of small transactions syncs ten times less.
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
            conn.execute("PRAGMA foreign_keys = ON")
            store = cls(conn, path, daemon_id)
            store._migrate()
        except StoreError:
            conn.close()
            raise
        except sqlite3.OperationalError as exc:
            # Locked, busy, read-only or I/O trouble: not a verdict on the file's contents.
            conn.close()
            raise StoreError(
                f"{path}: cannot use the store ({exc}). Nothing was changed; check the file's permissions "
                "and whether another process is holding it, then try again."
            ) from None
        except sqlite3.DatabaseError as exc:
            # SQLITE_NOTADB / SQLITE_CORRUPT surface as plain DatabaseError.
            conn.close()
            detail = str(exc)
            seen = _diagnose(path)
            raise _corrupt(path, f"{detail}; {seen}" if seen else detail) from None
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def _create(cls, path: Path, daemon_id: str) -> None:
        """Create a new store file atomically: built aside, then linked into place.

        So a file at ``path`` is always a whole store, never one half made; an empty file
        there can only be damage, and :meth:`open` refuses it. When two processes create
        the same store at once, the first link wins and both use that file.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the store's folder: {exc.strerror or exc}.") from None
        aside = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")
        try:
            conn = sqlite3.connect(aside, isolation_level=None)
            try:
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA foreign_keys = ON")
                cls(conn, aside, daemon_id)._migrate()
            finally:
                conn.close()
            try:
                os.link(aside, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError:
                if not path.exists():  # a file system without hard links
                    os.replace(aside, path)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot create the store: {exc}.") from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the store: {exc.strerror or exc}.") from None
        finally:
            for leftover in (aside, aside.with_name(aside.name + "-journal")):
                leftover.unlink(missing_ok=True)

    def _migrate(self) -> None:
        now = datetime.now(timezone.utc)
        with self.transaction(immediate=True):
            conn = self._conn
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            found = _meta(conn)
            # Re-check under the write lock: another process may have migrated (or a newer
            # version may have) since _inspect looked.
            version = int(found.get("schema_version", "0"))
            if version > SCHEMA_VERSION:
                raise _newer(self.path, version)
            stored_id = found.get("daemon_id")
            if stored_id is not None and stored_id != self.daemon_id:
                raise _other_daemon(self.path, stored_id, self.daemon_id)
            for migration in MIGRATIONS[version:]:
                migration.apply(conn)
                _set_meta(conn, "schema_version", str(migration.version))
            if stored_id is None:
                _set_meta(conn, "daemon_id", self.daemon_id)
                _set_meta(conn, "created_at", now.isoformat())
                _set_meta(conn, "created_by", f"cass-actions {__version__}")

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the file."""
        return int(_meta(self._conn)["schema_version"])

    @property
    def journal_mode(self) -> str:
        """SQLite's journal mode for this file (``wal`` unless the file system cannot do WAL)."""
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        """Close the connection (a second call does nothing)."""
        if not self._closed:
            self._closed = True
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, daemon_id={self.daemon_id!r})"

    # ---------------------------------------------------------------- transactions

    def transaction(self, immediate: bool = True, durable: bool = False) -> _Transaction:
        """Run the block atomically: ``BEGIN IMMEDIATE`` (or deferred) ... COMMIT, ROLLBACK on error.

        ``immediate=True`` takes the write lock at once, so a read-check-write sequence
        (ledger checks, status transitions, lease) cannot be raced by another connection.
        ``immediate=False`` gives a consistent read snapshot. Nested blocks become
        savepoints, so store methods can be combined into one larger transaction.
        ``durable=True``: the commit is synced to the disk before it returns (see the
        durability contract in the module docstring); a nested block asking for it makes
        the outer commit durable.
        """
        return _Transaction(self, immediate, durable)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the current transaction has committed (now, outside one).

        What must only happen for writes that really landed (delivering an event to
        listeners) goes here; a rollback drops it.
        """
        if self._depth == 0:
            callback()
        else:
            self._after_commit.append(callback)

    @property
    def in_transaction(self) -> bool:
        """Whether a :meth:`transaction` block is open on this store."""
        return self._depth > 0

    def _write_error(self, exc: sqlite3.OperationalError) -> StoreError:
        """A full disk, a read-only file or a lock held too long, as one sentence naming the file."""
        text = str(exc)
        hint = ("free some disk space" if "full" in text else
                "check the file's and its folder's permissions" if "readonly" in text or "read-only" in text else
                "another process may be holding the store; try again")
        return StoreUnavailable(f"{self.path}: the store could not be written ({text}); nothing of this change was kept. "
                                f"{hint[0].upper()}{hint[1:]}.")

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def _all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[sqlite3.Row]:
        return list(self._conn.execute(sql, params).fetchall())

    def _map(self, read: Callable[[sqlite3.Row], _T], row: sqlite3.Row) -> _T:
        """``read(row)``, or a StoreError naming the file, the table and the row when a value in it is damaged."""
        try:
            return read(row)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            keys = row.keys()
            ident = next((f"{k} {row[k]!r}" for k in ("id", "key", "unit_id", "local_date") if k in keys), "?")
            raise StoreError(f"{self.path}: a damaged {read.__name__.strip('_').replace('_', ' ')} row ({ident}): "
                             f"{type(exc).__name__}: {exc}. Nothing was changed; restore the file from a backup, "
                             "or fix or delete that row.") from None

    # ---------------------------------------------------------------- lease

    def get_lease(self) -> Lease | None:
        """The current lease row for this daemon (expired or not), or None."""
        row = self._one("SELECT * FROM lease WHERE daemon_id = ?", (self.daemon_id,))
        return None if row is None else self._map(_lease, row)

    def acquire_lease(self, holder: str, now: datetime, ttl: timedelta, pid: int | None = None) -> Lease:
        """Take the scheduler lease for ``holder`` until ``now + ttl``.

        Succeeds when there is no lease, the lease expired, ``holder`` already holds it
        (then it is renewed), or its holder was a process on this host that no longer
        exists (a SIGKILLed run is taken over at once). Otherwise raises
        :class:`LeaseHeldError` naming the holder's pid, host and expiry. ``pid`` is the
        process the lease names (default this one; ``run``'s supervisor for its workers).
        """
        if not holder:
            raise ValueError("lease holder must be a non-empty string")
        if ttl <= timedelta(0):
            raise ValueError(f"lease ttl must be positive, got {ttl}")
        now_s = _ts(now, "now")
        expires_s = _ts(now + ttl, "expires_at")
        with self._lease_transaction():
            current = self.get_lease()
            if current is not None and current.holder == holder:
                acquired_s = current.acquired_at.isoformat()
            elif current is None or current.expired(now) or self._holder_dead(current):
                acquired_s = now_s
            else:
                raise LeaseHeldError(
                    f"{self.path}: daemon {self.daemon_id!r} is already being run by {current.holder!r} "
                    f"(pid {current.pid} on host {current.hostname}), whose lease expires at "
                    f"{current.expires_at.isoformat()}. Stop that process first, or wait for the lease "
                    "to expire if it is no longer running."
                )
            self._conn.execute(
                "INSERT OR REPLACE INTO lease (daemon_id, holder, pid, hostname, acquired_at, renewed_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.daemon_id, holder, pid or os.getpid(), self.hostname, acquired_s, now_s, expires_s),
            )
            lease = self.get_lease()
        assert lease is not None
        self._fence = holder  # from now on every write of this store checks it still holds the lease
        return lease

    @contextmanager
    def _lease_transaction(self) -> Iterator[None]:
        """A write transaction of the lease methods themselves (they check the holder on their own)."""
        self._lease_write = True
        try:
            with self.transaction(immediate=True):
                yield
        finally:
            self._lease_write = False

    def _holder_dead(self, lease: Lease) -> bool:
        # Only a pid on *this* host can be checked; elsewhere, only expiry frees a lease.
        return lease.hostname == self.hostname and not _pid_alive(lease.pid)

    def renew_lease(self, holder: str, now: datetime, ttl: timedelta, pid: int | None = None) -> Lease:
        """Extend ``holder``'s lease to ``now + ttl``.

        Raises :class:`LeaseLostError` when ``holder`` no longer holds it (released, or
        expired and taken over): the scheduler must stop at once.
        """
        if ttl <= timedelta(0):
            raise ValueError(f"lease ttl must be positive, got {ttl}")
        now_s = _ts(now, "now")
        expires_s = _ts(now + ttl, "expires_at")
        with self._lease_transaction():
            current = self.get_lease()
            if current is None or current.holder != holder:
                self._fence = None
                who = "nobody" if current is None else f"{current.holder!r} (pid {current.pid} on host {current.hostname})"
                raise LeaseLostError(
                    f"{self.path}: {holder!r} no longer holds the lease of daemon {self.daemon_id!r}; "
                    f"it is now held by {who}. This process must stop running the scheduler."
                )
            # An expired lease nobody took over is still ours to renew.
            self._conn.execute(
                "UPDATE lease SET renewed_at = ?, expires_at = ?, pid = ?, hostname = ? WHERE daemon_id = ?",
                (now_s, expires_s, pid or os.getpid(), self.hostname, self.daemon_id),
            )
            lease = self.get_lease()
        assert lease is not None
        return lease

    def release_lease(self, holder: str) -> bool:
        """Give the lease up if ``holder`` holds it; returns whether a lease was released."""
        with self._lease_transaction():
            cursor = self._conn.execute(
                "DELETE FROM lease WHERE daemon_id = ? AND holder = ?", (self.daemon_id, holder)
            )
        if self._fence == holder:
            self._fence = None
        return cursor.rowcount > 0

    # ---------------------------------------------------------------- plans

    def save_plan(
        self,
        local_date: date,
        source: str,
        reason: str | None,
        intention: str | None,
        data: dict[str, Any],
        now: datetime,
    ) -> None:
        """Store ``local_date``'s plan, replacing any earlier plan for that date (F9)."""
        if source not in PLAN_SOURCES:
            raise ValueError(f"plan source {source!r} is not one of {', '.join(PLAN_SOURCES)}")
        with self.transaction(immediate=True):
            self._conn.execute(
                "INSERT OR REPLACE INTO plans (local_date, created_at, source, reason, intention, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (_day(local_date, "local_date"), _ts(now, "now"), source, reason, intention, _json(data)),
            )

    def get_plan(self, local_date: date) -> PlanRow | None:
        """The plan saved for ``local_date``, or None (so a restart never plans a date twice: F5)."""
        row = self._one("SELECT * FROM plans WHERE local_date = ?", (_day(local_date, "local_date"),))
        if row is None:
            return None
        return self._map(_plan, row)

    def plan_source(self, local_date: date) -> str | None:
        """Where ``local_date``'s plan came from (``llm``, ``fallback`` ...), or None without a plan
        (one column, not the plan document: every work summary names it)."""
        row = self._one("SELECT source FROM plans WHERE local_date = ?", (_day(local_date, "local_date"),))
        return None if row is None else str(row[0])

    # ---------------------------------------------------------------- units

    def insert_unit(
        self,
        *,
        local_date: date,
        phase: str,
        template_id: str,
        name: str,
        category: str,
        steps: list[dict[str, Any]],
        now: datetime,
        priority: int = 2,
        position: int = 0,
        estimated_cost_usd: float = 0.0,
        status: str = "planned",
        reason: str | None = None,
        focus: str | None = None,
        motivation: str | None = None,
        requires_idle: bool = False,
        not_before: datetime | None = None,
        data: dict[str, Any] | None = None,
        unit_id: str | None = None,
    ) -> UnitRow:
        """Create a unit (status ``planned`` or ``queued``) and record its creation as a transition."""
        if status not in ("planned", "queued"):
            raise ValueError(f"a new unit starts as 'planned' or 'queued', not {status!r}")
        _check_phase(phase)
        unit_id = unit_id or _new_id()
        now_s = _ts(now, "now")
        clean_steps = [_normalise_step(step, i) for i, step in enumerate(steps)]
        with self.transaction(immediate=True):
            try:
                self._conn.execute(
                    "INSERT INTO units (id, daemon_id, local_date, phase, template_id, name, category, priority,"
                    " position, status, reason, focus, motivation, requires_idle, steps, estimated_cost_usd,"
                    " next_step, created_at, updated_at, started_at, finished_at, not_before, data)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, NULL, NULL, ?, ?)",
                    (
                        unit_id,
                        self.daemon_id,
                        _day(local_date, "local_date"),
                        phase,
                        template_id,
                        name,
                        category,
                        int(priority),
                        int(position),
                        status,
                        reason,
                        focus,
                        motivation,
                        1 if requires_idle else 0,
                        _json(clean_steps),
                        _money(estimated_cost_usd, "estimated_cost_usd"),
                        now_s,
                        now_s,
                        _ts_opt(not_before, "not_before"),
                        _json(data or {}),
                    ),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"a work unit with id {unit_id!r} already exists.") from None
            self._record_transition(unit_id, now_s, None, status, reason)
            unit = self.get_unit(unit_id)
        assert unit is not None
        return unit

    def get_unit(self, unit_id: str) -> UnitRow | None:
        """The unit with this id, or None."""
        row = self._one("SELECT * FROM units WHERE id = ?", (unit_id,))
        return None if row is None else self._map(_unit, row)

    def _require_unit(self, unit_id: str) -> UnitRow:
        unit = self.get_unit(unit_id)
        if unit is None:
            raise NotFoundError(f"no work unit with id {unit_id!r} in {self.path}.")
        return unit

    def list_units(
        self,
        local_date: date | None = None,
        phase: str | None = None,
        statuses: Iterable[str] | None = None,
        template_id: str | None = None,
    ) -> list[UnitRow]:
        """Units matching every given filter, in run order: date, phase, priority, position, creation."""
        where: list[str] = []
        params: list[Any] = []
        if local_date is not None:
            where.append("local_date = ?")
            params.append(_day(local_date, "local_date"))
        if phase is not None:
            where.append("phase = ?")
            params.append(_check_phase(phase))
        if statuses is not None:
            wanted = [statuses] if isinstance(statuses, str) else list(statuses)
            unknown = [s for s in wanted if s not in UNIT_STATUSES]
            if unknown:
                raise ValueError(f"unknown unit status(es): {', '.join(unknown)}")
            if not wanted:
                return []
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if template_id is not None:
            where.append("template_id = ?")
            params.append(template_id)
        sql = "SELECT * FROM units"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY local_date, {_PHASE_ORDER_SQL}, priority, position, julianday(created_at), rowid"
        return [self._map(_unit, row) for row in self._all(sql, params)]

    def queued_briefs(self) -> list[QueuedBrief]:
        """Queued units in run order, as the few columns the scheduler looks at on every tick.

        Cheaper than :meth:`list_units` for a long queue: no JSON, no row objects; the
        scheduler reads the whole row only of a unit it is about to run or expire.
        """
        rows = self._all(
            "SELECT id, local_date, phase, category, not_before, requires_idle, json_extract(data, '$.deadline')"
            f" AS deadline FROM units WHERE status = 'queued' ORDER BY local_date, {_PHASE_ORDER_SQL}, priority,"
            " position, julianday(created_at), rowid"
        )
        return [self._map(_queued_brief, row) for row in rows]

    def delete_units_for_plan(
        self, local_date: date, statuses: Iterable[str] = ("planned", "queued"),
        keep_sources: Iterable[str] = ("trigger", "run-action"),
    ) -> list[UnitRow]:
        """Remove ``local_date``'s units that never started, before a new plan replaces them (F9).

        Only units in ``statuses`` that have no start time, no action runs and no
        approvals are removed: anything that began, or that a human answered, stays.
        Units whose ``data.source`` is in ``keep_sources`` (queued by hand, not by a
        plan) are kept too. Returns the removed units so the caller can report them.
        """
        keep = list(keep_sources) or [""]
        placeholders = ", ".join("?" * len(keep))
        wanted = list(statuses)
        unknown = [s for s in wanted if s not in UNIT_STATUSES]
        if unknown:
            raise ValueError(f"unknown unit status(es): {', '.join(unknown)}")
        if not wanted:
            return []
        with self.transaction(immediate=True):
            rows = self._all(
                "SELECT * FROM units u WHERE local_date = ? AND status IN "
                f"({', '.join('?' * len(wanted))}) AND started_at IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM action_runs r WHERE r.unit_id = u.id)"
                " AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.unit_id = u.id)"
                " AND coalesce(json_extract(u.data, '$.source'), '') NOT IN (" + placeholders + ")",
                [_day(local_date, "local_date"), *wanted, *keep],
            )
            removed = [self._map(_unit, row) for row in rows]
            self._conn.executemany("DELETE FROM units WHERE id = ?", [(u.id,) for u in removed])
        return removed

    def set_unit_status(
        self, unit_id: str, to_status: str, *, reason: str | None, now: datetime, **fields: Any
    ) -> UnitRow:
        """Move a unit to ``to_status`` and record the transition, atomically.

        Raises :class:`ValueError` for a move the state machine does not allow, or a
        park/expiry/cancel/abandon without a reason. ``fields`` may set ``started_at``,
        ``finished_at``, ``not_before`` (aware datetimes or None), ``next_step`` and
        ``data``. Starting to run stamps ``started_at`` (first time only) and reaching a
        terminal status stamps ``finished_at``, unless given.
        """
        if to_status not in UNIT_STATUSES:
            raise ValueError(f"unknown unit status {to_status!r}")
        extra = set(fields) - _STATUS_FIELDS
        if extra:
            raise TypeError(f"set_unit_status cannot change {', '.join(sorted(extra))}")
        if to_status in REASON_REQUIRED and not (reason and reason.strip()):
            raise ValueError(f"moving unit {unit_id} to {to_status!r} needs a reason a user can read")
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            unit = self._require_unit(unit_id)
            if to_status not in ALLOWED_TRANSITIONS[unit.status]:
                allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[unit.status])) or "none: it is terminal"
                raise ValueError(
                    f"unit {unit_id} ({unit.template_id}) cannot go from {unit.status!r} to {to_status!r} "
                    f"(allowed: {allowed})"
                )
            sets: dict[str, Any] = {"status": to_status, "reason": reason, "updated_at": now_s}
            # The same changes as row values, so the updated row needs no second read.
            values: dict[str, Any] = {"status": to_status, "reason": reason, "updated_at": _dt(now_s)}
            if to_status == "running" and unit.started_at is None and "started_at" not in fields:
                sets["started_at"], values["started_at"] = now_s, values["updated_at"]
            if to_status in TERMINAL_STATUSES and "finished_at" not in fields:
                sets["finished_at"], values["finished_at"] = now_s, values["updated_at"]
            for name, value in fields.items():
                if name in ("started_at", "finished_at", "not_before"):
                    sets[name] = _ts_opt(value, name)
                    values[name] = _dt_opt(sets[name])
                elif name == "next_step":
                    sets[name] = values[name] = self._valid_step(unit, value)
                elif name == "data":
                    values[name] = dict(value) if value is not None else {}
                    sets[name] = _json(values[name])
            assignments = ", ".join(f"{name} = ?" for name in sets)
            self._conn.execute(f"UPDATE units SET {assignments} WHERE id = ?", (*sets.values(), unit_id))
            self._record_transition(unit_id, now_s, unit.status, to_status, reason)
        return replace(unit, **values)

    def _record_transition(
        self, unit_id: str, at: str, from_status: str | None, to_status: str, reason: str | None
    ) -> None:
        self._conn.execute(
            "INSERT INTO unit_transitions (unit_id, at, from_status, to_status, reason) VALUES (?, ?, ?, ?, ?)",
            (unit_id, at, from_status, to_status, reason),
        )

    @staticmethod
    def _valid_step(unit: UnitRow, n: Any) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(unit.steps):
            raise ValueError(f"next_step for unit {unit.id} must be an int in 0..{len(unit.steps)}, got {n!r}")
        return n

    def transitions(self, unit_id: str) -> list[TransitionRow]:
        """Every recorded status change of the unit, oldest first."""
        return [self._map(_transition, row)
                for row in self._all("SELECT * FROM unit_transitions WHERE unit_id = ? ORDER BY id", (unit_id,))]

    def set_next_step(self, unit_id: str, n: int, now: datetime) -> UnitRow:
        """Record that the unit's steps before ``n`` are done (a restart resumes at step ``n``)."""
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            unit = self._require_unit(unit_id)
            self._conn.execute(
                "UPDATE units SET next_step = ?, updated_at = ? WHERE id = ?",
                (self._valid_step(unit, n), now_s, unit_id),
            )
        return replace(unit, next_step=n, updated_at=_dt(now_s))

    def find_units(self, prefix: str, limit: int = 10) -> list[UnitRow]:
        """Units whose id is ``prefix`` or starts with it (at most ``limit``; the exact id first)."""
        exact = self.get_unit(prefix)
        if exact is not None:
            return [exact]
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._all("SELECT * FROM units WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT ?", (pattern, int(limit)))
        return [self._map(_unit, row) for row in rows]

    def set_unit_placement(
        self, unit_id: str, *, now: datetime, phase: str | None = None, position: int | None = None,
        priority: int | None = None, not_before: Any = ..., data: dict[str, Any] | None = None,
    ) -> UnitRow:
        """Change where a unit that has not started sits in its date's plan: its phase, its position and
        run-order priority, its earliest start (``not_before``) and its data. Only a ``planned`` or
        ``queued`` unit that never started may move (:class:`ValueError` otherwise); no status changes."""
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            unit = self._require_unit(unit_id)
            if unit.status not in ("planned", "queued") or unit.started_at is not None:
                raise ValueError(f"unit {unit_id} ({unit.template_id}) is {unit.status}"
                                 + (" and has started" if unit.started_at is not None else "") + ": it cannot be moved")
            sets: dict[str, Any] = {"updated_at": now_s}
            values: dict[str, Any] = {"updated_at": _dt(now_s)}
            if phase is not None:
                sets["phase"] = values["phase"] = _check_phase(phase)
            if position is not None:
                sets["position"] = values["position"] = int(position)
            if priority is not None:
                sets["priority"] = values["priority"] = int(priority)
            if not_before is not Ellipsis:
                sets["not_before"] = _ts_opt(not_before, "not_before")
                values["not_before"] = _dt_opt(sets["not_before"])
            if data is not None:
                values["data"] = dict(data)
                sets["data"] = _json(values["data"])
            assignments = ", ".join(f"{name} = ?" for name in sets)
            self._conn.execute(f"UPDATE units SET {assignments} WHERE id = ?", (*sets.values(), unit_id))
        return replace(unit, **values)

    # ---------------------------------------------------------------- action runs

    def begin_action_run(
        self, key: str, unit_id: str, step_index: int, action_id: str, now: datetime
    ) -> ActionRunRow:
        """Record that a step is about to run, BEFORE its side effect.

        If ``key`` was already recorded (a restart reaching the same step), the existing
        row is returned unchanged so the caller can see whether it finished.
        """
        if not key:
            raise ValueError("an action run needs a non-empty idempotency key")
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            try:
                cursor = self._conn.execute(
                    "INSERT OR IGNORE INTO action_runs (key, unit_id, step_index, action_id, status, started_at,"
                    " finished_at, cost_usd, result, error) VALUES (?, ?, ?, ?, 'started', ?, NULL, 0, NULL, NULL)",
                    (key, unit_id, int(step_index), action_id, now_s),
                )
            except sqlite3.IntegrityError:
                raise NotFoundError(f"cannot record action run {key!r}: no work unit with id {unit_id!r}.") from None
            if cursor.rowcount == 1:  # new: the row is what was just written
                return ActionRunRow(key=key, unit_id=unit_id, step_index=int(step_index), action_id=action_id,
                                    status="started", started_at=_dt(now_s), finished_at=None, cost_usd=0.0, result=None,
                                    error=None)
            run = self.get_action_run(key)
        assert run is not None
        return run

    def finish_action_run(
        self,
        key: str,
        status: str,
        cost_usd: float,
        result: dict[str, Any] | None,
        error: str | None,
        now: datetime,
    ) -> ActionRunRow:
        """Record a started run's outcome (``completed`` or ``failed``), its cost and result.

        Finishing a run twice raises :class:`StoreError`: an outcome, once written, is
        history.
        """
        if status not in ("completed", "failed"):
            raise ValueError(f"an action run finishes as 'completed' or 'failed', not {status!r}")
        cost = _money(cost_usd, "cost_usd")
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            run = self.get_action_run(key)
            if run is None:
                raise NotFoundError(f"no action run with key {key!r} in {self.path}.")
            if run.status != "started":
                raise StoreError(
                    f"action run {key!r} already finished as {run.status!r} at "
                    f"{run.finished_at.isoformat() if run.finished_at else '?'}; its outcome is not rewritten."
                )
            self._conn.execute(
                "UPDATE action_runs SET status = ?, finished_at = ?, cost_usd = ?, result = ?, error = ? WHERE key = ?",
                (status, now_s, cost, None if result is None else _json(result), error, key),
            )
        return replace(run, status=status, finished_at=_dt(now_s), cost_usd=cost, result=result, error=error)

    def withdraw_action_run(self, key: str) -> None:
        """Forget a started run that spent nothing, so its step runs again later (a step that
        yielded to the budget before its first paid call). A finished run is history and stays."""
        with self.transaction(immediate=True):
            run = self.get_action_run(key)
            if run is None:
                raise NotFoundError(f"no action run with key {key!r} in {self.path}.")
            if run.status != "started" or run.cost_usd:
                raise StoreError(f"action run {key!r} is {run.status!r} with ${run.cost_usd:.6f} spent; only a started "
                                 "run that spent nothing can be withdrawn.")
            self._conn.execute("DELETE FROM action_runs WHERE key = ? AND status = 'started'", (key,))

    def get_action_run(self, key: str) -> ActionRunRow | None:
        """The action run with this idempotency key, or None."""
        row = self._one("SELECT * FROM action_runs WHERE key = ?", (key,))
        return None if row is None else self._map(_action_run, row)

    def action_runs_for_unit(self, unit_id: str) -> list[ActionRunRow]:
        """A unit's action runs in step order."""
        rows = self._all(
            "SELECT * FROM action_runs WHERE unit_id = ? ORDER BY step_index, julianday(started_at), rowid",
            (unit_id,),
        )
        return [self._map(_action_run, row) for row in rows]

    def recent_action_runs(self, per_action: int) -> dict[str, list[tuple[float, float]]]:
        """``(cost_usd, minutes)`` of each action's latest ``per_action`` completed runs, newest first.

        What the planner learns costs and durations from (one query for all actions).
        """
        if per_action <= 0:
            return {}
        rows = self._all(
            "SELECT action_id, cost_usd, minutes FROM ("
            " SELECT action_id, cost_usd,"
            " (julianday(finished_at) - julianday(started_at)) * 1440.0 AS minutes,"
            " ROW_NUMBER() OVER (PARTITION BY action_id ORDER BY julianday(finished_at) DESC, rowid DESC) AS n"
            " FROM action_runs WHERE status = 'completed' AND finished_at IS NOT NULL"
            ") WHERE n <= ? ORDER BY action_id, n",
            (per_action,),
        )
        out: dict[str, list[tuple[float, float]]] = {}
        for row in rows:
            out.setdefault(row["action_id"], []).append((float(row["cost_usd"]), max(0.0, float(row["minutes"] or 0.0))))
        return out

    def template_activity(self, since: date) -> tuple[dict[str, datetime], list[tuple[str, date]]]:
        """Each template's latest unit start (any date), and ``(template, date)`` of units completed since ``since``.

        What the planner's cooldown check and variety score read (two queries for all templates).
        """
        starts = {row["template_id"]: _dt(row["started"]) for row in self._all(
            "SELECT template_id, MAX(started_at) AS started FROM units WHERE started_at IS NOT NULL GROUP BY template_id")}
        done = [(row["template_id"], date.fromisoformat(row["local_date"])) for row in self._all(
            "SELECT template_id, local_date FROM units WHERE status = 'completed' AND local_date >= ?",
            (_day(since, "since"),))]
        return starts, done

    # ---------------------------------------------------------------- ledger rows

    def append_ledger_entry(
        self,
        *,
        budget_day: date,
        category: str,
        kind: str,
        amount_usd: float,
        reservation_id: str,
        now: datetime,
        unit_id: str | None = None,
        note: str | None = None,
        critical: bool = False,
    ) -> LedgerEntry:
        """Append one ledger row and update the day's running totals with it, atomically (the only
        write the ledger tables ever get; use BudgetLedger).

        A ``reserve`` row adds to the category's outstanding reservations; a ``settle`` or
        ``release`` row closes its reservation: the reservation's amount leaves the
        outstanding total, and a settle's amount joins the spent total.
        """
        if kind not in LEDGER_KINDS:
            raise ValueError(f"ledger entry kind {kind!r} is not one of {', '.join(LEDGER_KINDS)}")
        day_s = _day(budget_day, "budget_day")
        amount = _money(amount_usd, "amount_usd")
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            if kind == "reserve":
                spent, reserved = 0, _micros(amount)
            else:
                held = self._one("SELECT coalesce(SUM(CAST(ROUND(amount_usd * 1000000) AS INTEGER)), 0) FROM ledger_entries"
                                 " WHERE reservation_id = ? AND kind = 'reserve'", (reservation_id,))
                spent, reserved = (_micros(amount) if kind == "settle" else 0), -int(held[0] if held else 0)
            cursor = self._conn.execute(
                "INSERT INTO ledger_entries (budget_day, category, kind, amount_usd, reservation_id, unit_id, note, at,"
                " critical) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (day_s, category, kind, amount, reservation_id, unit_id, note, now_s, 1 if critical else 0),
            )
            self._conn.execute(
                "INSERT INTO ledger_totals (budget_day, category, spent_micros, reserved_micros) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (budget_day, category) DO UPDATE SET spent_micros = spent_micros + excluded.spent_micros,"
                " reserved_micros = reserved_micros + excluded.reserved_micros",
                (day_s, category, spent, reserved),
            )
        assert cursor.lastrowid is not None
        return LedgerEntry(id=int(cursor.lastrowid), budget_day=budget_day, category=category, kind=kind, amount_usd=amount,
                           reservation_id=reservation_id, unit_id=unit_id, note=note, at=_dt(now_s), critical=critical)

    def ledger_entries(
        self,
        *,
        budget_day: date | None = None,
        reservation_id: str | None = None,
        category: str | None = None,
    ) -> list[LedgerEntry]:
        """Ledger rows matching the filters, in the order they were appended."""
        where: list[str] = []
        params: list[Any] = []
        if budget_day is not None:
            where.append("budget_day = ?")
            params.append(_day(budget_day, "budget_day"))
        if reservation_id is not None:
            where.append("reservation_id = ?")
            params.append(reservation_id)
        if category is not None:
            where.append("category = ?")
            params.append(category)
        sql = "SELECT * FROM ledger_entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [self._map(_ledger_entry, row) for row in self._all(sql + " ORDER BY id", params)]

    def ledger_totals(self, budget_day: date) -> dict[str, LedgerTotals]:
        """Per category on ``budget_day``: settled spend and outstanding (unclosed) reservations.

        Read from the running totals (one row per category), which every ledger append
        updates in its own transaction: the cost does not grow with the day's ledger.
        """
        rows = self._all(
            "SELECT category, spent_micros, reserved_micros FROM ledger_totals WHERE budget_day = ? ORDER BY category",
            (_day(budget_day, "budget_day"),),
        )
        return {row[0]: LedgerTotals(row[0], row[1] / 1_000_000, row[2] / 1_000_000) for row in rows}

    def open_reservation_ids(self, budget_day: date | None = None) -> list[str]:
        """Reservation ids with no settle or release row, oldest first."""
        sql = (
            "SELECT reservation_id, MIN(id) AS first FROM ledger_entries e WHERE kind = 'reserve'"
            " AND NOT EXISTS (SELECT 1 FROM ledger_entries c WHERE c.reservation_id = e.reservation_id"
            " AND c.kind IN ('settle', 'release'))"
        )
        params: tuple[Any, ...] = ()
        if budget_day is not None:
            sql += " AND budget_day = ?"
            params = (_day(budget_day, "budget_day"),)
        sql += " GROUP BY reservation_id ORDER BY first"
        return [row["reservation_id"] for row in self._all(sql, params)]

    # ---------------------------------------------------------------- approvals

    def request_approval(
        self,
        unit_id: str,
        step_index: int,
        action_id: str,
        reason: str | None,
        now: datetime,
        expires_at: datetime,
    ) -> ApprovalRow:
        """Ask for a human yes on one step; returns the pending request if one already exists."""
        now_s = _ts(now, "now")
        expires_s = _ts(expires_at, "expires_at")
        with self.transaction(immediate=True):
            existing = self._one(
                "SELECT * FROM approvals WHERE unit_id = ? AND step_index = ? AND status = 'pending'",
                (unit_id, int(step_index)),
            )
            if existing is not None:
                return self._map(_approval, existing)
            approval_id = _new_id()
            try:
                self._conn.execute(
                    "INSERT INTO approvals (id, unit_id, step_index, action_id, status, reason, requested_at,"
                    " expires_at, resolved_at, resolved_by, note) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, NULL, NULL, NULL)",
                    (approval_id, unit_id, int(step_index), action_id, reason, now_s, expires_s),
                )
            except sqlite3.IntegrityError:
                raise NotFoundError(f"cannot request approval: no work unit with id {unit_id!r}.") from None
            row = self._one("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        assert row is not None
        return self._map(_approval, row)

    def get_approval(self, approval_id: str) -> ApprovalRow | None:
        """The approval with this id, or None."""
        row = self._one("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return None if row is None else self._map(_approval, row)

    def resolve_approval(
        self, approval_id: str, approved: bool, by: str, note: str | None, now: datetime
    ) -> ApprovalRow:
        """Answer a pending approval (a human answer counts even if its expiry time has passed).

        Raises :class:`NotFoundError` for an unknown id and :class:`StoreError` if it was
        already answered or expired.
        """
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            current = self.get_approval(approval_id)
            if current is None:
                raise NotFoundError(f"no approval with id {approval_id!r} (see `cass-actions approvals`).")
            if current.status != "pending":
                when = current.resolved_at.isoformat() if current.resolved_at else "?"
                by_whom = f" by {current.resolved_by}" if current.resolved_by else ""
                raise StoreError(f"approval {approval_id!r} is already {current.status} (at {when}{by_whom}).")
            self._conn.execute(
                "UPDATE approvals SET status = ?, resolved_at = ?, resolved_by = ?, note = ? WHERE id = ?",
                ("approved" if approved else "rejected", now_s, by, note, approval_id),
            )
            resolved = self.get_approval(approval_id)
        assert resolved is not None
        return resolved

    def list_approvals(self, status: str | None = None) -> list[ApprovalRow]:
        """Approvals (optionally of one status), oldest request first."""
        if status is not None and status not in APPROVAL_STATUSES:
            raise ValueError(f"approval status {status!r} is not one of {', '.join(APPROVAL_STATUSES)}")
        sql = "SELECT * FROM approvals"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        return [self._map(_approval, row) for row in self._all(sql + " ORDER BY julianday(requested_at), rowid", params)]

    def approval_for(self, unit_id: str, step_index: int) -> ApprovalRow | None:
        """The latest approval requested for this unit step, whatever its status, or None."""
        row = self._one(
            "SELECT * FROM approvals WHERE unit_id = ? AND step_index = ?"
            " ORDER BY julianday(requested_at) DESC, rowid DESC LIMIT 1",
            (unit_id, int(step_index)),
        )
        return None if row is None else self._map(_approval, row)

    def withdraw_approvals(self, unit_id: str, by: str, note: str | None, now: datetime) -> list[ApprovalRow]:
        """Close the unit's pending approvals as ``expired`` (its unit was cancelled: nothing is left
        to answer), recording ``by`` and ``note``; returns them."""
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            pending = [row["id"] for row in self._all(
                "SELECT id FROM approvals WHERE unit_id = ? AND status = 'pending'", (unit_id,))]
            self._conn.executemany(
                "UPDATE approvals SET status = 'expired', resolved_at = ?, resolved_by = ?, note = ? WHERE id = ?",
                [(now_s, by, note, approval_id) for approval_id in pending],
            )
            closed = [self.get_approval(approval_id) for approval_id in pending]
        return [a for a in closed if a is not None]

    def expire_approvals(self, now: datetime) -> list[ApprovalRow]:
        """Mark pending approvals whose ``expires_at <= now`` as expired; returns them."""
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            # Compare as datetimes in Python: exact, whatever offsets the rows carry.
            due = [a for a in map(_approval, self._all("SELECT * FROM approvals WHERE status = 'pending'")) if a.expires_at <= now]
            self._conn.executemany(
                "UPDATE approvals SET status = 'expired', resolved_at = ?, resolved_by = 'expiry' WHERE id = ?",
                [(now_s, a.id) for a in due],
            )
            expired = [self.get_approval(a.id) for a in due]
        return [a for a in expired if a is not None]

    # ---------------------------------------------------------------- budget overrides

    def add_budget_override(
        self, *, category: str | None, budget_day: date | None, from_day: date, amount_usd: float | None,
        by: str, now: datetime,
    ) -> BudgetOverride:
        """Record a budget limit set (or, with ``amount_usd`` None, cleared) at run time; rows are only appended."""
        amount = None if amount_usd is None else _money(amount_usd, "amount_usd")
        with self.transaction(immediate=True):
            cursor = self._conn.execute(
                "INSERT INTO budget_overrides (category, budget_day, from_day, amount_usd, set_by, set_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (category or "", None if budget_day is None else _day(budget_day, "budget_day"),
                 _day(from_day, "from_day"), amount, by, _ts(now, "now")),
            )
            row = self._one("SELECT * FROM budget_overrides WHERE id = ?", (cursor.lastrowid,))
        assert row is not None
        return _budget_override(row)

    def budget_overrides(self, budget_day: date) -> dict[str | None, BudgetOverride]:
        """The overrides in force on ``budget_day``, by category (None: the daily total).

        A row for that very day beats a standing one; among rows of the same kind the latest wins;
        a clear (amount None) removes the override of its kind (a cleared day falls back to the
        standing override, if any)."""
        day_s = _day(budget_day, "budget_day")
        rows = self._all(
            "SELECT * FROM budget_overrides WHERE budget_day = ? OR (budget_day IS NULL AND from_day <= ?) ORDER BY id",
            (day_s, day_s),
        )
        standing: dict[str | None, BudgetOverride] = {}
        one_day: dict[str | None, BudgetOverride] = {}
        for row in rows:
            override = _budget_override(row)
            (standing if override.standing else one_day)[override.category] = override
        found = {k: v for k, v in standing.items() if v.amount_usd is not None}
        for key, override in one_day.items():
            if override.amount_usd is not None:
                found[key] = override
        return found

    def budget_override_history(self, limit: int | None = None) -> list[BudgetOverride]:
        """Every recorded budget change (sets and clears), newest first."""
        sql = "SELECT * FROM budget_overrides ORDER BY id DESC"
        params: tuple[Any, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (int(limit),)
        return [self._map(_budget_override, row) for row in self._all(sql, params)]

    # ---------------------------------------------------------------- events

    def append_event(self, type: str, data: dict[str, Any], now: datetime, unit_id: str | None = None) -> int:
        """Persist an event; returns its id (ids increase, so ``since_id`` paging works)."""
        with self.transaction(immediate=True):
            cursor = self._conn.execute(
                "INSERT INTO events (at, type, unit_id, data) VALUES (?, ?, ?, ?)",
                (_ts(now, "now"), type, unit_id, _json(data)),
            )
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def list_events(
        self, since_id: int = 0, types: Iterable[str] | None = None, limit: int | None = None
    ) -> list[EventRow]:
        """Events with id greater than ``since_id`` (optionally of the given types), oldest first."""
        sql = "SELECT * FROM events WHERE id > ?"
        params: list[Any] = [since_id]
        if types is not None:
            wanted = [types] if isinstance(types, str) else list(types)
            if not wanted:
                return []
            sql += f" AND type IN ({', '.join('?' * len(wanted))})"
            params.extend(wanted)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [self._map(_event, row) for row in self._all(sql, params)]

    # ---------------------------------------------------------------- summaries

    def save_summary(
        self,
        *,
        unit_id: str,
        slug: str,
        local_date: date,
        phase: str,
        category: str,
        template_id: str,
        status: str,
        text: str,
        data: dict[str, Any],
        now: datetime,
    ) -> SummaryRow:
        """Insert or replace the summary of ``unit_id``.

        A slug already used by another unit raises :class:`StoreError` instead of
        replacing that unit's summary.
        """
        _check_phase(phase)
        values = (
            unit_id,
            slug,
            _day(local_date, "local_date"),
            phase,
            category,
            template_id,
            status,
            text,
            _json(data),
            _ts(now, "now"),
        )
        with self.transaction(immediate=True):
            # ON CONFLICT(unit_id) rather than INSERT OR REPLACE: the latter would also
            # silently delete another unit's summary that happens to share the slug.
            try:
                self._conn.execute(
                    "INSERT INTO summaries (unit_id, slug, local_date, phase, category, template_id, status, text,"
                    " data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(unit_id) DO UPDATE SET slug = excluded.slug, local_date = excluded.local_date,"
                    " phase = excluded.phase, category = excluded.category, template_id = excluded.template_id,"
                    " status = excluded.status, text = excluded.text, data = excluded.data,"
                    " created_at = excluded.created_at",
                    values,
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"summary slug {slug!r} is already used by another unit's summary.") from None
        return SummaryRow(unit_id=unit_id, slug=slug, local_date=local_date, phase=phase, category=category,
                          template_id=template_id, status=status, text=text, data=data, created_at=_dt(values[-1]))

    def get_summary(self, unit_id: str) -> SummaryRow | None:
        """The summary of ``unit_id``, or None."""
        row = self._one("SELECT * FROM summaries WHERE unit_id = ?", (unit_id,))
        return None if row is None else self._map(_summary, row)

    def get_summary_by_slug(self, slug: str) -> SummaryRow | None:
        """The summary with this slug, or None."""
        row = self._one("SELECT * FROM summaries WHERE slug = ?", (slug,))
        return None if row is None else self._map(_summary, row)

    def query_summaries(
        self,
        local_date: date | None = None,
        phase: str | None = None,
        category: str | None = None,
        template_id: str | None = None,
        text: str | None = None,
        limit: int | None = None,
        status: str | None = None,
    ) -> list[SummaryRow]:
        """Summaries matching every given filter, newest first.

        ``text`` is a case-insensitive (ASCII) substring match over the summary text and
        its data document; ``%`` and ``_`` in it match literally.
        """
        where: list[str] = []
        params: list[Any] = []
        if local_date is not None:
            where.append("local_date = ?")
            params.append(_day(local_date, "local_date"))
        if phase is not None:
            where.append("phase = ?")
            params.append(_check_phase(phase))
        for column, value in (("category", category), ("template_id", template_id), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(text LIKE ? ESCAPE '\\' OR data LIKE ? ESCAPE '\\')")
            params.extend([pattern, pattern])
        sql = "SELECT * FROM summaries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY local_date DESC, {_PHASE_ORDER_SQL} DESC, julianday(created_at) DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [self._map(_summary, row) for row in self._all(sql, params)]

    # ---------------------------------------------------------------- transcripts

    def save_transcript(self, record: dict[str, Any], run_key: str | None, now: datetime) -> str:
        """Keep an LLM transcript out of line; returns the id to reference it by."""
        transcript_id = _new_id()
        with self.transaction(immediate=True):
            self._conn.execute(
                "INSERT INTO transcripts (id, run_key, created_at, data) VALUES (?, ?, ?, ?)",
                (transcript_id, run_key, _ts(now, "now"), _json(record)),
            )
        return transcript_id

    def get_transcript(self, transcript_id: str) -> TranscriptRow | None:
        """The transcript with this id, or None (it may have been pruned)."""
        row = self._one("SELECT * FROM transcripts WHERE id = ?", (transcript_id,))
        if row is None:
            return None
        return self._map(_transcript, row)

    # ---------------------------------------------------------------- kv and state

    def kv_get(self, namespace: str, key: str, default: Any = None) -> Any:
        """A pack's stored value, or ``default``."""
        row = self._one("SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key))
        return default if row is None else _unjson(row["value"])

    def kv_set(self, namespace: str, key: str, value: Any, now: datetime | None = None) -> None:
        """Store a JSON-serialisable value under ``(namespace, key)``."""
        stamp = _ts(now, "now") if now is not None else datetime.now(timezone.utc).isoformat()
        with self.transaction(immediate=True):
            self._conn.execute(
                "INSERT OR REPLACE INTO kv (namespace, key, value, updated_at) VALUES (?, ?, ?, ?)",
                (namespace, key, _json(value), stamp),
            )

    def kv_delete(self, namespace: str, key: str) -> bool:
        """Remove a value; returns whether it existed."""
        with self.transaction(immediate=True):
            cursor = self._conn.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key))
        return cursor.rowcount > 0

    def kv_items(self, namespace: str) -> dict[str, Any]:
        """Every key and value of a namespace, sorted by key."""
        rows = self._all("SELECT key, value FROM kv WHERE namespace = ? ORDER BY key", (namespace,))
        return {row["key"]: _unjson(row["value"]) for row in rows}

    def get_state(self, key: str, default: Any = None) -> Any:
        """A scheduler state value (paused categories, last phase instance ...), or ``default``."""
        row = self._one("SELECT value FROM state WHERE key = ?", (key,))
        return default if row is None else _unjson(row["value"])

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable scheduler state value."""
        with self.transaction(immediate=True):
            self._conn.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, _json(value)))

    def delete_state(self, key: str) -> bool:
        """Remove a scheduler state value; returns whether it existed."""
        with self.transaction(immediate=True):
            cursor = self._conn.execute("DELETE FROM state WHERE key = ?", (key,))
        return cursor.rowcount > 0

    # ---------------------------------------------------------------- retention

    def prune(self, before_events: datetime, before_transcripts: datetime) -> dict[str, int]:
        """Delete events and transcripts older than the given instants; returns counts removed.

        Nothing else is pruned: units, summaries, approvals and the ledger are history.
        """
        events_s = _ts(before_events, "before_events")
        transcripts_s = _ts(before_transcripts, "before_transcripts")
        with self.transaction(immediate=True):
            events = self._conn.execute("DELETE FROM events WHERE julianday(at) < julianday(?)", (events_s,)).rowcount
            transcripts = self._conn.execute(
                "DELETE FROM transcripts WHERE julianday(created_at) < julianday(?)", (transcripts_s,)
            ).rowcount
        return {"events": events, "transcripts": transcripts}


# --------------------------------------------------------------------------- transactions


class _Transaction:
    """One :meth:`Store.transaction` block (a class, not a generator: it runs several times per step)."""

    __slots__ = ("store", "immediate", "durable", "depth", "full")

    def __init__(self, store: Store, immediate: bool, durable: bool) -> None:
        self.store, self.immediate, self.durable = store, immediate, durable
        self.depth = 0
        self.full = False

    def __enter__(self) -> None:
        store = self.store
        conn = store._conn
        depth = self.depth = store._depth
        full = self.full = self.durable and depth == 0
        if self.durable and depth > 0:
            store._sync_after = True
        try:
            if full:
                conn.execute("PRAGMA synchronous = FULL")  # applies to the commit of this transaction
            conn.execute(("BEGIN IMMEDIATE" if self.immediate else "BEGIN") if depth == 0 else f"SAVEPOINT sp_{depth}")
        except sqlite3.OperationalError as exc:
            if full:
                conn.execute("PRAGMA synchronous = NORMAL")
            raise store._write_error(exc) from None
        if depth == 0 and self.immediate and store._fence is not None and not store._lease_write:
            # Fencing: a lease holder writes only while it still holds the lease (under the write lock),
            # so a process that lost it (stuck past its lease, then taken over) can write nothing.
            row = conn.execute("SELECT holder FROM lease WHERE daemon_id = ?", (store.daemon_id,)).fetchone()
            if row is None or row[0] != store._fence:
                conn.execute("ROLLBACK")
                if full:
                    conn.execute("PRAGMA synchronous = NORMAL")
                fence, store._fence = store._fence, None
                who = "nobody" if row is None else repr(row[0])
                raise LeaseLostError(f"{store.path}: {fence!r} lost the lease of daemon {store.daemon_id!r} (now held by "
                                     f"{who}); its write was refused. This process must stop running the scheduler.")
        store._depth = depth + 1

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        store, depth, full = self.store, self.depth, self.full
        conn = store._conn
        store._depth = depth
        if exc is not None:
            if depth == 0:
                store._after_commit.clear()
                store._sync_after = False
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if full:
                    conn.execute("PRAGMA synchronous = NORMAL")
                if isinstance(exc, sqlite3.OperationalError):
                    raise store._write_error(exc) from None
            else:
                conn.execute(f"ROLLBACK TO sp_{depth}")
                conn.execute(f"RELEASE sp_{depth}")
            return False
        if depth > 0:
            conn.execute(f"RELEASE sp_{depth}")
            return False
        try:
            conn.execute("COMMIT")
            if store._sync_after and not full:
                # A nested block needed durability after BEGIN: a checkpoint syncs the WAL first.
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except BaseException as error:
            store._after_commit.clear()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(error, sqlite3.OperationalError):
                raise store._write_error(error) from None
            raise
        finally:
            store._sync_after = False
            if full:
                conn.execute("PRAGMA synchronous = NORMAL")
        callbacks, store._after_commit = store._after_commit, []
        for callback in callbacks:
            callback()
        return False


# --------------------------------------------------------------------------- open-time checks


def _corrupt(path: Path, detail: str) -> StoreError:
    return StoreError(
        f"{path}: this file is not a readable cass-actions store ({detail}). It was left untouched: "
        "nothing was written to it or deleted. Restore it from a backup, move it aside, or point "
        "--data-dir at another folder."
    )


def _newer(path: Path, version: int) -> StoreError:
    return StoreError(
        f"{path} was written by a newer cass-actions (schema {version}, this version knows {SCHEMA_VERSION}); "
        "upgrade cass-actions or use another data directory. The file was left untouched."
    )


def _other_daemon(path: Path, stored: str, wanted: str) -> StoreError:
    return StoreError(
        f"{path} holds the data of daemon {stored!r}, not {wanted!r}; each store file belongs to one daemon. "
        "Use the matching daemon_id or another data directory. The file was left untouched."
    )


def _preflight(path: Path) -> None:
    """Refuse a path that cannot hold a store file at all (a folder, an unreadable file, an empty file)."""
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, not a store file.")
    wal = path.with_name(path.name + "-wal")
    if path.exists() and path.stat().st_size == 0 and not (wal.exists() and wal.stat().st_size > 0):
        # A new store is created only where no file exists: an emptied file means lost data.
        raise StoreError(f"{path}: the store file is empty (0 bytes), so its history and spending are gone. It was "
                         "left untouched; restore it from a backup, or delete it to start a new store.")
    if path.exists():
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise StoreError(f"{path}: cannot read the store file: {exc}. It was left untouched.") from None


def _diagnose(path: Path) -> str | None:
    """A byte-level explanation of why SQLite refused the file, if one is visible.

    Only used to word an error SQLite already raised: the bytes are read without
    SQLite's locks, so a file another process is creating can look damaged for an
    instant (its first checkpoint pre-sizes the file with zeros). SQLite, which reads
    under its locks, is the judge of whether a file is good.
    """
    try:
        with path.open("rb") as handle:
            header = handle.read(100)
        size = path.stat().st_size
    except OSError:
        return None
    if size and not header.startswith(_SQLITE_HEADER):
        return "it does not start with the SQLite header"
    if 0 < size < 100:
        return f"it is truncated: {size} bytes, shorter than the 100-byte SQLite header"
    if size:
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        # SQLite only ever writes whole pages to the main file.
        if page_size >= 512 and size % page_size:
            return f"it looks truncated: {size} bytes is not a whole number of {page_size}-byte pages"
    return None


def _inspect(conn: sqlite3.Connection, path: Path, daemon_id: str) -> None:
    """Read-only checks on an existing database before anything is written to it."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        raise _corrupt(path, "integrity check failed: " + "; ".join(str(p) for p in problems[:3]))
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    user_tables = {t for t in tables if not t.startswith("sqlite_")}
    if not user_tables:
        return  # a new or empty database: migrations create everything
    if "meta" not in user_tables:
        raise StoreError(
            f"{path}: this SQLite database is not a cass-actions store (it has tables "
            f"{', '.join(sorted(user_tables)[:5])} but no meta table). It was left untouched; "
            "point --data-dir at another folder."
        )
    found = _meta(conn)
    try:
        version = int(found.get("schema_version", "0"))
    except ValueError:
        raise _corrupt(path, f"meta.schema_version is {found.get('schema_version')!r}") from None
    if version > SCHEMA_VERSION:
        raise _newer(path, version)
    stored_id = found.get("daemon_id")
    if stored_id is not None and stored_id != daemon_id:
        raise _other_daemon(path, stored_id, daemon_id)


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {row[0]: row[1] for row in conn.execute("SELECT key, value FROM meta")}


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


# --------------------------------------------------------------------------- row mapping


def _normalise_step(step: dict[str, Any], index: int) -> dict[str, Any]:
    if not isinstance(step, dict) or not isinstance(step.get("action"), str) or not step["action"]:
        raise ValueError(f"steps[{index}] must be a mapping with an 'action' id, got {step!r}")
    params = step.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"steps[{index}].params must be a mapping, got {type(params).__name__}")
    return {"action": step["action"], "params": params, "optional": bool(step.get("optional", False))}


def _lease(row: sqlite3.Row) -> Lease:
    return Lease(
        daemon_id=row["daemon_id"],
        holder=row["holder"],
        pid=row["pid"],
        hostname=row["hostname"],
        acquired_at=_dt(row["acquired_at"]),
        renewed_at=_dt(row["renewed_at"]),
        expires_at=_dt(row["expires_at"]),
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


def _queued_brief(row: sqlite3.Row) -> QueuedBrief:
    return QueuedBrief(id=row["id"], local_date=date.fromisoformat(row["local_date"]), phase=row["phase"],
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
