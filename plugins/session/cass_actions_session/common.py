"""Small helpers shared by the session pack's handlers: settings, text, files, metadata."""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from cass_actions_core.actions import ActionContext, ActionFailed

#: The pack's name: its ``[packs.session]`` settings table and its workspace folder.
PACK = "session"

#: How a record's heading describes conclusions the pack derived without a model.
DERIVED_LABEL = "derived from the text, no LLM"

_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


# -- metadata ------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def definitions() -> dict[str, dict[str, Any]]:
    """The pack's action definitions from ``actions.json``, by id (one source for durations)."""
    data = json.loads((files(__package__) / "actions.json").read_text(encoding="utf-8"))
    return {a["id"]: a for a in data["actions"]}


def definition(action_id: str) -> dict[str, Any]:
    """The definition of one of this pack's actions (``KeyError`` names the id)."""
    try:
        return definitions()[action_id]
    except KeyError:
        raise KeyError(f"{action_id!r} is not an action of the session pack") from None


# -- settings ------------------------------------------------------------------------------

def setting_number(ctx: ActionContext, key: str, default: float, *, minimum: float | None = None,
                   maximum: float | None = None, integer: bool = False) -> float:
    """A number from ``[packs.session]``, checked; a bad value fails the action naming the key."""
    value = ctx.settings.get(key, default)
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise ActionFailed(f"[packs.{PACK}] {key} must be {kind}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ActionFailed(f"[packs.{PACK}] {key} must be at least {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ActionFailed(f"[packs.{PACK}] {key} must be at most {maximum:g}, got {value!r}")
    return int(value) if integer else float(value)


def setting_int(ctx: ActionContext, key: str, default: int, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
    """An integer from ``[packs.session]`` (see :func:`setting_number`)."""
    return int(setting_number(ctx, key, default, minimum=minimum, maximum=maximum, integer=True))


# -- text ----------------------------------------------------------------------------------
# The generic helpers (clip, sentences, first_sentence, slugify, keywords, the offline
# label) come from ``cass_actions_core.text``; only the pack's own ones live here.

def clip_block(text: str, limit: int) -> str:
    """``text`` (line breaks kept) cut to ``limit`` characters, marking the cut."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + "\n[\u2026 cut]"


def plain(text: str) -> str:
    """``text`` without markdown line markers (``#``, ``>``, bullets), one line per line."""
    return "\n".join(line.strip().lstrip("#>-*\u2022 ").strip() for line in str(text).splitlines())


def normalise(text: str) -> str:
    """A comparison key: lower case, single spaces, no trailing punctuation."""
    return " ".join(text.lower().split()).rstrip(" .!?;:")


def dedupe(items: list[str], *, limit: int | None = None, exclude: set[str] | None = None) -> list[str]:
    """Non-empty, distinct (by :func:`normalise`) items in order, at most ``limit``."""
    seen = set(exclude or ())
    out: list[str] = []
    for item in items:
        item = " ".join(str(item).split())
        key = normalise(item)
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(item)
        if limit is not None and len(out) >= limit:
            break
    return out


def short_hash(text: str, length: int = 6) -> str:
    """A short stable hash of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def date_in_name(path: Path) -> str | None:
    """The ``YYYY-MM-DD`` in a file's path nearest its name, if any (journal entries are named by date, session
    notes sit in a folder per date; a date higher up, in the workspace's own path, is not the file's)."""
    found = _DATE_IN_NAME.findall(path.as_posix())
    return found[-1] if found else None


def unit_short_id(ctx: ActionContext) -> str:
    """Eight characters naming this run: the unit id, else a hash of the run key."""
    return (ctx.unit_id or short_hash(ctx.run_key, 8))[:8].lower()


def relative(ctx: ActionContext, path: Path) -> str:
    """``path`` relative to the workspace when inside it (for readable records)."""
    try:
        return path.resolve().relative_to(ctx.workspace.resolve()).as_posix()
    except ValueError:
        return str(path)


# -- files ---------------------------------------------------------------------------------

def write_json_atomic(path: Path, document: Any) -> None:
    """Write ``document`` as indented, human-readable JSON, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
