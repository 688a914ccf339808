"""Inbox lines skipped at import stay visible: ``cass-actions memory problems`` (and a hint in ``memory list``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from cass_actions_memory.store import ConversationStore, LineProblem

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_problems_lists_skipped_inbox_lines_per_file_after_the_action_reported_them(tmp_path, mem):
    data = tmp_path / "data"
    workspace = data / "workspace"
    mem.write_jsonl(workspace / "conversations" / "inbox" / "chat.jsonl", [
        mem.message("c", "user", "Fine.", T0),
        {"conversation_id": "c", "role": "robot", "content": "Beep.", "at": T0.isoformat()},
        "{oops",
        {"conversation_id": "c", "role": "user", "content": "Late.", "at": "2026-01-05T09:03:00"},
    ])
    with ConversationStore.in_folder(workspace / "memory") as store:  # what every memory action does first
        first = store.import_inbox(workspace, now=T0 + timedelta(hours=1))
        assert len(first.problems) == 3
        assert store.import_inbox(workspace, now=T0 + timedelta(hours=2)).problems == []  # reported once by actions

    result = mem.cli("memory", "problems", "--json", "--data-dir", str(data), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)
    assert (record["file"], record["lines"], record["new_messages"], record["exists"]) == \
        ("conversations/inbox/chat.jsonl", 4, 1, True)
    assert [(p["line"], p["field"]) for p in record["problems"]] == [(2, "role"), (3, None), (4, "at")]
    assert record["problems"][2]["message"].startswith("field 'at' has no UTC offset")

    table = mem.cli("memory", "problems", "--data-dir", str(data), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "conversations/inbox/chat.jsonl" in table.stdout and "not valid JSON" in table.stdout
    listed = mem.cli("memory", "list", "--data-dir", str(data), cwd=tmp_path)
    assert "3 inbox line(s) in 1 file(s) were skipped" in listed.stdout and "memory problems" in listed.stdout
    assert isinstance(json.loads(mem.cli("memory", "list", "--json", "--data-dir", str(data), cwd=tmp_path).stdout), list)

    # Fixed and imported again: the problems are gone.
    mem.write_jsonl(workspace / "conversations" / "inbox" / "chat.jsonl", [mem.message("c", "user", "Fine.", T0)])
    with ConversationStore.in_folder(workspace / "memory") as store:
        store.import_inbox(workspace, now=T0 + timedelta(hours=3))
    clean = mem.cli("memory", "problems", "--data-dir", str(data), cwd=tmp_path)
    assert clean.returncode == 0 and "No inbox import problems (1 inbox file(s)" in clean.stdout


def test_problems_with_no_store_creates_nothing(tmp_path, mem):
    result = mem.cli("memory", "problems", "--json", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout) == []
    assert not (tmp_path / "d" / "workspace" / "memory" / "conversations.sqlite").exists()


def test_problems_stored_as_text_by_earlier_versions_are_still_read(tmp_path):
    with ConversationStore.in_folder(tmp_path / "memory") as store:
        store._db.execute(  # a row as the earlier version wrote it
            "INSERT INTO inbox_files (path, sha256, imported_at, lines, new_messages, problems) VALUES (?, ?, ?, ?, ?, ?)",
            ("conversations/inbox/old.jsonl", "x", T0.isoformat(), 3, 1, json.dumps([
                "conversations/inbox/old.jsonl line 2: missing field(s) 'role', 'at'",
                "conversations/inbox/old.jsonl line 3: field 'content' must be a non-empty string"])))
        (record,) = store.inbox_files()
    assert record.problems == [
        LineProblem("conversations/inbox/old.jsonl", 2, "missing field(s) 'role', 'at'", "role, at"),
        LineProblem("conversations/inbox/old.jsonl", 3, "field 'content' must be a non-empty string", "content")]
