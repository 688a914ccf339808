"""The durable store: everything of a daemon that must survive a restart, in one SQLite file per daemon
(the default) or in a PostgreSQL database shared by many daemons (``store.url``; :mod:`.postgres`).

What lives here: the day plans, the work units and every status change they went
through, the action runs (each keyed by its idempotency key and written *before* the side
effect), the append-only budget ledger, approvals, events, work summaries, LLM
transcripts (kept out of line and referenced by id), a per-pack key-value area, scheduler
state, and the lease that keeps two processes from running one daemon's scheduler.

Design choices, and why:

* **One file, one daemon.** The daemon id is written into the ``meta`` table when the
  file is created; opening it with another id is refused, so two daemons can never mix
  their history (the earlier system lost summaries to a wrong daemon id, B2). Every row
  also carries its daemon's id and every statement filters by it (schema 6), which is
  what keeps the daemons of one PostgreSQL database apart.
* **One implementation, two backends.** Every statement is written once in the SQL both
  databases share; :mod:`.dialect` spells the few differences and :mod:`.adapters` holds
  the transaction and lock layer (``BEGIN IMMEDIATE`` on SQLite, a per-daemon advisory
  lock on PostgreSQL, where commits are always durable).
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
  the WAL to the disk before the commit returns (a call's bookkeeping, before it goes out and
  after it returns, when its provider bills real money; the start of a step that is not idempotent). After a power cut the store is always consistent
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

The package holds one module per concern; :class:`Store` (in :mod:`.base`) is built from one
mixin of methods per concern on the connection layer; open one with :func:`open_store`:

* :mod:`.connection`: the connection's state, transactions, after-commit callbacks, read helpers;
* :mod:`.adapters` and :mod:`.dialect`: what differs between SQLite and PostgreSQL;
* :mod:`.base`: :class:`Store` and :func:`open_store`; :mod:`.sqlite`: :class:`SQLiteStore`, opening
  (or atomically creating) a file; :mod:`.postgres`: :class:`PostgresStore`;
* :mod:`.schema`: the tables as numbered :data:`MIGRATIONS`, the runner and the ``meta`` checks
  (:mod:`.schema_postgres`: the same versions on PostgreSQL);
* :mod:`.units` (plans, units, transitions), :mod:`.runs` (action runs, learned costs),
  :mod:`.ledger` (ledger rows, totals, budget overrides), :mod:`.approvals`, :mod:`.events`,
  :mod:`.summaries` (summaries, transcripts), :mod:`.state` (kv and scheduler state),
  :mod:`.leases`: the methods of each concern;
* :mod:`.rows` (the row dataclasses and their mappers), :mod:`.values` (column conversions),
  :mod:`.vocabulary` (statuses, phases, the state machine), :mod:`.errors`.

Import from this package, not from its modules: they may move when a second backend arrives.
"""

from __future__ import annotations

from cass_actions_core.store.base import STORE_FILE, Store, is_postgres_url, open_store, store_location
from cass_actions_core.store.errors import LeaseHeldError, LeaseLostError, NotFoundError, StoreError, StoreUnavailable
from cass_actions_core.store.rows import (
    ActionRunRow,
    ApprovalRow,
    BudgetOverride,
    EventRow,
    Lease,
    LedgerEntry,
    LedgerTotals,
    PlanRow,
    UnitBrief,
    SummaryRow,
    TranscriptRow,
    TransitionRow,
    UnitRow,
)
from cass_actions_core.store.schema import MIGRATIONS, SCHEMA_VERSION, Migration
from cass_actions_core.store.postgres import PostgresStore, redact_url
from cass_actions_core.store.sqlite import SQLiteStore
from cass_actions_core.store.vocabulary import (
    ACTION_RUN_STATUSES,
    ALLOWED_TRANSITIONS,
    APPROVAL_STATUSES,
    LEDGER_KINDS,
    PARKED_STATUSES,
    PHASES,
    PLAN_SOURCES,
    REASON_REQUIRED,
    TERMINAL_STATUSES,
    UNIT_STATUSES,
)

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
    "STORE_FILE",
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
    "PostgresStore",
    "UnitBrief",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SummaryRow",
    "TranscriptRow",
    "TransitionRow",
    "UnitRow",
    "is_postgres_url",
    "open_store",
    "redact_url",
    "store_location",
]
