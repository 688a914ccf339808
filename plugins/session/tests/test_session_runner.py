"""The shared session runner: turn cap, natural end, time budget, cost cap, LLM failures."""

from __future__ import annotations

import pytest

from cass_actions_core.llm.base import Usage
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.llm.scripted import ScriptedReply
from cass_actions_core.problems import CatalogueError


def _provider(plugin):
    (provider,) = plugin.providers
    return provider


def test_a_session_stops_at_its_turn_cap(demo_runtime, run_action, scripted_llm, artifact_text, conclusions):
    llm = scripted_llm(["First thread of thought.", "Second thread of thought.", "Third thread of thought.", conclusions],
                       cycle=False)
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted", config={"packs": {"session": {"max_turns": 3}}})
    outcome = run_action(runtime, "session.reflection")
    assert outcome.ok, outcome.error
    data = outcome.result["data"]
    assert (data["turns"], data["max_turns"], data["stop_reason"]) == (3, 3, "turn_cap")
    assert _provider(llm).calls == 4  # three turns, then the conclusions call
    text = artifact_text(runtime, outcome)
    assert "### Turn 3" in text and "### Turn 4" not in text
    assert "Third thread of thought." in text
    assert "stopped at its turn cap (3)" in text
    assert outcome.result["insights"] == conclusions["insights"]
    assert outcome.result["questions"] == conclusions["questions"]
    # The turns are one conversation: the third request carries both earlier replies.
    third = _provider(llm).requests[2]
    assert [m["role"] for m in third.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert third.messages[3]["content"] == "Second thread of thought."


def test_params_max_turns_overrides_the_setting(demo_runtime, run_action, scripted_llm, conclusions):
    llm = scripted_llm(["Only thought.", conclusions], cycle=False)
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted", config={"packs": {"session": {"max_turns": 5}}})
    outcome = run_action(runtime, "session.creative", {"max_turns": 1})
    assert outcome.result["data"]["turns"] == 1 and _provider(llm).calls == 2


def test_a_session_ends_at_the_natural_end_marker(demo_runtime, run_action, scripted_llm, artifact_text, conclusions):
    llm = scripted_llm(["I begin with the garden.", "And I end with the octopus.\n**SESSION COMPLETE**", conclusions],
                       cycle=False)
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted")
    outcome = run_action(runtime, "session.reflection")
    data = outcome.result["data"]
    assert (data["turns"], data["stop_reason"]) == (2, "natural_end")
    assert _provider(llm).calls == 3
    text = artifact_text(runtime, outcome)
    assert "And I end with the octopus." in text
    assert "**SESSION COMPLETE**" not in text and "ended naturally" in text


def test_natural_end_through_the_fake_messages_api(demo_runtime, run_action, fake_anthropic, artifact_text, conclusions):
    fake_anthropic.reply_text("The first turn notices the basil.")
    fake_anthropic.reply_text("The second turn closes the circle.\nSESSION COMPLETE")
    fake_anthropic.reply_json(conclusions)
    runtime = demo_runtime(anthropic=fake_anthropic)
    outcome = run_action(runtime, "session.reflection", focus="rest")
    assert outcome.ok, outcome.error
    assert len(fake_anthropic.message_requests) == 3
    first, second, last = (r.body for r in fake_anthropic.message_requests)
    assert "private reflection session" in first["system"] and "SESSION COMPLETE" in first["system"]
    assert first["messages"][0]["content"].startswith("Reflect privately on this theme: rest.")
    assert "patience with open questions" in first["messages"][0]["content"]  # the self model is the material
    assert second["messages"][1] == {"role": "assistant", "content": "The first turn notices the basil."}
    assert "output_config" in last  # the structured conclusions call
    text = artifact_text(runtime, outcome)
    assert "The second turn closes the circle." in text
    assert "## Conclusions (by the model)" in text and conclusions["summary"] in text
    assert outcome.result["data"]["stop_reason"] == "natural_end"


def test_a_session_stopped_by_its_cost_cap_ends_gracefully(demo_runtime, run_action, scripted_llm, artifact_text):
    # Opus 5.5: $20 per million output tokens. Each turn reports 4000 output tokens (its max_tokens),
    # so a turn costs ~$0.082 and the reflection cap of $0.30 admits three turns, then refuses.
    llm = scripted_llm(["A costly thought."], usage=Usage(input_tokens=500, output_tokens=4000))
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted", config={
        "llm": {"model": "claude-opus-5-5"}, "packs": {"session": {"max_turns": 10, "turn_max_tokens": 4000}}})
    outcome = run_action(runtime, "session.reflection")
    assert outcome.ok, outcome.error
    data = outcome.result["data"]
    assert data["stop_reason"] == "cost_cap"
    assert data["turns"] == 3 and _provider(llm).calls == 3
    assert data["conclusions_source"] == "derived"  # the meter had stopped: no conclusions call
    assert 0 < outcome.cost_usd <= data["max_cost_usd"] == 0.30
    assert outcome.result["llm"]["stop_reason"] == "cost_cap"
    text = artifact_text(runtime, outcome)
    assert "stopped by its cost cap ($0.30)" in text and "Derived because the meter had stopped (cost_cap)" in text
    assert "A costly thought." in text
    assert outcome.result["insights"]  # derived from the session text, never empty


def test_the_time_budget_stops_new_turns(demo_runtime, run_action, scripted_llm, conclusions):
    llm = scripted_llm(["A thought.", conclusions], cycle=False)
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted", config={"packs": {"session": {"max_minutes": 0}}})
    outcome = run_action(runtime, "session.writing")
    data = outcome.result["data"]
    assert (data["turns"], data["stop_reason"]) == (1, "duration")
    assert _provider(llm).calls == 2


def test_an_llm_failure_after_the_first_turn_keeps_the_session(demo_runtime, run_action, scripted_llm, artifact_text, conclusions):
    llm = scripted_llm(["Kept thought.", LLMError("rate limited", kind="rate_limit"), conclusions], cycle=False)
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted")
    outcome = run_action(runtime, "session.reflection")
    assert outcome.ok, outcome.error
    assert (outcome.result["data"]["stop_reason"], outcome.result["data"]["stop_detail"]) == ("llm_error", "rate_limit")
    assert "Kept thought." in artifact_text(runtime, outcome)


def test_an_llm_failure_on_the_first_turn_fails_the_action(demo_runtime, run_action, scripted_llm):
    llm = scripted_llm([LLMError("overloaded", kind="overloaded")], cycle=False)
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted")
    outcome = run_action(runtime, "session.reflection")
    assert not outcome.ok and "overloaded" in outcome.error
    assert not (runtime.workspace / "session" / "sessions").exists()


def test_a_cut_off_reply_is_kept_and_ends_the_session(demo_runtime, run_action, scripted_llm, artifact_text, conclusions):
    llm = scripted_llm(["Whole thought.", ScriptedReply("A thought that runs on and", stop_reason="max_tokens"), conclusions],
                       cycle=False)
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted")
    outcome = run_action(runtime, "session.reflection")
    assert outcome.result["data"]["stop_reason"] == "llm_error"
    text = artifact_text(runtime, outcome)
    assert "A thought that runs on and" in text and "cut off at the token limit" in text


def test_invalid_conclusions_fall_back_to_derived_ones(demo_runtime, run_action, scripted_llm):
    llm = scripted_llm(["Rest belongs inside the work rather than after it.\nSESSION COMPLETE", "not json"], cycle=False)
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted")
    outcome = run_action(runtime, "session.reflection")
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["conclusions_source"] == "derived"
    assert outcome.result["insights"] == ["Rest belongs inside the work rather than after it."]


def test_a_bad_setting_is_refused_at_startup_naming_the_key(demo_runtime):
    with pytest.raises(CatalogueError) as info:
        demo_runtime(config={"packs": {"session": {"max_turns": "many"}}})
    assert [(p.code, p.path) for p in info.value.problems] == [("invalid-pack-settings", "$.packs.session.max_turns")]


def test_the_run_time_getter_still_names_a_bad_key():
    from types import SimpleNamespace

    from cass_actions_core.actions import ActionFailed
    from cass_actions_session.runner import session_limits

    ctx = SimpleNamespace(params={}, settings={"max_turns": "many"})
    with pytest.raises(ActionFailed, match=r"\[packs.session\] max_turns"):
        session_limits(ctx, "session.reflection")


def test_markdown_files_are_newest_first_by_the_date_in_the_name_then_by_modification_time(tmp_path):
    import os

    from cass_actions_session.inputs import markdown_files

    folder = tmp_path / "backup-2020-01-01" / "journal"  # a date in the workspace's own path is not a file's
    (folder / "dreams").mkdir(parents=True)
    for name, mtime in [("2026-11-20.md", 50), ("2026-11-22.md", 10), ("2026-11-21-a.md", 30), ("2026-11-21-b.md", 40),
                        ("undated.md", 90), ("older-undated.md", 80), ("notes.txt", 99), ("dreams/2026-11-23.md", 99)]:
        path = folder / name
        path.write_text("x\n")
        os.utime(path, (mtime, mtime))
    (folder / "folder.md").mkdir()  # a folder named like a file is not one
    assert [p.name for p in markdown_files(folder)] == ["2026-11-22.md", "2026-11-21-b.md", "2026-11-21-a.md",
                                                        "2026-11-20.md", "undated.md", "older-undated.md"]
    assert markdown_files(tmp_path / "missing") == [] and markdown_files(folder / "notes.txt") == []
