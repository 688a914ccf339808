"""The daemon's life in Wonderland as kept in the pack's key-value area (``ctx.kv``).

Keys (JSON values, persisted in SQLite by the core):

- ``presence``: where the daemon is — ``room``, ``entered_at`` (when the current stay
  in the world began), ``arrived_at`` (when it reached the current room), ``visits``
  (room id -> times arrived), ``moves``, ``stays`` (how often it entered) and
  ``last_run_key`` (the run that last changed it, so a re-run after a crash does not
  move or count twice);
- ``experiences``: the buffer of experiences not yet journaled, oldest first; each
  ``{"id", "run_key", "kind", "at", "room", "room_name", "title", "text", "details"}``
  (plus ``source``: ``llm`` or ``offline`` when an LLM call wrote it)
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
- ``journal_flushes``: run key -> ``{"ids", "experiences", "path", "at", "written"}``:
  a flush *claims* the buffered experiences before its LLM call, moving them out of the
  buffer into this record (so a concurrent flush cannot take them too), and a re-run
  after a crash finds them here, so it neither duplicates its section nor loses the
  experiences it was writing. ``experiences`` is dropped once the section is written.
  An unwritten record older than :data:`STALE_CLAIM` (its run never came back) is
  adopted by the next flush, which journals its experiences (``adopted_by`` names it);
- ``reflecting``: run key -> ``{"ids", "at"}``: the experiences a reflection in progress
  claimed before its LLM call, so a concurrent reflection does not take them too;
  removed when the reflection is recorded or fails; ignored by others once stale.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from cass_actions_core.actions import KeyValue

PRESENCE = "presence"
EXPERIENCES = "experiences"
WORLD_CHANGES = "world_changes"
ACQUAINTANCES = "acquaintances"
JOURNAL_FLUSHES = "journal_flushes"
JOURNALED = "journaled"
REFLECTED = "reflected"
REFLECTING = "reflecting"

#: A claim (pending flush or reflection) older than this belongs to a run that never came
#: back (crashed and abandoned); other runs may then take its experiences.
STALE_CLAIM = timedelta(hours=1)

#: How many finished journal flushes are remembered (for re-runs of recent runs).
KEEP_FLUSHES = 200
#: How many journaled experiences are kept for later reflection.
KEEP_JOURNALED = 50
#: How many reflected-on experience ids are remembered.
KEEP_REFLECTED = 500


def _stale(record: dict[str, Any], now: datetime) -> bool:
    try:
        at = datetime.fromisoformat(str(record.get("at")))
    except ValueError:
        return True
    if (at.tzinfo is None) != (now.tzinfo is None):
        return True
    return now - at > STALE_CLAIM


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
        return next((e for e in [*self.experiences(), *self.pending(), *self.journaled()] if e.get("id") == exp_id), None)

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

    def archive(self, experiences: list[dict[str, Any]]) -> None:
        """Add journaled ``experiences`` to ``journaled`` (de-duplicated by id, newest last)."""
        wanted = {e.get("id") for e in experiences}
        archive = [e for e in self.journaled() if e.get("id") not in wanted] + list(experiences)
        self.kv.set(JOURNALED, archive[-KEEP_JOURNALED:])

    def _drop_from_buffer(self, ids: set[str]) -> None:
        buffer = self.experiences()
        kept = [e for e in buffer if e.get("id") not in ids]
        if len(kept) != len(buffer):
            self.kv.set(EXPERIENCES, kept)

    def journaled(self) -> list[dict[str, Any]]:
        """The most recently journaled experiences, oldest first."""
        value = self.kv.get(JOURNALED, [])
        return [dict(e) for e in value] if isinstance(value, list) else []

    def unreflected(self) -> list[dict[str, Any]]:
        """Experiences (buffered, being journaled or recently journaled; reflections excluded) not yet reflected on, oldest first."""
        done = set(self.kv.get(REFLECTED, []) or [])
        seen: set[str] = set()
        out = []
        for e in [*self.journaled(), *self.pending(), *self.experiences()]:
            if e.get("kind") == "reflection" or e.get("id") in done or e.get("id") in seen:
                continue
            seen.add(e.get("id"))
            out.append(e)
        return sorted(out, key=lambda e: str(e.get("at", "")))

    def mark_reflected(self, ids: list[str]) -> None:
        """Remember that ``ids`` were reflected on."""
        done = [i for i in (self.kv.get(REFLECTED, []) or []) if i not in set(ids)] + list(ids)
        self.kv.set(REFLECTED, done[-KEEP_REFLECTED:])

    def claim_reflection(self, run_key: str, limit: int, now: datetime) -> list[dict[str, Any]]:
        """The experiences the reflection ``run_key`` reflects on, claimed before its LLM call.

        The last ``limit`` unreflected experiences not claimed by another (fresh) reflection;
        a re-run finds its own claim. Synchronous, so no other handler runs in between.
        """
        claims = dict(self.kv.get(REFLECTING) or {})
        own = claims.get(run_key)
        if isinstance(own, dict):
            found = [self.experience(i) for i in own.get("ids", [])]
            return [e for e in found if e is not None]
        taken = {i for key, c in claims.items() if isinstance(c, dict) and not _stale(c, now) for i in c.get("ids", [])}
        material = [e for e in self.unreflected() if e.get("id") not in taken][-limit:]
        if material:
            claims[run_key] = {"ids": [e["id"] for e in material], "at": now.isoformat()}
            # Forget stale claims of runs that never came back.
            claims = {k: c for k, c in claims.items() if k == run_key or not _stale(c, now)}
            self.kv.set(REFLECTING, claims)
        return material

    def release_reflection(self, run_key: str) -> None:
        """Drop the claim of ``run_key`` (its reflection is recorded, or it failed)."""
        claims = dict(self.kv.get(REFLECTING) or {})
        if claims.pop(run_key, None) is not None:
            self.kv.set(REFLECTING, claims)

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

    def pending(self) -> list[dict[str, Any]]:
        """Experiences claimed by a journal flush whose section is not written yet, oldest first."""
        out = [dict(e) for f in (self.kv.get(JOURNAL_FLUSHES) or {}).values()
               if isinstance(f, dict) and not f.get("written") for e in f.get("experiences", []) or []]
        return sorted(out, key=lambda e: str(e.get("at", "")))

    def claim_flush(self, run_key: str, path: str, now: datetime) -> dict[str, Any] | None:
        """The flush of ``run_key``: its own record on a re-run, else the buffer claimed now.

        Claiming moves the buffered experiences (and those of stale unwritten flushes)
        into this run's record and out of the buffer, before the caller's first await, so
        a concurrent flush cannot journal them too. ``None`` when there is nothing to flush.
        """
        flushes = dict(self.kv.get(JOURNAL_FLUSHES) or {})
        record = flushes.get(run_key)
        if isinstance(record, dict):
            record = dict(record)
            if not record.get("written") and not record.get("adopted_by") and "experiences" not in record:
                # A record from before claims existed: its experiences are still in the buffer.
                wanted = set(record.get("ids", []))
                record["experiences"] = [e for e in self.experiences() if e.get("id") in wanted]
                self.save_flush(run_key, record)
            if not record.get("written"):
                # A crash between saving the claim and clearing the buffer: finish clearing it.
                self._drop_from_buffer(set(record.get("ids", [])))
            else:
                # A record from before claims existed, written just before a crash: its
                # experiences may still be buffered; archive them instead of journaling them again.
                wanted = set(record.get("ids", []))
                leftover = [e for e in self.experiences() if e.get("id") in wanted]
                if leftover:
                    self.archive(leftover)
                    self._drop_from_buffer(wanted)
            return record
        claimed: list[dict[str, Any]] = []
        held: set[str] = set()  # ids another (fresh) flush is writing
        moved: set[str] = set()  # ... of which its record holds the experiences themselves
        for key, other in flushes.items():
            if not isinstance(other, dict) or other.get("written") or other.get("adopted_by"):
                continue
            if _stale(other, now):
                claimed += other.get("experiences", []) or []
                flushes[key] = {**{k: v for k, v in other.items() if k != "experiences"}, "adopted_by": run_key}
            else:
                held.update(other.get("ids", []))
                if "experiences" in other:
                    moved.update(other.get("ids", []))
        claimed += [e for e in self.experiences() if e.get("id") not in held]
        claimed = list({e.get("id"): e for e in claimed}.values())  # a stale record's experience may also be buffered
        if not claimed:
            self._drop_from_buffer(moved)
            return None
        claimed.sort(key=lambda e: str(e.get("at", "")))
        record = {"ids": [e["id"] for e in claimed], "experiences": claimed, "path": path, "at": now.isoformat(),
                  "written": False}
        flushes[run_key] = record
        # The record first, then the buffer: a crash in between leaves the experiences in
        # both, and the re-run above clears the buffer; never in neither.
        self._save_flushes(flushes, run_key)
        self._drop_from_buffer(set(record["ids"]) | moved)
        return record

    def release_flush(self, run_key: str) -> None:
        """Give the experiences of the unwritten flush ``run_key`` back to the buffer and forget it."""
        flushes = dict(self.kv.get(JOURNAL_FLUSHES) or {})
        record = flushes.get(run_key)
        if not isinstance(record, dict) or record.get("written"):
            return
        back = record.get("experiences", []) or []
        ids = {e.get("id") for e in back}
        buffer = sorted([*back, *(e for e in self.experiences() if e.get("id") not in ids)], key=lambda e: str(e.get("at", "")))
        self.kv.set(EXPERIENCES, buffer)
        del flushes[run_key]
        self.kv.set(JOURNAL_FLUSHES, flushes)

    def finish_flush(self, run_key: str, experiences: list[dict[str, Any]]) -> None:
        """Archive the journaled ``experiences`` and mark the flush of ``run_key`` written."""
        # Archive first: a crash before the flush is marked written re-runs it, the section
        # is found in the file, and the archive is de-duplicated by id.
        self.archive(experiences)
        record = self.flush(run_key) or {}
        record.pop("experiences", None)
        record["written"] = True
        self.save_flush(run_key, record)

    def save_flush(self, run_key: str, record: dict[str, Any]) -> None:
        """Store the flush record of ``run_key``, forgetting the oldest finished ones beyond a limit."""
        flushes = dict(self.kv.get(JOURNAL_FLUSHES) or {})
        flushes[run_key] = record
        self._save_flushes(flushes, run_key)

    def _save_flushes(self, flushes: dict[str, Any], run_key: str) -> None:
        if len(flushes) > KEEP_FLUSHES:
            finished = sorted((v.get("at", ""), k) for k, v in flushes.items()
                              if (v.get("written") or v.get("adopted_by")) and k != run_key)
            for _at, key in finished[: len(flushes) - KEEP_FLUSHES]:
                del flushes[key]
        self.kv.set(JOURNAL_FLUSHES, flushes)
