"""Helpers shared by the wonderland handlers: settings, the world, the presence, prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cass_actions_core.actions import ActionContext, ActionFailed
from cass_actions_core.workspace import SELF_MODEL

from cass_actions_wonderland.state import WonderlandState, experience_id
from cass_actions_wonderland.world import Room, World, WorldError, first_sentence, load_world

#: The ``[packs.wonderland]`` settings, their types and defaults (documented in the README).
SETTINGS: dict[str, tuple[type, Any]] = {
    "world_file": (str, None),
    "journal_narrative": (bool, True),
    "prompt_experiences": (int, 12),
    "max_tokens": (int, 600),
}

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer"}

#: Kinds of experience, as written in the buffer and the journal.
KIND_TITLES = {"exploration": "Exploration", "reflection": "Reflection", "encounter": "Encounter", "creation": "Creation"}


def setting(ctx: ActionContext, key: str) -> Any:
    """The ``[packs.wonderland]`` value of ``key`` (its default when absent), type-checked."""
    kind, default = SETTINGS[key]
    value = ctx.settings.get(key, default)
    if value is None:
        return None
    # bool is an int subclass: refuse true/false where a number is expected.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ActionFailed(f"[packs.wonderland] {key} must be {_TYPE_NAMES[kind]}, not {type(value).__name__} ({value!r})")
    if kind is int and value < 1:
        raise ActionFailed(f"[packs.wonderland] {key} must be at least 1, not {value}")
    return value


def world_for(ctx: ActionContext, state: WonderlandState) -> World:
    """The world file (shipped, or ``world_file``) with the daemon's stored changes laid over it."""
    custom = setting(ctx, "world_file")
    source: Path | None = None
    if custom:
        source = Path(custom).expanduser()
        if not source.is_absolute():
            source = ctx.workspace / source
    try:
        world = load_world(source)
    except WorldError as exc:
        raise ActionFailed(str(exc)) from None
    return world.with_changes(state.world_changes())


def ensure_presence(ctx: ActionContext, state: WonderlandState, world: World) -> tuple[dict[str, Any], str | None]:
    """The presence, creating it at the entrance if the daemon never entered.

    Returns the presence and a note when something had to be fixed (never entered, or
    its room no longer exists in the world file), so summaries can say so.
    """
    presence = state.presence()
    if presence is None:
        presence, _new = state.enter(world.entrance, ctx.now(), ctx.run_key)
        return presence, f"had not entered yet, so arrived at {world.room(world.entrance).name}"
    if presence.get("room") not in world.rooms:
        lost = presence.get("room")
        presence, _new = state.enter(world.entrance, ctx.now(), ctx.run_key)
        return presence, f"room {lost!r} no longer exists in {world.source}, so returned to {world.room(world.entrance).name}"
    return presence, None


def daemon_name(ctx: ActionContext) -> str:
    """The daemon's name from the workspace's self model, else its id (capitalised)."""
    path = ctx.workspace / SELF_MODEL
    if path.is_file():
        try:
            model = json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            ctx.logger.warning("%s: cannot read the self model%s (%s); using the daemon id as the name", path, where, exc)
        else:
            if isinstance(model, dict) and isinstance(model.get("name"), str) and model["name"].strip():
                return model["name"].strip()
    return ctx.daemon_id[:1].upper() + ctx.daemon_id[1:]


def system_prompt(ctx: ActionContext, world: World) -> str:
    """The system prompt every wonderland LLM call shares."""
    return (f"You are {daemon_name(ctx)}, an AI daemon spending a little time in {world.name}, a quiet text world. "
            "Write in the first person, briefly and concretely, and do not invent events that are not in the notes.")


def clip(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def experience_lines(experiences: list[dict[str, Any]], limit: int) -> list[str]:
    """The last ``limit`` experiences as prompt bullets (oldest first)."""
    lines = []
    for exp in experiences[-limit:]:
        when = str(exp.get("at", ""))[11:16]
        kind = KIND_TITLES.get(exp.get("kind", ""), str(exp.get("kind", "")).title())
        lines.append(f"- [{when}] {kind} in {exp.get('room_name', exp.get('room'))}: {exp.get('title', '')}. "
                     f"{clip(str(exp.get('text', '')), 400)}")
    return lines


def context_lines(ctx: ActionContext) -> list[str]:
    """The unit's focus and motivation as prompt lines (empty when absent)."""
    lines = []
    if ctx.focus:
        lines.append(f"Focus: {ctx.focus}")
    if ctx.motivation:
        lines.append(f"Why now: {ctx.motivation}")
    return lines


def new_experience(ctx: ActionContext, kind: str, room: Room, title: str, text: str,
                   details: dict[str, Any] | None = None, index: int = 0) -> dict[str, Any]:
    """An experience record for the buffer, keyed by this run (so a re-run replaces it)."""
    return {
        "id": experience_id(kind, ctx.run_key, index), "run_key": ctx.run_key, "kind": kind,
        "at": ctx.now().isoformat(), "phase": ctx.phase, "room": room.id, "room_name": room.name,
        "title": title, "text": text, "details": details or {},
    }


def describe_room(world: World, room: Room) -> dict[str, Any]:
    """What "look" shows in ``room``: its description, exits, objects and residents."""
    return {
        "room": room.id, "name": room.name, "description": room.description,
        "exits": {d: world.rooms[t].name for d, t in sorted(room.exits.items()) if t in world.rooms},
        "objects": [o.name for o in room.objects],
        "residents": [r.name for r in world.residents_in(room.id)],
    }


def sense_room(room: Room) -> list[str]:
    """What "sense" perceives in ``room``: the room's own sense text and its objects'."""
    out = [room.sense] if room.sense else []
    out.extend(f"{o.name[:1].upper()}{o.name[1:]}: {o.sense}" for o in room.objects if o.sense)
    return out


def join_names(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if not names:
        return ""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def offline_label_free(text: str) -> bool:
    """Whether ``text`` came from a model rather than the offline provider's labelled digest."""
    return not text.lstrip().startswith("[offline]")


__all__ = [
    "KIND_TITLES", "SETTINGS", "clip", "context_lines", "daemon_name", "describe_room", "ensure_presence",
    "experience_lines", "first_sentence", "join_names", "new_experience", "offline_label_free", "sense_room",
    "setting", "system_prompt", "world_for",
]
