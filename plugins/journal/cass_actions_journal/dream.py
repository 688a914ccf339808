"""Handler of ``dream.nightly``: a short dream from the day's material, a few capped turns."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult
from cass_actions_core.llm.errors import LLMError

from cass_actions_journal.daily import last_finished_day
from cass_actions_journal.sources import Entry, material_for, parse_day, read_entry, system_prompt
from cass_actions_journal.text import clip, first_sentence, render_front_matter, setting_int

#: Folder (inside the pack's data folder) of the dreams.
DREAMS_DIR = "dreams"
#: Default and largest number of turns (the action's ``max_llm_calls`` is the hard cap).
DEFAULT_TURNS = 3
MAX_TURNS = 4
TURN_MAX_TOKENS = 600
#: Event emitted when a dream is written.
DREAM_GENERATED = "journal.dream_generated"
#: How far back the latest journal entry may be to feed the dream.
ENTRY_LOOKBACK_DAYS = 3


def _latest_entry(ctx: ActionContext, day: Any) -> Entry | None:
    for back in range(0, ENTRY_LOOKBACK_DAYS + 1):
        entry = read_entry(ctx.data_dir, day - timedelta(days=back))
        if entry is not None:
            return entry
    return None


def dream_day(ctx: ActionContext) -> date:
    """The day to dream about: the ``date`` parameter, else the day that just ended.

    That is :func:`~cass_actions_journal.daily.last_finished_day`, the day the journal
    writes: in the night phase of D (after midnight too) it is D; earlier in a day it is
    the day before. A ``date`` later than that day is refused: the day is not over yet.
    """
    latest = last_finished_day(ctx)
    if ctx.params.get("date"):
        day = parse_day(ctx.params["date"])
        if day > latest:
            raise ActionFailed(f"parameter 'date' {day.isoformat()} is not over yet (the latest finished day is "
                               f"{latest.isoformat()})")
        return day
    return latest


def _turn_prompts(turns: int, opening: str) -> list[str]:
    """The user side of the dream: the opening, shifts, then waking (the last turn when there are two or more)."""
    prompts = [opening]
    for _ in range(max(0, turns - 2)):
        prompts.append("The dream shifts. Something from the day returns in a changed form; continue the dream "
                       "(under 150 words, present tense).")
    if turns >= 2:
        prompts.append("I wake. In three or four sentences: what do I remember of the dream, and what might it have been about?")
    return prompts


async def nightly(ctx: ActionContext) -> ActionResult:
    """``dream.nightly``: dream about the day that just ended (or ``date``) into ``dreams/<date>.md``.

    Material: the day's work summaries and conversation summaries plus the latest journal
    entry (of that day or the three before). A few turns (setting ``dream_turns``, default
    3, at most 4 = the action's call cap): the dream, its shifts, the waking. A turn the
    meter refuses ends the dream early; what was dreamt is kept and the reason recorded.
    Once per date; nothing to do (no call) without any material. Emits
    ``journal.dream_generated``.
    """
    day = dream_day(ctx)
    relative = f"{DREAMS_DIR}/{day.isoformat()}.md"
    if (ctx.data_dir / relative).exists():
        return ActionResult(summary=f"The dream of {day.isoformat()} is already written ({relative}); nothing to do.",
                            data={"date": day.isoformat(), "path": relative, "written": False})
    turns = setting_int(ctx.settings, "dream_turns", DEFAULT_TURNS, minimum=1, maximum=MAX_TURNS)
    material = material_for(ctx, day)
    entry = _latest_entry(ctx, day)
    if material.empty and entry is None:
        return ActionResult(summary=f"Nothing from {day.isoformat()} to dream about (no work, conversation or journal entry); "
                                    "nothing to do.", data={"date": day.isoformat(), "path": None, "written": False})
    threads = [w.name for w in material.work] + [c.title for c in material.conversations]
    if entry is not None:
        threads.append(entry.title)
    opening = (f"Tonight I dream about {day:%A}, woven from {len(threads)} thread(s): {clip('; '.join(threads), 300)}.\n\n"
               + (f"The day:\n{material.render(6_000)}\n\n" if not material.empty else "")
               + (f"My latest journal entry:\n{entry.render(2_500)}\n\n" if entry is not None else "")
               + "Dream it: images and scenes, not a summary; present tense; under 200 words.")
    system = system_prompt(ctx.workspace, "You are dreaming at the end of the day. Dreams are strange, associative and brief.")
    messages: list[dict[str, str]] = []
    replies: list[str] = []
    stopped: str | None = None
    for prompt in _turn_prompts(turns, opening):
        messages.append({"role": "user", "content": prompt})
        try:
            reply = await ctx.llm.complete(list(messages), system=system, max_tokens=TURN_MAX_TOKENS)
        except LLMError as exc:
            if not replies:
                raise
            stopped = f"the dream was cut short after {len(replies)} turn(s): {exc}"
            break
        replies.append(reply.text.strip())
        messages.append({"role": "assistant", "content": replies[-1]})
    waking = replies[-1] if turns >= 2 and len(replies) == turns else None
    scenes = replies[:-1] if waking is not None else replies
    parts = [render_front_matter({"date": day.isoformat(), "dreamt_at": ctx.now().isoformat(), "turns": len(replies),
                                  "work_units": len(material.work), "conversations": len(material.conversations),
                                  "journal_entry": entry.day.isoformat() if entry else None}),
             f"# Dream of {day:%A} {day.isoformat()}\n", "## The dream\n", "\n\n* * *\n\n".join(scenes) + "\n"]
    if waking is not None:
        parts.append("## On waking\n\n" + waking + "\n")
    if stopped:
        parts.append(f"*({stopped})*\n")
    path = ctx.write_text(relative, "\n".join(parts))
    artifact = ctx.add_artifact("markdown", f"Dream {day.isoformat()}", path)
    ctx.emit(DREAM_GENERATED, {"date": day.isoformat(), "path": artifact.path, "turns": len(replies)})
    return ActionResult(
        summary=f"Dreamt about {day.isoformat()} in {len(replies)} turn(s) ({relative})." + (f" Note: {stopped}." if stopped else ""),
        data={"date": day.isoformat(), "path": relative, "written": True, "turns": len(replies), "stopped": stopped},
        insights=[first_sentence(waking, 300)] if waking else [],
    )
