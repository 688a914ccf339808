"""The PostgreSQL store: :class:`PostgresStore`, the same :class:`~cass_actions_core.store.Store` methods on a
PostgreSQL database that many daemons share, each row belonging to one daemon.

Durability: every commit is durable when it returns (the server's ``synchronous_commit`` default), so
``transaction(durable=True)`` needs nothing more. The write lock is a per-daemon advisory lock (see
:mod:`.adapters`): writers of one daemon are serialised exactly as SQLite's ``BEGIN IMMEDIATE`` serialises
a file's, and writers of different daemons run in parallel.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from cass_actions_core.store.base import Store
from cass_actions_core.store.connection import StoreBase
from cass_actions_core.store.errors import StoreError, StoreUnavailable
from cass_actions_core.store.schema_postgres import migrate_postgres


class PostgresStore(Store):
    """One daemon's store in a PostgreSQL database; open it with :func:`~cass_actions_core.store.open_store`."""

    @classmethod
    def open(cls, location: Path | str, *, daemon_id: str) -> PostgresStore:
        """Connect to the database at the URL ``location``, create or migrate its schema, and register
        ``daemon_id`` in it. Raises :class:`StoreUnavailable` when the server cannot be reached and
        :class:`StoreError` when psycopg is missing or the schema is newer than this version."""
        if not daemon_id or not isinstance(daemon_id, str):
            raise ValueError("daemon_id must be a non-empty string")
        return open_postgres(cls, location, daemon_id)

    def _migrate(self) -> None:
        migrate_postgres(self)

    def registered_daemons(self) -> list[str]:
        """Every daemon that has opened a store in this database, sorted."""
        return [row[0] for row in self._all("SELECT daemon_id FROM daemons ORDER BY daemon_id")]


_S = TypeVar("_S", bound=StoreBase)


def open_postgres(cls: type[_S], location: Path | str, daemon_id: str) -> _S:
    """Connect ``cls`` (a store, or the fleet registry with ``daemon_id`` ``''``) to the database at the URL
    ``location`` and create or migrate its schema; every failure is one paragraph naming the URL without
    its password (:class:`StoreUnavailable`, :class:`StoreError`)."""
    url = str(location)
    shown = redact_url(url)
    try:
        from cass_actions_core.store.adapters import connect_postgres

        db = connect_postgres(url)
    except ImportError:
        raise StoreError(f"{shown}: a PostgreSQL store needs the psycopg package, which is not installed; "
                         "install it with `pip install 'cass-actions[postgres]'`, or leave store.url unset "
                         "to use the SQLite file in the data directory.") from None
    except Exception as exc:  # psycopg.Error, whose class is only known once psycopg is imported
        if not type(exc).__module__.startswith("psycopg"):
            raise
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise StoreUnavailable(
            f"{shown}: cannot connect to the PostgreSQL store ({detail}). Check that the server is running "
            "and reachable, and the URL and credentials in store.url (or CASS_ACTIONS_STORE_URL)."
        ) from None
    store = cls(db, shown, daemon_id)
    try:
        migrate_postgres(store)
    except StoreError:
        store.close()
        raise
    except Exception as exc:
        store.close()
        if not type(exc).__module__.startswith("psycopg"):
            raise
        # A table of another program in the way, missing privileges, a server shutting down ...
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise StoreError(f"{shown}: cannot set up the cass-actions schema in this database ({detail}). Nothing "
                         "was changed (the migration was rolled back); use a database (or a schema, with "
                         "?options=-csearch_path%3Dname) of its own, owned by this URL's user.") from None
    except BaseException:
        store.close()
        raise
    return store


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    except ValueError:  # a port that is not a number, a bracket left open
        return "<a PostgreSQL URL that cannot be parsed>"
    return urlunsplit(parts._replace(netloc=netloc))
