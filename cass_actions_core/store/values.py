"""Python values as the store's column values and back: aware datetimes (F4), local dates, JSON, USD amounts
(exact sums in micro-dollars), day phases and new ids."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from cass_actions_core.store.vocabulary import PHASES


def _ts(value: datetime, what: str = "datetime") -> str:
    """An aware datetime as ISO-8601 text with its offset; naive datetimes are refused (F4)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{what}: {value.isoformat()} is a naive datetime; the store keeps only timezone-aware "
            "datetimes (use the daemon clock, or datetime.now(tz))"
        )
    return value.isoformat()


def _ts_opt(value: datetime | None, what: str = "datetime") -> str | None:
    return None if value is None else _ts(value, what)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _dt_opt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _day(value: date, what: str = "date") -> str:
    # datetime is a subclass of date; a datetime here is almost certainly a caller bug
    # (a local date must come from the daemon's time zone, not be truncated blindly).
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"{what}: expected a datetime.date, got {type(value).__name__}")
    return value.isoformat()


def _json(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    # allow_nan=False: the columns must stay valid JSON for any other reader.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=default)


def _unjson(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _money(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what}: expected a number of USD, got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{what}: {value} is not a finite amount")
    if value < 0:
        raise ValueError(f"{what}: {value} is negative")
    return round(float(value), 6)


def _check_phase(phase: str) -> str:
    if phase not in PHASES:
        raise ValueError(f"unknown day phase {phase!r}; expected one of {', '.join(PHASES)}")
    return phase


def _micros(usd: float) -> int:
    """USD (already rounded to 6 decimals) as integer micro-dollars, so sums are exact."""
    return int(round(usd * 1_000_000))


def _new_id() -> str:
    import uuid  # here rather than at the top: importing the store stays cheap (uuid imports platform)

    return uuid.uuid4().hex


def _day_phase_filter(daemon_id: str, local_date: date | None, phase: str | None) -> tuple[list[str], list[Any]]:
    """The WHERE terms and parameters for the daemon and the optional ``local_date`` and ``phase`` filters
    that the unit and summary listings share."""
    where: list[str] = ["daemon_id = ?"]
    params: list[Any] = [daemon_id]
    if local_date is not None:
        where.append("local_date = ?")
        params.append(_day(local_date, "local_date"))
    if phase is not None:
        where.append("phase = ?")
        params.append(_check_phase(phase))
    return where, params
