"""The wonderland pack inside the runtime: catalogue metadata, approvals, crash re-runs, a simulated day."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime

import pytest

from cass_actions_core.testing.crash import DEATH_EXIT_CODE, die, in_child
from cass_actions_core.workspace import seed_demo_workspace

from cass_actions_wonderland.state import WonderlandState


def test_metadata_is_honest_and_every_action_is_used(cass_runtime):
    runtime = cass_runtime(load=["wonderland"])
    catalogue = runtime.catalogue
    actions = {a.definition.id: a.definition for a in catalogue.actions.values() if a.pack == "wonderland"}
    assert set(actions) == {"wonderland.enter", "wonderland.explore", "wonderland.reflect", "wonderland.create",
                            "wonderland.socialize", "wonderland.journal_experience"}
    for d in actions.values():
        assert d.category == "wonderland"
        if not d.uses_llm:
            assert d.tier == 1 and d.estimated_cost_usd == 0 and d.max_cost_usd == 0
        else:
            assert d.max_llm_calls == 1 and 0 < d.estimated_cost_usd <= d.max_cost_usd
    assert not actions["wonderland.explore"].uses_llm  # F10: it never called an LLM
    assert actions["wonderland.create"].requires_approval
    templates = {t.template.id: t.template for t in catalogue.templates.values() if t.origin.pack == "wonderland"}
    assert set(templates) == {"wonderland_exploration", "wonderland_reflection", "wonderland_social", "wonderland_building"}
    used = {s.action for t in templates.values() for s in t.steps}
    assert used == set(actions)
    exploration = templates["wonderland_exploration"]
    assert exploration.category == "wonderland"
    assert [s.action for s in exploration.steps] == ["wonderland.enter", "wonderland.explore", "wonderland.journal_experience"]
    # Derived from the steps (the earlier system typed 0.20 here against the action's 0.05).
    assert catalogue.template_cost(exploration) == actions["wonderland.journal_experience"].estimated_cost_usd
    (window,) = templates["wonderland_reflection"].preferred_windows
    assert (window.start_hour, window.end_hour, window.weight) == (21, 6, 1.3)


def test_the_plugin_module_imports_nothing_heavy():
    code = ("import sys, cass_actions_wonderland.plugin as p; "
            "assert 'anthropic' not in sys.modules, 'anthropic'; assert 'jsonschema' not in sys.modules, 'jsonschema'; "
            "print(len(p.HANDLERS))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6"


def test_building_template_parks_for_approval_then_creates_the_object(wonderland, wl):
    # The fixture stores today's (empty) plan first: the core's first planning of a day
    # deletes that day's queued units, a triggered one included.
    runtime = wonderland()
    runtime.acquire_lease()
    unit = runtime.trigger("wonderland_building")
    asyncio.run(runtime.tick())
    assert runtime.store.get_unit(unit.id).status == "awaiting_approval"
    pending = [a for a in runtime.store.list_approvals(status="pending") if a.unit_id == unit.id]
    assert [(a.action_id, a.step_index) for a in pending] == [("wonderland.create", 1)]
    assert not any(o.get("run_key", "").endswith(f"/{unit.id}/1") for o in wl.kv(runtime, "world_changes", {}).get("objects", []))

    runtime.approve(pending[0].id)
    asyncio.run(runtime.tick())
    done = runtime.store.get_unit(unit.id)
    assert done.status == "completed", done.reason
    (obj,) = [o for o in wl.kv(runtime, "world_changes")["objects"] if o["run_key"].endswith(f"/{unit.id}/1")]
    assert obj["inspired"] is True and obj["description"].startswith("[offline]") and obj["name"].startswith("[offline]")
    journal = wl.journal_path(runtime).read_text("utf-8")
    bare = obj["name"].removeprefix("[offline] ")
    assert f"**[offline] Made {bare} and left it in" in journal and "\u00b7 Creation \u00b7" in journal


def test_a_journal_flush_rerun_after_a_crash_writes_its_section_once(wonderland, cass_runtime, monkeypatch, wl):
    first = wonderland()
    unit = first.trigger("wonderland_exploration")
    data_dir, clock = first.data_dir, first.clock
    first.close()

    def killed_after_the_journal_file_was_written() -> None:
        runtime = cass_runtime(load=["wonderland"], data_dir=data_dir, clock=clock)
        monkeypatch.setattr(WonderlandState, "finish_flush", lambda self, run_key, experiences: die())
        runtime.acquire_lease()
        asyncio.run(runtime.tick())

    assert in_child(killed_after_the_journal_file_was_written) == DEATH_EXIT_CODE
    restarted = cass_runtime(load=["wonderland"], data_dir=data_dir, clock=clock)
    text = wl.journal_path(restarted).read_text("utf-8")
    assert text.count("<!-- wonderland-flush ") == 1
    # Claimed by the flush (out of the buffer), not yet archived: the death came first.
    assert wl.kv(restarted, "experiences") == [] and wl.kv(restarted, "journaled", []) == []
    (pending,) = wl.kv(restarted, "journal_flushes").values()
    assert pending["written"] is False and len(pending["experiences"]) == 1

    # The new process on the same data folder resumes the unit and re-runs the (idempotent) step.
    restarted.acquire_lease()
    asyncio.run(restarted.tick())
    assert restarted.store.get_unit(unit.id).status == "completed"
    runs = restarted.store.action_runs_for_unit(unit.id)
    assert [r.status for r in runs] == ["completed", "completed", "failed", "completed"]  # the killed attempt kept
    final = wl.journal_path(restarted).read_text("utf-8")
    assert final == text  # no second section
    assert wl.kv(restarted, "experiences") == []
    assert len(wl.kv(restarted, "journaled")) == 1


@pytest.mark.parametrize("moved_before_crash", [False, True], ids=["crash-before-move", "crash-after-move"])
def test_an_explore_rerun_after_a_crash_moves_once_and_records_once(wonderland, cass_runtime, monkeypatch, wl,
                                                                      moved_before_crash):
    first = wonderland()
    unit = first.trigger("wonderland_exploration")
    data_dir, clock = first.data_dir, first.clock
    first.close()
    original = WonderlandState.move

    def killed_while_exploring() -> None:
        runtime = cass_runtime(load=["wonderland"], data_dir=data_dir, clock=clock)

        def crash(self, room, now, run_key):
            if moved_before_crash:
                original(self, room, now, run_key)
            die()

        monkeypatch.setattr(WonderlandState, "move", crash)
        runtime.acquire_lease()
        asyncio.run(runtime.tick())

    assert in_child(killed_while_exploring) == DEATH_EXIT_CODE
    restarted = cass_runtime(load=["wonderland"], data_dir=data_dir, clock=clock)
    (recorded,) = wl.kv(restarted, "experiences")
    expected_room = recorded["details"]["to"] if moved_before_crash else "threshold"
    assert wl.kv(restarted, "presence")["room"] == expected_room

    restarted.acquire_lease()
    asyncio.run(restarted.tick())
    assert restarted.store.get_unit(unit.id).status == "completed"
    presence = wl.kv(restarted, "presence")
    assert presence["room"] == recorded["details"]["to"] and presence["moves"] == 1
    assert presence["visits"] == {"threshold": 1, recorded["details"]["to"]: 1}
    journaled = wl.kv(restarted, "journaled")
    assert [e["id"] for e in journaled] == [recorded["id"]]


def test_a_simulated_day_with_only_the_wonderland_pack(cass_runtime, virtual_clock, wl):
    clock = virtual_clock("UTC", datetime(2026, 1, 5, 6, 0))
    runtime = cass_runtime(load=["wonderland"], clock=clock)
    seed_demo_workspace(runtime.workspace, now=clock.now())
    runtime.acquire_lease()
    asyncio.run(runtime.simulate_until(datetime(2026, 1, 6, 6, 0, tzinfo=clock.tz)))

    units = {u.template_id: u for u in runtime.units(local_date=clock.now().date().replace(day=5))}
    assert units["wonderland_exploration"].status == "completed"
    assert units["wonderland_social"].status == "completed"
    assert units["wonderland_reflection"].status == "completed"
    # Building waits for a human: parked with its reason, never dropped.
    assert units["wonderland_building"].status == "awaiting_approval"
    assert "wonderland.create" in units["wonderland_building"].reason
    journal = (runtime.workspace / "wonderland" / "journal" / "2026-01-05.md").read_text("utf-8")
    assert "\u00b7 Exploration \u00b7" in journal and "\u00b7 Encounter \u00b7" in journal
    presence = wl.kv(runtime, "presence")
    assert presence["room"] == "reflection_pool" and presence["moves"] >= 2
