"""The connection layer under the store's transactions, one adapter per backend with one surface.

:class:`SQLiteDB` wraps a :mod:`sqlite3` connection (``BEGIN IMMEDIATE`` is the write lock, PRAGMAs make
a commit durable); :class:`PostgresDB` wraps a psycopg 3 connection in autocommit mode that issues
``BEGIN``/``COMMIT`` itself, takes a per-daemon advisory lock as its write lock, and is durable by
default. :class:`~cass_actions_core.store.connection.StoreBase` drives either through the same methods.
psycopg is imported only by :func:`connect_postgres`, so importing the store stays cheap.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from cass_actions_core.store.dialect import POSTGRES, SQLITE, Dialect, _pyformat

#: PostgreSQL's wait for a lock (the daemon's write lock included) before a write gives up, as SQLite's busy timeout.
PG_LOCK_TIMEOUT = "5s"

#: The channel of the wake-ups workers LISTEN on: the payload is the daemon whose units, plan, pauses or
#: budget changed (``''``: the fleet registry changed).
NOTIFY_CHANNEL = "cass_actions"


class SQLiteDB:
    """A :mod:`sqlite3` connection (``isolation_level=None``) as the store drives it."""

    dialect: Dialect = SQLITE
    #: Errors that say the database could not be used now (busy, full, read-only), not that the data is wrong.
    unavailable: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Wrap an open connection."""
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns its cursor (``fetchone``, ``fetchall``, ``rowcount``)."""
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        self.raw.executemany(sql, rows)

    @property
    def changes(self) -> int:
        """A counter that grows with every row written (tells whether a block wrote anything)."""
        return self.raw.total_changes

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on the connection."""
        return self.raw.in_transaction

    def begin(self, immediate: bool, daemon_id: str) -> None:
        """Open a transaction: ``BEGIN IMMEDIATE`` takes the file's write lock at once."""
        self.raw.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def commit(self) -> None:
        """Commit the open transaction."""
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        """Roll the open transaction back, if one is open."""
        if self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def savepoint(self, name: str) -> None:
        """Open a savepoint inside the transaction."""
        self.raw.execute(f"SAVEPOINT {name}")

    def rollback_to(self, name: str) -> None:
        """Undo and close a savepoint."""
        self.raw.execute(f"ROLLBACK TO {name}")
        self.raw.execute(f"RELEASE {name}")

    def release(self, name: str) -> None:
        """Keep and close a savepoint."""
        self.raw.execute(f"RELEASE {name}")

    def durable_begin(self) -> None:
        """Make the next commit sync the WAL to the disk before it returns."""
        self.raw.execute("PRAGMA synchronous = FULL")

    def durable_end(self) -> None:
        """Back to the default: commits reach the operating system, the WAL is synced at checkpoints."""
        self.raw.execute("PRAGMA synchronous = NORMAL")

    def sync_committed(self) -> None:
        """Sync what was just committed (a nested block asked for durability after BEGIN)."""
        self.raw.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """Close the connection."""
        self.raw.close()


class _PgRow(tuple):  # type: ignore[type-arg]
    """A PostgreSQL row readable like :class:`sqlite3.Row`: by index, by column name, and ``keys()``."""

    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._names)


@lru_cache(maxsize=512)
def _row_type(names: tuple[str, ...]) -> type[_PgRow]:
    """One row class per column list (a statement run again reuses it)."""
    return type("Row", (_PgRow,), {"_names": names, "__slots__": ()})


def _pg_row_factory(cursor: Any) -> Any:
    row_type = _row_type(tuple(column.name for column in cursor.description or ()))

    def make(values: Sequence[Any]) -> _PgRow:
        return row_type(values)

    return make


class PostgresDB:
    """A psycopg 3 connection (autocommit; the store issues BEGIN and COMMIT) as the store drives it."""

    dialect: Dialect = POSTGRES

    def __init__(self, url: str, psycopg: Any, conn: Any) -> None:
        """Wrap a connection made by :func:`connect_postgres`."""
        self.url = url
        self._psycopg = psycopg
        self.raw = conn
        self._changes = 0
        self.unavailable: tuple[type[BaseException], ...] = (psycopg.OperationalError,)

    def _run(self, call: Any, sql: str, params: Any) -> Any:
        try:
            return call(_pyformat(sql), params) if params else call(sql)
        except self._psycopg.Error:
            # Any failed statement aborts a PostgreSQL transaction: the block that ran it wrote "something".
            self._changes += 1
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement (``?`` placeholders); returns its cursor (``fetchone``, ``fetchall``, ``rowcount``)."""
        cursor = self._run(self.raw.execute, sql, tuple(params))
        if cursor.rowcount and cursor.rowcount > 0 and not sql.lstrip()[:6].upper() == "SELECT":
            self._changes += cursor.rowcount
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        rows = [tuple(row) for row in rows]
        if rows:
            with self.raw.cursor() as cursor:
                try:
                    cursor.executemany(_pyformat(sql), rows)
                except self._psycopg.Error:
                    self._changes += 1
                    raise
                self._changes += max(cursor.rowcount, 1)

    @property
    def changes(self) -> int:
        """A counter that grows with every row written or statement failed (either dooms a joined block)."""
        return self._changes

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (or failed and not yet rolled back) on the connection."""
        return bool(self.raw.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE)

    def begin(self, immediate: bool, daemon_id: str) -> None:
        """Open a transaction. ``immediate``: READ COMMITTED holding the daemon's advisory write lock (so each
        statement sees the previous holder's commits, exactly as after ``BEGIN IMMEDIATE``); otherwise a
        read-only snapshot."""
        if self.raw.closed or self.raw.broken:
            self.raw = _connect(self._psycopg, self.url)
        if immediate:
            self.raw.execute("BEGIN")
            try:
                self.raw.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("cass-actions:" + daemon_id,))
            except BaseException:
                self.rollback()
                raise
        else:
            self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def commit(self) -> None:
        """Commit the open transaction."""
        self.raw.execute("COMMIT")

    def notify(self, daemon_id: str) -> None:
        """Queue ``pg_notify`` on :data:`NOTIFY_CHANNEL` with ``daemon_id`` (the registry: ``''``) as its
        payload, inside the open transaction: the workers' LISTEN hears it when (and only if) it commits."""
        self.raw.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, daemon_id))

    def rollback(self) -> None:
        """Roll the open transaction back, if one is open (nothing to do on a lost connection)."""
        if self.raw.closed or self.raw.broken:
            return
        if self.in_transaction:
            self.raw.execute("ROLLBACK")

    def savepoint(self, name: str) -> None:
        """Open a savepoint inside the transaction."""
        self.raw.execute(f"SAVEPOINT {name}")

    def rollback_to(self, name: str) -> None:
        """Undo and close a savepoint (the transaction is usable again afterwards)."""
        self.raw.execute(f"ROLLBACK TO SAVEPOINT {name}")
        self.raw.execute(f"RELEASE SAVEPOINT {name}")

    def release(self, name: str) -> None:
        """Keep and close a savepoint."""
        self.raw.execute(f"RELEASE SAVEPOINT {name}")

    def durable_begin(self) -> None:
        """Nothing to do: a PostgreSQL commit is durable (``synchronous_commit`` on) before it returns."""

    def durable_end(self) -> None:
        """Nothing to do (see :meth:`durable_begin`)."""

    def sync_committed(self) -> None:
        """Nothing to do (see :meth:`durable_begin`)."""

    def close(self) -> None:
        """Close the connection."""
        self.raw.close()


def _connect(psycopg: Any, url: str) -> Any:
    conn = psycopg.connect(url, autocommit=True, row_factory=_pg_row_factory, connect_timeout=10)
    conn.execute(f"SET lock_timeout = '{PG_LOCK_TIMEOUT}'")
    return conn


def connect_postgres(url: str) -> PostgresDB:
    """Connect to the PostgreSQL database at ``url`` (psycopg is imported here, not at the store's import).

    Raises :class:`ImportError` when psycopg is not installed and ``psycopg.OperationalError`` when the
    server cannot be reached; :class:`~cass_actions_core.store.postgres.PostgresStore` words both.
    """
    import psycopg  # lazily: the CLI's quick commands never pay for it

    return PostgresDB(url, psycopg, _connect(psycopg, url))
