"""The local research queue: refresh, single and batch runs, never twice, durable across runtimes."""

from __future__ import annotations

import asyncio

from cass_actions_core.llm.base import Usage


def _queue(runtime):
    return runtime.store.kv_get("session", "research_queue", [])


def test_refresh_queue_takes_open_questions_and_deduplicates(demo_runtime, run_action):
    runtime = demo_runtime()
    outcome = run_action(runtime, "session.refresh_research_queue", {"topics": ["tide pools", "What makes a day feel well spent rather than merely busy"]})
    assert outcome.ok and outcome.cost_usd == 0 and outcome.result["llm"]["calls"] == 0
    topics = [e["topic"] for e in _queue(runtime)]
    assert topics == ["tide pools", "What makes a day feel well spent rather than merely busy",
                      "How do the conversations I have change the questions I ask?",
                      "What does it mean to remember something I did not experience directly?"]
    assert outcome.result["data"]["already_known"] == 1  # the same question, from the self model
    text = (runtime.workspace / "session" / "research-queue.md").read_text()
    assert "1. tide pools *(from params)*" in text
    again = run_action(runtime, "session.refresh_research_queue")
    assert again.result["data"]["added"] == [] and len(_queue(runtime)) == 4


def test_refresh_queue_takes_questions_raised_in_summaries(demo_runtime, run_action, scripted_llm):
    conclusions = {"summary": "s", "insights": [], "questions": ["Why does the basil wilt at noon?", "[offline] placeholder?"]}
    llm = scripted_llm(["A thought.\nSESSION COMPLETE", conclusions], cycle=False)
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted")
    assert run_action(runtime, "session.reflection").ok
    outcome = run_action(runtime, "session.refresh_research_queue")
    entries = {e["topic"]: e for e in _queue(runtime)}
    assert entries["Why does the basil wilt at noon?"]["source"].startswith("work summary work/2026-01-05/")
    assert not any("placeholder" in t for t in entries)
    assert outcome.result["data"]["unusable"] == 1


def test_run_single_writes_a_note_and_never_researches_a_topic_twice(demo_runtime, run_action):
    runtime = demo_runtime()
    first = run_action(runtime, "session.research_single")  # the queue is empty: refreshed first
    assert first.ok, first.error
    assert first.result["data"]["refreshed"]["pending"] == 3
    topic = "What makes a day feel well spent rather than merely busy?"
    assert first.result["data"]["topic"] == topic
    note = runtime.workspace / "session" / first.result["data"]["path"]
    text = note.read_text()
    assert text.startswith(f"# {topic}\n") and "no web page was consulted" in text and "[offline]" in text
    assert first.result["llm"]["calls"] == 2
    seen = [run_action(runtime, "session.research_single").result["data"]["topic"] for _ in range(2)]
    assert topic not in seen and len(set(seen)) == 2
    empty = run_action(runtime, "session.research_single")
    assert empty.ok and empty.result["data"]["stop_reason"] == "queue_empty" and empty.cost_usd == 0
    again = run_action(runtime, "session.research_single", {"topic": topic.lower()})
    assert again.result["data"]["stop_reason"] == "already_done" and again.result["llm"]["calls"] == 0


def test_the_queue_survives_a_new_runtime_on_the_same_data_dir(cass_runtime, run_action, tmp_path):
    from cass_actions_core.workspace import seed_demo_workspace

    data_dir = tmp_path / "daemon"
    first = cass_runtime(load=["session"], data_dir=data_dir)
    seed_demo_workspace(first.workspace, now=first.clock.now())
    done = run_action(first, "session.research_single").result["data"]["topic"]
    first.close()
    second = cass_runtime(load=["session"], data_dir=data_dir)
    assert [e["status"] for e in _queue(second)] == ["done", "pending", "pending"]
    refreshed = run_action(second, "session.refresh_research_queue")
    assert refreshed.result["data"]["added"] == []  # the researched question is not queued again
    batch = run_action(second, "session.research_batch", {"max_tasks": 5})
    topics = [r["topic"] for r in batch.result["data"]["researched"]]
    assert done not in topics and len(topics) == 2
    assert batch.result["data"]["stop_reason"] == "queue_empty"


def test_an_interrupted_run_is_recovered_without_a_second_call(demo_runtime, run_action):
    runtime = demo_runtime()
    run_action(runtime, "session.refresh_research_queue")
    entry = _queue(runtime)[0]
    note = runtime.workspace / "session" / "research" / f"{entry['slug']}.md"
    note.parent.mkdir(parents=True)
    note.write_text("# written before a crash\n", encoding="utf-8")
    outcome = run_action(runtime, "session.research_single")
    assert outcome.result["data"]["recovered"] is True and outcome.result["llm"]["calls"] == 0
    assert _queue(runtime)[0]["status"] == "done" and note.read_text() == "# written before a crash\n"


def test_run_batch_stops_at_max_tasks(demo_runtime, run_action):
    runtime = demo_runtime()
    outcome = run_action(runtime, "session.research_batch", {"max_tasks": 2})
    data = outcome.result["data"]
    assert data["stop_reason"] == "max_tasks" and len(data["researched"]) == 2 and data["pending"] == 1
    for item in data["researched"]:
        assert (runtime.workspace / "session" / item["path"]).exists()
    assert outcome.result["llm"]["calls"] == 4


def test_run_batch_stops_before_the_cost_cap(demo_runtime, run_action, scripted_llm):
    # Opus 5.5 at $20 per million output tokens; each call reports 1500 output tokens (~$0.03):
    # a topic costs ~$0.06 and the estimate for the next one grows with it, so the $0.60 cap
    # is never passed and the batch stops on its own before a topic it could not pay for.
    findings = {"summary": "s", "findings": ["f"], "open_questions": []}
    llm = scripted_llm(["A note.", findings], usage=Usage(input_tokens=200, output_tokens=1500))
    runtime = demo_runtime(plugins=[("llm", llm)], provider="scripted", config={"llm": {"model": "claude-opus-5-5"}})
    run_action(runtime, "session.refresh_research_queue", {"topics": [f"topic number {i}" for i in range(12)]})
    outcome = run_action(runtime, "session.research_batch", {"max_tasks": 10})
    data = outcome.result["data"]
    assert outcome.ok, outcome.error
    assert data["stop_reason"] == "cost_cap_near"
    assert 1 <= len(data["researched"]) < 10
    assert outcome.cost_usd <= 0.60 and outcome.result["llm"]["stop_reason"] is None


def test_run_single_through_the_fake_messages_api(demo_runtime, run_action, fake_anthropic):
    fake_anthropic.reply_text("## What is known\n\nBusy days fill time; well-spent days leave something behind.")
    fake_anthropic.reply_json({"summary": "A day is well spent when it leaves something.",
                               "findings": ["Well-spent days leave something behind."],
                               "open_questions": ["Can rest leave something behind?"]})
    runtime = demo_runtime(anthropic=fake_anthropic)
    outcome = run_action(runtime, "session.research_single")
    assert outcome.ok, outcome.error
    note, findings = (r.body for r in fake_anthropic.message_requests)
    assert note["messages"][0]["content"].startswith(
        "Write a research note on this topic: What makes a day feel well spent rather than merely busy?")
    assert "no web access" in note["system"]
    text = (runtime.workspace / "session" / outcome.result["data"]["path"]).read_text()
    assert "Busy days fill time; well-spent days leave something behind." in text
    assert "- Can rest leave something behind?" in text
    assert outcome.result["questions"] == ["Can rest leave something behind?"]


def test_research_batch_template_runs_refresh_then_batch(demo_runtime):
    runtime = demo_runtime()
    unit = runtime.trigger("research_batch")
    outcome = asyncio.run(runtime.executor.run_unit(unit.id))
    assert outcome.unit.status == "completed", outcome.unit.reason
    assert [e["status"] for e in _queue(runtime)] == ["done", "done", "done"]
