"""The local research queue: ``session.refresh_research_queue``, ``session.research_single``, ``session.research_batch``.

The queue lives in the pack's key-value area (``research_queue``), so it survives
restarts. Each topic has a key (its normalised text) and a slug; a topic stays in the
queue after it is researched (status ``done``), so refreshing never adds it again and
it is never researched twice. Before researching, the note file is checked too: a run
that wrote the note but crashed before marking the topic done is recovered without a
second LLM call.

Runs may overlap (``max_concurrent_units`` above 1): a run *claims* its topic (status
``in_progress``, with its run key and time) before its first LLM call, so no other run
takes the same topic, and every later change re-reads the queue and changes only that
topic's entry, so what a concurrent refresh added meanwhile is kept. A failed call
gives the topic back (``pending``); a claim left by a run that died is taken over by
the same step's re-run at once, by any other run after :data:`CLAIM_EXPIRES`.

Topics come from the self model's open questions, from ``questions_raised`` in recent
work summaries, and from a ``topics`` parameter. Questions labelled ``[offline]`` (the
offline provider's placeholders) are not topics and are skipped.

A research note is written from the model's own knowledge: no web page is fetched, and
each note says so. Findings derived without the model carry the offline label.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult
from cass_actions_core.llm.errors import METER_KINDS, LLMError
from cass_actions_core.text import clip, is_offline, keywords, label_offline, sentences, slugify

from cass_actions_session import inputs, selfmodel
from cass_actions_session.common import (
    DERIVED_LABEL,
    dedupe,
    normalise,
    plain,
    setting_int,
    short_hash,
    unit_short_id,
)

QUEUE_KEY = "research_queue"
QUEUE_FILE = "research-queue.md"
NOTES_DIR = "research"
#: A claim older than this was left by a run that died (the longest research action times out after 40 minutes).
CLAIM_EXPIRES = timedelta(hours=1)

RESEARCH_SYSTEM = (
    "You are an AI daemon writing a research note for your own knowledge base. You have no web access in this task: "
    "write from what you know, separate what is well established from what is uncertain or contested, say plainly "
    "where your knowledge ends, and never invent sources, quotes or figures. Write markdown with short sections."
)


class ResearchFindings(BaseModel):
    """The structured part of a research note."""

    summary: str = Field(description="One or two sentences: what the note establishes.")
    findings: list[str] = Field(default_factory=list, description="Up to five key findings.")
    open_questions: list[str] = Field(default_factory=list, description="Up to five questions left open.")


# -- the queue ---------------------------------------------------------------------------------

def topic_slug(topic: str) -> str:
    """The note's file stem: readable words plus a hash of the normalised topic (no collisions)."""
    return f"{slugify(topic, 50) or 'item'}-{short_hash(normalise(topic))}"


def clean_topic(text: Any) -> str | None:
    """A usable topic from ``text``, or ``None`` (empty, an offline placeholder, or too short)."""
    if not isinstance(text, str):
        return None
    text = " ".join(text.split())
    if not text or is_offline(text) or len(text.split()) < 2:
        return None
    return clip(text, 300)


def load_queue(ctx: ActionContext) -> list[dict[str, Any]]:
    """The queue's entries in order (malformed entries are dropped)."""
    raw = ctx.kv.get(QUEUE_KEY, [])
    return [e for e in raw if isinstance(e, dict) and isinstance(e.get("topic"), str) and isinstance(e.get("key"), str)] \
        if isinstance(raw, list) else []


def save_queue(ctx: ActionContext, queue: list[dict[str, Any]]) -> None:
    """Store the queue in the key-value area."""
    ctx.kv.set(QUEUE_KEY, queue)


def find(queue: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The entry with ``key``, if any."""
    return next((e for e in queue if e["key"] == key), None)


def pending(queue: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries not researched yet (waiting or being researched), oldest first."""
    return [e for e in queue if e.get("status") in ("pending", "in_progress")]


def claim_expired(ctx: ActionContext, entry: dict[str, Any]) -> bool:
    """Whether ``entry``'s claim is older than :data:`CLAIM_EXPIRES` (or unreadable)."""
    try:
        at = datetime.fromisoformat(str(entry.get("claimed_at")))
    except ValueError:
        return True
    return at.tzinfo is None or ctx.now() - at > CLAIM_EXPIRES


def claimable(ctx: ActionContext, entry: dict[str, Any]) -> bool:
    """Whether this run may research ``entry``: waiting, claimed by this very run, or claimed long ago."""
    status = entry.get("status")
    if status == "pending":
        return True
    return status == "in_progress" and (entry.get("claimed_by") == ctx.run_key or claim_expired(ctx, entry))


def claim(ctx: ActionContext, queue: list[dict[str, Any]], entry: dict[str, Any]) -> dict[str, Any]:
    """Mark ``entry`` (of the freshly loaded ``queue``) as being researched by this run; save at once."""
    entry.update({"status": "in_progress", "claimed_by": ctx.run_key, "claimed_at": ctx.now().isoformat()})
    save_queue(ctx, queue)
    return dict(entry)


def release(ctx: ActionContext, key: str) -> None:
    """Give this run's claim on ``key`` back (the topic waits again); the queue is re-read first."""
    queue = load_queue(ctx)
    entry = find(queue, key)
    if entry is not None and entry.get("status") == "in_progress" and entry.get("claimed_by") == ctx.run_key:
        entry["status"] = "pending"
        entry.pop("claimed_by", None)
        entry.pop("claimed_at", None)
        save_queue(ctx, queue)


def add_topic(ctx: ActionContext, queue: list[dict[str, Any]], topic: str, source: str) -> dict[str, Any] | None:
    """Append ``topic`` unless its key is already in the queue (in any state); return the new entry."""
    key = normalise(topic)
    if find(queue, key) is not None:
        return None
    entry = {"key": key, "topic": topic, "slug": topic_slug(topic), "source": source,
             "added_at": ctx.now().isoformat(), "status": "pending"}
    queue.append(entry)
    return entry


def candidate_topics(ctx: ActionContext) -> tuple[list[tuple[str, str]], list[str]]:
    """(topic, source) pairs from params, the self model and recent summaries; plus warnings."""
    found: list[tuple[str, str]] = []
    warnings: list[str] = []
    for topic in ctx.params.get("topics", []) or []:
        found.append((topic, "params"))
    model = inputs.read_model(ctx, warnings)
    for question in selfmodel.open_questions(model or {}):
        found.append((question, "self model"))
    limit = setting_int(ctx, "research_summaries", 50, minimum=0, maximum=1000)
    for summary in ctx.history.summaries(limit=limit) if limit else []:
        for question in summary.get("questions_raised") or []:
            found.append((question, f"work summary {summary.get('slug', summary.get('unit_id', '?'))}"))
    return found, warnings


def refresh(ctx: ActionContext, queue: list[dict[str, Any]]) -> dict[str, Any]:
    """Add new topics to ``queue`` (in place), up to the pending cap; report what happened."""
    cap = setting_int(ctx, "research_queue_max", 30, minimum=1, maximum=1000)
    candidates, warnings = candidate_topics(ctx)
    added: list[str] = []
    known = over_cap = unusable = 0
    for text, source in candidates:
        topic = clean_topic(text)
        if topic is None:
            unusable += 1
            continue
        if len(pending(queue)) >= cap:
            if find(queue, normalise(topic)) is None:
                over_cap += 1
            continue
        if add_topic(ctx, queue, topic, source) is None:
            known += 1
        else:
            added.append(topic)
    return {"added": added, "already_known": known, "over_cap": over_cap, "unusable": unusable,
            "pending": len(pending(queue)), "done": sum(1 for e in queue if e.get("status") == "done"),
            "warnings": warnings}


def render_queue(ctx: ActionContext, queue: list[dict[str, Any]]) -> str:
    """The queue as markdown: pending topics in order, then what was researched."""
    lines = ["# Research queue", "", f"Updated {ctx.now().isoformat(timespec='minutes')}.", "", "## Pending", ""]
    todo = pending(queue)
    lines += [f"{i}. {e['topic']} *(from {e.get('source', '?')})*" + (" — being researched" if e.get("status") == "in_progress" else "")
              for i, e in enumerate(todo, 1)] or ["(none)"]
    lines += ["", "## Researched", ""]
    done = [e for e in queue if e.get("status") == "done"]
    lines += [f"- {e['topic']} — {str(e.get('done_at', '?'))[:10]} — [note]({e.get('note', '')})" for e in done] or ["(none)"]
    return "\n".join(lines) + "\n"


def write_queue_file(ctx: ActionContext) -> None:
    """Write ``research-queue.md`` from the stored queue and register it as an artifact."""
    path = ctx.write_text(QUEUE_FILE, render_queue(ctx, load_queue(ctx)))
    ctx.add_artifact("markdown", "Research queue", path)


# -- researching one topic -----------------------------------------------------------------------

@dataclass
class ResearchJob:
    """One topic ready to research: its entry, the prompt and what it drew on."""

    entry: dict[str, Any]
    prompt: str
    related: list[str]


def prepare_job(ctx: ActionContext, entry: dict[str, Any]) -> ResearchJob:
    """The note prompt for ``entry``: the topic, why it came up, related work and earlier notes."""
    topic = entry["topic"]
    topic_words = keywords(topic, 4)
    related: list[str] = []
    for summary in ctx.history.summaries(limit=setting_int(ctx, "recent_summaries", 10, minimum=0, maximum=200) or 0):
        text = " ".join([str(summary.get("narrative", "")), *map(str, summary.get("insights") or [])])
        if len(topic_words & keywords(text, 4)) >= 2:
            related.append(clip(text, 500))
    notes_dir = ctx.data_dir / NOTES_DIR
    earlier = sorted(p.stem for p in notes_dir.glob("*.md")) if notes_dir.is_dir() else []
    parts = [f"Write a research note on this topic: {topic}",
             f"It came up in {entry.get('source', 'my work')}."]
    if related[:3]:
        parts.append("Related work of mine:\n" + "\n".join(f"- {r}" for r in related[:3]))
    if earlier:
        parts.append("Notes I already have (link ideas to them by name where they connect):\n"
                     + "\n".join(f"- {name}" for name in earlier[-20:]))
    parts.append("Cover what is known, what is uncertain, how it connects to my other questions, and what I would "
                 "want to find out next.")
    return ResearchJob(entry, "\n\n".join(parts), related[:3])


def derive_findings(topic: str, body: str) -> ResearchFindings:
    """Findings built from the note's text without a model (offline, or when the findings call failed).

    Sentences of a real note are the model's own words and are kept as they are;
    everything composed here (the summary, a placeholder finding, the topic as a
    question) carries the offline label.
    """
    real = "" if is_offline(body) else body
    found = sentences(plain(real))
    statements = dedupe([clip(s, 300) for s in found if not s.endswith("?") and len(s.split()) >= 5], limit=3)
    questions = dedupe([clip(s, 300) for s in found if s.endswith("?")], limit=3)
    if not statements:
        statements = [label_offline(f"Started a note on: {topic}")]
    if not questions and topic.endswith("?"):
        questions = [label_offline(topic)]
    summary = clip(f"Research note on: {topic}" + (f" {statements[0]}" if real else ""), 400)
    return ResearchFindings(summary=label_offline(summary), findings=statements, open_questions=questions)


async def research(ctx: ActionContext, job: ResearchJob, max_tokens: int) -> dict[str, Any]:
    """Research ``job``'s claimed topic: write the note, mark the topic done; return a report.

    Raises :class:`LLMError` when the note call itself fails (nothing is written then,
    and the topic is given back to the queue).
    """
    entry = job.entry
    relative_path = f"{NOTES_DIR}/{entry['slug']}.md"
    if (ctx.data_dir / relative_path).exists():
        # Written by a run that crashed before marking the topic done: never research it twice.
        mark_done(ctx, entry, relative_path, recovered=True)
        return {"topic": entry["topic"], "path": relative_path, "recovered": True, "insights": [], "questions": []}
    try:
        response = await ctx.llm.complete(job.prompt, system=RESEARCH_SYSTEM, max_tokens=max_tokens)
        body = response.text.strip()
        how = "offline" if response.provider == "offline" else "model"
        try:
            findings = await ctx.llm.structured(
                f"Here is a research note on: {entry['topic']}\n\n{body}\n\nGive its summary, up to five key findings and "
                "up to five open questions.", ResearchFindings, system=RESEARCH_SYSTEM, max_tokens=800,
                offline=lambda: derive_findings(entry["topic"], body))
            if how == "offline":
                how = f"offline, {DERIVED_LABEL}"
        except LLMError as exc:
            ctx.logger.warning("research %r: findings derived from the note: %s", entry["topic"], exc)
            findings, how = derive_findings(entry["topic"], body), f"{DERIVED_LABEL} ({exc.kind})"
    except BaseException:
        release(ctx, entry["key"])  # a failed or cancelled run gives its topic back
        raise
    findings = ResearchFindings(summary=clip(findings.summary, 600),
                                findings=dedupe([clip(f, 400) for f in findings.findings], limit=5),
                                open_questions=dedupe([clip(q, 400) for q in findings.open_questions], limit=5))
    lines = [
        f"# {entry['topic']}", "",
        f"- Researched: {ctx.local_date.isoformat()} ({ctx.phase or 'no'} phase) by `{ctx.action_id}`, unit {unit_short_id(ctx)}",
        f"- Came from: {entry.get('source', '?')}",
        f"- Model: {response.model} ({response.provider})",
        "- Sources: the model's own knowledge; no web page was consulted.", "",
        "## Note", "", body or "(empty reply)", "",
        f"## Summary ({how})", "", findings.summary, "",
    ]
    if findings.findings:
        lines += ["## Key findings", "", *[f"- {f}" for f in findings.findings], ""]
    if findings.open_questions:
        lines += ["## Open questions", "", *[f"- {q}" for q in findings.open_questions], ""]
    path = ctx.write_text(relative_path, "\n".join(lines).rstrip() + "\n")
    ctx.add_artifact("markdown", f"Research note: {clip(entry['topic'], 80)}", path)
    mark_done(ctx, entry, relative_path, recovered=False)
    ctx.emit("research.note_written", {"topic": entry["topic"], "path": relative_path})
    return {"topic": entry["topic"], "path": relative_path, "recovered": False, "summary": findings.summary,
            "insights": findings.findings, "questions": findings.open_questions}


def mark_done(ctx: ActionContext, entry: dict[str, Any], note: str, *, recovered: bool) -> None:
    """Mark ``entry`` researched (with its note) in the freshly re-read queue, and save it at once.

    Only this entry changes: topics a concurrent refresh added meanwhile are kept.
    """
    queue = load_queue(ctx)
    current = find(queue, entry["key"])
    if current is None:  # the queue was emptied meanwhile: keep the record of this topic anyway
        current = dict(entry)
        queue.append(current)
    current.pop("claimed_by", None)
    current.pop("claimed_at", None)
    current.update({"status": "done", "done_at": ctx.now().isoformat(), "note": note, "run_key": ctx.run_key})
    if recovered:
        current["recovered"] = True
    save_queue(ctx, queue)


def note_tokens(ctx: ActionContext) -> int:
    """``[packs.session] research_max_tokens``: the note's output limit."""
    return setting_int(ctx, "research_max_tokens", 1500, minimum=128, maximum=16000)


def claim_next(ctx: ActionContext, report: dict[str, Any]) -> dict[str, Any] | None:
    """Claim the next topic this run may research; when there is none, refresh the queue first.

    A topic this run claimed before (a re-run after a crash) comes first. Loading,
    refreshing and claiming happen with no ``await`` in between, so no other run in the
    process can take the same topic. The refresh is recorded in ``report``.
    """
    queue = load_queue(ctx)
    own = [e for e in queue if e.get("status") == "in_progress" and e.get("claimed_by") == ctx.run_key]
    todo = own or [e for e in queue if claimable(ctx, e)]
    if not todo:
        report["refreshed"] = refresh(ctx, queue)
        save_queue(ctx, queue)
        todo = [e for e in queue if claimable(ctx, e)]
    return claim(ctx, queue, todo[0]) if todo else None


# -- handlers -----------------------------------------------------------------------------------

async def refresh_queue(ctx: ActionContext) -> ActionResult:
    """``session.refresh_research_queue``: add new topics from the self model and recent summaries (no LLM)."""
    queue = load_queue(ctx)
    report = refresh(ctx, queue)
    save_queue(ctx, queue)
    write_queue_file(ctx)
    summary = (f"Research queue refreshed: {len(report['added'])} new topic(s), {report['pending']} pending, "
               f"{report['done']} already researched.")
    if report["over_cap"]:
        summary += f" {report['over_cap']} topic(s) wait for room (the queue holds at most its cap of pending topics)."
    return ActionResult(summary=summary, data=report)


async def run_single(ctx: ActionContext) -> ActionResult:
    """``session.research_single``: research the next topic (or ``params.topic``) and write its note."""
    report: dict[str, Any] = {}
    raw = ctx.params.get("topic")
    wanted = clean_topic(raw)
    if raw is not None and wanted is None:
        raise ActionFailed(f"params.topic: {raw!r} cannot be researched: a topic needs two words or more "
                           "and must not be an [offline] placeholder")
    if wanted is not None:
        queue = load_queue(ctx)
        entry = find(queue, normalise(wanted)) or add_topic(ctx, queue, wanted, "params")
        assert entry is not None
        if entry.get("status") == "done":
            return ActionResult(summary=f"Already researched on {str(entry.get('done_at', '?'))[:10]}: {entry['topic']} "
                                        f"(see {entry.get('note')}); a topic is never researched twice.",
                                data={"topic": entry["topic"], "note": entry.get("note"), "stop_reason": "already_done"})
        if not claimable(ctx, entry):
            save_queue(ctx, queue)
            return ActionResult(summary=f"{entry['topic']} is being researched by another run ({entry.get('claimed_by')}); "
                                        "a topic is never researched twice.",
                                data={"topic": entry["topic"], "claimed_by": entry.get("claimed_by"),
                                      "stop_reason": "in_progress"})
        claimed: dict[str, Any] | None = claim(ctx, queue, entry)
    else:
        claimed = claim_next(ctx, report)
    if claimed is None:
        write_queue_file(ctx)
        return ActionResult(summary="The research queue is empty even after a refresh: nothing to research.",
                            data={**report, "stop_reason": "queue_empty"})
    done = await research(ctx, prepare_job(ctx, claimed), note_tokens(ctx))
    write_queue_file(ctx)
    how = "recovered the note of an interrupted run" if done["recovered"] else "wrote a note"
    return ActionResult(summary=f"Researched {clip(claimed['topic'], 160)}: {how} at {done['path']}.",
                        data={**report, **{k: v for k, v in done.items() if k not in ('insights', 'questions')},
                              "pending": len(pending(load_queue(ctx)))},
                        insights=done["insights"], questions=done["questions"])


async def run_batch(ctx: ActionContext) -> ActionResult:
    """``session.research_batch``: research up to ``params.max_tasks`` topics, stopping before the cost cap."""
    max_tasks = int(ctx.params.get("max_tasks", 3))
    report: dict[str, Any] = {}
    tokens = note_tokens(ctx)
    done: list[dict[str, Any]] = []
    stop = "max_tasks"
    dearest = 0.0
    for _ in range(max_tasks):
        entry = claim_next(ctx, report)
        if entry is None:
            stop = "queue_empty"
            break
        job = prepare_job(ctx, entry)
        # Two calls per topic (note, findings); never less than the dearest topic so far.
        needed = max(dearest, 2 * ctx.llm.estimate_usd(job.prompt, system=RESEARCH_SYSTEM, max_tokens=tokens))
        if ctx.llm.stop_reason is not None or ctx.llm.remaining_usd < needed:
            release(ctx, entry["key"])
            stop = ctx.llm.stop_reason or "cost_cap_near"
            break
        before = ctx.llm.spent_usd
        try:
            result = await research(ctx, job, tokens)
        except LLMError as exc:
            if exc.kind in METER_KINDS:
                stop = exc.kind
                break
            if not done:
                raise
            stop = "llm_error"
            report["error"] = str(exc)
            break
        dearest = max(dearest, ctx.llm.spent_usd - before)
        done.append(result)
    write_queue_file(ctx)
    reasons = {"max_tasks": f"reached max_tasks ({max_tasks})", "queue_empty": "the queue is empty",
               "cost_cap_near": f"the cost cap (${ctx.llm.max_cost_usd:.2f}) would not cover another topic",
               "cost_cap": "the cost cap refused a call", "budget": "the budget refused a call",
               "call_cap": "the LLM call cap was reached", "llm_error": "an LLM call failed"}
    if done:
        summary = f"Researched {len(done)} topic(s): " + "; ".join(clip(d["topic"], 80) for d in done) + \
                  f". Stopped: {reasons[stop]}."
    else:
        summary = f"No topic researched: {reasons[stop]}."
    return ActionResult(
        summary=summary,
        data={**report, "stop_reason": stop, "researched": [{"topic": d["topic"], "path": d["path"],
                                                             "recovered": d["recovered"]} for d in done],
              "pending": len(pending(load_queue(ctx))), "spent_usd": ctx.llm.spent_usd,
              "max_cost_usd": ctx.llm.max_cost_usd},
        insights=dedupe([i for d in done for i in d["insights"]], limit=10),
        questions=dedupe([q for d in done for q in d["questions"]], limit=10),
    )


def settle_topic(ctx: ActionContext, topic: str, record: str) -> bool:
    """Mark ``topic`` done with ``record`` (a session record) if it waits in the queue."""
    entry = next((e for e in load_queue(ctx) if e["key"] == normalise(topic) and claimable(ctx, e)), None)
    if entry is None:
        return False
    mark_done(ctx, entry, record, recovered=False)
    return True


def peek_topic(ctx: ActionContext) -> str | None:
    """The next topic a run could take, without taking it (``session.research`` uses it as a default theme)."""
    todo = [e for e in load_queue(ctx) if claimable(ctx, e)]
    return todo[0]["topic"] if todo else None
