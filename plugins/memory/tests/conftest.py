"""Shared fixtures of the memory pack's tests (the core's pytest plugin provides cass_runtime, run_action ...).

Helpers are handed out through the ``mem`` fixture rather than imported, because every
pack's tests run in one pytest session with ``--import-mode=importlib`` (conftest
modules are not importable by name there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cass_actions_core.workspace import seed_demo_workspace
from cass_actions_memory.store import ConversationStore


class MemoryHelpers:
    """Small helpers for building inbox files and reading the pack's store and files."""

    @staticmethod
    def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """Run the real ``cass-actions`` CLI in a subprocess with only the memory pack loaded."""
        env = {**os.environ, "CASS_ACTIONS_LOAD_PLUGINS": "memory"}
        env.pop("CASS_ACTIONS_DATA_DIR", None)
        env.pop("CASS_ACTIONS_CONFIG", None)
        return subprocess.run([sys.executable, "-m", "cass_actions_core.cli.main", *args], capture_output=True, text=True,
                              env=env, cwd=cwd, timeout=120, stdin=subprocess.DEVNULL)

    @staticmethod
    def message(conversation_id: str, role: str, content: str, at: datetime) -> dict[str, Any]:
        """One inbox line as a mapping."""
        return {"conversation_id": conversation_id, "role": role, "content": content, "at": at.isoformat()}

    @staticmethod
    def write_jsonl(path: Path, rows: list[Any]) -> Path:
        """Write rows (mappings as JSON, strings verbatim) one per line."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
        return path

    @staticmethod
    def inbox(runtime: Any, name: str) -> Path:
        """The path of inbox file ``name`` in the runtime's workspace."""
        return runtime.workspace / "conversations" / "inbox" / name

    @staticmethod
    def store(runtime: Any) -> ConversationStore:
        """The runtime's conversations store (use as a context manager)."""
        return ConversationStore.in_folder(runtime.workspace / "memory")

    @staticmethod
    def read(runtime: Any, relative: str) -> str:
        """A file of the memory pack's data folder."""
        return (runtime.workspace / "memory" / relative).read_text("utf-8")

    @staticmethod
    def transcript_prompts(runtime: Any, outcome: Any) -> list[str]:
        """The user-side text of every LLM call the run made (from the stored transcripts)."""
        texts = []
        for tid in outcome.result["llm"]["transcript_ids"]:
            record = runtime.store.get_transcript(tid).data
            texts.append("\n".join(str(m["content"]) for m in record["request"]["messages"]))
        return texts


@pytest.fixture
def mem() -> MemoryHelpers:
    """The helpers (see :class:`MemoryHelpers`)."""
    return MemoryHelpers()


@pytest.fixture
def memory_runtime(cass_runtime: Callable[..., Any]) -> Callable[..., Any]:
    """Factory: a runtime with the installed memory pack, the demo workspace seeded (``seed=False``: empty)."""

    def make(*, seed: bool = True, **kwargs: Any) -> Any:
        runtime = cass_runtime(load=["memory"], **kwargs)
        if seed:
            seed_demo_workspace(runtime.workspace, now=runtime.clock.now())
        return runtime

    return make
