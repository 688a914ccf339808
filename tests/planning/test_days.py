"""The planner over simulated days with the four bundled packs and the offline provider.

What a fortnight of plans must hold (limits, money, weekly coverage, windows, variety),
that a growth edge in the self model moves the plans toward growth work, that a fifth
of the budget still serves every funded category by cheaper choices, and that no
phase's units run past the phase's end. Each run is a real runtime on a virtual clock
with a real SQLite store; the packs are the installed distributions.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core.clock import VirtualClock, to_utc
from cass_actions_core.config import Config
from cass_actions_core.phases import DayPhases
from cass_actions_core.runtime import Runtime
from cass_actions_core.workspace import seed_demo_workspace

TZ = "Europe/London"
START = date(2026, 11, 23)  # a Monday
PACKS = ["journal", "memory", "wonderland", "session"]


@dataclass
class Run:
    """A finished simulation: the runtime (store still open) and the dates it covered."""

    runtime: Runtime
    days: list[date]

    def units(self, day: date) -> list[Any]:
        """The units planned for ``day`` (triggered ones excluded)."""
        return [u for u in self.runtime.units(local_date=day) if u.data.get("source") != "trigger"]

    def plan(self, day: date) -> dict[str, Any]:
        """The stored plan of ``day``."""
        row = self.runtime.store.get_plan(day)
        assert row is not None, f"no plan stored for {day}"
        return row.data

    def template(self, template_id: str) -> Any:
        """A catalogue template."""
        return self.runtime.catalogue.templates[template_id].template


def simulate(folder: Path, days: int, *, config: dict[str, Any] | None = None,
             self_model: Any = None) -> Run:
    """Simulate ``days`` days from ``START`` in ``folder``; ``self_model`` edits the demo self model first."""
    cfg = Config.from_dict({"timezone": TZ, "plugins": {"load": PACKS}, **(config or {})})
    phases = DayPhases(cfg.phases, cfg.timezone)
    begin = phases.boundary(START, "morning")
    end = phases.boundary(START + timedelta(days=days), "morning")
    runtime = Runtime(cfg, data_dir=folder, clock=VirtualClock(ZoneInfo(TZ), begin), provider="offline")
    seed_demo_workspace(runtime.workspace, now=begin)
    if self_model is not None:
        path = runtime.workspace / "self" / "model.json"
        model = json.loads(path.read_text())
        self_model(model)
        path.write_text(json.dumps(model, indent=2))

    async def drive() -> None:
        runtime.acquire_lease()
        try:
            await runtime.simulate_until(end)
        finally:
            runtime.release_lease()
            await runtime.providers.aclose()

    asyncio.run(drive())
    return Run(runtime, [START + timedelta(days=i) for i in range(days)])


@pytest.fixture(scope="module")
def fortnight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Fourteen days under the default configuration."""
    run = simulate(tmp_path_factory.mktemp("fortnight"), 14)
    yield run
    run.runtime.close()


def test_every_day_is_planned_by_the_planning_call_with_an_intention(fortnight: Run):
    for day in fortnight.days:
        plan = fortnight.plan(day)
        assert plan["source"] == "llm" and plan["provider"] == "offline", (day, plan["reason"])
        assert plan["intention"].startswith("[offline]") and plan["cost_usd"] > 0
        assert fortnight.units(day), f"nothing planned on {day}"


def test_no_template_runs_over_its_max_per_day(fortnight: Run):
    for day in fortnight.days:
        for template_id, n in Counter(u.template_id for u in fortnight.units(day)).items():
            assert n <= fortnight.template(template_id).max_per_day, (day, template_id, n)


def test_no_category_spends_over_its_money(fortnight: Run):
    budget = fortnight.runtime.config.budget
    categories = set(budget.allocations)
    for day in fortnight.days:
        for category in categories:
            spent = fortnight.runtime.ledger.spent(category, budget_day=day)
            assert spent <= budget.category_limit(category) + 1e-9, (day, category, spent)


def test_every_funded_category_is_served_every_week(fortnight: Run):
    runtime = fortnight.runtime
    with_templates = {t.template.category for t in runtime.catalogue.templates.values()}
    funded = {c for c in with_templates if runtime.config.budget.category_limit(c) > 0}
    assert funded >= {"journal", "memory", "reflection", "growth", "curiosity", "research", "creative", "wonderland"}
    for week in (fortnight.days[:7], fortnight.days[7:]):
        served = {fortnight.template(u.template_id).category for d in week for u in fortnight.units(d)
                  if u.status == "completed"}
        assert funded <= served, f"week of {week[0]}: {sorted(funded - served)} never served"


def test_nine_in_ten_units_start_inside_their_templates_preferred_windows(fortnight: Run):
    inside = total = 0
    for day in fortnight.days:
        for unit in fortnight.units(day):
            if unit.started_at is None:
                continue
            template = fortnight.template(unit.template_id)
            local = unit.started_at.astimezone(ZoneInfo(TZ))
            total += 1
            inside += (not template.preferred_windows) or template.window_score(local.hour, local.weekday()) > 0
    assert total >= 100
    assert inside / total >= 0.9, f"{inside} of {total} units started inside their windows"


def test_no_two_consecutive_days_have_the_same_plan(fortnight: Run):
    shapes = [sorted((u.phase, u.template_id) for u in fortnight.units(d)) for d in fortnight.days]
    for day, (before, after) in zip(fortnight.days[1:], zip(shapes, shapes[1:])):
        assert before != after, f"{day} repeats the plan of the day before"


def test_variety_completed_work_counts_against_a_template_the_next_days(fortnight: Run):
    # the scores read completed work back: yesterday's templates carry a variety penalty today
    plan = fortnight.plan(fortnight.days[1])
    yesterday = {u.template_id for u in fortnight.units(fortnight.days[0]) if u.status == "completed"}
    penalised = {i["template"] for items in plan["phases"].values() for i in items if "variety -" in i["motivation"]}
    assert penalised and penalised <= yesterday
    # and over the fortnight the daemon does more kinds of work than one day holds
    kinds = {u.template_id for d in fortnight.days for u in fortnight.units(d)}
    assert len(kinds) > max(len({u.template_id for u in fortnight.units(d)}) for d in fortnight.days)


def test_no_phase_holds_more_work_than_its_length(fortnight: Run):
    runtime = fortnight.runtime
    checked = 0
    for day in fortnight.days:
        for unit in fortnight.units(day):
            if any(t.to_status == "awaiting_approval" for t in runtime.store.transitions(unit.id)):
                continue  # its later steps run when a person answers, whatever the phase
            instance = runtime.phases.instance(day, unit.phase)
            for run in runtime.store.action_runs_for_unit(unit.id):
                assert run.finished_at is not None
                assert to_utc(run.finished_at) <= to_utc(instance.end), (day, unit.phase, unit.template_id, run.finished_at)
                checked += 1
        # and the planned durations of each phase add up to no more than the phase
        plan = fortnight.plan(day)
        for phase, items in plan["phases"].items():
            instance = runtime.phases.instance(day, phase)
            length = (to_utc(instance.end) - to_utc(instance.start)).total_seconds() / 60
            assert sum(i["estimated_minutes"] for i in items) <= length + 1e-6, (day, phase)
    assert checked >= 150


def test_the_simulated_clock_moves_with_the_work(fortnight: Run):
    # each unit takes virtual time (its steps' durations), so units of a phase follow each other
    day = fortnight.days[0]
    morning = sorted((u for u in fortnight.units(day) if u.phase == "morning" and u.started_at), key=lambda u: u.started_at)
    assert len(morning) >= 2
    assert all(u.finished_at > u.started_at for u in morning)
    assert all(b.started_at >= a.finished_at for a, b in zip(morning, morning[1:]))


def _growth_units(run: Run) -> int:
    return sum(1 for d in run.days for u in run.units(d)
               if "growth" in run.template(u.template_id).tags or run.template(u.template_id).category == "growth")


def test_a_growth_edge_in_the_self_model_shifts_the_plans_toward_growth_work(tmp_path: Path):
    def without(model: dict[str, Any]) -> None:
        model["growth_edges"] = []

    def with_edges(model: dict[str, Any]) -> None:
        model["growth_edges"] = [{"area": "reflection on the self model and growth", "current_state": "rarely done",
                                  "observations": []}]

    plain = simulate(tmp_path / "without", 5, self_model=without)
    growing = simulate(tmp_path / "with", 5, self_model=with_edges)
    try:
        a, b = _growth_units(plain), _growth_units(growing)
        assert b > a, f"growth-tagged units: {a} without a growth edge, {b} with one"
        # and the plans say why: the growth component is in the motivations
        plan = growing.plan(START)
        assert any("growth +" in i["motivation"] for items in plan["phases"].values() for i in items)
        assert not any("growth +" in i["motivation"] for items in plain.plan(START)["phases"].values() for i in items)
    finally:
        plain.runtime.close()
        growing.runtime.close()


def test_a_fifth_of_the_budget_still_serves_every_funded_category_by_cheaper_choices(tmp_path: Path):
    # Sonnet by default with Haiku as the cheaper model: the bundled packs' declared estimates
    # fit $1 a day only on the cheaper model.
    config = {"budget": {"daily_usd": 1.0}, "llm": {"model": "claude-sonnet-5-5"},
              "planner": {"cheap_model": "claude-haiku-5-5"}}
    run = simulate(tmp_path / "fifth", 1, config=config)
    try:
        runtime, day = run.runtime, START
        budget = runtime.config.budget
        plan = run.plan(day)
        with_templates = {t.template.category for t in runtime.catalogue.templates.values()}
        funded = {c for c in with_templates if budget.category_limit(c) > 0}
        done = [u for u in run.units(day) if u.status == "completed"]
        assert funded <= {run.template(u.template_id).category for u in done}
        for category in budget.allocations:
            assert runtime.ledger.spent(category, budget_day=day) <= budget.category_limit(category) + 1e-9
        # the cheaper choices, each with its reason, in the plan and in the units' summaries
        chosen = [(i["template"], c) for items in plan["phases"].values() for i in items for c in i["choices"]]
        assert len(chosen) >= 3
        assert all("instead of claude-sonnet-5-5" in c and "$" in c for _t, c in chosen)
        assert any(d.startswith("planning call on claude-haiku-5-5") for d in plan["decisions"])
        cheap = {t for t, _c in chosen}
        summaries = {s.template_id: s for s in runtime.history(local_date=day)}
        for template_id in cheap:
            summary = summaries[template_id]
            assert summary.data["choices"] and "Choice: " in summary.text, template_id
            # every call the unit made went to the cheaper model (the transcripts say so)
            runs = runtime.store.action_runs_for_unit(summary.unit_id)
            called = [runtime.store.get_transcript(t).data["model"] for r in runs
                      for t in (r.result or {}).get("llm", {}).get("transcript_ids", [])]
            assert called and set(called) == {"claude-haiku-5-5"}, (template_id, called)
            assert {r.result["llm"]["model"] for r in runs if r.result.get("llm", {}).get("calls")} == {"claude-haiku-5-5"}
    finally:
        run.runtime.close()
