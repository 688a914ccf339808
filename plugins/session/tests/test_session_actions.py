"""Every session action on the demo workspace: what it read and wrote, offline and through the fake API."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

INSIGHT = "Memory may be a pattern spread across a body."
JOURNAL = "# 2026-01-05\n\nI moved the basil into shade and thought about how care is mostly timing.\n"
NOTE = "# Octopus arms\n\nTwo thirds of an octopus's neurons sit in its arms, which learn on their own.\n"


def seed_insight(runtime: Any, run_action: Any) -> None:
    """A recorded insight (no LLM call): material for synthesis."""
    assert run_action(runtime, "session.record_insight", {"text": INSIGHT}).ok


EARLIER_SESSION = {
    "run_key": "2026-01-04/evening/abcdef1234/0", "local_date": "2026-01-04", "action_id": "session.reflection",
    "theme": "rest", "path": "sessions/2026-01-04/reflection-abcdef12.md",
    "summary": "I kept circling back to rest as a kind of work.", "insights": ["I return to rest often."],
    "questions": ["Why do I return to rest so often?"]}


def seed_session_log(runtime: Any, run_action: Any) -> None:
    """An earlier reflection in the pack's session log (its day key and the index): material for meta-reflection."""
    runtime.store.kv_set("session", "session_log/2026-01-04", [EARLIER_SESSION])
    runtime.store.kv_set("session", "session_log/index", [["2026-01-04", {"session.reflection": 1}]])


def seed_journal(runtime: Any, run_action: Any) -> None:
    """Today's journal entry, as the journal pack writes it."""
    path = Path(runtime.workspace) / "journal" / "2026-01-05.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(JOURNAL, encoding="utf-8")


def seed_note(runtime: Any, run_action: Any) -> None:
    """A memory note, as the memory pack writes it."""
    path = Path(runtime.workspace) / "memory" / "notes" / "octopus.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(NOTE, encoding="utf-8")


# action -> (setup, params, a path listed under "What I read", text the first prompt must carry, purpose words)
CASES: dict[str, tuple[Any, dict[str, Any], str | None, str, str]] = {
    "session.reflection": (None, {}, "self/model.json", "patience with open questions", "private contemplation"),
    "session.synthesis": (seed_insight, {}, "self/model.json", INSIGHT, "Integrate your recent insights"),
    "session.meta_reflection": (seed_session_log, {}, "sessions/2026-01-04/reflection-abcdef12.md",
                                "I kept circling back to rest", "patterns of reflection"),
    "session.consolidation": (seed_journal, {"period_type": "daily"}, "journal/2026-01-05.md", "care is mostly timing",
                              "Consolidate what was learned"),
    "session.growth_edge": (None, {}, "self/model.json", "writing with a lighter touch", "growth edges"),
    "session.curiosity": (seed_note, {}, "memory/notes/octopus.md", "neurons sit in its arms", "open-ended exploration"),
    "session.world_state": (None, {}, "feeds/world.jsonl", "Community gardens report record harvests", "state of the world"),
    "session.research": (None, {"topic": "octopus memory"}, "self/model.json", "Research this topic from what you know: octopus memory.",
                         "no web access"),
    "session.knowledge_building": (seed_note, {}, "memory/notes/octopus.md", "neurons sit in its arms", "knowledge base"),
    "session.writing": (seed_journal, {}, "journal/2026-01-05.md", "care is mostly timing", "piece of prose"),
    "session.creative": (seed_note, {}, "memory/notes/octopus.md", "neurons sit in its arms", "poem"),
    "session.user_synthesis": (None, {}, "conversations/inbox/demo.jsonl", "the basil keeps wilting", "people you talk with"),
}


def _prepare(runtime: Any, run_action: Any, action_id: str) -> tuple[dict[str, Any], str | None, str, str]:
    setup, params, path, marker, purpose = CASES[action_id]
    if setup is not None:
        setup(runtime, run_action)
    return params, path, marker, purpose


@pytest.mark.parametrize("action_id", sorted(CASES))
def test_session_action_offline_writes_its_record(action_id, demo_runtime, run_action, artifact_text):
    runtime = demo_runtime()
    params, path, _marker, _purpose = _prepare(runtime, run_action, action_id)
    outcome = run_action(runtime, action_id, params)
    assert outcome.ok, outcome.error
    kind = action_id.split(".")[1]
    data = outcome.result["data"]
    assert data["path"] == f"sessions/2026-01-05/{kind}-{outcome.unit.id[:8].lower()}.md"
    assert [a["path"] for a in outcome.result["artifacts"]] == [f"session/{data['path']}"]
    text = artifact_text(runtime, outcome)
    assert re.fullmatch(r"# [A-Z][a-z -]+ session \u2014 2026-01-05", text.splitlines()[0])
    assert f"- Action: `{action_id}`" in text
    assert f"- `{path}`" in text  # what it read is listed
    turns_text = text.split("## Session", 1)[1].split("## Conclusions", 1)[0]
    assert turns_text.count("[offline]") == data["turns"] == 4  # every turn, labelled
    assert "## Conclusions (offline, derived from the text, no LLM)" in text
    conclusions_text = text.split("## Conclusions", 1)[1]
    items = [line[2:] for line in conclusions_text.splitlines() if line.startswith("- ")]
    assert items and all(item.startswith("[offline] ") for item in items)  # offline conclusions, every item labelled
    assert all(i.startswith("[offline] ") for i in outcome.result["insights"] + outcome.result["questions"])
    assert data["summary"].startswith("[offline] ")
    assert outcome.cost_usd > 0 and outcome.result["llm"]["calls"] == 5  # four turns and the conclusions call
    assert outcome.result["insights"], "derived conclusions always hold an insight"
    log = runtime.store.kv_get("session", "session_log/2026-01-05")  # today's key of the session log
    assert log[-1]["action_id"] == action_id and log[-1]["path"] == data["path"]
    assert runtime.store.kv_get("session", "session_log") is None  # no single-key log any more
    # The unit's work summary carries the session's insights and questions.
    assert outcome.summary["insights"] == outcome.result["insights"]
    assert outcome.summary["questions_raised"] == outcome.result["questions"]


@pytest.mark.parametrize("action_id", sorted(CASES))
def test_session_action_through_the_fake_messages_api(action_id, demo_runtime, run_action, fake_anthropic,
                                                      artifact_text, conclusions):
    reply = f"From the fake API, a {action_id} turn that ends here."
    fake_anthropic.reply_text(reply + "\nSESSION COMPLETE")
    fake_anthropic.reply_json(conclusions)
    runtime = demo_runtime(anthropic=fake_anthropic)
    params, _path, marker, purpose = _prepare(runtime, run_action, action_id)
    outcome = run_action(runtime, action_id, params)
    assert outcome.ok, outcome.error
    assert len(fake_anthropic.message_requests) == 2
    turn = fake_anthropic.message_requests[0].body
    assert purpose in turn["system"]
    assert marker in turn["messages"][0]["content"]
    text = artifact_text(runtime, outcome)
    assert reply in text and "SESSION COMPLETE" not in text.split("## Session", 1)[1].split("## Conclusions")[0]
    assert conclusions["summary"] in text and conclusions["insights"][0] in text
    assert outcome.result["insights"] == conclusions["insights"]
    assert outcome.result["data"]["conclusions_source"] == "model"


def test_world_state_without_feeds_costs_nothing_and_calls_nothing(cass_runtime, run_action, fake_anthropic):
    runtime = cass_runtime(load=["session"], anthropic=fake_anthropic)
    outcome = run_action(runtime, "session.world_state")
    assert outcome.ok, outcome.error
    assert outcome.cost_usd == 0 and outcome.result["llm"]["calls"] == 0
    assert fake_anthropic.message_requests == []
    assert outcome.result["data"]["stop_reason"] == "nothing_to_do"
    assert "no feed items" in outcome.result["summary"]
    assert outcome.result["artifacts"] == []


def test_world_state_with_an_empty_feed_file_does_nothing(cass_runtime, run_action):
    runtime = cass_runtime(load=["session"])
    (runtime.workspace / "feeds").mkdir()
    (runtime.workspace / "feeds" / "world.jsonl").write_text("\n", encoding="utf-8")
    outcome = run_action(runtime, "session.world_state")
    assert outcome.ok and outcome.cost_usd == 0 and outcome.result["llm"]["calls"] == 0


def test_world_state_never_considers_an_item_twice(demo_runtime, run_action):
    runtime = demo_runtime()
    first = run_action(runtime, "session.world_state")
    assert first.result["data"]["new_items"] == 3
    second = run_action(runtime, "session.world_state")
    assert second.ok and second.cost_usd == 0 and "already considered" in second.result["summary"]
    with (runtime.workspace / "feeds" / "world.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"title": "Bridge reopens after repairs", "source": "local-news", "published": "2026-01-05T08:30:00+00:00"}) + "\n")
    third = run_action(runtime, "session.world_state")
    assert third.result["data"]["new_items"] == 1


def test_world_state_reports_malformed_feed_lines_and_keeps_the_rest(demo_runtime, run_action, artifact_text):
    runtime = demo_runtime()
    (runtime.workspace / "feeds" / "extra.jsonl").write_text(
        json.dumps({"title": "Good item one"}) + "\n{not json\n[1, 2]\n" + json.dumps({"title": "Good item two"}) + "\n",
        encoding="utf-8")
    outcome = run_action(runtime, "session.world_state")
    assert outcome.ok, outcome.error
    warnings = outcome.result["data"]["warnings"]
    assert any(w.startswith("feeds/extra.jsonl line 2: invalid JSON") for w in warnings)
    assert any(w.startswith("feeds/extra.jsonl line 3: expected a JSON object") for w in warnings)
    assert outcome.result["data"]["new_items"] == 5
    assert "warning: feeds/extra.jsonl line 2" in artifact_text(runtime, outcome)


def test_curiosity_drops_the_focus_on_purpose(demo_runtime, run_action):
    runtime = demo_runtime()
    outcome = run_action(runtime, "session.curiosity", focus="tax paperwork")
    assert outcome.result["data"]["focus_dropped"] == "tax paperwork"
    assert "tax paperwork" not in outcome.result["data"]["theme"]


def test_reflection_takes_the_focus_as_its_theme(demo_runtime, run_action, artifact_text):
    runtime = demo_runtime()
    outcome = run_action(runtime, "session.reflection", focus="the garden")
    assert outcome.result["data"]["theme"] == "the garden"
    assert "- Theme: the garden" in artifact_text(runtime, outcome)


@pytest.mark.parametrize("action_id, why", [
    ("session.synthesis", "No recent insights"),
    ("session.meta_reflection", "No earlier reflections"),
    ("session.consolidation", "Nothing to consolidate"),
    ("session.knowledge_building", "No research notes"),
])
def test_sessions_without_material_do_nothing_and_spend_nothing(action_id, why, demo_runtime, run_action):
    runtime = demo_runtime()
    outcome = run_action(runtime, action_id)
    assert outcome.ok and outcome.result["summary"].startswith(why)
    assert outcome.cost_usd == 0 and outcome.result["llm"]["calls"] == 0


def test_growth_edge_and_user_synthesis_need_their_inputs(cass_runtime, run_action):
    runtime = cass_runtime(load=["session"])  # an empty workspace
    for action_id, why in (("session.growth_edge", "No growth edges"), ("session.user_synthesis", "No conversations")):
        outcome = run_action(runtime, action_id)
        assert outcome.ok and outcome.result["summary"].startswith(why)
        assert outcome.result["llm"]["calls"] == 0


def test_weekly_consolidation_reads_the_whole_week(demo_runtime, run_action):
    runtime = demo_runtime()
    old = Path(runtime.workspace) / "journal" / "2026-01-02.md"
    old.parent.mkdir(parents=True)
    old.write_text("# 2026-01-02\n\nA quiet day of reading.\n", encoding="utf-8")
    daily = run_action(runtime, "session.consolidation", {"period_type": "daily"})
    assert daily.result["data"]["stop_reason"] == "nothing_to_do"
    weekly = run_action(runtime, "session.consolidation", {"period_type": "weekly"})
    assert weekly.ok and weekly.result["data"]["since"] == "2025-12-30"
    assert weekly.result["data"]["read"]["journal"] == 1


def test_research_session_takes_its_topic_from_the_queue(demo_runtime, run_action):
    runtime = demo_runtime()
    run_action(runtime, "session.refresh_research_queue", {"topics": ["tide pools and patience"]})
    outcome = run_action(runtime, "session.research")
    assert outcome.result["data"]["topic_source"] == "research queue"
    assert outcome.result["data"]["theme"] == "tide pools and patience"
    # The queued topic is done: its record is the session, and no later run researches it again.
    entry = runtime.store.kv_get("session", "research_queue")[0]
    assert (entry["status"], entry["note"]) == ("done", outcome.result["data"]["path"])
    nxt = run_action(runtime, "session.research")
    assert nxt.result["data"]["theme"] != "tide pools and patience"


def test_a_malformed_self_model_is_reported_not_fatal(demo_runtime, run_action):
    runtime = demo_runtime()
    (runtime.workspace / "self" / "model.json").write_text('{"identity": [', encoding="utf-8")
    outcome = run_action(runtime, "session.writing")
    assert outcome.ok, outcome.error
    assert any("model.json: the self model is not valid JSON" in w and "at line 1, column" in w
               for w in outcome.result["data"]["warnings"])


def test_user_synthesis_reads_the_memory_packs_conversation_summaries(cass_runtime, run_action, fake_anthropic, conclusions):
    fake_anthropic.reply_text("They garden on a sunny balcony.\nSESSION COMPLETE")
    fake_anthropic.reply_json(conclusions)
    runtime = cass_runtime(load=["session"], anthropic=fake_anthropic)
    summaries = runtime.workspace / "memory" / "summaries"
    summaries.mkdir(parents=True)
    (summaries / "conv-garden.md").write_text("# conv-garden\n\nThe user grows basil in a pot on a sunny balcony.\n",
                                              encoding="utf-8")
    outcome = run_action(runtime, "session.user_synthesis")
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["read"] == {"conversation_summaries": 1}
    assert "grows basil in a pot" in fake_anthropic.message_requests[0].body["messages"][0]["content"]


def test_the_plugin_names_every_session_spec_and_imports_no_handler_module():
    import subprocess
    import sys

    from cass_actions_session.plugin import SESSION_ACTIONS
    from cass_actions_session.sessions import SPECS

    assert sorted(SESSION_ACTIONS) == sorted(s.action_id for s in SPECS)
    probe = ("import sys, cass_actions_session.plugin; "
             "print(sorted(m for m in sys.modules if m.startswith('cass_actions_session.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['cass_actions_session.plugin']"
