"""Offline honesty: everything the pack builds without a model reply carries the offline label."""

from __future__ import annotations

from cass_actions_core.text import is_offline, parse_front_matter, section_items


def test_offline_key_points_questions_and_insights_are_labelled(memory_runtime, run_action, mem):
    """The offline key points are the user's own sentences: they must never become the daemon's insight."""
    runtime = memory_runtime()
    outcome = run_action(runtime, "memory.summarize_idle_conversations")
    assert outcome.ok, outcome.error
    insights, questions = outcome.result["insights"], outcome.result["questions"]
    assert insights and all(is_offline(i) for i in insights), insights
    assert all(is_offline(q) for q in questions), questions
    assert not any(i.startswith("I finally planted the tomatoes") for i in insights)
    with mem.store(runtime) as store:
        for summary in store.summaries():
            assert is_offline(summary.text)
            assert summary.key_points and all(is_offline(k) for k in summary.key_points)
            assert all(is_offline(q) for q in summary.open_questions)
    _fields, body = parse_front_matter(mem.read(runtime, "summaries/conv-garden.md"))
    assert all(is_offline(k) for k in section_items(body, "Key points"))
    # The work summary the self-model actions read carries the labels too.
    assert all(is_offline(i) for i in outcome.summary.get("insights") or [])

    short = run_action(runtime, "memory.summarize_conversation", {"conversation_id": "conv-short"})
    assert short.result["questions"] == ["[offline] What's the time zone for Lisbon?"]


def test_offline_titles_consolidation_and_notes_are_labelled(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    run_action(runtime, "memory.summarize_idle_conversations")
    titles = run_action(runtime, "memory.generate_conversation_title")
    assert all(is_offline(t["title"]) for t in titles.result["data"]["titled"])

    consolidated = run_action(runtime, "memory.consolidate")
    assert consolidated.ok, consolidated.error
    assert consolidated.result["insights"] and all(is_offline(i) for i in consolidated.result["insights"])
    assert all(is_offline(q) for q in consolidated.result["questions"])
    _fields, body = parse_front_matter(mem.read(runtime, "consolidated/2026-01-05.md"))
    for heading in ("Themes", "Insights", "Open questions"):
        assert all(is_offline(item) for item in section_items(body, heading)), heading

    created = run_action(runtime, "memory.create_wiki_note", {"topic": "basil watering"})
    assert created.ok, created.error
    fields, body = parse_front_matter(mem.read(runtime, "notes/basil-watering.md"))
    assert is_offline(fields["title"]) and is_offline(fields["summary"])
    assert section_items(body, "What came up") and all(is_offline(i) for i in section_items(body, "What came up"))
    assert all(is_offline(i) for i in created.result["insights"])
