"""The fleet registry: what a PostgreSQL database shared by many daemons knows beyond each daemon's own
rows (schema 7). Which daemons the workers run, with each one's checked configuration and workspace root
(``cass-actions daemons``); which workers are alive (a heartbeat each); the scheduling lease of every
daemon at a glance; and fleet-wide settings such as the rehearsal clock every worker shares.

The registry has no daemon of its own: it opens the database with the daemon id ``''``, so its write
transactions take one fleet-wide advisory lock, and its writes wake the workers with a ``NOTIFY`` whose
payload is ``''`` ("the registry changed": look again at who runs what).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cass_actions_core.store.connection import StoreBase
from cass_actions_core.store.errors import StoreError
from cass_actions_core.store.leases import RELEASED, _pid_alive
from cass_actions_core.store.rows import Lease, _lease
from cass_actions_core.store.values import _ts


@dataclass(frozen=True, slots=True)
class DaemonEntry:
    """One daemon of the database: its registered config and workspace (None for a daemon that only
    opened a store here, say with ``run`` and ``store.url``), its lease, and its queued and running units."""

    daemon_id: str
    config: dict[str, Any] | None
    workspace: str | None
    registered_at: str | None
    lease: Lease | None
    queued: int
    running: int

    @property
    def registered(self) -> bool:
        """Whether ``daemons add`` registered it, so that workers run it."""
        return self.config is not None


@dataclass(frozen=True, slots=True)
class WorkerEntry:
    """A worker process: its id, host, pid, and when it started and last beat."""

    id: str
    hostname: str
    pid: int
    started_at: datetime
    beat_at: datetime


class FleetRegistry(StoreBase):
    """The registry of a PostgreSQL database; open it with :meth:`open` and close it when done."""

    @classmethod
    def open(cls, url: str) -> FleetRegistry:
        """Connect to the database at ``url`` and bring its schema up to date (one-paragraph
        :class:`~cass_actions_core.store.StoreError` when it cannot be reached or set up)."""
        from cass_actions_core.store.postgres import open_postgres

        return open_postgres(cls, url, "")

    def __enter__(self) -> FleetRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- daemons

    def add_daemon(self, daemon_id: str, config: dict[str, Any], workspace: str, now: datetime) -> bool:
        """Register ``daemon_id`` (or replace its config and workspace); returns whether it is new."""
        if not daemon_id:
            raise ValueError("daemon_id must be a non-empty string")
        now_s = _ts(now, "now")
        from cass_actions_core import __version__

        with self.transaction(immediate=True):
            existed = self._one("SELECT config FROM daemons WHERE daemon_id = ?", (daemon_id,))
            self._x("INSERT INTO daemons (daemon_id, created_at, created_by, config, workspace, registered_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (daemon_id) DO UPDATE SET config = excluded.config,"
                    " workspace = excluded.workspace, registered_at = excluded.registered_at",
                    (daemon_id, now_s, f"cass-actions {__version__}", json.dumps(config, sort_keys=True), workspace,
                     now_s))
        return existed is None or existed[0] is None

    def remove_daemon(self, daemon_id: str) -> None:
        """Take ``daemon_id`` off the registry, so no worker runs it any more. Its history (units, ledger,
        events) stays in the database. Refused with :class:`StoreError` while a unit of it is running or a
        worker holds its lease, and for a daemon that is not registered."""
        with self.transaction(immediate=True):
            row = self._one("SELECT config FROM daemons WHERE daemon_id = ? FOR UPDATE", (daemon_id,))
            if row is None or row[0] is None:
                known = ", ".join(e.daemon_id for e in self.daemons() if e.registered) or "none"
                raise StoreError(f"{self.path}: no daemon {daemon_id!r} is registered (registered: {known}); "
                                 "nothing was removed.")
            running = self._one("SELECT count(*) FROM units WHERE daemon_id = ? AND status = 'running'", (daemon_id,))[0]
            if running:
                raise StoreError(f"{self.path}: daemon {daemon_id!r} has {running} unit(s) running; it was not "
                                 "removed. Pause it (`cass-actions pause --daemon ID`), wait for them to end, and try "
                                 "again.")
            self._x("UPDATE daemons SET config = NULL, workspace = NULL, registered_at = NULL WHERE daemon_id = ?",
                    (daemon_id,))

    def daemons(self) -> list[DaemonEntry]:
        """Every daemon of the database (registered or not), by id, with its lease and unit counts."""
        leases = self.leases()
        counts: dict[tuple[str, str], int] = {
            (row[0], row[1]): int(row[2]) for row in self._all(
                "SELECT daemon_id, status, count(*) FROM units WHERE status IN ('queued', 'running')"
                " GROUP BY daemon_id, status")}
        return [DaemonEntry(daemon_id=row["daemon_id"], config=json.loads(row["config"]) if row["config"] else None,
                            workspace=row["workspace"], registered_at=row["registered_at"],
                            lease=leases.get(row["daemon_id"]), queued=counts.get((row["daemon_id"], "queued"), 0),
                            running=counts.get((row["daemon_id"], "running"), 0))
                for row in self._all("SELECT daemon_id, config, workspace, registered_at FROM daemons"
                                     " ORDER BY daemon_id")]

    def leases(self) -> dict[str, Lease]:
        """Every daemon's scheduling lease (expired or not, but not released), by daemon id."""
        return {row["daemon_id"]: self._map(_lease, row) for row in self._all("SELECT * FROM lease WHERE holder <> ?",
                                                                                 (RELEASED,))}

    def lease_free(self, lease: Lease | None, now: datetime) -> bool:
        """Whether a worker may take a daemon with this lease: none, expired, or held by a dead process
        on this host (on other hosts only expiry frees a lease)."""
        return (lease is None or lease.expired(now)
                or (lease.hostname == self.hostname and not _pid_alive(lease.pid)))

    # ---------------------------------------------------------------- workers

    def beat(self, worker_id: str, pid: int, now: datetime) -> None:
        """Record that worker ``worker_id`` is alive at ``now`` (registering it on its first beat)."""
        now_s = _ts(now, "now")
        self._notify = False  # a heartbeat changes nobody's work: no wake-up
        try:
            with self.transaction(immediate=True):
                self._x("INSERT INTO workers (id, hostname, pid, started_at, beat_at) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at",
                        (worker_id, self.hostname, pid, now_s, now_s))
        finally:
            self._notify = True

    def drop_worker(self, worker_id: str) -> None:
        """Take a stopping worker off the list (its leases were released)."""
        with self.transaction(immediate=True):
            self._x("DELETE FROM workers WHERE id = ?", (worker_id,))

    def workers(self) -> list[WorkerEntry]:
        """Every worker that has beaten and not stopped cleanly, oldest first."""
        from cass_actions_core.store.values import _dt

        return [WorkerEntry(row["id"], row["hostname"], int(row["pid"]), _dt(row["started_at"]), _dt(row["beat_at"]))
                for row in self._all("SELECT * FROM workers ORDER BY started_at, id")]

    def live_workers(self, now: datetime, ttl: timedelta) -> list[WorkerEntry]:
        """The workers that beat within ``ttl`` of ``now`` and, on this host, whose process still exists."""
        return [w for w in self.workers() if w.beat_at + ttl > now
                and not (w.hostname == self.hostname and not _pid_alive(w.pid))]

    # ---------------------------------------------------------------- settings

    def setting(self, key: str) -> Any:
        """A fleet-wide setting (JSON), or None."""
        row = self._one("SELECT value FROM fleet_state WHERE key = ?", (key,))
        return None if row is None else json.loads(row[0])

    def setting_once(self, key: str, value: Any) -> Any:
        """Store ``value`` under ``key`` unless a value is already there; returns the value in force."""
        with self.transaction(immediate=True):
            self._x("INSERT INTO fleet_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                    (key, json.dumps(value)))
            return self.setting(key)

    def notify(self) -> None:
        """Wake every worker to look again at who runs what (after a lease was given up, say)."""
        with self.transaction(immediate=True):
            self._db.notify("")  # type: ignore[union-attr]
