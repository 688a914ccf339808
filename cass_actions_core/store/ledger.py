"""The append-only budget ledger rows with their running per-day totals, and the budget limits changed at run
time (overrides). The money logic on top is :mod:`cass_actions_core.ledger`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from cass_actions_core.store.connection import StoreBase
from cass_actions_core.store.rows import BudgetOverride, LedgerEntry, LedgerTotals, _budget_override, _ledger_entry, _ledger_totals
from cass_actions_core.store.values import _day, _dt, _micros, _money, _ts
from cass_actions_core.store.vocabulary import LEDGER_KINDS


class LedgerMixin(StoreBase):
    """Ledger rows, ledger totals and budget overrides (rows are only ever appended)."""

    # ---------------------------------------------------------------- ledger rows

    def append_ledger_entry(
        self,
        *,
        budget_day: date,
        category: str,
        kind: str,
        amount_usd: float,
        reservation_id: str,
        now: datetime,
        unit_id: str | None = None,
        note: str | None = None,
        critical: bool = False,
        held_usd: float | None = None,
    ) -> LedgerEntry:
        """Append one ledger row and update the day's running totals with it, atomically (the only
        write the ledger tables ever get; use BudgetLedger).

        A ``reserve`` row adds to the category's outstanding reservations; a ``settle`` or
        ``release`` row closes its reservation: the reservation's amount leaves the
        outstanding total, and a settle's amount joins the spent total. ``held_usd``: the
        reservation's total, when the caller has just read its rows in this transaction
        (otherwise it is summed here).
        """
        if kind not in LEDGER_KINDS:
            raise ValueError(f"ledger entry kind {kind!r} is not one of {', '.join(LEDGER_KINDS)}")
        day_s = _day(budget_day, "budget_day")
        amount = _money(amount_usd, "amount_usd")
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            if kind == "reserve":
                spent, reserved = 0, _micros(amount)
            else:
                if held_usd is not None:
                    held_micros = _micros(_money(held_usd, "held_usd"))
                else:
                    held = self._one("SELECT coalesce(SUM(CAST(ROUND(amount_usd * 1000000) AS BIGINT)), 0) FROM"
                                     " ledger_entries WHERE daemon_id = ? AND reservation_id = ? AND kind = 'reserve'",
                                     (self.daemon_id, reservation_id))
                    held_micros = int(held[0] if held else 0)
                spent, reserved = (_micros(amount) if kind == "settle" else 0), -held_micros
            entry_id = int(self._x(
                "INSERT INTO ledger_entries (daemon_id, budget_day, category, kind, amount_usd, reservation_id, unit_id,"
                " note, at, critical) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (self.daemon_id, day_s, category, kind, amount, reservation_id, unit_id, note, now_s, 1 if critical else 0),
            ).fetchone()[0])
            if spent or reserved:  # a free action's rows change no total: no write
                self._x(
                    "INSERT INTO ledger_totals (daemon_id, budget_day, category, spent_micros, reserved_micros)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (daemon_id, budget_day, category) DO UPDATE SET"
                    " spent_micros = ledger_totals.spent_micros + excluded.spent_micros,"
                    " reserved_micros = ledger_totals.reserved_micros + excluded.reserved_micros",
                    (self.daemon_id, day_s, category, spent, reserved),
                )
        return LedgerEntry(id=entry_id, budget_day=budget_day, category=category, kind=kind, amount_usd=amount,
                           reservation_id=reservation_id, unit_id=unit_id, note=note, at=_dt(now_s), critical=critical)

    def ledger_entries(
        self,
        *,
        budget_day: date | None = None,
        reservation_id: str | None = None,
        category: str | None = None,
    ) -> list[LedgerEntry]:
        """Ledger rows matching the filters, in the order they were appended."""
        where: list[str] = ["daemon_id = ?"]
        params: list[Any] = [self.daemon_id]
        if budget_day is not None:
            where.append("budget_day = ?")
            params.append(_day(budget_day, "budget_day"))
        if reservation_id is not None:
            where.append("reservation_id = ?")
            params.append(reservation_id)
        if category is not None:
            where.append("category = ?")
            params.append(category)
        sql = "SELECT * FROM ledger_entries WHERE " + " AND ".join(where)
        return [self._map(_ledger_entry, row) for row in self._all(sql + " ORDER BY id", params)]

    def ledger_totals(self, budget_day: date) -> dict[str, LedgerTotals]:
        """Per category on ``budget_day``: settled spend and outstanding (unclosed) reservations.

        Read from the running totals (one row per category), which every ledger append
        updates in its own transaction: the cost does not grow with the day's ledger.
        """
        rows = self._all(
            "SELECT category, spent_micros, reserved_micros FROM ledger_totals WHERE daemon_id = ? AND budget_day = ?"
            " ORDER BY category",
            (self.daemon_id, _day(budget_day, "budget_day")),
        )
        return {row[0]: self._map(_ledger_totals, row) for row in rows}

    def open_reservation_ids(self, budget_day: date | None = None) -> list[str]:
        """Reservation ids with no settle or release row, oldest first."""
        sql = (
            "SELECT reservation_id, MIN(id) AS first FROM ledger_entries e WHERE daemon_id = ? AND kind = 'reserve'"
            " AND NOT EXISTS (SELECT 1 FROM ledger_entries c WHERE c.daemon_id = e.daemon_id"
            " AND c.reservation_id = e.reservation_id"
            " AND c.kind IN ('settle', 'release'))"
        )
        params: tuple[Any, ...] = (self.daemon_id,)
        if budget_day is not None:
            sql += " AND budget_day = ?"
            params = (self.daemon_id, _day(budget_day, "budget_day"))
        sql += " GROUP BY reservation_id ORDER BY first"
        return [row["reservation_id"] for row in self._all(sql, params)]

    # ---------------------------------------------------------------- budget overrides

    def add_budget_override(
        self, *, category: str | None, budget_day: date | None, from_day: date, amount_usd: float | None,
        by: str, now: datetime,
    ) -> BudgetOverride:
        """Record a budget limit set (or, with ``amount_usd`` None, cleared) at run time; rows are only appended."""
        amount = None if amount_usd is None else _money(amount_usd, "amount_usd")
        with self.transaction(immediate=True):
            cursor = self._x(
                "INSERT INTO budget_overrides (daemon_id, category, budget_day, from_day, amount_usd, set_by, set_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (self.daemon_id, category or "", None if budget_day is None else _day(budget_day, "budget_day"),
                 _day(from_day, "from_day"), amount, by, _ts(now, "now")),
            )
            row = cursor.fetchone()
        assert row is not None
        return _budget_override(row)

    def budget_overrides(self, budget_day: date) -> dict[str | None, BudgetOverride]:
        """The overrides in force on ``budget_day``, by category (None: the daily total).

        A row for that very day beats a standing one; among rows of the same kind the latest wins;
        a clear (amount None) removes the override of its kind (a cleared day falls back to the
        standing override, if any)."""
        day_s = _day(budget_day, "budget_day")
        rows = self._all(
            "SELECT * FROM budget_overrides WHERE daemon_id = ? AND (budget_day = ? OR (budget_day IS NULL AND from_day <= ?))"
            " ORDER BY id",
            (self.daemon_id, day_s, day_s),
        )
        standing: dict[str | None, BudgetOverride] = {}
        one_day: dict[str | None, BudgetOverride] = {}
        for row in rows:
            override = _budget_override(row)
            (standing if override.standing else one_day)[override.category] = override
        found = {k: v for k, v in standing.items() if v.amount_usd is not None}
        for key, override in one_day.items():
            if override.amount_usd is not None:
                found[key] = override
        return found

    def budget_override_history(self, limit: int | None = None) -> list[BudgetOverride]:
        """Every recorded budget change (sets and clears), newest first."""
        sql = "SELECT * FROM budget_overrides WHERE daemon_id = ? ORDER BY id DESC"
        params: tuple[Any, ...] = (self.daemon_id,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (self.daemon_id, int(limit))
        return [self._map(_budget_override, row) for row in self._all(sql, params)]
