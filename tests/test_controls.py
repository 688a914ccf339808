"""The operator controls on the Runtime: cancel, whole-daemon pause/resume, budget overrides, plan add/remove/move.

Real SQLite stores; "another process" is a second Runtime on the same data folder (its own connection)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core import store as store_module
from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import Config
from cass_actions_core.planning import DayPlan, PlanItem
from cass_actions_core.problems import UnknownItem, UserError, WrongState
from cass_actions_core.runtime import Runtime
from cass_actions_core.store import SCHEMA_VERSION, open_store
from support import HandPack, action_def, only_allocations, template_def

TZ = "Europe/London"
DAY = date(2026, 11, 26)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(TZ))


calls: list[str] = []
GATE: dict[str, asyncio.Event] = {}


async def waits(ctx: Any) -> dict[str, Any]:
    """Spend a little (one offline LLM call), then wait until the test releases the gate."""
    await ctx.llm.complete("think first")
    calls.append(ctx.action_id)
    GATE["started"].set()
    await GATE["release"].wait()
    return {"summary": "waited"}


async def plain(ctx: Any) -> dict[str, Any]:
    calls.append(ctx.action_id)
    return {"summary": f"{ctx.action_id} done"}


async def spend(ctx: Any) -> dict[str, Any]:
    reply = await ctx.llm.complete("spend")
    calls.append(ctx.action_id)
    return {"summary": reply.text[:20]}


FREE = dict(tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, category="system")


def pack() -> HandPack:
    return HandPack(
        [action_def("c.wait", category="reflection", estimated_cost_usd=0.01, max_cost_usd=0.05),
         action_def("c.after", **FREE), action_def("c.gated", **FREE, requires_approval=True),
         action_def("c.topic", **FREE, params={"type": "object", "additionalProperties": False,
                                               "properties": {"topic": {"type": "string"}}}),
         action_def("c.spend", category="creative", estimated_cost_usd=0.3, max_cost_usd=0.3)],
        [template_def("two_step", ["c.wait", "c.after"]),
         template_def("tidy", ["c.after"], category="system"),
         template_def("gated", ["c.after", "c.gated"], category="system"),
         template_def("topical", ["c.topic"], category="system"),
         template_def("splurge", ["c.spend"], category="creative")],
        handlers={"c.wait": waits, "c.after": plain, "c.gated": plain, "c.topic": plain, "c.spend": spend},
    )


CONFIG = {"timezone": TZ, "budget": {"allocations": only_allocations(reflection=0.2, system=0.05, creative=0.1,
                                                                     planning=0.02)}}


def make_runtime(tmp_path: Path, *, start: datetime | None = None, clock: VirtualClock | None = None) -> Runtime:
    cfg = Config.from_dict(CONFIG)
    clock = clock or VirtualClock(ZoneInfo(TZ), start or at(DAY, 6))
    return Runtime(cfg, data_dir=tmp_path / "data", clock=clock, plugins=[("c", pack())], entry_points=False,
                   provider="offline")


def planned(runtime: Runtime, **phases: list[str]) -> None:
    """Give DAY a plan holding exactly these templates (so no planning call decides what runs)."""
    runtime.store_plan(DAY, DayPlan(DAY, {p: [PlanItem(t) for t in ts] for p, ts in phases.items()},
                                    source="file", reason="test"))


def tick(runtime: Runtime) -> Any:
    async def go() -> Any:
        runtime.acquire_lease()
        return await runtime.tick()
    return asyncio.run(go())


@pytest.fixture(autouse=True)
def fresh() -> None:
    calls.clear()
    GATE.clear()


# -- cancel ------------------------------------------------------------------------------------

def test_cancel_ends_a_queued_unit_at_once_by_prefix_and_the_daemon_never_runs_it(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    planned(runtime)
    unit = runtime.trigger("tidy")
    other = make_runtime(tmp_path, clock=runtime.clock)  # another process on the same store
    row = other.cancel(unit.id[:6], reason="not today", by="kai")
    other.close()
    assert row.status == "cancelled" and row.reason == "cancelled by kai: not today"
    tick(runtime)
    assert calls == []
    assert runtime.store.get_unit(unit.id).status == "cancelled"
    assert runtime.store.get_summary(unit.id).status == "cancelled"
    events = runtime.store.list_events(types=["work_unit.cancelled"])
    assert [(e.unit_id, e.data["by"]) for e in events] == [(unit.id, "kai")]
    with pytest.raises(WrongState, match=f"{unit.id}.*already cancelled"):
        runtime.cancel(unit.id)
    with pytest.raises(UnknownItem, match="ffff0000"):
        runtime.cancel("ffff0000")
    with pytest.raises(UserError, match="too short"):
        runtime.cancel(unit.id[:3])
    runtime.close()


def test_an_ambiguous_prefix_is_refused_naming_the_units(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    for suffix in ("1", "2"):
        runtime.store.insert_unit(local_date=DAY, phase="morning", template_id="tidy", name="Tidy", category="system",
                                  steps=[{"action": "c.after"}], now=runtime.clock.now(), unit_id=f"abcd{suffix * 28}")
    with pytest.raises(UserError, match="ambiguous") as error:
        runtime.cancel("abcd")
    assert not isinstance(error.value, (UnknownItem, WrongState))
    assert runtime.cancel("abcd1").status == "cancelled"
    runtime.close()


def test_cancelling_a_unit_awaiting_approval_closes_its_approval(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    planned(runtime, morning=["gated"])
    tick(runtime)
    unit = runtime.units(template_id="gated")[0]
    assert unit.status == "awaiting_approval" and len(runtime.approvals()) == 1
    row = runtime.cancel(unit.id)
    assert row.status == "cancelled"
    assert runtime.approvals() == []  # no longer pending
    closed = runtime.approvals(status=None)
    assert [(a.status, a.resolved_by) for a in closed] == [("expired", "user")]
    tick(runtime)
    assert runtime.store.get_unit(unit.id).status == "cancelled"
    runtime.close()


def test_a_running_unit_is_cancelled_between_steps_and_its_finished_step_stays_charged(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    planned(runtime, morning=["two_step"])
    unit = runtime.units(template_id="two_step")[0]

    async def go() -> Any:
        GATE["started"], GATE["release"] = asyncio.Event(), asyncio.Event()
        runtime.acquire_lease()
        ticking = asyncio.create_task(runtime.tick())
        await asyncio.wait_for(GATE["started"].wait(), 10)
        other = make_runtime(tmp_path, clock=runtime.clock)  # the CLI, say
        try:
            row = other.cancel(unit.id, reason="enough", by="kai")
        finally:
            other.close()
        GATE["release"].set()
        await ticking
        return row

    row = asyncio.run(go())
    assert row.status == "running" and row.reason.startswith("cancel requested by kai")
    done = runtime.store.get_unit(unit.id)
    assert done.status == "cancelled", done.reason
    assert done.reason == "cancelled by kai, after step 1 of 2: enough"
    assert calls == ["c.wait"]  # step 2 never ran
    runs = runtime.store.action_runs_for_unit(unit.id)
    assert [(r.step_index, r.status) for r in runs] == [(0, "completed")]
    spent = runtime.ledger.spent("reflection", budget_day=DAY)
    assert spent > 0 and spent == pytest.approx(runs[0].cost_usd)  # the finished step stays charged
    assert runtime.ledger.open_reservations() == []
    assert runtime.store.get_state(f"cancel_request:{unit.id}") is None
    assert runtime.store.get_summary(unit.id).status == "cancelled"
    runtime.close()


# -- whole-daemon pause ----------------------------------------------------------------------

def test_a_paused_daemon_starts_nothing_but_still_plans_and_resume_lets_work_run(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    other = make_runtime(tmp_path, clock=runtime.clock)
    info = other.pause(by="kai", reason="travelling")
    other.close()
    assert info["daemon_paused"]["by"] == "kai" and info["daemon_paused"]["reason"] == "travelling"
    assert runtime.status()["daemon_paused"] == runtime.daemon_paused() == info["daemon_paused"]
    unit = runtime.trigger("tidy")
    report = tick(runtime)  # the morning begins: the day is planned, nothing starts
    assert runtime.store.get_plan(DAY) is not None
    assert report.ran == [] and calls == []
    assert runtime.store.get_unit(unit.id).status == "queued"
    assert runtime.pause()["daemon_paused"]["by"] == "kai"  # pausing again changes nothing
    resumed = runtime.resume(by="kai")
    assert resumed["daemon_paused"] is None and runtime.status()["daemon_paused"] is None
    tick(runtime)
    assert runtime.store.get_unit(unit.id).status == "completed"
    types = [e.type for e in runtime.store.list_events(types=["daemon.paused", "daemon.resumed"])]
    assert types == ["daemon.paused", "daemon.resumed"]
    runtime.close()


def test_pausing_while_a_unit_runs_lets_its_step_finish_and_it_resumes_at_the_next(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    planned(runtime, morning=["two_step"])
    unit = runtime.units(template_id="two_step")[0]

    async def go() -> None:
        GATE["started"], GATE["release"] = asyncio.Event(), asyncio.Event()
        runtime.acquire_lease()
        ticking = asyncio.create_task(runtime.tick())
        await asyncio.wait_for(GATE["started"].wait(), 10)
        runtime.pause(reason="lunch")
        GATE["release"].set()
        await ticking

    asyncio.run(go())
    paused = runtime.store.get_unit(unit.id)
    assert paused.status == "queued" and "paused by user before step 2" in paused.reason
    assert calls == ["c.wait"]
    tick(runtime)
    assert runtime.store.get_unit(unit.id).status == "queued"
    runtime.resume()
    tick(runtime)
    assert runtime.store.get_unit(unit.id).status == "completed"
    assert calls == ["c.wait", "c.after"]  # the finished step did not run again
    runtime.close()


def test_category_pause_keeps_its_behaviour_and_refuses_an_unknown_category(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    assert runtime.pause("system") == {"daemon_paused": None, "paused_categories": ["system"]}
    assert runtime.paused_categories() == {"system"}
    with pytest.raises(UserError, match="known categories are .*reflection"):
        runtime.pause("sytem")
    assert runtime.resume("system")["paused_categories"] == []
    runtime.close()


# -- money -----------------------------------------------------------------------------------

def test_budget_overrides_change_what_the_ledger_grants_and_are_stored_with_who_and_when(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    ledger = runtime.ledger
    assert ledger.limit("creative", DAY) == 0.5
    result = runtime.set_budget(0.1, "creative", by="kai")  # standing
    assert result["limit"] == 0.1 and result["override"]["by"] == "kai" and result["standing"]
    assert ledger.available("creative", DAY) == 0.1
    assert ledger.available("creative", DAY + timedelta(days=3)) == 0.1  # every day from now on
    assert not hasattr(ledger.reserve("creative", 0.3, budget_day=DAY, now=runtime.clock.now()), "id")  # Blocked
    runtime.set_budget(2.0, "creative", day=DAY, by="ana")  # today only, beats the standing one
    assert ledger.limit("creative", DAY) == 2.0 and ledger.limit("creative", DAY + timedelta(days=1)) == 0.1
    granted = ledger.reserve("creative", 1.5, budget_day=DAY, now=runtime.clock.now())
    assert hasattr(granted, "id")
    ledger.settle(granted, 1.2, runtime.clock.now())
    status = runtime.status()["budget"]["categories"]["creative"]
    assert status["limit"] == 2.0 and status["spent"] == 1.2 and status["override"]["by"] == "ana"
    assert status["override"]["standing"] is False and status["override"]["budget_day"] == DAY.isoformat()
    assert "override" not in runtime.status()["budget"]["categories"]["reflection"]
    # clearing today's override falls back to the standing one; what was spent stays spent
    cleared = runtime.clear_budget("creative", day=DAY)
    assert cleared["limit"] == 0.1 and cleared["override"]["by"] == "kai"
    assert ledger.spent("creative", budget_day=DAY) == 1.2 and ledger.available("creative", DAY) == 0.0
    with pytest.raises(WrongState):
        runtime.clear_budget("creative", day=DAY)
    runtime.clear_budget("creative")
    assert ledger.limit("creative", DAY + timedelta(days=1)) == 0.5
    # the daily total scales the categories without an override, and the reserve
    runtime.set_budget(10, day=DAY + timedelta(days=1))
    tomorrow = ledger.status(DAY + timedelta(days=1))
    assert tomorrow["daily_usd"] == 10 and tomorrow["categories"]["reflection"]["limit"] == 2.0
    assert tomorrow["reserve"]["limit"] == 1.0 and tomorrow["daily_override"]["value"] == 10
    # refused values, each naming what is wrong
    with pytest.raises(UserError, match="negative"):
        runtime.set_budget(-1, "creative")
    with pytest.raises(UserError, match="finite"):
        runtime.set_budget(float("nan"))
    with pytest.raises(UserError, match="more than 10000 USD"):
        runtime.set_budget(99_999)
    with pytest.raises(UserError, match="unknown category 'nope'.*creative"):
        runtime.set_budget(1, "nope")
    with pytest.raises(UserError, match="is over"):
        runtime.set_budget(1, "creative", day=DAY - timedelta(days=1))
    runtime.close()
    again = make_runtime(tmp_path)  # stored: a restart (or another process) sees the same limits
    assert again.ledger.limit("creative", DAY + timedelta(days=1)) == 1.0  # its share of that day's $10
    assert again.ledger.limit("creative", DAY + timedelta(days=2)) == 0.5
    assert again.ledger.status(DAY + timedelta(days=1))["daily_usd"] == 10
    history = again.store.budget_override_history()
    assert [(o.category, o.amount_usd) for o in history][:2] == [(None, 10.0), ("creative", None)]
    again.close()


def test_raising_a_limit_lets_budget_blocked_work_run_at_the_next_tick(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    runtime.set_budget(0.0, "creative")
    planned(runtime, morning=["splurge"])
    tick(runtime)
    unit = runtime.units(template_id="splurge")[0]
    assert unit.status == "budget_blocked" and "$0.00 left of $0.00" in unit.reason
    runtime.set_budget(1.0, "creative", day=DAY)
    tick(runtime)
    assert runtime.store.get_unit(unit.id).status == "completed"
    runtime.close()


def test_migration_5_adds_the_budget_overrides_table_to_an_older_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "old.sqlite"
    with monkeypatch.context() as m:
        m.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:4])
        m.setattr(store_module, "SCHEMA_VERSION", 4)
        with open_store(path, daemon_id="cass") as old:
            assert old.schema_version == 4
            # Written as version 4 wrote it (today's methods write today's columns).
            old._conn.execute("INSERT INTO state (key, value) VALUES ('paused_categories', '[\"research\"]')")
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'budget_overrides'").fetchone() is None
    raw.close()
    with open_store(path, daemon_id="cass") as upgraded:
        assert upgraded.schema_version == SCHEMA_VERSION >= 5
        assert upgraded.get_state("paused_categories") == ["research"]  # kept
        upgraded.add_budget_override(category="research", budget_day=None, from_day=DAY, amount_usd=0.7, by="kai",
                                     now=at(DAY, 9))
        assert upgraded.budget_overrides(DAY)["research"].amount_usd == 0.7
        assert upgraded.budget_overrides(DAY - timedelta(days=1)) == {}  # standing from its day on


# -- today's plan ----------------------------------------------------------------------------

def test_plan_add_checks_like_a_plan_file_and_places_the_unit(tmp_path: Path):
    runtime = make_runtime(tmp_path, start=at(DAY, 13))  # the afternoon: the morning is over
    planned(runtime, evening=["tidy", "gated"])
    with pytest.raises(UnknownItem, match="did you mean 'topical'"):
        runtime.plan_add("topicl", "evening")
    with pytest.raises(UserError, match=r"params\.0: .*'colour' was unexpected"):
        runtime.plan_add("topical", "evening", params={"0": {"colour": "red"}})
    with pytest.raises(WrongState, match="morning phase of 2026-11-26 is over"):
        runtime.plan_add("tidy", "morning")
    with pytest.raises(UserError, match="phase 'noon'"):
        runtime.plan_add("tidy", "noon")
    unit = runtime.plan_add("topical", "evening", params={"0": {"topic": "tides"}}, focus="the sea", position=0, by="kai")
    assert unit.status == "planned" and unit.steps[0]["params"] == {"topic": "tides"}
    assert [u.template_id for u in runtime.units(local_date=DAY, phase="evening")] == ["topical", "tidy", "gated"]
    last = runtime.plan_add("tidy", "evening")
    assert [u.id for u in runtime.units(local_date=DAY, phase="evening")][-1] == last.id
    changed = runtime.store.list_events(types=["plan.changed"])
    assert [(e.data["what"], e.data["by"]) for e in changed] == [("add", "kai"), ("add", "user")]
    # a re-plan replaces the planner's units but keeps those a person added
    planned(runtime, evening=["gated"])
    assert {u.id for u in runtime.units(local_date=DAY, phase="evening")} >= {unit.id, last.id}
    runtime.close()


def test_plan_move_and_remove_change_only_units_that_have_not_started(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    planned(runtime, morning=["tidy"], evening=["gated", "topical"])
    topical = runtime.units(template_id="topical")[0]
    moved = runtime.plan_move(topical.id[:8], position=0, by="kai")
    assert [u.template_id for u in runtime.units(local_date=DAY, phase="evening")] == ["topical", "gated"]
    moved = runtime.plan_move(topical.id, phase="afternoon")
    assert moved.phase == "afternoon" and runtime.store.get_unit(topical.id).phase == "afternoon"
    with pytest.raises(UserError):
        runtime.plan_move(topical.id)
    tick(runtime)  # the morning's unit runs
    tidy = runtime.units(template_id="tidy")[0]
    assert tidy.status == "completed"
    with pytest.raises(WrongState, match="already completed"):
        runtime.plan_remove(tidy.id)
    with pytest.raises(WrongState):
        runtime.plan_move(tidy.id, phase="night")
    removed = runtime.plan_remove(topical.id, by="kai")
    assert removed.status == "cancelled" and removed.reason == "removed from the plan by kai"
    assert runtime.store.get_summary(topical.id).status == "cancelled"
    whats = [e.data["what"] for e in runtime.store.list_events(types=["plan.changed"])]
    assert whats == ["move", "move", "remove"]
    runtime.close()


def test_a_unit_added_to_the_phase_under_way_is_queued_and_run_at_the_next_tick(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    planned(runtime)
    tick(runtime)
    unit = runtime.plan_add("tidy", "morning")
    tick(runtime)
    assert runtime.store.get_unit(unit.id).status == "completed"
    runtime.close()
