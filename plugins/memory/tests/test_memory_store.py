"""The conversations store: parsing, idempotent import, malformed lines, schema guard."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from cass_actions_memory.store import ConversationStore, StoreError, last_user_message_at, parse_message_line

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_import_file_skips_malformed_lines_with_file_and_line_and_keeps_the_rest(tmp_path, mem):
    source = mem.write_jsonl(tmp_path / "chat.jsonl", [
        mem.message("c1", "user", "Hello there.", T0),
        "{not json",
        {"conversation_id": "c1", "role": "user", "content": "no time"},
        mem.message("c1", "robot", "Beep.", T0),
        '{"conversation_id": "c1", "role": "user", "content": "naive", "at": "2026-01-05T09:03:00"}',
        "",
        mem.message("c1", "assistant", "Hi! How can I help?", T0 + timedelta(minutes=1)),
    ])
    with source.open("ab") as f:
        f.write(b'{"conversation_id": "c1", "role": "user", "content": "\xff", "at": "2026-01-05T09:05:00Z"}\n')
    with ConversationStore.in_folder(tmp_path / "memory") as store:
        report = store.import_file(source, now=T0, label="chat.jsonl")
        assert report.imported == 2 and report.duplicates == 0
        problems = [str(p) for p in report.problems]
        assert problems[0].startswith("chat.jsonl line 2: not valid JSON")
        assert problems[1] == "chat.jsonl line 3: missing field(s) 'at'"
        assert problems[2] == "chat.jsonl line 4: field 'role' must be 'user' or 'assistant', got 'robot'"
        assert problems[3].startswith("chat.jsonl line 5: field 'at' has no UTC offset")
        assert problems[4].startswith("chat.jsonl line 8: not valid UTF-8")
        assert [m.content for m in store.messages("c1")] == ["Hello there.", "Hi! How can I help?"]
        # Importing the same file again adds nothing.
        again = store.import_file(source, now=T0, label="chat.jsonl")
        assert (again.imported, again.duplicates) == (0, 2)
        assert store.conversation("c1").messages == 2


def test_the_same_instant_written_differently_is_the_same_message(tmp_path, mem):
    a = mem.write_jsonl(tmp_path / "a.jsonl", [{"conversation_id": "c", "role": "user", "content": "Hi", "at": "2026-01-05T09:00:00Z"}])
    b = mem.write_jsonl(tmp_path / "b.jsonl", [{"conversation_id": "c", "role": "user", "content": "Hi", "at": "2026-01-05T10:00:00+01:00"}])
    with ConversationStore.in_folder(tmp_path) as store:
        assert store.import_file(a, now=T0).imported == 1
        assert store.import_file(b, now=T0).duplicates == 1
        (only,) = store.messages("c")
        assert only.at.utcoffset() == timedelta(0) and only.at.tzinfo is not None


def test_inbox_import_skips_unchanged_files_and_picks_up_appended_lines(tmp_path, mem):
    workspace = tmp_path / "ws"
    inbox = workspace / "conversations" / "inbox" / "host.jsonl"
    mem.write_jsonl(inbox, [mem.message("c", "user", f"line {i}", T0 + timedelta(minutes=i)) for i in range(3)])
    with ConversationStore.in_folder(workspace / "memory") as store:
        first = store.import_inbox(workspace, now=T0)
        assert (first.imported, first.files) == (3, ["conversations/inbox/host.jsonl"])
        second = store.import_inbox(workspace, now=T0)
        assert (second.imported, second.unchanged_files) == (0, ["conversations/inbox/host.jsonl"])
        with inbox.open("a") as f:
            f.write('{"broken\n')
        mem.write_jsonl(inbox.with_name("more.jsonl"), [mem.message("c", "user", "line 3", T0 + timedelta(minutes=3))])
        with inbox.open("a") as f:
            f.write('{"conversation_id": "c", "role": "user", "content": "line 4", "at": "2026-01-05T09:04:00Z"}\n')
        third = store.import_inbox(workspace, now=T0)
        assert third.imported == 2 and third.duplicates == 3
        assert [str(p) for p in third.problems] == ["conversations/inbox/host.jsonl line 4: not valid JSON: "
                                                    "Unterminated string starting at (column 2)"]
        assert [m.content for m in store.messages("c")] == [f"line {i}" for i in range(5)]


def test_parse_rejects_bad_fields_with_the_field_named():
    with pytest.raises(ValueError, match="'conversation_id' must be a non-empty string"):
        parse_message_line('{"conversation_id": "", "role": "user", "content": "x", "at": "2026-01-05T09:00:00Z"}')
    with pytest.raises(ValueError, match="'content' must be a non-empty string"):
        parse_message_line('{"conversation_id": "c", "role": "user", "content": "  ", "at": "2026-01-05T09:00:00Z"}')
    with pytest.raises(ValueError, match="expected a JSON object"):
        parse_message_line("[1, 2]")


def test_a_store_from_a_newer_pack_version_is_refused(tmp_path):
    path = tmp_path / "conversations.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99, written by a newer cass-actions-memory"):
        ConversationStore(path)
    with pytest.raises(StoreError, match="schema version 99"):
        last_user_message_at(path)


def test_the_last_user_message_is_read_without_writing_to_the_store(tmp_path, mem):
    source = mem.write_jsonl(tmp_path / "c.jsonl", [mem.message("c", "user", "hi", T0),
                                                    mem.message("c", "assistant", "hello", T0 + timedelta(minutes=1))])
    with ConversationStore.in_folder(tmp_path) as store:
        store.import_file(source, now=T0)
    path = tmp_path / "conversations.sqlite"
    before = path.read_bytes()
    assert last_user_message_at(path) == T0.astimezone(UTC)
    assert path.read_bytes() == before
    with pytest.raises(StoreError, match="missing.sqlite: cannot open"):
        last_user_message_at(tmp_path / "missing.sqlite")  # read-only: never created
    assert not (tmp_path / "missing.sqlite").exists()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="garbage.sqlite: cannot read the conversations store"):
        last_user_message_at(garbage)


def test_a_message_is_never_covered_by_two_summary_passes(tmp_path, mem):
    source = mem.write_jsonl(tmp_path / "c.jsonl", [mem.message("c", "user", f"m{i}", T0 + timedelta(minutes=i)) for i in range(2)])
    with ConversationStore.in_folder(tmp_path) as store:
        store.import_file(source, now=T0)
        messages = store.messages("c", unsummarised=True)
        store.record_summary("c", messages, text="first", key_points=[], open_questions=[], path="summaries/c.md", now=T0)
        with pytest.raises(StoreError, match="summarised by another run meanwhile"):
            store.record_summary("c", messages, text="again", key_points=[], open_questions=[], path="summaries/c.md", now=T0)
        assert [s.text for s in store.summaries(conversation_id="c")] == ["first"]
        assert store.conversation("c").unsummarised == 0
