"""Learned costs and durations: the blend rule, read from real action runs in a SQLite store,
and the executor reserving the learned figure instead of the declared one."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import Config
from cass_actions_core.planning.costs import CostBook, blend
from cass_actions_core.runtime import Runtime
from support import HandPack, action_def, template_def

TZ = "UTC"
DAY = date(2026, 11, 26)


def test_blend_is_the_declared_figure_until_runs_teach_better():
    assert blend(0.10, []) == 0.10
    assert blend(0.10, [0.001]) == pytest.approx((0.001 + 0.10) / 2)
    # the median, so one outlier does not move it
    assert blend(0.10, [0.001, 0.002, 5.0]) == pytest.approx((3 * 0.002 + 0.10) / 4)
    many = [0.001] * 19
    assert blend(0.10, many) == pytest.approx((19 * 0.001 + 0.10) / 20)


async def think(ctx: Any) -> dict[str, Any]:
    await ctx.llm.complete("think about " + (ctx.focus or "it"))
    return {"summary": "thought"}


def make_runtime(tmp_path: Path, **config: Any) -> Runtime:
    pack = HandPack([action_def("c.think", category="reflection", estimated_cost_usd=0.10, max_cost_usd=0.20,
                                default_duration_minutes=30)],
                    [template_def("think", ["c.think"], max_per_day=5)], handlers={"c.think": think})
    cfg = Config.from_dict({"timezone": TZ, **config})
    clock = VirtualClock(ZoneInfo(TZ), datetime(2026, 11, 26, 6, tzinfo=ZoneInfo(TZ)))
    return Runtime(cfg, data_dir=tmp_path / "d", clock=clock, plugins=[("c", pack)], entry_points=False, provider="offline")


def test_the_book_learns_from_completed_runs_in_the_store(tmp_path: Path):
    runtime = make_runtime(tmp_path)
    runtime.acquire_lease()
    before = runtime.costs().figures["c.think"]
    assert (before.learned_usd, before.runs) == (0.10, 0)
    actual = []
    for _ in range(3):
        unit = asyncio.run(runtime.run_action("c.think"))
        actual.append(runtime.store.action_runs_for_unit(unit.id)[0].cost_usd)
    assert all(0 < a < 0.01 for a in actual)  # the offline provider's real (Haiku-priced) cost
    after = runtime.planner.costs().figures["c.think"]
    assert after.runs == 3
    assert after.learned_usd == pytest.approx((3 * sorted(actual)[1] + 0.10) / 4, abs=1e-6)
    assert after.declared_usd == 0.10
    # the runtime reads the book again at each planning run; from then on the learned
    # figure is what a step reserves
    action = runtime.catalogue.actions["c.think"]
    assert runtime.executor.reservation_for(action) == 0.10
    asyncio.run(runtime.plan_day(DAY))
    assert runtime.executor.reservation_for(action) == pytest.approx(after.learned_usd, abs=1e-6)
    runtime.close()


def test_learned_cost_runs_bounds_the_history_read(tmp_path: Path):
    runtime = make_runtime(tmp_path, planner={"learned_cost_runs": 1})
    runtime.acquire_lease()
    for _ in range(3):
        asyncio.run(runtime.run_action("c.think"))
    assert runtime.planner.costs().figures["c.think"].runs == 1
    runtime.close()
    off = make_runtime(tmp_path, planner={"learned_cost_runs": 0})
    assert off.planner.costs().figures["c.think"].runs == 0 and off.planner.costs().figures["c.think"].learned_usd == 0.10
    off.close()


def test_a_cheaper_model_is_priced_by_the_ratio_of_the_two_price_lists(tmp_path: Path):
    runtime = make_runtime(tmp_path, llm={"model": "claude-sonnet-5-5"})
    book = CostBook(runtime.catalogue, None, runs=0, model="claude-sonnet-5-5")
    action = runtime.catalogue.actions["c.think"].definition
    # Sonnet 5.5: $2 in / $10 out; Haiku 5.5: $0.10 / $0.50 -> averages 6.0 and 0.3
    assert book.price_ratio("claude-haiku-5-5") == pytest.approx(0.3 / 6.0)
    assert book.cost(action, "claude-haiku-5-5") == pytest.approx(0.10 * 0.05)
    assert book.cost(action) == 0.10
    runtime.close()


def test_list_shows_declared_and_learned_costs(tmp_path: Path):
    from support import run_cli

    data = tmp_path / "sim"
    assert run_cli("simulate", "--start", "2026-11-26", "--data-dir", str(data),
                   env={"CASS_ACTIONS_LOAD_PLUGINS": "journal"}).returncode == 0
    out = run_cli("list", "--costs", "--json", "--data-dir", str(data), env={"CASS_ACTIONS_LOAD_PLUGINS": "journal"})
    assert out.returncode == 0, out.stderr
    import json

    rows = {r["id"]: r for r in json.loads(out.stdout)}
    daily = rows["journal.generate_daily"]
    assert daily["estimated_cost_usd"] == 0.1 and daily["learned_runs"] >= 1
    assert 0 < daily["learned_cost_usd"] < daily["estimated_cost_usd"]
