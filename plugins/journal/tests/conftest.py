"""Shared fixtures of the journal pack's tests (the core's pytest plugin provides cass_runtime, run_action ...).

Journal entries are written from the work summaries of a finished day (the latest plan
day whose waking phases are over: in the night phase of D that is D, earlier in a day the
day before), so the tests first do some work on a day with a small pack registered by hand
(``t.work``: no LLM, it reports the text it is given, with an insight and a question), then
move the virtual clock on to the phase they run the journal in. Helpers are handed out
through fixtures because every pack's tests run in one pytest session with
``--import-mode=importlib``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core import hookimpl

WORK_ACTION = {
    "id": "t.work", "name": "Test work", "description": "Reports the work described in its params (no LLM).",
    "tier": 1, "category": "system", "uses_llm": False, "estimated_cost_usd": 0, "max_cost_usd": 0,
    "default_duration_minutes": 1, "timeout_seconds": 10, "priority": "normal", "requires_idle": False,
    "requires_approval": False, "idempotent": True,
    "params": {"type": "object", "additionalProperties": False, "properties": {
        "text": {"type": "string"}, "insight": {"type": "string"}, "question": {"type": "string"}}},
}


async def _work(ctx: Any) -> dict[str, Any]:
    return {"summary": ctx.params.get("text", "did some work"),
            "insights": [ctx.params["insight"]] if ctx.params.get("insight") else [],
            "questions": [ctx.params["question"]] if ctx.params.get("question") else []}


class WorkPack:
    """A hand-registered pack with one action, ``t.work``."""

    @hookimpl
    def register_actions(self, register: Any) -> None:
        register.load({"actions": [WORK_ACTION]})
        register.handler("t.work", _work)


def at(day: date, hour: int, minute: int = 0, tz: str = "UTC") -> datetime:
    """An aware local time."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(tz))


#: The default virtual clock starts on Monday 2026-01-05 at 09:00.
MONDAY = date(2026, 1, 5)


class JournalHelpers:
    """Run work on a given day, move the clock, read the pack's files and events."""

    monday = MONDAY

    def __init__(self, run_action: Callable[..., Any]) -> None:
        self._run = run_action

    def work(self, runtime: Any, day: date, hour: int, text: str, **extra: str) -> Any:
        """Move the clock to ``day`` at ``hour`` and run ``t.work`` there."""
        when = at(day, hour, tz=str(runtime.clock.tz))
        if when > runtime.clock.now():
            runtime.clock.set(when)
        outcome = self._run(runtime, "t.work", {"text": text, **extra})
        assert outcome.ok, outcome.error
        return outcome

    @staticmethod
    def move_to(runtime: Any, day: date, hour: int, minute: int = 0) -> None:
        """Move the clock (forward) to ``hour:minute`` on the calendar day ``day``."""
        runtime.clock.set(at(day, hour, minute, tz=str(runtime.clock.tz)))

    @classmethod
    def morning_of(cls, runtime: Any, day: date) -> None:
        """Move the clock to 08:00 on ``day`` (its morning phase: ``ctx.local_date`` is ``day``)."""
        cls.move_to(runtime, day, 8)

    @classmethod
    def afternoon_of(cls, runtime: Any, day: date) -> None:
        """Move the clock to 14:00 on ``day`` (its afternoon phase)."""
        cls.move_to(runtime, day, 14)

    @classmethod
    def evening_of(cls, runtime: Any, day: date) -> None:
        """Move the clock to 19:00 on ``day`` (its evening phase)."""
        cls.move_to(runtime, day, 19)

    @classmethod
    def night_of(cls, runtime: Any, day: date) -> None:
        """Move the clock to 22:30 on ``day`` (its night phase: ``ctx.local_date`` is ``day``)."""
        cls.move_to(runtime, day, 22, 30)

    @staticmethod
    def read(runtime: Any, relative: str) -> str:
        """A file of the journal pack's data folder."""
        return (runtime.workspace / "journal" / relative).read_text("utf-8")

    @staticmethod
    def exists(runtime: Any, relative: str) -> bool:
        """Whether the journal pack wrote ``relative``."""
        return (runtime.workspace / "journal" / relative).exists()

    @staticmethod
    def events(runtime: Any, event_type: str) -> list[dict[str, Any]]:
        """The data of every stored event of ``event_type``."""
        return [e.data for e in runtime.store.list_events(types=[event_type])]


@pytest.fixture
def jr(run_action: Callable[..., Any]) -> JournalHelpers:
    """The helpers (see :class:`JournalHelpers`)."""
    return JournalHelpers(run_action)


@pytest.fixture
def journal_runtime(cass_runtime: Callable[..., Any]) -> Callable[..., Any]:
    """Factory: a runtime with the installed journal pack (plus ``load``) and the hand-made ``t.work`` pack."""

    def make(load: tuple[str, ...] = (), **kwargs: Any) -> Any:
        return cass_runtime(load=["journal", *load], plugins=[("t", WorkPack())], **kwargs)

    return make
