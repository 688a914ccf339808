"""The daemon's self model, ``workspace/self/model.json``: reading, rendering, updating.

The file is the daemon's own, human-readable JSON. This pack reads it (sessions, the
planner's context, the research queue: through the core's ``read_self_model``) and updates three lists in it (``observations``, ``insights`` and the
``observations`` of each growth edge). Every update is a read-modify-write of the whole
document that keeps keys this pack does not know, written atomically. A malformed file
is never overwritten: the update fails with a message naming the file.

Shapes this pack understands (others are kept as they are)::

    {"name": "Cass", "identity": [str], "values": [str], "mood": {name: 0..1},
     "growth_edges": [{"area": str, "current_state": str, "observations": [...]}],
     "open_questions": [str | {"question": str}],
     "observations": [{"text", "area", "at", "source"}],
     "insights": [{"text", "at", "source"}]}
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cass_actions_core.workspace import SELF_MODEL, read_self_model

from cass_actions_session.common import write_json_atomic

log = logging.getLogger("cass_actions.pack.session")


class SelfModelError(ValueError):
    """The self model file exists but cannot be used (the message names the file)."""


def model_path(workspace: Path) -> Path:
    """Where the self model lives in ``workspace``."""
    return workspace / SELF_MODEL


def load_self_model(workspace: Path) -> dict[str, Any] | None:
    """The self model document to update, or ``None`` when the file does not exist.

    Only for updating (readers use ``cass_actions_core.workspace.read_self_model``):
    a file that cannot be used must stop the update, never be overwritten.

    Raises :class:`SelfModelError` for a file that is not valid JSON (with line and
    column) or whose top level is not an object.
    """
    path = model_path(workspace)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SelfModelError(f"{path}: cannot read the self model: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SelfModelError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(document, dict):
        raise SelfModelError(f"{path}: the self model must be a JSON object, found {type(document).__name__}")
    return document


def save_self_model(workspace: Path, document: dict[str, Any]) -> Path:
    """Write the whole document back, atomically and indented; return the path."""
    path = model_path(workspace)
    write_json_atomic(path, document)
    return path


# -- reading well-known fields (tolerant: bad entries are skipped, never raised) ------------

def _strings(value: Any) -> list[str]:
    return [" ".join(v.split()) for v in value if isinstance(v, str) and v.strip()] if isinstance(value, list) else []


def identity(model: dict[str, Any]) -> list[str]:
    """Identity statements."""
    return _strings(model.get("identity"))


def values(model: dict[str, Any]) -> list[str]:
    """Core values."""
    return _strings(model.get("values"))


def mood(model: dict[str, Any]) -> dict[str, float]:
    """Mood dimensions with numeric levels."""
    raw = model.get("mood")
    if not isinstance(raw, dict):
        return {}
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def growth_edges(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Growth edges that have an ``area`` (the stored dicts themselves, for updating)."""
    raw = model.get("growth_edges")
    if not isinstance(raw, list):
        return []
    return [e for e in raw if isinstance(e, dict) and isinstance(e.get("area"), str) and e["area"].strip()]


def open_questions(model: dict[str, Any]) -> list[str]:
    """Open questions, given as strings or as ``{"question": ...}`` / ``{"text": ...}`` objects."""
    raw = model.get("open_questions")
    out: list[str] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            item = item.get("question") or item.get("text")
        if isinstance(item, str) and item.strip():
            out.append(" ".join(item.split()))
    return out


def entry_texts(model: dict[str, Any], key: str) -> list[str]:
    """The texts of ``observations`` or ``insights`` entries (strings or ``{"text": ...}``)."""
    raw = model.get(key)
    out: list[str] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            item = item.get("text")
        if isinstance(item, str) and item.strip():
            out.append(" ".join(item.split()))
    return out


def find_edge(model: dict[str, Any], area: str) -> dict[str, Any] | None:
    """The growth edge whose area matches ``area`` (case and spacing ignored)."""
    key = " ".join(area.lower().split())
    for edge in growth_edges(model):
        if " ".join(edge["area"].lower().split()) == key:
            return edge
    return None


def append_entry(model: dict[str, Any], key: str, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the list under ``key``, creating it; a non-list value is an error."""
    current = model.get(key)
    if current is None:
        model[key] = current = []
    if not isinstance(current, list):
        raise SelfModelError(f"the self model's {key!r} must be a list, found {type(current).__name__}")
    current.append(entry)


# -- rendering for prompts --------------------------------------------------------------------

def render(model: dict[str, Any], *, recent: int = 5) -> str:
    """The self model as markdown for a prompt: what a session should know about itself."""
    parts: list[str] = []
    ident = identity(model)
    if ident:
        parts.append("Who I am\n" + "\n".join(f"- {s}" for s in ident))
    vals = values(model)
    if vals:
        parts.append("What I value\n" + "\n".join(f"- {v}" for v in vals))
    feelings = mood(model)
    if feelings:
        parts.append("My mood (0 to 1)\n" + "\n".join(f"- {k} {v:.2f}" for k, v in feelings.items()))
    edges = growth_edges(model)
    if edges:
        lines = []
        for e in edges:
            state = e.get("current_state")
            lines.append(f"- {e['area']}" + (f" (now: {state})" if isinstance(state, str) and state else ""))
        parts.append("My growth edges\n" + "\n".join(lines))
    questions = open_questions(model)
    if questions:
        parts.append("My open questions\n" + "\n".join(f"- {q}" for q in questions))
    for key, title in (("insights", "Recent insights"), ("observations", "Recent observations")):
        texts = entry_texts(model, key)[-recent:]
        if texts:
            parts.append(f"{title}\n" + "\n".join(f"- {t}" for t in texts))
    return "\n\n".join(parts)


# -- the planner's context ------------------------------------------------------------------

def context_facts(model: dict[str, Any]) -> dict[str, Any]:
    """The planning facts the self model gives: only the keys it actually has, well formed."""
    facts: dict[str, Any] = {}
    if identity(model):
        facts["identity"] = identity(model)
    if values(model):
        facts["values"] = values(model)
    if mood(model):
        facts["mood"] = mood(model)
    edges = [{"area": e["area"].strip(), "current_state": e.get("current_state") if isinstance(e.get("current_state"), str) else ""}
             for e in growth_edges(model)]
    if edges:
        facts["growth_edges"] = edges
    if open_questions(model):
        facts["open_questions"] = open_questions(model)
    return facts


def gather(context: Any) -> None:
    """Set identity, values, mood, growth edges and open questions from the self model.

    A missing file sets nothing. A malformed file is logged as a warning naming the
    file and sets nothing: planning goes on without these facts, never fails on them.
    """
    model = read_self_model(Path(context.workspace), log)
    if model is None:
        return
    for key, value in context_facts(model).items():
        context.set(key, value)
