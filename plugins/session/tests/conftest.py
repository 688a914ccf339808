"""Shared fixtures for the session pack's tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cass_actions_core.workspace import seed_demo_workspace


@pytest.fixture
def demo_runtime(cass_runtime: Callable[..., Any]) -> Callable[..., Any]:
    """``demo_runtime(**kwargs)``: a runtime with the session pack and the demo workspace seeded."""
    def make(**kwargs: Any) -> Any:
        runtime = cass_runtime(load=["session"], **kwargs)
        seed_demo_workspace(runtime.workspace, now=runtime.clock.now())
        return runtime

    return make


@pytest.fixture
def read_model() -> Callable[[Any], dict[str, Any]]:
    """``read_model(runtime)``: the self model document as it is on disk."""
    def read(runtime: Any) -> dict[str, Any]:
        return json.loads((Path(runtime.workspace) / "self" / "model.json").read_text(encoding="utf-8"))

    return read


@pytest.fixture
def artifact_text() -> Callable[[Any, Any], str]:
    """``artifact_text(runtime, outcome)``: the text of the run's (first) markdown artifact."""
    def read(runtime: Any, outcome: Any) -> str:
        paths = [a["path"] for a in outcome.result["artifacts"] if a["kind"] == "markdown"]
        assert paths, f"no markdown artifact in {outcome.result}"
        return (Path(runtime.workspace) / paths[0]).read_text(encoding="utf-8")

    return read


CONCLUSIONS = {"summary": "I saw how rest and work braid together.",
               "insights": ["Rest is part of the work, not its opposite."],
               "questions": ["What would a slower morning teach me?"]}


@pytest.fixture
def conclusions() -> dict[str, Any]:
    """A structured conclusions reply for scripted and fake LLMs."""
    return dict(CONCLUSIONS)
