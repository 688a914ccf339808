"""Offline honesty of the journal's lists, the self model read through the core, the core's text helpers."""

from __future__ import annotations

import logging
from datetime import date

from cass_actions_core import text as core_text
from cass_actions_core.text import parse_front_matter, section_items

MONDAY, SUNDAY = date(2026, 1, 5), date(2026, 1, 11)

SUMMARY = """---
conversation_id: "conv-garden"
title: "[offline] Garden talk"
active_dates: ["2026-01-05"]
---
[offline] 6 message(s) in \u201cGarden talk\u201d.

## Key points

- The basil wants afternoon shade.
- Tomatoes are planted.

## Open questions

- [offline] Will the basil recover?
"""


def _entry_file(runtime, day, title, text, questions=()):
    folder = runtime.workspace / "journal"
    folder.mkdir(parents=True, exist_ok=True)
    body = f'---\ndate: "{day}"\ntitle: "{title}"\n---\n# {title}\n\n{text}\n'
    if questions:
        body += "\n## Questions\n\n" + "".join(f"- {q}\n" for q in questions)
    (folder / f"{day}.md").write_text(body, encoding="utf-8")


def test_offline_entry_labels_its_lists_and_keeps_an_upstream_item_once(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    # The same point arrives twice: labelled (a unit's offline insight) and unlabelled (the offline summary's key point).
    jr.work(runtime, MONDAY, 10, "Summarised the garden conversation.",
            insight="[offline] The basil wants afternoon shade.", question="Will the basil recover?")
    summaries = runtime.workspace / "memory" / "summaries"
    summaries.mkdir(parents=True)
    (summaries / "conv-garden.md").write_text(SUMMARY, encoding="utf-8")
    jr.night_of(runtime, MONDAY)
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok, outcome.error
    _, body = parse_front_matter(jr.read(runtime, "2026-01-05.md"))
    assert section_items(body, "Insights") == ["[offline] The basil wants afternoon shade.", "[offline] Tomatoes are planted."]
    assert section_items(body, "Questions") == ["[offline] Will the basil recover?"]
    assert outcome.result["insights"] == section_items(body, "Insights")
    assert "\u201cGarden talk\u201d" in body and "[offline] Garden talk" not in body  # the label is not repeated mid-sentence


def test_offline_weekly_findings_are_all_labelled(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.night_of(runtime, SUNDAY)
    _entry_file(runtime, "2026-01-05", "Basil day", "Planted basil by the garden wall.", ["Will the basil survive?"])
    _entry_file(runtime, "2026-01-09", "[offline] Friday 2026-01-09", "The basil leaves curled.",
                ["[offline] Will the basil survive?"])
    outcome = run_action(runtime, "journal.weekly_review")
    assert outcome.ok, outcome.error
    _, body = parse_front_matter(jr.read(runtime, "weekly/2026-W02.md"))
    for heading in ("Patterns", "High points", "Open questions", "Intentions"):
        items = section_items(body, heading)
        assert items and all(i.startswith("[offline] ") and i.count("[offline]") == 1 for i in items), (heading, items)
    assert section_items(body, "Open questions") == ["[offline] Will the basil survive?"]
    assert section_items(body, "High points") == ["[offline] Monday: Basil day", "[offline] Friday: Friday 2026-01-09"]


def test_a_malformed_self_model_is_reported_and_the_default_voice_used(journal_runtime, run_action, fake_anthropic, jr, caplog):
    runtime = journal_runtime(anthropic=fake_anthropic)
    model = runtime.workspace / "self" / "model.json"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text('{"name": "Zed",\n "identity": [}\n', encoding="utf-8")
    jr.work(runtime, MONDAY, 9, "Read about octopus memory.")
    jr.night_of(runtime, MONDAY)
    fake_anthropic.reply_json({"title": "A day", "entry": "FAKE ENTRY.", "insights": [], "questions": []})
    with caplog.at_level(logging.WARNING):
        outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok, outcome.error
    (request,) = fake_anthropic.message_requests
    assert request.body["system"].startswith("You are Cass. In your own words: I am Cass, an AI daemon.")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("model.json" in w and "not valid JSON" in w and "line 2, column" in w for w in warnings), warnings


def test_the_pack_uses_the_cores_text_helpers():
    """No pack copy of the shared helpers is left: every one the modules hold is the core's."""
    from cass_actions_journal import daily, dream, sources, text, weekly

    names = ("OFFLINE_LABEL", "clip", "sentences", "first_sentence", "keywords", "bullets", "unique",
             "render_front_matter", "parse_front_matter", "section_items", "body_text")
    for module in (daily, dream, sources, text, weekly):
        for name in names:
            if hasattr(module, name):
                assert getattr(module, name) is getattr(core_text, name), (module.__name__, name)
