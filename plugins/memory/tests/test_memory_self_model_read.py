"""The memory pack only reads the self model: a malformed one is reported, not silently ignored."""

from __future__ import annotations

import logging


def test_a_malformed_self_model_is_reported_with_file_line_and_column(memory_runtime, run_action, caplog):
    runtime = memory_runtime()
    model = runtime.workspace / "self" / "model.json"
    model.write_text('{\n  "name": "Cass",\n  "values": [oops]\n}\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        outcome = run_action(runtime, "memory.summarize_idle_conversations")
    assert outcome.ok, outcome.error  # the name falls back to "Cass"; the work goes on
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and str(model) in r.getMessage()]
    assert warnings and "line 3, column 14" in warnings[0], warnings
    assert len(warnings) == 1  # read once per run, not once per conversation
    assert model.read_text("utf-8").startswith('{\n  "name": "Cass"')  # never rewritten


def test_the_daemon_name_comes_from_a_valid_self_model(memory_runtime, run_action, mem):
    runtime = memory_runtime()
    model = runtime.workspace / "self" / "model.json"
    model.write_text('{"name": "Wren"}', encoding="utf-8")
    outcome = run_action(runtime, "memory.summarize_conversation", {"conversation_id": "conv-short"})
    assert outcome.ok, outcome.error
    (tid,) = outcome.result["llm"]["transcript_ids"]
    assert "memory of Wren" in str(runtime.store.get_transcript(tid).data["request"])
