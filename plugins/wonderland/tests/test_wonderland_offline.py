"""Offline honesty: everything written without a real LLM reply carries the offline label."""

from __future__ import annotations

from cass_actions_core.text import OFFLINE_LABEL, is_offline


def _offline_experience(exp: dict) -> None:
    assert exp["source"] == "offline"
    assert is_offline(exp["title"]) and is_offline(exp["text"]), exp
    assert exp["text"].count(OFFLINE_LABEL) == 1 and exp["title"].count(OFFLINE_LABEL) == 1


def test_offline_reflection_encounter_and_creation_are_labelled_everywhere(wonderland, run_action, run_approved, wl):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.explore").ok
    (exploration,) = wl.kv(runtime, "experiences")
    assert "source" not in exploration and not is_offline(exploration["title"])  # no LLM: facts, no label

    reflected = run_action(runtime, "wonderland.reflect", focus="patience")
    assert reflected.ok, reflected.error
    reflection = wl.kv(runtime, "experiences")[-1]
    _offline_experience(reflection)
    assert is_offline(reflected.result["summary"]) and reflected.result["insights"] == []

    met = run_action(runtime, "wonderland.socialize")
    assert met.ok, met.error
    encounter = wl.kv(runtime, "experiences")[-1]
    _offline_experience(encounter)
    assert is_offline(met.result["summary"])

    made = run_approved(runtime, "wonderland.create")
    assert made.ok, made.error
    (obj,) = wl.kv(runtime, "world_changes")["objects"]
    assert all(is_offline(obj[k]) for k in ("name", "description", "sense"))
    creation = wl.kv(runtime, "experiences")[-1]
    _offline_experience(creation)
    page = (runtime.workspace / "wonderland" / "creations.md").read_text("utf-8")
    assert f"**{obj['name']}**" in page

    flushed = run_action(runtime, "wonderland.journal_experience")
    assert flushed.ok, flushed.error
    assert flushed.result["data"]["narrative_offline"] is True and "offline narrative" in flushed.result["summary"]
    text = wl.journal_path(runtime).read_text("utf-8")
    section = text.split("-->", 1)[1].strip()
    assert section.startswith(OFFLINE_LABEL)  # the narrative
    for exp in (reflection, encounter, creation):
        assert f"**{exp['title']}**" in text
    # What stays in the store for later reflections keeps the label too.
    journaled = {e["id"]: e for e in wl.kv(runtime, "journaled")}
    for exp in (reflection, encounter, creation):
        assert journaled[exp["id"]]["source"] == "offline" and is_offline(journaled[exp["id"]]["title"])


def test_replies_of_a_real_model_are_not_labelled(cass_runtime, run_action, fake_anthropic, wl):
    runtime = cass_runtime(load=["wonderland"], anthropic=fake_anthropic)
    assert run_action(runtime, "wonderland.explore").ok
    fake_anthropic.reply_text("The pool was still, and so, for once, was I.")
    assert run_action(runtime, "wonderland.reflect").ok
    reflection = wl.kv(runtime, "experiences")[-1]
    assert reflection["source"] == "llm" and not is_offline(reflection["title"]) and not is_offline(reflection["text"])
    fake_anthropic.reply_text("Quill: Sit!\nMe: Thank you.")
    assert run_action(runtime, "wonderland.socialize").ok
    encounter = wl.kv(runtime, "experiences")[-1]
    assert encounter["source"] == "llm" and OFFLINE_LABEL not in encounter["title"] + encounter["text"]
    fake_anthropic.reply_text("A quiet hour.")
    flushed = run_action(runtime, "wonderland.journal_experience")
    assert flushed.ok and flushed.result["data"]["narrative_offline"] is False
    assert OFFLINE_LABEL not in wl.journal_path(runtime).read_text("utf-8")
