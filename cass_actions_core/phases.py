"""Day phases: morning, afternoon, evening and night on the daemon's local calendar.

Each phase starts at a configured local hour (defaults: morning 06, afternoon 12,
evening 18, night 22) and runs until the next phase starts. A *phase instance* is one
occurrence of a phase: the night that starts at 22:00 on 26 November and runs to 06:00
on 27 November is the instance ``2026-11-26/night``; its ``day`` is the local date it
started on, and its ``key`` is the idempotency key the scheduler builds on.

Daylight-saving rule
--------------------

Phase boundaries are local wall-clock hours, and a boundary happens at **the first
instant at which the local wall clock reads the boundary time or later** (the same rule
as local midnight and the budget day: :func:`cass_actions_core.clock.resolve_wall_time`).

(a) Skipped hour (spring forward). A boundary whose wall time does not exist happens at
    the first valid instant after it: the instant of the jump. In America/New_York on
    2026-03-08 clocks go from 02:00 to 03:00, so a phase starting at 02:00 starts at
    03:00 EDT (07:00 UTC); in Australia/Lord_Howe (a 30-minute shift, 02:00 -> 02:30) a
    02:00 boundary happens at 02:30.
(b) Repeated hour (fall back). A boundary in the repeated hour happens at the first
    occurrence of its wall time (``fold=0``). A phase that has begun is never re-entered
    when the wall clock goes back: during the second pass through the hour the current
    phase is the one that was current at the end of the first pass. In Europe/London on
    2026-10-25 (02:00 BST -> 01:00 GMT), a phase starting at 01:00 starts at 01:00 BST
    (00:00 UTC) and continues through the repeated 01:00-02:00 GMT.

Equivalently: the phase at an instant is the one whose boundary wall time was most
recently reached by the running maximum of the local wall clock. Consequences, all
tested against a minute-by-minute oracle:

- every phase has exactly one instance per local date (:meth:`DayPhases.instances_for_day`
  always returns four);
- instances tile time: each one ends exactly where the next begins, with no gap and no
  overlap, so every instant belongs to exactly one instance (:meth:`DayPhases.instance_at`);
- each instance has ``start < end``, with one exception that no rule could avoid: a phase
  whose whole wall-clock span is skipped (a one-hour phase 02:00-03:00 on a
  spring-forward day, or any phase on a date a zone skipped entirely, such as
  Pacific/Apia on 2011-12-30) gets an *empty* instance, ``start == end`` at the instant
  of the jump. It is kept rather than dropped so that work queued for it is not
  orphaned: :class:`DayPhaseTracker` reports it like any other instance and the caller's
  catch-up policy decides. :meth:`DayPhases.instance_at` never returns an empty instance
  (it contains no instant). With phases of three hours or more this cannot happen in any
  zone in current use (the largest shift today is Antarctica/Troll's two hours).

Comparing instants: ``PhaseInstance.start``/``end`` are expressed in the daemon's zone
for readability. Python compares two datetimes in the same zone by wall time, ignoring
``fold``, which is wrong inside a repeated hour; use :meth:`PhaseInstance.contains` or
compare :func:`~cass_actions_core.clock.to_utc` values.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cass_actions_core.clock import Clock, as_zone, resolve_wall_time, to_utc

if TYPE_CHECKING:
    from cass_actions_core.config import Config, PhaseSettings

__all__ = ["PHASE_ORDER", "DayPhaseTracker", "DayPhases", "Phase", "PhaseInstance"]


class Phase(StrEnum):
    """One of the four day phases; the value is the lowercase name used in keys and config."""

    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"
    NIGHT = "night"

    def next(self) -> Phase:
        """The phase that follows this one in the cycle morning -> afternoon -> evening -> night -> morning."""
        return PHASE_ORDER[(PHASE_ORDER.index(self) + 1) % len(PHASE_ORDER)]

    def previous(self) -> Phase:
        """The phase that precedes this one in the cycle."""
        return PHASE_ORDER[(PHASE_ORDER.index(self) - 1) % len(PHASE_ORDER)]


#: The fixed cyclic order of the phases.
PHASE_ORDER: tuple[Phase, ...] = (Phase.MORNING, Phase.AFTERNOON, Phase.EVENING, Phase.NIGHT)

#: Default local start hours (the same as :class:`cass_actions_core.config.PhaseSettings`).
DEFAULT_HOURS: Mapping[Phase, int] = {Phase.MORNING: 6, Phase.AFTERNOON: 12, Phase.EVENING: 18, Phase.NIGHT: 22}


@dataclass(frozen=True)
class PhaseInstance:
    """One occurrence of a phase: ``[start, end)`` between two aware instants.

    ``day`` is the local date whose wall-clock boundary the instance starts at (the night
    from 22:00 on 26 Nov to 06:00 on 27 Nov has ``day`` 26 Nov). ``start`` and ``end``
    are aware and expressed in the daemon's zone; ``start == end`` only for a phase the
    clocks skipped entirely (see the module docstring).
    """

    phase: Phase
    day: date
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        """Reject naive datetimes and an end before the start."""
        if to_utc(self.end) < to_utc(self.start):
            raise ValueError(f"phase instance {self.key} ends before it starts")

    @property
    def key(self) -> str:
        """Stable identifier such as ``"2026-11-26/night"``, for idempotency keys and persistence."""
        return f"{self.day.isoformat()}/{self.phase.value}"

    @property
    def empty(self) -> bool:
        """True for the instance of a phase whose whole span was skipped by a clock change."""
        return to_utc(self.start) == to_utc(self.end)

    @property
    def duration(self) -> timedelta:
        """Elapsed time from start to end (real elapsed time, so 5 h or 7 h across a DST change)."""
        return to_utc(self.end) - to_utc(self.start)

    def contains(self, dt: datetime) -> bool:
        """Whether the aware instant ``dt`` lies in ``[start, end)``, compared in UTC."""
        instant = to_utc(dt)
        return to_utc(self.start) <= instant < to_utc(self.end)

    @staticmethod
    def parse_key(key: str) -> tuple[date, Phase]:
        """Split a key such as ``"2026-11-26/night"`` into its date and phase; ValueError if malformed."""
        try:
            day_text, phase_text = key.split("/")
            return date.fromisoformat(day_text), Phase(phase_text)
        except ValueError:
            raise ValueError(f"not a phase instance key: {key!r} (expected e.g. '2026-11-26/night')") from None


def _hours_from(settings: PhaseSettings | Mapping[str, int] | None) -> dict[Phase, int]:
    if settings is None:
        return dict(DEFAULT_HOURS)
    hours: dict[Phase, int] = {}
    for phase in PHASE_ORDER:
        if isinstance(settings, Mapping):
            if phase.value not in settings:
                raise ValueError(f"phase settings lack a start hour for {phase.value!r}")
            value: Any = settings[phase.value]
        else:
            value = getattr(settings, phase.value)
        hours[phase] = value
    return hours


def _validate_hours(hours: Mapping[Phase, int]) -> None:
    for phase, hour in hours.items():
        # bool is an int subclass; True as an hour is a mistake, not 1 o'clock.
        if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
            raise ValueError(f"phase {phase.value!r}: start hour must be an integer 0-23, got {hour!r}")
    starts = [hours[p] for p in PHASE_ORDER]
    # Same check as the config loader: going round the clock from morning, each phase
    # must start strictly after the previous one, and the four spans must add up to one day.
    spans = [(starts[(i + 1) % 4] - starts[i]) % 24 for i in range(4)]
    if 0 in spans or sum(spans) != 24:
        raise ValueError(
            f"phase start hours must run morning < afternoon < evening < night around the clock (got {starts})"
        )


# A slot is one phase on one local date: the unit the boundary rule is applied to.
_Slot = tuple[date, Phase]


class DayPhases:
    """The phase calendar for one zone and one set of start hours.

    All methods take and return aware datetimes (naive input raises :class:`ValueError`)
    and follow the daylight-saving rule of the module docstring.
    """

    def __init__(self, settings: PhaseSettings | Mapping[str, int] | None, tz: ZoneInfo | str) -> None:
        """Build from :class:`~cass_actions_core.config.PhaseSettings` (or a mapping of phase
        name to start hour; None for the defaults) and the daemon's zone.

        Raises :class:`ValueError` unless the hours are integers 0-23 that run
        morning < afternoon < evening < night around the clock.
        """
        hours = _hours_from(settings)
        _validate_hours(hours)
        self.tz: ZoneInfo = as_zone(tz)
        #: Local start hour of each phase.
        self.hours: Mapping[Phase, int] = dict(hours)
        #: The phases in the order they start within one local date (night first when it
        #: starts after midnight, e.g. at 01:00).
        self.order: tuple[Phase, ...] = tuple(sorted(PHASE_ORDER, key=lambda p: hours[p]))
        self._index = {phase: i for i, phase in enumerate(self.order)}
        # Boundaries are pure functions of the slot; caching them makes a minute-by-minute
        # walk cheap. Bounded, since a long-running daemon keeps asking about new dates.
        self._start_utc = functools.lru_cache(maxsize=4096)(self._compute_start_utc)
        self._instance = functools.lru_cache(maxsize=4096)(self._compute_instance)

    @classmethod
    def from_hours(
        cls, tz: ZoneInfo | str, *, morning: int = 6, afternoon: int = 12, evening: int = 18, night: int = 22
    ) -> DayPhases:
        """Build from the four start hours directly."""
        return cls({"morning": morning, "afternoon": afternoon, "evening": evening, "night": night}, tz)

    @classmethod
    def from_config(cls, config: Config) -> DayPhases:
        """Build from a loaded :class:`~cass_actions_core.config.Config` (its phases and timezone)."""
        return cls(config.phases, config.timezone)

    # -- slots -------------------------------------------------------------------------

    def _succ(self, slot: _Slot) -> _Slot:
        day, phase = slot
        i = self._index[phase] + 1
        if i == len(self.order):
            return day + timedelta(days=1), self.order[0]
        return day, self.order[i]

    def _pred(self, slot: _Slot) -> _Slot:
        day, phase = slot
        i = self._index[phase] - 1
        if i < 0:
            return day - timedelta(days=1), self.order[-1]
        return day, self.order[i]

    def _compute_start_utc(self, slot: _Slot) -> datetime:
        day, phase = slot
        return resolve_wall_time(datetime.combine(day, time(self.hours[phase])), self.tz)

    def _compute_instance(self, slot: _Slot) -> PhaseInstance:
        day, phase = slot
        return PhaseInstance(
            phase=phase,
            day=day,
            start=self._start_utc(slot).astimezone(self.tz),
            end=self._start_utc(self._succ(slot)).astimezone(self.tz),
        )

    def _slot_at(self, instant: datetime) -> _Slot:
        """The last slot whose boundary is at or before ``instant`` (UTC)."""
        slot: _Slot = (instant.astimezone(self.tz).date(), self.order[-1])
        # Boundary instants never decrease along the slot sequence, so walk back to the
        # last one not after the instant, then forward past any later one not after it.
        while self._start_utc(slot) > instant:
            slot = self._pred(slot)
        while self._start_utc(self._succ(slot)) <= instant:
            slot = self._succ(slot)
        return slot

    # -- public API --------------------------------------------------------------------

    def boundary(self, day: date, phase: Phase | str) -> datetime:
        """The aware instant (in :attr:`tz`) at which ``phase`` starts on local date ``day``."""
        return self._start_utc((day, Phase(phase))).astimezone(self.tz)

    def instance(self, day: date, phase: Phase | str) -> PhaseInstance:
        """The instance of ``phase`` that starts on local date ``day``."""
        return self._instance((day, Phase(phase)))

    def instance_for_key(self, key: str) -> PhaseInstance:
        """The instance a key such as ``"2026-11-26/night"`` names."""
        return self.instance(*PhaseInstance.parse_key(key))

    def instance_at(self, dt: datetime) -> PhaseInstance:
        """The instance containing the aware instant ``dt`` (never an empty one)."""
        return self._instance(self._slot_at(to_utc(dt)))

    def following(self, instance: PhaseInstance) -> PhaseInstance:
        """The instance right after ``instance`` (it starts where ``instance`` ends)."""
        return self._instance(self._succ((instance.day, instance.phase)))

    def preceding(self, instance: PhaseInstance) -> PhaseInstance:
        """The instance right before ``instance`` (it ends where ``instance`` starts)."""
        return self._instance(self._pred((instance.day, instance.phase)))

    def next_transition(self, dt: datetime) -> PhaseInstance:
        """The next instance to begin strictly after the aware instant ``dt``.

        Its ``start`` is the end of the instance containing ``dt``. (Only when a clock
        change swallowed a phase can it be an empty instance, immediately followed by
        the one that actually runs.)
        """
        return self.following(self.instance_at(dt))

    def time_until_next(self, dt: datetime) -> timedelta:
        """Elapsed time from ``dt`` until the next transition (what remains of the current phase)."""
        return to_utc(self.next_transition(dt).start) - to_utc(dt)

    def instances_between(self, start: datetime, end: datetime) -> list[PhaseInstance]:
        """Every instance overlapping ``[start, end)``, in order; empty if ``end <= start``.

        An empty instance (a skipped phase) counts as overlapping when its instant lies
        in ``[start, end)``, so the result is a contiguous run of the sequence.
        """
        lo, hi = to_utc(start), to_utc(end)
        if hi <= lo:
            return []
        current = self.instance_at(lo)
        # Skipped phases share their instant with the instance that follows them; include
        # those that sit exactly at `start`.
        while True:
            before = self.preceding(current)
            if not (before.empty and to_utc(before.start) >= lo):
                break
            current = before
        result: list[PhaseInstance] = []
        while to_utc(current.start) < hi:
            result.append(current)
            current = self.following(current)
        return result

    def instances_for_day(self, day: date) -> list[PhaseInstance]:
        """The four instances that start on local date ``day``, in the order they start."""
        return [self._instance((day, phase)) for phase in self.order]

    def __repr__(self) -> str:
        hours = ", ".join(f"{p.value}={self.hours[p]}" for p in PHASE_ORDER)
        return f"DayPhases({hours}, tz={self.tz.key!r})"


class DayPhaseTracker:
    """Reports each phase instance exactly once, as it begins.

    The tracker remembers the key of the last instance it reported (:attr:`last_seen`).
    With none (a fresh start) the first report is the *current* instance, so starting
    mid-phase dispatches the current phase. Afterwards each report is the instance
    following the last one, as soon as it has begun. If the clock jumped over several
    boundaries (the process was down, or a virtual clock jumped), every skipped instance
    is reported, once each, in order; the caller applies its catch-up policy. If the
    clock is behind :attr:`last_seen` (wall clock stepped back), nothing is reported
    until time catches up: an instance is never reported twice.

    Persisting :attr:`last_seen` is the caller's job: pass it back to the constructor
    after a restart so instances already handled are not reported again.
    """

    def __init__(self, phases: DayPhases, clock: Clock, last_seen: str | None = None) -> None:
        """Track ``phases`` on ``clock``, optionally resuming after the instance key ``last_seen``.

        Raises :class:`ValueError` for a malformed key, or if the clock and the phases use
        different zones (one calendar for everything: fault F4).
        """
        if str(clock.tz) != str(phases.tz):
            raise ValueError(f"clock zone {clock.tz} differs from phase calendar zone {phases.tz}")
        if last_seen is not None:
            PhaseInstance.parse_key(last_seen)  # validate now, not at the first poll
        self.phases = phases
        self.clock = clock
        self._last_seen = last_seen

    @property
    def last_seen(self) -> str | None:
        """Key of the last instance reported (or passed in), for the caller to persist."""
        return self._last_seen

    def _candidate(self, now: datetime) -> PhaseInstance:
        """The next instance to report: the current one on a fresh start, else the one after last_seen."""
        if self._last_seen is None:
            return self.phases.instance_at(now)
        return self.phases.following(self.phases.instance_for_key(self._last_seen))

    def poll(self) -> list[PhaseInstance]:
        """The instances that began since the last report, in order (possibly none)."""
        now = self.clock.now()
        instant = to_utc(now)
        fired: list[PhaseInstance] = []
        candidate = self._candidate(now)
        while to_utc(candidate.start) <= instant:
            fired.append(candidate)
            self._last_seen = candidate.key
            candidate = self.phases.following(candidate)
        return fired

    async def wait_next(self) -> PhaseInstance:
        """Sleep on the clock until the next unreported instance begins, then report and return it.

        Returns at once if one has already begun (a fresh start mid-phase, or instances
        skipped by a jump), so calling it in a loop yields every instance once, in order.
        """
        while True:
            now = self.clock.now()
            candidate = self._candidate(now)
            if to_utc(candidate.start) <= to_utc(now):
                self._last_seen = candidate.key
                return candidate
            # Re-check after waking: a real clock may wake early after a wall-clock step.
            await self.clock.sleep_until(candidate.start)
