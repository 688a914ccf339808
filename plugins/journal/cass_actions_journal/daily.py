"""Handler of ``journal.generate_daily``: the journal entry for a day that is over."""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import BaseModel

from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult
from cass_actions_core.text import OFFLINE_LABEL, bullets, clip, first_sentence, label_offline, render_front_matter, unique

from cass_actions_journal.sources import DayMaterial, entry_relpath, material_for, parse_day, system_prompt
from cass_actions_journal.text import offline_items, unlabelled

#: Output tokens allowed for an entry.
ENTRY_MAX_TOKENS = 1_500
#: Event emitted when an entry is written.
ENTRY_CREATED = "journal.entry_created"


class JournalEntry(BaseModel):
    """What the LLM returns for a day's entry."""

    title: str
    entry: str
    insights: list[str]
    questions: list[str]


def offline_entry(material: DayMaterial) -> JournalEntry:
    """An entry assembled from the day's material itself (the offline provider's answer).

    Everything in it is labelled offline, list items included. The insights and questions
    are picked from the day's own lists (work units' insights, conversations' key points
    and questions); an item that arrives once labelled and once not (the memory pack's
    offline key point and the same point reported as its unit's insight) is kept once.
    """
    day = material.day
    done = sum(1 for w in material.work if w.status == "completed")
    paragraphs = []
    if material.work:
        lines = [f"{OFFLINE_LABEL} On {day:%A} I worked on {len(material.work)} thing(s) and finished {done}."]
        lines += [f"In the {w.phase} I did {w.name} ({w.status}): {first_sentence(w.text, 240)}" for w in material.work]
        paragraphs.append(" ".join(lines))
    if material.conversations:
        talks = "; ".join(f"\u201c{unlabelled(c.title)}\u201d \u2014 " + first_sentence(
            unlabelled(c.key_points[0]) if c.key_points else unlabelled(c.summary), 200).rstrip(".!?")
            for c in material.conversations)
        opening = "I" if material.work else f"{OFFLINE_LABEL} On {day:%A} I"
        paragraphs.append(f"{opening} talked with people about: {talks}.")
    insights = offline_items([*(i for w in material.work for i in w.insights),
                              *(k for c in material.conversations for k in c.key_points)], 3)
    questions = offline_items([*(q for w in material.work for q in w.questions),
                               *(q for c in material.conversations for q in c.open_questions)], 3)
    return JournalEntry(title=label_offline(f"{day:%A} {day.isoformat()}"), entry="\n\n".join(paragraphs),
                        insights=insights, questions=questions)


def render_entry(material: DayMaterial, draft: JournalEntry, written_at: str) -> str:
    """The entry file: front matter, title, text, insights and questions."""
    front = render_front_matter({
        "date": material.day.isoformat(), "title": clip(draft.title, 120), "written_at": written_at,
        "work_units": len(material.work), "conversations": [c.conversation_id for c in material.conversations],
    })
    parts = [front, f"# {clip(draft.title, 120)}\n", draft.entry.strip() + "\n"]
    if draft.insights:
        parts.append("## Insights\n\n" + bullets(draft.insights) + "\n")
    if draft.questions:
        parts.append("## Questions\n\n" + bullets(draft.questions) + "\n")
    return "\n".join(parts)


def last_finished_day(ctx: ActionContext) -> date:
    """The latest plan day whose waking phases are over.

    In the night phase of day D (22:00 to 06:00 by default) that is D itself: its
    morning, afternoon and evening are done. Earlier in a day it is the day before.
    """
    return ctx.local_date if ctx.phase == "night" else ctx.local_date - timedelta(days=1)


def target_day(ctx: ActionContext) -> date:
    """The day to write: the ``date`` parameter, else :func:`last_finished_day`.

    A day that is not over yet is refused: writing it early would mark it done and
    keep the real entry from ever being written.
    """
    latest = last_finished_day(ctx)
    if ctx.params.get("date"):
        day = parse_day(ctx.params["date"])
        if day > latest:
            raise ActionFailed(f"parameter 'date' {day.isoformat()} is not over yet (the latest finished day is "
                               f"{latest.isoformat()}); entries are written for finished days")
        return day
    return latest


async def generate_daily(ctx: ActionContext) -> ActionResult:
    """``journal.generate_daily``: write ``<data_dir>/<YYYY-MM-DD>.md`` for the last finished day (or ``date``).

    Reads the day's work summaries and, when the memory pack publishes them, the day's
    conversation summaries; one structured LLM call in the daemon's voice. Idempotent:
    a day whose entry exists is not written again and costs nothing. A day with no work
    summary and no conversation is not written either (nothing to do, no call), so no
    empty entry blocks a later, real one. Emits ``journal.entry_created``.
    """
    day = target_day(ctx)
    relative = entry_relpath(day)
    if (ctx.data_dir / relative).exists():
        return ActionResult(summary=f"The journal entry for {day.isoformat()} is already written ({relative}); nothing to do.",
                            data={"date": day.isoformat(), "path": relative, "written": False})
    material = material_for(ctx, day)
    if material.empty:
        return ActionResult(summary=f"No work summary and no conversation recorded for {day.isoformat()}; "
                                    "no entry written (nothing to do).",
                            data={"date": day.isoformat(), "path": None, "written": False})
    system = system_prompt(ctx.workspace, "You keep a private journal. Write honestly, in the first person, "
                                          "about what the day held; do not invent events that are not in the notes.",
                           ctx.logger)
    prompt = (f"Write my journal entry for {day:%A} {day.isoformat()} from these notes about the day.\n\n{material.render()}\n\n"
              "Return title (a few words), entry (three to five short paragraphs of markdown prose), insights (up to 3 "
              "things I learned) and questions (up to 3 questions the day left me with).")
    draft = await ctx.llm.structured(prompt, JournalEntry, system=system, max_tokens=ENTRY_MAX_TOKENS,
                                     offline=lambda: offline_entry(material))
    draft = JournalEntry(title=draft.title.strip() or f"{day:%A} {day.isoformat()}", entry=draft.entry,
                         insights=unique(draft.insights, 3), questions=unique(draft.questions, 3))
    path = ctx.write_text(relative, render_entry(material, draft, ctx.now().isoformat()))
    artifact = ctx.add_artifact("markdown", f"Journal {day.isoformat()}", path)
    ctx.emit(ENTRY_CREATED, {"date": day.isoformat(), "path": artifact.path, "title": clip(draft.title, 120),
                             "work_units": len(material.work), "conversations": len(material.conversations)})
    return ActionResult(
        summary=f"Wrote the journal entry for {day.isoformat()} ({relative}) from {len(material.work)} work unit(s) "
                f"and {len(material.conversations)} conversation(s).",
        data={"date": day.isoformat(), "path": relative, "written": True, "title": clip(draft.title, 120),
              "work_units": len(material.work), "conversations": [c.conversation_id for c in material.conversations]},
        insights=draft.insights, questions=draft.questions,
    )
