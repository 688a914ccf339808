"""Persisted events, with increasing ids for ``since_id`` paging."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from cass_actions_core.store.connection import StoreBase
from cass_actions_core.store.rows import EventRow, _event
from cass_actions_core.store.values import _json, _ts


class EventsMixin(StoreBase):
    """Appending and listing events."""

    def append_event(self, type: str, data: dict[str, Any], now: datetime, unit_id: str | None = None) -> int:
        """Persist an event; returns its id (ids increase, so ``since_id`` paging works)."""
        with self.transaction(immediate=True):
            row = self._x(
                "INSERT INTO events (daemon_id, at, type, unit_id, data) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (self.daemon_id, _ts(now, "now"), type, unit_id, _json(data)),
            ).fetchone()
        return int(row[0])

    def list_events(
        self, since_id: int = 0, types: Iterable[str] | None = None, limit: int | None = None
    ) -> list[EventRow]:
        """Events with id greater than ``since_id`` (optionally of the given types), oldest first."""
        sql = "SELECT * FROM events WHERE daemon_id = ? AND id > ?"
        params: list[Any] = [self.daemon_id, since_id]
        if types is not None:
            wanted = [types] if isinstance(types, str) else list(types)
            if not wanted:
                return []
            sql += f" AND type IN ({', '.join('?' * len(wanted))})"
            params.extend(wanted)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [self._map(_event, row) for row in self._all(sql, params)]

    def last_event_id(self) -> int:
        """The newest event's id (0 when there is none): where a live reader starts."""
        row = self._one("SELECT MAX(id) AS id FROM events WHERE daemon_id = ?", (self.daemon_id,))
        return int(row["id"]) if row is not None and row["id"] is not None else 0
