"""The daemon's life in Wonderland as kept in the pack's key-value area (``ctx.kv``).

Keys (JSON values, persisted in SQLite by the core):

- ``presence``: where the daemon is — ``room``, ``entered_at`` (when the current stay
  in the world began), ``arrived_at`` (when it reached the current room), ``visits``
  (room id -> times arrived), ``moves``, ``stays`` (how often it entered) and
  ``last_run_key`` (the run that last changed it, so a re-run after a crash does not
  move or count twice);
- ``experiences``: the buffer of experiences not yet journaled, oldest first; each
  ``{"id", "run_key", "kind", "at", "room", "room_name", "title", "text", "details"}``
  where ``kind`` is ``exploration``, ``reflection``, ``encounter`` or ``creation``;
  an experience is keyed by its run, so recording it again replaces it;
- ``world_changes``: what the daemon created — ``rooms`` (id -> room), ``objects``
  and ``exits`` (lists), each entry carrying the ``run_key`` that made it; laid over
  the shipped world, which is never modified;
- ``journaled``: the last experiences that were flushed to the journal (newest last,
  at most :data:`KEEP_JOURNALED`), so a reflection later in the day still has the day's
  explorations to think about after they left the buffer;
- ``reflected``: ids of experiences already reflected on (at most :data:`KEEP_REFLECTED`),
  so no experience is reflected on twice;
- ``acquaintances``: resident id -> ``{"name", "meetings", "first_met", "last_met"}``;
- ``journal_flushes``: run key -> ``{"ids", "path", "at", "written"}``, written before
  the journal file, so a flush re-run after a crash neither duplicates its section nor
  loses the experiences it was writing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from cass_actions_core.actions import KeyValue

PRESENCE = "presence"
EXPERIENCES = "experiences"
WORLD_CHANGES = "world_changes"
ACQUAINTANCES = "acquaintances"
JOURNAL_FLUSHES = "journal_flushes"
JOURNALED = "journaled"
REFLECTED = "reflected"

#: How many finished journal flushes are remembered (for re-runs of recent runs).
KEEP_FLUSHES = 200
#: How many journaled experiences are kept for later reflection.
KEEP_JOURNALED = 50
#: How many reflected-on experience ids are remembered.
KEEP_REFLECTED = 500


def experience_id(kind: str, run_key: str, index: int = 0) -> str:
    """A stable id for the ``index``-th experience of ``kind`` recorded by the run ``run_key``."""
    digest = hashlib.sha256(run_key.encode("utf-8")).hexdigest()[:12]
    return f"{kind}-{digest}-{index}"


class WonderlandState:
    """Typed access to the pack's key-value area (see the module docstring for the keys)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    # -- presence --------------------------------------------------------------------
    def presence(self) -> dict[str, Any] | None:
        """The stored presence, or ``None`` if the daemon never entered."""
        value = self.kv.get(PRESENCE)
        return dict(value) if isinstance(value, dict) else None

    def enter(self, room: str, now: datetime, run_key: str) -> tuple[dict[str, Any], bool]:
        """Create the presence in ``room`` or resume it where it is; return it and whether it is new.

        A re-run with the same ``run_key`` changes nothing.
        """
        presence = self.presence()
        at = now.isoformat()
        if presence is None:
            presence = {"room": room, "entered_at": at, "arrived_at": at, "visits": {room: 1}, "moves": 0,
                        "stays": 1, "created_at": at, "last_run_key": run_key}
            self.kv.set(PRESENCE, presence)
            return presence, True
        if presence.get("last_run_key") == run_key:
            return presence, False
        if presence.get("room") != room:
            # The stored room no longer exists: the caller moved the daemon somewhere valid.
            presence["room"] = room
            presence["arrived_at"] = at
            presence.setdefault("visits", {})[room] = presence.get("visits", {}).get(room, 0) + 1
        presence["entered_at"] = at
        presence["stays"] = int(presence.get("stays", 0)) + 1
        presence["last_run_key"] = run_key
        self.kv.set(PRESENCE, presence)
        return presence, False

    def move(self, room: str, now: datetime, run_key: str) -> dict[str, Any]:
        """Move the presence to ``room`` (counting the visit) unless this run already did."""
        presence = self.presence()
        if presence is None:
            raise RuntimeError("move before enter")
        if presence.get("last_run_key") == run_key and presence.get("room") == room:
            return presence
        presence["room"] = room
        presence["arrived_at"] = now.isoformat()
        visits = dict(presence.get("visits", {}))
        visits[room] = visits.get(room, 0) + 1
        presence["visits"] = visits
        presence["moves"] = int(presence.get("moves", 0)) + 1
        presence["last_run_key"] = run_key
        self.kv.set(PRESENCE, presence)
        return presence

    # -- experiences -----------------------------------------------------------------
    def experiences(self) -> list[dict[str, Any]]:
        """The buffered (not yet journaled) experiences, oldest first."""
        value = self.kv.get(EXPERIENCES, [])
        return [dict(e) for e in value] if isinstance(value, list) else []

    def experience(self, exp_id: str) -> dict[str, Any] | None:
        """The experience ``exp_id`` (buffered or recently journaled), or ``None``."""
        return next((e for e in [*self.experiences(), *self.journaled()] if e.get("id") == exp_id), None)

    def record(self, experience: dict[str, Any]) -> dict[str, Any]:
        """Add ``experience`` to the buffer, replacing one with the same id (a re-run)."""
        buffer = self.experiences()
        for i, existing in enumerate(buffer):
            if existing.get("id") == experience["id"]:
                buffer[i] = experience
                break
        else:
            buffer.append(experience)
        self.kv.set(EXPERIENCES, buffer)
        return experience

    def remove_experiences(self, ids: list[str]) -> int:
        """Move the experiences ``ids`` from the buffer to ``journaled`` (after they were journaled); return how many."""
        wanted = set(ids)
        buffer = self.experiences()
        leaving = [e for e in buffer if e.get("id") in wanted]
        if not leaving:
            return 0
        # Archive first: if the process dies between the two writes, the re-run moves
        # them again and the archive is de-duplicated by id, so nothing is lost.
        archive = [e for e in self.journaled() if e.get("id") not in wanted] + leaving
        self.kv.set(JOURNALED, archive[-KEEP_JOURNALED:])
        self.kv.set(EXPERIENCES, [e for e in buffer if e.get("id") not in wanted])
        return len(leaving)

    def journaled(self) -> list[dict[str, Any]]:
        """The most recently journaled experiences, oldest first."""
        value = self.kv.get(JOURNALED, [])
        return [dict(e) for e in value] if isinstance(value, list) else []

    def unreflected(self) -> list[dict[str, Any]]:
        """Experiences (buffered or recently journaled, reflections excluded) not yet reflected on, oldest first."""
        done = set(self.kv.get(REFLECTED, []) or [])
        seen: set[str] = set()
        out = []
        for e in [*self.journaled(), *self.experiences()]:
            if e.get("kind") == "reflection" or e.get("id") in done or e.get("id") in seen:
                continue
            seen.add(e.get("id"))
            out.append(e)
        return sorted(out, key=lambda e: str(e.get("at", "")))

    def mark_reflected(self, ids: list[str]) -> None:
        """Remember that ``ids`` were reflected on."""
        done = [i for i in (self.kv.get(REFLECTED, []) or []) if i not in set(ids)] + list(ids)
        self.kv.set(REFLECTED, done[-KEEP_REFLECTED:])

    # -- world changes ---------------------------------------------------------------
    def world_changes(self) -> dict[str, Any]:
        """What the daemon created: ``{"rooms": {...}, "objects": [...], "exits": [...]}``."""
        value = self.kv.get(WORLD_CHANGES) or {}
        return {"rooms": dict(value.get("rooms", {})), "objects": list(value.get("objects", [])),
                "exits": list(value.get("exits", []))}

    def creation_for_run(self, run_key: str) -> dict[str, Any] | None:
        """What the run ``run_key`` created (``{"kind", ...}``), if it already did."""
        changes = self.world_changes()
        for room_id, room in changes["rooms"].items():
            if room.get("run_key") == run_key:
                return {"kind": "room", "id": room_id, **room}
        for obj in changes["objects"]:
            if obj.get("run_key") == run_key:
                return {"kind": "object", **obj}
        return None

    def save_world_changes(self, changes: dict[str, Any]) -> None:
        """Store the whole ``world_changes`` value (one write, so a creation lands whole)."""
        self.kv.set(WORLD_CHANGES, changes)

    # -- acquaintances ---------------------------------------------------------------
    def acquaintances(self) -> dict[str, dict[str, Any]]:
        """Resident id -> what the daemon remembers of meeting them."""
        value = self.kv.get(ACQUAINTANCES) or {}
        return {k: dict(v) for k, v in value.items()}

    def met(self, resident_id: str, name: str, now: datetime, run_key: str) -> dict[str, Any]:
        """Count a meeting with ``resident_id`` (once per run)."""
        known = self.acquaintances()
        entry = known.get(resident_id) or {"name": name, "meetings": 0, "first_met": now.isoformat()}
        if entry.get("last_run_key") != run_key:
            entry["meetings"] = int(entry.get("meetings", 0)) + 1
            entry["last_met"] = now.isoformat()
            entry["last_run_key"] = run_key
            known[resident_id] = entry
            self.kv.set(ACQUAINTANCES, known)
        return entry

    # -- journal flushes -------------------------------------------------------------
    def flush(self, run_key: str) -> dict[str, Any] | None:
        """The journal flush begun by ``run_key``, if any."""
        value = (self.kv.get(JOURNAL_FLUSHES) or {}).get(run_key)
        return dict(value) if isinstance(value, dict) else None

    def save_flush(self, run_key: str, record: dict[str, Any]) -> None:
        """Store the flush record of ``run_key``, forgetting the oldest finished ones beyond a limit."""
        flushes = dict(self.kv.get(JOURNAL_FLUSHES) or {})
        flushes[run_key] = record
        if len(flushes) > KEEP_FLUSHES:
            finished = sorted((v.get("at", ""), k) for k, v in flushes.items() if v.get("written") and k != run_key)
            for _at, key in finished[: len(flushes) - KEEP_FLUSHES]:
                del flushes[key]
        self.kv.set(JOURNAL_FLUSHES, flushes)
