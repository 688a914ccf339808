"""The budget ledger: limits, the reserve, extensions, settling, crash leftovers, local budget days,
append-only spend (F3) and real concurrency (threads with their own connections on one file).

Every test uses a real SQLite file under ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cass_actions_core.config import DEFAULT_ALLOCATIONS, BudgetSettings
from cass_actions_core.ledger import Blocked, BudgetLedger, Reservation, budget_day_for
from cass_actions_core.store import SCHEMA_VERSION, LedgerEntry, NotFoundError, Store, open_store

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=TOKYO)
DAY = date(2026, 11, 26)
#: $5/day, 10% reserve, reflection 18% = $0.90, research 20% = $1.00: the default shares with the
#: planner's 2% handed back to research, so the figures below stay round.
ALLOCATIONS = {k: v for k, v in DEFAULT_ALLOCATIONS.items() if k != "planning"} | {"research": 0.20}
DEFAULT = BudgetSettings(allocations=ALLOCATIONS)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's store file lives."""
    return tmp_path / "cass.db"


@pytest.fixture
def store(store_location: Path | str) -> Iterator[Store]:
    """A fresh store for daemon 'cass'."""
    with open_store(store_location, "cass") as opened:
        yield opened


@pytest.fixture
def ledger(store: Store) -> BudgetLedger:
    """A ledger under the default budget."""
    return BudgetLedger(store, DEFAULT)


@contextmanager
def fresh_target(location: Path | str) -> Iterator[tuple[Path | str, str]]:
    """Where a new, empty store is, on the backend of ``location``, for each call (a hypothesis example):
    a new SQLite file for daemon 'cass', or a new daemon in the test's PostgreSQL schema."""
    if isinstance(location, str):
        yield location, f"cass-{uuid.uuid4().hex[:12]}"
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / "cass.db", "cass"


@contextmanager
def fresh_store(location: Path | str) -> Iterator[Store]:
    """A new, empty store on the backend of ``location`` (see :func:`fresh_target`)."""
    with fresh_target(location) as (where, daemon), open_store(where, daemon) as store:
        yield store


def granted(result: Reservation | Blocked) -> Reservation:
    """The reservation, failing the test with the reason if it was blocked."""
    assert isinstance(result, Reservation), result.reason if isinstance(result, Blocked) else result
    return result


def blocked(result: Reservation | Blocked) -> Blocked:
    """The refusal, failing the test if money was granted."""
    assert isinstance(result, Blocked), f"expected a refusal, got {result}"
    return result


def committed_from_entries(entries: list[LedgerEntry], critical: bool | None = None) -> dict[str, float]:
    """Per category: settled plus outstanding, recomputed from raw rows (independently of the ledger)."""
    by_reservation: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        by_reservation[entry.reservation_id].append(entry)
    totals: dict[str, float] = defaultdict(float)
    for rows in by_reservation.values():
        if critical is not None and rows[0].critical is not critical:
            continue
        closing = [r for r in rows if r.kind in ("settle", "release")]
        assert len(closing) <= 1, f"reservation closed twice: {rows}"
        if closing:
            totals[rows[0].category] += closing[0].amount_usd
        else:
            totals[rows[0].category] += sum(r.amount_usd for r in rows if r.kind == "reserve")
    return dict(totals)


# --------------------------------------------------------------------------- the rules


def test_reserve_within_the_category_limit_and_block_with_a_reason(ledger: BudgetLedger) -> None:
    first = granted(ledger.reserve("reflection", 0.78, budget_day=DAY, now=NOW, unit_id="u1"))
    assert (first.category, first.budget_day, first.amount_usd, first.unit_id) == ("reflection", DAY, 0.78, "u1")
    refusal = blocked(ledger.reserve("reflection", 0.15, budget_day=DAY, now=NOW))
    assert refusal.reason == "reflection: $0.12 left of $0.90, needs $0.15"
    assert refusal.available_usd == pytest.approx(0.12)
    exact = granted(ledger.reserve("reflection", 0.12, budget_day=DAY, now=NOW))
    assert exact.amount_usd == 0.12
    assert ledger.committed("reflection", budget_day=DAY) == pytest.approx(0.90)
    assert ledger.available("reflection", DAY) == 0.0
    # Other categories are untouched.
    assert ledger.available("research", DAY) == pytest.approx(1.0)


def test_unknown_category_is_blocked_and_named(ledger: BudgetLedger) -> None:
    for critical in (False, True):
        refusal = blocked(ledger.reserve("dreams", 0.01, budget_day=DAY, now=NOW, critical=critical))
        assert "dreams" in refusal.reason and "no budget allocation" in refusal.reason
    assert ledger.available("dreams", DAY) == 0.0


def test_free_work_is_never_blocked_in_a_known_category(ledger: BudgetLedger) -> None:
    granted(ledger.reserve("system", 0.2, budget_day=DAY, now=NOW))
    blocked(ledger.reserve("system", 0.01, budget_day=DAY, now=NOW))
    assert granted(ledger.reserve("system", 0.0, budget_day=DAY, now=NOW)).amount_usd == 0.0


def test_the_day_total_for_ordinary_work_stops_at_daily_minus_reserve(store: Store) -> None:
    # Shares that add up past the pool (allowed when built directly, as here): rule (b) binds.
    budget = BudgetSettings(daily_usd=1.0, reserve_fraction=0.2, allocations={"a": 0.6, "b": 0.6})
    ledger = BudgetLedger(store, budget)
    granted(ledger.reserve("a", 0.5, budget_day=DAY, now=NOW))
    refusal = blocked(ledger.reserve("b", 0.4, budget_day=DAY, now=NOW))
    assert refusal.reason == (
        "b: the day's budget has $0.30 left of $0.80 for ordinary work ($0.20 reserve held back), needs $0.40"
    )
    assert ledger.available("b", DAY) == pytest.approx(0.3)
    granted(ledger.reserve("b", 0.3, budget_day=DAY, now=NOW))
    assert ledger.committed(budget_day=DAY) == pytest.approx(0.8)
    blocked(ledger.reserve("a", 0.01, budget_day=DAY, now=NOW))


def test_critical_work_may_draw_on_the_reserve_but_never_past_it(ledger: BudgetLedger) -> None:
    granted(ledger.reserve("reflection", 0.9, budget_day=DAY, now=NOW))
    blocked(ledger.reserve("reflection", 0.01, budget_day=DAY, now=NOW))
    assert ledger.available("reflection", DAY, critical=True) == pytest.approx(0.5)
    granted(ledger.reserve("reflection", 0.3, budget_day=DAY, now=NOW, critical=True))
    refusal = blocked(ledger.reserve("reflection", 0.25, budget_day=DAY, now=NOW, critical=True))
    assert refusal.reason == "reflection (critical): $0.00 left of $0.90 plus $0.20 left of the $0.50 reserve, needs $0.25"
    granted(ledger.reserve("growth", 0.6, budget_day=DAY, now=NOW, critical=True))  # $0.50 room + $0.10 reserve
    status = ledger.status(DAY)
    assert status["reserve"] == {"limit": 0.5, "used": pytest.approx(0.4), "available": pytest.approx(0.1)}
    # Ordinary work still gets its own categories' money, never the reserve.
    granted(ledger.reserve("research", 1.0, budget_day=DAY, now=NOW))
    blocked(ledger.reserve("growth", 0.01, budget_day=DAY, now=NOW))
    assert ledger.committed(budget_day=DAY) <= DEFAULT.daily_usd


def test_extend_grows_a_reservation_only_within_the_rules(ledger: BudgetLedger, store: Store) -> None:
    r = granted(ledger.reserve("reflection", 0.15, budget_day=DAY, now=NOW))
    assert ledger.extend(r, 0.40, NOW) is True
    assert ledger.reservation(r.id).amount_usd == pytest.approx(0.40)
    assert ledger.extend(r, 0.30, NOW) is True, "a smaller total is already covered"
    assert ledger.reservation(r.id).amount_usd == pytest.approx(0.40)
    other = granted(ledger.reserve("reflection", 0.40, budget_day=DAY, now=NOW))
    rows_before = len(store.ledger_entries())
    assert ledger.extend(r, 0.55, NOW) is False, "only $0.10 left in reflection"
    assert len(store.ledger_entries()) == rows_before
    assert ledger.extend(r, 0.50, NOW) is True
    assert ledger.committed("reflection", budget_day=DAY) == pytest.approx(0.90)
    ledger.release(other, NOW)
    ledger.settle(r, 0.2, NOW)
    assert ledger.extend(r, 0.6, NOW) is False, "a closed reservation cannot grow"
    entries = store.ledger_entries(reservation_id=r.id)
    assert [(e.kind, e.amount_usd) for e in entries] == [
        ("reserve", 0.15), ("reserve", 0.25), ("reserve", 0.10), ("settle", 0.2)
    ]


def test_settle_frees_the_rest_and_release_frees_everything(ledger: BudgetLedger) -> None:
    a = granted(ledger.reserve("research", 0.6, budget_day=DAY, now=NOW))
    b = granted(ledger.reserve("research", 0.4, budget_day=DAY, now=NOW))
    blocked(ledger.reserve("research", 0.1, budget_day=DAY, now=NOW))
    assert ledger.settle(a, 0.25, NOW) is True
    assert ledger.spent("research", budget_day=DAY) == pytest.approx(0.25)
    assert ledger.reserved("research", budget_day=DAY) == pytest.approx(0.4)
    assert ledger.available("research", DAY) == pytest.approx(0.35)
    assert ledger.release(b, NOW, "action never ran") is True
    assert ledger.committed("research", budget_day=DAY) == pytest.approx(0.25)
    assert ledger.available("research", DAY) == pytest.approx(0.75)
    # Idempotent: a second settle or release is a no-op.
    assert ledger.settle(a, 0.5, NOW) is False
    assert ledger.release(a, NOW) is False
    assert ledger.settle(b, 0.1, NOW) is False
    assert ledger.spent("research", budget_day=DAY) == pytest.approx(0.25)
    assert not ledger.is_open(a) and not ledger.is_open(b)


def test_overspend_is_recorded_as_spent_and_noted(ledger: BudgetLedger, store: Store) -> None:
    r = granted(ledger.reserve("memory", 0.1, budget_day=DAY, now=NOW))
    assert ledger.settle(r, 0.13, NOW, note="token count surprise") is True
    assert ledger.spent("memory", budget_day=DAY) == pytest.approx(0.13)
    settle = store.ledger_entries(reservation_id=r.id)[-1]
    assert settle.kind == "settle" and settle.note == "token count surprise; overspent: granted $0.10, spent $0.13"


@pytest.mark.parametrize("amount", [-0.01, float("nan"), float("inf"), True])
def test_bad_amounts_are_refused(ledger: BudgetLedger, amount: float) -> None:
    with pytest.raises(ValueError):
        ledger.reserve("memory", amount, budget_day=DAY, now=NOW)
    r = granted(ledger.reserve("memory", 0.1, budget_day=DAY, now=NOW))
    with pytest.raises(ValueError):
        ledger.settle(r, amount, NOW)
    with pytest.raises(ValueError):
        ledger.extend(r, amount, NOW)


def test_naive_now_and_unknown_reservations_are_refused(ledger: BudgetLedger) -> None:
    with pytest.raises(ValueError, match="naive"):
        ledger.reserve("memory", 0.1, budget_day=DAY, now=datetime(2026, 11, 26, 10, 0))
    assert ledger.committed(budget_day=DAY) == 0.0
    ghost = Reservation("0" * 32, "memory", DAY, 0.1)
    with pytest.raises(NotFoundError, match="0" * 32):
        ledger.settle(ghost, 0.1, NOW)
    with pytest.raises(NotFoundError):
        ledger.release(ghost, NOW)


def test_status_reports_every_category_and_the_totals(ledger: BudgetLedger) -> None:
    r = granted(ledger.reserve("research", 0.5, budget_day=DAY, now=NOW))
    ledger.settle(r, 0.2, NOW)
    granted(ledger.reserve("research", 0.3, budget_day=DAY, now=NOW))
    granted(ledger.reserve("journal", 0.1, budget_day=DAY, now=NOW))
    status = ledger.status(DAY)
    assert status["budget_day"] == "2026-11-26"
    assert status["daily_usd"] == 5.0
    assert set(status["categories"]) == set(DEFAULT.allocations)
    assert status["categories"]["research"] == {"limit": 1.0, "spent": 0.2, "reserved": 0.3, "available": 0.5}
    assert status["categories"]["journal"] == {"limit": 0.3, "spent": 0.0, "reserved": 0.1, "available": 0.2}
    assert status["categories"]["system"]["available"] == 0.2
    assert status["totals"] == {"limit": 4.5, "spent": 0.2, "reserved": 0.4, "available": pytest.approx(3.9)}
    assert status["reserve"] == {"limit": 0.5, "used": 0.0, "available": 0.5}
    # Another day is untouched.
    assert ledger.status(DAY + timedelta(days=1))["totals"]["spent"] == 0.0


# --------------------------------------------------------------------------- crash leftovers, F3


def test_reservations_left_open_by_a_crash_are_found_after_restart(store_location: Path | str) -> None:
    with open_store(store_location, "cass") as s:
        ledger = BudgetLedger(s, DEFAULT)
        done = granted(ledger.reserve("research", 0.3, budget_day=DAY, now=NOW, unit_id="u1"))
        ledger.settle(done, 0.3, NOW)
        left = granted(ledger.reserve("research", 0.2, budget_day=DAY, now=NOW, unit_id="u2"))
        ledger.extend(left, 0.35, NOW)
        yesterday = granted(ledger.reserve("memory", 0.1, budget_day=DAY - timedelta(days=1), now=NOW, unit_id="u0"))
        # The process dies here: no settle, no release.
    with open_store(store_location, "cass") as s:
        ledger = BudgetLedger(s, DEFAULT)
        found = ledger.open_reservations()
        assert [(r.id, r.unit_id, r.amount_usd) for r in found] == [(left.id, "u2", 0.35), (yesterday.id, "u0", 0.1)]
        assert [r.id for r in ledger.open_reservations(DAY)] == [left.id]
        assert ledger.committed("research", budget_day=DAY) == pytest.approx(0.65)
        assert ledger.settle(found[0], 0.12, NOW + timedelta(minutes=5)) is True
        assert ledger.release(found[1], NOW + timedelta(minutes=5), "found open after restart") is True
        assert ledger.settle(found[0], 0.12, NOW + timedelta(minutes=6)) is False
        assert ledger.open_reservations() == []
        assert ledger.spent("research", budget_day=DAY) == pytest.approx(0.42)


def test_F3_recorded_spend_survives_reopening_and_cannot_be_overwritten(db_path: Path) -> None:
    with open_store(db_path, daemon_id="cass") as s:
        ledger = BudgetLedger(s, DEFAULT)
        r = granted(ledger.reserve("research", 0.30, budget_day=DAY, now=NOW))
        assert ledger.extend(r, 0.45, NOW)
        ledger.settle(r, 0.42, NOW)
        rows_before = s.ledger_entries()
    # Not even SQL can rewrite or delete ledger rows: the database refuses.
    raw = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE ledger_entries SET amount_usd = 0 WHERE kind = 'settle'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM ledger_entries")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("INSERT OR REPLACE INTO ledger_entries (id, budget_day, category, kind, amount_usd,"
                        " reservation_id, at) VALUES (1, '2026-11-26', 'research', 'settle', 0, 'x', 'now')")
        raw.rollback()
    finally:
        raw.close()
    with open_store(db_path, daemon_id="cass") as s:
        ledger = BudgetLedger(s, DEFAULT)
        assert ledger.spent("research", budget_day=DAY) == pytest.approx(0.42)
        # A later "sync" that tries to record a different figure for the same action changes nothing.
        assert ledger.settle(r, 0.0, NOW + timedelta(hours=1)) is False
        assert ledger.release(r, NOW + timedelta(hours=1)) is False
        assert ledger.spent("research", budget_day=DAY) == pytest.approx(0.42)
        # New spend only adds rows; the old ones are byte-for-byte the same.
        other = granted(ledger.reserve("research", 0.1, budget_day=DAY, now=NOW + timedelta(hours=2)))
        ledger.settle(other, 0.05, NOW + timedelta(hours=2))
        after = s.ledger_entries()
        assert after[: len(rows_before)] == rows_before
        assert ledger.spent("research", budget_day=DAY) == pytest.approx(0.47)


# --------------------------------------------------------------------------- local budget days (F4)


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
def test_budget_day_rolls_over_at_local_midnight(ledger: BudgetLedger, zone: str) -> None:
    tz = ZoneInfo(zone)
    late = datetime(2026, 11, 26, 23, 30, tzinfo=tz)
    early = datetime(2026, 11, 27, 0, 30, tzinfo=tz)
    # Both instants fall on one UTC date: a UTC budget day would lump them together.
    assert late.astimezone(timezone.utc).date() == early.astimezone(timezone.utc).date()
    day1, day2 = budget_day_for(late, tz), budget_day_for(early, tz)
    assert (day1, day2) == (date(2026, 11, 26), date(2026, 11, 27))
    r1 = granted(ledger.reserve("reflection", 0.9, budget_day=day1, now=late))
    ledger.settle(r1, 0.9, late)
    blocked(ledger.reserve("reflection", 0.1, budget_day=day1, now=late + timedelta(minutes=10)))
    r2 = granted(ledger.reserve("reflection", 0.9, budget_day=day2, now=early))
    ledger.settle(r2, 0.5, early)
    assert ledger.spent("reflection", budget_day=day1) == pytest.approx(0.9)
    assert ledger.spent("reflection", budget_day=day2) == pytest.approx(0.5)
    # And two instants on different UTC dates but one local date share a budget day.
    a = datetime(2026, 11, 26, 23, 30, tzinfo=timezone.utc).astimezone(tz)
    b = a + timedelta(hours=1)
    assert a.astimezone(timezone.utc).date() != b.astimezone(timezone.utc).date()
    shared = budget_day_for(a, tz)
    assert budget_day_for(b, tz) == shared
    ledger.settle(granted(ledger.reserve("research", 0.6, budget_day=shared, now=a)), 0.6, a)
    refusal = blocked(ledger.reserve("research", 0.6, budget_day=budget_day_for(b, tz), now=b))
    assert refusal.reason == "research: $0.40 left of $1.00, needs $0.60"
    # The entries keep the local offset they were written with.
    entry = ledger.store.ledger_entries(reservation_id=r1.id)[0]
    assert entry.at == late and entry.at.utcoffset() == late.utcoffset()


def test_budget_day_for_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        budget_day_for(datetime(2026, 11, 26, 23, 30), TOKYO)


# --------------------------------------------------------------------------- concurrency


def test_threads_with_their_own_connections_never_share_the_last_dollar(store_location: Path | str) -> None:
    # On PostgreSQL: eight connections racing for the daemon's advisory write lock.
    open_store(store_location, "cass").close()
    grants: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)
    lock = threading.Lock()

    def worker() -> None:
        try:
            with open_store(store_location, "cass") as own:
                ledger = BudgetLedger(own, DEFAULT)
                start.wait()
                while True:
                    result = ledger.reserve("reflection", 0.1, budget_day=DAY, now=NOW)
                    if isinstance(result, Blocked):
                        return
                    with lock:
                        grants.append(result.id)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(grants) == 9 and len(set(grants)) == 9
    with open_store(store_location, "cass") as s:
        assert BudgetLedger(s, DEFAULT).committed("reflection", budget_day=DAY) == pytest.approx(0.9)


def test_asyncio_tasks_sharing_one_store(ledger: BudgetLedger) -> None:
    actuals: list[float] = []

    async def unit(n: int) -> None:
        result = ledger.reserve("research", 0.1, budget_day=DAY, now=NOW, unit_id=f"u{n}")
        if isinstance(result, Blocked):
            return
        await asyncio.sleep(0)
        grown = ledger.extend(result, 0.15, NOW)
        await asyncio.sleep(0)
        actual = 0.15 if grown else 0.1
        ledger.settle(result, actual, NOW)
        actuals.append(actual)

    async def main() -> None:
        await asyncio.gather(*(unit(n) for n in range(12)))

    asyncio.run(main())
    assert ledger.spent("research", budget_day=DAY) == pytest.approx(sum(actuals))
    assert ledger.spent("research", budget_day=DAY) <= 1.0 + 1e-9
    assert ledger.open_reservations() == []


# A unit of work in the property test.
UNIT = st.fixed_dictionaries(
    {
        "category": st.sampled_from(["a", "b", "c"]),
        "estimate": st.integers(0, 400).map(lambda cents: cents / 1000),
        "extensions": st.lists(st.integers(1, 200).map(lambda c: c / 1000), max_size=3),
        "actual_fraction": st.floats(0.0, 1.0),
        "release": st.booleans(),
        "critical": st.booleans(),
    }
)

BUDGETS = {
    # Valid config: shares plus reserve add up to 1; the category limits bind.
    "shares": BudgetSettings(daily_usd=1.0, reserve_fraction=0.1, allocations={"a": 0.3, "b": 0.3, "c": 0.3}),
    # Shares past the pool: the day's ordinary total binds too.
    "pool": BudgetSettings(daily_usd=1.0, reserve_fraction=0.2, allocations={"a": 0.5, "b": 0.5, "c": 0.4}),
}


@dataclass
class _Outcome:
    settled: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    errors: list[BaseException] = field(default_factory=list)
    checks: int = 0
    blocked: int = 0
    refused_extensions: int = 0


def _check_invariants(store: Store, budget: BudgetSettings, any_critical: bool) -> None:
    """The budget promises, from one consistent snapshot of the raw ledger rows."""
    with store.transaction(immediate=False):
        entries = store.ledger_entries(budget_day=DAY)
    eps = 1e-6
    ordinary = committed_from_entries(entries, critical=False)
    everything = committed_from_entries(entries)
    for category, amount in ordinary.items():
        assert amount <= budget.category_limit(category) + eps, (category, amount)
    assert sum(ordinary.values()) <= budget.daily_usd - budget.reserve_usd + eps
    assert sum(everything.values()) <= budget.daily_usd + eps
    if not any_critical:
        for category, amount in everything.items():
            assert amount <= budget.category_limit(category) + eps, (category, amount)
        assert sum(everything.values()) <= budget.daily_usd - budget.reserve_usd + eps
    else:
        drawn = sum(max(0.0, amount - budget.category_limit(c)) for c, amount in everything.items())
        assert drawn <= budget.reserve_usd + eps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    budget_name=st.sampled_from(sorted(BUDGETS)),
    units=st.lists(UNIT, min_size=1, max_size=12),
    n_threads=st.integers(2, 4),
    allow_critical=st.booleans(),
)
def test_concurrent_units_never_overspend_and_settled_equals_actuals(
    store_location: Path | str, budget_name: str, units: list[dict[str, Any]], n_threads: int, allow_critical: bool
) -> None:
    budget = BUDGETS[budget_name]
    any_critical = allow_critical and any(u["critical"] for u in units)
    with fresh_target(store_location) as (path, daemon):
        open_store(path, daemon).close()
        outcome = _Outcome()
        lock = threading.Lock()
        start = threading.Barrier(n_threads)

        def worker(mine: list[dict[str, Any]]) -> None:
            try:
                with open_store(path, daemon) as own:
                    ledger = BudgetLedger(own, budget)
                    start.wait()
                    held: list[tuple[Reservation, float, dict[str, Any]]] = []
                    # Reserve everything first so reservations from all threads overlap.
                    for unit in mine:
                        result = ledger.reserve(
                            unit["category"],
                            unit["estimate"],
                            budget_day=DAY,
                            now=NOW,
                            critical=allow_critical and unit["critical"],
                        )
                        _check_invariants(own, budget, any_critical)
                        if isinstance(result, Reservation):
                            assert result.amount_usd == unit["estimate"]
                            held.append((result, result.amount_usd, unit))
                        else:
                            with lock:
                                outcome.blocked += 1
                    grown: list[tuple[Reservation, float, dict[str, Any]]] = []
                    for reservation, amount, unit in held:
                        for step in unit["extensions"]:
                            if ledger.extend(reservation, round(amount + step, 6), NOW):
                                amount = round(amount + step, 6)
                            else:
                                with lock:
                                    outcome.refused_extensions += 1
                            _check_invariants(own, budget, any_critical)
                        assert ledger.reservation(reservation.id).amount_usd == pytest.approx(amount)
                        grown.append((reservation, amount, unit))
                    for reservation, amount, unit in grown:
                        if unit["release"]:
                            assert ledger.release(reservation, NOW)
                        else:
                            actual = round(amount * unit["actual_fraction"], 6)
                            assert actual <= amount
                            assert ledger.settle(reservation, actual, NOW)
                            with lock:
                                outcome.settled[unit["category"]] += actual
                        _check_invariants(own, budget, any_critical)
                    with lock:
                        outcome.checks += 1
            except BaseException as exc:  # surfaced in the main thread
                with lock:
                    outcome.errors.append(exc)
                try:
                    start.abort()
                except threading.BrokenBarrierError:
                    pass

        shares = [units[i::n_threads] for i in range(n_threads)]
        threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if outcome.errors:
            raise outcome.errors[0]
        assert outcome.checks == n_threads
        # Shown by --hypothesis-show-statistics: how often the limits actually bit.
        event(f"reservations blocked: {'some' if outcome.blocked else 'none'}")
        event(f"extensions refused: {'some' if outcome.refused_extensions else 'none'}")
        with open_store(path, daemon) as final:
            ledger = BudgetLedger(final, budget)
            _check_invariants(final, budget, any_critical)
            assert ledger.open_reservations(DAY) == []
            for category in ("a", "b", "c"):
                assert ledger.spent(category, budget_day=DAY) == pytest.approx(
                    round(outcome.settled.get(category, 0.0), 6), abs=1e-6
                )
                assert ledger.reserved(category, budget_day=DAY) == 0.0
            assert ledger.spent(budget_day=DAY) == pytest.approx(sum(outcome.settled.values()), abs=1e-6)


# -- issue 9, finding 3: an overspend counts against the day, not as the reserve ----------------

def test_an_overspend_past_the_category_counts_against_the_day_and_nothing_more_is_granted(store: Store) -> None:
    budget = BudgetSettings(daily_usd=1.0, reserve_fraction=0.1, allocations={"small": 0.2, "other": 0.5})
    ledger = BudgetLedger(store, budget)
    r = granted(ledger.reserve("small", 0.10, budget_day=DAY, now=NOW))
    ledger.settle(r, 12.0, NOW)  # the API billed far more than any estimate
    assert ledger.spent("small", budget_day=DAY) == pytest.approx(12.0)  # money that left is a fact
    status = ledger.status(DAY)
    assert status["totals"]["available"] == 0.0
    assert status["categories"]["other"]["available"] == 0.0
    refusal = blocked(ledger.reserve("other", 0.01, budget_day=DAY, now=NOW))
    assert "the day's budget has $0.00 left" in refusal.reason
    critical = blocked(ledger.reserve("other", 0.01, budget_day=DAY, now=NOW, critical=True))
    assert critical.available_usd == 0.0


def test_a_small_overspend_still_leaves_the_rest_of_the_day(store: Store) -> None:
    budget = BudgetSettings(daily_usd=1.0, reserve_fraction=0.1, allocations={"small": 0.2, "other": 0.5})
    ledger = BudgetLedger(store, budget)
    ledger.settle(granted(ledger.reserve("small", 0.2, budget_day=DAY, now=NOW)), 0.25, NOW)
    # $1 - $0.25 spent - $0.05 of the reserve still held back ($0.05 of it covered the overspend)
    assert ledger.available("other", DAY) == pytest.approx(0.5)
    assert ledger.status(DAY)["totals"]["available"] == pytest.approx(0.5)
    assert blocked(ledger.reserve("small", 0.01, budget_day=DAY, now=NOW)).reason.startswith("small: $0.00 left of $0.20")


# -- issue 9, finding 3: the day's money is a ceiling for metered calls --------------------------

CALL = st.fixed_dictionaries({
    "category": st.sampled_from(["a", "b"]),
    "calls": st.integers(1, 4),
    "input_tokens": st.integers(0, 3000),
    "output_tokens": st.integers(0, 4000),
    "overbill": st.sampled_from([0, 0, 0, 1, 20_000]),  # extra output tokens past max_tokens (a hostile API)
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(actions=st.lists(CALL, min_size=1, max_size=10), max_tokens=st.sampled_from([500, 2000, 4000]))
def test_metered_calls_never_pass_the_days_money_by_more_than_what_was_billed_past_their_worst_case(
    store_location: Path | str, actions: list[dict[str, Any]], max_tokens: int
) -> None:
    """The stated bound: settled spend per category and per day <= its limit + the sum, over calls, of
    what a call was billed past its own worst case (0 for an API that bills at most the estimated input
    and at most max_tokens output). Actions run concurrently on one store, as the executor runs them."""
    from cass_actions_core.config import LLMSettings
    from cass_actions_core.executor import LedgerGate
    from cass_actions_core.llm.base import EffectiveLLMSettings, Usage
    from cass_actions_core.llm.errors import LLMError
    from cass_actions_core.llm.metered import MeteredLLM
    from cass_actions_core.llm.scripted import ScriptedProvider, ScriptedReply

    budget = BudgetSettings(daily_usd=0.2, reserve_fraction=0.1, allocations={"a": 0.5, "b": 0.4})
    llm_settings = EffectiveLLMSettings.from_llm_settings(
        LLMSettings(provider="scripted", model="claude-sonnet-5-5", max_tokens=max_tokens))
    past_worst_case = defaultdict(float)

    class Clock:
        def now(self) -> datetime:
            return NOW

    async def run_all(ledger: BudgetLedger, store: Store) -> None:
        async def one(spec: dict[str, Any]) -> None:
            result = ledger.reserve(spec["category"], 0.001, budget_day=DAY, now=NOW)
            if isinstance(result, Blocked):
                return
            meter: MeteredLLM

            def reply(request: Any) -> ScriptedReply:
                out = min(spec["output_tokens"], request.max_tokens) + spec["overbill"]
                tokens_in = min(spec["input_tokens"], len(request.prompt_text().encode()) // 3)
                return ScriptedReply("x", usage=Usage(tokens_in, out), stop_reason="end_turn")

            provider = ScriptedProvider(reply)
            meter = MeteredLLM(provider, llm_settings, action_id="t.act", max_cost_usd=1.0, max_calls=10,
                               gate=LedgerGate(ledger, result, store, Clock()))  # type: ignore[arg-type]
            for _ in range(spec["calls"]):
                before = meter.spent_usd
                try:
                    await meter.complete("Write the next paragraph. " * 30)
                except LLMError:
                    break
                finally:
                    await asyncio.sleep(0)  # let the other actions interleave
                request = provider.requests[-1]
                worst = meter.estimate_usd("Write the next paragraph. " * 30, max_tokens=request.max_tokens)
                past_worst_case[spec["category"]] += max(0.0, meter.spent_usd - before - worst)
            ledger.settle(result, meter.spent_usd, NOW)

        await asyncio.gather(*(one(a) for a in actions))

    with fresh_store(store_location) as store:
        ledger = BudgetLedger(store, budget)
        asyncio.run(run_all(ledger, store))
        over = sum(past_worst_case.values())
        for category in ("a", "b"):
            spent = ledger.spent(category, budget_day=DAY)
            assert spent <= budget.category_limit(category) + past_worst_case[category] + 1e-6, (category, spent)
        assert ledger.spent(budget_day=DAY) <= budget.daily_usd + over + 1e-6
        event("overbilled" if over else "honest API")


# -- issue 10: running totals ------------------------------------------------------------------

def totals_from_rows(store: Store, day: date) -> dict[str, tuple[float, float]]:
    """Spent and outstanding per category, summed from the ledger rows themselves (the old way)."""
    rows = store.ledger_entries(budget_day=day)
    closed = {e.reservation_id for e in rows if e.kind in ("settle", "release")}
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for e in store.ledger_entries():  # a reservation's rows may straddle days only through its first row's day
        if e.budget_day != day:
            continue
        if e.kind == "settle":
            out[e.category][0] += e.amount_usd
        elif e.kind == "reserve" and e.reservation_id not in closed:
            out[e.category][1] += e.amount_usd
    return {c: (round(s, 6), round(r, 6)) for c, (s, r) in out.items()}


OPERATION = st.tuples(
    st.sampled_from(["reserve", "reserve", "extend", "settle", "release", "settle_twice"]),
    st.sampled_from(["reflection", "research", "memory", "system"]),
    st.sampled_from([0, 1]),                       # which budget day
    st.floats(min_value=0, max_value=0.7, allow_nan=False).map(lambda x: round(x, 6)),
    st.booleans(),                                  # critical
    st.integers(min_value=0, max_value=50),         # which open reservation
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(OPERATION, min_size=1, max_size=40))
def test_running_totals_always_equal_the_sum_of_the_ledger_rows(store_location: Path | str,
                                                                 operations: list[tuple[Any, ...]]) -> None:
    days = [DAY, DAY + timedelta(days=1)]
    with fresh_store(store_location) as store:
        ledger = BudgetLedger(store, DEFAULT)
        open_reservations: list[Reservation] = []
        for kind, category, day_index, amount, critical, pick in operations:
            day = days[day_index]
            if kind == "reserve" or not open_reservations:
                result = ledger.reserve(category, amount, budget_day=day, now=NOW, critical=critical)
                if isinstance(result, Reservation):
                    open_reservations.append(result)
                continue
            chosen = open_reservations[pick % len(open_reservations)]
            if kind == "extend":
                ledger.extend(chosen, chosen.amount_usd + amount, NOW)
            elif kind == "release":
                ledger.release(chosen, NOW)
                open_reservations.remove(chosen)
            else:
                ledger.settle(chosen, amount * 2, NOW)  # at, below or past what was granted
                if kind == "settle_twice":
                    assert ledger.settle(chosen, amount, NOW) is False  # closed: nothing more is written
                open_reservations.remove(chosen)
        for day in days:
            expected = totals_from_rows(store, day)
            kept = {c: (t.spent_usd, t.reserved_usd) for c, t in store.ledger_totals(day).items()}
            # Categories with rows that net to zero may or may not have a totals row: compare non-zero figures.
            assert {c: v for c, v in kept.items() if v != (0.0, 0.0)} == \
                   {c: v for c, v in expected.items() if v != (0.0, 0.0)}


def test_migration_3_sums_an_existing_ledger_into_the_running_totals(db_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A file of schema 2 (before the running totals), with the rows that version's ledger wrote.
    import cass_actions_core.store as store_module

    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:2])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    with open_store(db_path, daemon_id="cass"):
        pass
    monkeypatch.undo()
    conn = sqlite3.connect(db_path)
    rows = [("reflection", "reserve", 0.30, "a"), ("research", "reserve", 0.25, "b"), ("reflection", "reserve", 0.40, "a"),
            ("reflection", "settle", 0.123456, "a")]
    conn.executemany("INSERT INTO ledger_entries (budget_day, category, kind, amount_usd, reservation_id, at)"
                     " VALUES (?, ?, ?, ?, ?, ?)", [(DAY.isoformat(), *row, NOW.isoformat()) for row in rows])
    conn.commit()
    conn.close()
    with open_store(db_path, daemon_id="cass") as store:
        assert store.schema_version == SCHEMA_VERSION
        kept = {c: (t.spent_usd, t.reserved_usd) for c, t in store.ledger_totals(DAY).items()}
        expected = totals_from_rows(store, DAY)
    assert kept == expected == {"reflection": (0.123456, 0.0), "research": (0.0, 0.25)}
