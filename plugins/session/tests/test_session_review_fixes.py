"""Review fixes: growth-edge areas from the model, re-runs that never pay twice, concurrent research
runs, front matter, strict inbox and feed lines, the time budget's cap, bad research topics."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from cass_actions_core import hookimpl
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.llm.scripted import ScriptedProvider
from cass_actions_core.problems import CatalogueError


def _provider_calls(plugin: Any) -> int:
    return sum(p.calls for p in plugin.providers)


# -- finding 2: a growth edge named by the model must be a listed one ----------------------------

def test_update_growth_edge_matches_the_models_near_miss_to_a_listed_area(demo_runtime, run_action, fake_anthropic,
                                                                          read_model):
    fake_anthropic.reply_json({"area": "Patience with open question", "observation": "I let a question sit all day.",
                               "current_state": ""})
    runtime = demo_runtime(anthropic=fake_anthropic)
    assert run_action(runtime, "session.record_insight", {"text": "An open question is not a failure."}).ok
    outcome = run_action(runtime, "session.update_growth_edge")
    assert outcome.ok, outcome.error
    edges = read_model(runtime)["growth_edges"]
    assert [e["area"] for e in edges] == ["patience with open questions", "writing with a lighter touch"]  # no new edge
    assert edges[0]["observations"][-1] == {"text": "I let a question sit all day.", "at": "2026-01-05T09:00:00+00:00",
                                            "source": "derived"}
    assert outcome.result["data"]["area"] == "patience with open questions" and outcome.result["data"]["created"] is False


def test_update_growth_edge_fails_for_an_area_the_model_invented(demo_runtime, run_action, fake_anthropic):
    fake_anthropic.reply_json({"area": "juggling knives", "observation": "I dropped one.", "current_state": "Clumsy."})
    runtime = demo_runtime(anthropic=fake_anthropic)
    assert run_action(runtime, "session.record_insight", {"text": "An open question is not a failure."}).ok
    path = runtime.workspace / "self" / "model.json"
    before = path.read_bytes()
    outcome = run_action(runtime, "session.update_growth_edge")
    assert not outcome.ok
    assert "'juggling knives'" in outcome.error and "not in the self model" in outcome.error
    assert "patience with open questions" in outcome.error  # the listed areas are named
    assert path.read_bytes() == before  # nothing created, nothing changed


def test_add_observation_drops_an_area_the_model_invented(demo_runtime, run_action, fake_anthropic, read_model):
    fake_anthropic.reply_json({"text": "I noticed I hurry.", "area": "juggling knives"})
    runtime = demo_runtime(anthropic=fake_anthropic)
    assert run_action(runtime, "session.record_insight", {"text": "An open question is not a failure."}).ok
    outcome = run_action(runtime, "session.add_observation")
    assert outcome.ok, outcome.error
    model = read_model(runtime)
    assert "area" not in model["observations"][-1]
    assert [e["area"] for e in model["growth_edges"]] == ["patience with open questions", "writing with a lighter touch"]


# -- finding 4: a re-run of a finished session returns its stored result, no LLM call ---------------

def test_a_rerun_with_the_same_run_key_returns_the_stored_result_without_a_call(demo_runtime, run_action, scripted_llm,
                                                                                conclusions, monkeypatch):
    from cass_actions_session import sessions

    captured: dict[str, Any] = {}
    original = sessions.run_session

    async def spy(ctx, spec):
        captured["ctx"], captured["spec"] = ctx, spec
        return await original(ctx, spec)

    monkeypatch.setattr(sessions, "run_session", spy)
    llm = scripted_llm(["A thought about rest.\nSESSION COMPLETE", conclusions])  # cycles: a second run could pay
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted")
    first = run_action(runtime, "session.reflection")
    assert first.ok, first.error
    calls, transcripts = _provider_calls(llm), list(captured["ctx"].llm.transcript_ids)
    assert calls == 2

    # The executor runs the step again with the same run key (a restart after a crash).
    ctx = dataclasses.replace(captured["ctx"], artifacts=[])
    again = asyncio.run(original(ctx, captured["spec"]))
    assert _provider_calls(llm) == calls and ctx.llm.calls == 2  # no new request
    assert list(ctx.llm.transcript_ids) == transcripts  # no new transcript
    assert again.summary == first.result["summary"]
    assert again.insights == first.result["insights"] == conclusions["insights"]
    assert again.questions == first.result["questions"]
    assert again.data["path"] == first.result["data"]["path"] and again.data["replayed"] is True
    assert [a.path for a in ctx.artifacts] == [a["path"] for a in first.result["artifacts"]]
    day = first.result["data"]["path"].split("/")[1]
    assert len(runtime.store.kv_get("session", f"session_log/{day}")) == 1  # the replay logged nothing more


def test_a_logged_run_whose_record_is_missing_runs_again(demo_runtime, run_action, scripted_llm, conclusions, monkeypatch):
    from cass_actions_session import sessions

    captured: dict[str, Any] = {}
    original = sessions.run_session

    async def spy(ctx, spec):
        captured["ctx"], captured["spec"] = ctx, spec
        return await original(ctx, spec)

    monkeypatch.setattr(sessions, "run_session", spy)
    llm = scripted_llm(["A thought.\nSESSION COMPLETE", conclusions])
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted")
    first = run_action(runtime, "session.reflection")
    (runtime.workspace / "session" / first.result["data"]["path"]).unlink()
    # Not a finished run: it runs again and asks for a call (refused here: this run's reservation is settled).
    with pytest.raises(LLMError, match="budget"):
        asyncio.run(original(dataclasses.replace(captured["ctx"], artifacts=[]), captured["spec"]))


# -- finding 6: concurrent research runs never take one topic twice nor lose a refresh -------------

class _GatedLLM:
    """Registers provider ``"gated"``: note calls wait until the test opens the gate."""

    def __init__(self) -> None:
        self.waiting: list[Any] = []
        self.gate: asyncio.Event | None = None
        self.providers: list[Any] = []

    @hookimpl
    def register_llm_providers(self, register: Any) -> None:
        plugin = self

        def reply(request: Any) -> Any:
            if "Give its summary" in request.prompt_text():
                return {"summary": "A summary.", "findings": ["A finding about the topic at hand."], "open_questions": []}
            return "A note from the model about the topic."

        class Gated(ScriptedProvider):
            async def complete(self, request: Any) -> Any:
                plugin.waiting.append(request)
                assert plugin.gate is not None
                await plugin.gate.wait()
                return await super().complete(request)

        def factory(settings: Any) -> Any:
            provider = Gated(reply, name="gated", settings=settings)
            self.providers.append(provider)
            return provider

        register("gated", factory)


def test_concurrent_research_runs_claim_different_topics_and_keep_a_refresh(demo_runtime, run_action):
    llm = _GatedLLM()
    runtime = demo_runtime(plugins=[("llm", llm)], provider="gated",
                           config={"scheduler": {"max_concurrent_units": 3}})
    assert run_action(runtime, "session.refresh_research_queue").ok  # three open questions queued

    async def refresh_while_both_wait():
        while len(llm.waiting) < 2:
            await asyncio.sleep(0.001)
        queue = runtime.store.kv_get("session", "research_queue")
        assert [e["status"] for e in queue] == ["in_progress", "in_progress", "pending"]  # claimed before the await
        unit = await runtime.run_action("session.refresh_research_queue", {"topics": ["tide pools at dusk"]})
        assert llm.gate is not None
        llm.gate.set()
        return unit

    async def together():
        llm.gate = asyncio.Event()
        return await asyncio.wait_for(asyncio.gather(
            runtime.run_action("session.research_single"), runtime.run_action("session.research_single"),
            refresh_while_both_wait()), timeout=20)

    units = asyncio.run(together())
    assert [u.status for u in units] == ["completed"] * 3
    runs = [runtime.store.action_runs_for_unit(u.id)[0].result["data"] for u in units[:2]]
    assert runs[0]["topic"] != runs[1]["topic"]  # never the same topic twice
    queue = {e["topic"]: e for e in runtime.store.kv_get("session", "research_queue")}
    assert queue["tide pools at dusk"]["status"] == "pending"  # the concurrent refresh's topic survived
    assert sorted(e["status"] for e in queue.values()) == ["done", "done", "pending", "pending"]
    assert not any("claimed_by" in e for e in queue.values())


def test_a_failed_note_call_gives_the_topic_back(demo_runtime, run_action, scripted_llm):
    llm = scripted_llm([LLMError("overloaded", kind="overloaded")], cycle=False)
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted")
    outcome = run_action(runtime, "session.research_single")
    assert not outcome.ok and "overloaded" in outcome.error
    queue = runtime.store.kv_get("session", "research_queue")
    assert [e["status"] for e in queue] == ["pending", "pending", "pending"]


def test_a_claim_left_by_a_dead_run_is_taken_over_after_it_expires(demo_runtime, run_action):
    runtime = demo_runtime()
    run_action(runtime, "session.refresh_research_queue")
    queue = runtime.store.kv_get("session", "research_queue")
    queue[0].update({"status": "in_progress", "claimed_by": "2026-01-05/morning/dead/0",
                     "claimed_at": "2026-01-05T08:30:00+00:00"})  # 30 minutes ago: still held
    runtime.store.kv_set("session", "research_queue", queue)
    first = run_action(runtime, "session.research_single")
    assert first.result["data"]["topic"] == queue[1]["topic"]
    queue = runtime.store.kv_get("session", "research_queue")
    queue[0]["claimed_at"] = "2026-01-05T07:30:00+00:00"  # 90 minutes ago: its run died
    runtime.store.kv_set("session", "research_queue", queue)
    second = run_action(runtime, "session.research_single")
    assert second.result["data"]["topic"] == queue[0]["topic"]


# -- finding 7: front matter is metadata, never material ------------------------------------------

def test_markdown_front_matter_is_not_passed_to_the_model(demo_runtime, run_action, scripted_llm, conclusions):
    journal = Path("journal") / "2026-01-05.md"
    llm = scripted_llm(["First.", "Second.", conclusions], cycle=False)
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted")
    (runtime.workspace / journal).parent.mkdir(parents=True, exist_ok=True)
    (runtime.workspace / journal).write_text(
        '---\ntitle: "2026-01-05"\nmood_tag: "secret-front-matter"\n---\n# 2026-01-05\n\nThe basil recovered in the shade.\n',
        encoding="utf-8")
    outcome = run_action(runtime, "session.writing", {"max_turns": 3})
    assert outcome.ok, outcome.error
    prompt = llm.providers[0].requests[0].messages[0]["content"]
    assert "The basil recovered in the shade." in prompt
    assert "secret-front-matter" not in prompt and "mood_tag" not in prompt
    assert not any("---" in t or "mood_tag" in t for t in outcome.result["data"]["threads"])


# -- finding 8: inbox and feed lines are checked like the memory pack does ------------------------

def _inbox(runtime: Any, lines: list[Any]) -> None:
    folder = runtime.workspace / "conversations" / "inbox"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "x.jsonl").write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n",
                                    encoding="utf-8")


def test_inbox_lines_need_a_known_role_and_an_aware_time_and_sort_by_time(cass_runtime, run_action, scripted_llm,
                                                                            conclusions):
    llm = scripted_llm(["A turn.\nSESSION COMPLETE", conclusions], cycle=False)
    runtime = cass_runtime(load=["session"], plugins=[("llm", llm)], provider="scripted")
    _inbox(runtime, [
        {"conversation_id": "east", "role": "user", "content": "Hello from the east.", "at": "2026-01-05T09:30:00+05:00"},
        {"conversation_id": "west", "role": "user", "content": "Hello from the west.", "at": "2026-01-05T06:00:00+00:00"},
        {"conversation_id": "west", "role": "robot", "content": "Beep.", "at": "2026-01-05T06:01:00+00:00"},
        {"conversation_id": "west", "role": "assistant", "content": "Naive time.", "at": "2026-01-05T06:02:00"},
        {"conversation_id": "west", "role": "assistant", "content": "Hi, west.", "at": "2026-01-05T06:03:00Z"},
    ])
    outcome = run_action(runtime, "session.user_synthesis")
    assert outcome.ok, outcome.error
    warnings = outcome.result["data"]["warnings"]
    assert "conversations/inbox/x.jsonl line 3: field 'role' must be 'user' or 'assistant', got 'robot'; line skipped" in warnings
    assert any(w.startswith("conversations/inbox/x.jsonl line 4: field 'at' has no UTC offset") for w in warnings)
    prompt = llm.providers[0].requests[0].messages[0]["content"]
    assert "Beep." not in prompt and "Naive time." not in prompt
    # west ended at 06:03 UTC, east at 04:30 UTC: west is the most recent (a string sort says east)
    assert prompt.index("### west") < prompt.index("### east")
    assert "### west (2 messages, last 2026-01-05T06:03:00Z)" in prompt


def test_feed_warnings_name_file_lines_and_items_sort_by_aware_time(cass_runtime, run_action, scripted_llm, conclusions):
    llm = scripted_llm(["A turn.\nSESSION COMPLETE", conclusions], cycle=False)
    runtime = cass_runtime(load=["session"], plugins=[("llm", llm)], provider="scripted")
    folder = runtime.workspace / "feeds"
    folder.mkdir()
    (folder / "f.jsonl").write_text("\n".join([
        '{"title": "unterminated',
        json.dumps({"source": "no title"}),
        json.dumps({"title": "Eastern item", "published": "2026-01-05T09:00:00+05:00"}),
        json.dumps({"title": "Naive item", "published": "2026-01-05T08:00:00"}),
        json.dumps({"title": "Western item", "published": "2026-01-05T05:00:00+00:00"}),
        json.dumps({"title": "Undated item"}),
    ]) + "\n", encoding="utf-8")
    outcome = run_action(runtime, "session.world_state")
    assert outcome.ok, outcome.error
    warnings = outcome.result["data"]["warnings"]
    assert warnings[0] == "feeds/f.jsonl line 1: invalid JSON, column 11: Unterminated string starting at; line skipped"
    assert "at at" not in warnings[0]  # finding 18
    assert warnings[1] == "feeds/f.jsonl line 2: no field 'title' or 'summary', line skipped"
    assert warnings[2].startswith("feeds/f.jsonl line 4: field 'published' has no UTC offset")
    assert outcome.result["data"]["new_items"] == 3
    prompt = llm.providers[0].requests[0].messages[0]["content"]
    # 05:00 UTC is newer than 04:00 UTC (09:00+05:00), whatever the strings say; undated items come last
    assert prompt.index("Western item") < prompt.index("Eastern item") < prompt.index("Undated item")


# -- finding 12: max_minutes is bounded and capped below the action's timeout ---------------------

def test_max_minutes_above_the_schema_limit_is_refused_at_startup(demo_runtime):
    with pytest.raises(CatalogueError) as info:
        demo_runtime(config={"packs": {"session": {"max_minutes": 100, "turbo": True}}})
    assert sorted(p.path for p in info.value.problems) == ["$.packs.session", "$.packs.session.max_minutes"]


def test_max_minutes_is_capped_below_the_actions_timeout(demo_runtime, run_action):
    runtime = demo_runtime(config={"packs": {"session": {"max_minutes": 30, "max_turns": 1}}})
    world = run_action(runtime, "session.world_state")  # times out after 1800 s
    assert world.ok, world.error
    assert world.result["data"]["max_minutes"] == 20 and world.result["data"]["max_minutes_capped_from"] == 30
    reflection = run_action(runtime, "session.reflection")  # times out after 2400 s
    assert reflection.result["data"]["max_minutes"] == 30 and "max_minutes_capped_from" not in reflection.result["data"]


def test_every_session_budget_fits_its_timeout():
    from importlib.resources import files

    from cass_actions_session.common import definitions
    from cass_actions_session.plugin import SESSION_ACTIONS
    from cass_actions_session.runner import MAX_MINUTES_SETTING, TIMEOUT_RESERVE_SECONDS, minutes_cap

    schema = json.loads((files("cass_actions_session") / "settings.schema.json").read_text(encoding="utf-8"))
    sessions = [d for d in definitions().values() if d["id"] in SESSION_ACTIONS]
    assert len(sessions) == len(SESSION_ACTIONS) == 12
    assert schema["properties"]["max_minutes"]["maximum"] == MAX_MINUTES_SETTING == max(minutes_cap(d["id"]) for d in sessions)
    for d in sessions:
        assert minutes_cap(d["id"]) * 60 + TIMEOUT_RESERVE_SECONDS <= d["timeout_seconds"]
        assert d["default_duration_minutes"] <= minutes_cap(d["id"])


# -- finding 14: a bad topic param fails naming the param --------------------------------------------

@pytest.mark.parametrize("topic", ["a", "[offline] a placeholder question?"])
def test_run_single_with_an_unusable_topic_fails_naming_the_param(demo_runtime, run_action, topic):
    runtime = demo_runtime()
    outcome = run_action(runtime, "session.research_single", {"topic": topic})
    assert not outcome.ok
    assert outcome.error.startswith("params.topic: ") and repr(topic) in outcome.error
    assert outcome.result["llm"]["calls"] == 0 and runtime.store.kv_get("session", "research_queue", []) == []


def test_record_insight_offline_never_records_a_real_insight_twice(cass_runtime, run_action, read_model, scripted_llm,
                                                                  tmp_path):
    from cass_actions_core.workspace import seed_demo_workspace

    llm = scripted_llm(["A thought.\nSESSION COMPLETE", {"summary": "s", "insights": ["Rest is part of the work."],
                                                         "questions": []}], cycle=False)
    first = cass_runtime(load=["session"], plugins=[("llm", llm)], provider="scripted", data_dir=tmp_path / "d")
    seed_demo_workspace(first.workspace, now=first.clock.now())
    assert run_action(first, "session.reflection").ok
    first.close()
    second = cass_runtime(load=["session"], data_dir=tmp_path / "d")  # offline
    assert run_action(second, "session.record_insight").ok
    assert run_action(second, "session.record_insight").ok
    texts = [i["text"] for i in read_model(second)["insights"]]
    assert texts[0] == "[offline] Rest is part of the work."
    assert texts.count("[offline] Rest is part of the work.") == 1 and all(t.startswith("[offline] ") for t in texts)
