"""Request bodies, query value types and the error shape of the HTTP API (pydantic models:
validated, extra fields refused)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from cass_actions_core.store import PHASES, UNIT_STATUSES

#: The earliest and latest dates the API accepts (a daemon's calendar lives well inside them).
FIRST_DATE = date(1970, 1, 1)
LAST_DATE = date(9998, 12, 31)
#: Most money one override may set, in USD.
MAX_AMOUNT_USD = 1_000_000.0
#: Highest position a plan item may be given.
MAX_POSITION = 1_000_000

Phase = Literal["morning", "afternoon", "evening", "night"]
UnitStatus = Literal["planned", "queued", "running", "completed", "failed", "budget_blocked", "awaiting_approval",
                     "expired", "cancelled", "abandoned"]
ApprovalFilter = Literal["pending", "approved", "rejected", "expired", "all"]

assert set(Phase.__args__) == set(PHASES), "Phase must list the store's phases"  # type: ignore[attr-defined]
assert set(UnitStatus.__args__) == set(UNIT_STATUSES), "UnitStatus must list the store's statuses"  # type: ignore[attr-defined]


def _in_range(value: date) -> date:
    if not FIRST_DATE <= value <= LAST_DATE:
        raise ValueError(f"date {value.isoformat()} is out of range ({FIRST_DATE.isoformat()} to {LAST_DATE.isoformat()})")
    return value


def _plain_text(value: str) -> str:
    # A JSON string may hold a lone surrogate ("\ud800"), which no store or log can encode; and NUL.
    if any("\ud800" <= c <= "\udfff" for c in value) or "\x00" in value:
        raise ValueError("text must be valid Unicode without NUL characters")
    return value


Day = Annotated[date, AfterValidator(_in_range)]
Text = Annotated[str, AfterValidator(_plain_text)]
def _not_blank(value: str) -> str:
    # A name such as `by` made of spaces would read as "rejected by    " in the unit's reason.
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


ShortText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_plain_text), AfterValidator(_not_blank)]
LongText = Annotated[str, Field(max_length=4000), AfterValidator(_plain_text)]
Amount = Annotated[StrictInt | StrictFloat, Field(ge=0, le=MAX_AMOUNT_USD, allow_inf_nan=False)]
Position = Annotated[int, Field(ge=0, le=MAX_POSITION)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ResolveBody(_Body):
    """Answer an approval: an optional note and who answers (default ``api``)."""

    note: LongText | None = None
    by: ShortText | None = None


class ReasonBody(_Body):
    """An optional reason, stored with the change."""

    reason: LongText | None = None


class DailyBudgetBody(_Body):
    """Set the daily budget (USD)."""

    amount_usd: Amount


class CategoryBudgetBody(_Body):
    """Set a category's money for a budget day (USD; ``date`` defaults to today)."""

    amount_usd: Amount
    date: Day | None = None


class PlanItemBody(_Body):
    """Add a unit of ``template`` to a date's plan, in ``phase``."""

    template: ShortText
    phase: Phase
    date: Day | None = None
    focus: LongText | None = None
    motivation: LongText | None = None
    params: dict[str, Any] | None = None
    position: Position | None = None


class MoveBody(_Body):
    """Move a planned unit to another phase and/or position."""

    phase: Phase | None = None
    position: Position | None = None


class ErrorBody(BaseModel):
    """Every error: a sentence saying what went wrong (``error``) and details (a string, a list of
    the invalid fields, or null)."""

    error: str
    detail: Any = None
