"""Shared fixtures for the wonderland pack's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from cass_actions_core.planning import DayPlan
from cass_actions_core.testing.pytest_plugin import ActionRun
from cass_actions_core.workspace import seed_demo_workspace

PACK = "wonderland"


def quiet_day(runtime: Any) -> None:
    """Store an empty plan for today, so a tick runs only the units a test queues itself."""
    day = runtime.phases.instance_at(runtime.clock.now()).day
    runtime.store_plan(day, DayPlan(day, {}, source="file", reason="empty plan: the test queues its own units"))


def kv(runtime: Any, key: str, default: Any = None) -> Any:
    """A value of the wonderland pack's key-value area."""
    return runtime.store.kv_get(PACK, key, default)


def journal_path(runtime: Any) -> Any:
    """Today's journal file of the pack."""
    return runtime.workspace / PACK / "journal" / f"{runtime.clock.today().isoformat()}.md"


class Helpers:
    """Read what the pack wrote (tests cannot import conftest under --import-mode=importlib)."""

    kv = staticmethod(kv)
    journal_path = staticmethod(journal_path)
    quiet_day = staticmethod(quiet_day)


@pytest.fixture
def wl() -> Helpers:
    """Helpers to read the pack's key-value area and journal."""
    return Helpers()


@pytest.fixture
def wonderland(cass_runtime: Callable[..., Any]) -> Callable[..., Any]:
    """Factory: a runtime with only the wonderland pack, the demo workspace and an empty plan for today."""

    def make(**kwargs: Any) -> Any:
        runtime = cass_runtime(load=[PACK], **kwargs)
        seed_demo_workspace(runtime.workspace, now=runtime.clock.now())
        quiet_day(runtime)
        return runtime

    return make


@pytest.fixture
def run_approved() -> Callable[..., Any]:
    """``run_approved(runtime, action_id, params)``: run an action that needs approval, approve it, finish it."""

    def run(runtime: Any, action_id: str, params: dict[str, Any] | None = None, *, focus: str | None = None) -> Any:
        unit = asyncio.run(runtime.run_action(action_id, params or {}, focus=focus))
        assert unit.status == "awaiting_approval", unit.reason
        (approval,) = [a for a in runtime.store.list_approvals(status="pending") if a.unit_id == unit.id]
        runtime.approve(approval.id)
        runtime.acquire_lease()
        asyncio.run(runtime.tick())
        (run_row,) = runtime.store.action_runs_for_unit(unit.id)
        summary = runtime.store.get_summary(unit.id)
        return ActionRun(unit=runtime.store.get_unit(unit.id), run=run_row, summary=summary.data if summary else {})

    return run
