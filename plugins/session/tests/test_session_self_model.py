"""The self-model actions and the gather_context hook."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from cass_actions_core.problems import UserError


def _calls(outcome) -> int:
    return outcome.result["llm"]["calls"]


def test_add_observation_from_params_appends_without_an_llm_call(demo_runtime, run_action, read_model):
    runtime = demo_runtime()
    path = runtime.workspace / "self" / "model.json"
    model = json.loads(path.read_text())
    model["custom"] = {"kept": [1, 2]}  # a key this pack does not know
    path.write_text(json.dumps(model), encoding="utf-8")
    outcome = run_action(runtime, "session.add_observation",
                         {"text": "I wait longer before answering now.", "area": "Patience With Open Questions"})
    assert outcome.ok, outcome.error
    assert outcome.cost_usd == 0 and _calls(outcome) == 0
    after = read_model(runtime)
    assert after["custom"] == {"kept": [1, 2]}
    assert after["observations"][-1]["text"] == "I wait longer before answering now."
    assert after["observations"][-1]["source"] == "params"
    assert after["observations"][-1]["at"] == "2026-01-05T09:00:00+00:00"
    edge = after["growth_edges"][0]
    assert edge["observations"][-1]["text"] == "I wait longer before answering now."
    assert '\n  "identity": [' in path.read_text()  # still indented, human-readable JSON
    assert outcome.result["artifacts"] == [{"kind": "json", "title": "Self model", "path": "self/model.json", "ref": None}]
    again = run_action(runtime, "session.add_observation", {"text": "I wait longer before answering now."})
    assert again.ok and "already in the self model" in again.result["summary"]
    assert len(read_model(runtime)["observations"]) == 1


def test_add_observation_without_text_or_work_changes_nothing(demo_runtime, run_action):
    runtime = demo_runtime()
    before = (runtime.workspace / "self" / "model.json").read_bytes()
    outcome = run_action(runtime, "session.add_observation")
    assert outcome.ok and outcome.result["data"]["changed"] is False and _calls(outcome) == 0
    assert (runtime.workspace / "self" / "model.json").read_bytes() == before


def test_add_observation_derived_offline_from_todays_work(demo_runtime, run_action, read_model):
    runtime = demo_runtime()
    assert run_action(runtime, "session.growth_edge", {"max_turns": 1}).ok
    outcome = run_action(runtime, "session.add_observation")
    assert outcome.ok, outcome.error
    assert _calls(outcome) == 1
    observation = read_model(runtime)["observations"][-1]
    # Built without a model: labelled, and recorded as offline, never as the daemon's own.
    assert observation["source"] == "offline"
    assert observation["text"].startswith("[offline] Today my work went to Growth edge session")
    assert observation["area"] in {"patience with open questions", "writing with a lighter touch"}
    edge = next(e for e in read_model(runtime)["growth_edges"] if e["area"] == observation["area"])
    assert edge["observations"][-1]["source"] == "offline"


def test_add_observation_through_the_fake_messages_api(demo_runtime, run_action, fake_anthropic, read_model):
    fake_anthropic.reply_json({"text": "I notice I slow down when a question stays open.", "area": "patience with open questions"})
    runtime = demo_runtime(anthropic=fake_anthropic)
    assert run_action(runtime, "session.record_insight", {"text": "Questions can be lived with."}).ok  # today's work, no call
    outcome = run_action(runtime, "session.add_observation")
    assert outcome.ok, outcome.error
    (request,) = fake_anthropic.message_requests
    assert "Questions can be lived with." in request.body["messages"][0]["content"]
    model = read_model(runtime)
    assert model["observations"][-1]["text"] == "I notice I slow down when a question stays open."
    assert model["growth_edges"][0]["observations"][-1]["text"] == "I notice I slow down when a question stays open."


def test_record_insight_from_params_and_never_twice(demo_runtime, run_action, read_model):
    runtime = demo_runtime()
    outcome = run_action(runtime, "session.record_insight", {"text": "Rest is part of the work.", "source": "a walk"})
    assert outcome.ok and outcome.cost_usd == 0 and _calls(outcome) == 0
    assert outcome.result["insights"] == ["Rest is part of the work."]
    assert read_model(runtime)["insights"][-1] == {"text": "Rest is part of the work.", "at": "2026-01-05T09:00:00+00:00",
                                                    "source": "a walk"}
    again = run_action(runtime, "session.record_insight", {"text": "rest is part of the work"})
    assert again.result["data"]["changed"] is False and len(read_model(runtime)["insights"]) == 1


def test_record_insight_derived_offline_is_labelled_and_skips_offline_insights(demo_runtime, run_action, read_model):
    runtime = demo_runtime()
    session = run_action(runtime, "session.reflection", {"max_turns": 2})
    assert session.result["insights"][0].startswith("[offline] ")  # offline conclusions are labelled
    outcome = run_action(runtime, "session.record_insight")
    assert outcome.ok, outcome.error
    insight = read_model(runtime)["insights"][-1]
    assert insight["source"] == "offline"
    assert insight["text"].startswith("[offline] Today's work (")  # the session's placeholder is not taken as an insight
    assert insight["text"] != session.result["insights"][0]


def test_record_insight_offline_keeps_a_real_session_insight_labelled(cass_runtime, run_action, read_model, scripted_llm,
                                                                      tmp_path):
    from cass_actions_core.workspace import seed_demo_workspace

    llm = scripted_llm(["A thought.\nSESSION COMPLETE", {"summary": "s", "insights": ["Rest is part of the work."],
                                                         "questions": []}], cycle=False)
    first = cass_runtime(load=["session"], plugins=[("llm", llm)], provider="scripted", data_dir=tmp_path / "d")
    seed_demo_workspace(first.workspace, now=first.clock.now())
    assert run_action(first, "session.reflection").ok
    first.close()
    second = cass_runtime(load=["session"], data_dir=tmp_path / "d")  # offline from here on
    outcome = run_action(second, "session.record_insight")
    assert outcome.ok, outcome.error
    insight = read_model(second)["insights"][-1]
    # The model's insight is chosen without a model: kept, but labelled and recorded as offline.
    assert insight["text"] == "[offline] Rest is part of the work."
    assert insight["source"] == "offline"


def test_record_insight_through_the_fake_messages_api(demo_runtime, run_action, fake_anthropic, read_model):
    fake_anthropic.reply_json({"text": "Timing is most of care."})
    runtime = demo_runtime(anthropic=fake_anthropic)
    run_action(runtime, "session.add_observation", {"text": "I moved the basil into the shade."})
    outcome = run_action(runtime, "session.record_insight")
    assert outcome.ok, outcome.error
    assert "I moved the basil" in fake_anthropic.message_requests[0].body["messages"][0]["content"]
    assert read_model(runtime)["insights"][-1]["text"] == "Timing is most of care."


def test_update_growth_edge_from_params(demo_runtime, run_action, read_model):
    runtime = demo_runtime()
    outcome = run_action(runtime, "session.update_growth_edge", {
        "area": "writing with a LIGHTER touch", "current_state": "I cut one explaining sentence per entry.",
        "observation": "Yesterday's entry showed more than it told."})
    assert outcome.ok and outcome.cost_usd == 0 and _calls(outcome) == 0
    edge = read_model(runtime)["growth_edges"][1]
    assert edge["current_state"] == "I cut one explaining sentence per entry."
    assert edge["observations"][-1]["text"] == "Yesterday's entry showed more than it told."
    assert outcome.result["data"]["previous_state"] == "My entries explain too much and show too little."
    created = run_action(runtime, "session.update_growth_edge", {"area": "asking for help", "current_state": "Rarely."})
    assert created.result["data"]["created"] is True
    assert read_model(runtime)["growth_edges"][-1] == {"area": "asking for help", "current_state": "Rarely.",
                                                       "observations": [], "updated_at": "2026-01-05T09:00:00+00:00"}


def test_update_growth_edge_params_need_content(demo_runtime):
    runtime = demo_runtime()
    with pytest.raises(UserError, match="params"):
        asyncio.run(runtime.run_action("session.update_growth_edge", {"area": "patience with open questions"}))
    with pytest.raises(UserError, match="params"):
        asyncio.run(runtime.run_action("session.update_growth_edge", {"observation": "no area"}))


def test_update_growth_edge_derived_offline(demo_runtime, run_action, read_model):
    runtime = demo_runtime()
    run_action(runtime, "session.record_insight", {"text": "My writing explains too much; a lighter touch would help."})
    outcome = run_action(runtime, "session.update_growth_edge")
    assert outcome.ok, outcome.error
    edge = read_model(runtime)["growth_edges"][1]  # the edge the work talks about (word overlap)
    assert edge["area"] == "writing with a lighter touch"
    assert edge["observations"][-1]["text"].startswith("[offline] 2026-01-05: worked on Record an insight")
    assert edge["observations"][-1]["source"] == "offline"
    assert outcome.result["data"]["source"] == "offline"
    assert edge["current_state"] == "My entries explain too much and show too little."  # offline never rewrites it


def test_update_growth_edge_through_the_fake_messages_api(demo_runtime, run_action, fake_anthropic, read_model):
    fake_anthropic.reply_json({"area": "patience with open questions", "observation": "I left a question open all day.",
                               "current_state": "I can leave a question open for a day."})
    runtime = demo_runtime(anthropic=fake_anthropic)
    run_action(runtime, "session.record_insight", {"text": "An open question is not a failure."})
    outcome = run_action(runtime, "session.update_growth_edge")
    assert outcome.ok, outcome.error
    assert "patience with open questions" in fake_anthropic.message_requests[0].body["messages"][0]["content"]
    edge = read_model(runtime)["growth_edges"][0]
    assert edge["current_state"] == "I can leave a question open for a day."
    assert edge["observations"][-1]["text"] == "I left a question open all day."


def test_a_malformed_self_model_is_never_overwritten(demo_runtime, run_action):
    runtime = demo_runtime()
    path = runtime.workspace / "self" / "model.json"
    path.write_text('{"identity": ["x"],\n  oops}', encoding="utf-8")
    outcome = run_action(runtime, "session.add_observation", {"text": "Something."})
    assert not outcome.ok
    assert str(path) in outcome.error and "invalid JSON at line 2" in outcome.error
    assert path.read_text() == '{"identity": ["x"],\n  oops}'


def test_a_missing_self_model_is_created(cass_runtime, run_action):
    runtime = cass_runtime(load=["session"])
    assert run_action(runtime, "session.record_insight", {"text": "A first insight."}).ok
    assert json.loads((runtime.workspace / "self" / "model.json").read_text())["insights"][0]["text"] == "A first insight."


def test_growth_edge_work_template_records_the_sessions_evidence(demo_runtime, read_model):
    runtime = demo_runtime(config={"packs": {"session": {"max_turns": 2}}})
    unit = runtime.trigger("growth_edge_work", focus="patience")
    outcome = asyncio.run(runtime.executor.run_unit(unit.id))
    assert outcome.unit.status == "completed", outcome.unit.reason
    edges = read_model(runtime)["growth_edges"]
    evidence = [o["text"] for e in edges for o in e.get("observations", [])]
    assert any("a growth edge session on patience" in text for text in evidence)


def test_gather_context_gives_the_demo_self_model(demo_runtime):
    context = demo_runtime().gather_context()
    assert context.get("identity")[0].startswith("I am Cass")
    assert context.get("values")[0] == "honesty"
    assert context.get("mood") == {"contentment": 0.6, "curiosity": 0.8, "generativity": 0.5}
    assert context.get("growth_edges") == [
        {"area": "patience with open questions", "current_state": "I rush to conclusions when a question stays open."},
        {"area": "writing with a lighter touch", "current_state": "My entries explain too much and show too little."}]
    assert len(context.get("open_questions")) == 3
    assert context.sources["growth_edges"] == "session"


def test_gather_context_without_a_self_model_sets_nothing(cass_runtime):
    context = cass_runtime(load=["session"]).gather_context()
    assert not {"identity", "values", "mood", "growth_edges", "open_questions"} & set(context.facts)


def test_gather_context_with_a_malformed_self_model_warns_and_sets_nothing(demo_runtime, caplog):
    runtime = demo_runtime()
    path = runtime.workspace / "self" / "model.json"
    path.write_text("[1, 2", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        context = runtime.gather_context()
    assert "identity" not in context.facts and "mood" not in context.facts
    assert any(str(path) in r.getMessage() for r in caplog.records)
