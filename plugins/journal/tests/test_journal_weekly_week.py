"""``journal.weekly_review`` reviews one ISO week (Monday to Sunday), and by default only once that week is over."""

from __future__ import annotations

from datetime import date

MONDAY, TUESDAY, WEDNESDAY, THURSDAY = (date(2026, 1, d) for d in (5, 6, 7, 8))
SUNDAY, NEXT_MONDAY = date(2026, 1, 11), date(2026, 1, 12)


def _journal(runtime, run_action, jr, day, text):
    """Work on ``day``, then write its entry in its night."""
    jr.work(runtime, day, 10, text, question=f"Question from day {day.day}?")
    jr.night_of(runtime, day)
    outcome = run_action(runtime, "journal.generate_daily")
    assert outcome.ok and outcome.result["data"]["date"] == day.isoformat(), outcome.error


def test_weekly_review_waits_until_the_iso_week_is_over(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    for day, text in ((MONDAY, "Planted basil with the garden group."), (TUESDAY, "Read about basil and octopus memory."),
                      (WEDNESDAY, "Watered the basil early.")):
        _journal(runtime, run_action, jr, day, text)
    # Wednesday night: the week 2026-W02 is not over; no review is written (none that a Sunday run would find "written").
    early = run_action(runtime, "journal.weekly_review")
    assert early.ok and early.cost_usd == 0 and early.result["llm"]["calls"] == 0
    assert early.result["data"] == {"week": "2026-W02", "path": None, "written": False}
    assert "not over yet" in early.result["summary"] and "2026-01-05 to 2026-01-11" in early.result["summary"]
    assert not jr.exists(runtime, "weekly/2026-W02.md")
    jr.morning_of(runtime, THURSDAY)
    assert run_action(runtime, "journal.weekly_review").result["data"]["written"] is False
    assert not jr.exists(runtime, "weekly/2026-W02.md")
    # Sunday night: the week is over; the review covers Monday to Sunday.
    _journal(runtime, run_action, jr, SUNDAY, "A long walk by the basil beds.")
    outcome = run_action(runtime, "journal.weekly_review")
    assert outcome.ok, outcome.error
    assert outcome.result["llm"]["calls"] == 2 and outcome.result["data"]["complete"] is True
    review = jr.read(runtime, "weekly/2026-W02.md")
    assert review.startswith('---\nweek: "2026-W02"\nfrom: "2026-01-05"\nto: "2026-01-11"\ncomplete: true\n')
    assert 'entries: ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-11"]' in review
    assert "# Week 2026-W02: 2026-01-05 to 2026-01-11" in review and "prose_error" not in review
    assert "\u201cbasil\u201d came up on 4 of 4 days" in review and "## Entries" in review
    # Monday morning: Sunday is still the latest finished day; the same week, already written.
    jr.morning_of(runtime, NEXT_MONDAY)
    again = run_action(runtime, "journal.weekly_review")
    assert again.ok and again.result["llm"]["calls"] == 0 and "already written" in again.result["summary"]
    # Monday night: the latest finished day starts the next week, which is not over.
    jr.night_of(runtime, NEXT_MONDAY)
    later = run_action(runtime, "journal.weekly_review")
    assert later.ok and later.cost_usd == 0 and later.result["data"] == {"week": "2026-W03", "path": None, "written": False}


def test_weekly_review_date_asks_for_a_week_explicitly(journal_runtime, run_action, jr):
    runtime = journal_runtime()
    jr.work(runtime, MONDAY, 10, "Planted basil.")
    jr.evening_of(runtime, MONDAY)
    refused = run_action(runtime, "journal.weekly_review", {"date": "2026-01-05"})
    assert not refused.ok
    assert "parameter 'date' 2026-01-05 is not over yet (the latest finished day is 2026-01-04)" in refused.error
    jr.night_of(runtime, MONDAY)
    assert run_action(runtime, "journal.generate_daily").result["data"]["written"]
    # Asked for explicitly, the week so far is reviewed (Monday only) and marked incomplete.
    partial = run_action(runtime, "journal.weekly_review", {"date": "2026-01-05"})
    assert partial.ok, partial.error
    assert partial.result["data"]["entries"] == ["2026-01-05"] and partial.result["data"]["complete"] is False
    assert jr.read(runtime, "weekly/2026-W02.md").startswith(
        '---\nweek: "2026-W02"\nfrom: "2026-01-05"\nto: "2026-01-05"\ncomplete: false\n')
    same = run_action(runtime, "journal.weekly_review", {"date": "2026-01-05"})
    assert same.ok and same.result["llm"]["calls"] == 0 and "already written" in same.result["summary"]
    # The ISO week of a date at the turn of the year: Monday 2025-12-29 to Sunday 2026-01-04.
    new_year = run_action(runtime, "journal.weekly_review", {"date": "2026-01-01"})
    assert new_year.ok and new_year.result["data"]["week"] == "2026-W01" and new_year.cost_usd == 0
    assert "No journal entry from 2025-12-29 to 2026-01-04" in new_year.result["summary"]
    # On Sunday night the complete week replaces the partial review instead of finding it "already written".
    _journal(runtime, run_action, jr, SUNDAY, "Sunday's walk.")
    full = run_action(runtime, "journal.weekly_review")
    assert full.ok and full.result["data"]["written"] and full.result["data"]["complete"] is True
    assert full.result["data"]["entries"] == ["2026-01-05", "2026-01-11"]
    assert 'to: "2026-01-11"\ncomplete: true\n' in jr.read(runtime, "weekly/2026-W02.md")
    mid_week_date = run_action(runtime, "journal.weekly_review", {"date": "2026-01-07"})
    assert mid_week_date.ok and mid_week_date.result["llm"]["calls"] == 0 and "already written" in mid_week_date.result["summary"]


def test_a_review_written_mid_week_by_the_earlier_rule_is_replaced_on_sunday(journal_runtime, run_action, jr):
    """A file from the earlier seven-days-ending-on-Wednesday rule does not block the real review."""
    runtime = journal_runtime()
    _journal(runtime, run_action, jr, MONDAY, "Planted basil.")
    folder = runtime.workspace / "journal" / "weekly"
    folder.mkdir(parents=True)
    (folder / "2026-W02.md").write_text('---\nweek: "2026-W02"\nfrom: "2026-01-01"\nto: "2026-01-07"\n'
                                        'entries: ["2026-01-05"]\n---\n# Week 2026-W02: 2026-01-01 to 2026-01-07\n\nOld.\n',
                                        encoding="utf-8")
    _journal(runtime, run_action, jr, SUNDAY, "Sunday's walk.")
    outcome = run_action(runtime, "journal.weekly_review")
    assert outcome.ok and outcome.result["data"]["written"], outcome.error
    review = jr.read(runtime, "weekly/2026-W02.md")
    assert 'from: "2026-01-05"\nto: "2026-01-11"' in review and "Old." not in review
