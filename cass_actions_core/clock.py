"""One injectable clock: timezone-aware time in the daemon's zone, real or virtual.

The earlier system mixed a UTC budget day, local phases and naive datetimes (fault F4).
Here every datetime that crosses an API is timezone-aware, and the local calendar has one
definition, shared by the budget ledger (:func:`budget_day`, :func:`local_midnight`) and
the day phases (:mod:`cass_actions_core.phases`):

    A local wall-clock time ``W`` on a date happens at the **first instant at which the
    local wall clock reads ``W`` or later** (:func:`resolve_wall_time`).

So a wall time that a spring-forward jump skips happens at the instant of the jump (the
first valid instant after it), and a wall time that a fall-back repeats happens at its
first occurrence only (``fold=0``); the second pass through the repeated hour never
starts anything again. Local midnight, the budget day and every phase boundary follow
this one rule, so they can never disagree.

A pitfall this module works around, and that callers must know: Python compares and
subtracts two aware datetimes that share the *same* ``tzinfo`` object by wall time,
ignoring the UTC offset and ``fold``. During a repeated hour, 01:30 (second pass) then
compares as earlier than 01:45 (first pass), although it is later. Compare instants in
UTC (:func:`to_utc`), as everything here does internally.

Clocks:

- :class:`SystemClock` reads the real time and sleeps in bounded chunks, re-reading the
  time after each one, so a wall-clock jump (NTP step, suspend/resume) is noticed within
  ``max_sleep`` seconds instead of oversleeping by the size of the jump.
- :class:`VirtualClock` is a fake clock for simulations and tests, modelled on Temporal's
  time-skipping test server: virtual time only moves when told to (:meth:`VirtualClock.advance`,
  :meth:`VirtualClock.set`) or when a driver runs it (:meth:`VirtualClock.run_until`), which
  jumps from one sleeper's wake-up straight to the next, so a simulated day runs in
  milliseconds. Nothing ever sleeps in real time.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time as wall
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from types import ModuleType
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    import asyncio


def _asyncio() -> ModuleType:
    """asyncio, imported on first use: the clock is imported by commands that never sleep (``list``)."""
    import asyncio

    return asyncio

__all__ = [
    "Clock",
    "SystemClock",
    "VirtualClock",
    "as_zone",
    "budget_day",
    "local_midnight",
    "resolve_wall_time",
    "to_utc",
]


def as_zone(tz: ZoneInfo | str) -> ZoneInfo:
    """Return ``tz`` as a :class:`ZoneInfo`; a string must be an IANA name such as ``"Europe/London"``.

    Raises :class:`ValueError` (not ``ZoneInfoNotFoundError``, a ``KeyError``) for an
    unknown name, so callers handle every bad input the same way.
    """
    if isinstance(tz, ZoneInfo):
        return tz
    if not isinstance(tz, str):
        raise ValueError(f"expected a ZoneInfo or an IANA time zone name, got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r} (use an IANA name such as 'Europe/London')") from None


def _require_aware(dt: datetime, what: str = "datetime") -> None:
    if not isinstance(dt, datetime):
        raise ValueError(f"{what} must be a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {dt.isoformat()}")


def to_utc(dt: datetime) -> datetime:
    """The same instant in UTC; raises :class:`ValueError` for a naive datetime.

    Use it before comparing or subtracting instants: see the module docstring for why
    comparing two datetimes in the same zone is wrong during a repeated hour.
    """
    _require_aware(dt)
    return dt.astimezone(UTC)


def _wall_at(epoch_seconds: int, tz: tzinfo) -> datetime:
    """The naive local wall time shown at a whole UTC second."""
    return datetime.fromtimestamp(epoch_seconds, tz).replace(tzinfo=None)


def resolve_wall_time(wall: datetime, tz: tzinfo | str) -> datetime:
    """The first instant (aware, UTC) at which the local wall clock in ``tz`` reads ``wall`` or later.

    ``wall`` is a naive local date and time. For a wall time that exists once this is
    simply that instant; for one repeated by a fall-back it is the first occurrence
    (``fold=0``); for one skipped by a spring-forward it is the instant of the jump.

    Assumes the zone's offset changes at most once around ``wall`` (consecutive
    transitions further apart than their size), which holds for every real transition
    the tz database lists in modern times.
    """
    if wall.tzinfo is not None:
        raise ValueError(f"wall time must be naive local time, got {wall.isoformat()}")
    zone = as_zone(tz) if isinstance(tz, str) else tz
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first <= second:
        # Equal: the wall time exists once. Less: it is repeated, and fold=0 is the
        # earlier of the two instants, the one the rule picks.
        return first
    # In a gap PEP 495 maps fold=0 with the offset before the jump (an instant after
    # it) and fold=1 with the offset after (an instant before it); the jump lies in
    # (second, first]. The wall clock is monotone there, so bisect on whole seconds:
    # tz database transitions fall on whole seconds.
    lo = math.floor(second.timestamp())  # wall clock still below `wall`
    hi = math.ceil(first.timestamp())  # wall clock already at or past `wall`
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall_at(mid, zone) >= wall:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def local_midnight(d: date, tz: ZoneInfo | str) -> datetime:
    """The instant local date ``d`` begins in ``tz``, aware and expressed in ``tz``.

    Where midnight itself is skipped (some zones change their clocks at 00:00), the day
    begins at the first valid instant after it, e.g. 01:00.
    """
    zone = as_zone(tz)
    return resolve_wall_time(datetime.combine(d, time()), zone).astimezone(zone)


def budget_day(dt: datetime, tz: ZoneInfo | str | None = None) -> date:
    """The local calendar date an aware instant belongs to, in ``tz`` (default: ``dt``'s own zone).

    This is the day the budget ledger books spending against and the same calendar the
    day phases use: it rolls over at :func:`local_midnight`, never at UTC midnight. It is
    the latest date whose local midnight has been reached, so it never goes backwards,
    even where a fall-back crosses midnight and the wall clock shows yesterday again.

    Note for the ledger: a night phase instance that starts at 22:00 belongs to the date
    it started on, but the spending after midnight inside it is booked to the next budget
    day, because budget days roll over at local midnight.
    """
    _require_aware(dt)
    zone = as_zone(tz) if tz is not None else cast(tzinfo, dt.tzinfo)  # aware: checked above
    local = dt.astimezone(zone)
    day = local.date()
    instant = dt.astimezone(UTC)
    # Only a fall-back across midnight can show an earlier date after the next day began.
    nxt = day + timedelta(days=1)
    if resolve_wall_time(datetime.combine(nxt, time()), zone) <= instant:
        return nxt
    return day


@runtime_checkable
class Clock(Protocol):
    """What the scheduler needs from time: aware "now" in the daemon's zone, and sleeping.

    Implementations: :class:`SystemClock` (real time) and :class:`VirtualClock` (simulated).
    """

    #: The daemon's time zone; ``now()`` is expressed in it and local dates are taken in it.
    tz: ZoneInfo

    def now(self) -> datetime:
        """The current instant, timezone-aware, expressed in :attr:`tz`."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return once the clock has reached the aware instant ``when`` (at once if it has)."""
        ...

    def today(self) -> date:
        """The current local date (the budget day, see :func:`budget_day`)."""
        ...


class SystemClock:
    """The real clock in a given zone.

    :meth:`sleep_until` sleeps at most ``max_sleep`` seconds at a time and re-reads the
    time after each chunk: asyncio's timers run on a monotonic clock, so one long sleep
    would ignore a wall-clock step and wake up late or early by its size.
    """

    def __init__(self, tz: ZoneInfo | str, *, max_sleep: float = 60.0) -> None:
        """Build a clock for zone ``tz`` that sleeps at most ``max_sleep`` seconds per chunk."""
        if not max_sleep > 0:
            raise ValueError(f"max_sleep must be positive, got {max_sleep!r}")
        self.tz: ZoneInfo = as_zone(tz)
        self.max_sleep = float(max_sleep)

    def _utc_now(self) -> datetime:
        # The single place real time is read, so a test can simulate a wall-clock jump.
        return datetime.now(UTC)

    def now(self) -> datetime:
        """The current real instant, aware, in :attr:`tz`."""
        return self._utc_now().astimezone(self.tz)

    def today(self) -> date:
        """The current local date."""
        return budget_day(self._utc_now(), self.tz)

    async def sleep_until(self, when: datetime) -> None:
        """Sleep until the real time reaches ``when``, in chunks of at most ``max_sleep`` seconds."""
        target = to_utc(when)
        # Always yield once, so a loop that sleeps until past instants cannot starve others.
        await _asyncio().sleep(0)
        while True:
            remaining = (target - self._utc_now()).total_seconds()
            if remaining <= 0:
                return
            await _asyncio().sleep(min(remaining, self.max_sleep))

    def __repr__(self) -> str:
        return f"SystemClock({self.tz.key!r})"


class AcceleratedClock(SystemClock):
    """Real time, sped up: ``speed`` virtual seconds pass per real second, from ``start`` at the real
    instant ``epoch`` (Unix seconds). For rehearsals (``run --speed``): a real daemon process,
    real sleeps and real kills, a week in minutes. ``epoch`` is fixed, so a restarted process
    continues the same timeline."""

    def __init__(self, tz: ZoneInfo | str, *, start: datetime, epoch: float, speed: float, max_sleep: float = 60.0) -> None:
        """See the class docstring; ``speed`` must be positive."""
        super().__init__(tz, max_sleep=max_sleep)
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        self.start, self.epoch, self.speed = to_utc(start), float(epoch), float(speed)

    @classmethod
    def from_setting(cls, tz: ZoneInfo | str, saved: dict[str, object]) -> AcceleratedClock:
        """The clock a rehearsal stored as ``{"start": ISO time, "epoch": Unix seconds, "speed": rate}`` (``run
        --speed`` in its store's state, a fleet's ``worker --speed`` in ``fleet_state``), in time zone ``tz``."""
        return cls(tz, start=datetime.fromisoformat(str(saved["start"])), epoch=float(cast(float, saved["epoch"])),
                   speed=float(cast(float, saved["speed"])))

    def _utc_now(self) -> datetime:
        return self.start + timedelta(seconds=(wall.time() - self.epoch) * self.speed)

    async def sleep_until(self, when: datetime) -> None:
        """Sleep until the accelerated time reaches ``when``."""
        target = to_utc(when)
        await _asyncio().sleep(0)
        while True:
            remaining = (target - self._utc_now()).total_seconds() / self.speed
            if remaining <= 0:
                return
            await _asyncio().sleep(min(remaining, self.max_sleep))

    def __repr__(self) -> str:
        return f"AcceleratedClock({self.tz.key!r}, speed={self.speed:g})"


class VirtualClock:
    """A simulated clock: time stands still until the owner moves it; nothing sleeps for real.

    Semantics, exactly:

    - :meth:`now` returns the virtual time (aware, in :attr:`tz`).
    - ``await sleep_until(when)``: if virtual time has reached ``when`` it yields to the
      event loop once and returns; otherwise the caller is registered as a *sleeper* and
      suspended until virtual time reaches ``when``.
    - :meth:`advance` / :meth:`set` move time forward (backwards raises
      :class:`ValueError`) and wake every sleeper now due, earliest deadline first, ties
      in the order they went to sleep. They are plain functions: the woken tasks run
      when the caller next yields, and all of them see the new time.
    - ``await run_until(when)`` is the simulation driver: it repeatedly lets every other
      task run until it is blocked, then jumps virtual time to the earliest sleeper's
      deadline (if not after ``when``) and wakes the sleepers due then, so each sleeper
      sees ``now() == its deadline`` and sleepers registered along the way are served
      too. Finally it sets the time to ``when`` and lets the woken tasks run. A whole
      simulated day costs one loop pass per wake-up, not a day.

    "Blocked" means the event loop has no other callback ready: tasks waiting on this
    clock, on a lock or queue nobody will release, or on real I/O all count as blocked;
    real-time timers (``asyncio.sleep(5)``) are not waited for. The check reads the
    ready queue of CPython's asyncio loops; on a loop without one it yields a fixed
    number of times instead. Use one clock within one event loop.
    """

    #: Loop passes :meth:`run_until` allows other tasks before moving time on anyway
    #: (a task that spins on ``asyncio.sleep(0)`` would otherwise never let it proceed).
    settle_limit: int = 10_000
    #: Loop passes used to settle when the loop does not expose its ready queue.
    fallback_settle_rounds: int = 64

    def __init__(self, tz: ZoneInfo | str, start: datetime) -> None:
        """A virtual clock in zone ``tz`` starting at the aware instant ``start``."""
        self.tz: ZoneInfo = as_zone(tz)
        self._now = to_utc(start)
        # Heap of (deadline in UTC, sequence number for stable ties, future to resolve).
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        """The current virtual instant, aware, in :attr:`tz`."""
        return self._now.astimezone(self.tz)

    def today(self) -> date:
        """The current virtual local date."""
        return budget_day(self._now, self.tz)

    async def sleep_until(self, when: datetime) -> None:
        """Suspend the caller until virtual time reaches ``when`` (see the class docstring)."""
        target = to_utc(when)
        if target <= self._now:
            await _asyncio().sleep(0)
            return
        future: asyncio.Future[None] = _asyncio().get_running_loop().create_future()
        heapq.heappush(self._sleepers, (target, next(self._seq), future))
        # If the sleeping task is cancelled the future is cancelled with it; the heap
        # entry is dropped lazily (done futures are skipped).
        await future

    def advance(self, delta: timedelta) -> None:
        """Move virtual time forward by ``delta`` of elapsed time and wake the due sleepers."""
        if delta < timedelta(0):
            raise ValueError(f"a virtual clock never goes backwards (advance by {delta})")
        self.set(self._now + delta)

    def set(self, when: datetime) -> None:
        """Move virtual time forward to the aware instant ``when`` and wake the due sleepers.

        Raises :class:`ValueError` if ``when`` is earlier than the current virtual time.
        """
        target = to_utc(when)
        if target < self._now:
            raise ValueError(
                f"a virtual clock never goes backwards: now {self.now().isoformat()}, asked for {when.isoformat()}"
            )
        self._now = target
        self._wake_due()

    @property
    def pending_sleepers(self) -> int:
        """How many tasks are waiting on this clock."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    @property
    def next_wakeup(self) -> datetime | None:
        """The earliest deadline of a waiting sleeper (aware, in :attr:`tz`), or None."""
        self._drop_done()
        return self._sleepers[0][0].astimezone(self.tz) if self._sleepers else None

    async def run_until(self, when: datetime) -> None:
        """Drive the simulation up to ``when``, waking every sleeper at its own deadline, in order."""
        target = to_utc(when)
        if target < self._now:
            raise ValueError(
                f"a virtual clock never goes backwards: now {self.now().isoformat()}, asked for {when.isoformat()}"
            )
        await self._settle()
        while True:
            self._drop_done()
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            self._now = self._sleepers[0][0]
            self._wake_due()
            await self._settle()
        self.set(target)
        await self._settle()

    async def run_for(self, delta: timedelta) -> None:
        """Drive the simulation for ``delta`` of virtual time (see :meth:`run_until`)."""
        if delta < timedelta(0):
            raise ValueError(f"a virtual clock never goes backwards (run for {delta})")
        await self.run_until(self._now + delta)

    def _drop_done(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    async def _settle(self) -> None:
        """Yield to the event loop until no other callback is ready to run."""
        loop = _asyncio().get_running_loop()
        # CPython's loops keep runnable callbacks in `_ready`; while this coroutine runs,
        # an empty queue means every other task is blocked. There is no public API for it.
        ready = getattr(loop, "_ready", None)
        if ready is None:
            for _ in range(self.fallback_settle_rounds):
                await _asyncio().sleep(0)
            return
        for _ in range(self.settle_limit):
            await _asyncio().sleep(0)
            if not ready:
                return

    def __repr__(self) -> str:
        return f"VirtualClock({self.tz.key!r}, now={self.now().isoformat()})"
