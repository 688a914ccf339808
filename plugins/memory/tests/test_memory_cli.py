"""``cass-actions memory import`` and ``memory list``, run as the real CLI in a subprocess."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_import_then_list_and_importing_again_adds_nothing(tmp_path, mem):
    data = tmp_path / "data"
    source = mem.write_jsonl(tmp_path / "chat.jsonl", [
        mem.message("c-cli", "user" if i % 2 == 0 else "assistant", f"Message {i}.", T0 + timedelta(minutes=i))
        for i in range(4)])
    first = mem.cli("memory", "import", str(source), "--data-dir", str(data), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"{source}: imported 4 new message(s) into {data.resolve() / 'workspace' / 'memory' / 'conversations.sqlite'}." in first.stdout
    second = mem.cli("--data-dir", str(data), "memory", "import", str(source), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "imported 0 new message(s) (4 already known)" in second.stdout
    listed = mem.cli("memory", "list", "--json", "--data-dir", str(data), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["messages"], row["summarised"], row["unsummarised"], row["title"]) == ("c-cli", 4, 0, 4, None)
    table = mem.cli("memory", "list", "--data-dir", str(data), cwd=tmp_path)
    assert table.returncode == 0 and "c-cli" in table.stdout and "never" in table.stdout


def test_a_malformed_file_exits_1_naming_file_and_line_and_imports_the_rest(tmp_path, mem):
    data = tmp_path / "data"
    source = mem.write_jsonl(tmp_path / "broken.jsonl", [
        mem.message("c", "user", "Fine.", T0), "{oops", mem.message("c", "assistant", "Also fine.", T0 + timedelta(minutes=1)),
        {"conversation_id": "c", "role": "user", "content": "late", "at": "yesterday"}])
    result = mem.cli("memory", "import", str(source), "--data-dir", str(data), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith(f"Error: {source}: imported 2 new message(s); skipped 2 malformed line(s)")
    assert f"{source} line 2: not valid JSON" in message
    assert f"{source} line 4: field 'at' is not an ISO 8601 date and time: 'yesterday'" in message
    assert "\n" not in message  # one paragraph
    listed = json.loads(mem.cli("memory", "list", "--json", "--data-dir", str(data), cwd=tmp_path).stdout)
    assert listed[0]["messages"] == 2


def test_usage_errors_exit_2(tmp_path, mem):
    missing_arg = mem.cli("memory", "import", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert missing_arg.returncode == 2 and "Missing argument 'FILE'" in missing_arg.stderr
    no_file = mem.cli("memory", "import", str(tmp_path / "nope.jsonl"), "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert no_file.returncode == 2 and "does not exist" in no_file.stderr
    assert "Traceback" not in missing_arg.stderr + no_file.stderr


def test_the_workspace_from_the_config_file_is_used(tmp_path, mem):
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.toml").write_text('workspace = "elsewhere"\n', encoding="utf-8")
    source = mem.write_jsonl(tmp_path / "one.jsonl", [mem.message("c", "user", "Hi.", T0)])
    result = mem.cli("memory", "import", str(source), "--data-dir", str(data), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (data / "elsewhere" / "memory" / "conversations.sqlite").exists()
    assert not (data / "workspace").exists()
