"""memory.update_wiki_note and memory.create_wiki_note on notes whose front matter was edited by hand."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest


def _note(runtime, slug: str, front: str, body: str = "# A note\n\nSome text about basil.\n"):
    path = runtime.workspace / "memory" / "notes" / f"{slug}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\n{front}\n---\n{body}", encoding="utf-8")
    return path


def _new_basil_material(runtime, run_action, mem, hours: int = 1):
    """A new conversation about basil, summarised (the material memory.update_wiki_note looks for)."""
    now = runtime.clock.now()
    mem.write_jsonl(mem.inbox(runtime, f"basil-{hours}.jsonl"), [
        mem.message(f"conv-basil-{hours}", "user" if i % 2 == 0 else "assistant", text, now + timedelta(minutes=i))
        for i, text in enumerate(["The basil recovered in the shade.", "Good.", "Should I pinch the basil flowers?",
                                  "Yes, pinching keeps basil leafy.", "Thanks."])])
    runtime.clock.set(now + timedelta(hours=hours))
    assert run_action(runtime, "memory.summarize_idle_conversations").ok


def test_a_naive_updated_date_is_local_midnight_not_a_type_error(memory_runtime, run_action, mem):
    runtime = memory_runtime(config={"timezone": "Europe/Lisbon"})
    _note(runtime, "basil", 'title: Basil care\ntopic: basil watering\nupdated: 2026-01-01\nrevisions: 2\ntags: basil, garden')
    _new_basil_material(runtime, run_action, mem)
    outcome = run_action(runtime, "memory.update_wiki_note")
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["slug"] == "basil" and outcome.result["data"]["revisions"] == 3
    note = mem.read(runtime, "notes/basil.md")
    assert 'title: "Basil care"' in note and 'tags: ["basil", "garden"]' in note


def test_a_note_updated_later_on_the_same_day_without_offset_uses_the_daemon_zone(memory_runtime, run_action, mem):
    """'2026-01-05T12:00' is noon in the daemon's zone (17:00 UTC): material summarised at 10:00 there is not new.

    Read as UTC it would be 12:00 UTC, before the summary (15:00 UTC), and the note would be revised.
    """
    runtime = memory_runtime(config={"timezone": "America/New_York"})
    _new_basil_material(runtime, run_action, mem)  # summarised at 10:00 local (15:00 UTC) on 2026-01-05
    _note(runtime, "basil", 'title: "Basil"\nupdated: "2026-01-05T12:00"')
    outcome = run_action(runtime, "memory.update_wiki_note", {"slug": "basil"})
    assert outcome.ok and outcome.result["data"]["written"] is False, outcome.result
    _note(runtime, "basil", 'title: "Basil"\nupdated: "2026-01-05T09:30"')  # 14:30 UTC: before the summary
    outcome = run_action(runtime, "memory.update_wiki_note", {"slug": "basil"})
    assert outcome.ok and outcome.result["data"]["written"] is True, outcome.result


@pytest.mark.parametrize(("front", "field", "says"), [
    ('updated: last tuesday', "updated", "is not an ISO 8601 date or date and time: 'last tuesday'"),
    ('revisions: three', "revisions", "must be a whole number (0 or more), got 'three'"),
    ('sources: [{"summary": 1, "date": "2026-01-05"}]', "sources", "item 1 must be"),
    ('title: ["a", "list"]', "title", "must be text, not a list"),
])
def test_a_bad_field_in_a_targeted_note_fails_naming_file_and_field(memory_runtime, run_action, mem, front, field, says):
    runtime = memory_runtime()
    _note(runtime, "basil", front)
    outcome = run_action(runtime, "memory.update_wiki_note", {"slug": "basil"})
    assert not outcome.ok
    assert outcome.error.startswith(f"notes/basil.md: field '{field}' "), outcome.error
    assert says in outcome.error
    assert "Traceback" not in outcome.error and outcome.cost_usd == 0


def test_a_bad_note_is_skipped_with_a_warning_and_the_others_are_updated(memory_runtime, run_action, mem, caplog):
    runtime = memory_runtime()
    broken = _note(runtime, "basil-broken", 'title: "Basil broken"\nrevisions: three')
    _note(runtime, "basil", 'title: "Basil"\ntopic: "basil watering"')
    _new_basil_material(runtime, run_action, mem)
    with caplog.at_level(logging.WARNING):
        outcome = run_action(runtime, "memory.update_wiki_note")
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["slug"] == "basil"
    assert outcome.result["data"]["skipped_notes"] == [
        "notes/basil-broken.md: field 'revisions' must be a whole number (0 or more), got 'three'"]
    assert any("notes/basil-broken.md: field 'revisions'" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)
    assert "revisions: three" in broken.read_text("utf-8")  # left as it is


def test_an_unreadable_note_is_reported_not_silently_skipped(memory_runtime, run_action, caplog):
    runtime = memory_runtime()
    path = runtime.workspace / "memory" / "notes" / "binary.md"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"---\ntitle: \xff\xfe\n---\n")
    with caplog.at_level(logging.WARNING):
        outcome = run_action(runtime, "memory.update_wiki_note")
    assert outcome.ok and "No usable note" in outcome.result["summary"]
    assert any("notes/binary.md: is not valid UTF-8" in r.getMessage() for r in caplog.records)
    targeted = run_action(runtime, "memory.update_wiki_note", {"slug": "binary"})
    assert not targeted.ok and targeted.error.startswith("notes/binary.md: is not valid UTF-8")


def test_create_note_never_overwrites_a_note_with_bad_front_matter(memory_runtime, run_action):
    runtime = memory_runtime()
    path = _note(runtime, "octopus-memory", "revisions: many", body="# Mine\n\nHand-written.\n")
    outcome = run_action(runtime, "memory.create_wiki_note", {"topic": "octopus memory"})
    assert outcome.ok and outcome.result["data"]["written"] is False and outcome.cost_usd == 0
    assert "Hand-written." in path.read_text("utf-8")
