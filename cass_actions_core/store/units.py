"""Day plans, work units and their state machine: every status change is checked against
:data:`~cass_actions_core.store.ALLOWED_TRANSITIONS` and recorded as a transition in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from cass_actions_core.store.connection import StoreBase
from cass_actions_core.store.errors import NotFoundError, StoreError
from cass_actions_core.store.rows import (
    PlanRow,
    UnitBrief,
    TransitionRow,
    UnitRow,
    _plan,
    _unit_brief,
    _transition,
    _unit,
)
from cass_actions_core.store.values import _check_phase, _day, _day_phase_filter, _dt, _dt_opt, _json, _money, _new_id, _ts, _ts_opt
from cass_actions_core.store.vocabulary import (
    _PHASE_ORDER_SQL,
    ALLOWED_TRANSITIONS,
    PLAN_SOURCES,
    REASON_REQUIRED,
    TERMINAL_STATUSES,
    UNIT_STATUSES,
)

#: Unit columns that :meth:`Store.set_unit_status` may change besides status and reason.
_STATUS_FIELDS: frozenset[str] = frozenset({"started_at", "finished_at", "not_before", "next_step", "data"})


class UnitsMixin(StoreBase):
    """Plans, units, their transitions and the scheduler's view of the queue."""

    # ---------------------------------------------------------------- plans

    def save_plan(
        self,
        local_date: date,
        source: str,
        reason: str | None,
        intention: str | None,
        data: dict[str, Any],
        now: datetime,
    ) -> None:
        """Store ``local_date``'s plan, replacing any earlier plan for that date (F9)."""
        if source not in PLAN_SOURCES:
            raise ValueError(f"plan source {source!r} is not one of {', '.join(PLAN_SOURCES)}")
        with self.transaction(immediate=True):
            self._x(
                "INSERT INTO plans (daemon_id, local_date, created_at, source, reason, intention, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (daemon_id, local_date) DO UPDATE SET created_at = excluded.created_at, source = excluded.source,"
                " reason = excluded.reason, intention = excluded.intention, data = excluded.data",
                (self.daemon_id, _day(local_date, "local_date"), _ts(now, "now"), source, reason, intention, _json(data)),
            )

    def get_plan(self, local_date: date) -> PlanRow | None:
        """The plan saved for ``local_date``, or None (so a restart never plans a date twice: F5)."""
        row = self._one("SELECT * FROM plans WHERE daemon_id = ? AND local_date = ?",
                        (self.daemon_id, _day(local_date, "local_date")))
        if row is None:
            return None
        return self._map(_plan, row)

    def plan_source(self, local_date: date) -> str | None:
        """Where ``local_date``'s plan came from (``llm``, ``fallback`` ...), or None without a plan
        (one column, not the plan document: every work summary names it)."""
        row = self._one("SELECT source FROM plans WHERE daemon_id = ? AND local_date = ?",
                        (self.daemon_id, _day(local_date, "local_date")))
        return None if row is None else str(row[0])

    # ---------------------------------------------------------------- units

    def insert_unit(
        self,
        *,
        local_date: date,
        phase: str,
        template_id: str,
        name: str,
        category: str,
        steps: list[dict[str, Any]],
        now: datetime,
        priority: int = 2,
        position: int = 0,
        estimated_cost_usd: float = 0.0,
        status: str = "planned",
        reason: str | None = None,
        focus: str | None = None,
        motivation: str | None = None,
        requires_idle: bool = False,
        not_before: datetime | None = None,
        data: dict[str, Any] | None = None,
        unit_id: str | None = None,
    ) -> UnitRow:
        """Create a unit (status ``planned`` or ``queued``) and record its creation as a transition."""
        if status not in ("planned", "queued"):
            raise ValueError(f"a new unit starts as 'planned' or 'queued', not {status!r}")
        _check_phase(phase)
        unit_id = unit_id or _new_id()
        now_s = _ts(now, "now")
        clean_steps = [_normalise_step(step, i) for i, step in enumerate(steps)]
        with self.transaction(immediate=True):
            # Checked first rather than caught: a failed statement would abort a PostgreSQL transaction.
            # Unit ids are unique across daemons (one PostgreSQL database holds many).
            if self._one("SELECT 1 FROM units WHERE id = ?", (unit_id,)) is not None:
                raise StoreError(f"a work unit with id {unit_id!r} already exists.")
            self._x(
                "INSERT INTO units (id, daemon_id, local_date, phase, template_id, name, category, priority,"
                " position, status, reason, focus, motivation, requires_idle, steps, estimated_cost_usd,"
                " next_step, created_at, updated_at, started_at, finished_at, not_before, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, NULL, NULL, ?, ?)",
                (
                    unit_id,
                    self.daemon_id,
                    _day(local_date, "local_date"),
                    phase,
                    template_id,
                    name,
                    category,
                    int(priority),
                    int(position),
                    status,
                    reason,
                    focus,
                    motivation,
                    1 if requires_idle else 0,
                    _json(clean_steps),
                    _money(estimated_cost_usd, "estimated_cost_usd"),
                    now_s,
                    now_s,
                    _ts_opt(not_before, "not_before"),
                    _json(data or {}),
                ),
            )
            self._record_transition(unit_id, now_s, None, status, reason)
            unit = self.get_unit(unit_id)
        assert unit is not None
        return unit

    def get_unit(self, unit_id: str) -> UnitRow | None:
        """The unit with this id, or None."""
        row = self._one("SELECT * FROM units WHERE daemon_id = ? AND id = ?", (self.daemon_id, unit_id))
        return None if row is None else self._map(_unit, row)

    def _require_unit(self, unit_id: str) -> UnitRow:
        unit = self.get_unit(unit_id)
        if unit is None:
            raise NotFoundError(f"no work unit with id {unit_id!r} in {self.path}.")
        return unit

    def list_units(
        self,
        local_date: date | None = None,
        phase: str | None = None,
        statuses: Iterable[str] | None = None,
        template_id: str | None = None,
    ) -> list[UnitRow]:
        """Units matching every given filter, in run order: date, phase, priority, position, creation."""
        where, params = _day_phase_filter(self.daemon_id, local_date, phase)
        if statuses is not None:
            wanted = [statuses] if isinstance(statuses, str) else list(statuses)
            unknown = [s for s in wanted if s not in UNIT_STATUSES]
            if unknown:
                raise ValueError(f"unknown unit status(es): {', '.join(unknown)}")
            if not wanted:
                return []
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if template_id is not None:
            where.append("template_id = ?")
            params.append(template_id)
        sql = "SELECT * FROM units"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY local_date, {_PHASE_ORDER_SQL}, priority, position, {self._d.ts('created_at')}, {self._d.tiebreak}"
        return [self._map(_unit, row) for row in self._all(sql, params)]

    def unit_briefs(self, status: str = "queued") -> list[UnitBrief]:
        """The units in ``status``, in run order, as the few columns the scheduler looks at on every tick.

        Cheaper than :meth:`list_units` for a long queue or a day's planned units: no JSON
        document, no whole rows; the scheduler reads the whole row only of a unit it is
        about to run, queue or expire.
        """
        if status not in UNIT_STATUSES:
            raise ValueError(f"unknown unit status {status!r}")
        d = self._d
        rows = self._all(
            f"SELECT id, local_date, phase, category, not_before, requires_idle, {d.json_text('data', 'deadline')}"
            f" AS deadline FROM units WHERE daemon_id = ? AND status = ? ORDER BY local_date, {_PHASE_ORDER_SQL},"
            f" priority, position, {d.ts('created_at')}, {d.tiebreak}", (self.daemon_id, status)
        )
        return [self._map(_unit_brief, row) for row in rows]

    def delete_units_for_plan(
        self, local_date: date, statuses: Iterable[str] = ("planned", "queued"),
        keep_sources: Iterable[str] = ("trigger", "run-action"),
    ) -> list[UnitRow]:
        """Remove ``local_date``'s units that never started, before a new plan replaces them (F9).

        Only units in ``statuses`` that have no start time, no action runs and no
        approvals are removed: anything that began, or that a human answered, stays.
        Units whose ``data.source`` is in ``keep_sources`` (queued by hand, not by a
        plan) are kept too. Returns the removed units so the caller can report them.
        """
        keep = list(keep_sources) or [""]
        placeholders = ", ".join("?" * len(keep))
        wanted = list(statuses)
        unknown = [s for s in wanted if s not in UNIT_STATUSES]
        if unknown:
            raise ValueError(f"unknown unit status(es): {', '.join(unknown)}")
        if not wanted:
            return []
        with self.transaction(immediate=True):
            rows = self._all(
                "SELECT * FROM units u WHERE daemon_id = ? AND local_date = ? AND status IN "
                f"({', '.join('?' * len(wanted))}) AND started_at IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM action_runs r WHERE r.unit_id = u.id)"
                " AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.unit_id = u.id)"
                f" AND coalesce({self._d.json_text('u.data', 'source')}, '') NOT IN (" + placeholders + ")",
                [self.daemon_id, _day(local_date, "local_date"), *wanted, *keep],
            )
            removed = [self._map(_unit, row) for row in rows]
            self._db.executemany("DELETE FROM units WHERE daemon_id = ? AND id = ?",
                                 [(self.daemon_id, u.id) for u in removed])
        return removed

    def set_unit_status(
        self, unit_id: str, to_status: str, *, reason: str | None, now: datetime, current: UnitRow | None = None,
        **fields: Any,
    ) -> UnitRow:
        """Move a unit to ``to_status`` and record the transition, atomically.

        Raises :class:`ValueError` for a move the state machine does not allow, or a
        park/expiry/cancel/abandon without a reason. ``fields`` may set ``started_at``,
        ``finished_at``, ``not_before`` (aware datetimes or None), ``next_step`` and
        ``data``. Starting to run stamps ``started_at`` (first time only) and reaching a
        terminal status stamps ``finished_at``, unless given.

        ``current``: the unit as the caller last wrote it (the scheduler, which alone writes
        a unit it runs), which saves reading it again. The update still applies only while
        the row's status is ``current.status``; if another writer moved it meanwhile, the
        row is read again and the move checked against what it is now.
        """
        if to_status not in UNIT_STATUSES:
            raise ValueError(f"unknown unit status {to_status!r}")
        extra = set(fields) - _STATUS_FIELDS
        if extra:
            raise TypeError(f"set_unit_status cannot change {', '.join(sorted(extra))}")
        if to_status in REASON_REQUIRED and not (reason and reason.strip()):
            raise ValueError(f"moving unit {unit_id} to {to_status!r} needs a reason a user can read")
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            if current is not None and current.id == unit_id and to_status in ALLOWED_TRANSITIONS[current.status]:
                moved = self._move(current, to_status, reason, now_s, fields)
                if moved is not None:
                    return moved
            unit = self._require_unit(unit_id)
            if to_status not in ALLOWED_TRANSITIONS[unit.status]:
                allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[unit.status])) or "none: it is terminal"
                raise ValueError(
                    f"unit {unit_id} ({unit.template_id}) cannot go from {unit.status!r} to {to_status!r} "
                    f"(allowed: {allowed})"
                )
            moved = self._move(unit, to_status, reason, now_s, fields)
            assert moved is not None  # read under the write lock: its status is what the update expects
            return moved

    def _move(self, unit: UnitRow, to_status: str, reason: str | None, now_s: str, fields: dict[str, Any]) -> UnitRow | None:
        """Write the move of ``unit`` (as read) to ``to_status``, only while its row still has ``unit.status``;
        the updated row, or None when the row's status is not that any more (inside the caller's transaction)."""
        sets: dict[str, Any] = {"status": to_status, "reason": reason, "updated_at": now_s}
        # The same changes as row values, so the updated row needs no second read.
        values: dict[str, Any] = {"status": to_status, "reason": reason, "updated_at": _dt(now_s)}
        if to_status == "running" and unit.started_at is None and "started_at" not in fields:
            sets["started_at"], values["started_at"] = now_s, values["updated_at"]
        if to_status in TERMINAL_STATUSES and "finished_at" not in fields:
            sets["finished_at"], values["finished_at"] = now_s, values["updated_at"]
        for name, value in fields.items():
            if name in ("started_at", "finished_at", "not_before"):
                sets[name] = _ts_opt(value, name)
                values[name] = _dt_opt(sets[name])
            elif name == "next_step":
                sets[name] = values[name] = self._valid_step(unit, value)
            elif name == "data":
                values[name] = dict(value) if value is not None else {}
                sets[name] = _json(values[name])
        assignments = ", ".join(f"{name} = ?" for name in sets)
        cursor = self._x(f"UPDATE units SET {assignments} WHERE daemon_id = ? AND id = ? AND status = ?",
                         (*sets.values(), self.daemon_id, unit.id, unit.status))
        if cursor.rowcount != 1:
            return None
        self._record_transition(unit.id, now_s, unit.status, to_status, reason)
        return replace(unit, **values)

    def claim_unit(self, unit_id: str, now: datetime) -> UnitRow:
        """Move a ``queued`` unit to ``running`` for the caller, who is about to run it; returns the row as moved.

        One guarded statement (``UPDATE … WHERE status = 'queued' RETURNING *``) moves it, so two
        workers can never both start one unit (on PostgreSQL the row is first taken with ``SELECT …
        FOR UPDATE SKIP LOCKED`` in the same transaction, so a worker skips a unit another is taking,
        even while a daemon's lease changes hands); the loser gets :class:`ValueError`, as it does for
        a unit that is no longer queued (cancelled, claimed and moved on) on either backend.
        """
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            if self._d.name == "postgres" and self._one(
                    "SELECT id FROM units WHERE daemon_id = ? AND id = ? AND status = 'queued' FOR UPDATE SKIP LOCKED",
                    (self.daemon_id, unit_id)) is None:
                raise ValueError(f"unit {unit_id} is not queued (another worker claimed it, or it was moved)")
            row = self._x("UPDATE units SET status = 'running', reason = NULL, updated_at = ?,"
                          " started_at = coalesce(started_at, ?) WHERE daemon_id = ? AND id = ? AND status = 'queued'"
                          " RETURNING *", (now_s, now_s, self.daemon_id, unit_id)).fetchone()
            if row is None:
                raise ValueError(f"unit {unit_id} is not queued (another worker claimed it, or it was moved)")
            self._record_transition(unit_id, now_s, "queued", "running", None)
            return self._map(_unit, row)

    def _record_transition(
        self, unit_id: str, at: str, from_status: str | None, to_status: str, reason: str | None
    ) -> None:
        self._x(
            "INSERT INTO unit_transitions (daemon_id, unit_id, at, from_status, to_status, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (self.daemon_id, unit_id, at, from_status, to_status, reason),
        )

    @staticmethod
    def _valid_step(unit: UnitRow, n: Any) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(unit.steps):
            raise ValueError(f"next_step for unit {unit.id} must be an int in 0..{len(unit.steps)}, got {n!r}")
        return n

    def transitions(self, unit_id: str) -> list[TransitionRow]:
        """Every recorded status change of the unit, oldest first."""
        return [self._map(_transition, row)
                for row in self._all("SELECT * FROM unit_transitions WHERE daemon_id = ? AND unit_id = ?"
                                          " ORDER BY id", (self.daemon_id, unit_id))]

    def set_next_step(self, unit_id: str, n: int, now: datetime) -> UnitRow:
        """Record that the unit's steps before ``n`` are done (a restart resumes at step ``n``)."""
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            unit = self._require_unit(unit_id)
            self._x(
                "UPDATE units SET next_step = ?, updated_at = ? WHERE daemon_id = ? AND id = ?",
                (self._valid_step(unit, n), now_s, self.daemon_id, unit_id),
            )
        return replace(unit, next_step=n, updated_at=_dt(now_s))

    def find_units(self, prefix: str, limit: int = 10) -> list[UnitRow]:
        """Units whose id is ``prefix`` or starts with it (at most ``limit``; the exact id first)."""
        exact = self.get_unit(prefix)
        if exact is not None:
            return [exact]
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._all(f"SELECT * FROM units WHERE daemon_id = ? AND id {self._d.like} ? ESCAPE '\\' ORDER BY id"
                         " LIMIT ?", (self.daemon_id, pattern, int(limit)))
        return [self._map(_unit, row) for row in rows]

    def set_unit_placement(
        self, unit_id: str, *, now: datetime, phase: str | None = None, position: int | None = None,
        priority: int | None = None, not_before: Any = ..., data: dict[str, Any] | None = None,
    ) -> UnitRow:
        """Change where a unit that has not started sits in its date's plan: its phase, its position and
        run-order priority, its earliest start (``not_before``) and its data. Only a ``planned`` or
        ``queued`` unit that never started may move (:class:`ValueError` otherwise); no status changes."""
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            unit = self._require_unit(unit_id)
            if unit.status not in ("planned", "queued") or unit.started_at is not None:
                raise ValueError(f"unit {unit_id} ({unit.template_id}) is {unit.status}"
                                 + (" and has started" if unit.started_at is not None else "") + ": it cannot be moved")
            sets: dict[str, Any] = {"updated_at": now_s}
            values: dict[str, Any] = {"updated_at": _dt(now_s)}
            if phase is not None:
                sets["phase"] = values["phase"] = _check_phase(phase)
            if position is not None:
                sets["position"] = values["position"] = int(position)
            if priority is not None:
                sets["priority"] = values["priority"] = int(priority)
            if not_before is not Ellipsis:
                sets["not_before"] = _ts_opt(not_before, "not_before")
                values["not_before"] = _dt_opt(sets["not_before"])
            if data is not None:
                values["data"] = dict(data)
                sets["data"] = _json(values["data"])
            assignments = ", ".join(f"{name} = ?" for name in sets)
            self._x(f"UPDATE units SET {assignments} WHERE daemon_id = ? AND id = ?",
                    (*sets.values(), self.daemon_id, unit_id))
        return replace(unit, **values)


def _normalise_step(step: dict[str, Any], index: int) -> dict[str, Any]:
    if not isinstance(step, dict) or not isinstance(step.get("action"), str) or not step["action"]:
        raise ValueError(f"steps[{index}] must be a mapping with an 'action' id, got {step!r}")
    params = step.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"steps[{index}].params must be a mapping, got {type(params).__name__}")
    return {"action": step["action"], "params": params, "optional": bool(step.get("optional", False))}
