"""Typed views of the JSON formats in ``schemas/``: action definitions and templates.

The JSON Schemas are the source of truth for what a file may contain; these models are
built only from documents that already passed schema validation, so they repeat the
field names and types but none of the constraints.
"""

from __future__ import annotations

from datetime import timedelta
from enum import IntEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PriorityName = Literal["critical", "high", "normal", "low", "idle"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]


class Priority(IntEnum):
    """Scheduling priority; lower runs first (``critical`` may draw on the budget reserve)."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3
    IDLE = 4

    @classmethod
    def of(cls, name: str) -> Priority:
        """The priority named ``name`` (``"normal"`` ...)."""
        return cls[name.upper()]


class LLMOverride(BaseModel):
    """Per-action choice of provider, model, token limit or effort."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    effort: Effort | None = None


class ActionDefinition(BaseModel):
    """One atomic action's metadata, as shipped in a pack's JSON metadata file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    description: str
    tier: int
    category: str
    uses_llm: bool
    estimated_cost_usd: float
    max_cost_usd: float
    max_llm_calls: int = 20
    max_attempts: int = 3
    default_duration_minutes: float
    timeout_seconds: float
    priority: PriorityName
    requires_idle: bool
    requires_approval: bool
    idempotent: bool
    params: dict[str, Any]
    llm: LLMOverride | None = None

    @property
    def namespace(self) -> str:
        """The part of the id before the dot (``journal`` for ``journal.generate_daily``)."""
        return self.id.split(".", 1)[0]


class Step(BaseModel):
    """One step of a template: an action id and its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    optional: bool = False


class TimeWindow(BaseModel):
    """A preferred local-time window; ``end_hour <= start_hour`` wraps midnight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_hour: int
    end_hour: int
    weight: float = 1.0
    weekdays: list[int] | None = None

    def contains(self, hour: int, weekday: int) -> bool:
        """Whether local ``hour`` on ``weekday`` (0 = Monday) falls in the window.

        For a window that wraps midnight the weekday is the day the window started.
        """
        if self.start_hour < self.end_hour:
            inside, start_day = self.start_hour <= hour < self.end_hour, weekday
        elif hour >= self.start_hour:
            inside, start_day = True, weekday
        else:
            inside, start_day = hour < self.end_hour, (weekday - 1) % 7
        return inside and (self.weekdays is None or start_day in self.weekdays)


#: The longest cooldown a template may have (longer ones are refused, not clipped).
MAX_COOLDOWN = timedelta(days=366)


def parse_cooldown(text: str) -> timedelta:
    """``"90m"``, ``"4h"`` or ``"1d"`` as a :class:`~datetime.timedelta`.

    Raises ValueError for a malformed text or one longer than :data:`MAX_COOLDOWN`.
    """
    minutes_per = {"m": 1, "h": 60, "d": 1440}.get(text[-1:]) if text else None
    if minutes_per is None or not text[:-1].isdigit():
        raise ValueError(f"cooldown {text!r}: expected a whole number of minutes, hours or days, such as 90m, 4h or 1d")
    minutes = int(text[:-1]) * minutes_per  # a Python int: no overflow however long the text
    if minutes > MAX_COOLDOWN.total_seconds() / 60:
        raise ValueError(f"cooldown {text!r} is longer than the most allowed, 366d")
    return timedelta(minutes=minutes)


class Template(BaseModel):
    """A work-unit template: ordered steps plus when and how often it may run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    description: str
    category: str
    steps: list[Step]
    preferred_windows: list[TimeWindow] = Field(default_factory=list)
    priority: PriorityName = "normal"
    requires_idle: bool = False
    max_per_day: int = 1
    cooldown: str = "0m"
    tags: list[str] = Field(default_factory=list)

    @field_validator("cooldown")
    @classmethod
    def _cooldown_in_range(cls, value: str) -> str:
        parse_cooldown(value)
        return value

    @property
    def cooldown_delta(self) -> timedelta:
        """The cooldown as a :class:`~datetime.timedelta`."""
        return parse_cooldown(self.cooldown)

    def window_score(self, hour: int, weekday: int) -> float:
        """0.5 with no windows; the best weight of the windows containing the time; else 0."""
        if not self.preferred_windows:
            return 0.5
        weights = [w.weight for w in self.preferred_windows if w.contains(hour, weekday)]
        return max(weights, default=0.0)
