"""The runtime under bad handlers, bad facts, lost leases, shutdowns and crashes between writes."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import cass_actions_core.runtime as runtime_module
from cass_actions_core import hookimpl
from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import Config
from cass_actions_core.planning import DayPlan, PlanItem
from cass_actions_core.problems import CatalogueError, UserError
from cass_actions_core.runtime import Runtime
from cass_actions_core.store import open_store
from support import HandPack, action_def, template_def
from test_runtime import DAY, TZ, at, by_template, make_runtime

tidy = dict(tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, category="system")


async def returns_unstorable(ctx):
    return {"summary": "done", "data": {"when": datetime.now(UTC), "ratio": math.nan}}


async def returns_bad_questions(ctx):
    return {"summary": "done", "questions": "why?"}


async def ok(ctx):
    return {"summary": f"{ctx.action_id} ok"}


async def slow(ctx):
    await asyncio.sleep(0.3)
    return {"summary": "slow ok"}


def pack_with(handlers: dict, templates: list) -> HandPack:
    return HandPack([action_def(a, **tidy) for a in handlers], templates, handlers=handlers)


def test_an_unstorable_handler_result_fails_the_step_not_the_loop(tmp_path: Path):
    window = [{"start_hour": 6, "end_hour": 12}]
    pack = pack_with({"t.weird": returns_unstorable, "t.bad_q": returns_bad_questions, "t.ok": ok},
                     [template_def("weird", ["t.weird"], category="system", preferred_windows=window),
                      template_def("bad_q", ["t.bad_q"], category="system", preferred_windows=window),
                      template_def("fine", ["t.ok"], category="system", preferred_windows=window)])
    runtime = make_runtime(tmp_path, pack=pack)
    runtime.acquire_lease()
    asyncio.run(runtime.tick())
    units = by_template(runtime)
    assert units["fine"].status == "completed"
    assert units["weird"].status == "failed" and "not plain JSON" in units["weird"].reason
    assert units["bad_q"].status == "failed" and "questions must be a list of strings" in units["bad_q"].reason
    for name in ("weird", "bad_q"):
        assert runtime.store.get_summary(units[name].id).status == "failed"
    runtime.close()


async def returns_huge(ctx):
    return {"summary": "x" * 5_000_000}


async def returns_surrogate(ctx):
    return {"summary": "bad \udcff surrogate"}


async def returns_deep(ctx):
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    return {"summary": "deep", "data": {"deep": deep}}


async def raises_huge_surrogate(ctx):
    raise RuntimeError("\udcff" + "y" * 5_000_000)


def test_results_too_big_deep_or_not_unicode_fail_their_step_with_a_reason_and_store_nothing_of_them(tmp_path: Path):
    window = [{"start_hour": 6, "end_hour": 12}]
    handlers = {"t.huge": returns_huge, "t.surrogate": returns_surrogate, "t.deep": returns_deep,
                "t.raises": raises_huge_surrogate, "t.ok": ok}
    pack = pack_with(handlers, [template_def(a.split(".")[1], [a], category="system", preferred_windows=window)
                                for a in handlers])
    runtime = make_runtime(tmp_path, pack=pack)
    runtime.acquire_lease()
    asyncio.run(runtime.tick())
    units = by_template(runtime)
    assert units["ok"].status == "completed"
    assert "the result is 5,000,1" in units["huge"].reason and "more than the 1,000,000" in units["huge"].reason
    assert "not valid Unicode" in units["surrogate"].reason
    assert "nested too deeply" in units["deep"].reason
    assert units["raises"].status == "failed" and units["raises"].reason.startswith(
        "step 1 (t.raises) failed: RuntimeError: \\udcffyyy") and len(units["raises"].reason) < 2_100
    assert all(units[name].status == "failed" for name in ("huge", "surrogate", "deep", "raises"))
    files = [Path(runtime.store.path), Path(f"{runtime.store.path}-wal")]
    assert sum(f.stat().st_size for f in files if f.exists()) < 2_000_000  # no copy of the 5 MB texts was kept
    runtime.close()


def test_an_unknown_llm_provider_is_a_catalogue_problem(tmp_path: Path):
    cfg = Config.from_dict({"timezone": TZ, "llm": {"provider": "nosuch"}})
    with pytest.raises(CatalogueError) as info:
        Runtime(cfg, data_dir=tmp_path / "d", clock=VirtualClock(ZoneInfo(TZ), at(DAY, 6)),
                plugins=[("t", HandPack([action_def("t.talk")]))], entry_points=False)
    (problem,) = info.value.problems
    assert problem.code == "unknown-provider" and problem.path == "$.llm.provider"
    assert "known: anthropic, offline" in problem.message
    cfg = Config.from_dict({"timezone": TZ, "llm": {"actions": {"t.talk": {"provider": "offlin"}}}})
    with pytest.raises(CatalogueError) as info:
        Runtime(cfg, data_dir=tmp_path / "e", clock=VirtualClock(ZoneInfo(TZ), at(DAY, 6)),
                plugins=[("t", HandPack([action_def("t.talk")]))], entry_points=False)
    (problem,) = info.value.problems
    assert problem.item_id == "t.talk" and problem.path == "$.llm.actions.t.talk.provider"


def test_a_failed_required_step_still_fails_its_unit_after_a_crash(tmp_path: Path):
    pack = pack_with({"t.a": ok, "t.b": ok}, [template_def("two", ["t.a", "t.b"], category="system")])
    runtime = make_runtime(tmp_path, pack=pack)
    now = runtime.clock.now()
    unit = runtime.store.insert_unit(local_date=DAY, phase="morning", template_id="two", name="Two", category="system",
                                     steps=[{"action": "t.a"}, {"action": "t.b"}], now=now, status="queued")
    runtime.store.set_unit_status(unit.id, "running", reason=None, now=now)
    key = f"{DAY.isoformat()}/morning/{unit.id}/0"
    runtime.store.begin_action_run(key, unit.id, 0, "t.a", now)
    runtime.store.finish_action_run(key, "failed", 0.0, {"summary": ""}, "boom", now)  # then the process died
    runtime.acquire_lease()
    asyncio.run(runtime.tick())
    after = runtime.store.get_unit(unit.id)
    assert after.status == "failed" and "step 1 (t.a) failed: boom" in after.reason
    assert [r.action_id for r in runtime.store.action_runs_for_unit(unit.id)] == ["t.a"]  # step 2 never ran
    runtime.close()


def test_stop_returns_the_unit_to_the_queue_between_steps(tmp_path: Path):
    pack = pack_with({"t.s1": slow, "t.s2": slow, "t.s3": slow},
                     [template_def("three", ["t.s1", "t.s2", "t.s3"], category="system",
                                   preferred_windows=[{"start_hour": 6, "end_hour": 12}])])
    runtime = make_runtime(tmp_path, pack=pack)

    async def go():
        await runtime.start()
        await asyncio.sleep(0.15)  # inside step 1
        await runtime.stop()

    asyncio.run(go())
    unit = by_template(runtime)["three"]
    assert unit.status == "queued" and unit.next_step == 1
    assert "stopped before step 2" in unit.reason
    assert runtime.store.get_lease() is None
    runtime.close()


def test_losing_the_lease_stops_the_loop(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(runtime_module, "LEASE_RENEW_FRACTION", 0.01)  # renew every 0.9 s of the 90 s lease
    runtime = make_runtime(tmp_path)

    async def go():
        await runtime.start()
        other = open_store(runtime.data_dir / "cass-actions.sqlite", daemon_id="cass")
        with other.transaction():
            other._conn.execute("UPDATE lease SET expires_at = ?", (datetime(2000, 1, 1, tzinfo=UTC).isoformat(),))
        other.acquire_lease("someone-else", datetime.now(UTC), timedelta(minutes=5))
        other.close()
        await asyncio.wait_for(runtime.wait(), 10)

    asyncio.run(go())
    # the renewer or the next fenced write notices first, whichever comes first
    assert runtime.lease_lost and ("could not be renewed" in runtime.lease_lost or "was lost" in runtime.lease_lost)
    assert "someone-else" in runtime.lease_lost
    runtime.close()


def test_run_action_inside_a_started_runtime_keeps_its_lease(tmp_path: Path):
    runtime = make_runtime(tmp_path)

    async def go():
        await runtime.start()
        unit = await runtime.run_action("t.tidy")
        lease = runtime.store.get_lease()
        await runtime.stop()
        return unit, lease

    unit, lease = asyncio.run(go())
    assert unit.status == "completed"
    assert lease is not None and lease.holder == runtime._holder
    runtime.close()


def test_a_naive_activity_fact_is_ignored_and_the_tick_goes_on(tmp_path: Path, caplog):
    class NaiveFacts:
        @hookimpl
        def gather_context(self, context):
            context.set("last_user_activity", datetime(2026, 11, 26, 5, 0))  # no time zone

    runtime = make_runtime(tmp_path, start=at(DAY, 22), extra=[("naive", NaiveFacts())])
    runtime.acquire_lease()
    asyncio.run(runtime.tick())
    assert by_template(runtime)["quiet"].status == "completed"
    assert "not an aware datetime" in caplog.text
    runtime.close()


def test_a_plan_replaced_mid_day_queues_the_current_phase_and_expires_past_ones(tmp_path: Path):
    runtime = make_runtime(tmp_path, start=at(DAY, 13), config={"scheduler": {"catch_up_window_minutes": 30}})
    runtime.acquire_lease()
    asyncio.run(runtime.tick())  # the afternoon began; the day is planned from here
    plan = DayPlan(DAY, {"morning": [PlanItem("gated")], "afternoon": [PlanItem("doomed", focus="now")],
                         "evening": [PlanItem("reflect_then_tidy")]}, source="file", reason="by hand")
    runtime.store_plan(DAY, plan)
    asyncio.run(runtime.tick())
    units = sorted((u.phase, u.template_id, u.status) for u in runtime.units(local_date=DAY) if u.data.get("source") == "file")
    assert units == [("afternoon", "doomed", "failed"), ("evening", "reflect_then_tidy", "planned"),
                     ("morning", "gated", "expired")]
    morning = next(u for u in runtime.units(local_date=DAY) if u.phase == "morning")
    assert "ended before the unit was queued" in morning.reason
    runtime.close()


def test_planner_honours_cooldown_and_max_per_day(tmp_path: Path):
    pack = pack_with({"t.a": ok}, [template_def("rare", ["t.a"], category="system", cooldown="2d",
                                                preferred_windows=[{"start_hour": 6, "end_hour": 12}])])
    runtime = make_runtime(tmp_path, pack=pack)
    runtime.acquire_lease()
    asyncio.run(runtime.tick())
    assert by_template(runtime)["rare"].status == "completed"
    runtime.clock.set(at(DAY + timedelta(days=1), 6))
    asyncio.run(runtime.tick())
    plan = runtime.store.get_plan(DAY + timedelta(days=1))
    assert any(d.startswith("rare: cooldown 2d") for d in plan.data["dropped"])
    assert len(runtime.units(template_id="rare")) == 1
    runtime.close()


def test_an_unusable_data_dir_is_a_user_error(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot use it as the data directory"):
        make_runtime(blocker / "sub")


# -- issue 9, finding 1: handlers that raise BaseExceptions ----------------------------------

async def raises_cancelled(ctx):
    raise asyncio.CancelledError("the handler cancelled itself")


async def raises_system_exit(ctx):
    raise SystemExit(3)


async def raises_keyboard_interrupt(ctx):
    raise KeyboardInterrupt


@pytest.mark.parametrize("handler, name", [(raises_cancelled, "CancelledError"), (raises_system_exit, "SystemExit"),
                                           (raises_keyboard_interrupt, "KeyboardInterrupt")])
def test_a_handler_raising_a_base_exception_fails_its_unit_and_the_loop_goes_on(tmp_path: Path, handler, name):
    window = [{"start_hour": 6, "end_hour": 12}]
    pack = pack_with({"t.bad": handler, "t.ok": ok},
                     [template_def("bad", ["t.bad"], category="system", preferred_windows=window, priority="high"),
                      template_def("fine", ["t.ok"], category="system", preferred_windows=window, priority="low")])
    runtime = make_runtime(tmp_path, pack=pack)
    runtime.store_plan(DAY, DayPlan(DAY, {"morning": [PlanItem("bad"), PlanItem("fine")]}, source="file", reason="test"))
    runtime.acquire_lease()
    asyncio.run(runtime.tick())  # returns: nothing escaped the loop
    units = by_template(runtime)
    assert units["bad"].status == "failed" and f"the handler raised {name}" in units["bad"].reason
    assert units["fine"].status == "completed"
    assert runtime.store.get_summary(units["bad"].id).status == "failed"
    runtime.close()


async def divides_by_zero(ctx):
    files = 0
    return {"summary": f"{1 / files}"}


def test_a_handler_bug_fails_its_unit_with_one_log_line_naming_where_and_the_traceback_only_at_debug(tmp_path: Path, caplog):
    window = [{"start_hour": 6, "end_hour": 12}]
    pack = pack_with({"t.buggy": divides_by_zero}, [template_def("buggy", ["t.buggy"], category="system", preferred_windows=window)])
    runtime = make_runtime(tmp_path, pack=pack)
    runtime.acquire_lease()
    with caplog.at_level(logging.DEBUG, logger="cass_actions.executor"):
        asyncio.run(runtime.tick())
    unit = by_template(runtime)["buggy"]
    assert unit.status == "failed" and "ZeroDivisionError: division by zero" in unit.reason
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    line = f"{divides_by_zero.__code__.co_firstlineno + 2}"
    assert error.getMessage() == (f"action t.buggy raised ZeroDivisionError: division by zero "
                                  f"(at test_runtime_robustness.py:{line} in divides_by_zero)")
    assert error.exc_info is None  # no traceback at the default levels
    (debug,) = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert debug.exc_info[0] is ZeroDivisionError
    runtime.close()


@pytest.mark.parametrize("recorded", [-0.100002, "lots"])
def test_a_recorded_spend_that_is_no_amount_is_settled_at_its_reservation_and_the_restart_goes_on(tmp_path: Path, recorded):
    from cass_actions_core.executor import spend_key
    from cass_actions_core.ledger import Reservation

    runtime = make_runtime(tmp_path, pack=pack_with({"t.ok": ok}, []))
    runtime.acquire_lease()
    reservation = runtime.ledger.reserve("reflection", 0.01, budget_day=DAY, now=at(DAY, 9))
    assert isinstance(reservation, Reservation)
    runtime.store.set_state(spend_key(reservation.id), recorded)  # as a bad reply's negative cost once left it
    runtime.recover()  # used to raise "actual_usd: -0.100002 is negative" at every start
    assert not runtime.ledger.is_open(reservation)
    assert runtime.ledger.spent("reflection", budget_day=DAY) == pytest.approx(0.01)
    assert runtime.store.get_state(spend_key(reservation.id)) is None
    runtime.close()


def test_the_schedulers_own_cancellation_still_stops_a_step(tmp_path: Path):
    started = asyncio.Event()

    async def waits(ctx):
        started.set()
        await asyncio.sleep(60)
        return {"summary": "never"}

    pack = pack_with({"t.wait": waits}, [template_def("wait", ["t.wait"], category="system")])
    runtime = make_runtime(tmp_path, pack=pack)
    runtime.acquire_lease()

    async def go():
        task = asyncio.create_task(runtime.run_action("t.wait"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(go())
    runtime.close()


# -- issue 9, finding 6: months of downtime --------------------------------------------------------

def test_after_months_asleep_missed_days_are_not_planned_and_one_record_says_so(tmp_path: Path):
    import time as wall

    runtime = make_runtime(tmp_path)
    runtime.acquire_lease()
    asyncio.run(runtime.tick())  # the morning of DAY: planned
    plans_before = len(runtime.store.list_events(types=["day.planned"]))
    runtime.clock.set(at(DAY + timedelta(days=180), 13))  # six months later, mid-afternoon
    began = wall.perf_counter()
    asyncio.run(runtime.tick())
    took = wall.perf_counter() - began
    assert took < 2.0, f"the first tick after the downtime took {took:.2f} s"
    (missed,) = runtime.store.list_events(types=["downtime.missed"])
    assert missed.data["days_missed"] >= 178 and missed.data["phases"] > 700
    assert "were skipped, not planned" in missed.data["reason"]
    # only today was planned (from its current phase on); no unit for any day in between
    assert len(runtime.store.list_events(types=["day.planned"])) == plans_before + 1
    dates = {u.local_date for u in runtime.units()}
    assert dates <= {DAY, DAY + timedelta(days=180)}
    runtime.close()


# -- issue 9, finding 2: fencing ----------------------------------------------------------------------

def test_a_process_that_lost_the_lease_mid_step_can_write_nothing(tmp_path: Path):
    taken = {}

    async def stalls_past_its_lease(ctx):
        # As if this process were stuck for longer than the lease: another one takes over meanwhile.
        other = open_store(ctx.workspace.parent / "cass-actions.sqlite", daemon_id="cass")
        with other.transaction():
            other._conn.execute("UPDATE lease SET expires_at = ?", (datetime(2000, 1, 1, tzinfo=UTC).isoformat(),))
        other.acquire_lease("the-new-daemon", datetime.now(UTC), timedelta(minutes=5))
        taken["store"] = other
        return {"summary": "a late result"}

    window = [{"start_hour": 6, "end_hour": 12}]
    pack = pack_with({"t.stall": stalls_past_its_lease}, [template_def("stall", ["t.stall"], category="system",
                                                                        preferred_windows=window)])
    runtime = make_runtime(tmp_path, pack=pack)
    runtime.acquire_lease()
    asyncio.run(runtime.tick())
    unit = by_template(runtime)["stall"]
    (run,) = runtime.store.action_runs_for_unit(unit.id)
    assert run.status == "started" and unit.status == "running"  # the late result never landed
    assert runtime.lease_lost and "the-new-daemon" in runtime.lease_lost
    assert not runtime.store.list_events(types=["work_unit.completed"])
    taken["store"].close()
    runtime.close()
