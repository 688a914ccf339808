"""Planning facts from several packs merge instead of overwriting each other (``gather_context``)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core import hookimpl
from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import Config
from cass_actions_core.context import PlanningContext
from cass_actions_core.runtime import Runtime
from support import HandPack, action_def, template_def

UTC_ZONE = ZoneInfo("UTC")
START = datetime(2026, 11, 26, 6, 0, tzinfo=UTC_ZONE)
DAY = date(2026, 11, 26)


def context() -> PlanningContext:
    return PlanningContext(now=START, daemon_id="d", workspace=Path("/nowhere"))


def from_pack(ctx: PlanningContext, pack: str) -> PlanningContext:
    """Make ``pack`` the one whose hook is running, as ``Runtime.gather_context`` does."""
    ctx._current_pack = pack
    return ctx


# -- the merge rules, one by one ------------------------------------------------------------

def test_lists_concatenate_in_pack_order_without_exact_duplicates():
    ctx = context()
    from_pack(ctx, "outside").set("open_questions", ["Why do tides turn?", "What is rest?"])
    from_pack(ctx, "session").set("open_questions", ["What is rest?", "How does memory fade?"])
    assert ctx.get("open_questions") == ["Why do tides turn?", "What is rest?", "How does memory fade?"]
    assert ctx.sources["open_questions"] == "outside, session"
    assert ctx.given("open_questions") == {"outside": ["Why do tides turn?", "What is rest?"],
                                           "session": ["What is rest?", "How does memory fade?"]}


def test_list_items_that_are_mappings_are_deduplicated_by_equality():
    ctx = context()
    edge = {"area": "patience", "current_state": "rushing"}
    from_pack(ctx, "a").set("growth_edges", [edge])
    from_pack(ctx, "b").set("growth_edges", [dict(edge), {"area": "brevity", "current_state": ""}])
    assert ctx.get("growth_edges") == [edge, {"area": "brevity", "current_state": ""}]


def test_mappings_merge_key_by_key_and_the_later_pack_wins_a_shared_key():
    ctx = context()
    from_pack(ctx, "session").set("mood", {"curiosity": 0.8, "contentment": 0.6})
    from_pack(ctx, "sensor").set("mood", {"curiosity": 0.3, "tiredness": 0.9})
    assert ctx.get("mood") == {"curiosity": 0.3, "contentment": 0.6, "tiredness": 0.9}
    assert ctx.sources["mood"] == "session, sensor"
    assert ctx.given("mood")["session"] == {"curiosity": 0.8, "contentment": 0.6}


def test_scalars_and_changes_of_kind_take_the_later_packs_value_and_keep_the_earlier_readable():
    ctx = context()
    from_pack(ctx, "a").set("weather", "rain")
    from_pack(ctx, "b").set("weather", "sun")
    assert ctx.get("weather") == "sun" and ctx.sources["weather"] == "b"
    assert ctx.given("weather") == {"a": "rain", "b": "sun"}
    from_pack(ctx, "a").set("focus", ["one"])
    from_pack(ctx, "b").set("focus", "just this")
    assert ctx.get("focus") == "just this" and ctx.sources["focus"] == "b"


def test_last_user_activity_is_the_latest_time_whichever_pack_gave_it():
    ctx = context()
    newer, older = START - timedelta(minutes=5), START - timedelta(hours=3)
    from_pack(ctx, "memory").set("last_user_activity", newer)
    from_pack(ctx, "chat").set("last_user_activity", older)  # later pack, older time: must not hide the newer one
    assert ctx.get("last_user_activity") == newer
    assert ctx.sources["last_user_activity"] == "memory"
    assert ctx.given("last_user_activity") == {"memory": newer, "chat": older}


def test_last_user_activity_compares_instants_and_iso_text_and_skips_unusable_values():
    ctx = context()
    london = ZoneInfo("Europe/London")
    from_pack(ctx, "a").set("last_user_activity", datetime(2026, 11, 26, 5, 0, tzinfo=london))
    from_pack(ctx, "b").set("last_user_activity", "2026-11-26T05:30:00+01:00")  # 04:30 UTC: older
    from_pack(ctx, "c").set("last_user_activity", datetime(2026, 11, 26, 23, 0))  # naive: unusable
    assert ctx.get("last_user_activity") == datetime(2026, 11, 26, 5, 0, tzinfo=london)
    assert ctx.sources["last_user_activity"] == "a"


def test_with_no_usable_activity_time_the_later_value_stays_for_the_idle_check_to_report():
    ctx = context()
    from_pack(ctx, "a").set("last_user_activity", "yesterday-ish")
    from_pack(ctx, "b").set("last_user_activity", datetime(2026, 11, 26, 5, 0))
    assert ctx.get("last_user_activity") == datetime(2026, 11, 26, 5, 0)
    assert ctx.sources["last_user_activity"] == "b"


def test_a_pack_setting_a_key_twice_replaces_its_own_value():
    ctx = context()
    from_pack(ctx, "a").set("open_questions", ["q1"])
    from_pack(ctx, "b").set("open_questions", ["q2"])
    from_pack(ctx, "b").set("open_questions", ["q3"])
    assert ctx.get("open_questions") == ["q1", "q3"]


def test_reading_merging_and_setting_back_gives_no_duplicates():
    # The pattern pack authors used to work around overwriting: read, extend, set.
    ctx = context()
    from_pack(ctx, "session").set("open_questions", ["q1", "q2"])
    from_pack(ctx, "mine").set("open_questions", [*ctx.get("open_questions", []), "q3"])
    assert ctx.get("open_questions") == ["q1", "q2", "q3"]
    assert ctx.given("open_questions")["session"] == ["q1", "q2"]  # untouched by the later pack


def test_replace_drops_what_earlier_packs_gave_and_later_packs_still_merge():
    ctx = context()
    from_pack(ctx, "session").set("identity", ["I am Cass."])
    from_pack(ctx, "app").replace("identity", ["I am Wren."])
    assert ctx.get("identity") == ["I am Wren."] and ctx.sources["identity"] == "app"
    from_pack(ctx, "extra").set("identity", ["I keep a garden."])
    assert ctx.get("identity") == ["I am Wren.", "I keep a garden."]
    assert ctx.given("identity") == {"session": ["I am Cass."], "app": ["I am Wren."], "extra": ["I keep a garden."]}


def test_get_returns_the_default_and_given_is_empty_for_an_unknown_fact():
    ctx = context()
    assert ctx.get("open_questions") is None
    assert ctx.get("open_questions", []) == []
    assert ctx.given("open_questions") == {}


def test_the_merged_list_is_not_the_packs_own_object():
    ctx = context()
    mine = ["q1"]
    from_pack(ctx, "a").set("open_questions", mine)
    ctx.get("open_questions").append("scribbled")  # a careless reader
    assert mine == ["q1"]


# -- through the runtime: packs registered by hand ----------------------------------------

class Questions:
    """An outside pack with its own open questions, mood and activity time."""

    def __init__(self, questions: list[str], mood: dict[str, float] | None = None,
                 active_at: datetime | None = None) -> None:
        self.questions = questions
        self.mood = mood
        self.active_at = active_at

    @hookimpl
    def gather_context(self, context: Any) -> None:
        context.set("open_questions", self.questions)
        if self.mood is not None:
            context.set("mood", self.mood)
        if self.active_at is not None:
            context.set("last_user_activity", self.active_at)


def runtime_with(tmp_path: Path, plugins: list[tuple[str, Any]], start: datetime = START) -> Runtime:
    pack = HandPack([action_def("t.tidy", tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, category="system"),
                     action_def("t.quiet", category="memory", estimated_cost_usd=0.01, max_cost_usd=0.02,
                                requires_idle=True)],
                    [template_def("quiet", ["t.quiet"], category="memory",
                                  preferred_windows=[{"start_hour": 0, "end_hour": 24}])])
    cfg = Config.from_dict({"timezone": "UTC", "scheduler": {"idle_after_minutes": 30}})
    clock = VirtualClock(UTC_ZONE, start)
    return Runtime(cfg, data_dir=tmp_path / "data", clock=clock, plugins=[("t", pack), *plugins],
                   entry_points=False, provider="offline")


def test_two_packs_open_questions_both_reach_the_planner(tmp_path: Path):
    runtime = runtime_with(tmp_path, [("outside", Questions(["Why do tides turn?"], {"curiosity": 0.9})),
                                      ("later", Questions(["How does memory fade?"], {"tiredness": 0.2}))])
    ctx = runtime.gather_context()
    assert ctx.get("open_questions") == ["Why do tides turn?", "How does memory fade?"]
    assert ctx.get("mood") == {"curiosity": 0.9, "tiredness": 0.2}
    assert ctx.sources["open_questions"] == "outside, later"
    message = runtime.plan_dry_run(DAY)["prompt"]["message"]
    assert "Why do tides turn?" in message and "How does memory fade?" in message
    runtime.close()


def test_a_later_pack_with_an_older_activity_time_does_not_make_the_daemon_idle(tmp_path: Path):
    recent, old = START - timedelta(minutes=5), START - timedelta(hours=5)
    runtime = runtime_with(tmp_path, [("chat", Questions([], active_at=recent)),
                                      ("diary", Questions([], active_at=old))])
    assert runtime.last_activity() == recent
    assert not runtime.is_idle()  # the user wrote five minutes ago: idle-only work waits
    runtime.acquire_lease()
    asyncio.run(runtime.tick())
    quiet = runtime.units(template_id="quiet")
    assert quiet and all(u.status != "completed" for u in quiet)
    runtime.close()


def test_the_session_pack_no_longer_erases_an_outside_packs_open_questions(tmp_path: Path):
    session_plugin = pytest.importorskip("cass_actions_session.plugin")
    from cass_actions_core.workspace import DEMO_SELF_MODEL, seed_demo_workspace

    # The outside pack loads first (its distribution name sorts first), the session pack after it.
    runtime = runtime_with(tmp_path, [("outside", Questions(["Why do tides turn?"], {"curiosity": 0.1})),
                                      ("session", session_plugin)])
    seed_demo_workspace(runtime.workspace, now=runtime.clock.now())
    ctx = runtime.gather_context()
    assert ctx.get("open_questions") == ["Why do tides turn?", *DEMO_SELF_MODEL["open_questions"]]
    assert ctx.sources["open_questions"] == "outside, session"
    # mood: the session pack (later) wins the key both give; nothing else is lost
    assert ctx.get("mood") == DEMO_SELF_MODEL["mood"]
    assert ctx.given("mood")["outside"] == {"curiosity": 0.1}
    # facts only the session pack gives are its own, as before
    assert ctx.sources["growth_edges"] == "session"
    runtime.close()


class HalfThenFail(Questions):
    """Sets its facts, then raises: what it set must not count."""

    @hookimpl
    def gather_context(self, context: Any) -> None:
        super().gather_context(context)
        raise RuntimeError("the pack's source went away half-way")


def test_a_pack_that_fails_part_way_leaves_none_of_its_facts(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    runtime = runtime_with(tmp_path, [("good", Questions(["Why do tides turn?"], {"curiosity": 0.9})),
                                      ("broken", HalfThenFail(["half a question"], {"curiosity": 0.1},
                                                              active_at=START))])
    ctx = runtime.gather_context()
    assert ctx.get("open_questions") == ["Why do tides turn?"] and ctx.sources["open_questions"] == "good"
    assert ctx.get("mood") == {"curiosity": 0.9}
    assert ctx.get("last_user_activity") is None and "last_user_activity" not in ctx.sources
    assert ctx.given("open_questions") == {"good": ["Why do tides turn?"]}
    assert "broken" in caplog.text and "left out" in caplog.text
    runtime.close()
