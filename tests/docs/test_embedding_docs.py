"""The snippets added to docs/embedding.md and docs/plugins.md run as written and say what the code does."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from support import REPO

EMBEDDING = REPO / "docs" / "embedding.md"
PLUGINS = REPO / "docs" / "plugins.md"


def py_blocks(path: Path) -> list[str]:
    """The ```py blocks (the lone ```python block of embedding.md is tests/docs/test_docs_examples.py's)."""
    return re.findall(r"```py\n(.*?)```", path.read_text(), flags=re.S)


def block_with(path: Path, marker: str) -> str:
    (block,) = [b for b in py_blocks(path) if marker in b]
    return block


def run_block(tmp_path: Path, block: str) -> str:
    script = tmp_path / "snippet.py"
    script.write_text(block)
    # No CASS_ACTIONS_* or ANTHROPIC_* variables: the snippet must not depend on the caller's setup.
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_history_snippet_reads_real_summary_rows(tmp_path: Path):
    out = run_block(tmp_path, block_with(EMBEDDING, "runtime.history(")).splitlines()
    assert out[0].startswith("work/2026-11-26/") and out[0].endswith("completed system run-action:core.prune_history")
    assert out[1].startswith("Morning of 2026-11-26: Prune history completed")
    assert out[2] == "True 0.0 None"
    assert out[3].startswith("core.prune_history completed Pruned 0 event(s)")


def test_the_history_table_lists_exactly_the_row_attributes_and_document_keys():
    from dataclasses import fields

    from cass_actions_core.store import SummaryRow

    section = EMBEDDING.read_text().split("## Reading history", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)? \|", section, flags=re.M)
    assert {name for pair in documented for name in pair if name} == {f.name for f in fields(SummaryRow)}
    assert not hasattr(SummaryRow, "narrative") and not hasattr(SummaryRow, "summary")


def test_the_summary_document_keys_in_the_docs_are_the_real_ones(tmp_path: Path):
    import asyncio

    from cass_actions_core.clock import VirtualClock
    from cass_actions_core.config import Config
    from cass_actions_core.runtime import Runtime

    zone = ZoneInfo("UTC")
    runtime = Runtime(Config(timezone="UTC"), data_dir=tmp_path / "d", clock=VirtualClock(zone, datetime(2026, 11, 26, 9, tzinfo=zone)),
                      entry_points=False, provider="offline")
    asyncio.run(runtime.run_action("core.prune_history"))
    (row,) = runtime.history()
    runtime.close()
    section = " ".join(EMBEDDING.read_text().split("`row.data` has the keys", 1)[1].split("```", 1)[0].split())
    before, rest = section.split("`actions` (", 1)
    steps, after = rest.split(" ...)", 1)
    assert set(re.findall(r"`([a-z_]+)`", before + after)) | {"actions"} == set(row.data)
    assert set(re.findall(r"`([a-z_]+)`", steps)) < set(row.data["actions"][0])


def test_the_approvals_snippet_lists_approves_and_rejects(tmp_path: Path):
    out = run_block(tmp_path, block_with(EMBEDDING, "runtime.approvals()")).splitlines()
    assert out[0] == "awaiting_approval awaiting_approval"
    listed = [line.split() for line in out[1:3]]
    assert [parts[1] for parts in listed] == ["demo.publish", "demo.publish"]
    assert all(parts[3] == "2026-11-27T09:00:00+00:00" for parts in listed)  # 24 hours: the default expiry
    assert out[3] == "completed failed"
    assert out[4] == "[] ['approved', 'rejected']"


def test_the_config_snippet_shows_config_ignoring_the_environment(tmp_path: Path):
    out = run_block(tmp_path, block_with(EMBEDDING, "load_config(None, env=env)")).splitlines()
    assert out == ["Europe/London 5.0", "Asia/Tokyo 2.5"]


def test_config_built_in_python_ignores_the_real_environment(monkeypatch):
    from cass_actions_core.config import Config, load_config

    monkeypatch.setenv("CASS_ACTIONS_TIMEZONE", "Asia/Tokyo")
    assert Config(timezone="Europe/London").timezone == "Europe/London"
    assert Config.from_dict({"timezone": "Europe/London"}).timezone == "Europe/London"
    assert load_config().timezone == "Asia/Tokyo"


def test_the_data_dir_is_the_workspace_folder_of_the_pack(tmp_path: Path):
    import asyncio

    from cass_actions_core.clock import VirtualClock
    from cass_actions_core.config import Config
    from cass_actions_core.runtime import Runtime
    from support import HandPack, action_def

    seen: dict[str, Any] = {}

    async def look(ctx: Any) -> dict[str, Any]:
        seen.update(data_dir=ctx.data_dir, workspace=ctx.workspace, exists=ctx.data_dir.is_dir(), kv=ctx.kv.items())
        return {"summary": "looked"}

    pack = HandPack([action_def("shelf.look", category="system", tier=1, uses_llm=False, estimated_cost_usd=0,
                                max_cost_usd=0)], handlers={"shelf.look": look})
    zone = ZoneInfo("UTC")
    runtime = Runtime(Config(timezone="UTC"), data_dir=tmp_path / "d", clock=VirtualClock(zone, datetime(2026, 11, 26, 9, tzinfo=zone)),
                      plugins=[("shelf", pack)], entry_points=False, provider="offline")
    asyncio.run(runtime.run_action("shelf.look"))
    runtime.close()
    assert seen["workspace"] == tmp_path / "d" / "workspace" == runtime.workspace
    assert seen["data_dir"] == tmp_path / "d" / "workspace" / "shelf" and seen["exists"]
    assert "**`<workspace>/<pack>`**" in EMBEDDING.read_text() and "**`<workspace>/<pack>`**" in PLUGINS.read_text()


def test_the_gather_context_snippet_merges_as_documented():
    from cass_actions_core.context import PlanningContext

    (block,) = [b for b in re.findall(r"```python\n(.*?)```", PLUGINS.read_text(), flags=re.S) if "def gather_context" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, "plugins.md", "exec"), namespace)
    context = PlanningContext(now=datetime(2026, 11, 26, tzinfo=ZoneInfo("UTC")), daemon_id="d", workspace=Path("."))
    context._current_pack = "session"
    context.set("open_questions", ["What is rest?"])
    context.set("mood", {"curiosity": 0.2, "calm": 0.5})
    context._current_pack = "mine"
    namespace["gather_context"](context)
    assert context.get("open_questions") == ["What is rest?", "Why do tides turn?"]
    assert context.get("mood") == {"curiosity": 0.7, "calm": 0.5}
    assert context.sources["open_questions"] == "session, mine"


# What docs/plugins.md's "Trying a pack" table says each --param becomes, as typed in a shell.
PARAM_TABLE: dict[str, dict[str, Any]] = {
    "--param max_turns=3": {"max_turns": 3},
    """--param topic='"1984"'""": {"topic": "1984"},
    "--param topic=attention": {"topic": "attention"},
    "--param date=2026-11-26": {"date": "2026-11-26"},
    "--param flag=true": {"flag": True},
    "--param x=null": {"x": None},
    """--param topics='["tides", "memory"]'""": {"topics": ["tides", "memory"]},
    "--param 'topic=two words'": {"topic": "two words"},
}


def test_run_action_params_are_json_as_the_table_says():
    from cass_actions_core.cli.runtime_cmds import _parse_params

    section = PLUGINS.read_text().split("## Trying a pack", 1)[1]
    typed = [command for cell in re.findall(r"^\| (`--param .*?`) \|", section, flags=re.M)
             for command in re.findall(r"`(--param [^`]*)`", cell)]
    assert typed == list(PARAM_TABLE)
    for command, expected in PARAM_TABLE.items():
        argv = shlex.split(command)  # what the shell hands the command
        assert _parse_params(tuple(argv[1:])) == expected, command
    assert _parse_params(("topic=1984",)) == {"topic": 1984}  # without the JSON quotes: an integer
