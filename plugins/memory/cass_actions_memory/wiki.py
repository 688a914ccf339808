"""Handlers of ``wiki.create_note`` and ``wiki.update_note``: knowledge notes grown from conversations.

A note is ``<data_dir>/notes/<slug>.md``. Its front matter (JSON values) holds ``title``,
``topic``, ``slug``, ``summary``, ``created``, ``updated``, ``revisions``, ``tags`` and
``sources`` (one ``{"summary", "conversation", "date"}`` per summary pass used); the
files are the source of truth, so a note edited by hand is revised from its edited text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult

from cass_actions_memory.conversations import import_inbox, import_note, open_store
from cass_actions_memory.store import ConversationStore, SummaryPass
from cass_actions_memory.summarize import daemon_name, message_line
from cass_actions_memory.text import (
    OFFLINE_LABEL,
    bullets,
    clip,
    first_sentence,
    keywords,
    parse_front_matter,
    render_front_matter,
    setting_int,
    slugify,
)

#: Folder (inside the pack's data folder) of the notes.
NOTES_DIR = "notes"
DEFAULT_SOURCE_DAYS = 14
#: Summary passes used as material for one note, and the characters they may take.
MAX_SOURCES = 6
MATERIAL_CHARS = 10_000
NOTE_MAX_TOKENS = 1_500


class NoteDraft(BaseModel):
    """What the LLM returns for a new note."""

    title: str
    summary: str
    body: str
    tags: list[str]


class NoteRevision(BaseModel):
    """What the LLM returns when revising a note."""

    summary: str
    body: str
    tags: list[str]


@dataclass
class Note:
    """A note file, parsed."""

    path: Path
    slug: str
    fields: dict[str, Any]
    text: str

    @property
    def title(self) -> str:
        """The note's title (its slug when the front matter has none)."""
        return str(self.fields.get("title") or self.slug)

    @property
    def topic(self) -> str:
        """The topic the note is about (its title when none is recorded)."""
        return str(self.fields.get("topic") or self.title)

    @property
    def updated(self) -> datetime | None:
        """When the note last changed, from the front matter."""
        try:
            return datetime.fromisoformat(str(self.fields.get("updated")))
        except ValueError:
            return None

    @property
    def source_ids(self) -> set[int]:
        """Ids of the summary passes already used."""
        return {s["summary"] for s in self.fields.get("sources") or [] if isinstance(s, dict) and isinstance(s.get("summary"), int)}


def load_notes(data_dir: Path) -> list[Note]:
    """Every ``notes/*.md`` with its front matter (files that cannot be read are skipped)."""
    notes = []
    for path in sorted((data_dir / NOTES_DIR).glob("*.md")):
        try:
            fields, body = parse_front_matter(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        notes.append(Note(path, path.stem, fields, body))
    return notes


def main_text(body: str) -> str:
    """A note's own text: without its ``# title`` line, its ``>`` summary lines and its Sources section."""
    lines = body.splitlines()
    while lines and (not lines[0].strip() or lines[0].startswith("# ") or lines[0].startswith(">")):
        lines.pop(0)
    text = "\n".join(lines)
    cut = text.find("\n## Sources")
    return (text[:cut] if cut != -1 else text).strip()


def _pass_words(p: SummaryPass, titles: dict[str, str | None]) -> set[str]:
    return keywords(" ".join([p.text, *p.key_points, *p.open_questions, titles.get(p.conversation_id) or ""]))


def related(passes: list[SummaryPass], subject: str, titles: dict[str, str | None]) -> list[SummaryPass]:
    """Passes sharing a significant word with ``subject``, most shared words first (newest first on ties)."""
    wanted = keywords(subject)
    scored = [(len(wanted & _pass_words(p, titles)), p) for p in passes]
    return [p for score, p in sorted(scored, key=lambda sp: (-sp[0], -sp[1].id)) if score > 0]


def material_text(passes: list[SummaryPass], titles: dict[str, str | None], tz: Any) -> str:
    """Summary passes as prompt material, within :data:`MATERIAL_CHARS`."""
    blocks, used = [], 0
    for p in passes:
        block = "\n".join([f"### {titles.get(p.conversation_id) or p.conversation_id} "
                           f"({p.first_message_at.astimezone(tz):%Y-%m-%d})", clip(p.text, 1500),
                           *(["Key points:", bullets(p.key_points)] if p.key_points else []),
                           *(["Open questions:", bullets(p.open_questions)] if p.open_questions else [])])
        if blocks and used + len(block) > MATERIAL_CHARS:
            break
        blocks.append(block)
        used += len(block)
    return "\n\n".join(blocks)


def _source_entry(p: SummaryPass, tz: Any) -> dict[str, Any]:
    return {"summary": p.id, "conversation": p.conversation_id, "date": p.first_message_at.astimezone(tz).date().isoformat()}


def render_note(fields: dict[str, Any], text: str, titles: dict[str, str | None]) -> str:
    """The note file: front matter, title, summary line, text and its sources."""
    parts = [render_front_matter(fields), f"# {fields['title']}\n", f"> {clip(fields.get('summary') or '', 600)}\n",
             text.strip() + "\n"]
    sources = fields.get("sources") or []
    if sources:
        parts.append("## Sources\n\n" + bullets(
            f"{titles.get(s['conversation']) or s['conversation']} (`{s['conversation']}`), summary pass {s['summary']}, {s['date']}"
            for s in sources) + "\n")
    return "\n".join(parts)


def _source_days(ctx: ActionContext) -> int:
    return setting_int(ctx.settings, "note_source_days", DEFAULT_SOURCE_DAYS, minimum=1, maximum=3650)


def _topic_candidates(store: ConversationStore, passes: list[SummaryPass]) -> list[str]:
    """Topics in order of preference: open questions, key points, titles, first user lines."""
    out: list[str] = [q for p in passes for q in p.open_questions]
    out += [k for p in passes for k in p.key_points]
    conversations = store.conversations()
    out += [c.title.removeprefix(OFFLINE_LABEL).strip() for c in conversations if c.title]
    for c in conversations:
        first_user = next((m.content for m in store.messages(c.id) if m.role == "user"), None)
        if first_user:
            out.append(first_sentence(first_user, 120))
    return [clip(t.removeprefix(OFFLINE_LABEL).strip().rstrip("\u2026").strip(), 120) for t in out if t and t.strip()]


def covered(topic: str, notes: list[Note]) -> bool:
    """Whether a note already covers ``topic``: same slug, or most of its significant words in a note's topic."""
    slug = slugify(topic)
    words = keywords(topic)
    for note in notes:
        if note.slug == slug:
            return True
        theirs = keywords(f"{note.topic} {note.title}")
        if words and theirs and len(words & theirs) >= 0.6 * min(len(words), len(theirs)):
            return True
    return False


def offline_note(topic: str, sources: list[SummaryPass], transcript: list[str]) -> NoteDraft:
    """A note assembled from the material itself (the offline provider's answer)."""
    points = [p.key_points[0] if p.key_points else first_sentence(p.text.removeprefix(OFFLINE_LABEL)) for p in sources]
    questions = [q for p in sources for q in p.open_questions][:3]
    body = ["## What came up", bullets(points) if points else bullets(transcript[:5]) or "- Nothing recorded yet."]
    if questions:
        body += ["", "## Open questions", bullets(questions)]
    tags = sorted(keywords(topic))[:3]
    where = f"{len(sources)} conversation summary pass(es)" if sources else "conversation messages" if transcript else "no material yet"
    return NoteDraft(title=clip(topic[:1].upper() + topic[1:], 80), summary=f"{OFFLINE_LABEL} A note on \u201c{topic}\u201d from {where}.",
                     body="\n".join(body), tags=tags)


async def create_note(ctx: ActionContext) -> ActionResult:
    """``wiki.create_note``: write a new knowledge note from recent conversation material.

    ``topic`` names the subject; without it the first recent open question, key point,
    conversation title or opening line that no note covers yet is taken (a note covers a
    topic when it shares most of the topic's significant words). Material: the
    summary passes of the last ``note_source_days`` that share a word with the topic
    (else the messages of conversations that do). One structured LLM call. A topic that
    already has a note is left to ``wiki.update_note`` (nothing to do, no call).
    """
    tz = ctx.now().tzinfo
    notes = load_notes(ctx.data_dir)
    existing = {n.slug for n in notes}
    with open_store(ctx) as store:
        report = import_inbox(ctx, store)
        passes = store.summaries(since=ctx.now() - timedelta(days=_source_days(ctx)), limit=200)
        titles = {c.id: c.title for c in store.conversations()}
        topic = (ctx.params.get("topic") or "").strip()
        picked = False
        if topic:
            if slugify(topic) in existing:
                return ActionResult(summary=f"A note on {topic!r} already exists ({NOTES_DIR}/{slugify(topic)}.md); "
                                            "wiki.update_note revises it. Nothing to do.",
                                    data={"slug": slugify(topic), "written": False})
        else:
            topic = next((t for t in _topic_candidates(store, passes) if slugify(t) and not covered(t, notes)), "")
            picked = True
            if not topic:
                return ActionResult(summary="No conversation material suggests a topic without a note yet; nothing to do.",
                                    data={"slug": None, "written": False})
        slug = slugify(topic)
        if not slug:
            raise ActionFailed(f"topic {topic!r} has no letters or digits to name a note file after")
        sources = related(passes, topic, titles)[:MAX_SOURCES]
        transcript: list[str] = []
        if not sources:
            wanted = keywords(topic)
            for c in store.conversations():
                messages = store.messages(c.id)
                if wanted & keywords(" ".join(m.content for m in messages)):
                    transcript += [message_line(m, tz) for m in messages]
            transcript = transcript[:60]
    material = material_text(sources, titles, tz) if sources else "\n".join(transcript)
    name = daemon_name(ctx.workspace)
    prompt = (f"Write a knowledge note on: {topic}\n\n"
              + (f"What my conversations said about it:\n\n{material}\n\n" if material else
                 "No conversation has touched this topic yet; say so in the note and write only what is well established.\n\n")
              + "Return title (short), summary (one sentence), body (markdown with a few '## ' sections: what I know, "
                "what connects to it, open questions) and tags (up to 5 single words).")
    draft = await ctx.llm.structured(
        prompt, NoteDraft, max_tokens=NOTE_MAX_TOKENS,
        system=f"You are {name}, an AI daemon keeping a personal wiki of what you learn. Be accurate; mark guesses as guesses.",
        offline=lambda: offline_note(topic, sources, transcript),
    )
    now = ctx.now().isoformat()
    fields = {"title": clip(draft.title.strip() or topic, 120), "topic": topic, "slug": slug, "summary": clip(draft.summary, 600),
              "created": now, "updated": now, "revisions": 1, "tags": [clip(t, 40) for t in draft.tags[:5]],
              "sources": [_source_entry(p, tz) for p in sources]}
    path = ctx.write_text(f"{NOTES_DIR}/{slug}.md", render_note(fields, draft.body, titles))
    ctx.add_artifact("markdown", f"Note: {fields['title']}", path)
    how = "picked from recent conversations" if picked else "as asked"
    note = import_note(report)
    return ActionResult(
        summary=f"Wrote the note {fields['title']!r} ({NOTES_DIR}/{slug}.md; topic {how}) from "
                f"{len(sources)} summary pass(es)." + (f" {note}" if note else ""),
        data={"slug": slug, "path": f"{NOTES_DIR}/{slug}.md", "topic": topic, "topic_picked": picked, "written": True,
              "sources": [p.id for p in sources]},
        insights=[clip(fields["summary"], 300)],
    )


def offline_revision(note: Note, new: list[SummaryPass], day: str) -> NoteRevision:
    """The note's text plus a dated update listing the new material (the offline provider's answer)."""
    points = [p.key_points[0] if p.key_points else first_sentence(p.text.removeprefix(OFFLINE_LABEL)) for p in new]
    body = main_text(note.text) + f"\n\n## Update {day}\n\n{OFFLINE_LABEL} New material:\n\n" + bullets(points)
    return NoteRevision(summary=str(note.fields.get("summary") or note.title), body=body,
                        tags=[str(t) for t in note.fields.get("tags") or []])


async def update_note(ctx: ActionContext) -> ActionResult:
    """``wiki.update_note``: revise the note with the most new related material (the stalest on ties).

    New material for a note: summary passes it has not used, written after its last
    update, sharing a word with its topic or title. ``slug`` picks a note. Nothing to do
    (no call) with no notes or no new material.
    """
    tz = ctx.now().tzinfo
    notes = load_notes(ctx.data_dir)
    if not notes:
        return ActionResult(summary="There are no notes yet; nothing to update.", data={"slug": None, "written": False})
    wanted = ctx.params.get("slug")
    if wanted:
        notes = [n for n in notes if n.slug == wanted]
        if not notes:
            known = ", ".join(n.slug for n in load_notes(ctx.data_dir)[:10])
            raise ActionFailed(f"no note {NOTES_DIR}/{wanted}.md (notes: {known})")
    with open_store(ctx) as store:
        passes = store.summaries(limit=500)
        titles = {c.id: c.title for c in store.conversations()}
    floor = datetime(1970, 1, 1, tzinfo=UTC)  # for notes without a readable 'updated'
    scored = []
    for n in notes:
        since = n.updated or floor
        fresh = [p for p in passes if p.id not in n.source_ids and p.created_at > since]
        scored.append((related(fresh, f"{n.topic} {n.title}", titles)[:MAX_SOURCES], n))
    scored.sort(key=lambda sn: (-len(sn[0]), sn[1].updated or floor, sn[1].slug))
    new, note = scored[0]
    if not new:
        return ActionResult(summary=f"No new conversation material for {len(notes)} note(s); nothing to update.",
                            data={"slug": None, "written": False})
    material = material_text(new, titles, tz)
    name = daemon_name(ctx.workspace)
    current = main_text(note.text)
    prompt = (f"Revise my note \u201c{note.title}\u201d (topic: {note.topic}) with new material from my conversations. "
              "Keep what still holds, fold in what is new, and note what changed.\n\n"
              f"The note now:\n\n{current[:8000]}\n\nNew material:\n\n{material}\n\n"
              "Return summary (one sentence), body (the whole revised note in markdown) and tags (up to 5 single words).")
    revision = await ctx.llm.structured(
        prompt, NoteRevision, max_tokens=NOTE_MAX_TOKENS + 300,
        system=f"You are {name}, an AI daemon keeping a personal wiki of what you learn. Be accurate; mark guesses as guesses.",
        offline=lambda: offline_revision(note, new, ctx.local_date.isoformat()),
    )
    fields = dict(note.fields)
    fields.setdefault("title", note.title)
    fields.setdefault("topic", note.topic)
    fields.setdefault("slug", note.slug)
    fields.update({"summary": clip(revision.summary, 600), "updated": ctx.now().isoformat(),
                   "revisions": int(fields.get("revisions") or 1) + 1,
                   "tags": [clip(t, 40) for t in revision.tags[:5]] or fields.get("tags") or [],
                   "sources": [*(fields.get("sources") or []), *(_source_entry(p, tz) for p in new)]})
    path = ctx.write_text(f"{NOTES_DIR}/{note.slug}.md", render_note(fields, revision.body, titles))
    ctx.add_artifact("markdown", f"Note: {fields['title']}", path)
    return ActionResult(
        summary=f"Revised the note {fields['title']!r} ({NOTES_DIR}/{note.slug}.md) with {len(new)} new summary pass(es); "
                f"revision {fields['revisions']}.",
        data={"slug": note.slug, "path": f"{NOTES_DIR}/{note.slug}.md", "written": True, "sources": [p.id for p in new],
              "revisions": fields["revisions"]},
        insights=[clip(fields["summary"], 300)],
    )
