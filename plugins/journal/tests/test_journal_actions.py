"""The journal pack's actions with the offline provider, on a virtual clock.

The day written is the latest finished day: in the night phase of day D (22:00 to 06:00,
after midnight too) that is D itself; in the morning, afternoon or evening of D it is D-1.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cass_actions_core.problems import CatalogueError
from cass_actions_core.workspace import seed_demo_workspace

MONDAY = date(2026, 1, 5)
TUESDAY = date(2026, 1, 6)
WEDNESDAY = date(2026, 1, 7)
THURSDAY = date(2026, 1, 8)


def _ran_in(outcome, day, phase):
    """The unit ran with ``ctx.local_date == day`` in ``phase``."""
    assert (outcome.unit.local_date, outcome.unit.phase) == (day, phase)


def test_run_in_the_night_of_a_day_writes_that_days_entry_from_its_work(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, MONDAY, 9, "Read about octopus memory and took notes on distributed learning.",
            insight="Memory can live in a pattern, not a place.", question="What do octopus arms remember?")
    jr.work(runtime, MONDAY, 14, "Sorted the research queue.")
    jr.work(runtime, MONDAY, 19, "Answered the evening mail.")
    jr.night_of(runtime, MONDAY)
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok, outcome.error
    _ran_in(outcome, MONDAY, "night")
    assert outcome.result["data"]["date"] == "2026-01-05" and outcome.result["data"]["written"]
    entry = jr.read(runtime, "2026-01-05.md")
    assert entry.startswith('---\ndate: "2026-01-05"\n')
    assert "work_units: 3" in entry and "conversations: []" in entry
    assert "Read about octopus memory" in entry and "Sorted the research queue." in entry
    assert "Answered the evening mail." in entry
    # Built offline: the picked items carry the label too.
    assert "## Insights\n\n- [offline] Memory can live in a pattern, not a place." in entry
    assert "## Questions\n\n- [offline] What do octopus arms remember?" in entry
    assert outcome.result["artifacts"][0]["path"] == "journal/2026-01-05.md"
    assert jr.events(runtime, "journal.entry_created") == [{
        "date": "2026-01-05", "path": "journal/2026-01-05.md", "title": "[offline] Monday 2026-01-05",
        "work_units": 3, "conversations": 0}]
    assert outcome.result["questions"] == ["[offline] What do octopus arms remember?"]
    assert not jr.exists(runtime, "2026-01-04.md")


def test_generate_daily_twice_for_one_day_writes_one_entry_and_makes_one_call(journal_runtime, run_action, jr):
    """Must-show: the second run finds the day written, makes no LLM call and emits nothing."""
    runtime = journal_runtime()
    jr.work(runtime, MONDAY, 10, "Wrote a letter to a friend.")
    jr.night_of(runtime, MONDAY)
    first = run_action(runtime, "journal.generate_daily")
    assert first.ok and first.result["llm"]["calls"] == 1
    assert first.result["data"]["date"] == "2026-01-05" and first.result["data"]["written"]
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


def test_run_the_next_morning_it_writes_the_day_before(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, MONDAY, 10, "Monday's work.")
    jr.morning_of(runtime, TUESDAY)
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok, outcome.error
    _ran_in(outcome, TUESDAY, "morning")
    assert outcome.result["data"]["date"] == "2026-01-05" and outcome.result["data"]["written"]
    assert outcome.result["llm"]["calls"] == 1
    assert "Monday's work." in jr.read(runtime, "2026-01-05.md")
    assert not jr.exists(runtime, "2026-01-06.md")


def test_the_next_morning_an_entry_written_in_the_night_is_left_alone(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, MONDAY, 10, "Monday's work.")
    jr.night_of(runtime, MONDAY)
    assert run_action(runtime, "journal.generate_daily").result["data"]["written"]
    written = jr.read(runtime, "2026-01-05.md")
    jr.work(runtime, TUESDAY, 7, "Tuesday's early work.")
    jr.morning_of(runtime, TUESDAY)
    again = run_action(runtime, "journal.generate_daily")
    assert again.ok, again.error
    _ran_in(again, TUESDAY, "morning")
    assert again.result["data"] == {"date": "2026-01-05", "path": "2026-01-05.md", "written": False}
    assert again.result["llm"]["calls"] == 0 and again.cost_usd == 0
    assert jr.read(runtime, "2026-01-05.md") == written
    assert sorted(p.name for p in (runtime.workspace / "journal").glob("*.md")) == ["2026-01-05.md"]
    assert len(jr.events(runtime, "journal.entry_created")) == 1


def test_run_in_the_afternoon_it_writes_the_day_before(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, MONDAY, 10, "Monday's work.")
    jr.work(runtime, TUESDAY, 10, "Tuesday morning's work.")
    jr.afternoon_of(runtime, TUESDAY)
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok, outcome.error
    _ran_in(outcome, TUESDAY, "afternoon")
    assert outcome.result["data"]["date"] == "2026-01-05" and outcome.result["data"]["work_units"] == 1
    entry = jr.read(runtime, "2026-01-05.md")
    assert "Monday's work." in entry and "Tuesday morning's work." not in entry
    assert not jr.exists(runtime, "2026-01-06.md")


def test_a_day_with_nothing_recorded_gets_no_entry_and_costs_nothing(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.night_of(runtime, MONDAY)
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok
    assert outcome.result["data"] == {"date": "2026-01-05", "path": None, "written": False}
    assert "nothing to do" in outcome.result["summary"] and outcome.cost_usd == 0
    assert not jr.exists(runtime, "2026-01-05.md") and jr.events(runtime, "journal.entry_created") == []


def test_work_after_midnight_belongs_to_the_day_whose_night_it_was(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, MONDAY, 11, "Morning work on Monday.")
    jr.work(runtime, TUESDAY, 1, "Late-night tidying in Monday's night phase.")
    jr.move_to(runtime, TUESDAY, 1, 30)  # still Monday's night: Monday is the latest finished day
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok, outcome.error
    _ran_in(outcome, MONDAY, "night")
    assert outcome.result["data"]["date"] == "2026-01-05" and outcome.result["data"]["work_units"] == 2
    assert "Late-night tidying" in jr.read(runtime, "2026-01-05.md")
    jr.work(runtime, TUESDAY, 9, "Tuesday morning work.")
    jr.night_of(runtime, TUESDAY)
    tuesday = run_action(runtime, "journal.generate_daily")
    assert tuesday.result["data"]["date"] == "2026-01-06" and tuesday.result["data"]["work_units"] == 1
    entry = jr.read(runtime, "2026-01-06.md")
    assert "Tuesday morning work" in entry and "Late-night tidying" not in entry


def test_the_date_parameter_accepts_finished_days_and_refuses_one_not_over(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, MONDAY, 9, "Monday's work.")
    jr.work(runtime, TUESDAY, 9, "Tuesday's work.")
    jr.evening_of(runtime, TUESDAY)
    early = run_action(runtime, "journal.generate_daily", {"date": "2026-01-06"})
    assert not early.ok
    assert ("parameter 'date' 2026-01-06 is not over yet (the latest finished day is 2026-01-05)"
            in early.error)
    assert not jr.exists(runtime, "2026-01-06.md")
    monday = run_action(runtime, "journal.generate_daily", {"date": "2026-01-05"})
    assert monday.ok and "Monday's work." in jr.read(runtime, "2026-01-05.md")
    jr.night_of(runtime, TUESDAY)
    tuesday = run_action(runtime, "journal.generate_daily", {"date": "2026-01-06"})
    assert tuesday.ok, tuesday.error
    assert tuesday.result["data"]["date"] == "2026-01-06" and tuesday.result["data"]["written"]
    assert "Tuesday's work." in jr.read(runtime, "2026-01-06.md")
    tomorrow = run_action(runtime, "journal.generate_daily", {"date": "2026-01-07"})
    assert not tomorrow.ok
    assert "parameter 'date' 2026-01-07 is not over yet (the latest finished day is 2026-01-06)" in tomorrow.error
    bad = run_action(runtime, "journal.generate_daily", {"date": "2026-13-01"})
    assert not bad.ok and "parameter 'date' must be a date written YYYY-MM-DD, got '2026-13-01'" in bad.error


def test_the_journals_own_runs_are_not_material_for_the_next_entry(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, MONDAY, 9, "Monday's work.")
    jr.afternoon_of(runtime, TUESDAY)
    first = run_action(runtime, "journal.generate_daily")  # a unit on Tuesday, of the journal's own action
    assert first.result["data"]["date"] == "2026-01-05" and first.result["data"]["written"]
    jr.night_of(runtime, TUESDAY)
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok and outcome.result["data"] == {"date": "2026-01-06", "path": None, "written": False}
    assert outcome.cost_usd == 0 and not jr.exists(runtime, "2026-01-06.md")


def test_generate_daily_reads_the_memory_packs_conversation_summaries(journal_runtime, run_action, jr):
    runtime = journal_runtime(load=("memory",))
    seed_demo_workspace(runtime.workspace, now=runtime.clock.now())
    assert run_action(runtime, "memory.summarize_idle_conversations").ok
    jr.night_of(runtime, MONDAY)
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["date"] == "2026-01-05"
    assert outcome.result["data"]["conversations"] == ["conv-garden", "conv-reading"]
    entry = jr.read(runtime, "2026-01-05.md")
    assert 'conversations: ["conv-garden", "conv-reading"]' in entry
    assert "I talked with people about" in entry and "basil keeps wilting" in entry and "octopuses" in entry


def test_dream_writes_a_few_turns_and_its_event(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    empty = run_action(runtime, "journal.dream")
    assert empty.ok and empty.cost_usd == 0 and "nothing to do" in empty.result["summary"]
    jr.work(runtime, MONDAY, 15, "Walked through the octopus exhibit and sketched the arms.")
    jr.night_of(runtime, MONDAY)
    outcome = run_action(runtime, "journal.dream")
    assert outcome.ok, outcome.error
    assert outcome.result["llm"]["calls"] == 3
    dream = jr.read(runtime, "dreams/2026-01-05.md")
    assert dream.startswith('---\ndate: "2026-01-05"\n') and "turns: 3" in dream
    assert "# Dream of Monday 2026-01-05" in dream and "## The dream" in dream and "## On waking" in dream
    assert dream.count("[offline]") == 3 and "octopus exhibit" in dream
    assert jr.events(runtime, "journal.dream_generated") == [
        {"date": "2026-01-05", "path": "journal/dreams/2026-01-05.md", "turns": 3}]
    again = run_action(runtime, "journal.dream")
    assert again.ok and again.result["llm"]["calls"] == 0 and len(jr.events(runtime, "journal.dream_generated")) == 1


def test_dream_is_about_the_day_that_just_ended(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, MONDAY, 10, "Walked through the octopus exhibit.")
    jr.afternoon_of(runtime, MONDAY)  # Monday is not over: the day that just ended is Sunday, with nothing in it
    during = run_action(runtime, "journal.dream")
    assert during.ok and during.result["data"] == {"date": "2026-01-04", "path": None, "written": False}
    early = run_action(runtime, "journal.dream", {"date": "2026-01-05"})
    assert not early.ok
    assert "parameter 'date' 2026-01-05 is not over yet (the latest finished day is 2026-01-04)" in early.error
    jr.move_to(runtime, TUESDAY, 1)  # after midnight, still Monday's night
    outcome = run_action(runtime, "journal.dream")
    assert outcome.ok, outcome.error
    _ran_in(outcome, MONDAY, "night")
    assert outcome.result["data"]["date"] == "2026-01-05" and "octopus exhibit" in jr.read(runtime, "dreams/2026-01-05.md")


def test_dream_turns_are_capped(journal_runtime):
    """The settings schema reports a bad value at startup, with its key path."""
    with pytest.raises(CatalogueError) as failed:
        journal_runtime(config={"packs": {"journal": {"dream_turns": 9}}})
    assert "$.packs.journal.dream_turns" in str(failed.value) and "9" in str(failed.value)
    runtime = journal_runtime()
    assert runtime.catalogue.action("journal.dream").definition.max_llm_calls == 4
