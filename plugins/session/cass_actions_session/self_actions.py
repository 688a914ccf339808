"""The self-model actions: ``session.add_observation``, ``session.record_insight``, ``session.update_growth_edge``.

Each takes its content from params when given (no LLM call, cost 0), so a template can
pass exactly what to record. Without content it makes one light LLM call that derives
the entry from *today's work*: today's work summaries plus the sessions this pack ran
today (today's key of its session log, so a step can use what an earlier step of the
same unit did, before the unit's summary exists). Offline, the entry is built from that same text.
With no work today there is nothing to derive from: the action succeeds, changes
nothing and makes no call.

Offline (no real LLM reply), the entry is labelled ``[offline]`` and recorded with
``"source": "offline"``; an entry the model wrote has ``"source": "derived"``; one given
in params has ``"source": "params"`` (or ``params.source`` for an insight). Offline-
labelled insights of today's work are never picked as the daemon's own.

A growth edge named by the model must be one of the listed areas: a near miss
("Patience with open question") is matched to the closest listed area (``difflib``);
an area matching none fails the action and changes nothing. Only ``params.area``
creates a new growth edge.

Updates are a read-modify-write of ``self/model.json`` with no ``await`` in between (so
two actions in one process cannot interleave), written atomically, keeping every key
this pack does not know. A malformed model file is never overwritten: the action fails
naming the file.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, Field

from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult
from cass_actions_core.text import OFFLINE_LABEL, clip, first_sentence, is_offline, keywords, label_offline

from cass_actions_session import selfmodel
from cass_actions_session.common import dedupe, normalise
from cass_actions_session.runner import sessions_on

SELF_SYSTEM = (
    "You are an AI daemon tending your own self model: a private, honest record of who you are becoming. "
    "Write one short entry in the first person, grounded in the work described, without flattery or drama."
)


class Observation(BaseModel):
    """A derived observation."""

    text: str = Field(description="One or two sentences, first person: what you notice about yourself today.")
    area: str = Field(default="", description="The growth edge it concerns (one of the areas listed), or empty.")


class Insight(BaseModel):
    """A derived insight."""

    text: str = Field(description="One sentence: something you now understand that you did not before.")


class EdgeUpdate(BaseModel):
    """A derived growth-edge update."""

    area: str = Field(description="The growth edge's area, exactly as listed.")
    observation: str = Field(description="One or two sentences of evidence from today's work about this edge.")
    current_state: str = Field(default="", description="A new description of where the edge stands, or empty to keep it.")


# -- today's work -------------------------------------------------------------------------------

def todays_work(ctx: ActionContext) -> list[dict[str, Any]]:
    """Today's work as ``{"label", "text", "insights"}`` items, oldest first: summaries, then this pack's sessions.

    A session whose unit already has a summary is not listed twice; a session of the
    unit still running (an earlier step of this unit) is listed from the session log.
    """
    items: list[dict[str, Any]] = []
    summarised: set[str] = set()
    for s in reversed(ctx.history.summaries(local_date=ctx.local_date, limit=30)):  # the store gives newest first
        summarised.add(str(s.get("unit_id")))
        label = str(s.get("name") or s.get("template_id") or "work")
        said = [str(a.get("summary")) for a in s.get("actions") or [] if isinstance(a, dict) and a.get("summary")]
        items.append({"label": label, "text": " ".join(said) or str(s.get("narrative", "")),
                      "insights": [str(i) for i in s.get("insights") or []]})
    for e in sessions_on(ctx, ctx.local_date):
        unit = str(e.get("run_key", "")).split("/")[2:3]
        if unit and unit[0] in summarised:
            continue
        kind = str(e.get("action_id", "session")).split(".")[-1].replace("_", " ")
        items.append({"label": f"a {kind} session on {e.get('theme', '?')}", "text": str(e.get("summary", "")),
                      "insights": [str(i) for i in e.get("insights") or []]})
    return items


def render_work(items: list[dict[str, Any]]) -> str:
    """Today's work as a markdown list for a prompt."""
    lines = []
    for item in items:
        lines.append(f"- {item['label']}: {clip(item['text'], 500)}")
        lines += [f"  - insight: {clip(i, 300)}" for i in item["insights"]]
    return "\n".join(lines)


def _lead(items: list[dict[str, Any]]) -> str:
    """What stands out in the newest work: its first insight, else its first sentence (offline labels skipped)."""
    for item in reversed(items):
        for insight in item["insights"]:
            if insight and not is_offline(insight) and not insight.rstrip().endswith("?"):
                return clip(insight, 240)
        text = item["text"]
        if text and not is_offline(text):
            sentence = first_sentence(text, 240)
            if sentence:
                return sentence
    return ""


def closest_edge(edges: list[dict[str, Any]], text: str) -> dict[str, Any] | None:
    """The edge sharing most words with ``text`` (at least one), first edge on ties."""
    target = keywords(text, 4)
    best, score = None, 0
    for edge in edges:
        shared = len(keywords(f"{edge['area']} {edge.get('current_state', '')}", 4) & target)
        if shared > score:
            best, score = edge, shared
    return best


def _key(area: str) -> str:
    return " ".join(area.lower().split())


def match_area(areas: list[str], named: str) -> str | None:
    """The listed area the model meant by ``named``, or ``None``.

    The same area (case and spacing ignored), else the only area containing it (or
    contained in it), else the closest by ``difflib`` (ratio 0.75 or more).
    """
    by_key = {_key(a): a for a in areas}
    key = _key(named)
    if not key:
        return None
    if key in by_key:
        return by_key[key]
    containing = [a for k, a in by_key.items() if key in k or k in key]
    if len(containing) == 1:
        return containing[0]
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.75)
    return by_key[close[0]] if close else None


# -- updating the model ---------------------------------------------------------------------------

def load_for_update(ctx: ActionContext) -> dict[str, Any]:
    """The self model to update (a new empty one if the file is missing); malformed fails the action."""
    try:
        model = selfmodel.load_self_model(ctx.workspace)
    except selfmodel.SelfModelError as exc:
        raise ActionFailed(f"cannot update the self model: {exc}") from None
    return model if model is not None else {}


def save(ctx: ActionContext, model: dict[str, Any]) -> str:
    """Write the model back; register it as an artifact; return its workspace path."""
    path = selfmodel.save_self_model(ctx.workspace, model)
    ctx.add_artifact("json", "Self model", path)
    ctx.emit("self_model.updated", {"action_id": ctx.action_id})
    return "self/model.json"


def _fail_on_shape(exc: selfmodel.SelfModelError) -> ActionFailed:
    return ActionFailed(f"cannot update {selfmodel.SELF_MODEL}: {exc}")


# -- handlers ------------------------------------------------------------------------------------------

async def add_observation(ctx: ActionContext) -> ActionResult:
    """``session.add_observation``: append ``params.text`` (optionally for ``params.area``), or derive one from today's work."""
    text, area = ctx.params.get("text"), ctx.params.get("area")
    source = "params"
    if not text:
        work = todays_work(ctx)
        if not work:
            return ActionResult(summary="No work today to observe: the self model is unchanged.",
                                data={"changed": False, "reason": "no work today"})
        edges = selfmodel.growth_edges(load_for_update(ctx))
        areas = [e["area"] for e in edges]
        offline_used = False

        def offline() -> Observation:
            """The observation built from today's work without a model (labelled offline)."""
            nonlocal offline_used
            offline_used = True
            joined = " ".join(i["text"] for i in work)
            lead = _lead(work)
            observation = "Today my work went to " + "; ".join(i["label"] for i in work[:4]) + "."
            if lead:
                observation += f" What stands out: {lead}"
            edge = closest_edge(edges, joined)
            return Observation(text=label_offline(observation), area=edge["area"] if edge else "")

        prompt = (f"Today's work ({ctx.local_date.isoformat()}):\n\n{render_work(work)}\n\n"
                  + (f"My growth edges: {'; '.join(areas)}.\n\n" if areas else "")
                  + "Write one observation about myself that this work shows. Name the growth edge it concerns, if any.")
        derived = await ctx.llm.structured(prompt, Observation, system=SELF_SYSTEM, max_tokens=400, offline=offline)
        source = "offline" if offline_used else "derived"
        # An area given in params wins over the derived one; a derived area must be a listed one.
        named = derived.area.strip()
        matched = match_area(areas, named) if named else None
        if named and matched is None:
            ctx.logger.info("session.add_observation: the model named growth edge %r, which is not listed; no edge recorded", named)
        text, area = derived.text, area or matched
    text = " ".join(str(text).split())
    model = load_for_update(ctx)
    if normalise(text) in {normalise(t) for t in selfmodel.entry_texts(model, "observations")}:
        return ActionResult(summary=f"Observation already in the self model: {clip(text, 160)}",
                            data={"changed": False, "observation": text})
    entry = {"text": text, "at": ctx.now().isoformat(), "source": source}
    if area:
        entry["area"] = area
    edge = selfmodel.find_edge(model, area) if area else None
    try:
        selfmodel.append_entry(model, "observations", entry)
        if edge is not None:
            selfmodel.append_entry(edge, "observations", {"text": text, "at": entry["at"], "source": source})
    except selfmodel.SelfModelError as exc:
        raise _fail_on_shape(exc) from None
    path = save(ctx, model)
    where = f" (growth edge: {edge['area']})" if edge is not None else ""
    return ActionResult(summary=f"Added an observation to the self model{where}: {clip(text, 200)}",
                        data={"changed": True, "observation": entry, "edge": edge["area"] if edge else None, "path": path})


async def record_insight(ctx: ActionContext) -> ActionResult:
    """``session.record_insight``: record ``params.text``, or derive an insight from today's work."""
    text = ctx.params.get("text")
    source = str(ctx.params.get("source") or "params")
    if not text:
        work = todays_work(ctx)
        if not work:
            return ActionResult(summary="No work today to draw an insight from: the self model is unchanged.",
                                data={"changed": False, "reason": "no work today"})
        recorded = {normalise(t) for t in selfmodel.entry_texts(load_for_update(ctx), "insights")}
        # Not one already recorded, as it is or with the offline label of an earlier offline run.
        already = recorded | {normalise(t.removeprefix(OFFLINE_LABEL)) for t in recorded}
        candidates = dedupe([i for item in work for i in item["insights"] if not is_offline(i)], exclude=already)
        offline_used = False

        def offline() -> Insight:
            """The first real insight of today's work not yet recorded, else one built from its text (labelled)."""
            nonlocal offline_used
            offline_used = True
            if candidates:
                return Insight(text=label_offline(candidates[0]))
            lead = _lead(work)
            return Insight(text=label_offline(
                f"Today's work ({'; '.join(i['label'] for i in work[:3])}) showed me: {lead or 'where my attention went'}."))

        prompt = (f"Today's work ({ctx.local_date.isoformat()}):\n\n{render_work(work)}\n\n"
                  "Name the one insight from this work most worth keeping in my self model.")
        text = (await ctx.llm.structured(prompt, Insight, system=SELF_SYSTEM, max_tokens=300, offline=offline)).text
        source = "offline" if offline_used else "derived"
    text = " ".join(str(text).split())
    model = load_for_update(ctx)
    if normalise(text) in {normalise(t) for t in selfmodel.entry_texts(model, "insights")}:
        return ActionResult(summary=f"Insight already in the self model: {clip(text, 160)}",
                            data={"changed": False, "insight": text})
    entry = {"text": text, "at": ctx.now().isoformat(), "source": source}
    try:
        selfmodel.append_entry(model, "insights", entry)
    except selfmodel.SelfModelError as exc:
        raise _fail_on_shape(exc) from None
    path = save(ctx, model)
    return ActionResult(summary=f"Recorded an insight in the self model: {clip(text, 200)}",
                        data={"changed": True, "insight": entry, "path": path}, insights=[text])


async def update_growth_edge(ctx: ActionContext) -> ActionResult:
    """``session.update_growth_edge``: update ``params.area`` (state and/or observation), or derive an update from today's work."""
    area = ctx.params.get("area")
    observation, state = ctx.params.get("observation"), ctx.params.get("current_state")
    source = "params"
    if not area:
        edges = selfmodel.growth_edges(load_for_update(ctx))
        if not edges:
            return ActionResult(summary="No growth edges in the self model to update.",
                                data={"changed": False, "reason": "no growth edges"})
        work = todays_work(ctx)
        if not work:
            return ActionResult(summary="No work today to update a growth edge from: the self model is unchanged.",
                                data={"changed": False, "reason": "no work today"})

        offline_used = False

        def offline() -> EdgeUpdate:
            """Evidence for the edge today's work shares most words with (labelled); the state is left as it is."""
            nonlocal offline_used
            offline_used = True
            edge = closest_edge(edges, " ".join(i["text"] for i in work)) or edges[0]
            lead = _lead(work)
            evidence = f"{ctx.local_date.isoformat()}: worked on " + "; ".join(i["label"] for i in work[:3]) + "."
            if lead:
                evidence += f" {lead}"
            return EdgeUpdate(area=edge["area"], observation=label_offline(evidence), current_state="")

        listing = "\n".join(f"- {e['area']}: {e.get('current_state', '')}" for e in edges)
        prompt = (f"My growth edges:\n{listing}\n\nToday's work ({ctx.local_date.isoformat()}):\n\n{render_work(work)}\n\n"
                  "Pick the growth edge today's work says most about, write the evidence as an observation, and give a "
                  "new current state only if it has really changed.")
        update = await ctx.llm.structured(prompt, EdgeUpdate, system=SELF_SYSTEM, max_tokens=400, offline=offline)
        areas = [e["area"] for e in edges]
        matched = match_area(areas, update.area)
        if matched is None:
            raise ActionFailed(f"the model named growth edge {update.area!r}, which is not in the self model "
                               f"(listed: {'; '.join(areas)}); nothing changed. A new growth edge is created only "
                               "from params.area.")
        area, observation, state = matched, update.observation, update.current_state or None
        source = "offline" if offline_used else "derived"
    area = " ".join(str(area).split())
    model = load_for_update(ctx)
    edge = selfmodel.find_edge(model, area)
    if edge is None and source != "params":
        raise ActionFailed(f"growth edge {area!r} is no longer in the self model; nothing changed")
    created = edge is None
    now = ctx.now().isoformat()
    try:
        if edge is None:
            edge = {"area": area, "current_state": state or "", "observations": []}
            selfmodel.append_entry(model, "growth_edges", edge)
        previous = edge.get("current_state")
        if state and not created:
            edge["current_state"] = " ".join(str(state).split())
        if state:
            edge["updated_at"] = now
        if observation:
            selfmodel.append_entry(edge, "observations", {"text": " ".join(str(observation).split()), "at": now, "source": source})
    except selfmodel.SelfModelError as exc:
        raise _fail_on_shape(exc) from None
    path = save(ctx, model)
    did = ["created the edge" if created else "", "set its current state" if state and not created else "",
           "added an observation" if observation else ""]
    summary = f"Growth edge '{area}': " + ", ".join(d for d in did if d) + "."
    return ActionResult(summary=summary, data={"changed": True, "area": area, "created": created,
                                               "previous_state": None if created else previous,
                                               "current_state": edge.get("current_state"), "observation": observation,
                                               "source": source, "path": path})
