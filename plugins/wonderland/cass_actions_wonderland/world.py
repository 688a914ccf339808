"""The Wonderland world: loading the shipped world file and overlaying the daemon's changes.

The world file (``world.json`` in the package, or the file named by the
``[packs.wonderland] world_file`` setting) is validated against ``world.schema.json``
and then cross-checked (exits, the entrance, the reflection room and resident homes
must name existing rooms; object and resident ids must be unique). Any problem raises
:class:`WorldError` naming the file and the JSON path, e.g.
``world.json: $.rooms.threshold.exits.north: leads to unknown room 'nowhere'``.

The shipped file is never modified: rooms, objects and exits the daemon creates are
kept in the store (see :mod:`cass_actions_wonderland.state`) and laid over the loaded
world with :meth:`World.with_changes`.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Protocol

from cass_actions_core import schema_files

#: Directions and their opposites, used to give a created room its way back.
OPPOSITES: dict[str, str] = {
    "north": "south", "south": "north", "east": "west", "west": "east",
    "up": "down", "down": "up", "in": "out", "out": "in",
    "northeast": "southwest", "southwest": "northeast", "northwest": "southeast", "southeast": "northwest",
}

#: The order in which a free direction is picked for a new room when none is given.
FREE_DIRECTION_ORDER = ("north", "east", "south", "west", "up", "down", "northeast", "northwest", "southeast", "southwest")

_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class WorldError(ValueError):
    """A world file that cannot be used; the message names the file and the JSON path."""


class _Readable(Protocol):
    def read_text(self, encoding: str = ...) -> str: ...


@dataclass(frozen=True)
class WorldObject:
    """Something in a room that can be looked at and sensed."""

    id: str
    name: str
    description: str
    sense: str | None = None
    created: bool = False


@dataclass(frozen=True)
class Room:
    """A place in the world: what it looks like, what it feels like, where it leads."""

    id: str
    name: str
    description: str
    exits: dict[str, str]
    objects: tuple[WorldObject, ...] = ()
    sense: str | None = None
    created: bool = False


@dataclass(frozen=True)
class Resident:
    """A resident daemon (non-player character) living in one room."""

    id: str
    name: str
    home: str
    description: str
    greeting: str
    interests: tuple[str, ...] = ()


@dataclass(frozen=True)
class World:
    """The loaded world (optionally with the daemon's changes laid over it)."""

    name: str
    entrance: str
    reflection_room: str
    rooms: dict[str, Room]
    residents: tuple[Resident, ...] = ()
    description: str = ""
    source: str = "world.json"
    created_rooms: frozenset[str] = field(default_factory=frozenset)

    def room(self, room_id: str) -> Room:
        """The room ``room_id``; :class:`KeyError` naming the world file when unknown."""
        try:
            return self.rooms[room_id]
        except KeyError:
            raise KeyError(f"{self.source}: no room {room_id!r}") from None

    def residents_in(self, room_id: str) -> list[Resident]:
        """Residents whose home is ``room_id``, by id."""
        return sorted((r for r in self.residents if r.home == room_id), key=lambda r: r.id)

    def resident(self, resident_id: str) -> Resident | None:
        """The resident with ``resident_id``, or ``None``."""
        return next((r for r in self.residents if r.id == resident_id), None)

    def paths_from(self, start: str) -> dict[str, list[str]]:
        """Shortest paths (lists of room ids, ``start`` first) to every reachable room.

        Breadth-first over exits in direction order, so the paths are deterministic.
        """
        paths: dict[str, list[str]] = {start: [start]}
        queue = deque([start])
        while queue:
            here = queue.popleft()
            room = self.rooms.get(here)
            if room is None:
                continue
            for direction in sorted(room.exits):
                target = room.exits[direction]
                if target not in paths and target in self.rooms:
                    paths[target] = [*paths[here], target]
                    queue.append(target)
        return paths

    def object_ids(self) -> set[str]:
        """Every object id in every room."""
        return {o.id for room in self.rooms.values() for o in room.objects}

    def with_changes(self, changes: Mapping[str, Any]) -> World:
        """A new world with the daemon's stored changes (rooms, objects, exits) laid over this one.

        ``changes`` is the ``world_changes`` value kept in the store. Entries that no
        longer fit (an object for a room that is gone, an exit whose direction the
        world file now uses) are skipped: the world file wins, and the store keeps the
        entry so nothing the daemon made is lost.
        """
        rooms = dict(self.rooms)
        created = set(self.created_rooms)
        for room_id, data in (changes.get("rooms") or {}).items():
            if room_id in rooms or not _ID.match(room_id):
                continue
            rooms[room_id] = Room(
                id=room_id, name=str(data.get("name", room_id)), description=str(data.get("description", "")),
                exits={}, objects=(), sense=data.get("sense") or None, created=True,
            )
            created.add(room_id)
        for exit_ in changes.get("exits") or []:
            origin, direction, target = exit_.get("room"), exit_.get("direction"), exit_.get("to")
            if origin in rooms and target in rooms and isinstance(direction, str) and direction not in rooms[origin].exits:
                room = rooms[origin]
                rooms[origin] = replace(room, exits={**room.exits, direction: target})
        for obj in changes.get("objects") or []:
            room_id = obj.get("room")
            if room_id not in rooms:
                continue
            room = rooms[room_id]
            if any(o.id == obj.get("id") for o in room.objects):
                continue
            item = WorldObject(id=str(obj.get("id")), name=str(obj.get("name", "")), description=str(obj.get("description", "")),
                               sense=obj.get("sense") or None, created=True)
            rooms[room_id] = replace(room, objects=(*room.objects, item))
        return replace(self, rooms=rooms, created_rooms=frozenset(created))


@cache
@cache
def _schema() -> dict[str, Any]:
    return json.loads((files(__package__) / "world.schema.json").read_text("utf-8"))


def shipped_world_source() -> _Readable:
    """The world file shipped inside the package."""
    return files(__package__) / "world.json"


def load_world(source: _Readable | str | Path | None = None) -> World:
    """Read, validate and cross-check a world file; the shipped one when ``source`` is ``None``.

    Raises :class:`WorldError` naming the file (and the JSON path, line and column where
    known) for unreadable files, invalid JSON, schema violations and broken references.
    """
    if source is None:
        source = shipped_world_source()
    elif isinstance(source, str):
        source = Path(source)
    label = str(source)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorldError(f"{label}: cannot read the world file: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorldError(f"{label}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    errors = schema_files.validate_instance(_schema(), doc)  # the core's checker: quick for a valid file
    if errors:
        raise WorldError(f"{label}: invalid world file: " + "; ".join(f"{path}: {message}" for path, message in errors))
    problems = _reference_problems(doc)
    if problems:
        raise WorldError(f"{label}: invalid world file: " + "; ".join(problems))
    rooms = {
        room_id: Room(
            id=room_id, name=data["name"], description=data["description"], exits=dict(data["exits"]),
            objects=tuple(WorldObject(o["id"], o["name"], o["description"], o.get("sense")) for o in data.get("objects", [])),
            sense=data.get("sense"),
        )
        for room_id, data in doc["rooms"].items()
    }
    residents = tuple(
        Resident(r["id"], r["name"], r["home"], r["description"], r["greeting"], tuple(r.get("interests", [])))
        for r in doc.get("residents", [])
    )
    return World(name=doc["name"], entrance=doc["entrance"], reflection_room=doc["reflection_room"], rooms=rooms,
                 residents=residents, description=doc.get("description", ""), source=label)


def _reference_problems(doc: dict[str, Any]) -> list[str]:
    """Cross-references the schema cannot check, each as ``<json path>: <what is wrong>``."""
    rooms = doc["rooms"]
    out: list[str] = []
    for key in ("entrance", "reflection_room"):
        if doc[key] not in rooms:
            out.append(f"$.{key}: names unknown room {doc[key]!r}")
    seen_objects: dict[str, str] = {}
    for room_id, room in rooms.items():
        for direction, target in room["exits"].items():
            if target not in rooms:
                out.append(f"$.rooms.{room_id}.exits.{direction}: leads to unknown room {target!r}")
        for i, obj in enumerate(room.get("objects", [])):
            where = f"$.rooms.{room_id}.objects[{i}].id"
            if obj["id"] in seen_objects:
                out.append(f"{where}: object id {obj['id']!r} is already used at {seen_objects[obj['id']]}")
            else:
                seen_objects[obj["id"]] = where
    seen_residents: dict[str, int] = {}
    for i, resident in enumerate(doc.get("residents", [])):
        if resident["home"] not in rooms:
            out.append(f"$.residents[{i}].home: names unknown room {resident['home']!r}")
        if resident["id"] in seen_residents:
            out.append(f"$.residents[{i}].id: resident id {resident['id']!r} is already used at $.residents[{seen_residents[resident['id']]}]")
        else:
            seen_residents[resident["id"]] = i
    return out


def slug(text: str, limit: int = 40) -> str:
    """An id made from ``text``: lower case, words joined by ``_``, starting with a letter."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    words = [w for w in words if w not in {"a", "an", "the"}] or words
    out = "_".join(words)[:limit].strip("_") or "thing"
    return out if out[0].isalpha() else f"x_{out}"[:limit]
