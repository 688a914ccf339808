"""What every part of the store builds on: the state a :class:`~cass_actions_core.store.Store` keeps
around its one database connection (an adapter of :mod:`.adapters`), transactions (nested blocks joining the outer one, savepoints
on request, durable commits, lease fencing), callbacks after a commit, and the read helpers. The durability and threading contract is in
the :mod:`cass_actions_core.store` docstring."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cass_actions_core.store.errors import LeaseLostError, NotFoundError, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from cass_actions_core.store.adapters import PostgresDB, SQLiteDB

_T = TypeVar("_T")


class StoreBase:
    """The connection and transaction layer of :class:`~cass_actions_core.store.Store`, which adds one
    mixin of methods per concern on top of it (open a store with :func:`~cass_actions_core.store.open_store`)."""

    def __init__(self, db: SQLiteDB | PostgresDB, path: Path | str, daemon_id: str) -> None:
        """Wrap an already validated connection adapter (use :func:`~cass_actions_core.store.open_store`)."""
        self._db = db
        #: How this backend spells what portable SQL cannot say once (see :mod:`.dialect`).
        self._d = db.dialect
        self._depth = 0
        self._closed = False
        #: The lease holder this store writes for, once it acquired the lease (fencing), else None.
        self._fence: str | None = None
        #: The lease's fencing token when this store acquired it (see :class:`~cass_actions_core.store.Lease`).
        self._fence_token = 0
        #: Why this store may write nothing more: it lost the lease it wrote under (a stuck process woke up
        #: after another took over). Only acquiring the lease again lifts it.
        self._lost: str | None = None
        self._lease_write = False
        #: Whether this store's writes from outside a scheduler wake the workers (PostgreSQL's NOTIFY).
        self._notify = True
        # Callbacks to run once the outermost transaction commits (dropped on rollback).
        self._after_commit: list[Callable[[], None]] = []
        # A nested block asked for durability: sync the WAL after the outer commit.
        self._sync_after = False
        # A nested block failed after writing: the outer transaction may only roll back.
        self._doomed: str | None = None
        #: Where the data lives, for messages: the SQLite file, or the PostgreSQL URL without its password.
        self.path = path
        #: The daemon whose data this store reads and writes.
        self.daemon_id = daemon_id
        import socket  # here rather than at the top: importing the store stays cheap

        #: This host's name, recorded in the lease to tell local dead processes apart.
        self.hostname = socket.gethostname()

    @property
    def _conn(self) -> Any:
        """The backend's own connection (:mod:`sqlite3` or psycopg), for backend-specific code and tests."""
        return self._db.raw

    def close(self) -> None:
        """Close the connection (a second call does nothing)."""
        if not self._closed:
            self._closed = True
            self._db.close()

    # ---------------------------------------------------------------- transactions

    def transaction(self, immediate: bool = True, durable: bool = False, savepoint: bool = False) -> _Transaction:
        """Run the block atomically: ``BEGIN IMMEDIATE`` (or deferred) ... COMMIT, ROLLBACK on error.

        ``immediate=True`` takes the write lock at once, so a read-check-write sequence
        (ledger checks, status transitions, lease) cannot be raced by another connection.
        ``immediate=False`` gives a consistent read snapshot.

        A nested block joins the outer transaction, so store methods combine into one
        larger transaction at no cost. A nested block that raises after it wrote something
        cannot be undone on its own: the whole transaction is then rolled back at the
        outer block's end, even if a caller caught the error meanwhile (the outer block
        raises :class:`StoreError`). A caller that catches a nested block's errors and goes
        on asks for ``savepoint=True``: the block becomes a SAVEPOINT, undone alone.
        ``durable=True``: the commit is synced to the disk before it returns (see the
        durability contract in the package docstring); a nested block asking for it makes
        the outer commit durable.
        """
        return _Transaction(self, immediate, durable, savepoint)

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

    def _write_error(self, exc: BaseException) -> StoreError:
        """A full disk, a read-only file or a lock held too long, as one sentence naming the file."""
        text = str(exc)
        hint = ("free some disk space" if "full" in text else
                "check the file's and its folder's permissions" if "readonly" in text or "read-only" in text else
                "another process may be holding the store; try again")
        return StoreUnavailable(f"{self.path}: the store could not be written ({text}); nothing of this change was kept. "
                                f"{hint[0].upper()}{hint[1:]}.")

    def _x(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement written with ``?`` placeholders; returns its cursor."""
        return self._db.execute(sql, params)

    def _insert_for_unit(self, sql: str, params: Sequence[Any], unit_id: str, missing: str) -> Any:
        """Run an INSERT of a row that belongs to work unit ``unit_id``; :class:`NotFoundError` with ``missing``
        when there is no such unit. Returns the cursor.

        SQLite's foreign key finds a missing unit as the row goes in, at no extra cost (a failed statement
        leaves a SQLite transaction usable); a failed statement would abort a PostgreSQL transaction, so
        there the unit is looked up first."""
        if self._d.name == "sqlite":
            try:
                return self._db.execute(sql, params)
            except sqlite3.IntegrityError as exc:
                if "FOREIGN KEY" in str(exc):
                    raise NotFoundError(missing) from None
                raise
        if self._one("SELECT 1 FROM units WHERE daemon_id = ? AND id = ?", (self.daemon_id, unit_id)) is None:
            raise NotFoundError(missing)
        return self._db.execute(sql, params)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self._db.execute(sql, params).fetchone()
        except self._db.unavailable as exc:
            raise self._read_error(exc) from None

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return list(self._db.execute(sql, params).fetchall())
        except self._db.unavailable as exc:
            raise self._read_error(exc) from None

    def _read_error(self, exc: BaseException) -> StoreUnavailable:
        """A read that failed for a reason outside the data (a lost connection, a lock held too long)."""
        return StoreUnavailable(f"{self.path}: reading the store failed ({' '.join(str(exc).split())}); nothing was "
                                "changed. Try again; if it keeps failing, check that the store is reachable.")

    def _map(self, read: Callable[[Any], _T], row: Any) -> _T:
        """``read(row)``, or a StoreError naming the file, the table and the row when a value in it is damaged."""
        try:
            return read(row)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            keys = row.keys()
            ident = next((f"{k} {row[k]!r}" for k in ("id", "key", "unit_id", "local_date", "category") if k in keys), "?")
            raise StoreError(f"{self.path}: a damaged {read.__name__.strip('_').replace('_', ' ')} row ({ident}): "
                             f"{type(exc).__name__}: {exc}. Nothing was changed; restore the file from a backup, "
                             "or fix or delete that row.") from None


# --------------------------------------------------------------------------- transactions


class _Transaction:
    """One :meth:`Store.transaction` block (a class, not a generator: it runs several times per step)."""

    __slots__ = ("store", "immediate", "durable", "savepoint", "depth", "full", "changes", "doomed")

    def __init__(self, store: StoreBase, immediate: bool, durable: bool, savepoint: bool) -> None:
        self.store, self.immediate, self.durable, self.savepoint = store, immediate, durable, savepoint
        self.depth = 0
        self.full = False
        self.changes = 0
        self.doomed: str | None = None

    def __enter__(self) -> None:
        store = self.store
        db = store._db
        depth = self.depth = store._depth
        full = self.full = self.durable and depth == 0
        if depth > 0:
            if self.durable:
                store._sync_after = True
            if not self.savepoint:  # joins the outer transaction: no statement at all
                self.changes = db.changes
                store._depth = depth + 1
                return
        if depth == 0 and self.immediate and store._lost is not None and not store._lease_write:
            raise LeaseLostError(store._lost)  # not even a write that would pass the fence check: it has none
        try:
            if full:
                db.durable_begin()  # applies to the commit of this transaction
            if depth == 0:
                db.begin(self.immediate, store.daemon_id)
                store._doomed = None
                self.changes = db.changes
            else:
                db.savepoint(f"sp_{depth}")
            self.doomed = store._doomed
        except db.unavailable as exc:
            if full:
                db.durable_end()
            raise store._write_error(exc) from None
        if depth == 0 and self.immediate and store._fence is not None and not store._lease_write:
            # Fencing: a lease holder writes only while it still holds the lease (under the write lock),
            # so a process that lost it (stuck past its lease, then taken over) can write nothing.
            row = db.execute("SELECT holder, token FROM lease WHERE daemon_id = ?", (store.daemon_id,)).fetchone()
            if row is None or row[0] != store._fence or row[1] != store._fence_token:
                db.rollback()
                if full:
                    db.durable_end()
                fence, store._fence = store._fence, None
                who = "nobody" if row is None or not row[0] else repr(row[0])  # '': released
                store._lost = (f"{store.path}: {fence!r} lost the lease of daemon {store.daemon_id!r} (now held by "
                               f"{who}); its write was refused. This process must stop running the scheduler.")
                raise LeaseLostError(store._lost)
        store._depth = depth + 1

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        store, depth, full = self.store, self.depth, self.full
        db = store._db
        store._depth = depth
        if depth > 0 and not self.savepoint:
            if exc is not None and db.changes != self.changes and store._doomed is None:
                store._doomed = f"{type(exc).__name__}: {exc}"
            return False
        if exc is not None:
            if depth == 0:
                store._after_commit.clear()
                store._sync_after = False
                store._doomed = None
                db.rollback()
                if full:
                    db.durable_end()
                if isinstance(exc, db.unavailable):
                    raise store._write_error(exc) from None
            else:
                db.rollback_to(f"sp_{depth}")
                store._doomed = self.doomed  # what failed inside the savepoint is undone with it
            return False
        if depth > 0:
            db.release(f"sp_{depth}")
            return False
        if store._doomed is not None:
            why, store._doomed = store._doomed, None
            store._after_commit.clear()
            store._sync_after = False
            db.rollback()
            if full:
                db.durable_end()
            raise StoreError(f"{store.path}: a part of this transaction failed after writing ({why}) and could "
                             "not be undone alone, so the whole transaction was rolled back; nothing of it was kept.")
        try:
            if self.immediate and store._fence is None and store._notify and db.changes != self.changes:
                # A write from outside the daemon's scheduler (a CLI control, the HTTP API, the registry):
                # tell the workers (PostgreSQL's NOTIFY, delivered at commit; nothing on SQLite).
                notify = getattr(db, "notify", None)
                if notify is not None:
                    notify(store.daemon_id)
            db.commit()
            if store._sync_after and not full:
                # A nested block needed durability after BEGIN: sync what was committed.
                db.sync_committed()
        except BaseException as error:
            store._after_commit.clear()
            db.rollback()
            if isinstance(error, db.unavailable):
                raise store._write_error(error) from None
            raise
        finally:
            store._sync_after = False
            if full:
                db.durable_end()
        callbacks, store._after_commit = store._after_commit, []
        for callback in callbacks:
            callback()
        return False
