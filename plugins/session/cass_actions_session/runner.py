"""The session runner: one bounded multi-turn LLM loop shared by every ``session.*`` action.

A session is parametrised by a :class:`SessionSpec` (its instructions and how it gathers
its material); the loop itself is the same for all twelve. It stops at the first of:

- a **natural end**: the reply holds a line containing only ``SESSION COMPLETE``
  (the instructions ask for it);
- the **turn cap**: ``params.max_turns``, else ``[packs.session] max_turns``, else 4
  (never more than 10, the earlier system's limit);
- the **time budget**: no new turn starts once ``[packs.session] max_minutes`` (default:
  the action's ``default_duration_minutes``) of wall time (``time.monotonic``) is spent.
  The budget never exceeds the action's ``timeout_seconds`` less
  :data:`TIMEOUT_RESERVE_SECONDS` (kept for the last turn and the conclusions call): a
  larger setting is capped, so the executor never cancels a session it has paid for;
- the **meter**: the metered client refuses a call at the action's ``max_cost_usd``
  (``cost_cap``), its ``max_llm_calls`` (``call_cap``) or the category budget
  (``budget``). The session then ends gracefully with the turns it has;
- an **LLM failure** after the first turn (rate limit, connection ...): the session
  keeps what it has and records the failure. A failure on the first turn fails the
  action: there is nothing to keep.

Then one structured call turns the session into ``{summary, insights, questions}``
(offline: derived from the session text by :func:`derive_conclusions`; when the meter
has already stopped, derived the same way without a call). Derived conclusions carry
the offline label (``[offline]``) on everything the pack composed; only sentences taken
verbatim from the model's own replies stay unlabelled. The record -- what was read,
every turn, the conclusions, why it stopped -- is written to
``<data_dir>/sessions/<local date>/<kind>-<unit>.md``, and a short entry (with the
action's result) is kept in the pack's key-value area for later sessions and the
self-model actions: the session log, one key per local date (``session_log/<date>``)
plus an index of the dates (``session_log/index``), so a session reads and writes only
the days it needs (:func:`recent_sessions`, :func:`sessions_between`,
:func:`sessions_on`, :func:`finished_run`; :func:`log_session` writes one day key and
the index).

Re-running a step (a restart after a crash) is free: when the session log already
holds the run key (looked up in its date's key) and its record file exists, the stored result is returned without
any LLM call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, Field

from cass_actions_core.actions import ActionContext, ActionResult
from cass_actions_core.llm.errors import METER_KINDS, LLMError
from cass_actions_core.text import clip, is_offline, label_offline, sentences

from cass_actions_session.common import (
    DERIVED_LABEL,
    dedupe,
    definition,
    plain,
    setting_int,
    setting_number,
    unit_short_id,
)
from cass_actions_session.inputs import Material

#: The line that ends a session naturally.
END_MARKER = "SESSION COMPLETE"
#: Turn cap when neither params nor settings give one, and the highest cap allowed.
DEFAULT_MAX_TURNS = 4
MAX_TURNS_LIMIT = 10
#: The session log in the pack's key-value area: one key per local date (this prefix and
#: the date) and an index of the dates. ``SESSION_LOG_KEY`` is the single-key log of
#: earlier versions, split into that layout on first use.
SESSION_LOG_PREFIX = "session_log/"
SESSION_LOG_INDEX_KEY = "session_log/index"
SESSION_LOG_KEY = "session_log"
#: Retention: every day of the last ``SESSION_LOG_DAYS`` days (the longest period a
#: consolidation reviews: ``monthly``, 30 days), and older days while the newest
#: ``SESSION_LOG_SIZE`` entries reach back to them. A day keeps at most ``SESSION_LOG_SIZE``.
SESSION_LOG_DAYS = 30
SESSION_LOG_SIZE = 200
#: Seconds of an action's timeout the time budget leaves free for the last turn and the
#: conclusions call (``max_minutes`` is capped at ``timeout_seconds`` less this).
TIMEOUT_RESERVE_SECONDS = 600
#: Highest ``[packs.session] max_minutes`` the settings schema accepts (the largest cap
#: of any session action; each action caps it further to fit its own timeout).
MAX_MINUTES_SETTING = 30
#: Warnings kept with a result in the session log (the record lists them all).
LOGGED_WARNINGS = 20

STOP_PHRASES = {
    "natural_end": "ended naturally",
    "turn_cap": "stopped at its turn cap",
    "duration": "stopped when its time budget was spent",
    "cost_cap": "stopped by its cost cap",
    "call_cap": "stopped by its LLM call cap",
    "budget": "stopped because the category budget had no room for another turn",
    "llm_error": "stopped early because an LLM call failed",
}


class SessionConclusions(BaseModel):
    """What a session concluded: the structured output of its last call."""

    summary: str = Field(description="One or two sentences on what the session did and found.")
    insights: list[str] = Field(default_factory=list, description="Up to five things now seen more clearly.")
    questions: list[str] = Field(default_factory=list, description="Up to five questions the session raised.")


@dataclass(frozen=True)
class SessionLimits:
    """The bounds and reading sizes of one run (from params, settings and the definition)."""

    max_turns: int
    max_minutes: float
    turn_max_tokens: int
    recent_files: int
    recent_summaries: int
    #: The ``max_minutes`` asked for when it was capped to fit the action's timeout.
    minutes_capped_from: float | None = None


@dataclass
class Prepared:
    """What a spec's ``prepare`` gathered: the theme, the material and extra result data.

    ``nothing_to_do`` set means the session does not run (no LLM call) and the action
    succeeds with that sentence as its summary. ``after(record_path)`` runs once the
    record is written (its path relative to the pack's data folder).
    """

    theme: str
    material: Material
    opening: str
    name: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    nothing_to_do: str | None = None
    after: Callable[[str], None] | None = None


@dataclass(frozen=True)
class SessionSpec:
    """One kind of session: its id, title, instructions and how it gathers material."""

    action_id: str
    title: str
    purpose: str
    prepare: Callable[[ActionContext, SessionLimits], Prepared]

    @property
    def kind(self) -> str:
        """The short name (``reflection`` for ``session.reflection``)."""
        return self.action_id.split(".", 1)[1]


@dataclass
class Turn:
    """One turn: what was asked and what came back."""

    number: int
    asked: str
    reply: str
    cut_off: bool = False


def minutes_cap(action_id: str) -> float:
    """The longest time budget ``action_id`` allows: its timeout less :data:`TIMEOUT_RESERVE_SECONDS`."""
    return max(0.0, (float(definition(action_id)["timeout_seconds"]) - TIMEOUT_RESERVE_SECONDS) / 60)


def session_limits(ctx: ActionContext, action_id: str) -> SessionLimits:
    """The run's bounds: params override settings, settings override the defaults.

    ``max_minutes`` is capped at :func:`minutes_cap` (logged, and reported in the
    result's data): a budget longer than the action's timeout would get the handler
    cancelled mid-session and the turns already paid for lost.
    """
    turns = ctx.params.get("max_turns")
    if turns is None:
        turns = setting_int(ctx, "max_turns", DEFAULT_MAX_TURNS, minimum=1, maximum=MAX_TURNS_LIMIT)
    cap = minutes_cap(action_id)
    wanted = setting_number(ctx, "max_minutes", float(definition(action_id)["default_duration_minutes"]), minimum=0,
                            maximum=MAX_MINUTES_SETTING)
    capped_from = None
    if wanted > cap:
        ctx.logger.info("%s: [packs.session] max_minutes %g capped at %g to fit the action's timeout",
                        action_id, wanted, cap)
        capped_from = wanted
    return SessionLimits(
        max_turns=int(turns),
        max_minutes=min(wanted, cap),
        minutes_capped_from=capped_from,
        turn_max_tokens=setting_int(ctx, "turn_max_tokens", 1024, minimum=64, maximum=16000),
        recent_files=setting_int(ctx, "recent_files", 3, minimum=0, maximum=50),
        recent_summaries=setting_int(ctx, "recent_summaries", 10, minimum=0, maximum=200),
    )


def split_marker(text: str) -> tuple[str, bool]:
    """``text`` without end-marker lines, and whether it had one (markdown emphasis ignored)."""
    kept, ended = [], False
    for line in text.splitlines():
        if line.strip().strip("*_#`>.! ").upper() == END_MARKER:
            ended = True
            continue
        kept.append(line)
    return "\n".join(kept).strip(), ended


def daemon_name(ctx: ActionContext, prepared: Prepared) -> str:
    """The name the daemon gives itself in the self model, else its id."""
    name = prepared.name
    return name.strip() if name and name.strip() else ctx.daemon_id.capitalize()


def system_prompt(ctx: ActionContext, spec: SessionSpec, prepared: Prepared, limits: SessionLimits) -> str:
    """The session's instructions. Prose on purpose: no bullet or ``key: value`` lines."""
    return (
        f"You are {daemon_name(ctx, prepared)}, an AI daemon, in a private {spec.title.lower()} session of your own. "
        f"{spec.purpose} "
        f"The session has at most {limits.max_turns} turns; each of your replies is one turn, and each message after "
        "the first points you to a thread from your material to take up next. "
        "Write in the first person, plainly, in short paragraphs; when you use the material, say which part; "
        "never invent facts about the world or about people. "
        f"When the session has reached its natural end, give your conclusions and finish the reply with a line "
        f"containing only {END_MARKER}."
    )


def opening_message(prepared: Prepared) -> str:
    """The first user message: the ask, then the material."""
    material = prepared.material.render()
    return f"{prepared.opening}\n\nThe material I have for you follows.\n\n{material}" if material else prepared.opening


def follow_up(number: int, limits: SessionLimits, thread: str | None) -> str:
    """The message that starts turn ``number`` (> 1)."""
    if number == limits.max_turns:
        return ("This is the last turn of the session. Draw your conclusions: what you now see more clearly, "
                f"and what stays open. Finish with a line containing only {END_MARKER}.")
    lead = f"Next, take up this thread from the material: {thread}" if thread else \
        "Continue from the thread you found most alive in your last reply."
    return (f"{lead}\n\nGo one step further than your last reply: what does it change or confirm? Stay concrete. "
            f"If the session has reached its natural end, give your conclusions and finish with a line containing only {END_MARKER}.")


def derive_conclusions(spec: SessionSpec, prepared: Prepared, turns: list[Turn], threads: list[str]) -> SessionConclusions:
    """Conclusions built from the session's own text, without a model (deterministic).

    Statements and questions are taken from the model's replies (the last reply first:
    that is where conclusions are asked for); those sentences are the model's own words
    and stay as they are. Offline replies are digests of the prompt, not thoughts, so for
    them the threads the session took up and the material's open questions are used
    instead. Everything the pack composes or copies here -- the summary, those threads,
    those questions -- carries the offline label: it is not the daemon's own thought.
    """
    real = [t.reply for t in turns if t.reply and not is_offline(t.reply)]
    ordered = ([*sentences(plain(real[-1])), *[s for r in real[:-1] for s in sentences(plain(r))]]) if real else []
    statements = [clip(s, 300) for s in ordered if not s.endswith("?") and len(s.split()) >= 5]
    questions = [clip(s, 300) for s in ordered if s.endswith("?") and len(s.split()) >= 3]
    insights = dedupe(statements, limit=3)
    if not insights:
        insights = dedupe([label_offline(f"Stayed with the thread: {t}") for t in threads], limit=3) or \
            [label_offline(f"Worked from {prepared.material.describe()}.")]
    if not questions:
        questions = [label_offline(q) for q in prepared.material.questions()]
    stop_note = f"{len(turns)} turn(s) drawing on {prepared.material.describe()}"
    summary = f"{spec.title} session on {prepared.theme}: {stop_note}."
    if real and statements:
        summary += f" {statements[0]}"
    return SessionConclusions(summary=label_offline(clip(summary, 500)), insights=insights,
                              questions=dedupe(questions, limit=3))


def _clean(conclusions: SessionConclusions) -> SessionConclusions:
    return SessionConclusions(
        summary=clip(conclusions.summary, 600) or "(no summary)",
        insights=dedupe([clip(i, 400) for i in conclusions.insights], limit=5),
        questions=dedupe([clip(q, 400) for q in conclusions.questions], limit=5),
    )


async def conclude(ctx: ActionContext, spec: SessionSpec, prepared: Prepared, turns: list[Turn],
                   threads: list[str], system: str) -> tuple[SessionConclusions, str, str | None]:
    """The session's conclusions, how they were made (``model``/``offline``/``derived``) and why derived."""
    def derived() -> SessionConclusions:
        """Conclusions from the session text (see :func:`derive_conclusions`)."""
        return derive_conclusions(spec, prepared, turns, threads)

    if ctx.llm.stop_reason is not None:
        return _clean(derived()), "derived", f"the meter had stopped ({ctx.llm.stop_reason})"
    record = "\n\n".join(f"Turn {t.number}:\n{t.reply}" for t in turns)
    prompt = (f"Here is the record of your {spec.title.lower()} session on {prepared.theme}. Write its conclusions: "
              "a summary of one or two sentences, up to five insights (what you now see more clearly) and up to five "
              f"questions it raised that you want to keep open.\n\n{record}")
    try:
        value = await ctx.llm.structured(prompt, SessionConclusions, system=system, max_tokens=1024, offline=derived)
    except LLMError as exc:
        ctx.logger.warning("%s: conclusions derived from the text: %s", spec.action_id, exc)
        return _clean(derived()), "derived", f"the conclusions call failed ({exc.kind})"
    response = ctx.llm.last_response
    source = "offline" if response is not None and response.provider == "offline" else "model"
    return _clean(value), source, None


def render_record(ctx: ActionContext, spec: SessionSpec, prepared: Prepared, limits: SessionLimits, turns: list[Turn],
                  stop: str, stop_detail: str | None, conclusions: SessionConclusions, source: str,
                  why_derived: str | None) -> str:
    """The session's markdown record: header, what was read, every turn, conclusions."""
    response = ctx.llm.last_response
    lines = [
        f"# {spec.title} session \u2014 {ctx.local_date.isoformat()}",
        "",
        f"- Action: `{spec.action_id}` (unit {unit_short_id(ctx)}, {ctx.phase or 'no'} phase)",
        f"- Theme: {prepared.theme}",
    ]
    if ctx.motivation:
        lines.append(f"- Why: {ctx.motivation}")
    lines += [
        f"- Turns: {len(turns)} of at most {limits.max_turns}; {STOP_PHRASES.get(stop, stop)}"
        + (f" ({stop_detail})" if stop_detail else ""),
        f"- Cost: ${ctx.llm.spent_usd:.6f} of a ${ctx.llm.max_cost_usd:.2f} cap, {ctx.llm.calls} LLM call(s)",
    ]
    if response is not None:
        lines.append(f"- Model: {response.model} ({response.provider})")
    lines += ["", "## What I read", "", prepared.material.describe() + "."]
    for path in prepared.material.paths():
        lines.append(f"- `{path}`")
    for warning in prepared.material.warnings:
        lines.append(f"- warning: {warning}")
    lines += ["", "## Session"]
    for turn in turns:
        lines += ["", f"### Turn {turn.number}", "", f"> {turn.asked.splitlines()[0]}", "", turn.reply or "(empty reply)"]
        if turn.cut_off:
            lines += ["", "*(reply cut off at the token limit)*"]
    label = {"model": "by the model", "offline": f"offline, {DERIVED_LABEL}", "derived": DERIVED_LABEL}[source]
    lines += ["", f"## Conclusions ({label})", ""]
    if why_derived:
        lines += [f"*Derived because {why_derived}.*", ""]
    lines += [conclusions.summary, ""]
    if conclusions.insights:
        lines += ["### Insights", "", *[f"- {i}" for i in conclusions.insights], ""]
    if conclusions.questions:
        lines += ["### Questions", "", *[f"- {q}" for q in conclusions.questions], ""]
    return "\n".join(lines).rstrip() + "\n"


# -- the session log ---------------------------------------------------------------------------
#
# One key per local date, ``session_log/<YYYY-MM-DD>``: that day's entries, oldest first.
# ``session_log/index`` lists the dates that have entries, sorted, each with how many
# entries of each action it holds (``[[date, {action_id: count}], ...]``), so a reader
# loads only the days it needs and pruning needs no day key. A session writes its own
# day key, then the index (whose counts are taken from that day key, so an index left
# behind by a crash between the two is mended by the next write of that day). The
# single ``session_log`` list of earlier versions is split into this layout on first use.


def _day_key(day: str) -> str:
    return f"{SESSION_LOG_PREFIX}{day}"


def _as_date(text: Any) -> str | None:
    """``text`` when it is a calendar date written ``YYYY-MM-DD``, else ``None``."""
    if not isinstance(text, str) or len(text) != 10:
        return None
    try:
        return text if date.fromisoformat(text).isoformat() == text else None  # not "2026-W52-1"
    except ValueError:
        return None


def _entries(value: Any) -> list[dict[str, Any]]:
    """The well-formed entries of a stored list (anything else yields none)."""
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def _counts(entries: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in entries:
        action = e.get("action_id") if isinstance(e.get("action_id"), str) else ""
        counts[action] = counts.get(action, 0) + 1
    return counts


def _read_index(ctx: ActionContext) -> dict[str, dict[str, int]] | None:
    """The index as ``{date: {action_id: count}}`` (sorted by date), or ``None`` when there is none."""
    raw = ctx.kv.get(SESSION_LOG_INDEX_KEY)
    if not isinstance(raw, list):
        return None
    days: dict[str, dict[str, int]] = {}
    for item in raw:
        if isinstance(item, list) and len(item) == 2 and _as_date(item[0]) and isinstance(item[1], dict):
            days[item[0]] = {str(k): v for k, v in item[1].items() if isinstance(v, int) and v > 0}
    return dict(sorted(days.items()))


def _write_index(ctx: ActionContext, days: dict[str, dict[str, int]]) -> None:
    ctx.kv.set(SESSION_LOG_INDEX_KEY, [[day, counts] for day, counts in sorted(days.items()) if counts])


def _entry_day(entry: dict[str, Any]) -> str | None:
    """The date an entry is filed under: its ``local_date``, else its run key's date."""
    return _as_date(entry.get("local_date")) or _as_date(str(entry.get("run_key", "")).split("/", 1)[0])


def _migrate(ctx: ActionContext) -> dict[str, dict[str, int]]:
    """Build the index when there is none, splitting the single-key log of earlier versions.

    Runs once per store (it leaves an index, empty if need be). Entries are filed under
    their date (an entry without one goes with the entry before it, so the order of the
    newest-N readers is kept); entries already in a day key (an earlier migration cut
    short) are not added twice; non-dict items, which no reader ever saw, are dropped.
    Every well-formed entry is kept (the next write applies retention).
    The old key is deleted only once its entries are in their day keys, and the index
    is written last: a crash in between repeats the whole (idempotent) step.
    """
    # One scan of the namespace, once per store: the old key and any day key already written
    # (by a migration cut short).
    every = ctx.kv.items()
    legacy = every.get(SESSION_LOG_KEY)
    stored = {key[len(SESSION_LOG_PREFIX):]: value for key, value in every.items()
              if key.startswith(SESSION_LOG_PREFIX) and _as_date(key[len(SESSION_LOG_PREFIX):])}
    days: dict[str, list[dict[str, Any]]] = {}
    if isinstance(legacy, list):
        previous = None
        dated = [(e, _entry_day(e)) for e in _entries(legacy)]
        first = next((d for _, d in dated if d), None) or ctx.local_date.isoformat()
        for entry, day in dated:
            day = day or previous or first
            days.setdefault(day, []).append(entry)
            previous = day
    index: dict[str, dict[str, int]] = {}
    for day in sorted(set(days) | set(stored)):
        kept = _entries(stored.get(day))
        added = [e for e in days.get(day, []) if e not in kept]
        merged = added + kept  # the old log's entries came first
        if added:
            ctx.kv.set(_day_key(day), merged)
        if merged:
            index[day] = _counts(merged)
    if legacy is not None:
        ctx.kv.delete(SESSION_LOG_KEY)
    _write_index(ctx, index)  # not pruned here: the next write prunes, as it would have dropped the oldest
    if days:
        ctx.logger.info("session log: %d entries of the single-key log moved into %d day keys",
                        sum(len(v) for v in days.values()), len(days))
    return index


def _index(ctx: ActionContext) -> dict[str, dict[str, int]]:
    """The index (``{date: {action_id: count}}``, oldest date first), migrating an old log first."""
    index = _read_index(ctx)
    return index if index is not None else _migrate(ctx)


def _pruned(ctx: ActionContext, index: dict[str, dict[str, int]], newest: str) -> dict[str, dict[str, int]]:
    """``index`` without the days past retention, whose keys are deleted (see :data:`SESSION_LOG_DAYS`).

    A day is kept while it is within ``SESSION_LOG_DAYS`` days of ``newest`` (the
    longest period a consolidation reviews) or while the days after it hold fewer than
    ``SESSION_LOG_SIZE`` entries (the newest entries kept as the single-key log did).
    """
    horizon = (date.fromisoformat(newest) - timedelta(days=SESSION_LOG_DAYS - 1)).isoformat()
    kept: dict[str, dict[str, int]] = {}
    newer = 0
    for day in sorted(index, reverse=True):
        if day >= horizon or newer < SESSION_LOG_SIZE:
            kept[day] = index[day]
            newer += sum(index[day].values())
        else:
            ctx.kv.delete(_day_key(day))
    return dict(sorted(kept.items()))


def log_session(ctx: ActionContext, entry: dict[str, Any]) -> None:
    """Add ``entry`` to its day of the session log (replacing an entry of the same run key) and prune.

    Touches the entry's day key and the index only (old days past retention are deleted).
    """
    index = _index(ctx)
    day = _entry_day(entry) or ctx.local_date.isoformat()
    entries = [e for e in _entries(ctx.kv.get(_day_key(day))) if e.get("run_key") != entry["run_key"]]
    entries = [*entries, entry][-SESSION_LOG_SIZE:]
    ctx.kv.set(_day_key(day), entries)
    index[day] = _counts(entries)
    _write_index(ctx, _pruned(ctx, index, max(max(index), ctx.local_date.isoformat())))


def sessions_on(ctx: ActionContext, day: date | str) -> list[dict[str, Any]]:
    """The session log's entries whose ``local_date`` is ``day``, oldest first (one day key read)."""
    _index(ctx)
    key = day.isoformat() if isinstance(day, date) else str(day)
    return [e for e in _entries(ctx.kv.get(_day_key(key))) if e.get("local_date") == key]


def sessions_between(ctx: ActionContext, since: date, until: date) -> list[dict[str, Any]]:
    """The entries whose ``local_date`` is in ``since``..``until`` (inclusive), oldest first."""
    first, last = since.isoformat(), until.isoformat()
    found: list[dict[str, Any]] = []
    for day in _index(ctx):
        if first <= day <= last:
            found += [e for e in _entries(ctx.kv.get(_day_key(day)))
                      if first <= str(e.get("local_date", "")) <= last]
    return found


def recent_sessions(ctx: ActionContext, limit: int, action_ids: Collection[str] | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` entries (of ``action_ids`` only, when given), oldest first.

    Reads day keys from the newest back, and only the days whose index lists one of
    ``action_ids``, until ``limit`` entries are found.
    """
    if limit <= 0:
        return []
    wanted = set(action_ids) if action_ids is not None else None
    found: list[dict[str, Any]] = []
    for day, counts in reversed(list(_index(ctx).items())):
        if wanted is not None and not wanted & set(counts):
            continue
        entries = _entries(ctx.kv.get(_day_key(day)))
        if wanted is not None:
            entries = [e for e in entries if e.get("action_id") in wanted]
        found = entries + found
        if len(found) >= limit:
            break
    return found[-limit:]


def session_log(ctx: ActionContext) -> list[dict[str, Any]]:
    """Every retained entry, oldest first (reads every day key: not for a session's hot path)."""
    found: list[dict[str, Any]] = []
    for day in _index(ctx):
        found += _entries(ctx.kv.get(_day_key(day)))
    return found


def finished_run(ctx: ActionContext) -> dict[str, Any] | None:
    """The session log's entry for this run key, when its record file exists too (a finished run).

    Reads the day key of the run key's date (its first part), and of the run's local
    date when that differs.
    """
    _index(ctx)
    days = dict.fromkeys(d for d in (_as_date(ctx.run_key.split("/", 1)[0]), ctx.local_date.isoformat()) if d)
    for day in days:
        for entry in reversed(_entries(ctx.kv.get(_day_key(day)))):
            if entry.get("run_key") == ctx.run_key:
                path = entry.get("path")
                return entry if isinstance(path, str) and (ctx.data_dir / path).is_file() else None
    return None


def replay(ctx: ActionContext, spec: SessionSpec, entry: dict[str, Any]) -> ActionResult:
    """The stored result of a run that already finished (no LLM call, nothing rewritten)."""
    stored = entry.get("result") if isinstance(entry.get("result"), dict) else {}
    path = str(entry["path"])
    data = stored.get("data") if isinstance(stored.get("data"), dict) else {
        "theme": entry.get("theme"), "path": path, "turns": entry.get("turns"), "stop_reason": entry.get("stop_reason"),
        "summary": entry.get("summary")}
    summary = stored.get("summary") or (f"{spec.title} session on {clip(str(entry.get('theme', '?')), 120)}: "
                                        f"{entry.get('turns', '?')} turn(s), "
                                        f"{STOP_PHRASES.get(str(entry.get('stop_reason')), str(entry.get('stop_reason')))}.")
    ctx.add_artifact("markdown", f"{spec.title} session, {entry.get('local_date', ctx.local_date.isoformat())}",
                     ctx.data_dir / path)
    ctx.logger.info("%s: run %s already finished (%s): its stored result is returned, no LLM call",
                    spec.action_id, ctx.run_key, path)
    return ActionResult(summary=str(summary), data={**data, "replayed": True},
                        insights=[str(i) for i in stored.get("insights", entry.get("insights")) or []],
                        questions=[str(q) for q in stored.get("questions", entry.get("questions")) or []])


async def run_session(ctx: ActionContext, spec: SessionSpec) -> ActionResult:
    """Run one bounded session for ``spec`` and record it (see the module docstring)."""
    done = finished_run(ctx)
    if done is not None:
        return replay(ctx, spec, done)
    limits = session_limits(ctx, spec.action_id)
    prepared = spec.prepare(ctx, limits)
    data = dict(prepared.data)
    data.update({"theme": prepared.theme, "read": prepared.material.counts(), "warnings": prepared.material.warnings})
    if prepared.nothing_to_do:
        return ActionResult(summary=prepared.nothing_to_do, data={**data, "turns": 0, "stop_reason": "nothing_to_do"})

    system = system_prompt(ctx, spec, prepared, limits)
    threads = prepared.material.highlights()
    taken: list[str] = []
    messages: list[dict[str, Any]] = []
    turns: list[Turn] = []
    stop, stop_detail = "turn_cap", None
    deadline = time.monotonic() + limits.max_minutes * 60
    for number in range(1, limits.max_turns + 1):
        if number == 1:
            asked = opening_message(prepared)
        else:
            if time.monotonic() >= deadline:
                stop, stop_detail = "duration", f"{limits.max_minutes:g} min"
                break
            thread = threads[number - 2] if number - 2 < len(threads) and number < limits.max_turns else None
            if thread:
                taken.append(thread)
            asked = follow_up(number, limits, thread)
        messages.append({"role": "user", "content": asked})
        try:
            response = await ctx.llm.complete(messages, system=system, max_tokens=limits.turn_max_tokens)
        except LLMError as exc:
            if not turns:
                raise  # nothing to keep: the action fails with the LLM's reason
            stop = exc.kind if exc.kind in METER_KINDS else "llm_error"
            stop_detail = exc.kind if stop == "llm_error" else None
            if exc.kind == "cut_off" and exc.response is not None and exc.response.text.strip():
                turns.append(Turn(number, asked, split_marker(exc.response.text)[0], cut_off=True))
            ctx.logger.info("%s: session ends after %d turn(s): %s", spec.action_id, len(turns), exc)
            break
        reply, ended = split_marker(response.text)
        turns.append(Turn(number, asked, reply))
        messages.append({"role": "assistant", "content": response.text})
        if ended:
            stop = "natural_end"
            break
    if stop == "turn_cap":
        stop_detail = str(limits.max_turns)

    conclusions, source, why_derived = await conclude(ctx, spec, prepared, turns, taken, system)
    if stop in METER_KINDS:
        stop_detail = f"${ctx.llm.max_cost_usd:.2f}" if stop == "cost_cap" else stop_detail
    record = render_record(ctx, spec, prepared, limits, turns, stop, stop_detail, conclusions, source, why_derived)
    step = ctx.run_key.rsplit("/", 1)[-1]
    # Two sessions of one kind in one unit (steps 0 and 2, say) must not share a file.
    suffix = f"-{step}" if step.isdigit() and step != "0" else ""
    relative_path = f"sessions/{ctx.local_date.isoformat()}/{spec.kind}-{unit_short_id(ctx)}{suffix}.md"
    path = ctx.write_text(relative_path, record)
    ctx.add_artifact("markdown", f"{spec.title} session, {ctx.local_date.isoformat()}", path)
    data.update({
        "path": relative_path, "turns": len(turns), "max_turns": limits.max_turns, "max_minutes": limits.max_minutes,
        "stop_reason": stop, "stop_detail": stop_detail, "spent_usd": ctx.llm.spent_usd,
        "max_cost_usd": ctx.llm.max_cost_usd, "conclusions_source": source, "threads": taken,
        "summary": conclusions.summary,
    })
    if limits.minutes_capped_from is not None:
        data["max_minutes_capped_from"] = limits.minutes_capped_from
    summary = (f"{spec.title} session on {clip(prepared.theme, 120)}: {len(turns)} turn(s) drawing on "
               f"{prepared.material.describe()}, {STOP_PHRASES.get(stop, stop)}.")
    if source == "model":
        summary += f" {clip(conclusions.summary, 300)}"
    if prepared.after is not None:
        prepared.after(relative_path)
    # Logged last: an entry in the log (with its record file) means the run finished, so a
    # re-run of this step returns the stored result instead of paying again.
    log_session(ctx, {
        "run_key": ctx.run_key, "local_date": ctx.local_date.isoformat(), "action_id": spec.action_id,
        "theme": prepared.theme, "path": relative_path, "turns": len(turns), "stop_reason": stop,
        "summary": conclusions.summary, "insights": conclusions.insights, "questions": conclusions.questions,
        "result": {"summary": summary, "insights": conclusions.insights, "questions": conclusions.questions,
                   "data": {**data, "warnings": data["warnings"][:LOGGED_WARNINGS]}},
    })
    ctx.emit("session.completed", {"action_id": spec.action_id, "turns": len(turns), "stop_reason": stop,
                                   "path": relative_path})
    return ActionResult(summary=summary, data=data, insights=conclusions.insights, questions=conclusions.questions)
