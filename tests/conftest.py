"""Shared fixtures for the core tests (helpers live in ``support.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def validation_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One validation cache folder for the test session (never the user's own)."""
    return tmp_path_factory.mktemp("validation-cache")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, validation_cache: Path) -> Path:
    """No ambient cass-actions or Anthropic settings; a throwaway data dir."""
    for var in list(os.environ):
        if var.startswith("CASS_ACTIONS_") or var.startswith("ANTHROPIC_"):
            monkeypatch.delenv(var, raising=False)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("CASS_ACTIONS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CASS_ACTIONS_CACHE_DIR", str(validation_cache))
    return data_dir


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An empty folder to put fake installed distributions in (see ``support.make_dist``)."""
    path = tmp_path / "site"
    path.mkdir()
    return path
