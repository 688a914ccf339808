"""The memory pack's actions through the real Anthropic SDK talking to the fake Messages API."""

from __future__ import annotations

from cass_actions_core.workspace import seed_demo_workspace


def _runtime(cass_runtime, fake_anthropic, seed=True):
    runtime = cass_runtime(load=["memory"], anthropic=fake_anthropic)
    if seed:
        seed_demo_workspace(runtime.workspace, now=runtime.clock.now())
    return runtime


def _summary(text):
    return {"summary": text, "key_points": [f"Point from {text[:12]}"], "open_questions": []}


def test_summarize_conversation_writes_the_apis_summary(cass_runtime, run_action, fake_anthropic, mem):
    fake_anthropic.reply_json({"summary": "FAKE: we worked out that the basil is drying out in the noon sun.",
                               "key_points": ["Basil on a sunny balcony dries out by noon."],
                               "open_questions": ["Will the shade by the wall be enough?"]})
    runtime = _runtime(cass_runtime, fake_anthropic)
    outcome = run_action(runtime, "memory.summarize_conversation", {"conversation_id": "conv-garden"})
    assert outcome.ok, outcome.error
    garden = mem.read(runtime, "summaries/conv-garden.md")
    assert "FAKE: we worked out that the basil is drying out in the noon sun." in garden
    assert "- Basil on a sunny balcony dries out by noon." in garden
    assert "- Will the shade by the wall be enough?" in garden
    (request,) = fake_anthropic.message_requests
    prompt = request.body["messages"][0]["content"]
    assert "user: I finally planted the tomatoes" in prompt and "New messages (6):" in prompt
    assert "Cass" in request.body["system"]
    assert request.body["output_config"]["format"]["type"] == "json_schema"
    assert outcome.cost_usd > 0


def test_summarize_idle_through_the_api_and_a_failure_keeps_what_was_done(cass_runtime, run_action, fake_anthropic, mem):
    fake_anthropic.reply_json(_summary("FAKE garden summary."))
    fake_anthropic.reply_error(400, "invalid_request_error", "prompt rejected")
    runtime = _runtime(cass_runtime, fake_anthropic)
    outcome = run_action(runtime, "memory.summarize_idle_conversations")
    assert outcome.ok, outcome.error
    assert [s["conversation_id"] for s in outcome.result["data"]["summarised"]] == ["conv-garden"]
    assert "Stopped early" in outcome.result["summary"] and "conv-reading" in outcome.result["data"]["stopped"]
    assert "FAKE garden summary." in mem.read(runtime, "summaries/conv-garden.md")
    with mem.store(runtime) as store:
        assert store.conversation("conv-reading").unsummarised == 7
    # The next run picks up the conversation that was left.
    fake_anthropic.reply_json(_summary("FAKE reading summary."))
    again = run_action(runtime, "memory.summarize_idle_conversations")
    assert [s["conversation_id"] for s in again.result["data"]["summarised"]] == ["conv-reading"]
    assert "FAKE reading summary." in mem.read(runtime, "summaries/conv-reading.md")
    assert "octopuses" in fake_anthropic.message_requests[-1].body["messages"][0]["content"]


def test_generate_titles_through_the_api(cass_runtime, run_action, fake_anthropic, mem):
    for title in ("Lisbon time zone", "\"Octopus memory\"", "Wilting basil"):
        fake_anthropic.reply_json({"title": title})
    runtime = _runtime(cass_runtime, fake_anthropic)
    outcome = run_action(runtime, "memory.generate_conversation_title")
    assert outcome.ok, outcome.error
    with mem.store(runtime) as store:
        assert {c.id: c.title for c in store.conversations()} == {
            "conv-short": "Lisbon time zone", "conv-reading": "Octopus memory", "conv-garden": "Wilting basil"}
    first = fake_anthropic.message_requests[0].body
    assert "Lisbon" in first["messages"][0]["content"] and first["max_tokens"] == 60


def test_consolidate_through_the_api(cass_runtime, run_action, fake_anthropic, mem):
    fake_anthropic.reply_json(_summary("FAKE garden summary."))
    fake_anthropic.reply_json(_summary("FAKE reading summary."))
    fake_anthropic.reply_json({"themes": ["FAKE theme: care over time"], "insights": ["FAKE insight: watch before acting"],
                               "questions": ["FAKE question: what does remembering mean?"]})
    fake_anthropic.reply_text("FAKE NOTE: both conversations were about patience.")
    runtime = _runtime(cass_runtime, fake_anthropic)
    run_action(runtime, "memory.summarize_idle_conversations")
    outcome = run_action(runtime, "memory.consolidate")
    assert outcome.ok, outcome.error
    notes = mem.read(runtime, "consolidated/2026-01-05.md")
    for text in ("FAKE NOTE: both conversations were about patience.", "- FAKE theme: care over time",
                 "- FAKE insight: watch before acting", "- FAKE question: what does remembering mean?"):
        assert text in notes
    extract, write = fake_anthropic.message_requests[-2:]
    assert "FAKE garden summary." in extract.body["messages"][0]["content"]
    assert [m["role"] for m in write.body["messages"]] == ["user", "assistant", "user"]
    assert "FAKE theme: care over time" in write.body["messages"][1]["content"]
    assert outcome.result["insights"] == ["FAKE insight: watch before acting"]


def test_create_note_through_the_api(cass_runtime, run_action, fake_anthropic, mem):
    fake_anthropic.reply_json(_summary("FAKE: the basil dries out on the balcony."))
    fake_anthropic.reply_json(_summary("FAKE: octopus arms learn."))
    fake_anthropic.reply_json({"title": "Basil care", "summary": "FAKE: how to keep balcony basil alive.",
                               "body": "## What I know\n\nFAKE BODY: water early, shade at noon.", "tags": ["garden", "basil"]})
    runtime = _runtime(cass_runtime, fake_anthropic)
    run_action(runtime, "memory.summarize_idle_conversations")
    outcome = run_action(runtime, "memory.create_wiki_note", {"topic": "balcony basil"})
    assert outcome.ok, outcome.error
    note = mem.read(runtime, "notes/balcony-basil.md")
    assert 'title: "Basil care"' in note and 'tags: ["garden", "basil"]' in note
    assert "> FAKE: how to keep balcony basil alive." in note and "FAKE BODY: water early, shade at noon." in note
    prompt = fake_anthropic.message_requests[-1].body["messages"][0]["content"]
    assert prompt.startswith("Write a knowledge note on: balcony basil")
    assert "FAKE: the basil dries out on the balcony." in prompt and "octopus" not in prompt.lower()


def test_update_note_through_the_api(cass_runtime, run_action, fake_anthropic, mem):
    runtime = _runtime(cass_runtime, fake_anthropic)
    notes = runtime.workspace / "memory" / "notes"
    notes.mkdir(parents=True)
    (notes / "octopus-minds.md").write_text(
        '---\ntitle: "Octopus minds"\ntopic: "octopus memory"\nupdated: "2026-01-01T00:00:00+00:00"\nrevisions: 1\n'
        'sources: []\n---\n# Octopus minds\n\n> Old summary.\n\nOLD TEXT: arms have many neurons.\n', encoding="utf-8")
    fake_anthropic.reply_json(_summary("FAKE: the garden needs shade."))
    fake_anthropic.reply_json(_summary("FAKE: octopus arms learn on their own, memory as a pattern."))
    fake_anthropic.reply_json({"summary": "FAKE: memory may be spread through a body.",
                               "body": "FAKE REVISED: arms learn locally; memory as pattern.", "tags": ["octopus"]})
    run_action(runtime, "memory.summarize_idle_conversations")
    outcome = run_action(runtime, "memory.update_wiki_note")
    assert outcome.ok, outcome.error
    note = mem.read(runtime, "notes/octopus-minds.md")
    assert "FAKE REVISED: arms learn locally; memory as pattern." in note and "revisions: 2" in note
    assert '"conversation": "conv-reading"' in note and "conv-garden" not in note
    prompt = fake_anthropic.message_requests[-1].body["messages"][0]["content"]
    assert "OLD TEXT: arms have many neurons." in prompt and "FAKE: octopus arms learn on their own" in prompt


def test_no_call_is_made_when_there_is_nothing_to_do(cass_runtime, run_action, fake_anthropic):
    runtime = _runtime(cass_runtime, fake_anthropic, seed=False)
    for action_id in ("memory.summarize_idle_conversations", "memory.summarize_conversation",
                      "memory.generate_conversation_title", "memory.consolidate", "memory.create_wiki_note", "memory.update_wiki_note"):
        outcome = run_action(runtime, action_id)
        assert outcome.ok and outcome.cost_usd == 0, (action_id, outcome.error)
    assert fake_anthropic.message_requests == []
