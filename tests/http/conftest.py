"""Fixtures of the HTTP tests: a live server over a simulated morning (see cass_http_live.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers module beside this file

from cass_http_live import TOKEN, Live, serve  # noqa: E402


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """A server with a token, over a simulated morning."""
    yield from serve(tmp_path / "data", token=TOKEN)


@pytest.fixture
def open_live(tmp_path: Path) -> Iterator[Live]:
    """A server without a token (loopback only, /api/ open)."""
    yield from serve(tmp_path / "data", token=None)
