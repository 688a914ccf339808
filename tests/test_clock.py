"""Tests for cass_actions_core.clock: zones, the wall-time rule, SystemClock and VirtualClock."""

from __future__ import annotations

import asyncio
import time as real_time
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core.clock import (
    Clock,
    SystemClock,
    VirtualClock,
    as_zone,
    budget_day,
    local_midnight,
    resolve_wall_time,
    to_utc,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")


def utc(*args: int) -> datetime:
    """An aware UTC datetime, for brevity."""
    return datetime(*args, tzinfo=UTC)


# -- zones and conversion -------------------------------------------------------------


def test_as_zone_accepts_names_and_zoneinfo_and_rejects_unknown() -> None:
    assert as_zone("Europe/London") is LONDON
    assert as_zone(NEW_YORK) is NEW_YORK
    with pytest.raises(ValueError, match="unknown time zone"):
        as_zone("Mars/Olympus_Mons")
    with pytest.raises(ValueError):
        as_zone(5)  # type: ignore[arg-type]


def test_to_utc_rejects_naive_and_converts_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        to_utc(datetime(2026, 11, 26, 12))
    converted = to_utc(datetime(2026, 7, 1, 12, tzinfo=LONDON))
    assert converted == utc(2026, 7, 1, 11) and converted.tzinfo is UTC


# -- the wall-time rule -----------------------------------------------------------------


def test_resolve_existing_wall_time_is_that_instant() -> None:
    assert resolve_wall_time(datetime(2026, 7, 1, 9, 30), LONDON) == utc(2026, 7, 1, 8, 30)


def test_resolve_skipped_wall_time_is_the_instant_of_the_jump() -> None:
    # London 2026-03-29: 01:00 GMT -> 02:00 BST at 01:00 UTC; 01:30 never shows.
    resolved = resolve_wall_time(datetime(2026, 3, 29, 1, 30), LONDON)
    assert resolved == utc(2026, 3, 29, 1, 0)
    assert resolved.astimezone(LONDON).replace(tzinfo=None) == datetime(2026, 3, 29, 2, 0)
    # New York 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00 UTC.
    assert resolve_wall_time(datetime(2026, 3, 8, 2, 0), NEW_YORK) == utc(2026, 3, 8, 7, 0)
    # Lord Howe shifts by 30 minutes: 02:00 -> 02:30 on 2026-10-04 (15:30 UTC the day before).
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    resolved = resolve_wall_time(datetime(2026, 10, 4, 2, 15), lord_howe)
    assert resolved.astimezone(lord_howe).replace(tzinfo=None) == datetime(2026, 10, 4, 2, 30)
    assert resolved == utc(2026, 10, 3, 15, 30)


def test_resolve_repeated_wall_time_is_the_first_occurrence() -> None:
    # London 2026-10-25: 02:00 BST -> 01:00 GMT; 01:30 happens at 00:30 UTC and 01:30 UTC.
    assert resolve_wall_time(datetime(2026, 10, 25, 1, 30), LONDON) == utc(2026, 10, 25, 0, 30)
    # Sydney 2026-04-05: 03:00 AEDT -> 02:00 AEST; 02:30 first happens at 15:30 UTC on the 4th.
    assert resolve_wall_time(datetime(2026, 4, 5, 2, 30), SYDNEY) == utc(2026, 4, 4, 15, 30)


def test_resolve_rejects_aware_wall_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        resolve_wall_time(datetime(2026, 1, 1, tzinfo=UTC), LONDON)


def test_local_midnight_is_aware_local_and_moves_when_midnight_is_skipped() -> None:
    midnight = local_midnight(date(2026, 11, 26), "Australia/Sydney")
    assert midnight.tzinfo is SYDNEY
    assert midnight == utc(2026, 11, 25, 13, 0)
    # Sao Paulo 2018-11-04: clocks went from 00:00 to 01:00, so that day began at 01:00.
    sao_paulo = ZoneInfo("America/Sao_Paulo")
    begins = local_midnight(date(2018, 11, 4), sao_paulo)
    assert begins.replace(tzinfo=None) == datetime(2018, 11, 4, 1, 0)
    assert begins == utc(2018, 11, 4, 3, 0)


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        # The earlier system's F4: late evening in New York is already "tomorrow" in UTC.
        (utc(2026, 11, 27, 3, 0), "America/New_York", date(2026, 11, 26)),
        (utc(2026, 11, 26, 23, 30), "Australia/Sydney", date(2026, 11, 27)),
        (utc(2026, 11, 26, 23, 30), "UTC", date(2026, 11, 26)),
    ],
)
def test_budget_day_is_the_local_date(instant: datetime, zone: str, expected: date) -> None:
    assert budget_day(instant, zone) == expected
    assert budget_day(instant.astimezone(ZoneInfo(zone))) == expected  # zone taken from dt


@pytest.mark.parametrize("zone", ["Europe/London", "America/New_York", "America/Sao_Paulo", "Pacific/Chatham"])
def test_budget_day_rolls_over_exactly_at_local_midnight(zone: str) -> None:
    for day in [date(2018, 11, 4), date(2019, 2, 17), date(2026, 3, 29), date(2026, 10, 25), date(2026, 11, 1)]:
        midnight = local_midnight(day, zone)
        assert budget_day(midnight, zone) == day
        # Subtract in UTC: arithmetic on a local datetime is wall-clock arithmetic, and
        # 01:00 minus a microsecond on a day that began at 01:00 is a non-existent time.
        assert budget_day(to_utc(midnight) - timedelta(microseconds=1), zone) == day - timedelta(days=1)


def test_budget_day_rejects_naive() -> None:
    with pytest.raises(ValueError):
        budget_day(datetime(2026, 11, 26, 12), "UTC")


# -- SystemClock ----------------------------------------------------------------------------


def test_system_clock_now_is_aware_in_its_zone() -> None:
    clock = SystemClock("America/New_York")
    now = clock.now()
    assert now.tzinfo is NEW_YORK
    assert abs((to_utc(now) - datetime.now(UTC)).total_seconds()) < 5
    assert clock.today() in {now.date(), clock.now().date()}  # tolerate a midnight between the calls
    assert isinstance(clock, Clock)


def test_system_clock_sleeps_until_the_instant() -> None:
    clock = SystemClock("UTC", max_sleep=0.02)

    async def main() -> float:
        target = clock.now() + timedelta(milliseconds=80)
        await clock.sleep_until(target)
        return (to_utc(clock.now()) - to_utc(target)).total_seconds()

    late = asyncio.run(main())
    assert 0 <= late < 1.0


def test_system_clock_returns_at_once_for_a_past_instant_and_rejects_naive() -> None:
    clock = SystemClock("Europe/London")

    async def main() -> None:
        started = real_time.monotonic()
        await clock.sleep_until(clock.now() - timedelta(hours=1))
        assert real_time.monotonic() - started < 0.5
        with pytest.raises(ValueError):
            await clock.sleep_until(datetime(2026, 1, 1))

    asyncio.run(main())


def test_system_clock_notices_a_wall_clock_jump_within_one_chunk() -> None:
    class JumpingClock(SystemClock):
        """A system clock whose wall time jumps a day forward after the first read."""

        reads = 0

        def _utc_now(self) -> datetime:
            self.reads += 1
            offset = timedelta(days=1) if self.reads > 1 else timedelta(0)
            return datetime.now(UTC) + offset

    clock = JumpingClock("UTC", max_sleep=0.01)

    async def main() -> None:
        started = real_time.monotonic()
        # An hour ahead in wall time: a single asyncio.sleep(3600) would ignore the jump.
        await clock.sleep_until(datetime.now(UTC) + timedelta(hours=1))
        assert real_time.monotonic() - started < 1.0

    asyncio.run(main())


def test_system_clock_rejects_bad_chunk() -> None:
    with pytest.raises(ValueError):
        SystemClock("UTC", max_sleep=0)


# -- VirtualClock ---------------------------------------------------------------------------


START = datetime(2026, 11, 26, 9, 0, tzinfo=LONDON)


def test_virtual_clock_reports_virtual_time_in_its_zone() -> None:
    clock = VirtualClock("America/New_York", START)
    assert clock.now() == START  # the same instant...
    assert clock.now().tzinfo is NEW_YORK  # ...expressed in the clock's zone
    assert clock.now().hour == 4
    assert clock.today() == date(2026, 11, 26)
    assert isinstance(clock, Clock)
    with pytest.raises(ValueError):
        VirtualClock("UTC", datetime(2026, 11, 26))


def test_virtual_clock_never_goes_backwards() -> None:
    clock = VirtualClock("UTC", START)
    clock.advance(timedelta(0))
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="backwards"):
        clock.set(START - timedelta(minutes=1))
    with pytest.raises(ValueError):
        asyncio.run(clock.run_until(START - timedelta(minutes=1)))
    assert clock.now() == START


def test_virtual_clock_advance_is_elapsed_time_across_a_dst_change() -> None:
    # 2026-10-25 London: 24 hours after 00:00 BST is 23:00 GMT on the same date.
    clock = VirtualClock("Europe/London", datetime(2026, 10, 25, 0, 0, tzinfo=LONDON))
    clock.advance(timedelta(hours=24))
    assert clock.now().replace(tzinfo=None) == datetime(2026, 10, 25, 23, 0)
    assert clock.today() == date(2026, 10, 25)


def test_advance_wakes_only_the_due_sleepers() -> None:
    clock = VirtualClock("UTC", START)
    woken: list[str] = []

    async def sleeper(name: str, minutes: int) -> None:
        await clock.sleep_until(START + timedelta(minutes=minutes))
        woken.append(name)

    async def main() -> None:
        tasks = [asyncio.create_task(sleeper("a", 10)), asyncio.create_task(sleeper("b", 20))]
        await asyncio.sleep(0)
        assert clock.pending_sleepers == 2
        assert clock.next_wakeup == START + timedelta(minutes=10)
        clock.advance(timedelta(minutes=9))
        await asyncio.sleep(0)
        assert woken == []
        clock.advance(timedelta(minutes=1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert woken == ["a"]
        assert clock.pending_sleepers == 1
        clock.set(START + timedelta(hours=1))
        await asyncio.gather(*tasks)
        assert woken == ["a", "b"]
        assert clock.next_wakeup is None

    asyncio.run(main())


def test_two_sleepers_wake_in_deadline_order_each_at_its_deadline() -> None:
    clock = VirtualClock("Europe/London", START)
    log: list[tuple[str, datetime]] = []

    async def sleeper(name: str, when: datetime) -> None:
        await clock.sleep_until(when)
        log.append((name, clock.now()))

    async def main() -> None:
        late, early = START + timedelta(hours=3), START + timedelta(hours=1)
        # Started in the opposite order to their deadlines.
        tasks = [asyncio.create_task(sleeper("late", late)), asyncio.create_task(sleeper("early", early))]
        await clock.run_until(START + timedelta(hours=5))
        await asyncio.gather(*tasks)
        assert log == [("early", early), ("late", late)]
        assert clock.now() == START + timedelta(hours=5)

    asyncio.run(main())


def test_sleepers_with_the_same_deadline_wake_in_the_order_they_slept() -> None:
    clock = VirtualClock("UTC", START)
    order: list[int] = []

    async def sleeper(i: int) -> None:
        await clock.sleep_until(START + timedelta(minutes=5))
        order.append(i)

    async def main() -> None:
        tasks = [asyncio.create_task(sleeper(i)) for i in range(5)]
        await clock.run_for(timedelta(minutes=5))
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == [0, 1, 2, 3, 4]


def test_run_until_serves_sleepers_registered_along_the_way_without_real_sleeping() -> None:
    clock = VirtualClock("Europe/London", START)
    ticks: list[datetime] = []

    async def ticker() -> None:
        # A periodic task: one wake-up per virtual minute for a whole day.
        while True:
            await clock.sleep_until(clock.now() + timedelta(minutes=1))
            ticks.append(clock.now())

    async def main() -> None:
        task = asyncio.create_task(ticker())
        await clock.run_until(START + timedelta(days=1))
        task.cancel()

    started = real_time.monotonic()
    asyncio.run(main())
    assert real_time.monotonic() - started < 5.0
    assert len(ticks) == 24 * 60
    assert ticks[0] == START + timedelta(minutes=1)
    assert all(to_utc(b) - to_utc(a) == timedelta(minutes=1) for a, b in zip(ticks, ticks[1:]))


def test_run_until_lets_chains_of_tasks_settle_before_moving_time() -> None:
    # A sleeper that hands work to another task through a queue: the consumer must see
    # the item at the same virtual time, before the clock jumps to the next deadline.
    clock = VirtualClock("UTC", START)
    seen: list[tuple[int, datetime]] = []

    async def main() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()

        async def producer() -> None:
            for i in range(3):
                await clock.sleep_until(START + timedelta(hours=i + 1))
                await queue.put(i)

        async def consumer() -> None:
            while True:
                item = await queue.get()
                await asyncio.sleep(0)  # some extra hops through the loop
                await asyncio.sleep(0)
                seen.append((item, clock.now()))

        tasks = [asyncio.create_task(producer()), asyncio.create_task(consumer())]
        await clock.run_until(START + timedelta(hours=10))
        for task in tasks:
            task.cancel()

    asyncio.run(main())
    assert seen == [(i, START + timedelta(hours=i + 1)) for i in range(3)]


def test_sleep_until_a_past_instant_returns_at_once() -> None:
    clock = VirtualClock("UTC", START)

    async def main() -> None:
        await clock.sleep_until(START)
        await clock.sleep_until(START - timedelta(days=1))
        assert clock.pending_sleepers == 0
        with pytest.raises(ValueError):
            await clock.sleep_until(datetime(2026, 1, 1))

    asyncio.run(main())


def test_a_cancelled_sleeper_is_forgotten() -> None:
    clock = VirtualClock("UTC", START)

    async def main() -> None:
        task = asyncio.create_task(clock.sleep_until(START + timedelta(minutes=1)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert clock.pending_sleepers == 0
        assert clock.next_wakeup is None
        await clock.run_for(timedelta(minutes=5))  # must not trip over the dead sleeper

    asyncio.run(main())
    assert clock.now() == START + timedelta(minutes=5)


def test_set_wakes_everyone_due_and_they_all_see_the_new_time() -> None:
    clock = VirtualClock("UTC", START)
    seen: list[datetime] = []

    async def sleeper(minutes: int) -> None:
        await clock.sleep_until(START + timedelta(minutes=minutes))
        seen.append(clock.now())

    async def main() -> None:
        tasks = [asyncio.create_task(sleeper(m)) for m in (1, 2, 3)]
        await asyncio.sleep(0)
        clock.set(START + timedelta(hours=1))
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert seen == [START + timedelta(hours=1)] * 3


def test_local_midnight_helpers_agree_with_the_clock() -> None:
    clock = VirtualClock("Australia/Sydney", local_midnight(date(2026, 10, 4), "Australia/Sydney"))
    assert clock.today() == date(2026, 10, 4)
    clock.advance(timedelta(hours=23))  # a 23-hour day: spring forward at 02:00
    assert clock.today() == date(2026, 10, 5)
    assert clock.now().time() == time(0, 0)
