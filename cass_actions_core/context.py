"""The planning context that ``gather_context`` hooks fill with facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass
class PlanningContext:
    """Facts about the daemon right now, gathered from every pack's ``gather_context``.

    ``facts`` maps a key to its value; ``sources`` records which pack set each key (a
    later pack overrides an earlier one, and the override is visible).
    """

    now: datetime
    daemon_id: str
    workspace: Path
    facts: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    #: The ``[packs.<pack>]`` settings of the pack whose hook is running.
    settings: dict[str, Any] = field(default_factory=dict)
    _current_pack: str = "core"

    def set(self, key: str, value: Any) -> None:
        """Set fact ``key`` (``mood``, ``growth_edges``, ``open_questions``, ``last_user_activity`` ...)."""
        self.facts[key] = value
        self.sources[key] = self._current_pack

    def get(self, key: str, default: Any = None) -> Any:
        """The fact ``key``, or ``default``."""
        return self.facts.get(key, default)
