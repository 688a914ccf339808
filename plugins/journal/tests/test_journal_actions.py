"""The journal pack's actions with the offline provider, on a virtual clock."""

from __future__ import annotations

from datetime import timedelta

from cass_actions_core.workspace import seed_demo_workspace

TUESDAY = 6
WEDNESDAY = 7


def _day(jr, n):
    return jr.monday.replace(day=n)


def test_generate_daily_writes_yesterdays_entry_from_its_work(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, jr.monday, 9, "Read about octopus memory and took notes on distributed learning.",
            insight="Memory can live in a pattern, not a place.", question="What do octopus arms remember?")
    jr.work(runtime, jr.monday, 14, "Sorted the research queue.")
    jr.night_of(runtime, _day(jr, TUESDAY))
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["date"] == "2026-01-05" and outcome.result["data"]["written"]
    entry = jr.read(runtime, "2026-01-05.md")
    assert entry.startswith('---\ndate: "2026-01-05"\n')
    assert "work_units: 2" in entry and "conversations: []" in entry
    assert "Read about octopus memory" in entry and "Sorted the research queue." in entry
    assert "## Insights\n\n- Memory can live in a pattern, not a place." in entry
    assert "## Questions\n\n- What do octopus arms remember?" in entry
    assert outcome.result["artifacts"][0]["path"] == "journal/2026-01-05.md"
    assert jr.events(runtime, "journal.entry_created") == [{
        "date": "2026-01-05", "path": "journal/2026-01-05.md", "title": "[offline] Monday 2026-01-05",
        "work_units": 2, "conversations": 0}]
    assert outcome.result["questions"] == ["What do octopus arms remember?"]


def test_generate_daily_twice_for_one_day_writes_one_entry_and_makes_one_call(journal_runtime, run_action, jr):
    """Must-show: the second run finds the day written, makes no LLM call and emits nothing."""
    runtime = journal_runtime()
    jr.work(runtime, jr.monday, 10, "Wrote a letter to a friend.")
    jr.night_of(runtime, _day(jr, TUESDAY))
    first = run_action(runtime, "journal.generate_daily")
    assert first.ok and first.result["llm"]["calls"] == 1
    written = jr.read(runtime, "2026-01-05.md")
    runtime.clock.advance(timedelta(minutes=30))
    second = run_action(runtime, "journal.generate_daily")
    assert second.ok, second.error
    assert second.result["data"] == {"date": "2026-01-05", "path": "2026-01-05.md", "written": False}
    assert second.result["llm"]["calls"] == 0 and second.cost_usd == 0
    assert "already written" in second.result["summary"]
    assert jr.read(runtime, "2026-01-05.md") == written
    assert sorted(p.name for p in (runtime.workspace / "journal").glob("*.md")) == ["2026-01-05.md"]
    assert len(jr.events(runtime, "journal.entry_created")) == 1


def test_a_day_with_nothing_recorded_gets_no_entry_and_costs_nothing(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.night_of(runtime, _day(jr, TUESDAY))
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok
    assert outcome.result["data"] == {"date": "2026-01-05", "path": None, "written": False}
    assert "nothing to do" in outcome.result["summary"] and outcome.cost_usd == 0
    assert not jr.exists(runtime, "2026-01-05.md") and jr.events(runtime, "journal.entry_created") == []


def test_work_after_midnight_belongs_to_the_day_whose_night_it_was(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, jr.monday, 11, "Morning work on Monday.")
    jr.work(runtime, _day(jr, TUESDAY), 1, "Late-night tidying in Monday's night phase.")
    jr.work(runtime, _day(jr, TUESDAY), 9, "Tuesday morning work.")
    jr.night_of(runtime, _day(jr, TUESDAY))
    outcome = run_action(runtime, "journal.generate_daily")
    entry = jr.read(runtime, "2026-01-05.md")
    assert outcome.result["data"]["work_units"] == 2
    assert "Late-night tidying" in entry and "Tuesday morning work" not in entry


def test_the_date_parameter_writes_a_given_past_day_and_refuses_one_not_over(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, jr.monday, 9, "Monday's work.")
    jr.work(runtime, _day(jr, TUESDAY), 9, "Tuesday's work.")
    jr.night_of(runtime, _day(jr, WEDNESDAY))
    monday = run_action(runtime, "journal.generate_daily", {"date": "2026-01-05"})
    assert monday.ok and "Monday's work." in jr.read(runtime, "2026-01-05.md")
    default = run_action(runtime, "journal.generate_daily")
    assert default.result["data"]["date"] == "2026-01-06" and "Tuesday's work." in jr.read(runtime, "2026-01-06.md")
    today = run_action(runtime, "journal.generate_daily", {"date": "2026-01-07"})
    assert not today.ok and "parameter 'date' 2026-01-07 is not over yet (today is 2026-01-07)" in today.error
    bad = run_action(runtime, "journal.generate_daily", {"date": "2026-13-01"})
    assert not bad.ok and "parameter 'date' must be a date written YYYY-MM-DD, got '2026-13-01'" in bad.error


def test_the_journals_own_runs_are_not_material_for_the_next_entry(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, jr.monday, 9, "Monday's work.")
    jr.night_of(runtime, _day(jr, TUESDAY))
    run_action(runtime, "journal.generate_daily")  # a unit on Tuesday, of the journal's own action
    jr.night_of(runtime, _day(jr, WEDNESDAY))
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok and outcome.result["data"]["written"] is False and outcome.cost_usd == 0


def test_generate_daily_reads_the_memory_packs_conversation_summaries(journal_runtime, run_action, jr):
    runtime = journal_runtime(load=("memory",))
    seed_demo_workspace(runtime.workspace, now=runtime.clock.now())
    assert run_action(runtime, "memory.summarize_idle_conversations").ok
    jr.night_of(runtime, _day(jr, TUESDAY))
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["conversations"] == ["conv-garden", "conv-reading"]
    entry = jr.read(runtime, "2026-01-05.md")
    assert 'conversations: ["conv-garden", "conv-reading"]' in entry
    assert "I talked with people about" in entry and "basil keeps wilting" in entry and "octopuses" in entry


def test_weekly_review_reviews_the_last_seven_days_of_entries(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    nothing = run_action(runtime, "journal.weekly_review")
    assert nothing.ok and nothing.cost_usd == 0 and "nothing to review" in nothing.result["summary"]
    # Work on Monday to Wednesday; each night writes the day before's entry.
    for n, text in ((5, "Planted basil with the garden group."), (6, "Read about basil and octopus memory."),
                    (7, "Watered the basil early."), (8, None)):
        if text:
            jr.work(runtime, _day(jr, n), 10, text, question=f"Question from day {n}?")
        if n > 5:
            jr.night_of(runtime, _day(jr, n))
            assert run_action(runtime, "journal.generate_daily").result["data"]["written"]
    outcome = run_action(runtime, "journal.weekly_review")
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["week"] == "2026-W02" and outcome.result["llm"]["calls"] == 2
    review = jr.read(runtime, "weekly/2026-W02.md")
    assert review.startswith('---\nweek: "2026-W02"\nfrom: "2026-01-01"\nto: "2026-01-07"\n')
    assert 'entries: ["2026-01-05", "2026-01-06", "2026-01-07"]' in review
    assert "# Week 2026-W02: 2026-01-01 to 2026-01-07" in review
    assert "\u201cbasil\u201d came up on 3 of 3 days" in review
    assert "- Question from day 5?" in review and "## Entries" in review
    again = run_action(runtime, "journal.weekly_review")
    assert again.ok and again.result["llm"]["calls"] == 0 and "already written" in again.result["summary"]


def test_dream_writes_a_few_turns_and_its_event(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    empty = run_action(runtime, "dream.nightly")
    assert empty.ok and empty.cost_usd == 0 and "nothing to do" in empty.result["summary"]
    jr.work(runtime, jr.monday, 15, "Walked through the octopus exhibit and sketched the arms.")
    jr.night_of(runtime, jr.monday)
    outcome = run_action(runtime, "dream.nightly")
    assert outcome.ok, outcome.error
    assert outcome.result["llm"]["calls"] == 3
    dream = jr.read(runtime, "dreams/2026-01-05.md")
    assert dream.startswith('---\ndate: "2026-01-05"\n') and "turns: 3" in dream
    assert "# Dream of Monday 2026-01-05" in dream and "## The dream" in dream and "## On waking" in dream
    assert dream.count("[offline]") == 3 and "octopus exhibit" in dream
    assert jr.events(runtime, "journal.dream_generated") == [
        {"date": "2026-01-05", "path": "journal/dreams/2026-01-05.md", "turns": 3}]
    again = run_action(runtime, "dream.nightly")
    assert again.ok and again.result["llm"]["calls"] == 0 and len(jr.events(runtime, "journal.dream_generated")) == 1


def test_dream_turns_are_capped(journal_runtime, run_action, jr):
    runtime = journal_runtime(config={"packs": {"journal": {"dream_turns": 9}}})
    jr.work(runtime, jr.monday, 15, "Some work.")
    outcome = run_action(runtime, "dream.nightly")
    assert not outcome.ok and "setting [packs.journal] dream_turns must be between 1 and 4, got 9" in outcome.error
    assert runtime.catalogue.action("dream.nightly").definition.max_llm_calls == 4
