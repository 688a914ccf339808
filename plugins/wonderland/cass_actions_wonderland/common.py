"""Helpers shared by the wonderland handlers: settings, the world, the presence, prompts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cass_actions_core.actions import ActionContext, ActionFailed
from cass_actions_core.text import OFFLINE_LABEL, clip, is_offline, label_offline
from cass_actions_core.workspace import read_self_model

from cass_actions_wonderland.state import WonderlandState, experience_id
from cass_actions_wonderland.world import Room, World, WorldError, load_world

if TYPE_CHECKING:
    from cass_actions_core.llm.base import LLMResponse

#: The ``[packs.wonderland]`` settings, their types and defaults. ``settings.schema.json``
#: declares the same keys (checked when the catalogue is built); :func:`setting` checks
#: again at run time, as a second line of defence.
SETTINGS: dict[str, tuple[type, Any]] = {
    "world_file": (str, None),
    "journal_narrative": (bool, True),
    "prompt_experiences": (int, 12),
    "max_tokens": (int, 600),
}

#: Inclusive bounds of the integer settings (the same as in ``settings.schema.json``).
BOUNDS: dict[str, tuple[int, int]] = {"prompt_experiences": (1, 50), "max_tokens": (1, 4096)}

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
    if kind is int:
        low, high = BOUNDS[key]
        if not low <= value <= high:
            raise ActionFailed(f"[packs.wonderland] {key} must be between {low} and {high}, not {value}")
    if kind is str and not value.strip():
        raise ActionFailed(f"[packs.wonderland] {key} must not be empty")
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
    """The daemon's name from the workspace's self model, else its id (capitalised).

    A malformed self model is reported (file, line, column) and the id is used instead.
    """
    model = read_self_model(ctx.workspace, ctx.logger)
    if model is not None and isinstance(model.get("name"), str) and model["name"].strip():
        return model["name"].strip()
    return ctx.daemon_id[:1].upper() + ctx.daemon_id[1:]


def system_prompt(ctx: ActionContext, world: World) -> str:
    """The system prompt every wonderland LLM call shares."""
    return (f"You are {daemon_name(ctx)}, an AI daemon spending a little time in {world.name}, a quiet text world. "
            "Write in the first person, briefly and concretely, and do not invent events that are not in the notes.")


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
                   details: dict[str, Any] | None = None, index: int = 0, source: str | None = None) -> dict[str, Any]:
    """An experience record for the buffer, keyed by this run (so a re-run replaces it).

    ``source`` is ``"llm"`` or ``"offline"`` for experiences written by an LLM call (an
    offline one's title and text carry the offline label); absent otherwise.
    """
    record = {
        "id": experience_id(kind, ctx.run_key, index), "run_key": ctx.run_key, "kind": kind,
        "at": ctx.now().isoformat(), "phase": ctx.phase, "room": room.id, "room_name": room.name,
        "title": title, "text": text, "details": details or {},
    }
    if source is not None:
        record["source"] = source
    return record


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


def offline_reply(reply: LLMResponse | None) -> bool:
    """Whether ``reply`` came from the offline provider (not a model's words)."""
    return reply is not None and (reply.provider == "offline" or is_offline(reply.text))


def unlabelled(text: str) -> str:
    """``text`` without a leading offline label (to build a labelled whole from labelled parts)."""
    text = str(text).strip()
    return text[len(OFFLINE_LABEL):].strip() if is_offline(text) else text


def labelled_if(offline: bool, text: str) -> str:
    """``text`` with the offline label when ``offline``, else unchanged."""
    return label_offline(text) if offline else text


__all__ = [
    "BOUNDS", "KIND_TITLES", "SETTINGS", "context_lines", "daemon_name", "describe_room", "ensure_presence",
    "experience_lines", "join_names", "labelled_if", "new_experience", "offline_reply", "sense_room",
    "setting", "system_prompt", "unlabelled", "world_for",
]
