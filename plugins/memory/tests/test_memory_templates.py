"""The memory pack's templates, run through the scheduler the way a planned unit runs."""

from __future__ import annotations

import asyncio


def _run_template(runtime, template_id):
    unit = runtime.trigger(template_id)
    asyncio.run(runtime.tick())
    return runtime.store.get_unit(unit.id), runtime.store.get_summary(unit.id).data


def test_memory_maintenance_runs_both_steps_the_repaired_way(memory_runtime, mem):
    runtime = memory_runtime()
    steps = [s.action for s in runtime.catalogue.template("memory_maintenance").template.steps]
    assert steps == ["memory.summarize_idle_conversations", "memory.generate_conversation_title"]
    unit, summary = _run_template(runtime, "memory_maintenance")
    assert unit.status == "completed", unit.reason
    assert unit.requires_idle and unit.category == "memory"
    assert [a["action_id"] for a in summary["actions"]] == steps
    with mem.store(runtime) as store:
        assert all(c.title for c in store.conversations())
        assert store.conversation("conv-garden").unsummarised == 0
    assert "title:" in mem.read(runtime, "summaries/conv-reading.md")


def test_the_other_templates_run_end_to_end_offline(memory_runtime, mem):
    runtime = memory_runtime()
    for template_id in ("conversation_recap", "memory_consolidation", "knowledge_notes"):
        unit, summary = _run_template(runtime, template_id)
        assert unit.status == "completed", (template_id, unit.reason)
        assert len(summary["actions"]) == 2
    assert (runtime.workspace / "memory" / "consolidated" / "2026-01-05.md").exists()
    assert list((runtime.workspace / "memory" / "notes").glob("*.md"))


def test_every_action_of_the_pack_is_used_by_a_template(memory_runtime):
    runtime = memory_runtime(seed=False)
    ours = {a for a, ca in runtime.catalogue.actions.items() if ca.pack == "memory"}
    used = {s.action for t in runtime.catalogue.templates.values() if t.origin.pack == "memory" for s in t.template.steps}
    assert ours == used
