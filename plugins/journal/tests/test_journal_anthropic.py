"""The journal pack's actions through the real Anthropic SDK talking to the fake Messages API."""

from __future__ import annotations

from cass_actions_core.workspace import seed_demo_workspace

ENTRY = {"title": "A slow Monday", "entry": "FAKE ENTRY: I spent the morning with octopus arms and the afternoon sorting.",
         "insights": ["FAKE insight: memory as pattern"], "questions": ["FAKE question: what do arms remember?"]}


def _entry_file(runtime, day, title, text, questions=()):
    folder = runtime.workspace / "journal"
    folder.mkdir(parents=True, exist_ok=True)
    body = f'---\ndate: "{day}"\ntitle: "{title}"\n---\n# {title}\n\n{text}\n'
    if questions:
        body += "\n## Questions\n\n" + "".join(f"- {q}\n" for q in questions)
    (folder / f"{day}.md").write_text(body, encoding="utf-8")


def test_generate_daily_through_the_api_once_per_day(journal_runtime, run_action, fake_anthropic, jr):
    runtime = journal_runtime(anthropic=fake_anthropic)
    seed_demo_workspace(runtime.workspace, now=runtime.clock.now())  # the self model gives the journal its voice
    jr.work(runtime, jr.monday, 9, "Read about octopus memory.")
    jr.work(runtime, jr.monday, 14, "Sorted the research queue.")
    jr.night_of(runtime, jr.monday)  # Monday's night: Monday is over
    fake_anthropic.reply_json(ENTRY)
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok, outcome.error
    entry = jr.read(runtime, "2026-01-05.md")
    assert 'title: "A slow Monday"' in entry and "# A slow Monday" in entry
    assert "FAKE ENTRY: I spent the morning with octopus arms and the afternoon sorting." in entry
    assert "- FAKE insight: memory as pattern" in entry and "- FAKE question: what do arms remember?" in entry
    (request,) = fake_anthropic.message_requests
    prompt = request.body["messages"][0]["content"]
    assert prompt.startswith("Write my journal entry for Monday 2026-01-05")
    assert "Read about octopus memory." in prompt and "Sorted the research queue." in prompt
    assert "I am Cass, an AI daemon who keeps a journal" in request.body["system"]
    assert request.body["max_tokens"] == 1500 and outcome.cost_usd > 0
    # Must-show through the API: a second run sends nothing.
    again = run_action(runtime, "journal.generate_daily")
    assert again.ok and again.result["data"]["written"] is False
    assert len(fake_anthropic.message_requests) == 1


def test_weekly_review_through_the_api(journal_runtime, run_action, fake_anthropic, jr):
    runtime = journal_runtime(anthropic=fake_anthropic)
    jr.night_of(runtime, jr.monday.replace(day=11))  # Sunday night: the week Monday 5 - Sunday 11 is reviewed
    _entry_file(runtime, "2026-01-05", "Basil day", "ENTRY ONE: planted basil.", ["Will it survive?"])
    _entry_file(runtime, "2026-01-09", "Octopus day", "ENTRY TWO: read about octopus arms.")
    _entry_file(runtime, "2026-01-11", "Sunday", "ENTRY THREE: a quiet Sunday.")
    _entry_file(runtime, "2026-01-04", "Too old", "OUT OF RANGE: not in the seven days.")
    fake_anthropic.reply_json({"patterns": ["FAKE pattern: living things"], "high_points": ["FAKE high: the basil took"],
                               "questions": ["FAKE open: will it survive?"], "intentions": ["FAKE intention: water early"]})
    fake_anthropic.reply_text("FAKE REVIEW: a gentle week of tending and reading.")
    outcome = run_action(runtime, "journal.weekly_review")
    assert outcome.ok, outcome.error
    review = jr.read(runtime, "weekly/2026-W02.md")
    for text in ("FAKE REVIEW: a gentle week of tending and reading.", "- FAKE pattern: living things",
                 "- FAKE high: the basil took", "- FAKE open: will it survive?", "- FAKE intention: water early",
                 'from: "2026-01-05"\nto: "2026-01-11"', 'entries: ["2026-01-05", "2026-01-09", "2026-01-11"]'):
        assert text in review
    ask, write = fake_anthropic.message_requests
    prompt = ask.body["messages"][0]["content"]
    assert "ENTRY ONE: planted basil." in prompt and "ENTRY TWO" in prompt and "ENTRY THREE" in prompt
    assert "OUT OF RANGE" not in prompt
    assert [m["role"] for m in write.body["messages"]] == ["user", "assistant", "user"]
    assert "FAKE pattern: living things" in write.body["messages"][1]["content"]


def test_dream_through_the_api_carries_the_conversation_between_turns(journal_runtime, run_action, fake_anthropic, jr):
    runtime = journal_runtime(anthropic=fake_anthropic, config={"packs": {"journal": {"dream_turns": 2}}})
    jr.work(runtime, jr.monday, 15, "Walked through the octopus exhibit.")
    _entry_file(runtime, "2026-01-04", "Sunday", "YESTERDAY'S ENTRY: a quiet Sunday.")
    jr.night_of(runtime, jr.monday)
    fake_anthropic.reply_text("FAKE DREAM: arms of ink write on the aquarium glass.")
    fake_anthropic.reply_text("FAKE WAKING: I remember the ink; it was about memory.")
    outcome = run_action(runtime, "journal.dream")
    assert outcome.ok, outcome.error
    dream = jr.read(runtime, "dreams/2026-01-05.md")
    assert "## The dream\n\nFAKE DREAM: arms of ink write on the aquarium glass." in dream
    assert "## On waking\n\nFAKE WAKING: I remember the ink; it was about memory." in dream
    assert 'journal_entry: "2026-01-04"' in dream and "turns: 2" in dream
    first, second = fake_anthropic.message_requests
    opening = first.body["messages"][0]["content"]
    assert "octopus exhibit" in opening and "YESTERDAY'S ENTRY: a quiet Sunday." in opening
    assert [m["role"] for m in second.body["messages"]] == ["user", "assistant", "user"]
    assert second.body["messages"][1]["content"] == "FAKE DREAM: arms of ink write on the aquarium glass."
    assert outcome.result["insights"] == ["FAKE WAKING: I remember the ink; it was about memory."]


def test_a_dream_cut_short_keeps_what_was_dreamt(journal_runtime, run_action, fake_anthropic, jr):
    runtime = journal_runtime(anthropic=fake_anthropic)
    jr.work(runtime, jr.monday, 15, "Some work.")
    jr.night_of(runtime, jr.monday)
    fake_anthropic.reply_text("FAKE DREAM: a corridor of doors.")
    fake_anthropic.reply_error(400, "invalid_request_error", "no more")
    outcome = run_action(runtime, "journal.dream")
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["turns"] == 1 and "cut short after 1 turn(s)" in outcome.result["data"]["stopped"]
    dream = jr.read(runtime, "dreams/2026-01-05.md")
    assert "FAKE DREAM: a corridor of doors." in dream and "## On waking" not in dream and "cut short" in dream
    assert len(fake_anthropic.message_requests) == 2
