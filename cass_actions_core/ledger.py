"""The budget ledger: per-category daily USD limits, reservations, and spend that is never rewritten.

How money moves: before an action runs, its estimate is **reserved** (granted only if it
fits); before each LLM call inside the action the reservation is **extended** to cover
the call's worst case, so actual spend can never pass what the ledger granted; when the
action ends the reservation is **settled** to the actual cost, or **released** if the
action never ran.

Append-only encoding (F3: spend recorded by an action survives any later sync or restart):

* ``reserve`` rows: the first row of a reservation id carries its initial amount; each
  extension appends another ``reserve`` row with the *increase*. A reservation's current
  amount is the sum of its ``reserve`` rows.
* ``settle`` row: closes the reservation; its amount is the actual spend.
* ``release`` row: closes the reservation with no spend (amount 0).
* A reservation is *outstanding* while it has no ``settle``/``release`` row.
  ``spent`` = sum of settle rows; ``committed`` = spent + outstanding reservations.

Rows are never updated or deleted (the database refuses, by trigger). Every check and its
write run inside one ``BEGIN IMMEDIATE`` transaction, so two asyncio tasks, two threads
with their own :class:`~cass_actions_core.store.Store`, or two processes can never both
be granted the last dollar.

The rules, for a request of ``amount`` in category ``c`` on a budget day:

* ``L_c`` = the category's limit on that day (``budget.category_limit(c)``, or a limit set at run
  time: see :meth:`BudgetLedger.limits`); ``C_c`` = committed in ``c``;
  the **reserve** is ``budget.reserve_usd``; the **ordinary pool** is
  ``daily_usd - reserve_usd``. Reserve drawn so far ``O`` = sum over categories of
  ``max(0, C_c - L_c)`` (what critical work spent past its category's limit).
* Ordinary work: granted iff ``C_c + amount <= L_c`` and
  ``(day committed - O) + amount <= ordinary pool``.
* Critical work (``critical=True``) may go past its category's limit by drawing on the
  reserve: the part of ``amount`` that fits the category's remaining room comes from the
  ordinary pool (which must have it), the rest from the reserve, which is never
  overdrawn. So the day's total never exceeds ``daily_usd``, and ordinary work never
  touches the reserve.
* An unknown category (no allocation) is always blocked, critical or not.
* A zero amount is always granted in a known category (free, no-LLM work is never
  blocked by money).

Budget days are LOCAL calendar dates: the caller passes ``budget_day`` computed in the
daemon's time zone (:func:`budget_day_for`), the same calendar its day phases use (F4).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from cass_actions_core.config import BudgetSettings
from cass_actions_core.store import BudgetOverride, LedgerEntry, LedgerTotals, NotFoundError, Store

__all__ = ["EPSILON", "Blocked", "BudgetLedger", "Limits", "Reservation", "budget_day_for"]

#: Tolerance for money comparisons (amounts are rounded to 6 decimals).
EPSILON = 1e-9


def budget_day_for(moment: datetime, tz: tzinfo) -> date:
    """The local calendar date of ``moment`` in ``tz``: the budget day it belongs to."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} is a naive datetime; a budget day needs an aware one")
    return moment.astimezone(tz).date()


@dataclass(frozen=True, slots=True)
class Reservation:
    """Money set aside for one action on one budget day (``amount_usd`` as of when it was read)."""

    id: str
    category: str
    budget_day: date
    amount_usd: float
    critical: bool = False
    unit_id: str | None = None


@dataclass(frozen=True, slots=True)
class Blocked:
    """A refused reservation, with the sentence that says why."""

    category: str
    budget_day: date
    amount_usd: float
    available_usd: float
    reason: str


def format_usd(value: float) -> str:
    """Money for people: cents when exact, otherwise up to 6 decimals."""
    value = round(value, 6)
    if math.isclose(value, round(value, 2), abs_tol=EPSILON):
        return f"${value:.2f}"
    return "$" + f"{value:.6f}".rstrip("0")


def _amount(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what}: expected a finite number of USD, got {value!r}")
    if value < 0:
        raise ValueError(f"{what}: {value} is negative")
    return round(float(value), 6)


@dataclass(frozen=True, slots=True)
class Limits:
    """A budget day's limits: the configuration, with any override set at run time applied.

    ``daily`` is the day's total, ``reserve`` its part held back for critical work
    (``budget.reserve_fraction`` of ``daily``), ``categories`` each allocated category's USD
    limit: an override's amount, else its share of ``daily``. ``overrides`` are the overrides in
    force, by category (None: the daily total)."""

    daily: float
    reserve: float
    categories: dict[str, float]
    overrides: dict[str | None, BudgetOverride]


def override_dict(override: BudgetOverride | None) -> dict[str, Any] | None:
    """An override as shown by ``status``: value, who, when, and whether it is standing or for one day."""
    if override is None:
        return None
    return {"value": override.amount_usd, "by": override.set_by, "at": override.set_at.isoformat(),
            "standing": override.standing,
            "budget_day": None if override.budget_day is None else override.budget_day.isoformat(),
            "from_day": override.from_day.isoformat()}


@dataclass(frozen=True, slots=True)
class _Day:
    """One budget day's figures, read inside the caller's transaction."""

    totals: dict[str, LedgerTotals]
    limits: dict[str, float]
    daily: float
    reserve: float

    def committed(self, category: str) -> float:
        totals = self.totals.get(category)
        return totals.committed_usd if totals else 0.0

    @property
    def day_committed(self) -> float:
        return round(sum(t.committed_usd for t in self.totals.values()), 6)

    @property
    def reserve_used(self) -> float:
        """What critical work committed past its categories' limits (categories with no limit count whole)."""
        return round(sum(max(0.0, t.committed_usd - self.limits.get(c, 0.0)) for c, t in self.totals.items()), 6)

    @property
    def pool(self) -> float:
        return round(self.daily - self.reserve, 6)

    @property
    def reserve_left(self) -> float:
        return round(max(0.0, self.reserve - self.reserve_used), 6)

    @property
    def pool_left(self) -> float:
        """What ordinary work may still be granted today: the day's money not yet committed, less the
        reserve still held back. Spending past a category's limit (an overspend, or critical work)
        counts against the day too, so an overspent day has nothing left (negative)."""
        return round(self.daily - self.day_committed - self.reserve_left, 6)

    def available(self, category: str, critical: bool = False) -> float:
        """What one more request in ``category`` could be granted."""
        if category not in self.limits:
            return 0.0
        room = max(0.0, self.limits[category] - self.committed(category))
        ordinary = max(0.0, min(room, self.pool_left))
        if not critical:
            return round(ordinary, 6)
        return round(ordinary + self.reserve_left if self.pool_left > -EPSILON else 0.0, 6)


class BudgetLedger:
    """Reserve, extend, settle and release money against the daily per-category budget.

    Safe to use from several asyncio tasks sharing one :class:`Store` (each call is one
    synchronous transaction) and from several threads or processes with their own
    stores on the same file (``BEGIN IMMEDIATE`` serialises the check and the write).
    """

    def __init__(self, store: Store, budget: BudgetSettings) -> None:
        """Keep the ledger in ``store`` under the limits of ``budget``."""
        self.store = store
        self.budget = budget

    # ---------------------------------------------------------------- reading

    def limits(self, budget_day: date) -> Limits:
        """``budget_day``'s limits: the configured ones, with the overrides set at run time applied
        (``Runtime.set_budget``). A daily total set by hand scales the categories that have no
        override of their own, and the reserve, by their configured shares."""
        overrides = self.store.budget_overrides(budget_day)
        daily = overrides[None].amount_usd if None in overrides else self.budget.daily_usd
        assert daily is not None
        categories = {}
        for category, share in self.budget.allocations.items():
            override = overrides.get(category)
            value = override.amount_usd if override is not None else daily * share
            categories[category] = round(float(value or 0.0), 6)
        return Limits(round(daily, 6), round(daily * self.budget.reserve_fraction, 6), categories, overrides)

    def limit(self, category: str, budget_day: date) -> float:
        """``category``'s USD limit on ``budget_day`` (0 for an unknown category)."""
        return self.limits(budget_day).categories.get(category, 0.0)

    def _day(self, budget_day: date) -> _Day:
        limits = self.limits(budget_day)
        return _Day(self.store.ledger_totals(budget_day), limits.categories, limits.daily, limits.reserve)

    def _check(self, day: _Day | None, category: str, budget_day: date, amount: float, critical: bool) -> Blocked | None:
        """None if ``amount`` more fits in ``category``; otherwise why not (``day`` may be None for a zero amount)."""
        if category not in self.budget.allocations:
            known = ", ".join(sorted(self.budget.allocations)) or "none"
            return Blocked(
                category,
                budget_day,
                amount,
                0.0,
                f"{category}: no budget allocation for this category (known categories: {known}); "
                "add it to budget.allocations",
            )
        if amount <= EPSILON:
            return None
        assert day is not None
        limit = day.limits[category]
        committed = day.committed(category)
        room = round(limit - committed, 6)
        pool_left = day.pool_left
        if not critical:
            if committed + amount > limit + EPSILON:
                return Blocked(
                    category,
                    budget_day,
                    amount,
                    day.available(category),
                    f"{category}: {format_usd(max(0.0, room))} left of {format_usd(limit)}, needs {format_usd(amount)}",
                )
            if amount > pool_left + EPSILON:
                return Blocked(
                    category,
                    budget_day,
                    amount,
                    day.available(category),
                    f"{category}: the day's budget has {format_usd(max(0.0, pool_left))} left of {format_usd(day.pool)} for "
                    f"ordinary work ({format_usd(day.reserve)} reserve held back), needs {format_usd(amount)}",
                )
            return None
        from_pool = min(amount, max(0.0, room))
        from_reserve = round(amount - from_pool, 6)
        reserve_left = round(day.reserve - day.reserve_used, 6)
        if from_pool > pool_left + EPSILON or from_reserve > reserve_left + EPSILON:
            return Blocked(
                category,
                budget_day,
                amount,
                day.available(category, critical=True),
                f"{category} (critical): {format_usd(max(0.0, room))} left of {format_usd(limit)} plus "
                f"{format_usd(max(0.0, reserve_left))} left of the {format_usd(day.reserve)} reserve, needs {format_usd(amount)}",
            )
        return None

    # ---------------------------------------------------------------- reserving

    def reserve(
        self,
        category: str,
        amount_usd: float,
        *,
        budget_day: date,
        now: datetime,
        unit_id: str | None = None,
        critical: bool = False,
        note: str | None = None,
    ) -> Reservation | Blocked:
        """Set ``amount_usd`` aside in ``category`` on ``budget_day``, or say why not (see the module rules)."""
        amount = _amount(amount_usd, "amount_usd")
        with self.store.transaction(immediate=True):
            # A free action needs no look at the day's figures: zero always fits a known category.
            day = self._day(budget_day) if amount > EPSILON else None
            blocked = self._check(day, category, budget_day, amount, critical)
            if blocked is not None:
                return blocked
            reservation_id = uuid.uuid4().hex
            self.store.append_ledger_entry(
                budget_day=budget_day,
                category=category,
                kind="reserve",
                amount_usd=amount,
                reservation_id=reservation_id,
                unit_id=unit_id,
                note=note,
                now=now,
                critical=critical,
            )
        return Reservation(reservation_id, category, budget_day, amount, critical, unit_id)

    def _entries(self, reservation: Reservation | str) -> list[LedgerEntry]:
        reservation_id = reservation if isinstance(reservation, str) else reservation.id
        entries = self.store.ledger_entries(reservation_id=reservation_id)
        if not entries or entries[0].kind != "reserve":
            raise NotFoundError(f"no budget reservation with id {reservation_id!r} in the ledger.")
        return entries

    @staticmethod
    def _from_entries(entries: list[LedgerEntry]) -> Reservation:
        first = entries[0]
        amount = round(sum(e.amount_usd for e in entries if e.kind == "reserve"), 6)
        return Reservation(first.reservation_id, first.category, first.budget_day, amount, first.critical, first.unit_id)

    @staticmethod
    def _closed(entries: list[LedgerEntry]) -> LedgerEntry | None:
        return next((e for e in entries if e.kind in ("settle", "release")), None)

    def reservation(self, reservation_id: str) -> Reservation:
        """The reservation with its current (extended) amount; :class:`NotFoundError` if unknown."""
        return self._from_entries(self._entries(reservation_id))

    def is_open(self, reservation: Reservation | str) -> bool:
        """Whether the reservation is still outstanding (neither settled nor released)."""
        return self._closed(self._entries(reservation)) is None

    def extend(self, reservation: Reservation, new_total_usd: float, now: datetime) -> bool:
        """Grow an open reservation to ``new_total_usd`` under the same rules; False if it cannot.

        Called before each LLM call, so an action's actual spend never passes what the
        ledger granted. A total at or below the current amount is a no-op (True); a
        closed reservation cannot grow (False).
        """
        new_total = _amount(new_total_usd, "new_total_usd")
        with self.store.transaction(immediate=True):
            entries = self._entries(reservation)
            if self._closed(entries) is not None:
                return False
            current = self._from_entries(entries)
            delta = round(new_total - current.amount_usd, 6)
            if delta <= EPSILON:
                return True
            day = self._day(current.budget_day)
            if self._check(day, current.category, current.budget_day, delta, current.critical) is not None:
                return False
            self.store.append_ledger_entry(
                budget_day=current.budget_day,
                category=current.category,
                kind="reserve",
                amount_usd=delta,
                reservation_id=current.id,
                unit_id=current.unit_id,
                note=f"extended to {format_usd(new_total)}",
                now=now,
                critical=current.critical,
            )
        return True

    def settle(self, reservation: Reservation, actual_usd: float, now: datetime, note: str | None = None) -> bool:
        """Close the reservation with the actual spend (the rest is implicitly released).

        Idempotent: settling or releasing an already closed reservation does nothing and
        returns False. Spend above the granted amount is still recorded as spent (money
        that left is a fact) and noted as an overspend.
        """
        return self._close(reservation, "settle", _amount(actual_usd, "actual_usd"), now, note)

    def release(self, reservation: Reservation, now: datetime, note: str | None = None) -> bool:
        """Close the reservation with no spend (the action never ran); idempotent like :meth:`settle`."""
        return self._close(reservation, "release", 0.0, now, note)

    def _close(self, reservation: Reservation, kind: str, amount: float, now: datetime, note: str | None) -> bool:
        with self.store.transaction(immediate=True):
            entries = self._entries(reservation)
            if self._closed(entries) is not None:
                return False
            current = self._from_entries(entries)
            if amount > current.amount_usd + EPSILON:
                overspend = f"overspent: granted {format_usd(current.amount_usd)}, spent {format_usd(amount)}"
                note = f"{note}; {overspend}" if note else overspend
            self.store.append_ledger_entry(
                budget_day=current.budget_day,
                category=current.category,
                kind=kind,
                amount_usd=amount,
                reservation_id=current.id,
                unit_id=current.unit_id,
                note=note,
                now=now,
                critical=current.critical,
                held_usd=current.amount_usd,
            )
        return True

    def open_reservations(self, budget_day: date | None = None) -> list[Reservation]:
        """Outstanding reservations (e.g. left by a crash), oldest first, with current amounts."""
        with self.store.transaction(immediate=False):
            return [self._from_entries(self._entries(rid)) for rid in self.store.open_reservation_ids(budget_day)]

    # ---------------------------------------------------------------- queries

    def spent(self, category: str | None = None, *, budget_day: date) -> float:
        """Settled spend on ``budget_day`` (one category, or all)."""
        totals = self.store.ledger_totals(budget_day)
        return round(sum(t.spent_usd for c, t in totals.items() if category is None or c == category), 6)

    def reserved(self, category: str | None = None, *, budget_day: date) -> float:
        """Outstanding reservations on ``budget_day`` (one category, or all)."""
        totals = self.store.ledger_totals(budget_day)
        return round(sum(t.reserved_usd for c, t in totals.items() if category is None or c == category), 6)

    def committed(self, category: str | None = None, *, budget_day: date) -> float:
        """Settled plus outstanding on ``budget_day`` (one category, or all)."""
        totals = self.store.ledger_totals(budget_day)
        return round(sum(t.committed_usd for c, t in totals.items() if category is None or c == category), 6)

    def available(self, category: str, budget_day: date, *, critical: bool = False) -> float:
        """The largest reservation ``category`` could get now (0 for an unknown category)."""
        with self.store.transaction(immediate=False):
            return self._day(budget_day).available(category, critical)

    def status(self, budget_day: date) -> dict[str, Any]:
        """The day's budget: per category limit, spent, reserved, available (and ``override``: value, by,
        at, standing, budget_day, from_day, when a limit set at run time applies); the daily total (and
        ``daily_override``, or None); totals; the reserve."""
        with self.store.transaction(immediate=False):
            limits = self.limits(budget_day)
            day = _Day(self.store.ledger_totals(budget_day), limits.categories, limits.daily, limits.reserve)
        categories: dict[str, dict[str, Any]] = {}
        for category in sorted(set(day.limits) | set(day.totals)):
            totals = day.totals.get(category, LedgerTotals(category, 0.0, 0.0))
            override = limits.overrides.get(category)
            categories[category] = {
                "limit": day.limits.get(category, 0.0),
                "spent": totals.spent_usd,
                "reserved": totals.reserved_usd,
                "available": day.available(category),
            }
            if override is not None:  # only then: a category at its configured limit has the four keys
                categories[category]["override"] = override_dict(override)
        return {
            "budget_day": budget_day.isoformat(),
            "daily_usd": round(day.daily, 6),
            "daily_override": override_dict(limits.overrides.get(None)),
            "categories": categories,
            "totals": {
                "limit": day.pool,
                "spent": round(sum(c["spent"] for c in categories.values()), 6),
                "reserved": round(sum(c["reserved"] for c in categories.values()), 6),
                "available": round(max(0.0, min(day.pool_left, sum(c["available"] for c in categories.values()))), 6),
            },
            "reserve": {
                "limit": round(day.reserve, 6),
                "used": day.reserve_used,
                "available": day.reserve_left,
            },
        }
