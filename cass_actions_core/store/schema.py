"""The schema: every table, index and trigger as numbered migrations, the runner that applies the ones a
file lacks, and the read-only checks of an existing file's ``meta`` (schema version, owning daemon).

:data:`MIGRATIONS` and :data:`SCHEMA_VERSION` are re-exported by :mod:`cass_actions_core.store`; the
checks and the runner read them there (see :func:`_current`).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cass_actions_core import __version__
from cass_actions_core.store.errors import StoreError, _corrupt

if TYPE_CHECKING:
    from pathlib import Path

    from cass_actions_core.store.connection import StoreBase

_PACKAGE = __name__.rpartition(".")[0]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``apply`` runs inside the migration transaction (no COMMIT inside), given the backend's
    own connection (:mod:`sqlite3` for :data:`MIGRATIONS`, psycopg for ``PG_MIGRATIONS``)."""

    version: int
    description: str
    apply: Callable[[Any], None] = field(repr=False)


def _run_statements(conn: Any, statements: Iterable[str]) -> None:
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

#: Version 6: every row belongs to a daemon, so that one PostgreSQL database can hold many daemons and every
#: statement filters by its daemon on both backends. Tables whose key changes are rebuilt (copying the
#: file's daemon id in); the others get a ``daemon_id`` column filled with it. The lease gets its fencing
#: token, bumped whenever another holder takes it. A SQLite file holds one daemon, so its indexes keep
#: their columns: led by ``daemon_id`` (one value) they would only mislead SQLite's planner, which has no
#: statistics, into scanning a whole table (PostgreSQL's indexes lead with the daemon).
_OWNER = "coalesce((SELECT value FROM meta WHERE key = 'daemon_id'), '')"
_EVERY_ROW_A_DAEMON_V6: tuple[str, ...] = (
    """CREATE TABLE plans_v6 (
        daemon_id TEXT NOT NULL,
        local_date TEXT NOT NULL,
        created_at TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('llm','fallback','file','manual')),
        reason TEXT,
        intention TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (daemon_id, local_date)
    )""",
    f"INSERT INTO plans_v6 SELECT {_OWNER}, local_date, created_at, source, reason, intention, data FROM plans",
    "DROP TABLE plans",
    "ALTER TABLE plans_v6 RENAME TO plans",
    """CREATE TABLE kv_v6 (
        daemon_id TEXT NOT NULL,
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (daemon_id, namespace, key)
    )""",
    f"INSERT INTO kv_v6 SELECT {_OWNER}, namespace, key, value, updated_at FROM kv",
    "DROP TABLE kv",
    "ALTER TABLE kv_v6 RENAME TO kv",
    """CREATE TABLE state_v6 (
        daemon_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (daemon_id, key)
    )""",
    f"INSERT INTO state_v6 SELECT {_OWNER}, key, value FROM state",
    "DROP TABLE state",
    "ALTER TABLE state_v6 RENAME TO state",
    """CREATE TABLE ledger_totals_v6 (
        daemon_id TEXT NOT NULL,
        budget_day TEXT NOT NULL,
        category TEXT NOT NULL,
        spent_micros INTEGER NOT NULL DEFAULT 0,
        reserved_micros INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (daemon_id, budget_day, category)
    ) WITHOUT ROWID""",
    f"INSERT INTO ledger_totals_v6 SELECT {_OWNER}, budget_day, category, spent_micros, reserved_micros FROM ledger_totals",
    "DROP TABLE ledger_totals",
    "ALTER TABLE ledger_totals_v6 RENAME TO ledger_totals",
    """CREATE TABLE summaries_v6 (
        unit_id TEXT PRIMARY KEY,
        daemon_id TEXT NOT NULL,
        slug TEXT NOT NULL,
        local_date TEXT NOT NULL,
        phase TEXT NOT NULL,
        category TEXT NOT NULL,
        template_id TEXT NOT NULL,
        status TEXT NOT NULL,
        text TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (daemon_id, slug)
    )""",
    # In rowid order, so the new rowids break ties as the old ones did.
    f"INSERT INTO summaries_v6 SELECT unit_id, {_OWNER}, slug, local_date, phase, category, template_id, status, text,"
    " data, created_at FROM summaries ORDER BY rowid",
    "DROP TABLE summaries",
    "ALTER TABLE summaries_v6 RENAME TO summaries",
    "CREATE INDEX summaries_by_day ON summaries (local_date, phase)",
    "CREATE INDEX summaries_by_category ON summaries (category)",
    "CREATE INDEX summaries_by_template ON summaries (template_id)",
    *(stmt for table in ("unit_transitions", "action_runs", "approvals", "events", "transcripts", "budget_overrides",
                         "ledger_entries")
      for stmt in (f"ALTER TABLE {table} ADD COLUMN daemon_id TEXT NOT NULL DEFAULT ''",)),
    *(f"UPDATE {table} SET daemon_id = {_OWNER}" for table in ("unit_transitions", "action_runs", "approvals",
                                                                "events", "transcripts", "budget_overrides")),
    # The append-only ledger is filled in with its guard lifted for this one statement.
    "DROP TRIGGER ledger_entries_no_update",
    f"UPDATE ledger_entries SET daemon_id = {_OWNER}",
    """CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
       BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: rows are never updated'); END""",
    "ALTER TABLE lease ADD COLUMN token INTEGER NOT NULL DEFAULT 0",
)

#: Every schema step, in order; a file's ``meta.schema_version`` says how many were applied.
#: Append new steps at the end; never edit a released one.
MIGRATIONS: list[Migration] = [
    Migration(1, "initial schema", lambda conn: _run_statements(conn, _SCHEMA_V1)),
    Migration(2, "plan sources: llm, fallback, file, manual", lambda conn: _run_statements(conn, _PLAN_SOURCES_V2)),
    Migration(3, "running ledger totals", lambda conn: _run_statements(conn, _LEDGER_TOTALS_V3)),
    Migration(4, "action ids in their pack's namespace", _rename_action_ids),
    Migration(5, "budget overrides set at run time", lambda conn: _run_statements(conn, _BUDGET_OVERRIDES_V5)),
    Migration(6, "every row belongs to a daemon; the lease's fencing token",
              lambda conn: _run_statements(conn, _EVERY_ROW_A_DAEMON_V6)),
    Migration(7, "the fleet registry (PostgreSQL only: nothing to do in a SQLite file)", lambda conn: None),
]

#: The schema version this code writes.
SCHEMA_VERSION: int = len(MIGRATIONS)


# --------------------------------------------------------------------------- running and checking


def _current() -> tuple[list[Migration], int]:
    """``MIGRATIONS`` and ``SCHEMA_VERSION`` as the package exports them.

    Read from :mod:`cass_actions_core.store` when a file is opened, not from this module's globals, so
    that replacing them there (as the migration tests do) is what the checks and the runner see.
    """
    package = sys.modules[_PACKAGE]
    return package.MIGRATIONS, package.SCHEMA_VERSION


def migrate(store: StoreBase) -> None:
    """Apply the migrations the store's file lacks and stamp a new file with its daemon, in one write transaction.

    Re-checks under the write lock that the file is not of a newer schema or another daemon
    (:class:`StoreError`), since another process may have migrated it since it was inspected.
    """
    migrations, schema_version = _current()
    now = datetime.now(timezone.utc)
    with store.transaction(immediate=True):
        conn = store._conn
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        found = _meta(conn)
        # Re-check under the write lock: another process may have migrated (or a newer
        # version may have) since _inspect looked.
        version = int(found.get("schema_version", "0"))
        if version > schema_version:
            raise _newer(store.path, version)
        stored_id = found.get("daemon_id")
        if stored_id is not None and stored_id != store.daemon_id:
            raise _other_daemon(store.path, stored_id, store.daemon_id)
        for migration in migrations[version:]:
            migration.apply(conn)
            _set_meta(conn, "schema_version", str(migration.version))
        if stored_id is None:
            _set_meta(conn, "daemon_id", store.daemon_id)
            _set_meta(conn, "created_at", now.isoformat())
            _set_meta(conn, "created_by", f"cass-actions {__version__}")


def _newer(path: Path, version: int) -> StoreError:
    return StoreError(
        f"{path} was written by a newer cass-actions (schema {version}, this version knows {_current()[1]}); "
        "upgrade cass-actions or use another data directory. The file was left untouched."
    )


def _other_daemon(path: Path, stored: str, wanted: str) -> StoreError:
    return StoreError(
        f"{path} holds the data of daemon {stored!r}, not {wanted!r}; each store file belongs to one daemon. "
        "Use the matching daemon_id or another data directory. The file was left untouched."
    )


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
    if version > _current()[1]:
        raise _newer(path, version)
    stored_id = found.get("daemon_id")
    if stored_id is not None and stored_id != daemon_id:
        raise _other_daemon(path, stored_id, daemon_id)


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {row[0]: row[1] for row in conn.execute("SELECT key, value FROM meta")}


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (key, value))
