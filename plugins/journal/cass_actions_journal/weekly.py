"""Handler of ``journal.weekly_review``: a look back over the daily entries of one ISO week (Monday to Sunday)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel

from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.text import (
    OFFLINE_LABEL,
    bullets,
    clip,
    keywords,
    label_offline,
    parse_front_matter,
    render_front_matter,
    section_items,
    unique,
)

from cass_actions_journal.daily import last_finished_day
from cass_actions_journal.sources import Entry, parse_day, read_entry, system_prompt
from cass_actions_journal.text import offline_items, unlabelled

#: Folder (inside the pack's data folder) of the weekly reviews.
WEEKLY_DIR = "weekly"
#: Prompt budget (characters) for the week's entries.
WEEK_MATERIAL_CHARS = 14_000
#: Output tokens of each turn.
TURN_MAX_TOKENS = 1_000
#: The front matter key that marks a review whose prose is still missing (a later run fills it in).
PROSE_ERROR = "prose_error"
#: The review's sections: heading -> (WeekPatterns field, most items kept).
SECTIONS: dict[str, tuple[str, int]] = {
    "Patterns": ("patterns", 4), "High points": ("high_points", 5),
    "Open questions": ("questions", 4), "Intentions": ("intentions", 3),
}
WRITE_PROSE = ("Now write the review itself: two or three short paragraphs in the first person "
               "about how the week went and what I want to carry into the next one.")


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
    """Patterns from words several entries share, their titles, their questions (the offline provider's answer).

    Every item is labelled offline, the ones copied from the entries too (once each).
    """
    counts: Counter[str] = Counter()
    for e in entries:
        counts.update(keywords(" ".join([e.prose, *e.insights, *e.questions])))
    shared = [w for w, n in counts.most_common() if n > 1][:4]
    patterns = [f"{OFFLINE_LABEL} \u201c{w}\u201d came up on {counts[w]} of {len(entries)} days" for w in shared]
    highs = offline_items((f"{e.day:%A}: {unlabelled(e.title)}" for e in entries), 5)
    questions = offline_items((q for e in entries for q in e.questions), 4)
    intentions = [label_offline(f"Come back to: {unlabelled(q)}") for q in questions[:2]]
    return WeekPatterns(patterns=patterns, high_points=highs, questions=questions, intentions=intentions)


@dataclass(frozen=True)
class Week:
    """The ISO week a run reviews and the days of it that are over."""

    monday: date
    end: date  # the last day covered: the Sunday, or (``date`` given) the latest finished day

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    @property
    def complete(self) -> bool:
        return self.end >= self.sunday

    @property
    def label(self) -> str:
        return week_label(self.monday)

    @property
    def days(self) -> list[date]:
        return [self.monday + timedelta(days=i) for i in range((self.end - self.monday).days + 1)]


def review_week(ctx: ActionContext) -> tuple[Week, str | None]:
    """The ISO week to review, and why there is nothing to do (``None`` when there is).

    Without ``date``: the ISO week (Monday to Sunday) of the latest finished day
    (:func:`~cass_actions_journal.daily.last_finished_day`), and only once its Sunday is
    finished (in Sunday's night phase, or any time in the following week until Monday's
    night); earlier in the week there is nothing to do. With ``date``: the ISO week of
    that day, asked for explicitly, covering its days up to the latest finished day (so
    possibly only part of it). A ``date`` later than the latest finished day is refused.
    """
    latest = last_finished_day(ctx)
    if ctx.params.get("date"):
        day = parse_day(ctx.params["date"])
        if day > latest:
            raise ActionFailed(f"parameter 'date' {day.isoformat()} is not over yet (the latest finished day is "
                               f"{latest.isoformat()})")
        monday = day - timedelta(days=day.weekday())
        return Week(monday, min(monday + timedelta(days=6), latest)), None
    monday = latest - timedelta(days=latest.weekday())
    week = Week(monday, min(monday + timedelta(days=6), latest))
    if not week.complete:
        return week, (f"The week {week.label} ({monday.isoformat()} to {week.sunday.isoformat()}) is not over yet "
                      f"(the latest finished day is {latest.isoformat()}); it is reviewed once its Sunday is over. "
                      "Nothing to do.")
    return week, None


def _covered_until(fields: dict[str, Any]) -> date | None:
    try:
        return date.fromisoformat(str(fields.get("to")))
    except ValueError:
        return None


def _ask(week: Week, entries: list[Entry]) -> str:
    budget = max(1_000, WEEK_MATERIAL_CHARS // max(1, len(entries)))
    material = "\n\n".join(e.render(budget) for e in entries)
    span = f"{week.monday.isoformat()} to {week.end.isoformat()}"
    return (f"Here are my journal entries of the week {week.label}, {span} ({len(entries)} of {len(week.days)} days).\n\n"
            f"{material}\n\nReturn patterns (up to 4 things that recurred), high_points (up to 5), questions (up to 4 still "
            "open) and intentions (up to 3 for the coming week).")


async def _write_prose(ctx: ActionContext, system: str, ask: str, draft: WeekPatterns) -> str:
    """The second turn: the review's prose, following the findings of the first."""
    reply = await ctx.llm.complete(
        [{"role": "user", "content": ask}, {"role": "assistant", "content": draft.model_dump_json()},
         {"role": "user", "content": WRITE_PROSE}],
        system=system, max_tokens=TURN_MAX_TOKENS)
    return reply.text.strip()


def _missing_prose(error: LLMError) -> str:
    return f"(The review's prose could not be written: {error.kind}. A later run of journal.weekly_review writes it.)"


def render_review(week: Week, *, entries: list[str], entry_lines: list[str], sections: dict[str, list[str]], review: str,
                  written_at: str, prose_error: str | None) -> str:
    """The review file: front matter, title, prose, the findings and the list of entries."""
    fields: dict[str, Any] = {"week": week.label, "from": week.monday.isoformat(), "to": week.end.isoformat(),
                              "complete": week.complete, "entries": entries, "written_at": written_at}
    if prose_error:
        fields[PROSE_ERROR] = prose_error
    parts = [render_front_matter(fields), f"# Week {week.label}: {week.monday.isoformat()} to {week.end.isoformat()}\n",
             review + "\n"]
    parts += [f"## {heading}\n\n{bullets(items)}\n" for heading, items in sections.items() if items]
    parts.append("## Entries\n\n" + bullets(entry_lines) + "\n")
    return "\n".join(parts)


async def _fill_in_prose(ctx: ActionContext, relative: str, fields: dict[str, Any], body: str) -> ActionResult:
    """Write the prose of a review whose second turn failed earlier: one call, the findings kept as they are."""
    try:
        week = Week(date.fromisoformat(str(fields["from"])), date.fromisoformat(str(fields["to"])))
    except (KeyError, ValueError):
        raise ActionFailed(f"{relative}: its front matter has no usable 'from' and 'to' dates; "
                           f"remove the file (or its {PROSE_ERROR} line) to continue") from None
    days = [str(d) for d in fields.get("entries") or []]
    entries = [e for e in (read_entry(ctx.data_dir, date.fromisoformat(d)) for d in days if _is_day(d)) if e is not None]
    sections = {heading: section_items(body, heading) for heading in SECTIONS}
    draft = WeekPatterns(**{name: sections[heading] for heading, (name, _) in SECTIONS.items()})
    system = system_prompt(ctx.workspace, "You are looking back over a week of your own journal, honestly and kindly.",
                           ctx.logger)
    review = await _write_prose(ctx, system, _ask(week, entries), draft)  # a failure leaves the file (and its marker) as it is
    text = render_review(week, entries=days, entry_lines=section_items(body, "Entries"), sections=sections, review=review,
                         written_at=str(fields.get("written_at") or ctx.now().isoformat()), prose_error=None)
    ctx.add_artifact("markdown", f"Weekly review {week.label}", ctx.write_text(relative, text))
    return ActionResult(
        summary=f"Wrote the missing prose of the weekly review {week.label} ({relative}); its findings were already there.",
        data={"week": week.label, "path": relative, "written": True, "prose_filled_in": True, "entries": days,
              "complete": week.complete, PROSE_ERROR: None},
    )


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


async def weekly_review(ctx: ActionContext) -> ActionResult:
    """``journal.weekly_review``: review the daily entries of one ISO week into ``weekly/<ISO year>-W<week>.md``.

    The week is the one of the latest finished day, once its Sunday is over (or, given
    ``date``, the week of that day, up to the latest finished day); see :func:`review_week`.
    A bounded two-turn session: turn one draws out patterns, high points, open questions
    and intentions (structured), turn two writes the review's prose. Once per week: a run
    finds a review covering the same days already written and does nothing. Exceptions:
    a review written before the week was over (a ``date`` run mid-week) is replaced when
    more of the week is over; a review whose prose failed (``prose_error`` in its front
    matter) gets its prose filled in with one call. No call without an entry in the week.
    """
    week, idle_reason = review_week(ctx)
    relative = f"{WEEKLY_DIR}/{week.label}.md"
    if idle_reason:
        return ActionResult(summary=idle_reason, data={"week": week.label, "path": None, "written": False})
    path = ctx.data_dir / relative
    if path.exists():
        try:
            fields, body = parse_front_matter(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ActionFailed(f"cannot read the weekly review {relative}: {exc}") from None
        covered = _covered_until(fields)
        if covered is None or covered >= week.end:
            if fields.get(PROSE_ERROR):
                return await _fill_in_prose(ctx, relative, fields, body)
            return ActionResult(summary=f"The weekly review {week.label} is already written ({relative}); nothing to do.",
                                data={"week": week.label, "path": relative, "written": False})
        # Written before the week was over (up to ``covered``): more of it is over now, so it is reviewed again.
    entries = [e for e in (read_entry(ctx.data_dir, d) for d in week.days) if e is not None]
    if not entries:
        return ActionResult(summary=f"No journal entry from {week.monday.isoformat()} to {week.end.isoformat()}; "
                                    "nothing to review.", data={"week": week.label, "path": None, "written": False})
    system = system_prompt(ctx.workspace, "You are looking back over a week of your own journal, honestly and kindly.",
                           ctx.logger)
    ask = _ask(week, entries)
    draft = await ctx.llm.structured(ask, WeekPatterns, system=system, max_tokens=TURN_MAX_TOKENS,
                                     offline=lambda: offline_patterns(entries))
    sections = {heading: unique(getattr(draft, name), limit) for heading, (name, limit) in SECTIONS.items()}
    try:
        review, prose_error = await _write_prose(ctx, system, ask, draft), None
    except LLMError as exc:
        # The first turn's findings are real and paid for: keep them, mark the prose as missing
        # so that a later run writes it (one call) instead of finding the week "already written".
        review, prose_error = _missing_prose(exc), str(exc)
    days = [e.day.isoformat() for e in entries]
    path = ctx.write_text(relative, render_review(
        week, entries=days, entry_lines=[f"{e.day:%A} {e.day.isoformat()}: {e.title}" for e in entries], sections=sections,
        review=review, written_at=ctx.now().isoformat(), prose_error=prose_error))
    ctx.add_artifact("markdown", f"Weekly review {week.label}", path)
    partial = "" if week.complete else f" (the week so far, up to {week.end.isoformat()})"
    return ActionResult(
        summary=(f"Wrote the weekly review {week.label}{partial} ({relative}) from {len(entries)} daily "
                 f"entr{'y' if len(entries) == 1 else 'ies'}." + (f" Its prose is missing ({prose_error}); a later run "
                                                                 "writes it." if prose_error else "")),
        data={"week": week.label, "path": relative, "written": True, "entries": days, "complete": week.complete,
              PROSE_ERROR: prose_error},
        insights=[clip(p, 300) for p in sections["Patterns"][:3]],
        questions=[clip(q, 300) for q in sections["Open questions"][:3]],
    )
