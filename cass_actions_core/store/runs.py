"""Action runs, each keyed by its idempotency key and written *before* its side effect, and what the planner
learns from past runs (costs, durations, template activity)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from cass_actions_core.store.connection import StoreBase
from cass_actions_core.store.errors import NotFoundError, StoreError
from cass_actions_core.store.rows import ActionRunRow, _action_run
from cass_actions_core.store.values import _day, _dt, _json, _money, _ts


class ActionRunsMixin(StoreBase):
    """Recording action runs and reading them back."""

    def begin_action_run(
        self, key: str, unit_id: str, step_index: int, action_id: str, now: datetime
    ) -> ActionRunRow:
        """Record that a step is about to run, BEFORE its side effect.

        If ``key`` was already recorded (a restart reaching the same step), the existing
        row is returned unchanged so the caller can see whether it finished.
        """
        if not key:
            raise ValueError("an action run needs a non-empty idempotency key")
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            cursor = self._insert_for_unit(
                "INSERT INTO action_runs (key, daemon_id, unit_id, step_index, action_id, status, started_at, finished_at,"
                " cost_usd, result, error) VALUES (?, ?, ?, ?, ?, 'started', ?, NULL, 0, NULL, NULL)"
                " ON CONFLICT (key) DO NOTHING",
                (key, self.daemon_id, unit_id, int(step_index), action_id, now_s), unit_id,
                f"cannot record action run {key!r}: no work unit with id {unit_id!r}.",
            )
            if cursor.rowcount == 1:  # new: the row is what was just written
                return ActionRunRow(key=key, unit_id=unit_id, step_index=int(step_index), action_id=action_id,
                                    status="started", started_at=_dt(now_s), finished_at=None, cost_usd=0.0, result=None,
                                    error=None)
            run = self.get_action_run(key)
        assert run is not None
        return run

    def finish_action_run(
        self,
        key: str,
        status: str,
        cost_usd: float,
        result: dict[str, Any] | None,
        error: str | None,
        now: datetime,
    ) -> ActionRunRow:
        """Record a started run's outcome (``completed`` or ``failed``), its cost and result.

        Finishing a run twice raises :class:`StoreError`: an outcome, once written, is
        history.
        """
        if status not in ("completed", "failed"):
            raise ValueError(f"an action run finishes as 'completed' or 'failed', not {status!r}")
        cost = _money(cost_usd, "cost_usd")
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            # Only a started run is finished: the statement says so itself, and only a refusal reads the row.
            row = self._x(
                "UPDATE action_runs SET status = ?, finished_at = ?, cost_usd = ?, result = ?, error = ?"
                " WHERE daemon_id = ? AND key = ? AND status = 'started'"
                " RETURNING key, unit_id, step_index, action_id, started_at",
                (status, now_s, cost, None if result is None else _json(result), error, self.daemon_id, key),
            ).fetchone()
            if row is None:
                run = self.get_action_run(key)
                if run is None:
                    raise NotFoundError(f"no action run with key {key!r} in {self.path}.")
                raise StoreError(
                    f"action run {key!r} already finished as {run.status!r} at "
                    f"{run.finished_at.isoformat() if run.finished_at else '?'}; its outcome is not rewritten."
                )
        return ActionRunRow(key=row[0], unit_id=row[1], step_index=int(row[2]), action_id=row[3], status=status,
                            started_at=_dt(row[4]), finished_at=_dt(now_s), cost_usd=cost, result=result, error=error)

    def withdraw_action_run(self, key: str) -> None:
        """Forget a started run that spent nothing, so its step runs again later (a step that
        yielded to the budget before its first paid call). A finished run is history and stays."""
        with self.transaction(immediate=True):
            run = self.get_action_run(key)
            if run is None:
                raise NotFoundError(f"no action run with key {key!r} in {self.path}.")
            if run.status != "started" or run.cost_usd:
                raise StoreError(f"action run {key!r} is {run.status!r} with ${run.cost_usd:.6f} spent; only a started "
                                 "run that spent nothing can be withdrawn.")
            self._x("DELETE FROM action_runs WHERE daemon_id = ? AND key = ? AND status = 'started'", (self.daemon_id, key))

    def get_action_run(self, key: str) -> ActionRunRow | None:
        """The action run with this idempotency key, or None."""
        row = self._one("SELECT * FROM action_runs WHERE daemon_id = ? AND key = ?", (self.daemon_id, key))
        return None if row is None else self._map(_action_run, row)

    def action_runs_for_unit(self, unit_id: str) -> list[ActionRunRow]:
        """A unit's action runs in step order."""
        rows = self._all(
            "SELECT * FROM action_runs WHERE daemon_id = ? AND unit_id = ?"
            f" ORDER BY step_index, {self._d.ts('started_at')}, {self._d.tiebreak}",
            (self.daemon_id, unit_id),
        )
        return [self._map(_action_run, row) for row in rows]

    def recent_action_runs(self, per_action: int) -> dict[str, list[tuple[float, float]]]:
        """``(cost_usd, minutes)`` of each action's latest ``per_action`` completed runs, newest first.

        What the planner learns costs and durations from (one query for all actions).
        """
        if per_action <= 0:
            return {}
        d = self._d
        rows = self._all(
            "SELECT action_id, cost_usd, minutes FROM ("
            f" SELECT action_id, cost_usd, {d.minutes_between('started_at', 'finished_at')} AS minutes,"
            f" ROW_NUMBER() OVER (PARTITION BY action_id ORDER BY {d.ts('finished_at')} DESC, {d.tiebreak} DESC) AS n"
            " FROM action_runs WHERE daemon_id = ? AND status = 'completed' AND finished_at IS NOT NULL"
            ") AS r WHERE n <= ? ORDER BY action_id, n",
            (self.daemon_id, per_action),
        )
        out: dict[str, list[tuple[float, float]]] = {}
        for row in rows:
            out.setdefault(row["action_id"], []).append((float(row["cost_usd"]), max(0.0, float(row["minutes"] or 0.0))))
        return out

    def template_activity(self, since: date) -> tuple[dict[str, datetime], list[tuple[str, date]]]:
        """Each template's latest unit start (any date), and ``(template, date)`` of units completed since ``since``.

        What the planner's cooldown check and variety score read (two queries for all templates).
        """
        # The latest start as an instant (not the greatest string: offsets may differ).
        starts = {row["template_id"]: _dt(row["started_at"]) for row in self._all(
            "SELECT template_id, started_at FROM (SELECT template_id, started_at, ROW_NUMBER() OVER (PARTITION BY"
            f" template_id ORDER BY {self._d.ts('started_at')} DESC) AS n FROM units WHERE daemon_id = ?"
            " AND started_at IS NOT NULL) AS s WHERE n = 1", (self.daemon_id,))}
        done = [(row["template_id"], date.fromisoformat(row["local_date"])) for row in self._all(
            "SELECT template_id, local_date FROM units WHERE daemon_id = ? AND status = 'completed' AND local_date >= ?",
            (self.daemon_id, _day(since, "since")))]
        return starts, done
