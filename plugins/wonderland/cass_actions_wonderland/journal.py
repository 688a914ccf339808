"""Markdown for the Wonderland journal (``journal/<local date>.md``) and the creations page.

Each flush appends one section that starts with a marker comment naming the run that
wrote it (``<!-- wonderland-flush <run key> -->``), so a re-run of the same flush after
a crash can see its section is already there and never writes it twice.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from cass_actions_wonderland.common import KIND_TITLES


def marker(run_key: str) -> str:
    """The comment that identifies the section written by ``run_key``."""
    return f"<!-- wonderland-flush {run_key} -->"


def header(day: date, world_name: str, daemon: str) -> str:
    """The first lines of a new journal file."""
    return f"# {world_name} journal \u2014 {day.isoformat()}\n\n{daemon}'s experiences in {world_name}, as they were flushed from the buffer.\n"


def _time(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).strftime("%H:%M")
    except ValueError:
        return "??:??"


def _stamp(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "at an unknown time"


def section(run_key: str, now: datetime, phase: str | None, experiences: list[dict[str, Any]],
            narrative: str | None, narrative_note: str | None) -> str:
    """One flush: a heading, the marker, the narrative (if any) and every experience."""
    count = len(experiences)
    heading = f"## {now:%H:%M}" + (f" \u00b7 {phase}" if phase else "") + f" \u00b7 {count} experience{'s' if count != 1 else ''}"
    parts = ["", heading, marker(run_key), ""]
    if narrative:
        parts += [narrative.strip(), ""]
    elif narrative_note:
        parts += [f"*{narrative_note}*", ""]
    for exp in experiences:
        kind = KIND_TITLES.get(str(exp.get("kind")), str(exp.get("kind", "")).title())
        parts.append(f"### {_time(exp.get('at'))} \u00b7 {kind} \u00b7 {exp.get('room_name', exp.get('room', ''))}")
        parts.append("")
        parts.append(f"**{exp.get('title', '')}**")
        parts.append("")
        parts.append(str(exp.get("text", "")).strip())
        parts.append("")
    return "\n".join(parts)


def creations_page(world_name: str, changes: dict[str, Any]) -> str:
    """A readable list of everything the daemon added to the world (rewritten whole each time)."""
    lines = [f"# What I made in {world_name}", "",
             "Rooms and objects created by wonderland.create. They live in the store as changes laid over "
             "the shipped world, which is never modified.", ""]
    rooms = changes.get("rooms", {})
    objects = changes.get("objects", [])
    if rooms:
        lines += ["## Rooms", ""]
        for room_id, room in sorted(rooms.items(), key=lambda kv: kv[1].get("created_at", "")):
            lines.append(f"- **{room.get('name')}** (`{room_id}`, reached by going {room.get('direction')} from "
                         f"`{room.get('from_room')}`; created {_stamp(room.get('created_at'))}): {room.get('description')}")
        lines.append("")
    if objects:
        lines += ["## Objects", ""]
        for obj in sorted(objects, key=lambda o: o.get("created_at", "")):
            sense = f" *Sense:* {obj['sense']}" if obj.get("sense") else ""
            lines.append(f"- **{obj.get('name')}** (`{obj.get('id')}`, in `{obj.get('room')}`; created "
                         f"{_stamp(obj.get('created_at'))}): {obj.get('description')}{sense}")
        lines.append("")
    if not rooms and not objects:
        lines += ["Nothing yet.", ""]
    return "\n".join(lines)
