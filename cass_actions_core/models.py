"""Typed views of the JSON formats in ``schemas/``: action definitions and templates.

The JSON Schemas are the source of truth for what a file may contain; these classes are
built only from documents that already passed schema validation (``from_dict``), so they
repeat the field names and types but none of the constraints. They are plain frozen
dataclasses, not pydantic models: a catalogue of thousands of templates is built in
milliseconds, and ``cass-actions list`` does not import pydantic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from enum import IntEnum
from typing import Any, Literal

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


@dataclass(frozen=True, slots=True)
class LLMOverride:
    """Per-action choice of provider, model, token limit or effort."""

    provider: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    effort: Effort | None = None


@dataclass(frozen=True, slots=True)
class ActionDefinition:
    """One atomic action's metadata, as shipped in a pack's JSON metadata file."""

    id: str
    name: str
    description: str
    tier: int
    category: str
    uses_llm: bool
    estimated_cost_usd: float
    max_cost_usd: float
    default_duration_minutes: float
    timeout_seconds: float
    priority: PriorityName
    requires_idle: bool
    requires_approval: bool
    idempotent: bool
    params: dict[str, Any]
    max_llm_calls: int = 20
    max_attempts: int = 3
    llm: LLMOverride | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ActionDefinition:
        """Build from a schema-valid action definition (``TypeError`` for an unknown or missing field)."""
        values = dict(raw)
        llm = values.pop("llm", None)
        return cls(**values, llm=LLMOverride(**llm) if llm is not None else None)

    def to_dict(self) -> dict[str, Any]:
        """The definition as JSON (every field, defaults included)."""
        return asdict(self)

    @property
    def namespace(self) -> str:
        """The part of the id before the dot (``journal`` for ``journal.generate_daily``)."""
        return self.id.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a template: an action id and its parameters."""

    action: str
    params: dict[str, Any] = field(default_factory=dict)
    optional: bool = False


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A preferred local-time window; ``end_hour <= start_hour`` wraps midnight."""

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


@dataclass(frozen=True, slots=True)
class Template:
    """A work-unit template: ordered steps plus when and how often it may run."""

    id: str
    name: str
    description: str
    category: str
    steps: list[Step]
    preferred_windows: list[TimeWindow] = field(default_factory=list)
    priority: PriorityName = "normal"
    requires_idle: bool = False
    max_per_day: int = 1
    cooldown: str = "0m"
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        parse_cooldown(self.cooldown)  # ValueError for a malformed or too long cooldown

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Template:
        """Build from a schema-valid template (``TypeError`` for an unknown or missing field,
        ``ValueError`` for a bad cooldown)."""
        values = dict(raw)
        steps = [Step(**step) for step in values.pop("steps")]
        windows = [TimeWindow(**w) for w in values.pop("preferred_windows", [])]
        return cls(**values, steps=steps, preferred_windows=windows)

    def to_dict(self) -> dict[str, Any]:
        """The template as JSON (every field, defaults included)."""
        return asdict(self)

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
