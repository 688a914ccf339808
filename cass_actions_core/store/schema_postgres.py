"""The PostgreSQL schema: :data:`PG_MIGRATIONS`, numbered so that ``schema_version`` means the same schema
as on SQLite (1-5 are SQLite history and do nothing here; 6 creates every table, each row belonging to a
daemon), and the runner that applies them under a database-wide advisory lock.

Datetimes and JSON stay TEXT as on SQLite (the offset each datetime was written with is kept; comparisons
cast to ``timestamptz``), money is ``double precision``, booleans are integers 0/1, and ``seq`` identity
columns give the insertion order SQLite's rowid gives.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cass_actions_core import __version__
from cass_actions_core.store.errors import StoreError
from cass_actions_core.store.schema import SCHEMA_VERSION, Migration, _run_statements

if TYPE_CHECKING:
    from cass_actions_core.store.connection import StoreBase

_SCHEMA_V6: tuple[str, ...] = (
    """CREATE TABLE daemons (daemon_id text PRIMARY KEY, created_at text NOT NULL, created_by text NOT NULL)""",
    """CREATE TABLE plans (daemon_id text NOT NULL, local_date text NOT NULL, created_at text NOT NULL,
        source text NOT NULL CHECK (source IN ('llm','fallback','file','manual')), reason text, intention text,
        data text NOT NULL, PRIMARY KEY (daemon_id, local_date))""",
    """CREATE TABLE units (seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE, id text PRIMARY KEY,
        daemon_id text NOT NULL, local_date text NOT NULL,
        phase text NOT NULL CHECK (phase IN ('morning','afternoon','evening','night')), template_id text NOT NULL,
        name text NOT NULL, category text NOT NULL, priority integer NOT NULL, position integer NOT NULL,
        status text NOT NULL, reason text, focus text, motivation text, requires_idle integer NOT NULL DEFAULT 0,
        steps text NOT NULL, estimated_cost_usd double precision NOT NULL DEFAULT 0,
        next_step integer NOT NULL DEFAULT 0, created_at text NOT NULL, updated_at text NOT NULL, started_at text,
        finished_at text, not_before text, data text NOT NULL)""",
    "CREATE INDEX units_by_day ON units (daemon_id, local_date, phase, status)",
    "CREATE INDEX units_by_status ON units (daemon_id, status)",
    "CREATE INDEX units_by_template ON units (daemon_id, template_id, local_date)",
    """CREATE TABLE unit_transitions (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, daemon_id text NOT NULL,
        unit_id text NOT NULL REFERENCES units(id) ON DELETE CASCADE, at text NOT NULL, from_status text,
        to_status text NOT NULL, reason text)""",
    "CREATE INDEX unit_transitions_by_unit ON unit_transitions (unit_id, id)",
    """CREATE TABLE action_runs (seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE, key text PRIMARY KEY,
        daemon_id text NOT NULL, unit_id text NOT NULL REFERENCES units(id), step_index integer NOT NULL,
        action_id text NOT NULL, status text NOT NULL CHECK (status IN ('started','completed','failed')),
        started_at text NOT NULL, finished_at text, cost_usd double precision NOT NULL DEFAULT 0, result text,
        error text)""",
    "CREATE INDEX action_runs_by_unit ON action_runs (unit_id, step_index)",
    "CREATE INDEX action_runs_by_action ON action_runs (daemon_id, action_id) WHERE status = 'completed'",
    """CREATE TABLE ledger_entries (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, daemon_id text NOT NULL,
        budget_day text NOT NULL, category text NOT NULL, kind text NOT NULL CHECK (kind IN ('reserve','settle','release')),
        amount_usd double precision NOT NULL CHECK (amount_usd >= 0), reservation_id text NOT NULL, unit_id text,
        note text, at text NOT NULL, critical integer NOT NULL DEFAULT 0)""",
    "CREATE INDEX ledger_by_day ON ledger_entries (daemon_id, budget_day, category)",
    "CREATE INDEX ledger_by_reservation ON ledger_entries (reservation_id, kind)",
    # The ledger only appends (F3), enforced by the database as on SQLite.
    """CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP; END $$""",
    """CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_append_only()""",
    """CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()""",
    """CREATE TABLE ledger_totals (daemon_id text NOT NULL, budget_day text NOT NULL, category text NOT NULL,
        spent_micros bigint NOT NULL DEFAULT 0, reserved_micros bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (daemon_id, budget_day, category))""",
    """CREATE TABLE budget_overrides (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, daemon_id text NOT NULL,
        category text NOT NULL, budget_day text, from_day text NOT NULL,
        amount_usd double precision CHECK (amount_usd IS NULL OR amount_usd >= 0), set_by text NOT NULL,
        set_at text NOT NULL)""",
    "CREATE INDEX budget_overrides_by_day ON budget_overrides (daemon_id, budget_day, from_day)",
    """CREATE TABLE approvals (seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE, id text PRIMARY KEY,
        daemon_id text NOT NULL, unit_id text NOT NULL REFERENCES units(id), step_index integer NOT NULL,
        action_id text NOT NULL, status text NOT NULL CHECK (status IN ('pending','approved','rejected','expired')),
        reason text, requested_at text NOT NULL, expires_at text NOT NULL, resolved_at text, resolved_by text,
        note text)""",
    "CREATE UNIQUE INDEX approvals_one_pending ON approvals (unit_id, step_index) WHERE status = 'pending'",
    "CREATE INDEX approvals_by_status ON approvals (daemon_id, status)",
    """CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, daemon_id text NOT NULL,
        at text NOT NULL, type text NOT NULL, unit_id text, data text NOT NULL)""",
    "CREATE INDEX events_by_daemon ON events (daemon_id, id)",
    "CREATE INDEX events_by_type ON events (daemon_id, type, id)",
    """CREATE TABLE summaries (seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE, unit_id text PRIMARY KEY,
        daemon_id text NOT NULL, slug text NOT NULL, local_date text NOT NULL, phase text NOT NULL,
        category text NOT NULL, template_id text NOT NULL, status text NOT NULL, text text NOT NULL,
        data text NOT NULL, created_at text NOT NULL, UNIQUE (daemon_id, slug))""",
    "CREATE INDEX summaries_by_day ON summaries (daemon_id, local_date, phase)",
    "CREATE INDEX summaries_by_category ON summaries (daemon_id, category)",
    "CREATE INDEX summaries_by_template ON summaries (daemon_id, template_id)",
    """CREATE TABLE transcripts (id text PRIMARY KEY, daemon_id text NOT NULL, run_key text,
        created_at text NOT NULL, data text NOT NULL)""",
    "CREATE INDEX transcripts_by_run ON transcripts (run_key)",
    """CREATE TABLE kv (daemon_id text NOT NULL, namespace text NOT NULL, key text NOT NULL, value text NOT NULL,
        updated_at text NOT NULL, PRIMARY KEY (daemon_id, namespace, key))""",
    """CREATE TABLE state (daemon_id text NOT NULL, key text NOT NULL, value text NOT NULL,
        PRIMARY KEY (daemon_id, key))""",
    """CREATE TABLE lease (daemon_id text PRIMARY KEY, holder text NOT NULL, token bigint NOT NULL DEFAULT 0,
        pid integer NOT NULL, hostname text NOT NULL, acquired_at text NOT NULL, renewed_at text NOT NULL,
        expires_at text NOT NULL)""",
)


#: Version 7, the fleet (``cass-actions daemons`` and ``worker``): each registered daemon's checked config
#: (a JSON document) and workspace root, the workers with their heartbeats, and fleet-wide settings (the
#: rehearsal clock that every worker shares).
_FLEET_V7: tuple[str, ...] = (
    "ALTER TABLE daemons ADD COLUMN config text",
    "ALTER TABLE daemons ADD COLUMN workspace text",
    "ALTER TABLE daemons ADD COLUMN registered_at text",
    """CREATE TABLE workers (id text PRIMARY KEY, hostname text NOT NULL, pid integer NOT NULL,
        started_at text NOT NULL, beat_at text NOT NULL)""",
    "CREATE TABLE fleet_state (key text PRIMARY KEY, value text NOT NULL)",
)


def _nothing(conn: Any) -> None:
    """SQLite history: the PostgreSQL schema starts at version 6."""


#: Every PostgreSQL schema step, numbered as :data:`~cass_actions_core.store.MIGRATIONS`; a later
#: migration N is one entry here and one there.
PG_MIGRATIONS: list[Migration] = [
    *(Migration(n, "SQLite history (nothing to do on PostgreSQL)", _nothing) for n in range(1, 6)),
    Migration(6, "every row belongs to a daemon: the whole schema", lambda conn: _run_statements(conn, _SCHEMA_V6)),
    Migration(7, "the fleet registry: daemons' config and workspace, workers, fleet state",
              lambda conn: _run_statements(conn, _FLEET_V7)),
]
assert len(PG_MIGRATIONS) == SCHEMA_VERSION, "a migration was added to one backend only"


def migrate_postgres(store: StoreBase) -> None:
    """Apply the migrations the database lacks and register the store's daemon, in one transaction.

    The database's schema is shared by every daemon; a database-wide advisory lock serialises migrations
    (DDL is transactional on PostgreSQL: a failed migration leaves nothing behind).
    """
    with store.transaction(immediate=True):
        store._x("SELECT pg_advisory_xact_lock(hashtextextended('cass-actions:schema', 0))")
        store._x("CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL)")
        found = {row[0]: row[1] for row in store._all("SELECT key, value FROM meta")}
        try:
            version = int(found.get("schema_version", "0"))
        except ValueError:
            raise StoreError(f"{store.path}: meta.schema_version is {found.get('schema_version')!r}, not a "
                             "number; this database's cass-actions schema is damaged. Nothing was changed.") from None
        if version > SCHEMA_VERSION:
            raise StoreError(f"{store.path} was written by a newer cass-actions (schema {version}, this version knows "
                             f"{SCHEMA_VERSION}); upgrade cass-actions or use another database. Nothing was changed.")
        for migration in PG_MIGRATIONS[version:]:
            migration.apply(store._conn)
            store._x("INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key)"
                     " DO UPDATE SET value = excluded.value", (str(migration.version),))
        if store.daemon_id:  # the fleet registry opens the database without a daemon of its own
            store._x("INSERT INTO daemons (daemon_id, created_at, created_by) VALUES (?, ?, ?)"
                     " ON CONFLICT (daemon_id) DO NOTHING",
                     (store.daemon_id, datetime.now(timezone.utc).isoformat(), f"cass-actions {__version__}"))
