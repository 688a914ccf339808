"""The per-pack key-value area and the scheduler's state values, both JSON."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from cass_actions_core.store.connection import StoreBase
from cass_actions_core.store.values import _json, _ts, _unjson


class StateMixin(StoreBase):
    """Reading and writing kv and state values."""

    # ---------------------------------------------------------------- kv

    def kv_get(self, namespace: str, key: str, default: Any = None) -> Any:
        """A pack's stored value, or ``default``."""
        row = self._one("SELECT value FROM kv WHERE daemon_id = ? AND namespace = ? AND key = ?",
                        (self.daemon_id, namespace, key))
        return default if row is None else _unjson(row["value"])

    def kv_set(self, namespace: str, key: str, value: Any, now: datetime | None = None) -> None:
        """Store a JSON-serialisable value under ``(namespace, key)``."""
        stamp = _ts(now, "now") if now is not None else datetime.now(timezone.utc).isoformat()
        with self.transaction(immediate=True):
            self._x(
                "INSERT INTO kv (daemon_id, namespace, key, value, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (daemon_id, namespace, key)"
                " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (self.daemon_id, namespace, key, _json(value), stamp),
            )

    def kv_delete(self, namespace: str, key: str) -> bool:
        """Remove a value; returns whether it existed."""
        with self.transaction(immediate=True):
            cursor = self._x("DELETE FROM kv WHERE daemon_id = ? AND namespace = ? AND key = ?",
                             (self.daemon_id, namespace, key))
        return cursor.rowcount > 0

    def kv_items(self, namespace: str) -> dict[str, Any]:
        """Every key and value of a namespace, sorted by key."""
        rows = self._all("SELECT key, value FROM kv WHERE daemon_id = ? AND namespace = ? ORDER BY key",
                         (self.daemon_id, namespace))
        return {row["key"]: _unjson(row["value"]) for row in rows}

    # ---------------------------------------------------------------- state

    def get_state(self, key: str, default: Any = None) -> Any:
        """A scheduler state value (paused categories, last phase instance ...), or ``default``."""
        row = self._one("SELECT value FROM state WHERE daemon_id = ? AND key = ?", (self.daemon_id, key))
        return default if row is None else _unjson(row["value"])

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable scheduler state value."""
        with self.transaction(immediate=True):
            self._x("INSERT INTO state (daemon_id, key, value) VALUES (?, ?, ?) ON CONFLICT (daemon_id, key)"
                    " DO UPDATE SET value = excluded.value", (self.daemon_id, key, _json(value)))

    def delete_state(self, key: str) -> bool:
        """Remove a scheduler state value; returns whether it existed."""
        with self.transaction(immediate=True):
            cursor = self._x("DELETE FROM state WHERE daemon_id = ? AND key = ?", (self.daemon_id, key))
        return cursor.rowcount > 0
