"""The DayFitter: limits, time with release times, money and the cheaper variants, each with its reason."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core.catalogue import build_catalogue
from cass_actions_core.config import Config
from cass_actions_core.planning.costs import CostBook
from cass_actions_core.planning.fit import Candidate, DayFitter, Money, cooldown_conflict
from support import HandPack, action_def, template_def

TZ = ZoneInfo("UTC")
DAY = date(2026, 11, 26)
MORNING = datetime(2026, 11, 26, 6, tzinfo=TZ)


def catalogue(**config: Any):
    pack = HandPack(
        [action_def("f.write", category="creative", estimated_cost_usd=0.10, max_cost_usd=0.2, default_duration_minutes=60),
         action_def("f.polish", category="creative", estimated_cost_usd=0.06, max_cost_usd=0.1, default_duration_minutes=30),
         action_def("f.tidy", category="system", uses_llm=False, tier=1, estimated_cost_usd=0, max_cost_usd=0,
                    default_duration_minutes=120)],
        [template_def("essay", ["f.write", {"action": "f.polish", "optional": True}], category="creative"),
         template_def("late_tidy", ["f.tidy"], category="system", preferred_windows=[{"start_hour": 10, "end_hour": 12}]),
         template_def("tidy", ["f.tidy"], category="system", cooldown="8h", max_per_day=3)],
    )
    cfg = Config.from_dict({"timezone": "UTC", "llm": {"model": "claude-sonnet-5-5"}, **config})
    return build_catalogue(cfg, plugins=[("f", pack)], entry_points=False)


def candidate(cat, template_id: str, room: int = 1) -> Candidate:
    t = cat.templates[template_id].template
    book = CostBook(cat, None, runs=0, model="claude-sonnet-5-5")
    return Candidate(template=t, pack="f", components={"morning": {}}, scores={"morning": 1.0},
                     in_window={"morning": True}, cost_usd=book.template_cost(t), minutes=book.template_minutes(t),
                     room=room, needs_approval=False, requires_idle=False,
                     optional_steps=tuple(i for i, s in enumerate(t.steps) if s.optional))


def fitter(cat, left: float, *, cheap: str | None = None, minutes: float = 360, limit: float = 0.5) -> DayFitter:
    return DayFitter(phases=["morning"], phase_starts={"morning": MORNING}, phase_minutes={"morning": minutes},
                     money=Money({"creative": left, "system": 1.0}, {"creative": limit, "system": 1.0}, 5.0),
                     costs=CostBook(cat, None, runs=0, model="claude-sonnet-5-5"), max_per_phase=5, max_per_day=12,
                     last_starts={}, default_model="claude-sonnet-5-5", cheap_model=cheap, cheap_below=0.25)


def place(f: DayFitter, c: Candidate):
    return f.place(c, "morning", focus=None, motivation=None, windows=False)


def test_the_whole_template_when_the_money_holds_it():
    cat = catalogue()
    item, why = place(fitter(cat, 0.5), candidate(cat, "essay"))
    assert why is None and item.skip_steps == () and item.model is None and item.choices == ()
    assert item.estimated_cost_usd == pytest.approx(0.16)


def test_optional_steps_are_left_out_first_with_the_reason():
    cat = catalogue()
    item, why = place(fitter(cat, 0.12), candidate(cat, "essay"))
    assert item is not None and item.skip_steps == (1,) and item.model is None
    assert item.choices == ("optional step(s) 2 (f.polish) left out to fit the money: $0.10 instead of $0.16 "
                            "(creative had $0.12 left)",)


def test_then_the_cheaper_model_with_the_reason():
    cat = catalogue()
    item, why = place(fitter(cat, 0.05, cheap="claude-haiku-5-5", limit=0.1), candidate(cat, "essay"))
    assert item is not None and item.model == "claude-haiku-5-5" and item.skip_steps == ()
    assert item.estimated_cost_usd == pytest.approx(0.16 * 0.05)
    assert "instead of claude-sonnet-5-5" in item.choices[0] and "only on the cheaper model" in item.choices[0]


def test_a_category_running_low_uses_the_cheaper_model_even_when_the_dear_one_fits():
    cat = catalogue()
    item, _ = place(fitter(cat, 0.2, cheap="claude-haiku-5-5", limit=1.0), candidate(cat, "essay"))
    assert item.model == "claude-haiku-5-5"
    assert "has 20% of its money left (below planner.cheap_below_fraction 25%)" in item.choices[0]


def test_nothing_fits_gives_every_reason():
    cat = catalogue()
    item, why = place(fitter(cat, 0.01), candidate(cat, "essay"))
    assert item is None
    assert why == "creative has $0.01 left, needs $0.16; creative has $0.01 left, needs $0.10"


def test_a_phase_holds_only_as_much_work_as_its_length_from_each_units_release():
    cat = catalogue()
    f = fitter(cat, 1.0)
    # late_tidy may start only at 10:00 (its window) and takes 120 min: the morning (06-12) holds it
    assert place(f, candidate(cat, "late_tidy"))[1] is None
    assert f.release(cat.templates["late_tidy"].template, "morning") == MORNING + timedelta(hours=4)
    assert f.finish("morning") == MORNING + timedelta(hours=6)
    # work released at 06:00 fits before it: tidy 06-08, an essay 08-09:30
    assert place(f, candidate(cat, "tidy"))[1] is None
    essay = candidate(cat, "essay", room=2)
    assert place(f, essay)[1] is None
    assert f.finish("morning") == MORNING + timedelta(hours=6)
    # a second essay (09:30-11:00) would push the 10:00 unit to 13:00
    item, why = place(f, essay)
    assert item is None
    # (and without its optional step, 60 min, still 30 min past)
    assert why == ("needs 90 min from 06:00: the morning's work would run 60 min past its end at 12:00; "
                   "needs 60 min from 06:00: the morning's work would run 30 min past its end at 12:00")


def test_cooldown_conflict_counts_planned_and_past_starts():
    cat = catalogue()
    t = cat.templates["tidy"].template
    assert cooldown_conflict(t, MORNING, [MORNING - timedelta(hours=9)]) is None
    assert cooldown_conflict(t, MORNING, [MORNING - timedelta(hours=7)]).startswith("cooldown 8h since a unit starting")
    assert cooldown_conflict(cat.templates["essay"].template, MORNING, [MORNING]) is None
