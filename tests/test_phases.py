"""Tests for cass_actions_core.phases: the phase calendar, its daylight-saving rule, the tracker.

The DST tests check DayPhases against a brute-force oracle that walks every UTC minute,
reads the local wall clock and applies the rule directly: the current phase is the one
whose boundary wall time was most recently reached by the running maximum of the wall
clock. The oracle uses nothing from the module under test.
"""

from __future__ import annotations

import asyncio
import functools
import time as real_time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cass_actions_core.clock import VirtualClock, budget_day, local_midnight, to_utc
from cass_actions_core.config import Config, PhaseSettings
from cass_actions_core.phases import PHASE_ORDER, DayPhases, DayPhaseTracker, Phase, PhaseInstance

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)

Hours = tuple[int, int, int, int]  # morning, afternoon, evening, night

DEFAULT: Hours = (6, 12, 18, 22)
#: Hour sets whose boundaries land inside skipped or repeated hours of the test zones.
HOUR_SETS: dict[str, Hours] = {
    "default": DEFAULT,
    "at-1": (1, 7, 13, 19),
    "at-2": (2, 8, 14, 20),
    "at-3": (3, 9, 15, 21),
    "night-at-0": (6, 12, 18, 0),
    "night-at-1": (7, 13, 19, 1),
    # One-hour phases: a whole phase can fall inside a skipped hour.
    "short": (1, 2, 3, 4),
}


def make_phases(hours: Hours, tz: ZoneInfo | str) -> DayPhases:
    """DayPhases from an (morning, afternoon, evening, night) tuple."""
    m, a, e, n = hours
    return DayPhases.from_hours(tz, morning=m, afternoon=a, evening=e, night=n)


def utc(*args: int) -> datetime:
    """An aware UTC datetime, for brevity."""
    return datetime(*args, tzinfo=UTC)


# -- the oracle ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A zone and the local dates around one of its clock changes (or a plain day)."""

    zone: str
    day: date  # the local date of interest (the transition day)
    kind: str  # "spring", "fall", "none" or "day-skip"

    @property
    def id(self) -> str:
        return f"{self.zone}-{self.day}-{self.kind}"


SCENARIOS = [
    Scenario("Europe/London", date(2026, 3, 29), "spring"),  # 01:00 -> 02:00
    Scenario("Europe/London", date(2026, 10, 25), "fall"),  # 02:00 -> 01:00
    Scenario("Europe/London", date(2026, 6, 15), "none"),
    Scenario("America/New_York", date(2026, 3, 8), "spring"),  # 02:00 -> 03:00
    Scenario("America/New_York", date(2026, 11, 1), "fall"),  # 02:00 -> 01:00
    Scenario("Australia/Sydney", date(2026, 10, 4), "spring"),  # 02:00 -> 03:00, southern hemisphere
    Scenario("Australia/Sydney", date(2026, 4, 5), "fall"),  # 03:00 -> 02:00
    Scenario("Australia/Lord_Howe", date(2026, 10, 4), "spring"),  # 02:00 -> 02:30
    Scenario("Australia/Lord_Howe", date(2026, 4, 5), "fall"),  # 02:00 -> 01:30
    Scenario("Pacific/Chatham", date(2026, 9, 27), "spring"),  # 02:45 -> 03:45
    Scenario("Pacific/Chatham", date(2026, 4, 5), "fall"),  # 03:45 -> 02:45
    Scenario("America/Sao_Paulo", date(2018, 11, 4), "spring"),  # 00:00 -> 01:00 (midnight skipped)
    Scenario("America/Sao_Paulo", date(2019, 2, 16), "fall"),  # 24:00 -> 23:00 (23:xx repeated)
    Scenario("Asia/Kolkata", date(2026, 11, 26), "none"),
    Scenario("Pacific/Apia", date(2011, 12, 30), "day-skip"),  # 29 Dec 24:00 -> 31 Dec 00:00
]


def offset_changes_near(zone: ZoneInfo, day: date) -> bool:
    """Whether the UTC offset differs between noon the day before and noon the day after."""
    before = datetime.combine(day - timedelta(days=1), time(12), zone).utcoffset()
    after = datetime.combine(day + timedelta(days=1), time(12), zone).utcoffset()
    return before != after


@dataclass
class OracleWalk:
    """The result of walking every UTC minute of a scenario."""

    minutes: list[datetime]  # UTC instants
    labels: list[tuple[date, Phase]]  # expected (day, phase) at each minute
    starts: dict[tuple[date, Phase], datetime]  # expected start of each boundary crossed in the walk
    empty: set[tuple[date, Phase]]  # boundaries crossed in the same minute as the next one


@functools.cache
def wall_clock_walk(zone_name: str, day: date) -> tuple[list[datetime], list[datetime]]:
    """Every UTC minute covering local dates day-1 .. day+1, with the running max of the wall clock."""
    zone = ZoneInfo(zone_name)
    # Offsets lie within -12h..+14h, so these margins cover the three local dates.
    first = datetime.combine(day - timedelta(days=1), time(), UTC) - timedelta(hours=15)
    last = datetime.combine(day + timedelta(days=2), time(), UTC) + timedelta(hours=13)
    minutes: list[datetime] = []
    running_max: list[datetime] = []
    highest = datetime.min
    t = first
    while t < last:
        wall = t.astimezone(zone).replace(tzinfo=None)
        highest = max(highest, wall)
        minutes.append(t)
        running_max.append(highest)
        t += MINUTE
    return minutes, running_max


def oracle(zone_name: str, day: date, hours: Hours) -> OracleWalk:
    """Expected phase at every minute, and expected boundary instants, by brute force."""
    minutes, running_max = wall_clock_walk(zone_name, day)
    by_phase = dict(zip(PHASE_ORDER, hours))
    boundaries = sorted(
        (datetime.combine(day + timedelta(days=offset), time(hour)), day + timedelta(days=offset), phase)
        for offset in range(-3, 4)
        for phase, hour in by_phase.items()
    )
    labels: list[tuple[date, Phase]] = []
    starts: dict[tuple[date, Phase], datetime] = {}
    empty: set[tuple[date, Phase]] = set()
    i = 0  # index of the latest boundary wall time reached so far
    for n, (t, highest) in enumerate(zip(minutes, running_max)):
        crossed = []
        while boundaries[i + 1][0] <= highest:
            i += 1
            crossed.append((boundaries[i][1], boundaries[i][2]))
        if n > 0:  # crossed during the walk, at this minute
            starts.update((key, t) for key in crossed)
            empty.update(crossed[:-1])  # all but the last were over as soon as they began
        labels.append((boundaries[i][1], boundaries[i][2]))
    return OracleWalk(minutes, labels, starts, empty)


# -- DST against the oracle ------------------------------------------------------------


@pytest.mark.parametrize("hours_name", list(HOUR_SETS))
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_phases_match_the_minute_by_minute_oracle(scenario: Scenario, hours_name: str) -> None:
    hours = HOUR_SETS[hours_name]
    zone = ZoneInfo(scenario.zone)
    # Guard the scenario itself: a transition test on a day without one would prove nothing.
    assert offset_changes_near(zone, scenario.day) == (scenario.kind != "none")
    phases = make_phases(hours, zone)
    walk = oracle(scenario.zone, scenario.day, hours)

    # 1. The phase at every minute.
    for t, expected in zip(walk.minutes, walk.labels):
        instance = phases.instance_at(t)
        if (instance.day, instance.phase) != expected:
            pytest.fail(f"at {t} ({t.astimezone(zone)}): got {instance.key}, oracle says {expected}")
        assert instance.contains(t)
        assert to_utc(instance.start) <= t < to_utc(instance.end)

    # 2. Every boundary crossed during the walk happens at the oracle's minute.
    assert len(walk.starts) >= 12
    for (day, phase), expected_start in walk.starts.items():
        assert to_utc(phases.boundary(day, phase)) == expected_start, (day, phase)
        assert phases.boundary(day, phase).tzinfo is zone

    # 3. Tiling: the instances over the walk are contiguous, in order, each once.
    instances = phases.instances_between(walk.minutes[0], walk.minutes[-1] + MINUTE)
    assert to_utc(instances[0].start) <= walk.minutes[0] < to_utc(instances[-1].end)
    for before, after in zip(instances, instances[1:]):
        assert to_utc(before.end) == to_utc(after.start)
        assert after.phase == before.phase.next()
    keys = [i.key for i in instances]
    assert len(keys) == len(set(keys))

    # 4. start < end, except for a phase the oracle also finds skipped whole (crossed in
    #    the same minute as the next boundary): only one-hour phases or a skipped day.
    for instance in instances:
        slot = (instance.day, instance.phase)
        if slot in walk.starts:
            assert instance.empty == (slot in walk.empty), instance
        if instance.empty:
            assert hours_name == "short" or scenario.kind == "day-skip"
        else:
            assert to_utc(instance.start) < to_utc(instance.end)

    # 5. Once per local day: each date has four instances, one per phase, starting on it.
    for day in (scenario.day - timedelta(days=1), scenario.day, scenario.day + timedelta(days=1)):
        of_day = phases.instances_for_day(day)
        assert [i.phase for i in of_day] == sorted(PHASE_ORDER, key=lambda p: phases.hours[p])
        assert {i.day for i in of_day} == {day}
        assert [to_utc(i.start) for i in of_day] == sorted(to_utc(i.start) for i in of_day)
        assert all(to_utc(a.end) == to_utc(b.start) for a, b in zip(of_day, of_day[1:]))


def test_oracle_empty_detection_is_meaningful() -> None:
    """The 'short' hour set really produces a skipped phase in New York's spring forward."""
    walk = oracle("America/New_York", date(2026, 3, 8), HOUR_SETS["short"])
    # Boundaries at 02:00 (afternoon) and 03:00 (evening) both happen at 07:00 UTC.
    assert walk.starts[date(2026, 3, 8), Phase.AFTERNOON] == walk.starts[date(2026, 3, 8), Phase.EVENING]
    assert (date(2026, 3, 8), Phase.AFTERNOON) not in set(walk.labels)


# -- the rule, by example ------------------------------------------------------------------------


def test_skipped_boundary_moves_to_the_instant_of_the_jump() -> None:
    phases = make_phases(HOUR_SETS["at-2"], NEW_YORK)
    start = phases.boundary(date(2026, 3, 8), Phase.MORNING)
    assert start.replace(tzinfo=None) == datetime(2026, 3, 8, 3, 0)  # 02:00 does not exist
    assert to_utc(start) == utc(2026, 3, 8, 7, 0)
    night = phases.instance(date(2026, 3, 7), Phase.NIGHT)
    assert night.duration == timedelta(hours=6)  # 20:00 EST .. 03:00 EDT (= 02:00 EST)


def test_thirty_minute_shift_moves_the_boundary_by_thirty_minutes() -> None:
    phases = make_phases(HOUR_SETS["at-2"], "Australia/Lord_Howe")
    start = phases.boundary(date(2026, 10, 4), Phase.MORNING)
    assert start.replace(tzinfo=None) == datetime(2026, 10, 4, 2, 30)


def test_repeated_hour_does_not_repeat_a_phase() -> None:
    # London 2026-10-25, phases starting at 01:00: morning begins at 01:00 BST and carries
    # on through the repeated 01:00-02:00 GMT instead of starting again.
    phases = make_phases(HOUR_SETS["at-1"], LONDON)
    morning = phases.instance(date(2026, 10, 25), Phase.MORNING)
    assert to_utc(morning.start) == utc(2026, 10, 25, 0, 0)
    assert morning.duration == timedelta(hours=7)  # 01:00 BST .. 07:00 GMT
    second_pass = datetime(2026, 10, 25, 1, 0, tzinfo=LONDON, fold=1)  # 01:00 GMT
    assert phases.instance_at(second_pass) == morning
    assert phases.instance_at(to_utc(second_pass) - MINUTE) == morning  # 01:59 BST, the first pass
    assert phases.next_transition(second_pass).key == "2026-10-25/afternoon"


def test_a_phase_inside_the_skipped_hour_is_empty_but_still_there() -> None:
    phases = make_phases(HOUR_SETS["short"], NEW_YORK)  # afternoon is 02:00-03:00
    day = date(2026, 3, 8)
    afternoon = phases.instance(day, Phase.AFTERNOON)
    assert afternoon.empty and afternoon.duration == timedelta(0)
    assert to_utc(afternoon.start) == utc(2026, 3, 8, 7, 0)
    assert len(phases.instances_for_day(day)) == 4
    # instance_at never returns it: at the jump the evening is already current.
    assert phases.instance_at(afternoon.start).phase is Phase.EVENING
    # instances_between keeps it, so a tracker reports it and queued work is not orphaned.
    around = phases.instances_between(utc(2026, 3, 8, 6, 0), utc(2026, 3, 8, 8, 0))
    assert [i.phase for i in around] == [Phase.MORNING, Phase.AFTERNOON, Phase.EVENING]
    starting_there = phases.instances_between(afternoon.start, afternoon.start + MINUTE)
    assert [i.phase for i in starting_there] == [Phase.AFTERNOON, Phase.EVENING]


def test_a_skipped_day_keeps_its_instances_as_empty_ones() -> None:
    phases = DayPhases(None, "Pacific/Apia")
    skipped = phases.instances_for_day(date(2011, 12, 30))
    assert [i.empty for i in skipped] == [True, True, True, False]
    night = skipped[-1]
    assert night.start.replace(tzinfo=None) == datetime(2011, 12, 31, 0, 0)
    assert night.end.replace(tzinfo=None) == datetime(2011, 12, 31, 6, 0)


# -- the calendar on ordinary days -------------------------------------------------------------------------


def test_phase_enum_and_cycle() -> None:
    assert [p.value for p in PHASE_ORDER] == ["morning", "afternoon", "evening", "night"]
    assert Phase("night") is Phase.NIGHT and Phase.NIGHT == "night"
    assert [p.next() for p in PHASE_ORDER] == [Phase.AFTERNOON, Phase.EVENING, Phase.NIGHT, Phase.MORNING]
    assert [p.previous() for p in PHASE_ORDER] == [Phase.NIGHT, Phase.MORNING, Phase.AFTERNOON, Phase.EVENING]


def test_default_day_in_new_york() -> None:
    phases = DayPhases(PhaseSettings(), "America/New_York")
    day = date(2026, 11, 26)
    assert [(i.phase, i.start.hour, i.end.hour) for i in phases.instances_for_day(day)] == [
        (Phase.MORNING, 6, 12),
        (Phase.AFTERNOON, 12, 18),
        (Phase.EVENING, 18, 22),
        (Phase.NIGHT, 22, 6),
    ]
    night = phases.instance_at(datetime(2026, 11, 27, 3, 0, tzinfo=NEW_YORK))
    assert night.day == day and night.phase is Phase.NIGHT and night.key == "2026-11-26/night"
    assert night.start == datetime(2026, 11, 26, 22, tzinfo=NEW_YORK)
    assert night.end == datetime(2026, 11, 27, 6, tzinfo=NEW_YORK)
    assert night.start.tzinfo is NEW_YORK
    # The same instant given in UTC finds the same instance.
    assert phases.instance_at(utc(2026, 11, 27, 8, 0)) == night


def test_boundaries_are_half_open() -> None:
    phases = DayPhases(None, "Europe/London")
    boundary = phases.boundary(date(2026, 11, 26), Phase.AFTERNOON)
    assert phases.instance_at(boundary).phase is Phase.AFTERNOON
    assert phases.instance_at(to_utc(boundary) - timedelta(microseconds=1)).phase is Phase.MORNING


def test_next_transition_and_time_until_next() -> None:
    phases = DayPhases(None, "Europe/London")
    now = datetime(2026, 11, 26, 10, 15, tzinfo=LONDON)
    nxt = phases.next_transition(now)
    assert nxt.key == "2026-11-26/afternoon"
    assert phases.time_until_next(now) == timedelta(hours=1, minutes=45)
    # Strictly after: at a boundary, the next transition is the following one.
    assert phases.next_transition(nxt.start).key == "2026-11-26/evening"
    # Across a DST change the remaining time is real elapsed time (London 2026-10-25).
    assert phases.time_until_next(datetime(2026, 10, 24, 23, 0, tzinfo=LONDON)) == timedelta(hours=8)


def test_instances_between_covers_every_overlapping_instance() -> None:
    phases = DayPhases(None, "Europe/London")
    start = datetime(2026, 11, 26, 11, 0, tzinfo=LONDON)
    keys = [i.key for i in phases.instances_between(start, start + timedelta(days=1))]
    assert keys == [
        "2026-11-26/morning",
        "2026-11-26/afternoon",
        "2026-11-26/evening",
        "2026-11-26/night",
        "2026-11-27/morning",
    ]
    assert phases.instances_between(start, start) == []
    # An instance ending exactly at `start` does not overlap [start, end).
    noon = datetime(2026, 11, 26, 12, tzinfo=LONDON)
    assert [i.key for i in phases.instances_between(noon, noon + MINUTE)] == ["2026-11-26/afternoon"]


def test_night_that_starts_after_midnight_belongs_to_that_date() -> None:
    phases = make_phases(HOUR_SETS["night-at-1"], LONDON)
    assert phases.order == (Phase.NIGHT, Phase.MORNING, Phase.AFTERNOON, Phase.EVENING)
    evening = phases.instance_at(datetime(2026, 11, 27, 0, 30, tzinfo=LONDON))
    assert evening.key == "2026-11-26/evening"
    night = phases.instance_at(datetime(2026, 11, 27, 1, 30, tzinfo=LONDON))
    assert night.key == "2026-11-27/night"


def test_keys_round_trip_and_reject_garbage() -> None:
    phases = DayPhases(None, "UTC")
    instance = phases.instance(date(2026, 11, 26), "night")
    assert instance.key == "2026-11-26/night"
    assert PhaseInstance.parse_key(instance.key) == (date(2026, 11, 26), Phase.NIGHT)
    assert phases.instance_for_key(instance.key) == instance
    for bad in ["", "2026-11-26", "2026-11-26/noon", "26/11/2026/night", "2026-13-01/night"]:
        with pytest.raises(ValueError):
            PhaseInstance.parse_key(bad)


@pytest.mark.parametrize(
    "hours",
    [
        {"morning": 12, "afternoon": 6, "evening": 18, "night": 22},  # out of order
        {"morning": 6, "afternoon": 6, "evening": 18, "night": 22},  # empty phase
        {"morning": 6, "afternoon": 12, "evening": 18, "night": 24},  # out of range
        {"morning": -1, "afternoon": 12, "evening": 18, "night": 22},
        {"morning": 6.5, "afternoon": 12, "evening": 18, "night": 22},  # not an integer
        {"morning": True, "afternoon": 12, "evening": 18, "night": 22},
        {"morning": 6, "afternoon": 12, "evening": 18},  # missing
        {"morning": 6, "afternoon": 18, "evening": 12, "night": 22},  # two swapped
    ],
)
def test_bad_hours_are_rejected(hours: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DayPhases(hours, "UTC")


def test_bad_phase_settings_and_zone_are_rejected() -> None:
    with pytest.raises(ValueError):
        DayPhases(PhaseSettings(morning=12, afternoon=6, evening=18, night=22), "UTC")
    with pytest.raises(ValueError):
        DayPhases(None, "Nowhere/Special")


def test_wrapping_hours_and_config_are_accepted() -> None:
    phases = DayPhases({"morning": 20, "afternoon": 2, "evening": 8, "night": 14}, "UTC")
    assert phases.order == (Phase.AFTERNOON, Phase.EVENING, Phase.NIGHT, Phase.MORNING)
    config = Config(timezone="Australia/Sydney", phases=PhaseSettings(morning=5, afternoon=11, evening=17, night=21))
    from_config = DayPhases.from_config(config)
    assert from_config.tz.key == "Australia/Sydney"
    assert dict(from_config.hours) == {Phase.MORNING: 5, Phase.AFTERNOON: 11, Phase.EVENING: 17, Phase.NIGHT: 21}


def test_naive_datetimes_are_rejected() -> None:
    phases = DayPhases(None, "UTC")
    naive = datetime(2026, 11, 26, 12)
    for call in (phases.instance_at, phases.next_transition, phases.time_until_next):
        with pytest.raises(ValueError):
            call(naive)
    with pytest.raises(ValueError):
        phases.instances_between(naive, naive + timedelta(hours=1))


# -- property test ------------------------------------------------------------------------------------------

PROPERTY_ZONES = [
    "UTC",
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Sao_Paulo",
    "Asia/Kathmandu",
]


@st.composite
def hour_sets(draw: st.DrawFn) -> Hours:
    """Any valid (morning, afternoon, evening, night): four distinct hours in cyclic order."""
    chosen = sorted(draw(st.lists(st.integers(0, 23), min_size=4, max_size=4, unique=True)))
    shift = draw(st.integers(0, 3))
    rotated = chosen[shift:] + chosen[:shift]
    return rotated[0], rotated[1], rotated[2], rotated[3]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone_name=st.sampled_from(PROPERTY_ZONES),
    hours=hour_sets(),
    naive=st.datetimes(min_value=datetime(1980, 1, 1), max_value=datetime(2080, 1, 1)),
)
def test_every_instant_lies_in_exactly_one_instance(zone_name: str, hours: Hours, naive: datetime) -> None:
    zone = ZoneInfo(zone_name)
    phases = make_phases(hours, zone)
    t = naive.replace(tzinfo=UTC)
    instance = phases.instance_at(t)
    assert to_utc(instance.start) <= t < to_utc(instance.end)
    assert not instance.empty
    # The same instant expressed locally (with its fold) finds the same instance.
    assert phases.instance_at(t.astimezone(zone)) == instance
    # Neighbours tile: no gap, no overlap.
    assert to_utc(phases.following(instance).start) == to_utc(instance.end)
    assert to_utc(phases.preceding(instance).end) == to_utc(instance.start)
    assert instance in phases.instances_for_day(instance.day)
    assert to_utc(phases.next_transition(t).start) == to_utc(instance.end)
    # The budget day of an instant is bounded by local midnights of that date and the next.
    day = budget_day(t, zone)
    assert to_utc(local_midnight(day, zone)) <= t < to_utc(local_midnight(day + timedelta(days=1), zone))


# -- DayPhaseTracker ------------------------------------------------------------------------------------


def minute_walk(clock: VirtualClock, until: datetime) -> Iterator[datetime]:
    """Advance the clock one minute at a time up to ``until``, yielding each new time."""
    while to_utc(clock.now()) < to_utc(until):
        clock.advance(MINUTE)
        yield clock.now()


@pytest.mark.parametrize(
    ("zone", "hours", "first_day"),
    [
        ("Europe/London", DEFAULT, date(2026, 10, 24)),  # fall back on the 25th
        ("Europe/London", HOUR_SETS["at-1"], date(2026, 10, 24)),  # boundary in the repeated hour
        ("America/New_York", HOUR_SETS["short"], date(2026, 3, 7)),  # a phase skipped whole
        ("Australia/Sydney", HOUR_SETS["at-2"], date(2026, 10, 3)),
    ],
)
def test_tracker_fires_each_instance_exactly_once_over_three_days(zone: str, hours: Hours, first_day: date) -> None:
    phases = make_phases(hours, zone)
    start = local_midnight(first_day, zone) + timedelta(hours=9, minutes=17)  # mid-phase
    end = local_midnight(first_day + timedelta(days=3), zone)
    clock = VirtualClock(zone, start)
    tracker = DayPhaseTracker(phases, clock)

    first = tracker.poll()
    assert first == [phases.instance_at(start)]  # starting mid-phase reports the current phase
    fired = list(first)
    for now in minute_walk(clock, end):
        new = tracker.poll()
        for instance in new:
            # Reported at the first poll at or after its start, not later.
            assert to_utc(instance.start) <= to_utc(now) < to_utc(instance.start) + MINUTE
        fired.extend(new)
        assert tracker.last_seen == fired[-1].key

    expected = phases.instances_between(start, end)
    assert [i.key for i in fired] == [i.key for i in expected]
    assert len({i.key for i in fired}) == len(fired)
    for day in (first_day + timedelta(days=1), first_day + timedelta(days=2)):
        assert {f"{day}/{p}" for p in PHASE_ORDER} <= {i.key for i in fired}


def test_tracker_reports_every_skipped_instance_after_a_jump() -> None:
    phases = DayPhases(None, "Europe/London")
    start = datetime(2026, 11, 26, 10, 0, tzinfo=LONDON)
    clock = VirtualClock("Europe/London", start)
    tracker = DayPhaseTracker(phases, clock)
    assert [i.key for i in tracker.poll()] == ["2026-11-26/morning"]
    assert tracker.poll() == []
    clock.advance(timedelta(hours=27))  # process "down" until 13:00 next day
    assert [i.key for i in tracker.poll()] == [
        "2026-11-26/afternoon",
        "2026-11-26/evening",
        "2026-11-26/night",
        "2026-11-27/morning",
        "2026-11-27/afternoon",
    ]
    assert tracker.poll() == []
    assert tracker.last_seen == "2026-11-27/afternoon"


def test_restarted_tracker_with_last_seen_does_not_refire() -> None:
    phases = DayPhases(None, "Europe/London")
    clock = VirtualClock("Europe/London", datetime(2026, 11, 26, 10, 0, tzinfo=LONDON))
    first = DayPhaseTracker(phases, clock)
    first.poll()
    clock.advance(timedelta(hours=3))
    assert [i.key for i in first.poll()] == ["2026-11-26/afternoon"]
    persisted = first.last_seen

    restarted = DayPhaseTracker(phases, clock, last_seen=persisted)
    assert restarted.last_seen == persisted
    assert restarted.poll() == []  # the afternoon was already handled
    clock.advance(timedelta(hours=10))  # 23:00: evening and night began while "down"
    assert [i.key for i in restarted.poll()] == ["2026-11-26/evening", "2026-11-26/night"]


def test_tracker_with_last_seen_ahead_of_the_clock_waits_for_time_to_catch_up() -> None:
    # The wall clock stepped back after an instance was handled: nothing is re-fired.
    phases = DayPhases(None, "Europe/London")
    clock = VirtualClock("Europe/London", datetime(2026, 11, 26, 10, 0, tzinfo=LONDON))
    tracker = DayPhaseTracker(phases, clock, last_seen="2026-11-26/afternoon")
    assert tracker.poll() == []
    clock.set(datetime(2026, 11, 26, 17, 59, tzinfo=LONDON))
    assert tracker.poll() == []
    clock.set(datetime(2026, 11, 26, 18, 0, tzinfo=LONDON))
    assert [i.key for i in tracker.poll()] == ["2026-11-26/evening"]


def test_tracker_rejects_bad_last_seen_and_mismatched_zones() -> None:
    phases = DayPhases(None, "Europe/London")
    with pytest.raises(ValueError):
        DayPhaseTracker(phases, VirtualClock("Europe/London", utc(2026, 1, 1)), last_seen="yesterday/night")
    with pytest.raises(ValueError, match="differs"):
        DayPhaseTracker(phases, VirtualClock("UTC", utc(2026, 1, 1)))


def test_wait_next_sleeps_to_each_boundary_on_a_virtual_clock() -> None:
    phases = make_phases(HOUR_SETS["at-1"], LONDON)
    start = datetime(2026, 10, 24, 9, 30, tzinfo=LONDON)
    end = start + timedelta(days=2)
    clock = VirtualClock(LONDON, start)
    tracker = DayPhaseTracker(phases, clock)
    log: list[tuple[PhaseInstance, datetime]] = []

    async def loop() -> None:
        while True:
            instance = await tracker.wait_next()
            log.append((instance, clock.now()))

    async def main() -> None:
        task = asyncio.create_task(loop())
        await clock.run_until(end)
        task.cancel()

    started = real_time.monotonic()
    asyncio.run(main())
    assert real_time.monotonic() - started < 2.0  # two simulated days, no real sleeping

    first, first_at = log[0]
    assert first == phases.instance_at(start) and first_at == start  # mid-phase: at once
    for instance, at in log[1:]:
        assert to_utc(at) == to_utc(instance.start)  # woken exactly at the boundary
    assert [i.key for i, _ in log] == [i.key for i in phases.instances_between(start, end)]


def test_wait_next_returns_skipped_instances_at_once_in_order() -> None:
    phases = DayPhases(None, "Europe/London")
    clock = VirtualClock("Europe/London", datetime(2026, 11, 26, 10, 0, tzinfo=LONDON))
    tracker = DayPhaseTracker(phases, clock, last_seen="2026-11-26/morning")
    clock.advance(timedelta(hours=9))  # 19:00: afternoon and evening have begun

    async def main() -> list[str]:
        return [(await tracker.wait_next()).key for _ in range(2)]

    assert asyncio.run(main()) == ["2026-11-26/afternoon", "2026-11-26/evening"]
    assert tracker.poll() == []
