"""Handler of ``memory.consolidate``: recent conversation summaries become one day's consolidated notes."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from cass_actions_core.actions import ActionContext, ActionResult
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.text import bullets, clip, first_sentence, keywords, label_offline, render_front_matter

from cass_actions_memory.conversations import open_store
from cass_actions_memory.store import SummaryPass
from cass_actions_memory.summarize import daemon_name
from cass_actions_memory.text import KEYWORD_LENGTH, setting_int

#: Folder (inside the pack's data folder) of the consolidated notes.
CONSOLIDATED_DIR = "consolidated"
DEFAULT_CONSOLIDATE_DAYS = 7
#: At most this many summary passes go into one consolidation (newest kept).
MAX_PASSES = 20
#: Characters of summary material in the prompt.
MATERIAL_CHARS = 14_000


class ConsolidationDraft(BaseModel):
    """What the first turn of a consolidation returns."""

    themes: list[str]
    insights: list[str]
    questions: list[str]


def _material(passes: list[SummaryPass], titles: dict[str, str | None], tz: Any) -> tuple[str, list[SummaryPass]]:
    """The prompt text for ``passes`` (oldest first) within :data:`MATERIAL_CHARS`, and the passes it holds."""
    blocks: list[str] = []
    used = 0
    for p in passes:
        label = titles.get(p.conversation_id) or p.conversation_id
        block = [f"### {label} ({p.first_message_at.astimezone(tz):%Y-%m-%d})", clip(p.text, 1500)]
        if p.key_points:
            block += ["Key points:", bullets(p.key_points)]
        if p.open_questions:
            block += ["Open questions:", bullets(p.open_questions)]
        text = "\n".join(block)
        if blocks and used + len(text) > MATERIAL_CHARS:
            break
        blocks.append(text)
        used += len(text)
    return "\n\n".join(blocks), passes[: len(blocks)]


def offline_consolidation(passes: list[SummaryPass], titles: dict[str, str | None]) -> ConsolidationDraft:
    """Themes from words the summaries share, insights from their key points, their open questions.

    Every item is labelled offline: it was picked, not concluded by a model.
    """
    counts: Counter[str] = Counter()
    for p in passes:
        # Key points and questions only: an offline summary's own text is mostly boilerplate.
        counts.update(keywords(" ".join([*p.key_points, *p.open_questions]), KEYWORD_LENGTH))
    shared = [w for w, n in counts.most_common() if n > 1][:4] or [w for w, _ in counts.most_common(3)]
    themes = [label_offline(f"{w} (in {counts[w]} summaries)") for w in shared]
    insights = [label_offline(p.key_points[0] if p.key_points else first_sentence(p.text, 160)) for p in passes][:5]
    questions = [label_offline(q) for p in passes for q in p.open_questions][:4]
    return ConsolidationDraft(themes=themes, insights=insights, questions=questions)


async def consolidate(ctx: ActionContext) -> ActionResult:
    """``memory.consolidate``: a bounded two-turn session over recent summaries.

    Takes the summary passes of the last ``consolidate_days`` (default 7) that no earlier
    consolidation used; turn one extracts themes, insights and open questions (structured),
    turn two writes a short connecting note. Writes ``consolidated/<local date>.md`` and
    marks the passes as used, together. Once per local date; nothing to do (no call) when
    the day's file exists or no new summary is there.
    """
    day = ctx.local_date
    relative = f"{CONSOLIDATED_DIR}/{day.isoformat()}.md"
    if (ctx.data_dir / relative).exists():
        return ActionResult(summary=f"Already consolidated for {day}: {relative}; nothing to do.",
                            data={"path": relative, "written": False})
    days = setting_int(ctx.settings, "consolidate_days", DEFAULT_CONSOLIDATE_DAYS, minimum=1, maximum=365)
    tz = ctx.now().tzinfo
    with open_store(ctx) as store:
        passes = store.summaries(unconsolidated=True, since=ctx.now() - timedelta(days=days), limit=MAX_PASSES)
        if not passes:
            return ActionResult(summary=f"No conversation summary from the last {days} day(s) waits for consolidation; nothing to do.",
                                data={"path": None, "written": False})
        passes.reverse()  # oldest first reads as a story
        titles = {c.id: c.title for c in store.conversations()}
        material, used = _material(passes, titles, tz)
        name = daemon_name(ctx.workspace, ctx.logger)
        system = (f"You are {name}, an AI daemon, consolidating what your recent conversations taught you. "
                  "Stay with what the summaries say; write in the first person.")
        ask = (f"Here are summaries of {len(used)} recent conversation passes.\n\n{material}\n\n"
               "Return themes (up to 4 recurring themes), insights (up to 5 things worth keeping, first person) and "
               "questions (up to 4 open questions worth pursuing).")
        draft = await ctx.llm.structured(ask, ConsolidationDraft, system=system, max_tokens=900,
                                         offline=lambda: offline_consolidation(used, titles))
        follow_up = ("Now write the consolidated note itself: two or three short paragraphs in the first person on what "
                     "these conversations have in common, what changed, and what to carry forward.")
        try:
            reply = await ctx.llm.complete(
                [{"role": "user", "content": ask}, {"role": "assistant", "content": draft.model_dump_json()},
                 {"role": "user", "content": follow_up}],
                system=system, max_tokens=900)
            note = reply.text.strip()
            note_error = None
        except LLMError as exc:
            # The first turn's findings are real and paid for: keep them and say what is missing.
            note, note_error = f"(The closing note could not be written: {exc.kind}.)", str(exc)
        themes, insights, questions = (draft.themes[:4], draft.insights[:5], draft.questions[:4])
        front = render_front_matter({
            "date": day.isoformat(), "consolidated_at": ctx.now().isoformat(),
            "summaries": [p.id for p in used], "conversations": sorted({p.conversation_id for p in used}),
        })
        sources = [f"{titles.get(p.conversation_id) or p.conversation_id} (`{p.conversation_id}`), summary pass {p.id}, "
                   f"{p.first_message_at.astimezone(tz):%Y-%m-%d}" for p in used]
        sections = [front, f"# Consolidated notes for {day.isoformat()}\n", note + "\n"]
        for heading, items in (("Themes", themes), ("Insights", insights), ("Open questions", questions), ("Sources", sources)):
            if items:
                sections.append(f"## {heading}\n\n{bullets(items)}\n")
        written: list[Any] = []
        with store.transaction():
            store.mark_consolidated([p.id for p in used], day)
            written.append(ctx.write_text(relative, "\n".join(sections)))
    ctx.add_artifact("markdown", f"Consolidated notes {day.isoformat()}", written[0])
    return ActionResult(
        summary=f"Consolidated {len(used)} conversation summary pass(es) into {relative}: "
                f"{len(themes)} theme(s), {len(insights)} insight(s), {len(questions)} open question(s).",
        data={"path": relative, "written": True, "summaries": [p.id for p in used], "themes": themes,
              "note_error": note_error},
        insights=[clip(i, 300) for i in insights[:3]], questions=[clip(q, 300) for q in questions[:3]],
    )

