"""A fleet worker (``cass-actions worker``): one process running the daemons of a shared PostgreSQL database
whose scheduling leases it holds, each as a :class:`~cass_actions_core.runtime.Runtime` in one asyncio loop.

Ownership is **per daemon**: a worker runs a daemon's whole scheduler (planning, queueing, approvals,
budget retries, expiry, crash recovery and its units) while it holds that daemon's lease; several workers
share a fleet by sharing out its daemons, not the units of one daemon. What keeps this safe:

* **Leases with fencing.** Taking a lease bumps its fencing token; every write of a runtime checks, under
  the daemon's write lock, that its worker still holds the lease with that token, so a worker that lost a
  daemon (stopped past its lease, then taken over) writes nothing more for it.
* **Claims.** A unit moves from ``queued`` to ``running`` in a write transaction that first takes its row
  with ``SELECT … FOR UPDATE SKIP LOCKED`` (:meth:`~cass_actions_core.store.Store.claim_unit`), so two
  workers never start one unit, not even while a lease changes hands.
* **Money.** Every reservation is checked and written in one transaction under the daemon's write lock:
  no two workers (or a worker and a CLI ``run-action``) can overspend a category.

Balance: every ``lease_ttl / 3`` seconds (and at once when woken) a worker beats in the ``workers`` table
and aims at ``ceil(daemons / live workers)`` daemons: it takes free leases (none, expired, or held by a dead
process on this host) while below that, and gives up one idle daemon (no unit running) per round while
above it, so a worker that joins gets its share. A worker that dies stops beating; its daemons' leases
expire (at once on the same host, where its pid is checked) and the others take them, each runtime's
:meth:`~cass_actions_core.runtime.Runtime.recover` applying the restart rules to the units left running.

Supervision: the ``worker`` command runs a :class:`Worker` in a child process that it supervises like ``run``'s
(:mod:`cass_actions_core.supervisor`), under the supervisor's id and pid, so a child replaced after a stalled
event loop finds its leases its own and takes those daemons back at once.

Wake-ups: writes from outside a scheduler (a CLI control, the HTTP API, the registry) ``NOTIFY`` the
channel ``cass_actions`` with the daemon's id at commit; the worker LISTENs on a connection of its own and
wakes that daemon's loop (``''``: the registry changed, balance again). Each runtime still polls every
``scheduler.tick_seconds``, so a lost notification only delays.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cass_actions_core.clock import Clock
from cass_actions_core.config import Config, StoreSettings

if TYPE_CHECKING:
    from cass_actions_core.runtime import Runtime
    from cass_actions_core.store.fleet import DaemonEntry, FleetRegistry
    from cass_actions_core.store.rows import Lease
    from cass_actions_core.supervisor import Stall

log = logging.getLogger("cass_actions.fleet")

#: The fleet setting holding a rehearsal's shared clock: ``{"start", "epoch", "speed"}``.
FLEET_CLOCK_KEY = "rehearsal_clock"


def daemon_config(entry: DaemonEntry, url: str) -> Config:
    """The configuration a worker runs ``entry`` with: its registered document, its id and workspace root,
    and the fleet's database as its store."""
    assert entry.config is not None, "only registered daemons are run"
    config = Config.from_dict(entry.config)
    return replace(config, daemon_id=entry.daemon_id, workspace=entry.workspace, store=StoreSettings(url=url))


def new_worker_id() -> str:
    """A worker's lease holder name: ``worker:<host>:<pid>:<random>`` (unique per process that makes it)."""
    return f"worker:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def fleet_stall_limit(url: str, own: float, only: Sequence[str] | None) -> float:
    """The stall limit of a worker process: the smallest ``scheduler.stall_limit_seconds`` of its own config
    (``own``) and of the registered daemons it may run (``only``; None: all), since they share its event loop."""
    from cass_actions_core.store import StoreError
    from cass_actions_core.store.fleet import FleetRegistry

    limits = [own]
    try:
        with FleetRegistry.open(url) as registry:
            for entry in registry.daemons():
                if entry.config is not None and (only is None or entry.daemon_id in only):
                    limits.append(float(entry.config.get("scheduler", {}).get("stall_limit_seconds", own)))
    except StoreError as exc:  # the database is away for a moment: the worker's own limit still holds
        log.warning("could not read the daemons' stall limits (%s); using %g s", exc, own)
    return min(limits)


def record_worker_stall(url: str, stall: Stall) -> list[str]:
    """Record a stall of a worker process for each daemon whose lease its holder holds and that has a unit
    running (the supervisor does, just before it kills the process); returns those daemons."""
    from cass_actions_core.store.fleet import FleetRegistry
    from cass_actions_core.supervisor import record_stall

    with FleetRegistry.open(url) as registry:
        hit = [e.daemon_id for e in registry.daemons()
               if e.lease is not None and e.lease.holder == stall.holder and e.running]
    record_stall(url, hit, stall)
    return hit


#: How long a new worker waits, after its first heartbeat, before it takes daemons: long enough for
#: workers started together to see each other and share the daemons out, short enough that a first
#: `worker` gets going at once (a whole round is a third of the lease time: 30 s by default).
STARTUP_WAIT_SECONDS = 2.0

class Worker:
    """One worker process's daemons: balancing their leases, running each one's :class:`Runtime`.

    Args:
        url: the fleet's PostgreSQL URL.
        data_dir: a local folder for the runtimes' scratch data (``<data_dir>/daemons/<id>``).
        only: run only these daemons (``--daemons``); None: every registered daemon (``--all``).
        ttl: how long a worker's heartbeat counts (its config's ``scheduler.lease_ttl_seconds``).
        clock_for: the clock of a daemon in a time zone (a shared rehearsal clock, or None: the system's).
        provider: force an LLM provider for every action (``--provider``).
        worker_id: the holder name of its leases (default: a new one, :func:`new_worker_id`).
        pid: the process its leases and heartbeat name (default this one; the supervisor's under one).
        runtime_kwargs: more arguments for each :class:`Runtime` (tests: plugins, entry_points).
    """

    def __init__(self, url: str, *, data_dir: Path, only: Sequence[str] | None = None, ttl: float = 90.0,
                 clock_for: Callable[[str], Clock | None] = lambda tz: None, provider: str | None = None,
                 worker_id: str | None = None, pid: int | None = None, **runtime_kwargs: Any) -> None:
        self.url = url
        self.data_dir = Path(data_dir)
        self.only = set(only) if only is not None else None
        self.ttl = timedelta(seconds=ttl)
        self.clock_for = clock_for
        self.provider = provider
        self.runtime_kwargs = runtime_kwargs
        #: This worker's id: host, pid and a random part (the holder name of every lease it takes). Under a
        #: supervisor, the supervisor's, shared by each worker process it starts, so a replacement takes over
        #: the leases of the process it replaces at once.
        self.id = worker_id or new_worker_id()
        #: The process named in its heartbeat and leases (the supervisor's under one), checked by the others.
        self.pid = pid or os.getpid()
        #: The daemons this worker runs now, by id.
        self.runtimes: dict[str, Runtime] = {}
        #: Daemons that could not be started, with the reason (shown once, retried each round).
        self.failed: dict[str, str] = {}
        self._registry: FleetRegistry | None = None
        self._wake = asyncio.Event()
        self._listener: Any = None
        self._listen_fd = -1

    # ---------------------------------------------------------------- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Balance and run daemons until ``stop`` is set; then stop every runtime (each current step gets
        its grace) and release their leases."""
        from cass_actions_core.store import StoreError
        from cass_actions_core.store.fleet import FleetRegistry

        self._registry = FleetRegistry.open(self.url)
        self._listen()
        try:
            # Beat, then wait one round before taking anything: workers started together see each other
            # and share the daemons out from the first round, instead of the first one taking them all.
            self._registry.beat(self.id, self.pid, datetime.now(UTC))
            if not self._held():  # a replacement (it holds leases of its predecessor) is already known: go on
                await self._pause(stop, STARTUP_WAIT_SECONDS)
            while not stop.is_set():
                try:
                    await self.balance()
                except StoreError as exc:
                    # The database went away for a moment (a restart, a failover, a dropped connection): the
                    # worker stays; the next round's first write reconnects, runtimes that lost their store
                    # stop and are started again once it answers.
                    log.warning("a balancing round failed (%s); trying again in the next one", exc)
                if self._listener is None:
                    self._listen()
                await self._pause(stop)
        finally:
            await asyncio.gather(*(self._stop(daemon_id) for daemon_id in list(self.runtimes)))
            self._unlisten()
            try:
                self._registry.drop_worker(self.id)
                self._registry.notify()  # the others take over the daemons released here at once
            except StoreError as exc:  # its heartbeat expires instead
                log.warning("could not sign off from the fleet database: %s", exc)
            finally:
                self._registry.close()

    async def _pause(self, stop: asyncio.Event, at_most: float | None = None) -> None:
        """Wait a balancing round (a third of the heartbeat's lifetime, or ``at_most`` seconds if less), or
        less if woken or stopped."""
        self._wake.clear()
        waiters = {asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())}
        seconds = max(0.2, self.ttl.total_seconds() / 3)
        _done, pending = await asyncio.wait(waiters, timeout=min(seconds, at_most) if at_most is not None else seconds,
                                            return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    def _listen(self) -> None:
        """LISTEN on a connection of its own; notifications wake a daemon's loop or the balancer."""
        import psycopg

        from cass_actions_core.store.adapters import NOTIFY_CHANNEL

        try:
            conn = psycopg.connect(self.url, autocommit=True)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error as exc:
            log.warning("cannot LISTEN for wake-ups (%s); polling every tick instead", exc)
            return
        self._listener, self._listen_fd = conn, conn.fileno()  # the fd, for a connection lost later has none
        asyncio.get_running_loop().add_reader(self._listen_fd, self._notified)

    def _notified(self) -> None:
        conn = self._listener
        try:
            conn.pgconn.consume_input()
            while (note := conn.pgconn.notifies()) is not None:
                daemon_id = note.extra.decode()
                runtime = self.runtimes.get(daemon_id)
                if runtime is not None:
                    runtime.poke()
                elif not daemon_id:
                    self._wake.set()
        except Exception as exc:  # the connection broke: polling goes on
            log.warning("the LISTEN connection failed (%s); polling every tick instead", exc)
            self._unlisten()

    def _unlisten(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            try:
                asyncio.get_running_loop().remove_reader(self._listen_fd)
            except (ValueError, OSError):
                pass
            listener.close()

    # ---------------------------------------------------------------- balance

    async def balance(self) -> None:
        """One round: beat, drop what ended or left the registry, then take or give up daemons towards
        ``ceil(daemons / live workers)``."""
        registry = self._registry
        assert registry is not None
        now = datetime.now(UTC)
        registry.beat(self.id, self.pid, now)
        entries = {e.daemon_id: e for e in registry.daemons()
                   if e.registered and (self.only is None or e.daemon_id in self.only)}
        for daemon_id, runtime in list(self.runtimes.items()):
            if runtime._task is None or runtime._task.done() or daemon_id not in entries:
                why = runtime.lease_lost or ("it left the registry" if daemon_id not in entries else "its loop ended")
                log.warning("daemon %r stops here: %s", daemon_id, why)
                await self._stop(daemon_id)
        live = max(1, len(registry.live_workers(now, self.ttl)))
        target = math.ceil(len(entries) / live)
        if len(self.runtimes) > target:
            idle = sorted((d for d, r in self.runtimes.items() if r.busy == 0), key=self._rank)
            shed = idle[:len(self.runtimes) - target]
            if shed:
                log.info("giving %s up to balance the fleet (%d workers)", ", ".join(map(repr, shed)), live)
                await asyncio.gather(*(self._stop(d) for d in shed))
                registry.notify()
            return
        # Daemons whose lease this worker's id already holds were run by the process this one replaced
        # (killed by its supervisor): they come first, so their interrupted units are recovered at once.
        free = [e for d, e in entries.items() if d not in self.runtimes
                and (self._ours(e.lease) or registry.lease_free(e.lease, now))]
        for entry in sorted(free, key=lambda e: (not self._ours(e.lease), self._rank(e.daemon_id))
                            )[:max(0, target - len(self.runtimes))]:
            await self._start(entry)
            await asyncio.sleep(0)  # building a runtime blocks the loop a moment: let the heartbeat out between

    def _ours(self, lease: Lease | None) -> bool:
        return lease is not None and lease.holder == self.id

    def _held(self) -> list[str]:
        """The daemons whose leases this worker's id holds (a predecessor's, before any runtime starts)."""
        assert self._registry is not None
        return [d for d, lease in self._registry.leases().items() if self._ours(lease)]

    def _rank(self, daemon_id: str) -> str:
        """An order of daemons of this worker's own, so that workers starting together reach for different ones."""
        return hashlib.blake2s(f"{self.id}/{daemon_id}".encode(), digest_size=8).hexdigest()

    async def _start(self, entry: DaemonEntry) -> None:
        from cass_actions_core.runtime import Runtime
        from cass_actions_core.store import LeaseHeldError

        try:
            config = daemon_config(entry, self.url)
            runtime = Runtime(config, data_dir=self.data_dir / "daemons" / entry.daemon_id,
                              clock=self.clock_for(config.timezone), provider=self.provider, lease_holder=self.id,
                              lease_pid=self.pid,
                              **self.runtime_kwargs)
        except Exception as exc:  # a bad registered config, a pack gone missing: this daemon waits, the others run
            why = f"{type(exc).__name__}: {exc}" if not str(exc).startswith(entry.daemon_id) else str(exc)
            if self.failed.get(entry.daemon_id) != why:
                log.error("daemon %r cannot run here: %s", entry.daemon_id, why)
            self.failed[entry.daemon_id] = why
            return
        try:
            await runtime.start()
        except LeaseHeldError:  # another worker was quicker
            runtime.close()
            return
        except BaseException:
            runtime.close()
            raise
        self.failed.pop(entry.daemon_id, None)
        self.runtimes[entry.daemon_id] = runtime
        log.info("daemon %r runs here (lease token %s)", entry.daemon_id,
                 runtime.store.get_lease().token if runtime.store.get_lease() else "?")

    async def _stop(self, daemon_id: str) -> None:
        runtime = self.runtimes.pop(daemon_id)
        try:
            await runtime.stop()
        except Exception as exc:
            log.error("daemon %r did not stop cleanly: %s", daemon_id, exc)
        finally:
            runtime.close()
