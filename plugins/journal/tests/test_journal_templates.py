"""The journal pack's templates: windows in the night phase, and the composite run through the scheduler."""

from __future__ import annotations

import asyncio

from cass_actions_core.planning import phase_hours, window_fit


def test_every_template_fits_the_night_phase_best(journal_runtime):
    runtime = journal_runtime()
    hours = phase_hours(runtime.config.phases)
    sunday = runtime.clock.today().replace(day=11)
    for template_id in ("weekly_review", "journal_and_dream"):
        template = runtime.catalogue.template(template_id).template
        fits = {phase: window_fit(template, hours[phase], sunday) for phase in hours}
        assert max(fits, key=fits.get) == "night" and fits["evening"] == 0, (template_id, fits)
    weekly = runtime.catalogue.template("weekly_review").template
    assert window_fit(weekly, hours["night"], sunday.replace(day=10)) == 0  # Saturday: not its day


def test_journal_and_dream_runs_both_steps(journal_runtime, jr):
    runtime = journal_runtime()
    jr.work(runtime, jr.monday, 10, "Monday's work with the garden group.")
    jr.work(runtime, jr.monday.replace(day=6), 10, "Tuesday's reading.")
    jr.night_of(runtime, jr.monday.replace(day=6))
    unit = runtime.trigger("journal_and_dream")
    asyncio.run(runtime.tick())
    unit = runtime.store.get_unit(unit.id)
    assert unit.status == "completed", unit.reason
    # Tuesday's night: Tuesday is the day that just ended, so both steps are about Tuesday.
    assert jr.exists(runtime, "2026-01-06.md") and jr.exists(runtime, "dreams/2026-01-06.md")
    assert not jr.exists(runtime, "2026-01-05.md")
    entry = jr.read(runtime, "2026-01-06.md")
    assert "Tuesday's reading" in entry and "Monday's work" not in entry
    dream = jr.read(runtime, "dreams/2026-01-06.md")
    assert 'journal_entry: "2026-01-06"' in dream and "Tuesday's reading" in dream


def test_weekly_review_on_sunday_night_first_writes_sundays_entry(journal_runtime, jr):
    runtime = journal_runtime()
    saturday, sunday = jr.monday.replace(day=10), jr.monday.replace(day=11)
    jr.work(runtime, saturday, 10, "Saturday's gardening.")
    jr.work(runtime, sunday, 10, "Sunday's long walk.")
    jr.night_of(runtime, sunday)
    unit = runtime.trigger("weekly_review")
    asyncio.run(runtime.tick())
    unit = runtime.store.get_unit(unit.id)
    assert unit.status == "completed", unit.reason
    assert (unit.local_date, unit.phase) == (sunday, "night")
    assert "Sunday's long walk" in jr.read(runtime, "2026-01-11.md") and not jr.exists(runtime, "2026-01-10.md")
    review = jr.read(runtime, "weekly/2026-W02.md")
    assert 'from: "2026-01-05"\nto: "2026-01-11"' in review and 'entries: ["2026-01-11"]' in review


def test_every_action_of_the_pack_is_used_by_a_template(journal_runtime):
    runtime = journal_runtime()
    ours = {a for a, ca in runtime.catalogue.actions.items() if ca.pack == "journal"}
    used = {s.action for t in runtime.catalogue.templates.values() if t.origin.pack == "journal" for s in t.template.steps}
    assert ours == used


def test_the_pack_has_two_templates_that_do_not_repeat_each_other(journal_runtime):
    runtime = journal_runtime()
    ours = {t: ct.template for t, ct in runtime.catalogue.templates.items() if ct.origin.pack == "journal"}
    assert sorted(ours) == ["journal_and_dream", "weekly_review"]
    assert [s.action for s in ours["journal_and_dream"].steps] == ["journal.generate_daily", "journal.dream"]
    assert [s.action for s in ours["weekly_review"].steps] == ["journal.generate_daily", "journal.weekly_review"]


def test_the_journal_runs_after_the_memory_packs_night_work(journal_runtime):
    """All night units queue at 22:00 and run in priority order: the journal's come last."""
    runtime = journal_runtime(load=("memory",))
    sunday = runtime.clock.today().replace(day=11)
    asyncio.run(runtime.plan_day(sunday))
    night = [u.template_id for u in runtime.store.list_units(local_date=sunday, phase="night")]
    assert {"memory_consolidation", "journal_and_dream", "weekly_review"} <= set(night), night
    assert night.index("memory_consolidation") < night.index("journal_and_dream") < night.index("weekly_review"), night

