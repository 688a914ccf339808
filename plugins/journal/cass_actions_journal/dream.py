"""Handler of ``journal.dream``: a short dream from the day's material, a few capped turns."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.text import clip, first_sentence, parse_front_matter, render_front_matter

from cass_actions_journal.daily import target_day
from cass_actions_journal.sources import DayMaterial, Entry, material_for, read_entry, system_prompt
from cass_actions_journal.text import setting_int

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
    """The day to dream about: the same day the journal writes (:func:`~cass_actions_journal.daily.target_day`).

    That is the ``date`` parameter, else the day that just ended: in the night phase of
    D (after midnight too) it is D; earlier in a day it is the day before. A ``date``
    later than that day is refused: the day is not over yet.
    """
    return target_day(ctx)


SHIFT_PROMPT = ("The dream shifts. Something from the day returns in a changed form; continue the dream "
                "(under 150 words, present tense).")
WAKE_PROMPT = "I wake. In three or four sentences: what do I remember of the dream, and what might it have been about?"
#: Between two scenes of a dream file.
SCENE_BREAK = "\n\n* * *\n\n"
_SCENE_BREAK_LINE = re.compile(r"\n[ \t]*\* \* \*[ \t]*\n")
#: The front matter key that marks a dream cut short before its waking (a later run writes the waking).
PROSE_ERROR = "prose_error"
SYSTEM_TASK = "You are dreaming at the end of the day. Dreams are strange, associative and brief."


def _turn_prompts(turns: int, opening: str) -> list[str]:
    """The user side of the dream: the opening, shifts, then waking (the last turn when there are two or more)."""
    prompts = [opening]
    for _ in range(max(0, turns - 2)):
        prompts.append(SHIFT_PROMPT)
    if turns >= 2:
        prompts.append(WAKE_PROMPT)
    return prompts


def _opening(day: date, material: DayMaterial, entry: Entry | None) -> str:
    threads = [w.name for w in material.work] + [c.title for c in material.conversations]
    if entry is not None:
        threads.append(entry.title)
    return (f"Tonight I dream about {day:%A}, woven from {len(threads)} thread(s): {clip('; '.join(threads), 300)}.\n\n"
            + (f"The day:\n{material.render(6_000)}\n\n" if not material.empty else "")
            + (f"My latest journal entry:\n{entry.render(2_500)}\n\n" if entry is not None else "")
            + "Dream it: images and scenes, not a summary; present tense; under 200 words.")


def render_dream(day: date, fields: dict[str, Any], scenes: list[str], waking: str | None, stopped: str | None) -> str:
    """The dream file: front matter, title, the scenes, the waking (or why it is missing)."""
    parts = [render_front_matter(fields), f"# Dream of {day:%A} {day.isoformat()}\n", "## The dream\n",
             SCENE_BREAK.join(scenes) + "\n"]
    if waking is not None:
        parts.append("## On waking\n\n" + waking + "\n")
    if stopped:
        parts.append(f"*({stopped})*\n")
    return "\n".join(parts)


def dream_scenes(body: str) -> list[str]:
    """The scenes under ``## The dream`` of a dream file (without the note on a cut-short dream)."""
    lines: list[str] = []
    inside = False
    for line in body.splitlines():
        if line.startswith("## "):
            inside = line[3:].strip().lower() == "the dream"
            continue
        if inside:
            lines.append(line)
    while lines and (not lines[-1].strip() or (lines[-1].startswith("*(") and lines[-1].rstrip().endswith(")*"))):
        lines.pop()
    text = "\n".join(lines).strip()
    return [scene.strip() for scene in _SCENE_BREAK_LINE.split(text) if scene.strip()]


async def _wake_up(ctx: ActionContext, day: date, relative: str, fields: dict[str, Any], body: str) -> ActionResult:
    """Write the waking of a dream that was cut short: one call, the scenes kept as they are."""
    scenes = dream_scenes(body)
    if not scenes:
        raise ActionFailed(f"{relative} is marked {PROSE_ERROR} but has no scene under '## The dream'; "
                           f"remove the file (or its {PROSE_ERROR} line) to continue")
    material = material_for(ctx, day)
    messages: list[dict[str, str]] = []
    for i, scene in enumerate(scenes):
        messages.append({"role": "user", "content": _opening(day, material, _latest_entry(ctx, day)) if i == 0 else SHIFT_PROMPT})
        messages.append({"role": "assistant", "content": scene})
    messages.append({"role": "user", "content": WAKE_PROMPT})
    system = system_prompt(ctx.workspace, SYSTEM_TASK, ctx.logger)
    reply = await ctx.llm.complete(messages, system=system, max_tokens=TURN_MAX_TOKENS)  # a failure leaves the file as it is
    waking = reply.text.strip()
    fields = {k: v for k, v in fields.items() if k != PROSE_ERROR}
    fields["turns"] = len(scenes) + 1
    path = ctx.write_text(relative, render_dream(day, fields, scenes, waking, None))
    ctx.add_artifact("markdown", f"Dream {day.isoformat()}", path)
    return ActionResult(
        summary=f"Wrote the missing waking of the dream of {day.isoformat()} ({relative}); its {len(scenes)} scene(s) were "
                "already there.",
        data={"date": day.isoformat(), "path": relative, "written": True, "turns": len(scenes) + 1, "stopped": None,
              "waking_filled_in": True},
        insights=[first_sentence(waking, 300)] if waking else [],
    )


async def nightly(ctx: ActionContext) -> ActionResult:
    """``journal.dream``: dream about the day that just ended (or ``date``) into ``dreams/<date>.md``.

    Material: the day's work summaries and conversation summaries plus the latest journal
    entry (of that day or the three before). A few turns (setting ``dream_turns``, default
    3, at most 4 = the action's call cap): the dream, its shifts, the waking. A turn that
    fails after the first (the meter refuses it, the API is overloaded ...) ends the dream
    early: what was dreamt is kept, the reason is recorded and the file is marked
    ``prose_error``, so a later run for the date writes the waking with one call. Otherwise
    once per date; nothing to do (no call) without any material. Emits
    ``journal.dream_generated``.
    """
    day = dream_day(ctx)
    relative = f"{DREAMS_DIR}/{day.isoformat()}.md"
    if (ctx.data_dir / relative).exists():
        try:
            fields, body = parse_front_matter((ctx.data_dir / relative).read_text("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ActionFailed(f"cannot read the dream {relative}: {exc}") from None
        if fields.get(PROSE_ERROR):
            return await _wake_up(ctx, day, relative, fields, body)
        return ActionResult(summary=f"The dream of {day.isoformat()} is already written ({relative}); nothing to do.",
                            data={"date": day.isoformat(), "path": relative, "written": False})
    turns = setting_int(ctx.settings, "dream_turns", DEFAULT_TURNS, minimum=1, maximum=MAX_TURNS)
    material = material_for(ctx, day)
    entry = _latest_entry(ctx, day)
    if material.empty and entry is None:
        return ActionResult(summary=f"Nothing from {day.isoformat()} to dream about (no work, conversation or journal entry); "
                                    "nothing to do.", data={"date": day.isoformat(), "path": None, "written": False})
    system = system_prompt(ctx.workspace, SYSTEM_TASK, ctx.logger)
    messages: list[dict[str, str]] = []
    replies: list[str] = []
    stopped: str | None = None
    prose_error: str | None = None
    for prompt in _turn_prompts(turns, _opening(day, material, entry)):
        messages.append({"role": "user", "content": prompt})
        try:
            reply = await ctx.llm.complete(list(messages), system=system, max_tokens=TURN_MAX_TOKENS)
        except LLMError as exc:
            if not replies:
                raise
            stopped = f"the dream was cut short after {len(replies)} turn(s): {exc}"
            prose_error = str(exc)
            break
        replies.append(reply.text.strip())
        messages.append({"role": "assistant", "content": replies[-1]})
    waking = replies[-1] if turns >= 2 and len(replies) == turns else None
    scenes = replies[:-1] if waking is not None else replies
    fields: dict[str, Any] = {"date": day.isoformat(), "dreamt_at": ctx.now().isoformat(), "turns": len(replies),
                              "work_units": len(material.work), "conversations": len(material.conversations),
                              "journal_entry": entry.day.isoformat() if entry else None}
    if prose_error:
        fields[PROSE_ERROR] = prose_error
    path = ctx.write_text(relative, render_dream(day, fields, scenes, waking, stopped))
    artifact = ctx.add_artifact("markdown", f"Dream {day.isoformat()}", path)
    ctx.emit(DREAM_GENERATED, {"date": day.isoformat(), "path": artifact.path, "turns": len(replies)})
    return ActionResult(
        summary=f"Dreamt about {day.isoformat()} in {len(replies)} turn(s) ({relative})."
                + (f" Note: {stopped}; a later run writes the waking." if stopped else ""),
        data={"date": day.isoformat(), "path": relative, "written": True, "turns": len(replies), "stopped": stopped},
        insights=[first_sentence(waking, 300)] if waking else [],
    )
