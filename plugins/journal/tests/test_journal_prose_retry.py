"""A failed prose turn is marked in the file, and a later run writes only the prose (one call)."""

from __future__ import annotations

from cass_actions_core.text import parse_front_matter, section_items


def _entry_file(runtime, day, title, text):
    folder = runtime.workspace / "journal"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{day}.md").write_text(f'---\ndate: "{day}"\ntitle: "{title}"\n---\n# {title}\n\n{text}\n', encoding="utf-8")


PATTERNS = {"patterns": ["FAKE pattern: living things"], "high_points": ["FAKE high: the basil took"],
            "questions": ["FAKE open: will it survive?"], "intentions": ["FAKE intention: water early"]}


def test_weekly_review_prose_lost_to_a_temporary_failure_is_written_later(journal_runtime, run_action, fake_anthropic, jr):
    runtime = journal_runtime(anthropic=fake_anthropic)
    sunday = jr.monday.replace(day=11)
    jr.night_of(runtime, sunday)
    _entry_file(runtime, "2026-01-05", "Basil day", "ENTRY ONE: planted basil.")
    _entry_file(runtime, "2026-01-11", "Sunday", "ENTRY TWO: a quiet Sunday.")
    fake_anthropic.reply_json(PATTERNS)
    fake_anthropic.reply_error(529, "overloaded_error", "Overloaded")
    first = run_action(runtime, "journal.weekly_review")
    assert first.ok, first.error
    assert first.result["data"]["written"] and "overloaded" in first.result["data"]["prose_error"].lower()
    fields, body = parse_front_matter(jr.read(runtime, "weekly/2026-W02.md"))
    assert fields["prose_error"] and section_items(body, "Patterns") == ["FAKE pattern: living things"]
    assert "could not be written" in body
    # A later run: one call for the prose; the paid-for findings are kept as they are.
    fake_anthropic.reply_text("FAKE REVIEW: a gentle week of tending and reading.")
    jr.morning_of(runtime, sunday.replace(day=12))
    second = run_action(runtime, "journal.weekly_review")
    assert second.ok, second.error
    assert second.result["llm"]["calls"] == 1 and second.result["data"]["prose_filled_in"] is True
    assert len(fake_anthropic.message_requests) == 3
    write = fake_anthropic.message_requests[-1]
    assert [m["role"] for m in write.body["messages"]] == ["user", "assistant", "user"]
    assert "ENTRY ONE: planted basil." in write.body["messages"][0]["content"]
    assert "FAKE pattern: living things" in write.body["messages"][1]["content"]
    fields, body = parse_front_matter(jr.read(runtime, "weekly/2026-W02.md"))
    assert "prose_error" not in fields and fields["entries"] == ["2026-01-05", "2026-01-11"]
    assert "FAKE REVIEW: a gentle week of tending and reading." in body and "could not be written" not in body
    for heading, item in (("Patterns", "FAKE pattern: living things"), ("High points", "FAKE high: the basil took"),
                          ("Open questions", "FAKE open: will it survive?"), ("Intentions", "FAKE intention: water early")):
        assert section_items(body, heading) == [item]
    assert section_items(body, "Entries") == ["Monday 2026-01-05: Basil day", "Sunday 2026-01-11: Sunday"]
    third = run_action(runtime, "journal.weekly_review")
    assert third.ok and third.result["llm"]["calls"] == 0 and "already written" in third.result["summary"]
    assert len(fake_anthropic.message_requests) == 3


def test_a_dream_cut_short_gets_its_waking_from_a_later_run(journal_runtime, run_action, fake_anthropic, jr):
    runtime = journal_runtime(anthropic=fake_anthropic)
    jr.work(runtime, jr.monday, 15, "Walked through the octopus exhibit.")
    jr.night_of(runtime, jr.monday)
    fake_anthropic.reply_text("FAKE DREAM: a corridor of doors.")
    fake_anthropic.reply_text("FAKE SHIFT: the doors turn to water.")
    fake_anthropic.reply_error(429, "rate_limit_error", "Slow down")
    first = run_action(runtime, "journal.dream")
    assert first.ok, first.error
    assert first.result["data"]["turns"] == 2 and "cut short after 2 turn(s)" in first.result["data"]["stopped"]
    fields, body = parse_front_matter(jr.read(runtime, "dreams/2026-01-05.md"))
    assert fields["prose_error"] and "## On waking" not in body and "cut short" in body
    fake_anthropic.reply_text("FAKE WAKING: I remember the doors; it was about memory.")
    second = run_action(runtime, "journal.dream")
    assert second.ok, second.error
    assert second.result["llm"]["calls"] == 1 and second.result["data"]["waking_filled_in"] is True
    wake = fake_anthropic.message_requests[-1]
    assert [m["role"] for m in wake.body["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert wake.body["messages"][1]["content"] == "FAKE DREAM: a corridor of doors."
    assert wake.body["messages"][3]["content"] == "FAKE SHIFT: the doors turn to water."
    assert "octopus exhibit" in wake.body["messages"][0]["content"] and wake.body["messages"][4]["content"].startswith("I wake.")
    fields, body = parse_front_matter(jr.read(runtime, "dreams/2026-01-05.md"))
    assert "prose_error" not in fields and fields["turns"] == 3 and "cut short" not in body
    assert ("## The dream\n\nFAKE DREAM: a corridor of doors.\n\n* * *\n\nFAKE SHIFT: the doors turn to water.\n\n"
            "## On waking\n\nFAKE WAKING: I remember the doors; it was about memory.\n") in body
    assert second.result["insights"] == ["FAKE WAKING: I remember the doors; it was about memory."]
    third = run_action(runtime, "journal.dream")
    assert third.ok and third.result["llm"]["calls"] == 0 and len(fake_anthropic.message_requests) == 4
    assert len(jr.events(runtime, "journal.dream_generated")) == 1
