"""The memory pack's own small helpers: safe file names and settings.

The shared text helpers (sentences, clipping, keywords, slugs, bullets, front matter and
the offline label) come from :mod:`cass_actions_core.text`, so every pack reads and
writes them the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from cass_actions_core.actions import ActionFailed
from cass_actions_core.text import slugify

#: Minimum length of a significant word for the pack's topic matching (the pack has always used four).
KEYWORD_LENGTH = 4


def safe_file_stem(identifier: str) -> str:
    """A file name stem for an arbitrary id: the id itself when it is already safe, else a slug plus a hash.

    The hash keeps two ids that slugify alike (``a/b`` and ``a b``) from sharing a file.
    """
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", identifier) and ".." not in identifier:
        return identifier
    digest = hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:8]
    return f"{slugify(identifier, 50) or 'item'}-{digest}"


def setting_int(settings: Mapping[str, Any], key: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    """``settings[key]`` as an integer in range (``default`` when absent); :class:`ActionFailed` naming the key otherwise.

    The pack's ``settings.schema.json`` already reports a bad value at startup and in
    ``cass-actions validate``; this is the second line of defence at run time.
    """
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ActionFailed(f"setting [packs.memory] {key} must be a whole number, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ActionFailed(f"setting [packs.memory] {key} must be {bound}, got {value}")
    return value
