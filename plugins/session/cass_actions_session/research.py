"""The local research queue: ``research.refresh_queue``, ``research.run_single``, ``research.run_batch``.

The queue lives in the pack's key-value area (``research_queue``), so it survives
restarts. Each topic has a key (its normalised text) and a slug; a topic stays in the
queue after it is researched (status ``done``), so refreshing never adds it again and
it is never researched twice. Before researching, the note file is checked too: a run
that wrote the note but crashed before marking the topic done is recovered without a
second LLM call.

Topics come from the self model's open questions, from ``questions_raised`` in recent
work summaries, and from a ``topics`` parameter. Questions labelled ``[offline]`` (the
offline provider's placeholders) are not topics and are skipped.

A research note is written from the model's own knowledge: no web page is fetched, and
each note says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from cass_actions_core.actions import ActionContext, ActionResult
from cass_actions_core.llm.errors import METER_KINDS, LLMError

from cass_actions_session import selfmodel
from cass_actions_session.common import (
    DERIVED_LABEL,
    clip,
    dedupe,
    is_offline_text,
    normalise,
    sentences,
    setting_int,
    short_hash,
    slugify,
    unit_short_id,
    words,
)

QUEUE_KEY = "research_queue"
QUEUE_FILE = "research-queue.md"
NOTES_DIR = "research"

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
    return f"{slugify(topic, 50)}-{short_hash(normalise(topic))}"


def clean_topic(text: Any) -> str | None:
    """A usable topic from ``text``, or ``None`` (empty, an offline placeholder, or too short)."""
    if not isinstance(text, str):
        return None
    text = " ".join(text.split())
    if not text or is_offline_text(text) or len(text.split()) < 2:
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


def pending(queue: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries still to research, oldest first."""
    return [e for e in queue if e.get("status") == "pending"]


def add_topic(ctx: ActionContext, queue: list[dict[str, Any]], topic: str, source: str) -> dict[str, Any] | None:
    """Append ``topic`` unless its key is already in the queue (pending or done); return the new entry."""
    key = normalise(topic)
    if any(e["key"] == key for e in queue):
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
    try:
        model = selfmodel.load_self_model(ctx.workspace)
    except selfmodel.SelfModelError as exc:
        warnings.append(f"self model skipped: {exc}")
        ctx.logger.warning("self model skipped: %s", exc)
        model = None
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
            if all(e["key"] != normalise(topic) for e in queue):
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
    lines += [f"{i}. {e['topic']} *(from {e.get('source', '?')})*" for i, e in enumerate(todo, 1)] or ["(none)"]
    lines += ["", "## Researched", ""]
    done = [e for e in queue if e.get("status") == "done"]
    lines += [f"- {e['topic']} \u2014 {str(e.get('done_at', '?'))[:10]} \u2014 [note]({e.get('note', '')})" for e in done] or ["(none)"]
    return "\n".join(lines) + "\n"


def write_queue_file(ctx: ActionContext, queue: list[dict[str, Any]]) -> None:
    """Write ``research-queue.md`` and register it as an artifact."""
    path = ctx.write_text(QUEUE_FILE, render_queue(ctx, queue))
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
    topic_words = words(topic)
    related: list[str] = []
    for summary in ctx.history.summaries(limit=setting_int(ctx, "recent_summaries", 10, minimum=0, maximum=200) or 0):
        text = " ".join([str(summary.get("narrative", "")), *map(str, summary.get("insights") or [])])
        if len(topic_words & words(text)) >= 2:
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
    """Findings built from the note's text without a model (offline, or when the meter stopped)."""
    real = "" if is_offline_text(body) else body
    found = sentences(real)
    statements = dedupe([clip(s, 300) for s in found if not s.endswith("?") and len(s.split()) >= 5], limit=3)
    questions = dedupe([clip(s, 300) for s in found if s.endswith("?")], limit=3)
    if not statements:
        statements = [f"Started a note on: {topic}"]
    if not questions and topic.endswith("?"):
        questions = [topic]
    return ResearchFindings(summary=clip(f"Research note on: {topic}" + (f" {statements[0]}" if real else ""), 400),
                            findings=statements, open_questions=questions)


async def research(ctx: ActionContext, queue: list[dict[str, Any]], job: ResearchJob, max_tokens: int) -> dict[str, Any]:
    """Research ``job``'s topic: write the note, mark the topic done, save the queue; return a report.

    Raises :class:`LLMError` when the note call itself fails (nothing is written then).
    """
    entry = job.entry
    relative_path = f"{NOTES_DIR}/{entry['slug']}.md"
    if (ctx.data_dir / relative_path).exists():
        # Written by a run that crashed before marking the topic done: never research it twice.
        mark_done(ctx, queue, entry, relative_path, recovered=True)
        return {"topic": entry["topic"], "path": relative_path, "recovered": True, "insights": [], "questions": []}
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
    mark_done(ctx, queue, entry, relative_path, recovered=False)
    ctx.emit("research.note_written", {"topic": entry["topic"], "path": relative_path})
    return {"topic": entry["topic"], "path": relative_path, "recovered": False, "summary": findings.summary,
            "insights": findings.findings, "questions": findings.open_questions}


def mark_done(ctx: ActionContext, queue: list[dict[str, Any]], entry: dict[str, Any], note: str, *, recovered: bool) -> None:
    """Mark ``entry`` researched (with its note) and save the queue at once."""
    entry.update({"status": "done", "done_at": ctx.now().isoformat(), "note": note, "run_key": ctx.run_key})
    if recovered:
        entry["recovered"] = True
    save_queue(ctx, queue)


def note_tokens(ctx: ActionContext) -> int:
    """``[packs.session] research_max_tokens``: the note's output limit."""
    return setting_int(ctx, "research_max_tokens", 1500, minimum=128, maximum=16000)


def next_entry(ctx: ActionContext, queue: list[dict[str, Any]], report: dict[str, Any]) -> dict[str, Any] | None:
    """The next pending topic; when none, refresh the queue first (recorded in ``report``)."""
    todo = pending(queue)
    if todo:
        return todo[0]
    report["refreshed"] = refresh(ctx, queue)
    save_queue(ctx, queue)
    todo = pending(queue)
    return todo[0] if todo else None


# -- handlers -----------------------------------------------------------------------------------

async def refresh_queue(ctx: ActionContext) -> ActionResult:
    """``research.refresh_queue``: add new topics from the self model and recent summaries (no LLM)."""
    queue = load_queue(ctx)
    report = refresh(ctx, queue)
    save_queue(ctx, queue)
    write_queue_file(ctx, queue)
    summary = (f"Research queue refreshed: {len(report['added'])} new topic(s), {report['pending']} pending, "
               f"{report['done']} already researched.")
    if report["over_cap"]:
        summary += f" {report['over_cap']} topic(s) wait for room (the queue holds at most its cap of pending topics)."
    return ActionResult(summary=summary, data=report)


async def run_single(ctx: ActionContext) -> ActionResult:
    """``research.run_single``: research the next topic (or ``params.topic``) and write its note."""
    queue = load_queue(ctx)
    report: dict[str, Any] = {}
    wanted = clean_topic(ctx.params.get("topic"))
    if ctx.params.get("topic") is not None and wanted is None:
        return ActionResult(summary="The topic given is too short to research (two words at least): nothing done.",
                            data={"stop_reason": "nothing_to_do"})
    if wanted is not None:
        entry = next((e for e in queue if e["key"] == normalise(wanted)), None) or add_topic(ctx, queue, wanted, "params")
        assert entry is not None
        save_queue(ctx, queue)
        if entry.get("status") == "done":
            return ActionResult(summary=f"Already researched on {str(entry.get('done_at', '?'))[:10]}: {entry['topic']} "
                                        f"(see {entry.get('note')}); a topic is never researched twice.",
                                data={"topic": entry["topic"], "note": entry.get("note"), "stop_reason": "already_done"})
    else:
        entry = next_entry(ctx, queue, report)
    if entry is None:
        write_queue_file(ctx, queue)
        return ActionResult(summary="The research queue is empty even after a refresh: nothing to research.",
                            data={**report, "stop_reason": "queue_empty"})
    done = await research(ctx, queue, prepare_job(ctx, entry), note_tokens(ctx))
    write_queue_file(ctx, queue)
    how = "recovered the note of an interrupted run" if done["recovered"] else "wrote a note"
    return ActionResult(summary=f"Researched {clip(entry['topic'], 160)}: {how} at {done['path']}.",
                        data={**report, **{k: v for k, v in done.items() if k not in ('insights', 'questions')},
                              "pending": len(pending(queue))},
                        insights=done["insights"], questions=done["questions"])


async def run_batch(ctx: ActionContext) -> ActionResult:
    """``research.run_batch``: research up to ``params.max_tasks`` topics, stopping before the cost cap."""
    max_tasks = int(ctx.params.get("max_tasks", 3))
    queue = load_queue(ctx)
    report: dict[str, Any] = {}
    tokens = note_tokens(ctx)
    done: list[dict[str, Any]] = []
    stop = "max_tasks"
    dearest = 0.0
    for _ in range(max_tasks):
        entry = next_entry(ctx, queue, report)
        if entry is None:
            stop = "queue_empty"
            break
        job = prepare_job(ctx, entry)
        # Two calls per topic (note, findings); never less than the dearest topic so far.
        needed = max(dearest, 2 * ctx.llm.estimate_usd(job.prompt, system=RESEARCH_SYSTEM, max_tokens=tokens))
        if ctx.llm.stop_reason is not None or ctx.llm.remaining_usd < needed:
            stop = ctx.llm.stop_reason or "cost_cap_near"
            break
        before = ctx.llm.spent_usd
        try:
            result = await research(ctx, queue, job, tokens)
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
    write_queue_file(ctx, queue)
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
              "pending": len(pending(queue)), "spent_usd": ctx.llm.spent_usd, "max_cost_usd": ctx.llm.max_cost_usd},
        insights=dedupe([i for d in done for i in d["insights"]], limit=10),
        questions=dedupe([q for d in done for q in d["questions"]], limit=10),
    )


def settle_topic(ctx: ActionContext, topic: str, record: str) -> bool:
    """Mark ``topic`` done with ``record`` (a session record) if it is pending in the queue."""
    queue = load_queue(ctx)
    entry = next((e for e in pending(queue) if e["key"] == normalise(topic)), None)
    if entry is None:
        return False
    mark_done(ctx, queue, entry, record, recovered=False)
    return True


def peek_topic(ctx: ActionContext) -> str | None:
    """The next pending topic without taking it (``session.research`` uses it as a default theme)."""
    todo = pending(load_queue(ctx))
    return todo[0]["topic"] if todo else None
