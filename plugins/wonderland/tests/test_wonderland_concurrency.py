"""Two units on one runtime at once (max_concurrent_units 2): no lost journal section, nothing journaled twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from cass_actions_core.llm.offline import OfflineProvider


@pytest.fixture
def gated_llm(monkeypatch):
    """Offline LLM calls that wait (up to 5 s) until ``need`` calls are in flight at once.

    So two units are surely inside their LLM call together, as with a slow real model.
    """
    original = OfflineProvider.complete
    original_structured = OfflineProvider.structured
    state: dict[str, Any] = {"need": 2, "waiting": 0, "event": None, "max_in_flight": 0}

    async def barrier() -> None:
        if state["event"] is None:
            state["event"] = asyncio.Event()
        state["waiting"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["waiting"])
        if state["waiting"] >= state["need"]:
            state["event"].set()
        try:
            await asyncio.wait_for(state["event"].wait(), 5)
        except asyncio.TimeoutError:
            pass
        finally:
            state["waiting"] -= 1

    async def complete(self, request):
        await barrier()
        return await original(self, request)

    async def structured(self, request, output_model, *, offline=None):
        await barrier()
        return await original_structured(self, request, output_model, offline=offline)

    monkeypatch.setattr(OfflineProvider, "complete", complete)
    monkeypatch.setattr(OfflineProvider, "structured", structured)
    return state


def _two_units(runtime: Any, *templates: str, focus: str | None = None) -> list[Any]:
    runtime.acquire_lease()
    units = [runtime.trigger(t, focus=focus) for t in templates]
    asyncio.run(runtime.tick())
    done = [runtime.store.get_unit(u.id) for u in units]
    for unit in done:
        assert unit.status == "completed", unit.reason
    return done


def _concurrent(wonderland: Any) -> Any:
    return wonderland(config={"scheduler": {"max_concurrent_units": 2}})


async def _when_in_flight(state: dict[str, Any], count: int) -> None:
    for _ in range(500):
        if state["waiting"] >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the first LLM call never started")


def test_two_concurrent_journal_flushes_keep_both_sections_and_journal_each_experience_once(
        wonderland, run_action, wl, gated_llm):
    runtime = _concurrent(wonderland)
    assert run_action(runtime, "wonderland.explore").ok  # the first flush's experience

    async def second() -> Any:
        # While the first flush waits for its narrative, a new experience is recorded and
        # a second flush starts: it must take only the new one, and keep the first section.
        await _when_in_flight(gated_llm, 1)
        await runtime.run_action("wonderland.explore")
        return await runtime.run_action("wonderland.journal_experience")

    async def both() -> list[Any]:
        return list(await asyncio.gather(runtime.run_action("wonderland.journal_experience"), second()))

    units = asyncio.run(both())
    assert [u.status for u in units] == ["completed", "completed"], [u.reason for u in units]
    assert gated_llm["max_in_flight"] == 2  # both narratives were being written at the same time
    text = wl.journal_path(runtime).read_text("utf-8")
    for unit in units:
        (run,) = runtime.store.action_runs_for_unit(unit.id)
        assert f"<!-- wonderland-flush {run.key} -->" in text
    assert text.count("<!-- wonderland-flush ") == 2
    assert text.count("# Wonderland journal") == 1
    journaled = wl.kv(runtime, "journaled")
    ids = [e["id"] for e in journaled]
    assert len(ids) == 2 and len(set(ids)) == 2  # each exploration journaled once
    for exp in journaled:
        assert text.count(f"**{exp['title']}**") == 1
    assert wl.kv(runtime, "experiences") == []
    flushes = wl.kv(runtime, "journal_flushes")
    claimed = [i for f in flushes.values() for i in f["ids"]]
    assert sorted(claimed) == sorted(ids)
    assert all(f["written"] and "experiences" not in f for f in flushes.values())


def test_two_concurrent_reflections_do_not_reflect_on_the_same_experiences(wonderland, run_action, wl, gated_llm):
    runtime = _concurrent(wonderland)
    gated_llm["need"] = 1  # the explorations run alone, before the two reflections
    for _ in range(2):
        assert run_action(runtime, "wonderland.explore").ok
    gated_llm["need"] = 2
    explorations = [e["id"] for e in wl.kv(runtime, "experiences")]
    # With a focus, the second reflection still calls the LLM (on the focus alone).
    _two_units(runtime, "wonderland_reflection", "wonderland_reflection", focus="patience")
    assert gated_llm["max_in_flight"] == 2
    reflections = [e for e in wl.kv(runtime, "experiences") if e["kind"] == "reflection"]
    assert len(reflections) == 2
    on = [i for r in reflections for i in r["details"]["reflected_on"]]
    assert sorted(on) == sorted(explorations)  # both explorations reflected on, none twice
    assert sorted(wl.kv(runtime, "reflected")) == sorted(on)
    assert not wl.kv(runtime, "reflecting")  # no claim left behind


def test_two_concurrent_creations_get_distinct_ids(wonderland, run_action, wl, gated_llm):
    runtime = _concurrent(wonderland)
    assert run_action(runtime, "wonderland.enter").ok
    first = asyncio.run(runtime.run_action("wonderland.create", {}))
    second = asyncio.run(runtime.run_action("wonderland.create", {}))
    for unit in (first, second):
        assert unit.status == "awaiting_approval"
    for approval in runtime.store.list_approvals(status="pending"):
        runtime.approve(approval.id)
    runtime.acquire_lease()
    asyncio.run(runtime.tick())
    assert gated_llm["max_in_flight"] == 2
    objects = wl.kv(runtime, "world_changes")["objects"]
    assert len(objects) == 2
    assert len({o["id"] for o in objects}) == 2  # the same invented name, two distinct ids
    page = (runtime.workspace / "wonderland" / "creations.md").read_text("utf-8")
    assert all(f"`{o['id']}`" in page for o in objects)


# -- claims are never left behind --------------------------------------------------------

def test_a_failed_reflection_gives_its_experiences_back(cass_runtime, run_action, fake_anthropic, wl):
    runtime = cass_runtime(load=["wonderland"], anthropic=fake_anthropic)
    assert run_action(runtime, "wonderland.explore").ok
    (exploration,) = wl.kv(runtime, "experiences")
    fake_anthropic.reply_error(400, "invalid_request_error", "no")
    failed = run_action(runtime, "wonderland.reflect")
    assert not failed.ok
    assert not wl.kv(runtime, "reflecting") and not wl.kv(runtime, "reflected")
    fake_anthropic.reply_text("Still here.")
    again = run_action(runtime, "wonderland.reflect")
    assert again.ok, again.error
    assert wl.kv(runtime, "experiences")[-1]["details"]["reflected_on"] == [exploration["id"]]


def test_a_flush_that_breaks_during_its_call_gives_its_experiences_back(wonderland, run_action, wl, monkeypatch):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.explore").ok
    buffered = wl.kv(runtime, "experiences")

    async def broken(self, request):
        raise RuntimeError("the provider fell over")

    monkeypatch.setattr(OfflineProvider, "complete", broken)
    failed = run_action(runtime, "wonderland.journal_experience")
    assert not failed.ok
    assert wl.kv(runtime, "experiences") == buffered and wl.kv(runtime, "journal_flushes") == {}
    monkeypatch.undo()
    assert run_action(runtime, "wonderland.journal_experience").ok
    assert [e["id"] for e in wl.kv(runtime, "journaled")] == [e["id"] for e in buffered]


def test_a_stale_flush_of_a_run_that_never_came_back_is_adopted(wonderland, run_action, wl):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.explore").ok
    (lost,) = wl.kv(runtime, "experiences")
    # A flush that claimed it, then its process died and the unit was never resumed.
    old = (runtime.clock.now() - timedelta(hours=2)).isoformat()
    runtime.store.kv_set("wonderland", "journal_flushes", {
        "dead/run/0": {"ids": [lost["id"]], "experiences": [lost], "path": "journal/x.md", "at": old, "written": False}})
    runtime.store.kv_set("wonderland", "experiences", [])
    outcome = run_action(runtime, "wonderland.journal_experience")
    assert outcome.ok, outcome.error
    assert outcome.result["data"]["experiences"] == 1
    assert f"**{lost['title']}**" in wl.journal_path(runtime).read_text("utf-8")
    flushes = wl.kv(runtime, "journal_flushes")
    assert "experiences" not in flushes["dead/run/0"] and flushes["dead/run/0"]["adopted_by"] != "dead/run/0"
    assert [e["id"] for e in wl.kv(runtime, "journaled")] == [lost["id"]]


def test_a_fresh_flush_of_another_run_is_left_alone(wonderland, run_action, wl):
    runtime = wonderland()
    assert run_action(runtime, "wonderland.explore").ok
    (held,) = wl.kv(runtime, "experiences")
    now = runtime.clock.now().isoformat()
    runtime.store.kv_set("wonderland", "journal_flushes", {
        "busy/run/0": {"ids": [held["id"]], "experiences": [held], "path": "journal/x.md", "at": now, "written": False}})
    # Left in the buffer too, as after a crash between the two writes of a claim.
    outcome = run_action(runtime, "wonderland.journal_experience")
    assert outcome.ok and "Nothing to journal" in outcome.result["summary"]
    assert wl.kv(runtime, "experiences") == []  # the held one is not in the buffer twice
    assert wl.kv(runtime, "journal_flushes")["busy/run/0"]["experiences"] == [held]


class _KV(dict):
    """An in-memory stand-in for ``ctx.kv``."""

    def set(self, key, value):
        self[key] = value

    def delete(self, key):
        self.pop(key, None)


def test_a_flush_record_from_before_claims_is_finished_on_its_re_run():
    from datetime import datetime, timezone

    from cass_actions_wonderland.state import WonderlandState

    now = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    exp = {"id": "exploration-x-0", "kind": "exploration", "at": now.isoformat(), "title": "Went east"}
    # Written by the earlier version: the record holds only ids, the experience is still buffered.
    unwritten = WonderlandState(_KV(experiences=[exp], journal_flushes={
        "run/0": {"ids": [exp["id"]], "path": "journal/x.md", "at": now.isoformat(), "written": False}}))
    record = unwritten.claim_flush("run/0", "journal/x.md", now)
    assert record["experiences"] == [exp] and unwritten.experiences() == []
    # ... and one whose section was written just before the crash: archived, never journaled again.
    written = WonderlandState(_KV(experiences=[exp], journal_flushes={
        "run/0": {"ids": [exp["id"]], "path": "journal/x.md", "at": now.isoformat(), "written": True}}))
    record = written.claim_flush("run/0", "journal/x.md", now)
    assert "experiences" not in record and written.experiences() == [] and written.journaled() == [exp]
