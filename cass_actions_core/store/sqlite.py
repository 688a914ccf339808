"""The SQLite store: :class:`SQLiteStore`, and opening a file
(creating it atomically, refusing one it does not understand untouched, the pragmas, migrating)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from cass_actions_core.store.adapters import SQLiteDB
from cass_actions_core.store.base import Store
from cass_actions_core.store.errors import StoreError, _corrupt
from cass_actions_core.store.schema import _inspect, migrate
from cass_actions_core.store.values import _new_id

_SQLITE_HEADER = b"SQLite format 3\x00"
_BUSY_TIMEOUT_MS = 5000
_WAL_CHECKPOINT_PAGES = 10_000


class SQLiteStore(Store):
    """One daemon's store in a SQLite file; open it with :func:`~cass_actions_core.store.open_store`."""

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, location: Path | str, *, daemon_id: str) -> SQLiteStore:
        """Open (creating and migrating if needed) the store file at ``location`` for ``daemon_id``.

        Raises :class:`StoreError` without writing anything to an existing file when it
        is not a readable SQLite database, fails its integrity check, is not a
        cass-actions store, was written by a newer schema, or belongs to another daemon.
        """
        if not daemon_id or not isinstance(daemon_id, str):
            raise ValueError("daemon_id must be a non-empty string")
        path = Path(location).expanduser()
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
            conn.execute("PRAGMA synchronous = NORMAL")  # see "Durability contract" in the package docstring
            # Checkpoints (each syncs the WAL and the database file) every ~40 MB of WAL rather
            # than SQLite's default 4 MB: a busy day of small transactions syncs ten times less.
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
            conn.execute("PRAGMA foreign_keys = ON")
            store = cls(SQLiteDB(conn), path, daemon_id)
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
        aside = path.with_name(f".{path.name}.{os.getpid()}.{_new_id()[:8]}.new")
        try:
            conn = sqlite3.connect(aside, isolation_level=None)
            try:
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA foreign_keys = ON")
                cls(SQLiteDB(conn), aside, daemon_id)._migrate()
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
        migrate(self)

    @property
    def journal_mode(self) -> str:
        """SQLite's journal mode for this file (``wal`` unless the file system cannot do WAL)."""
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])


# --------------------------------------------------------------------------- open-time checks


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
