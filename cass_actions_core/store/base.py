"""The store's one public type, :class:`Store` (one mixin of methods per concern on the connection layer,
whatever the backend), and :func:`open_store`, which opens a SQLite file or a PostgreSQL database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from cass_actions_core.store.approvals import ApprovalsMixin
from cass_actions_core.store.connection import StoreBase
from cass_actions_core.store.events import EventsMixin
from cass_actions_core.store.leases import LeaseMixin
from cass_actions_core.store.ledger import LedgerMixin
from cass_actions_core.store.runs import ActionRunsMixin
from cass_actions_core.store.state import StateMixin
from cass_actions_core.store.summaries import SummariesMixin
from cass_actions_core.store.units import UnitsMixin
from cass_actions_core.store.values import _ts

#: The SQLite store's file name in the data directory (the store unless ``store.url`` names another).
STORE_FILE = "cass-actions.sqlite"

#: URL schemes that name a PostgreSQL database.
POSTGRES_SCHEMES: tuple[str, ...] = ("postgresql://", "postgres://")


class Store(UnitsMixin, ActionRunsMixin, LedgerMixin, ApprovalsMixin, EventsMixin, SummariesMixin, StateMixin,
            LeaseMixin, StoreBase):
    """One daemon's store, on SQLite (:class:`~cass_actions_core.store.sqlite.SQLiteStore`) or PostgreSQL
    (:class:`~cass_actions_core.store.postgres.PostgresStore`); open it with :func:`open_store`.

    Use from one thread only (see the package docstring); it is a context manager that
    closes the connection on exit.
    """

    def _migrate(self) -> None:
        raise TypeError(f"{type(self).__name__} is not a backend; open a store with open_store()")

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        row = self._one("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(row[0])

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, daemon_id={self.daemon_id!r})"

    # ---------------------------------------------------------------- retention

    def prune(self, before_events: datetime, before_transcripts: datetime) -> dict[str, int]:
        """Delete this daemon's events and transcripts older than the given instants; returns counts removed.

        Nothing else is pruned: units, summaries, approvals and the ledger are history.
        """
        events_s = _ts(before_events, "before_events")
        transcripts_s = _ts(before_transcripts, "before_transcripts")
        d = self._d
        with self.transaction(immediate=True):
            events = self._x(f"DELETE FROM events WHERE daemon_id = ? AND {d.ts('at')} < {d.ts('?')}",
                             (self.daemon_id, events_s)).rowcount
            transcripts = self._x(
                f"DELETE FROM transcripts WHERE daemon_id = ? AND {d.ts('created_at')} < {d.ts('?')}",
                (self.daemon_id, transcripts_s),
            ).rowcount
        return {"events": events, "transcripts": transcripts}


def is_postgres_url(location: Any) -> bool:
    """Whether ``location`` names a PostgreSQL database (``postgresql://…`` or ``postgres://…``)."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def store_location(url: str | None, data_dir: Path) -> Path | str:
    """Where a daemon's store is: the PostgreSQL URL ``store.url``, the file a ``sqlite:///`` URL names, else
    the SQLite file in ``data_dir``. A file comes back as a :class:`~pathlib.Path`, so a command that only reads
    can see it is missing (and refuse) rather than create it."""
    if not url:
        return data_dir / STORE_FILE
    if url.startswith("sqlite:///"):
        return Path("/" + url[len("sqlite:///"):].lstrip("/"))  # sqlite:////abs and sqlite:///abs: the same file
    return url


def open_store(location: Path | str, daemon_id: str) -> Store:
    """Open ``daemon_id``'s store: a PostgreSQL URL (``postgresql://user:password@host:port/database``), a
    ``sqlite:///path`` URL, or the path of a SQLite file (created and migrated if needed).

    Raises :class:`~cass_actions_core.store.StoreError` (one paragraph naming the file or the URL without
    its password) when the store cannot be opened.
    """
    if is_postgres_url(location):
        from cass_actions_core.store.postgres import PostgresStore

        return PostgresStore.open(str(location), daemon_id=daemon_id)
    from cass_actions_core.store.sqlite import SQLiteStore

    if isinstance(location, str) and location.startswith("sqlite:///"):
        location = location[len("sqlite://"):]
    return SQLiteStore.open(location, daemon_id=daemon_id)
