"""Pack-specific helpers of the journal pack: settings and offline labels.

The shared text helpers (sentences, clipping, bullets, front matter, the offline label)
come from :mod:`cass_actions_core.text`, so the journal reads the memory pack's files
exactly the way the memory pack writes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cass_actions_core.actions import ActionFailed
from cass_actions_core.text import OFFLINE_LABEL, label_offline, unique


def unlabelled(text: str) -> str:
    """``text`` without the offline label in front (for comparing and re-labelling)."""
    return str(text).strip().removeprefix(OFFLINE_LABEL).strip()


def offline_items(items: Iterable[str], limit: int) -> list[str]:
    """The first ``limit`` distinct items, each carrying the offline label once.

    For lists an offline builder assembles: ``"[offline] X"`` and ``"X"`` are the same
    item (kept once, labelled), never two.
    """
    return [label_offline(i) for i in unique((unlabelled(i) for i in items), limit)]


def setting_int(settings: Mapping[str, Any], key: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    """``settings[key]`` as an integer in range (``default`` when absent); :class:`ActionFailed` naming the key otherwise.

    ``settings.schema.json`` already reports a bad value at startup; this is the second
    line of defence for a run that starts anyway.
    """
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ActionFailed(f"setting [packs.journal] {key} must be a whole number, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ActionFailed(f"setting [packs.journal] {key} must be {bound}, got {value}")
    return value
