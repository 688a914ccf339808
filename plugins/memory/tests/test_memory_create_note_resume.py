"""memory.create_wiki_note without a topic, re-run under the same run key after a crash (the executor's resume path)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest

from cass_actions_core.actions import ActionContext
from cass_actions_core.executor import StoreKV, StoreHistory

from cass_actions_memory.wiki import PICKS_KEY, create_note


class Crash(Exception):
    """Stands for the process dying mid-action."""


class FakeLLM:
    """Answers ``structured`` calls with the pack's offline builder; can crash on the next call."""

    def __init__(self) -> None:
        self.calls = 0
        self.crash_next = False

    async def structured(self, prompt: str, model: Any, *, offline: Any = None, **_: Any) -> Any:
        self.calls += 1
        if self.crash_next:
            self.crash_next = False
            raise Crash("killed during the LLM call")
        return offline()


def _ctx(runtime: Any, llm: FakeLLM, run_key: str) -> ActionContext:
    return ActionContext(
        action_id="memory.create_wiki_note", pack="memory", params={}, focus=None, motivation=None, unit_id="u1",
        run_key=run_key, daemon_id="test", phase="morning", local_date=runtime.clock.now().date(), clock=runtime.clock,
        llm=llm, workspace=runtime.workspace, data_dir=runtime.workspace / "memory", kv=StoreKV(runtime.store, "memory"),
        history=StoreHistory(runtime.store), settings={}, emit=lambda *_: None, logger=logging.getLogger("test.memory"))


def _notes(runtime: Any) -> list[str]:
    return sorted(p.name for p in (runtime.workspace / "memory" / "notes").glob("*.md"))


def test_a_rerun_after_the_note_was_written_makes_no_call_and_no_second_note(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    assert run_action(runtime, "memory.summarize_idle_conversations").ok
    llm = FakeLLM()
    first = _ctx(runtime, llm, "2026-01-05/morning/u1/0")

    def crash_after_writing(*_: Any) -> Any:
        raise Crash("killed right after writing the note")

    first.add_artifact = crash_after_writing  # type: ignore[method-assign]
    with pytest.raises(Crash):
        asyncio.run(create_note(first))
    written = _notes(runtime)
    assert len(written) == 1 and llm.calls == 1

    again = asyncio.run(create_note(_ctx(runtime, llm, "2026-01-05/morning/u1/0")))
    assert llm.calls == 1, "the resumed run must not call the LLM again"
    assert again.data["written"] is False and again.data["resumed"] is True
    assert again.data["path"] == f"notes/{written[0]}"
    assert _notes(runtime) == written, "no second note on the next topic"

    # Another run (another run key) picks the next topic as usual.
    other = asyncio.run(create_note(_ctx(runtime, llm, "2026-01-05/morning/u2/0")))
    assert other.data["written"] is True and len(_notes(runtime)) == 2


def test_a_rerun_after_a_crash_in_the_call_writes_the_topic_it_picked(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    assert run_action(runtime, "memory.summarize_idle_conversations").ok
    llm = FakeLLM()
    llm.crash_next = True
    with pytest.raises(Crash):
        asyncio.run(create_note(_ctx(runtime, llm, "2026-01-05/morning/u1/0")))
    assert _notes(runtime) == []
    picked = runtime.store.kv_get("memory", PICKS_KEY)["2026-01-05/morning/u1/0"]["topic"]

    # Meanwhile a newer conversation brings a question that would now be the first candidate.
    now = runtime.clock.now()
    mem.write_jsonl(mem.inbox(runtime, "new.jsonl"), [
        mem.message("conv-bread", "user" if i % 2 == 0 else "assistant", text, now + timedelta(minutes=i))
        for i, text in enumerate(["Why does sourdough need a starter?", "It carries the wild yeast.", "How long to feed it?",
                                  "Daily, at room temperature.", "Thanks."])])
    runtime.clock.set(now + timedelta(hours=1))
    assert run_action(runtime, "memory.summarize_idle_conversations").ok

    resumed = asyncio.run(create_note(_ctx(runtime, llm, "2026-01-05/morning/u1/0")))
    assert resumed.data["written"] is True and resumed.data["topic"] == picked
    fresh = asyncio.run(create_note(_ctx(runtime, llm, "2026-01-05/morning/u3/0")))
    assert "sourdough" in fresh.data["topic"].lower()  # a new run does see the new question first
