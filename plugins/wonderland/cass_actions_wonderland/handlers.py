"""The wonderland action handlers: enter, explore, reflect, create, socialize, journal_experience.

Every handler is ``async def handler(ctx) -> ActionResult``. The world is read fresh on
each run (shipped file plus the stored changes); everything the daemon does is kept in
the pack's key-value area (:mod:`cass_actions_wonderland.state`) and journaled as
markdown under the pack's data folder. Handlers that make no LLM call never touch
``ctx.llm``; the others make exactly one light call.

Units may run concurrently (``max_concurrent_units`` > 1), and a handler's LLM call is
where another handler gets to run. So a handler claims what it consumes (buffered
experiences to journal or reflect on) before its first ``await``, and reads the world,
the stored changes and the journal file again after it, right before writing.

Text written without a real LLM reply (the offline provider) carries the offline label
(:func:`cass_actions_core.text.label_offline`) in every title and text it reaches, and
such experiences are recorded with ``"source": "offline"``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.text import clip, first_sentence, label_offline

from cass_actions_wonderland import journal
from cass_actions_wonderland.common import (
    KIND_TITLES,
    context_lines,
    daemon_name,
    describe_room,
    ensure_presence,
    experience_lines,
    join_names,
    labelled_if,
    new_experience,
    offline_reply,
    sense_room,
    setting,
    system_prompt,
    unlabelled,
    world_for,
)
from cass_actions_wonderland.state import WonderlandState, experience_id
from cass_actions_wonderland.world import FREE_DIRECTION_ORDER, OPPOSITES, Room, slug

#: Room and object descriptions are quoted by their first sentence, at most this long.
SENTENCE = 300

JOURNAL_DIR = "journal"
CREATIONS_PAGE = "creations.md"


def _ref(kind: str, ident: str) -> str:
    # Artifacts kept in the store (not files) are referenced as "wonderland:<key>/<id>".
    return f"wonderland:{kind}/{ident}"


# -- wonderland.enter ---------------------------------------------------------------------

async def enter(ctx: ActionContext) -> ActionResult:
    """Create the daemon's presence at the entrance, or resume it in the room it was last in."""
    state = WonderlandState(ctx.kv)
    world = world_for(ctx, state)
    before = state.presence()
    room_id = before["room"] if before and before.get("room") in world.rooms else world.entrance
    presence, new = state.enter(room_id, ctx.now(), ctx.run_key)
    room = world.room(presence["room"])
    look = describe_room(world, room)
    if new:
        summary = f"Entered {world.name} for the first time, at {room.name}."
    elif before and before.get("room") not in world.rooms:
        summary = (f"Returned to {world.name} at {room.name}: the last room, {before.get('room')!r}, "
                   f"no longer exists in {world.source}.")
    else:
        summary = f"Resumed my presence in {world.name} at {room.name} (stay {presence.get('stays', 1)})."
    ctx.emit("wonderland.entered", {"room": room.id, "new": new})
    return ActionResult(summary=summary, data={"new": new, "presence": presence, "look": look})


# -- wonderland.explore -------------------------------------------------------------------

def choose_exit(room: Room, visits: dict[str, int]) -> tuple[str, str] | None:
    """The exit to take: toward the least-visited room, ties broken by direction name.

    Deterministic for the same room and visit counts (the earlier system chose at random).
    """
    if not room.exits:
        return None
    direction = min(room.exits, key=lambda d: (visits.get(room.exits[d], 0), d))
    return direction, room.exits[direction]


async def explore(ctx: ActionContext) -> ActionResult:
    """Look and sense the current room, then move through one exit and record an exploration."""
    state = WonderlandState(ctx.kv)
    world = world_for(ctx, state)
    presence, note = ensure_presence(ctx, state, world)
    done = state.experience(experience_id("exploration", ctx.run_key))
    if done is not None:
        # A re-run of the same run after a crash: finish the move it recorded, record nothing twice.
        details = done["details"]
        if details.get("to"):
            state.move(details["to"], ctx.now(), ctx.run_key)
        return ActionResult(summary=f"{done['title']} (already recorded by this run).", data={"experience": done})

    here = world.room(presence["room"])
    look = describe_room(world, here)
    senses = sense_room(here)
    choice = choose_exit(here, presence.get("visits", {}))
    seen = join_names(look["objects"])
    residents = join_names(look["residents"])
    text = [f"I looked around {here.name}. {first_sentence(here.description, SENTENCE)}"]
    if seen:
        text.append(f"I noticed {seen}.")
    if residents:
        text.append(f"{residents} {'was' if len(look['residents']) == 1 else 'were'} here.")
    if senses:
        text.append("I sensed: " + " ".join(senses))
    details: dict[str, Any] = {"from": here.id, "look": look, "sensed": senses}
    if choice is None:
        title = f"Explored {here.name}, which has no way onward"
        text.append("There was no exit to take, so I stayed.")
        there = here
    else:
        direction, target = choice
        there = world.room(target)
        details.update(direction=direction, to=there.id, to_name=there.name)
        title = f"Went {direction} from {here.name} to {there.name}"
        text.append(f"I took the {direction} exit to {there.name}. {first_sentence(there.description, SENTENCE)}")
    experience = new_experience(ctx, "exploration", here, title, " ".join(text), details)
    # The experience is written first: if the process dies before the move is saved,
    # the re-run above finds it and completes the move instead of choosing again.
    state.record(experience)
    if choice is not None:
        presence = state.move(there.id, ctx.now(), ctx.run_key)
    ctx.add_artifact("experience", title, ref=_ref("experiences", experience["id"]))
    ctx.emit("wonderland.explored", {"from": here.id, "to": there.id, "direction": details.get("direction")})
    summary = f"{title}." + (f" (I {note}.)" if note else "")
    return ActionResult(summary=summary, data={"experience": experience, "presence": presence})


# -- wonderland.reflect -------------------------------------------------------------------

async def reflect(ctx: ActionContext) -> ActionResult:
    """Move to the reflection pool and reflect, in one light LLM call, on buffered experiences and the focus."""
    state = WonderlandState(ctx.kv)
    world = world_for(ctx, state)
    ensure_presence(ctx, state, world)
    done = state.experience(experience_id("reflection", ctx.run_key))
    if done is not None:
        # A re-run after a crash: the reflection is already recorded; never pay for it twice.
        state.mark_reflected(done["details"].get("reflected_on", []))
        state.release_reflection(ctx.run_key)
        return ActionResult(summary=f"{done['title']} (already recorded by this run).", data={"experience": done})
    limit = setting(ctx, "prompt_experiences")
    # Buffered and recently journaled experiences alike: a reflection late in the day
    # should still see the explorations an earlier unit already journaled. Claimed before
    # the LLM call, so a reflection running at the same time does not take them too.
    material = state.claim_reflection(ctx.run_key, limit, ctx.now())
    if not material and not ctx.focus:
        return ActionResult(summary="Nothing to reflect on: no new experiences in the buffer and no focus given; no LLM call made.",
                            data={"reflected_on": []})
    pool = world.room(world.reflection_room)
    presence = state.move(pool.id, ctx.now(), ctx.run_key)
    lines = [f"Reflect, in one or two short paragraphs, on what I experienced in {world.name}, sitting by {pool.name}.",
             *context_lines(ctx), f"The place: {first_sentence(pool.description, SENTENCE)} {pool.sense or ''}".rstrip(), ""]
    if material:
        lines += ["Experiences since my last reflection:", *experience_lines(material, limit)]
    else:
        lines += ["I have no new experiences here yet; reflect on the focus alone."]
    prompt = "\n".join(lines)
    try:
        reply = await ctx.llm.complete(prompt, system=system_prompt(ctx, world), max_tokens=setting(ctx, "max_tokens"))
    except BaseException:
        # Failed, cancelled or timed out: the experiences are free for the next reflection.
        state.release_reflection(ctx.run_key)
        raise
    offline = offline_reply(reply)
    text = labelled_if(offline, reply.text.strip())
    reflected_on = [e["id"] for e in material]
    title = labelled_if(offline, f"Reflected by {pool.name}" + (
        f" on {len(reflected_on)} experience{'s' if len(reflected_on) != 1 else ''}" if reflected_on else " on the focus"))
    experience = new_experience(ctx, "reflection", pool, title, text,
                                {"reflected_on": reflected_on, "focus": ctx.focus, "model": reply.model},
                                source="offline" if offline else "llm")
    state.record(experience)
    state.mark_reflected(reflected_on)
    state.release_reflection(ctx.run_key)
    ctx.add_artifact("experience", title, ref=_ref("experiences", experience["id"]))
    ctx.emit("wonderland.reflected", {"room": pool.id, "experiences": len(reflected_on)})
    # An offline digest is not the daemon's insight: no insights from it.
    insights = [first_sentence(text, 300)] if text and not offline else []
    return ActionResult(summary=f"{title}.", data={"experience": experience, "presence": presence}, insights=insights)


# -- wonderland.create --------------------------------------------------------------------

class InspiredObject(BaseModel):
    """An object the daemon invents to leave in the world (the LLM's structured output)."""

    name: str = Field(description="A short name with an article, a few words, e.g. 'a lantern of pressed leaves'.")
    description: str = Field(description="One or two sentences: what it looks like.")
    sense: str = Field(description="One sentence: what someone feels or perceives when they sense it.")


def _unique(base: str, taken: set[str]) -> str:
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    return candidate


def _lower_the(name: str) -> str:
    return "the " + name[4:] if name.startswith("The ") else name


def offline_object(room: Room, experiences: list[dict[str, Any]]) -> InspiredObject:
    """A deterministic object built from the experiences (or the room) for the offline provider.

    Its name, description and sense all carry the offline label.
    """
    moments = [e for e in experiences if e.get("kind") != "reflection"] or experiences
    if moments:
        latest = moments[-1]
        titles = "; ".join(clip(unlabelled(str(e.get("title", ""))), 80) for e in moments[-3:])
        moment = unlabelled(str(latest.get("title", ""))) or "was here"
        return InspiredObject(
            name=label_offline(f"a keepsake of {_lower_the(str(latest.get('room_name', room.name)))}"),
            description=label_offline(f"A small keepsake shaped by {len(moments)} remembered moment{'s' if len(moments) != 1 else ''}: {titles}."),
            sense=label_offline(f"It holds the moment I {moment[0].lower()}{moment[1:]}."),
        )
    return InspiredObject(
        name=label_offline(f"a keepsake of {_lower_the(room.name)}"),
        description=label_offline(f"A small keepsake shaped like {_lower_the(room.name)}: {first_sentence(room.description, SENTENCE)}"),
        sense=label_offline(room.sense or "It is quiet and new."),
    )


async def create(ctx: ActionContext) -> ActionResult:
    """Create a room or an object from params, or (no params) an object inspired by the buffered experiences."""
    state = WonderlandState(ctx.kv)
    world = world_for(ctx, state)
    presence, _note = ensure_presence(ctx, state, world)
    done = state.creation_for_run(ctx.run_key)
    if done is not None:
        return ActionResult(summary=f"Already created {done['kind']} {done.get('name')!r} in this run.", data={"created": done})
    params = ctx.params
    target_id = params.get("room") or presence["room"]
    if target_id not in world.rooms:
        raise ActionFailed(f"params.room: unknown room {target_id!r} (known rooms: {', '.join(sorted(world.rooms))})")
    target = world.room(target_id)
    kind = params.get("kind", "object")
    inspired = "kind" not in params
    if inspired:
        # Those a flush is journaling right now count too: they are still today's.
        experiences = [*state.pending(), *state.experiences()]
        limit = setting(ctx, "prompt_experiences")
        lines = [f"Invent one small object to leave in {target.name}, grown out of what I experienced in {world.name}.",
                 f"The room: {first_sentence(target.description, SENTENCE)}",
                 f"Already here: {join_names([o.name for o in target.objects]) or 'nothing'}",
                 *context_lines(ctx), ""]
        lines += (["What I experienced:", *experience_lines(experiences, limit)] if experiences
                  else ["I have no buffered experiences; let the room itself inspire it."])
        lines += ["", "Give it a short name with an article, a one- or two-sentence description, and what someone senses when they touch it."]
        built: list[bool] = []

        def build_offline() -> InspiredObject:
            built.append(True)
            return offline_object(target, experiences)

        made = await ctx.llm.structured("\n".join(lines), InspiredObject, system=system_prompt(ctx, world),
                                        max_tokens=setting(ctx, "max_tokens"), offline=build_offline)
        offline = bool(built) or offline_reply(ctx.llm.last_response)
        bare = clip(unlabelled(made.name), 80)
        description, sense = made.description.strip(), made.sense.strip() or None
        if not bare or not unlabelled(description):
            raise ActionFailed("the model returned an object without a name or a description; nothing was created")
        name = labelled_if(offline, bare)
        if offline:
            description, sense = label_offline(description), label_offline(sense) if sense else None
        # Another unit may have changed the world during the call: read it again, so the
        # new object's id (and a room's free direction) is chosen against the world as it is now.
        world = world_for(ctx, state)
        target = world.room(target_id)
    else:
        offline = False
        name, description, sense = params["name"].strip(), params["description"].strip(), (params.get("sense") or "").strip() or None
        bare = name
    now = ctx.now().isoformat()
    changes = state.world_changes()
    if kind == "room":
        direction = params.get("direction") or next((d for d in FREE_DIRECTION_ORDER if d not in target.exits), None)
        if direction is None:
            raise ActionFailed(f"{target.name} ({target.id}) has no free direction left for a new room; pass params.direction")
        if direction in target.exits:
            raise ActionFailed(f"params.direction: {target.name} ({target.id}) already has a {direction!r} exit "
                               f"(to {target.exits[direction]}); choose another direction")
        new_id = _unique(slug(bare), set(world.rooms))
        back = OPPOSITES.get(direction, "back")
        changes["rooms"][new_id] = {"name": name, "description": description, "sense": sense, "created_at": now,
                                    "run_key": ctx.run_key, "from_room": target.id, "direction": direction}
        changes["exits"] += [{"room": target.id, "direction": direction, "to": new_id, "run_key": ctx.run_key},
                             {"room": new_id, "direction": back, "to": target.id, "run_key": ctx.run_key}]
        created = {"kind": "room", "id": new_id, "name": name, "description": description, "sense": sense,
                   "from_room": target.id, "direction": direction, "back": back}
        title = f"Made a new room, {bare}, {direction} of {target.name}"
    else:
        new_id = _unique(slug(bare), world.object_ids())
        obj = {"id": new_id, "room": target.id, "name": name, "description": description, "sense": sense,
               "created_at": now, "run_key": ctx.run_key, "inspired": inspired}
        changes["objects"].append(obj)
        created = {"kind": "object", **obj}
        title = f"Made {bare} and left it in {target.name}"
    title = labelled_if(offline, title)
    # One write: the creation lands whole or not at all.
    state.save_world_changes(changes)
    body = unlabelled(description) + (f" Sensing it: {unlabelled(sense)}" if sense else "")
    experience = new_experience(ctx, "creation", target, title, labelled_if(offline, body), {"created": created},
                                source=("offline" if offline else "llm") if inspired else None)
    state.record(experience)
    page = ctx.write_text(CREATIONS_PAGE, journal.creations_page(world.name, changes))
    ctx.add_artifact("markdown", f"What I made in {world.name}", page)
    ctx.add_artifact(f"wonderland-{kind}", name, ref=_ref("world_changes", new_id))
    ctx.emit("wonderland.created", {"kind": kind, "id": new_id, "room": target.id, "inspired": inspired})
    return ActionResult(summary=f"{title}.", data={"created": created, "experience_id": experience["id"]})


# -- wonderland.socialize -----------------------------------------------------------------

async def socialize(ctx: ActionContext) -> ActionResult:
    """Greet and talk with a resident here, or go to the nearest one first; one light LLM call."""
    state = WonderlandState(ctx.kv)
    world = world_for(ctx, state)
    presence, _note = ensure_presence(ctx, state, world)
    done = state.experience(experience_id("encounter", ctx.run_key))
    if done is not None:
        # A re-run after a crash: the encounter is already recorded; count the meeting if that was lost.
        entry = state.met(done["details"]["resident"], done["details"]["resident_name"], ctx.now(), ctx.run_key)
        return ActionResult(summary=f"{done['title']} (already recorded by this run).",
                            data={"experience": done, "acquaintance": entry})
    known = state.acquaintances()
    wanted = ctx.params.get("resident")
    if wanted is not None and world.resident(wanted) is None:
        raise ActionFailed(f"params.resident: unknown resident {wanted!r} (residents: {', '.join(r.id for r in world.residents)})")
    paths = world.paths_from(presence["room"])
    candidates = [r for r in world.residents if r.home in paths and (wanted is None or r.id == wanted)]
    if not candidates:
        why = f"{wanted} cannot be reached from here" if wanted else "no resident can be reached from here"
        return ActionResult(summary=f"Nobody to talk to: {why}; no LLM call made.", data={"resident": None})
    # Nearest first; among equals the one met least, then by id (deterministic).
    resident = min(candidates, key=lambda r: (len(paths[r.home]), known.get(r.id, {}).get("meetings", 0), r.id))
    path = paths[resident.home]
    room = world.room(resident.home)
    if path[-1] != presence["room"]:
        presence = state.move(room.id, ctx.now(), ctx.run_key)
    meetings_before = known.get(resident.id, {}).get("meetings", 0)
    if known.get(resident.id, {}).get("last_run_key") == ctx.run_key:
        meetings_before -= 1  # a re-run of this very meeting
    recent = [e for e in [*state.pending(), *state.experiences()] if e.get("kind") != "reflection"]
    lines = [f"Write a short exchange (three to six lines of dialogue) between me and {resident.name}, whom I met in {room.name}.",
             f"{resident.name}: {resident.description}",
             f"{resident.name} greets me: \"{resident.greeting}\"",
             f"Their interests: {', '.join(resident.interests) or 'unknown'}",
             f"Times we have met before: {meetings_before}",
             *context_lines(ctx)]
    if recent:
        lines += ["", "What I have been doing:", *experience_lines(recent, min(5, setting(ctx, "prompt_experiences")))]
    reply = await ctx.llm.complete("\n".join(lines), system=system_prompt(ctx, world), max_tokens=setting(ctx, "max_tokens"))
    offline = offline_reply(reply)
    exchange = unlabelled(reply.text) if offline else reply.text.strip()
    # Counted after the call (met() reads the acquaintances afresh, so a meeting counted
    # meanwhile by another unit is kept).
    entry = state.met(resident.id, resident.name, ctx.now(), ctx.run_key)
    arrow = " \u2192 "
    travelled = f" after walking {arrow.join(world.room(r).name for r in path)}" if len(path) > 1 else ""
    title = labelled_if(offline, f"Talked with {resident.name} in {room.name}")
    text = labelled_if(offline, f"{resident.name} said: \u201c{resident.greeting}\u201d\n\n{exchange}")
    experience = new_experience(ctx, "encounter", room, title, text,
                                {"resident": resident.id, "resident_name": resident.name, "path": path,
                                 "meetings": entry["meetings"], "model": reply.model},
                                source="offline" if offline else "llm")
    state.record(experience)
    ctx.add_artifact("experience", title, ref=_ref("experiences", experience["id"]))
    ctx.emit("wonderland.encounter", {"resident": resident.id, "room": room.id, "meetings": entry["meetings"]})
    return ActionResult(summary=f"{title}{travelled} (meeting {entry['meetings']}).",
                        data={"experience": experience, "presence": presence, "acquaintance": entry})


# -- wonderland.journal_experience -------------------------------------------------------

async def journal_experience(ctx: ActionContext) -> ActionResult:
    """Append the buffered experiences to ``journal/<local date>.md`` (once per run) and clear them."""
    state = WonderlandState(ctx.kv)
    world = world_for(ctx, state)
    relative = f"{JOURNAL_DIR}/{ctx.local_date.isoformat()}.md"
    # Claimed before the LLM call: the experiences leave the buffer for this run's flush
    # record, so a flush running at the same time cannot journal them too, and a re-run
    # after a crash finds exactly these again.
    flush = state.claim_flush(ctx.run_key, relative, ctx.now())
    if flush is None:
        return ActionResult(summary="Nothing to journal: the experience buffer is empty; no LLM call made.",
                            data={"experiences": 0, "path": None})
    if flush.get("adopted_by"):
        return ActionResult(summary=f"Nothing left to journal for this run: its experiences were journaled by the later "
                                    f"flush {flush['adopted_by']}; no LLM call made.",
                            data={"experiences": 0, "path": flush.get("path"), "adopted_by": flush["adopted_by"]})
    experiences = [dict(e) for e in flush.get("experiences", []) or []]
    path = ctx.data_dir / flush["path"]
    mark = journal.marker(ctx.run_key)
    already = mark in _read(path)
    narrative_error: str | None = None
    narrative: str | None = None
    offline = False
    if not already and experiences:
        if setting(ctx, "journal_narrative"):
            lines = [f"Write a short journal paragraph (three to five sentences) about this stretch of my time in {world.name}.",
                     *context_lines(ctx), "", "Experiences:", *experience_lines(experiences, setting(ctx, "prompt_experiences"))]
            try:
                reply = await ctx.llm.complete("\n".join(lines), system=system_prompt(ctx, world),
                                               max_tokens=setting(ctx, "max_tokens"))
            except LLMError as exc:
                # The entries are the journal; a missing narrative is noted, never a reason to lose them.
                narrative_error = f"LLM call stopped ({exc.kind}): {exc}"
            except BaseException:
                # Cancelled or timed out: give the experiences back for the next flush.
                state.release_flush(ctx.run_key)
                raise
            else:
                offline = offline_reply(reply)
                narrative = labelled_if(offline, reply.text.strip()) if reply.text.strip() else None
        note = f"No narrative: {narrative_error}" if narrative_error else None
        # Read again right before writing: another flush may have appended its section
        # while this one waited for its narrative.
        existing = _read(path)
        already = mark in existing
        if not already:
            text = (existing or journal.header(ctx.local_date, world.name, daemon_name(ctx)))
            text += journal.section(ctx.run_key, ctx.now(), ctx.phase, experiences, narrative, note)
            written = ctx.write_text(flush["path"], text)
        else:
            written = path
    else:
        written = path
    state.finish_flush(ctx.run_key, experiences)
    kinds: dict[str, int] = {}
    for e in experiences:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    if experiences or already:
        ctx.add_artifact("markdown", f"{world.name} journal {ctx.local_date.isoformat()}", written)
    if not already and experiences:
        ctx.emit("wonderland.journal_written", {"path": flush["path"], "experiences": len(experiences), "kinds": kinds})
    described = join_names([f"{n} {KIND_TITLES.get(k, k).lower()}{'s' if n != 1 else ''}" for k, n in sorted(kinds.items())])
    if already:
        summary = (f"The journal section for this run was already in {flush['path']}; moved its {len(experiences)} "
                   "experience(s) out of the buffer.")
    elif experiences:
        summary = f"Journaled {described} in {flush['path']}" + (
            " with an offline narrative (labelled [offline])." if narrative and offline else
            " with a narrative." if narrative else
            f" without a narrative ({narrative_error})." if narrative_error else ".")
    else:
        summary = "Nothing left to journal for this run; no LLM call made."
    return ActionResult(summary=summary, data={"experiences": len(experiences), "kinds": kinds, "path": flush["path"],
                                               "narrative": narrative is not None, "narrative_offline": offline,
                                               "narrative_error": narrative_error, "already_written": already})


def _read(path: Path) -> str:
    return path.read_text("utf-8") if path.is_file() else ""


Handler = Callable[[ActionContext], Awaitable[ActionResult]]

#: Action id -> handler, registered by :mod:`cass_actions_wonderland.plugin`.
HANDLERS: dict[str, Handler] = {
    "wonderland.enter": enter,
    "wonderland.explore": explore,
    "wonderland.reflect": reflect,
    "wonderland.create": create,
    "wonderland.socialize": socialize,
    "wonderland.journal_experience": journal_experience,
}

__all__ = ["HANDLERS", "InspiredObject", "choose_exit", "offline_object"]
