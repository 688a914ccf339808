"""The shared text helpers (cass_actions_core/text.py)."""

from __future__ import annotations

import pytest

from cass_actions_core.text import clip


@pytest.mark.parametrize("text, limit, clipped", [
    ("short", 10, "short"),
    ("  spaced \n  out  ", 20, "spaced out"),
    ("the daemon sits in the quiet of the morning garden", 30, "the daemon sits in the quiet\u2026"),  # not "of th…"
    ("one two, three", 10, "one two\u2026"),  # no dangling comma before the ellipsis
    ("abcdefghijklmnopqrstuvwxyz", 10, "abcdefghi\u2026"),  # one long word: cut inside it
    ("a bcdefghijklmnopqrstuvwxyz", 10, "a bcdefgh\u2026"),  # the only space is too early to cut at
])
def test_clip_cuts_at_a_word_end_when_it_can_and_never_exceeds_the_limit(text: str, limit: int, clipped: str) -> None:
    assert clip(text, limit) == clipped
    assert len(clip(text, limit)) <= limit
