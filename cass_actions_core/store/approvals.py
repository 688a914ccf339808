"""Approvals: a request for a human yes on one step of a unit, its answer, its withdrawal or its expiry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cass_actions_core.store.connection import StoreBase
from cass_actions_core.store.errors import NotFoundError, StoreError
from cass_actions_core.store.rows import ApprovalRow, _approval
from cass_actions_core.store.values import _new_id, _ts
from cass_actions_core.store.vocabulary import APPROVAL_STATUSES


class ApprovalsMixin(StoreBase):
    """Requesting, answering, listing and expiring approvals."""

    def request_approval(
        self,
        unit_id: str,
        step_index: int,
        action_id: str,
        reason: str | None,
        now: datetime,
        expires_at: datetime,
    ) -> ApprovalRow:
        """Ask for a human yes on one step; returns the pending request if one already exists."""
        now_s = _ts(now, "now")
        expires_s = _ts(expires_at, "expires_at")
        with self.transaction(immediate=True):
            existing = self._one(
                "SELECT * FROM approvals WHERE daemon_id = ? AND unit_id = ? AND step_index = ? AND status = 'pending'",
                (self.daemon_id, unit_id, int(step_index)),
            )
            if existing is not None:
                return self._map(_approval, existing)
            row = self._insert_for_unit(
                "INSERT INTO approvals (id, daemon_id, unit_id, step_index, action_id, status, reason, requested_at,"
                " expires_at, resolved_at, resolved_by, note) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, NULL, NULL, NULL)"
                " RETURNING *",
                (_new_id(), self.daemon_id, unit_id, int(step_index), action_id, reason, now_s, expires_s), unit_id,
                f"cannot request approval: no work unit with id {unit_id!r}.",
            ).fetchone()
        assert row is not None
        return self._map(_approval, row)

    def get_approval(self, approval_id: str) -> ApprovalRow | None:
        """The approval with this id, or None."""
        row = self._one("SELECT * FROM approvals WHERE daemon_id = ? AND id = ?", (self.daemon_id, approval_id))
        return None if row is None else self._map(_approval, row)

    def resolve_approval(
        self, approval_id: str, approved: bool, by: str, note: str | None, now: datetime
    ) -> ApprovalRow:
        """Answer a pending approval (a human answer counts even if its expiry time has passed).

        Raises :class:`NotFoundError` for an unknown id and :class:`StoreError` if it was
        already answered or expired.
        """
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            current = self.get_approval(approval_id)
            if current is None:
                raise NotFoundError(f"no approval with id {approval_id!r} (see `cass-actions approvals`).")
            if current.status != "pending":
                when = current.resolved_at.isoformat() if current.resolved_at else "?"
                by_whom = f" by {current.resolved_by}" if current.resolved_by else ""
                raise StoreError(f"approval {approval_id!r} is already {current.status} (at {when}{by_whom}).")
            self._x(
                "UPDATE approvals SET status = ?, resolved_at = ?, resolved_by = ?, note = ? WHERE daemon_id = ? AND id = ?",
                ("approved" if approved else "rejected", now_s, by, note, self.daemon_id, approval_id),
            )
            resolved = self.get_approval(approval_id)
        assert resolved is not None
        return resolved

    def list_approvals(self, status: str | None = None) -> list[ApprovalRow]:
        """Approvals (optionally of one status), oldest request first."""
        if status is not None and status not in APPROVAL_STATUSES:
            raise ValueError(f"approval status {status!r} is not one of {', '.join(APPROVAL_STATUSES)}")
        sql = "SELECT * FROM approvals WHERE daemon_id = ?"
        params: tuple[Any, ...] = (self.daemon_id,)
        if status is not None:
            sql += " AND status = ?"
            params = (self.daemon_id, status)
        return [self._map(_approval, row) for row in self._all(sql + f" ORDER BY {self._d.ts('requested_at')}, {self._d.tiebreak}", params)]

    def approval_for(self, unit_id: str, step_index: int) -> ApprovalRow | None:
        """The latest approval requested for this unit step, whatever its status, or None."""
        row = self._one(
            "SELECT * FROM approvals WHERE daemon_id = ? AND unit_id = ? AND step_index = ?"
            f" ORDER BY {self._d.ts('requested_at')} DESC, {self._d.tiebreak} DESC LIMIT 1",
            (self.daemon_id, unit_id, int(step_index)),
        )
        return None if row is None else self._map(_approval, row)

    def withdraw_approvals(self, unit_id: str, by: str, note: str | None, now: datetime) -> list[ApprovalRow]:
        """Close the unit's pending approvals as ``expired`` (its unit was cancelled: nothing is left
        to answer), recording ``by`` and ``note``; returns them."""
        now_s = _ts(now, "now")
        with self.transaction(immediate=True):
            pending = [row["id"] for row in self._all(
                "SELECT id FROM approvals WHERE daemon_id = ? AND unit_id = ? AND status = 'pending'", (self.daemon_id, unit_id))]
            self._db.executemany(
                "UPDATE approvals SET status = 'expired', resolved_at = ?, resolved_by = ?, note = ? WHERE daemon_id = ? AND id = ?",
                [(now_s, by, note, self.daemon_id, approval_id) for approval_id in pending],
            )
            closed = [self.get_approval(approval_id) for approval_id in pending]
        return [a for a in closed if a is not None]

    def expire_approvals(self, now: datetime) -> list[ApprovalRow]:
        """Mark pending approvals whose ``expires_at <= now`` as expired; returns them."""
        now_s = _ts(now, "now")
        sql = "SELECT * FROM approvals WHERE daemon_id = ? AND status = 'pending'"
        # Compare as datetimes in Python: exact, whatever offsets the rows carry.
        if not self.in_transaction and not any(a.expires_at <= now for a in map(_approval, self._all(sql, (self.daemon_id,)))):
            return []  # nothing due (every tick, nearly always): no write transaction, no commit
        with self.transaction(immediate=True):
            due = [a for a in map(_approval, self._all(sql, (self.daemon_id,))) if a.expires_at <= now]
            self._db.executemany(
                "UPDATE approvals SET status = 'expired', resolved_at = ?, resolved_by = 'expiry' WHERE daemon_id = ? AND id = ?",
                [(now_s, self.daemon_id, a.id) for a in due],
            )
            expired = [self.get_approval(a.id) for a in due]
        return [a for a in expired if a is not None]
