"""The memory pack's actions on the demo workspace, with the offline provider."""

from __future__ import annotations

from datetime import timedelta


def test_summarize_idle_imports_the_inbox_and_summarises_idle_conversations(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    outcome = run_action(runtime, "memory.summarize_idle_conversations")
    assert outcome.ok, outcome.error
    data = outcome.result["data"]
    assert data["import"]["imported"] == 15
    # conv-short has only 2 messages: below min_messages (5), it waits.
    assert [s["conversation_id"] for s in data["summarised"]] == ["conv-garden", "conv-reading"]
    assert data["waiting"] == [{"conversation_id": "conv-short", "reason": "2 new message(s), fewer than 5"}]
    assert outcome.result["llm"]["calls"] == 2 and outcome.cost_usd > 0
    garden = mem.read(runtime, "summaries/conv-garden.md")
    assert garden.startswith('---\nconversation_id: "conv-garden"\n')
    assert 'active_dates: ["2026-01-05"]' in garden and "messages_summarised: 6" in garden
    assert "[offline] 6 message(s)" in garden and "basil keeps wilting" in garden
    assert "## Key points" in garden
    with mem.store(runtime) as store:
        assert store.conversation("conv-garden").unsummarised == 0
        assert store.conversation("conv-reading").unsummarised == 0
        assert store.conversation("conv-short").unsummarised == 2
    paths = [a["path"] for a in outcome.result["artifacts"]]
    assert paths == ["memory/summaries/conv-garden.md", "memory/summaries/conv-reading.md"]


def test_summarize_idle_twice_never_summarises_the_same_messages_again(memory_runtime, run_action, mem):
    """Must-show: a second run right after the first summarises nothing and makes no LLM call;
    new messages make a conversation eligible again only once there are five of them, and
    only those new messages are summarised."""
    runtime = memory_runtime()
    first = run_action(runtime, "memory.summarize_idle_conversations")
    assert first.ok and len(first.result["data"]["summarised"]) == 2
    before = mem.read(runtime, "summaries/conv-garden.md")

    second = run_action(runtime, "memory.summarize_idle_conversations")
    assert second.ok
    assert second.result["data"]["summarised"] == []
    assert second.result["llm"]["calls"] == 0 and second.cost_usd == 0
    assert "nothing to do" in second.result["summary"]
    assert mem.read(runtime, "summaries/conv-garden.md") == before
    with mem.store(runtime) as store:
        assert len(store.summaries()) == 2

    # Three new messages in conv-garden, quiet for an hour: still below five, so not eligible.
    now = runtime.clock.now()
    new = [mem.message("conv-garden", "user" if i % 2 == 0 else "assistant", f"Update {i}: the basil perked up.",
                       now + timedelta(minutes=i)) for i in range(5)]
    mem.write_jsonl(mem.inbox(runtime, "later.jsonl"), new[:3])
    runtime.clock.set(now + timedelta(hours=1))
    third = run_action(runtime, "memory.summarize_idle_conversations")
    assert third.ok and third.result["data"]["summarised"] == []
    assert third.result["llm"]["calls"] == 0
    assert {"conversation_id": "conv-garden", "reason": "3 new message(s), fewer than 5"} in third.result["data"]["waiting"]

    # Two more: five new messages, so it is summarised again, covering exactly the new five.
    mem.write_jsonl(mem.inbox(runtime, "later.jsonl"), new)
    runtime.clock.set(now + timedelta(hours=2))
    fourth = run_action(runtime, "memory.summarize_idle_conversations")
    assert fourth.ok
    assert [(s["conversation_id"], s["messages"]) for s in fourth.result["data"]["summarised"]] == [("conv-garden", 5)]
    assert fourth.result["llm"]["calls"] == 1
    (prompt,) = mem.transcript_prompts(runtime, fourth)
    assert "The summary so far" in prompt and "New messages (5):" in prompt
    with mem.store(runtime) as store:
        passes = store.summaries(conversation_id="conv-garden")
        assert [p.message_count for p in passes] == [5, 6]
        new_pass = passes[0]
        covered = [m.content for m in store.messages("conv-garden") if m.summary_id == new_pass.id]
        assert covered == [f"Update {i}: the basil perked up." for i in range(5)]
        assert store.conversation("conv-garden").unsummarised == 0
    garden = mem.read(runtime, "summaries/conv-garden.md")
    assert "messages_summarised: 11" in garden and "summary_passes: 2" in garden

    fifth = run_action(runtime, "memory.summarize_idle_conversations")
    assert fifth.result["data"]["summarised"] == [] and fifth.result["llm"]["calls"] == 0


def test_conversations_still_active_wait_until_idle(memory_runtime, run_action, mem):
    runtime = memory_runtime(config={"packs": {"memory": {"idle_minutes": 240}}})
    outcome = run_action(runtime, "memory.summarize_idle_conversations")
    assert outcome.ok and outcome.result["data"]["summarised"] == []
    reasons = {w["conversation_id"]: w["reason"] for w in outcome.result["data"]["waiting"]}
    assert reasons["conv-garden"] == "last message 160 min ago, not idle for 240 min yet"
    assert outcome.cost_usd == 0


def test_a_malformed_inbox_line_is_reported_with_file_and_line_and_the_rest_imported(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    now = runtime.clock.now()
    mem.write_jsonl(mem.inbox(runtime, "bad.jsonl"), [
        mem.message("conv-x", "user", "First.", now - timedelta(hours=2)),
        '{"conversation_id": "conv-x", "role": "user"',
        mem.message("conv-x", "assistant", "Second.", now - timedelta(hours=2) + timedelta(minutes=1)),
    ])
    outcome = run_action(runtime, "memory.summarize_idle_conversations")
    assert outcome.ok
    assert outcome.result["data"]["import"]["problems"] == [
        "conversations/inbox/bad.jsonl line 2: not valid JSON: Expecting ',' delimiter (column 45)"]
    assert "conversations/inbox/bad.jsonl line 2" in outcome.result["summary"]
    with mem.store(runtime) as store:
        assert store.conversation("conv-x").messages == 2


def test_summarize_conversation_by_id_and_by_default(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    outcome = run_action(runtime, "memory.summarize_conversation", {"conversation_id": "conv-short"})
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["summarised"]["messages"] == 2
    short = mem.read(runtime, "summaries/conv-short.md")
    assert "Lisbon" in short and "## Open questions" in short and "What's the time zone for Lisbon?" in short
    # Without an id: the most recently active conversation that has unsummarised messages.
    default = run_action(runtime, "memory.summarize_conversation")
    assert default.ok and default.result["data"]["summarised"]["conversation_id"] == "conv-reading"
    # Nothing new in conv-short: nothing to do, no call.
    again = run_action(runtime, "memory.summarize_conversation", {"conversation_id": "conv-short"})
    assert again.ok and again.result["llm"]["calls"] == 0 and "nothing to do" in again.result["summary"]


def test_summarize_conversation_with_an_unknown_id_fails_clearly(memory_runtime, run_action):
    runtime = memory_runtime()
    outcome = run_action(runtime, "memory.summarize_conversation", {"conversation_id": "conv-nope"})
    assert not outcome.ok
    assert "no conversation 'conv-nope' in the memory store" in outcome.error
    assert "conv-short" in outcome.error


def test_generate_titles_stores_them_and_republishes_summaries(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    run_action(runtime, "memory.summarize_idle_conversations")
    outcome = run_action(runtime, "memory.generate_conversation_title")
    assert outcome.ok, outcome.error
    titled = {t["conversation_id"]: t["title"] for t in outcome.result["data"]["titled"]}
    assert titled["conv-short"] == "[offline] What's the time zone for Lisbon"
    assert outcome.result["llm"]["calls"] == 3
    with mem.store(runtime) as store:
        assert {c.id: c.title for c in store.conversations()} == titled
    garden = mem.read(runtime, "summaries/conv-garden.md")
    assert f'title: "{titled["conv-garden"]}"' in garden and f"# {titled['conv-garden']}" in garden
    again = run_action(runtime, "memory.generate_conversation_title")
    assert again.ok and again.result["llm"]["calls"] == 0 and "nothing to do" in again.result["summary"]


def test_consolidate_writes_the_days_notes_and_marks_the_summaries(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    empty = run_action(runtime, "memory.consolidate")
    assert empty.ok and empty.cost_usd == 0 and "nothing to do" in empty.result["summary"]
    run_action(runtime, "memory.summarize_idle_conversations")
    outcome = run_action(runtime, "memory.consolidate")
    assert outcome.ok, outcome.error
    assert outcome.result["llm"]["calls"] == 2
    notes = mem.read(runtime, "consolidated/2026-01-05.md")
    assert notes.startswith('---\ndate: "2026-01-05"\n')
    assert 'conversations: ["conv-garden", "conv-reading"]' in notes
    for heading in ("# Consolidated notes for 2026-01-05", "## Themes", "## Insights", "## Sources"):
        assert heading in notes
    assert "basil" in notes.lower() and "octopus" in notes.lower()
    assert outcome.result["insights"]
    with mem.store(runtime) as store:
        assert all(p.consolidated_on is not None for p in store.summaries())
    again = run_action(runtime, "memory.consolidate")
    assert again.ok and again.result["llm"]["calls"] == 0 and "Already consolidated" in again.result["summary"]


def test_create_note_picks_a_topic_and_writes_the_note(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    run_action(runtime, "memory.summarize_idle_conversations")
    outcome = run_action(runtime, "memory.create_wiki_note")
    assert outcome.ok, outcome.error
    data = outcome.result["data"]
    assert data["topic_picked"] and data["written"] and data["sources"]
    note = mem.read(runtime, data["path"])
    assert note.startswith("---\ntitle: ")
    assert f'slug: "{data["slug"]}"' in note and "revisions: 1" in note and "## Sources" in note
    # An explicit topic that already has a note is left to memory.update_wiki_note.
    same = run_action(runtime, "memory.create_wiki_note", {"topic": data["topic"]})
    assert same.ok and same.result["llm"]["calls"] == 0 and "already exists" in same.result["summary"]
    named = run_action(runtime, "memory.create_wiki_note", {"topic": "octopus memory"})
    assert named.ok
    octopus = mem.read(runtime, "notes/octopus-memory.md")
    assert "octopus" in octopus.lower() and '"conversation": "conv-reading"' in octopus


def test_create_note_without_any_material_has_nothing_to_do(memory_runtime, run_action):
    runtime = memory_runtime(seed=False)
    outcome = run_action(runtime, "memory.create_wiki_note")
    assert outcome.ok and outcome.cost_usd == 0 and "nothing to do" in outcome.result["summary"]


def test_update_note_revises_the_note_with_new_related_material(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    none = run_action(runtime, "memory.update_wiki_note")
    assert none.ok and none.cost_usd == 0 and "no notes yet" in none.result["summary"]
    run_action(runtime, "memory.summarize_idle_conversations")
    created = run_action(runtime, "memory.create_wiki_note", {"topic": "basil watering"})
    assert created.ok
    nothing_new = run_action(runtime, "memory.update_wiki_note")
    assert nothing_new.ok and nothing_new.result["llm"]["calls"] == 0
    # New conversation material about basil arrives and is summarised.
    now = runtime.clock.now()
    mem.write_jsonl(mem.inbox(runtime, "basil.jsonl"), [
        mem.message("conv-basil", "user" if i % 2 == 0 else "assistant", text, now + timedelta(minutes=i)) for i, text in
        enumerate(["The basil recovered after I moved it into shade.", "Glad to hear it.", "Should I pinch the flowers?",
                   "Yes, pinching keeps the basil leafy.", "Thanks, doing it now."])])
    runtime.clock.set(now + timedelta(hours=1))
    run_action(runtime, "memory.summarize_idle_conversations")
    outcome = run_action(runtime, "memory.update_wiki_note")
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["slug"] == "basil-watering" and outcome.result["data"]["revisions"] == 2
    note = mem.read(runtime, "notes/basil-watering.md")
    assert "revisions: 2" in note and "## Update 2026-01-05" in note
    assert "The basil recovered after I moved it into shade." in note
    assert '"conversation": "conv-basil"' in note


def test_gather_context_reports_the_last_user_message(memory_runtime, run_action):
    runtime = memory_runtime()
    assert runtime.gather_context().get("last_user_activity") is None  # nothing imported yet
    run_action(runtime, "memory.summarize_idle_conversations")
    last = runtime.gather_context().get("last_user_activity")
    assert last is not None and last.isoformat() == "2026-01-05T07:00:00+00:00"


def test_a_topic_mostly_covered_by_a_note_is_not_picked_again(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    run_action(runtime, "memory.summarize_idle_conversations")
    run_action(runtime, "memory.generate_conversation_title")
    topics = []
    for _ in range(4):
        outcome = run_action(runtime, "memory.create_wiki_note")
        assert outcome.ok, outcome.error
        topics.append(outcome.result["data"]["topic"])
    from cass_actions_core.text import keywords

    words = [keywords(t, 4) for t in topics]
    for i, a in enumerate(words):
        for b in words[i + 1:]:
            assert len(a & b) < 0.6 * min(len(a), len(b)), topics
