"""Handler of ``journal.weekly_review``: a look back over the daily entries of the last seven finished days."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from pydantic import BaseModel

from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult
from cass_actions_core.llm.errors import LLMError

from cass_actions_journal.daily import last_finished_day
from cass_actions_journal.sources import Entry, parse_day, read_entry, system_prompt
from cass_actions_journal.text import OFFLINE_LABEL, bullets, clip, keywords, render_front_matter, unique

#: Folder (inside the pack's data folder) of the weekly reviews.
WEEKLY_DIR = "weekly"
#: Prompt budget (characters) for the week's entries.
WEEK_MATERIAL_CHARS = 14_000


class WeekPatterns(BaseModel):
    """What the first turn of a weekly review returns."""

    patterns: list[str]
    high_points: list[str]
    questions: list[str]
    intentions: list[str]


def week_label(day: date) -> str:
    """The ISO week of ``day``: ``2026-W02``."""
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def offline_patterns(entries: list[Entry]) -> WeekPatterns:
    """Patterns from words several entries share, their titles, their questions (the offline provider's answer)."""
    counts: Counter[str] = Counter()
    for e in entries:
        counts.update(keywords(" ".join([e.prose, *e.insights, *e.questions])))
    shared = [w for w, n in counts.most_common() if n > 1][:4]
    patterns = [f"{OFFLINE_LABEL} \u201c{w}\u201d came up on {counts[w]} of {len(entries)} days" for w in shared]
    highs = [f"{e.day:%A}: {e.title.removeprefix(OFFLINE_LABEL).strip()}" for e in entries][:5]
    questions = unique([q for e in entries for q in e.questions], 4)
    intentions = [f"{OFFLINE_LABEL} Come back to: {q}" for q in questions[:2]]
    return WeekPatterns(patterns=patterns, high_points=highs, questions=questions, intentions=intentions)


def review_end(ctx: ActionContext) -> date:
    """The last day reviewed: the ``date`` parameter, else the latest finished day.

    The latest finished day is :func:`~cass_actions_journal.daily.last_finished_day`, the
    same day ``journal.generate_daily`` writes: in the night phase of D it is D itself, so
    a review on Sunday night covers Monday to Sunday. A ``date`` later than that day is
    refused: its entry cannot exist yet.
    """
    latest = last_finished_day(ctx)
    if ctx.params.get("date"):
        end = parse_day(ctx.params["date"])
        if end > latest:
            raise ActionFailed(f"parameter 'date' {end.isoformat()} is not over yet (the latest finished day is "
                               f"{latest.isoformat()})")
        return end
    return latest


async def weekly_review(ctx: ActionContext) -> ActionResult:
    """``journal.weekly_review``: review the daily entries of the seven days ending on the latest finished day (or ``date``).

    A bounded two-turn session: turn one draws out patterns, high points, open questions
    and intentions (structured), turn two writes the review's prose. Written to
    ``weekly/<ISO year>-W<week>.md``, named after the ISO week of the last day reviewed;
    once per week. Nothing to do (no call) when that file exists or no entry was written
    in those seven days.
    """
    end = review_end(ctx)
    days = [end - timedelta(days=i) for i in range(6, -1, -1)]
    label = week_label(end)
    relative = f"{WEEKLY_DIR}/{label}.md"
    if (ctx.data_dir / relative).exists():
        return ActionResult(summary=f"The weekly review {label} is already written ({relative}); nothing to do.",
                            data={"week": label, "path": relative, "written": False})
    entries = [e for e in (read_entry(ctx.data_dir, d) for d in days) if e is not None]
    if not entries:
        return ActionResult(summary=f"No journal entry from {days[0].isoformat()} to {end.isoformat()}; nothing to review.",
                            data={"week": label, "path": None, "written": False})
    budget = max(1_000, WEEK_MATERIAL_CHARS // len(entries))
    material = "\n\n".join(e.render(budget) for e in entries)
    system = system_prompt(ctx.workspace, "You are looking back over a week of your own journal, honestly and kindly.")
    ask = (f"Here are my journal entries from {days[0].isoformat()} to {end.isoformat()} ({len(entries)} of 7 days).\n\n"
           f"{material}\n\nReturn patterns (up to 4 things that recurred), high_points (up to 5), questions (up to 4 still "
           "open) and intentions (up to 3 for the coming week).")
    draft = await ctx.llm.structured(ask, WeekPatterns, system=system, max_tokens=1_000,
                                     offline=lambda: offline_patterns(entries))
    try:
        reply = await ctx.llm.complete(
            [{"role": "user", "content": ask}, {"role": "assistant", "content": draft.model_dump_json()},
             {"role": "user", "content": "Now write the review itself: two or three short paragraphs in the first person "
                                         "about how the week went and what I want to carry into the next one."}],
            system=system, max_tokens=1_000)
        review, review_error = reply.text.strip(), None
    except LLMError as exc:
        # The first turn's findings are real and paid for: keep them, say what is missing.
        review, review_error = f"(The review's prose could not be written: {exc.kind}.)", str(exc)
    sections = {"Patterns": unique(draft.patterns, 4), "High points": unique(draft.high_points, 5),
                "Open questions": unique(draft.questions, 4), "Intentions": unique(draft.intentions, 3)}
    parts = [render_front_matter({"week": label, "from": days[0].isoformat(), "to": end.isoformat(),
                                  "entries": [e.day.isoformat() for e in entries], "written_at": ctx.now().isoformat()}),
             f"# Week {label}: {days[0].isoformat()} to {end.isoformat()}\n", review + "\n"]
    parts += [f"## {heading}\n\n{bullets(items)}\n" for heading, items in sections.items() if items]
    parts.append("## Entries\n\n" + bullets(f"{e.day:%A} {e.day.isoformat()}: {e.title}" for e in entries) + "\n")
    path = ctx.write_text(relative, "\n".join(parts))
    ctx.add_artifact("markdown", f"Weekly review {label}", path)
    return ActionResult(
        summary=f"Wrote the weekly review {label} ({relative}) from {len(entries)} daily entr{'y' if len(entries) == 1 else 'ies'}.",
        data={"week": label, "path": relative, "written": True, "entries": [e.day.isoformat() for e in entries],
              "review_error": review_error},
        insights=[clip(p, 300) for p in sections["Patterns"][:3]], questions=[clip(q, 300) for q in sections["Open questions"][:3]],
    )
