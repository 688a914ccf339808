"""The scheduler lease: which process runs a daemon's scheduler, taken over at once from a dead process on
this host, and fencing every later write of its holder (see :class:`~cass_actions_core.store.connection.StoreBase`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cass_actions_core.store.connection import StoreBase
from cass_actions_core.store.errors import LeaseHeldError, LeaseLostError
from cass_actions_core.store.rows import Lease, _lease
from cass_actions_core.store.values import _ts


#: The holder of a released lease row (a holder name is never empty): nobody.
RELEASED = ""


class LeaseMixin(StoreBase):
    """Taking, renewing and releasing the daemon's scheduler lease."""

    def get_lease(self) -> Lease | None:
        """The current lease of this daemon (expired or not), or None when nobody took it or it was released."""
        lease = self._lease_row()
        return None if lease is None or lease.holder == RELEASED else lease

    def _lease_row(self) -> Lease | None:
        """The lease row as stored, a released one (holder :data:`RELEASED`) included: it keeps the token."""
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
        now_s, expires_s = _lease_times(now, ttl)
        with self._lease_transaction():
            current = self._lease_row()  # a released row has expired and gives its token to the next holder
            if current is not None and current.holder == holder:
                acquired_s, token = current.acquired_at.isoformat(), current.token
            elif current is None or current.holder == RELEASED or current.expired(now) or self._holder_dead(current):
                acquired_s, token = now_s, (current.token + 1 if current is not None else 1)
            else:
                raise LeaseHeldError(
                    f"{self.path}: daemon {self.daemon_id!r} is already being run by {current.holder!r} "
                    f"(pid {current.pid} on host {current.hostname}), whose lease expires at "
                    f"{current.expires_at.isoformat()}. Stop that process first, or wait for the lease "
                    "to expire if it is no longer running."
                )
            self._x(
                "INSERT INTO lease (daemon_id, holder, token, pid, hostname, acquired_at, renewed_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (daemon_id) DO UPDATE SET holder = excluded.holder,"
                " token = excluded.token,"
                " pid = excluded.pid, hostname = excluded.hostname, acquired_at = excluded.acquired_at,"
                " renewed_at = excluded.renewed_at, expires_at = excluded.expires_at",
                (self.daemon_id, holder, token, pid or os.getpid(), self.hostname, acquired_s, now_s, expires_s),
            )
            lease = self.get_lease()
        assert lease is not None
        # From now on every write of this store checks it still holds the lease, with this token.
        self._fence, self._fence_token, self._lost = holder, lease.token, None
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
        now_s, expires_s = _lease_times(now, ttl)
        with self._lease_transaction():
            current = self.get_lease()
            if current is None or current.holder != holder or (self._fence == holder and current.token != self._fence_token):
                who = "nobody" if current is None else f"{current.holder!r} (pid {current.pid} on host {current.hostname})"
                lost = (f"{self.path}: {holder!r} no longer holds the lease of daemon {self.daemon_id!r}; "
                        f"it is now held by {who}. This process must stop running the scheduler.")
                if self._fence == holder:  # it wrote under this lease: from now on it writes nothing
                    self._fence, self._lost = None, lost
                raise LeaseLostError(lost)
            # An expired lease nobody took over is still ours to renew.
            self._x(
                "UPDATE lease SET renewed_at = ?, expires_at = ?, pid = ?, hostname = ? WHERE daemon_id = ?",
                (now_s, expires_s, pid or os.getpid(), self.hostname, self.daemon_id),
            )
            lease = self.get_lease()
        assert lease is not None
        return lease

    def release_lease(self, holder: str) -> bool:
        """Give the lease up if ``holder`` holds it; returns whether a lease was released.

        The row stays, expired and with no holder, so its fencing token only ever grows: the next holder
        (even one of the same name) gets a larger one, and a write fenced by an older token stays refused.
        """
        now = datetime.now(UTC)
        with self._lease_transaction():
            cursor = self._x(
                "UPDATE lease SET holder = ?, expires_at = ?, renewed_at = ? WHERE daemon_id = ? AND holder = ?",
                (RELEASED, _ts(now, "now"), _ts(now, "now"), self.daemon_id, holder),
            )
        if self._fence == holder:
            self._fence = None
        return cursor.rowcount > 0


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


def _lease_times(now: datetime, ttl: timedelta) -> tuple[str, str]:
    """``now`` and the lease's expiry ``now + ttl`` as stored; ``ValueError`` for a ttl that is not positive."""
    if ttl <= timedelta(0):
        raise ValueError(f"lease ttl must be positive, got {ttl}")
    return _ts(now, "now"), _ts(now + ttl, "expires_at")
