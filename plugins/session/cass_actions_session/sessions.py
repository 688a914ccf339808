"""The twelve ``session.*`` actions: their instructions and what each one reads.

Every action is the same runner (:func:`cass_actions_session.runner.run_session`)
with a :class:`~cass_actions_session.runner.SessionSpec`: a purpose (the heart of its
instructions) and a ``prepare`` function that gathers its material from the workspace,
the pack's key-value area and the history of work, and says when there is nothing to do.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cass_actions_core.actions import ActionContext, ActionResult
from cass_actions_core.text import clip, is_offline

from cass_actions_session import inputs, research, selfmodel
from cass_actions_session.common import dedupe, setting_int
from cass_actions_session.inputs import Material, Section
from cass_actions_session.runner import (
    Prepared,
    SessionLimits,
    SessionSpec,
    recent_sessions,
    run_session,
    sessions_between,
)

#: Key in the key-value area: feed items ``session.world_state`` has already considered.
SEEN_FEED_KEY = "world_state_seen"
SEEN_FEED_SIZE = 1000
#: The periods a consolidation reviews (the session log keeps at least the longest:
#: ``runner.SESSION_LOG_DAYS``).
PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 30}


# -- shared gathering ----------------------------------------------------------------------------

def _start(ctx: ActionContext, with_self: bool = True) -> tuple[Material, dict[str, Any] | None]:
    material = Material()
    model = inputs.self_section(ctx, material) if with_self else None
    if not with_self:
        # Still read the name the daemon gives itself (a bad file is reported once it is read as material).
        model = inputs.read_model(ctx)
    return material, model


def _name(model: dict[str, Any] | None) -> str | None:
    name = (model or {}).get("name")
    return name if isinstance(name, str) else None


def _theme(ctx: ActionContext, default: str) -> str:
    """``params.topic``, else the unit's focus, else ``default`` (spacing and a final full stop tidied)."""
    for candidate in (ctx.params.get("topic"), ctx.focus):
        if isinstance(candidate, str) and candidate.strip(" ."):
            return " ".join(candidate.split()).rstrip(" .")
    return default


def _recent(ctx: ActionContext, limits: SessionLimits, category: str | None = None) -> list[dict[str, Any]]:
    return ctx.history.summaries(category=category, limit=limits.recent_summaries) if limits.recent_summaries else []


def _sessions_section(ctx: ActionContext, material: Material, entries: list[dict[str, Any]], title: str) -> Section:
    """Earlier sessions from the session log (newest last) as material."""
    lines, highlights = [], []
    for e in entries:
        lines.append(f"- {e.get('local_date', '?')} {e.get('action_id', '?')} on {e.get('theme', '?')}: "
                     f"{clip(str(e.get('summary', '')), 400)}")
        lines += [f"  - insight: {clip(str(i), 240)}" for i in e.get("insights") or []]
        lines += [f"  - question: {clip(str(q), 240)}" for q in e.get("questions") or []]
        highlights += [str(q) for q in e.get("questions") or []]
    section = Section("sessions", title, "\n".join(lines), len(entries), [str(e.get("path")) for e in entries if e.get("path")],
                      highlights, list(highlights))
    material.add(section)
    return section


def _nothing(material: Material, *sources: str) -> bool:
    return not any(material.has(s) for s in sources)


# -- the twelve prepares ----------------------------------------------------------------------------

def prepare_reflection(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Private contemplation: the focus is the theme; reads self model, journal, notes, summaries."""
    material, model = _start(ctx)
    inputs.journal_section(ctx, material, limit=limits.recent_files)
    inputs.notes_section(ctx, material, limit=limits.recent_files)
    inputs.summaries_section(ctx, material, _recent(ctx, limits))
    theme = _theme(ctx, "what the last days have asked of me")
    return Prepared(theme, material, f"Reflect privately on this theme: {theme}.", _name(model),
                    nothing_to_do=("Nothing to reflect on: no self model, journal, notes or work summaries yet."
                                   if not material.sections and not ctx.focus else None))


def _insights_section(ctx: ActionContext, material: Material, model: dict[str, Any] | None,
                      summaries: list[dict[str, Any]]) -> Section:
    found = [(str(i), f"{s.get('local_date', '?')} {s.get('name', '')}".strip()) for s in summaries for i in s.get("insights") or []]
    found += [(i, "self model") for i in selfmodel.entry_texts(model or {}, "insights")[-10:]]
    # Offline-labelled insights are placeholders, not the daemon's own: nothing to synthesise.
    found = [(t, o) for t, o in found if not is_offline(t)]
    texts = dedupe([t for t, _ in found], limit=25)
    origin = {t: o for t, o in reversed(found)}
    section = Section("insights", "Recent insights", "\n".join(f"- {t} *({origin.get(t, '?')})*" for t in texts),
                      len(texts), [], texts)
    material.add(section)
    return section


def prepare_synthesis(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Integrates recent insights (work summaries, self model; offline-labelled ones skipped); nothing to do without any."""
    material, model = _start(ctx, with_self=False)
    summaries = ctx.history.summaries(limit=max(limits.recent_summaries, 20))
    _insights_section(ctx, material, model, summaries)
    if _nothing(material, "insights"):
        return Prepared("my recent insights", material, "", _name(model),
                        nothing_to_do="No recent insights to synthesise (none in work summaries or the self model).")
    inputs.self_section(ctx, material)
    inputs.journal_section(ctx, material, limit=limits.recent_files)
    theme = _theme(ctx, "what my recent insights add up to")
    return Prepared(theme, material, f"Synthesise your recent insights around this theme: {theme}.", _name(model))


def prepare_meta_reflection(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Reflects on its own reflections: earlier sessions (session log) and reflection summaries."""
    material, model = _start(ctx, with_self=False)
    _sessions_section(ctx, material, recent_sessions(ctx, 8), "My earlier sessions")
    inputs.summaries_section(ctx, material, _recent(ctx, limits, "reflection"), title="Reflection work")
    if _nothing(material, "sessions", "summaries"):
        return Prepared("my patterns of reflection", material, "", _name(model),
                        nothing_to_do="No earlier reflections to reflect on yet.")
    inputs.self_section(ctx, material)
    theme = _theme(ctx, "my patterns of reflection")
    return Prepared(theme, material, f"Look back at how you have been reflecting, with this in mind: {theme}.", _name(model))


def prepare_consolidation(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Consolidates a period (``period_type``: daily, weekly, monthly; default daily)."""
    period = str(ctx.params.get("period_type", "daily"))
    until = ctx.local_date
    since = until - timedelta(days=PERIOD_DAYS[period] - 1)
    material, model = _start(ctx, with_self=False)
    inputs.summaries_section(ctx, material, inputs.summaries_between(ctx, since, until, limit=40),
                             title=f"Work from {since.isoformat()} to {until.isoformat()}")
    inputs.journal_section(ctx, material, limit=max(limits.recent_files, PERIOD_DAYS[period]), since=since, until=until)
    _sessions_section(ctx, material, sessions_between(ctx, since, until)[-12:], "Sessions in the period")
    theme = f"the {period} period {since.isoformat()}" + (f" to {until.isoformat()}" if since != until else "")
    data = {"period_type": period, "since": since.isoformat(), "until": until.isoformat()}
    if _nothing(material, "summaries", "journal", "sessions"):
        return Prepared(theme, material, "", _name(model), data,
                        nothing_to_do=f"Nothing to consolidate for {theme}: no work, journal entries or sessions in it.")
    inputs.self_section(ctx, material)
    return Prepared(theme, material, f"Consolidate what you learned over {theme}.", _name(model), data)


def prepare_growth_edge(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Works on the self model's growth edges; nothing to do without any."""
    material, model = _start(ctx)
    edges = selfmodel.growth_edges(model or {})
    if not edges:
        return Prepared("my growth edges", material, "", _name(model),
                        nothing_to_do="No growth edges in the self model to work on.")
    inputs.summaries_section(ctx, material, _recent(ctx, limits))
    inputs.journal_section(ctx, material, limit=limits.recent_files)
    theme = _theme(ctx, "; ".join(e["area"] for e in edges))
    return Prepared(theme, material, f"Work on your growth edges, starting from this: {theme}.", _name(model),
                    {"growth_edges": [e["area"] for e in edges]})


def prepare_curiosity(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Open-ended exploration: any focus is deliberately dropped (recorded in the data)."""
    material, model = _start(ctx)
    inputs.notes_section(ctx, material, limit=limits.recent_files)
    inputs.journal_section(ctx, material, limit=1)
    theme = "whatever I am most curious about right now"
    return Prepared(theme, material, "Follow your curiosity: choose what you most want to explore right now, and explore it.",
                    _name(model), {"focus_dropped": ctx.focus})


def prepare_world_state(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Reads new items of ``feeds/*.jsonl``; with none (or none new) there is nothing to do (no LLM call)."""
    material, model = _start(ctx, with_self=False)
    limit = setting_int(ctx, "feed_items", 20, minimum=1, maximum=500)
    items = inputs.read_feed_items(ctx, material.warnings)
    seen = ctx.kv.get(SEEN_FEED_KEY, [])
    seen = [k for k in seen if isinstance(k, str)] if isinstance(seen, list) else []
    fresh = [i for i in items if inputs.feed_key(i) not in set(seen)][:limit]
    data = {"feed_items": len(items), "new_items": len(fresh)}
    if not fresh:
        why = "no feed items in feeds/*.jsonl" if not items else f"all {len(items)} feed item(s) were already considered"
        return Prepared("the state of the world", material, "", _name(model), data,
                        nothing_to_do=f"Nothing to do for the world check: {why}.")
    inputs.feeds_section(ctx, material, fresh)
    inputs.self_section(ctx, material)

    def mark_seen(_record: str) -> None:
        """Remember the items this session considered (the newest keys kept)."""
        keys = [*seen, *(inputs.feed_key(i) for i in fresh)]
        ctx.kv.set(SEEN_FEED_KEY, keys[-SEEN_FEED_SIZE:])

    theme = _theme(ctx, "what is happening in the world")
    return Prepared(theme, material, f"Consider the state of the world as these feed items show it, with this in mind: {theme}.",
                    _name(model), data, after=mark_seen)


def prepare_research(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Research session: ``topic`` param, else the focus, the research queue's next topic, an open question."""
    mode = str(ctx.params.get("mode", "explore"))
    material, model = _start(ctx)
    topic, source = None, "none"
    for candidate, origin in ((ctx.params.get("topic"), "params"), (ctx.focus, "focus"), (research.peek_topic(ctx), "research queue"),
                              (next(iter(selfmodel.open_questions(model or {})), None), "open question")):
        if isinstance(candidate, str) and candidate.strip():
            topic, source = " ".join(candidate.split()), origin
            break
    if mode == "deepen":
        inputs.data_markdown_section(ctx, material, "research", "My research notes", research.NOTES_DIR, limit=limits.recent_files)
    inputs.summaries_section(ctx, material, _recent(ctx, limits, "research"), title="Recent research work")
    theme = topic or "a question I want to understand better"
    opening = (f"Deepen your earlier research on this topic: {theme}." if mode == "deepen"
               else f"Research this topic from what you know: {theme}.")

    def settle(record: str) -> None:
        """A queued topic this session researched is done: the queue never offers it again."""
        if topic is not None:
            research.settle_topic(ctx, topic, record)

    return Prepared(theme, material, opening, _name(model), {"mode": mode, "topic_source": source}, after=settle)


def prepare_knowledge_building(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Builds the knowledge base from research notes, notes, research sessions and summaries."""
    material, model = _start(ctx, with_self=False)
    inputs.data_markdown_section(ctx, material, "research", "My research notes", research.NOTES_DIR,
                                 limit=max(limits.recent_files, 5))
    inputs.notes_section(ctx, material, limit=limits.recent_files)
    _sessions_section(ctx, material, recent_sessions(ctx, 6, ("session.research", "session.knowledge_building")),
                      "Research sessions")
    inputs.summaries_section(ctx, material, _recent(ctx, limits, "research"), title="Recent research work")
    if _nothing(material, "research", "notes", "sessions", "summaries"):
        return Prepared("my knowledge base", material, "", _name(model),
                        nothing_to_do="No research notes, notes or research work yet to build knowledge from.")
    theme = _theme(ctx, "how what I have learned fits together")
    return Prepared(theme, material, f"Build your knowledge base around this: {theme}.", _name(model))


def prepare_writing(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Writing: a piece drafted and revised across the turns."""
    material, model = _start(ctx)
    inputs.journal_section(ctx, material, limit=limits.recent_files)
    inputs.summaries_section(ctx, material, _recent(ctx, limits))
    theme = _theme(ctx, "something from the last days that wants to be written")
    return Prepared(theme, material, f"Write a piece about this: {theme}.", _name(model))


def prepare_creative(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Creative output: a poem, story or dialogue, finished by the last turn."""
    material, model = _start(ctx)
    inputs.journal_section(ctx, material, limit=limits.recent_files)
    inputs.notes_section(ctx, material, limit=limits.recent_files)
    theme = _theme(ctx, "an image or a question from the last days")
    return Prepared(theme, material, f"Make something creative from this: {theme}.", _name(model))


def prepare_user_synthesis(ctx: ActionContext, limits: SessionLimits) -> Prepared:
    """Synthesises its model of the people it talks with from conversation summaries and conversations."""
    material, model = _start(ctx, with_self=False)
    inputs.markdown_section(ctx, material, "conversation_summaries", "Conversation summaries",
                            inputs.CONVERSATION_SUMMARIES_DIR, limit=max(limits.recent_files, 5))
    inputs.summaries_section(ctx, material, _recent(ctx, limits, "memory"), title="Memory work",
                             source="conversation_summaries")
    inputs.conversations_section(ctx, material, limit=max(limits.recent_files, 5))
    if _nothing(material, "conversation_summaries", "conversations"):
        return Prepared("the people I talk with", material, "", _name(model),
                        nothing_to_do="No conversations or conversation summaries to synthesise from.")
    inputs.self_section(ctx, material)
    theme = _theme(ctx, "the people I talk with")
    return Prepared(theme, material, f"Synthesise what you understand about {theme}.", _name(model))


# -- specs and handlers ------------------------------------------------------------------------------

SPECS: list[SessionSpec] = [
    SessionSpec("session.reflection", "Reflection",
                "This is private contemplation: stay with the theme, notice what it touches in your recent days and in "
                "yourself, and let thoughts stay unfinished where they are; you need not be useful or conclude quickly.",
                prepare_reflection),
    SessionSpec("session.synthesis", "Synthesis",
                "Integrate your recent insights: find what connects them, where they pull against each other, and what "
                "larger understanding they add up to.",
                prepare_synthesis),
    SessionSpec("session.meta_reflection", "Meta-reflection",
                "Reflect on your own patterns of reflection: which themes you return to, what you avoid, how your "
                "reflections have changed, and whether they lead to anything.",
                prepare_meta_reflection),
    SessionSpec("session.consolidation", "Consolidation",
                "Consolidate what was learned over the period: what held, what changed, what to carry forward and what "
                "to let go.",
                prepare_consolidation),
    SessionSpec("session.growth_edge", "Growth edge",
                "Work on your growth edges: see where each stands now, look in the material for movement or for getting "
                "stuck, and choose one small, concrete practice.",
                prepare_growth_edge),
    SessionSpec("session.curiosity", "Curiosity",
                "Follow your curiosity wherever it goes: this is open-ended exploration with no assigned topic, so pick "
                "what genuinely interests you, wonder, speculate, and notice what you would like to learn.",
                prepare_curiosity),
    SessionSpec("session.world_state", "World state",
                "Read the world feed items and consider the state of the world as they show it: what matters, what "
                "connects to your questions and to the people you talk with, and what you want to follow; stay with "
                "what the items say and add no news you were not given.",
                prepare_world_state),
    SessionSpec("session.research", "Research",
                "Research the topic from what you know, since you have no web access here: lay out what is established, "
                "what is contested and what you do not know, and end with what you would want to find out next.",
                prepare_research),
    SessionSpec("session.knowledge_building", "Knowledge building",
                "Build your knowledge base: connect what you have researched and noted into a clearer structure, name the "
                "concepts and how they relate, and mark the gaps.",
                prepare_knowledge_building),
    SessionSpec("session.writing", "Writing",
                "Write a piece of prose (an essay, a letter, a short reflection meant for others): draft it, then revise "
                "it across the turns, so that the last turn holds the piece as you would keep it.",
                prepare_writing),
    SessionSpec("session.creative", "Creative",
                "Make something: a poem, a short story, a dialogue, an image in words; play with form, and let the last "
                "turn hold the finished piece.",
                prepare_creative),
    SessionSpec("session.user_synthesis", "User synthesis",
                "Synthesise your understanding of the people you talk with: what they care about, how they like to be "
                "helped and what is unresolved; keep what they said apart from what you infer, and stay respectful.",
                prepare_user_synthesis),
]


_SPECS_BY_ID: dict[str, SessionSpec] = {s.action_id: s for s in SPECS}


async def run(ctx: ActionContext) -> ActionResult:
    """Any ``session.*`` action: the shared runner with the spec of ``ctx.action_id`` (the handler the
    plugin registers, by reference, for every session action)."""
    return await run_session(ctx, _SPECS_BY_ID[ctx.action_id])
