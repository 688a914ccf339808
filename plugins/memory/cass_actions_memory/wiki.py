"""Handlers of ``memory.create_wiki_note`` and ``memory.update_wiki_note``: knowledge notes grown from conversations.

A note is ``<data_dir>/notes/<slug>.md``. Its front matter (JSON values) holds ``title``,
``topic``, ``slug``, ``summary``, ``created``, ``updated``, ``revisions``, ``tags`` and
``sources`` (one ``{"summary", "conversation", "date"}`` per summary pass used); the
files are the source of truth, so a note edited by hand is revised from its edited text.

Every note's front matter is checked when it is read (:func:`read_note`): a date or time
without a UTC offset (``updated: 2026-01-01``) is taken as local time in the daemon's
zone; a value that cannot be used (``revisions: three``, a source without its
conversation) makes the note unusable. Such a note is skipped with a warning naming the
file and the field, or, when the action was asked for that note by name, the action
fails with that message. A note file is never overwritten by ``memory.create_wiki_note``, even
when its front matter is unusable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult
from cass_actions_core.text import (
    OFFLINE_LABEL,
    bullets,
    clip,
    first_sentence,
    keywords,
    label_offline,
    parse_front_matter,
    render_front_matter,
    slugify,
)

from cass_actions_memory.conversations import import_inbox, import_note, open_store
from cass_actions_memory.store import ConversationStore, SummaryPass
from cass_actions_memory.summarize import daemon_name, message_line
from cass_actions_memory.text import KEYWORD_LENGTH, setting_int

#: Folder (inside the pack's data folder) of the notes.
NOTES_DIR = "notes"
DEFAULT_SOURCE_DAYS = 14
#: Summary passes used as material for one note, and the characters they may take.
MAX_SOURCES = 6
MATERIAL_CHARS = 10_000
NOTE_MAX_TOKENS = 1_500
#: Key (in the pack's key-value area) of the topics ``memory.create_wiki_note`` picked, by run key,
#: so a run resumed after a crash writes the note it started on (or nothing, if it was written).
PICKS_KEY = "wiki.create_note.picked"  # a storage key from before the ids were renamed: kept, so stored picks stay readable
#: Picks remembered (the newest).
MAX_PICKS = 50


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


class NoteProblem(Exception):
    """A note that cannot be used: its file (relative to the pack's folder), the field and why."""

    def __init__(self, relative: str, field_name: str | None, message: str) -> None:
        self.relative, self.field, self.message = relative, field_name, message
        super().__init__(f"{relative}: field {field_name!r} {message}" if field_name else f"{relative}: {message}")


@dataclass
class Note:
    """A note file, parsed, with its front matter checked (see :func:`read_note`)."""

    path: Path
    slug: str
    #: The front matter as written (keys the pack does not know are kept when it is rewritten).
    fields: dict[str, Any]
    text: str
    #: The note's title (its slug when the front matter has none).
    title: str = ""
    #: The topic the note is about (its title when none is recorded).
    topic: str = ""
    summary: str = ""
    #: When the note last changed (aware; a naive value is local time in the daemon's zone), if recorded.
    updated: datetime | None = None
    revisions: int = 1
    tags: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def source_ids(self) -> set[int]:
        """Ids of the summary passes already used."""
        return {s["summary"] for s in self.sources}


def _relative(path: Path) -> str:
    return f"{NOTES_DIR}/{path.name}"


def _text_field(fields: dict[str, Any], key: str, rel: str, default: str) -> str:
    value = fields.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip() or default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise NoteProblem(rel, key, f"must be text, not {_kind(value)}")


def _time_field(fields: dict[str, Any], key: str, rel: str, tz: tzinfo) -> datetime | None:
    value = fields.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise NoteProblem(rel, key, f"must be an ISO 8601 date or date and time (such as \"2026-01-05T09:00:00+00:00\"), "
                                    f"not {_kind(value)} {value!r}")
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise NoteProblem(rel, key, f"is not an ISO 8601 date or date and time: {value!r} "
                                    "(write e.g. 2026-01-05 or 2026-01-05T09:00:00+00:00)") from None
    if when.tzinfo is None or when.utcoffset() is None:
        when = when.replace(tzinfo=tz)  # a date is local midnight, a bare time local time
    return when


def _revisions_field(fields: dict[str, Any], rel: str) -> int:
    value = fields.get("revisions")
    if value is None or value == "":
        return 1
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or int(value) != value or value < 0:
        raise NoteProblem(rel, "revisions", f"must be a whole number (0 or more), got {value!r}")
    return int(value)


def _tags_field(fields: dict[str, Any], rel: str) -> list[str]:
    value = fields.get("tags")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        # Hand-written: "basil, garden" or the YAML flow list [basil, garden].
        value = [t.strip().strip("\"'") for t in value.strip().removeprefix("[").removesuffix("]").split(",")]
    if not isinstance(value, list) or any(isinstance(t, (dict, list, bool)) or t is None for t in value):
        raise NoteProblem(rel, "tags", f"must be a list of words such as [\"basil\", \"garden\"], got {value!r}")
    return [str(t) for t in value if str(t).strip()]


def _sources_field(fields: dict[str, Any], rel: str) -> list[dict[str, Any]]:
    value = fields.get("sources")
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise NoteProblem(rel, "sources", f"must be a list of {{\"summary\", \"conversation\", \"date\"}} objects, not {_kind(value)}")
    for index, item in enumerate(value, start=1):
        if not (isinstance(item, dict) and isinstance(item.get("summary"), int) and not isinstance(item.get("summary"), bool)
                and isinstance(item.get("conversation"), str) and item["conversation"].strip()
                and isinstance(item.get("date"), str)):
            raise NoteProblem(rel, "sources", f"item {index} must be {{\"summary\": <summary pass id>, "
                                              f"\"conversation\": \"<id>\", \"date\": \"YYYY-MM-DD\"}}, got {item!r}")
    return [dict(item) for item in value]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "true/false", int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def read_note(path: Path, tz: tzinfo) -> Note:
    """The note at ``path`` with its front matter checked; :class:`NoteProblem` naming the file and field otherwise."""
    rel = _relative(path)
    try:
        fields, body = parse_front_matter(path.read_text("utf-8"))
    except UnicodeDecodeError as exc:
        raise NoteProblem(rel, None, f"is not valid UTF-8 (byte {exc.start + 1})") from None
    except OSError as exc:
        raise NoteProblem(rel, None, f"cannot be read: {exc.strerror or exc}") from None
    title = _text_field(fields, "title", rel, path.stem)
    _text_field(fields, "slug", rel, path.stem)
    _time_field(fields, "created", rel, tz)
    return Note(path, path.stem, fields, body, title=title, topic=_text_field(fields, "topic", rel, title),
                summary=_text_field(fields, "summary", rel, ""), updated=_time_field(fields, "updated", rel, tz),
                revisions=_revisions_field(fields, rel), tags=_tags_field(fields, rel), sources=_sources_field(fields, rel))


def note_paths(data_dir: Path) -> list[Path]:
    """Every note file (``notes/*.md``), usable or not, by name."""
    return sorted((data_dir / NOTES_DIR).glob("*.md"))


def load_notes(data_dir: Path, tz: tzinfo, logger: logging.Logger | None = None) -> tuple[list[Note], list[NoteProblem]]:
    """Every usable note, and the problems of the notes skipped (each logged as a warning naming file and field)."""
    notes: list[Note] = []
    skipped: list[NoteProblem] = []
    log = logger or logging.getLogger("cass_actions.pack.memory")
    for path in note_paths(data_dir):
        try:
            notes.append(read_note(path, tz))
        except NoteProblem as problem:
            log.warning("skipped the note %s (fix the file to use it again)", problem)
            skipped.append(problem)
    return notes, skipped


def main_text(body: str) -> str:
    """A note's own text: without its ``# title`` line, its ``>`` summary lines and its Sources section."""
    lines = body.splitlines()
    while lines and (not lines[0].strip() or lines[0].startswith("# ") or lines[0].startswith(">")):
        lines.pop(0)
    text = "\n".join(lines)
    cut = text.find("\n## Sources")
    return (text[:cut] if cut != -1 else text).strip()


def _pass_words(p: SummaryPass, titles: dict[str, str | None]) -> set[str]:
    return keywords(" ".join([p.text, *p.key_points, *p.open_questions, titles.get(p.conversation_id) or ""]), KEYWORD_LENGTH)


def related(passes: list[SummaryPass], subject: str, titles: dict[str, str | None]) -> list[SummaryPass]:
    """Passes sharing a significant word with ``subject``, most shared words first (newest first on ties)."""
    wanted = keywords(subject, KEYWORD_LENGTH)
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
    sources = fields.get("sources") or []  # checked by read_note for an existing note
    if sources:
        parts.append("## Sources\n\n" + bullets(
            f"{titles.get(s['conversation']) or s['conversation']} (`{s['conversation']}`), summary pass {s['summary']}, {s['date']}"
            for s in sources) + "\n")
    return "\n".join(parts)


def _source_days(ctx: ActionContext) -> int:
    return setting_int(ctx.settings, "note_source_days", DEFAULT_SOURCE_DAYS, minimum=1, maximum=3650)


def _topic_candidates(store: ConversationStore, passes: list[SummaryPass]) -> list[str]:
    """Topics in order of preference: open questions, key points, titles, first user lines (offline labels removed)."""
    out: list[str] = [q for p in passes for q in p.open_questions]
    out += [k for p in passes for k in p.key_points]
    conversations = store.conversations()
    out += [c.title for c in conversations if c.title]
    for c in conversations:
        first_user = next((m.content for m in store.messages(c.id) if m.role == "user"), None)
        if first_user:
            out.append(first_sentence(first_user, 120))
    return [clip(t.removeprefix(OFFLINE_LABEL).strip().rstrip("\u2026").strip(), 120) for t in out if t and t.strip()]


def covered(topic: str, notes: list[Note], files: Collection[str] = ()) -> bool:
    """Whether a note already covers ``topic``: same slug (``files``: every note file's slug), or most of its
    significant words in a note's topic."""
    slug = slugify(topic)
    if slug in files:
        return True
    words = keywords(topic, KEYWORD_LENGTH)
    for note in notes:
        if note.slug == slug:
            return True
        theirs = keywords(f"{note.topic} {note.title}", KEYWORD_LENGTH)
        if words and theirs and len(words & theirs) >= 0.6 * min(len(words), len(theirs)):
            return True
    return False


def _material_point(p: SummaryPass) -> str:
    return p.key_points[0] if p.key_points else first_sentence(p.text.removeprefix(OFFLINE_LABEL), 160)


def offline_note(topic: str, sources: list[SummaryPass], transcript: list[str]) -> NoteDraft:
    """A note assembled from the material itself (the offline provider's answer).

    Its title, summary and every listed item carry the offline label: they were picked
    from the material, not written by a model.
    """
    points = [label_offline(_material_point(p)) for p in sources]
    questions = [label_offline(q) for p in sources for q in p.open_questions][:3]
    listed = bullets(points) if points else bullets(label_offline(line) for line in transcript[:5])
    body = ["## What came up", listed or f"- {label_offline('Nothing recorded yet.')}"]
    if questions:
        body += ["", "## Open questions", bullets(questions)]
    tags = sorted(keywords(topic, KEYWORD_LENGTH))[:3]
    where = f"{len(sources)} conversation summary pass(es)" if sources else "conversation messages" if transcript else "no material yet"
    return NoteDraft(title=label_offline(clip(topic[:1].upper() + topic[1:], 80)),
                     summary=label_offline(f"A note on \u201c{topic}\u201d from {where}."), body="\n".join(body), tags=tags)


def _remembered_pick(ctx: ActionContext) -> dict[str, str] | None:
    """The topic this run (``ctx.run_key``) picked before, if it was interrupted after picking."""
    picks = ctx.kv.get(PICKS_KEY)
    entry = picks.get(ctx.run_key) if isinstance(picks, dict) else None
    if isinstance(entry, dict) and isinstance(entry.get("topic"), str) and slugify(entry["topic"]):
        return {"topic": entry["topic"], "slug": slugify(entry["topic"])}
    return None


def _remember_pick(ctx: ActionContext, topic: str, slug: str) -> None:
    """Record the picked topic under the run key, before the LLM call (the newest :data:`MAX_PICKS` are kept)."""
    picks = ctx.kv.get(PICKS_KEY)
    picks = dict(picks) if isinstance(picks, dict) else {}
    picks.pop(ctx.run_key, None)
    picks[ctx.run_key] = {"topic": topic, "slug": slug, "picked_at": ctx.now().isoformat()}
    ctx.kv.set(PICKS_KEY, dict(list(picks.items())[-MAX_PICKS:]))


async def create_note(ctx: ActionContext) -> ActionResult:
    """``memory.create_wiki_note``: write a new knowledge note from recent conversation material.

    ``topic`` names the subject; without it the first recent open question, key point,
    conversation title or opening line that no note covers yet is taken (a note covers a
    topic when it shares most of the topic's significant words). Material: the
    summary passes of the last ``note_source_days`` that share a word with the topic
    (else the messages of conversations that do). One structured LLM call. A topic that
    already has a note is left to ``memory.update_wiki_note`` (nothing to do, no call).

    Idempotent: a picked topic is remembered under the run key before the call, so a run
    resumed after a crash writes the note on the same topic, or, when that note was
    already written, returns without a call (it never moves on to the next topic).
    """
    tz = ctx.clock.tz
    notes, skipped = load_notes(ctx.data_dir, tz, ctx.logger)
    existing = {p.stem for p in note_paths(ctx.data_dir)}  # usable or not: a note file is never overwritten
    skipped_data = [str(p) for p in skipped]
    with open_store(ctx) as store:
        report = import_inbox(ctx, store)
        passes = store.summaries(since=ctx.now() - timedelta(days=_source_days(ctx)), limit=200)
        titles = {c.id: c.title for c in store.conversations()}
        topic = (ctx.params.get("topic") or "").strip()
        picked = False
        if topic:
            if slugify(topic) in existing:
                return ActionResult(summary=f"A note on {topic!r} already exists ({NOTES_DIR}/{slugify(topic)}.md); "
                                            "memory.update_wiki_note revises it. Nothing to do.",
                                    data={"slug": slugify(topic), "written": False, "skipped_notes": skipped_data})
        else:
            picked = True
            earlier = _remembered_pick(ctx)
            if earlier is not None:
                topic = earlier["topic"]
                if earlier["slug"] in existing:
                    relative = f"{NOTES_DIR}/{earlier['slug']}.md"
                    return ActionResult(
                        summary=f"This run already wrote the note {relative} on {topic!r} before it was interrupted; nothing to do.",
                        data={"slug": earlier["slug"], "path": relative, "topic": topic, "topic_picked": True,
                              "written": False, "resumed": True, "skipped_notes": skipped_data})
                ctx.logger.info("resuming memory.create_wiki_note on the topic picked before the interruption: %r", topic)
            else:
                topic = next((t for t in _topic_candidates(store, passes) if slugify(t) and not covered(t, notes, existing)), "")
                if not topic:
                    return ActionResult(summary="No conversation material suggests a topic without a note yet; nothing to do.",
                                        data={"slug": None, "written": False, "skipped_notes": skipped_data})
                _remember_pick(ctx, topic, slugify(topic))
        slug = slugify(topic)
        if not slug:
            raise ActionFailed(f"topic {topic!r} has no letters or digits to name a note file after")
        sources = related(passes, topic, titles)[:MAX_SOURCES]
        transcript: list[str] = []
        if not sources:
            wanted = keywords(topic, KEYWORD_LENGTH)
            for c in store.conversations():
                messages = store.messages(c.id)
                if wanted & keywords(" ".join(m.content for m in messages), KEYWORD_LENGTH):
                    transcript += [message_line(m, tz) for m in messages]
            transcript = transcript[:60]
    material = material_text(sources, titles, tz) if sources else "\n".join(transcript)
    name = daemon_name(ctx.workspace, ctx.logger)
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
    fields = {"title": clip(draft.title.strip() or label_offline(topic), 120), "topic": topic, "slug": slug, "summary": clip(draft.summary, 600),
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
              "sources": [p.id for p in sources], "skipped_notes": skipped_data},
        insights=[clip(fields["summary"], 300)],
    )


def offline_revision(note: Note, new: list[SummaryPass], day: str) -> NoteRevision:
    """The note's text plus a dated update listing the new material (the offline provider's answer).

    The summary is the note's own (no model revised it) and, like every new item, carries the offline label.
    """
    points = [label_offline(_material_point(p)) for p in new]
    body = main_text(note.text) + f"\n\n## Update {day}\n\n{OFFLINE_LABEL} New material:\n\n" + bullets(points)
    return NoteRevision(summary=label_offline(note.summary or note.title), body=body, tags=list(note.tags))


async def update_note(ctx: ActionContext) -> ActionResult:
    """``memory.update_wiki_note``: revise the note with the most new related material (the stalest on ties).

    New material for a note: summary passes it has not used, written after its last
    update, sharing a word with its topic or title. ``slug`` picks a note. Nothing to do
    (no call) with no notes or no new material. A note whose front matter cannot be used
    is skipped with a warning naming the file and field; asked for by ``slug``, it fails
    the action with that message.
    """
    tz = ctx.clock.tz
    paths = note_paths(ctx.data_dir)
    if not paths:
        return ActionResult(summary="There are no notes yet; nothing to update.", data={"slug": None, "written": False})
    wanted = ctx.params.get("slug")
    skipped: list[NoteProblem] = []
    if wanted:
        target = next((p for p in paths if p.stem == wanted), None)
        if target is None:
            known = ", ".join(p.stem for p in paths[:10])
            raise ActionFailed(f"no note {NOTES_DIR}/{wanted}.md (notes: {known})")
        try:
            notes = [read_note(target, tz)]
        except NoteProblem as problem:
            raise ActionFailed(f"{problem}; fix the note's front matter and run again") from None
    else:
        notes, skipped = load_notes(ctx.data_dir, tz, ctx.logger)
    skipped_data = [str(p) for p in skipped]
    if not notes:
        return ActionResult(summary=f"No usable note: {len(skipped)} skipped ({'; '.join(skipped_data[:3])}); nothing to update.",
                            data={"slug": None, "written": False, "skipped_notes": skipped_data})
    with open_store(ctx) as store:
        passes = store.summaries(limit=500)
        titles = {c.id: c.title for c in store.conversations()}
    floor = datetime(1970, 1, 1, tzinfo=UTC)  # for notes without an 'updated'
    scored = []
    for n in notes:
        since = n.updated or floor
        fresh = [p for p in passes if p.id not in n.source_ids and p.created_at > since]
        scored.append((related(fresh, f"{n.topic} {n.title}", titles)[:MAX_SOURCES], n))
    scored.sort(key=lambda sn: (-len(sn[0]), sn[1].updated or floor, sn[1].slug))
    new, note = scored[0]
    if not new:
        return ActionResult(summary=f"No new conversation material for {len(notes)} note(s); nothing to update.",
                            data={"slug": None, "written": False, "skipped_notes": skipped_data})
    material = material_text(new, titles, tz)
    name = daemon_name(ctx.workspace, ctx.logger)
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
    fields.setdefault("slug", note.slug)
    fields.update({"title": note.title, "topic": note.topic, "summary": clip(revision.summary, 600),
                   "updated": ctx.now().isoformat(), "revisions": note.revisions + 1,
                   "tags": [clip(t, 40) for t in revision.tags[:5]] or note.tags,
                   "sources": [*note.sources, *(_source_entry(p, tz) for p in new)]})
    path = ctx.write_text(f"{NOTES_DIR}/{note.slug}.md", render_note(fields, revision.body, titles))
    ctx.add_artifact("markdown", f"Note: {fields['title']}", path)
    return ActionResult(
        summary=f"Revised the note {fields['title']!r} ({NOTES_DIR}/{note.slug}.md) with {len(new)} new summary pass(es); "
                f"revision {fields['revisions']}." + (f" Skipped {len(skipped)} unusable note(s): {'; '.join(skipped_data[:3])}."
                                                      if skipped else ""),
        data={"slug": note.slug, "path": f"{NOTES_DIR}/{note.slug}.md", "written": True, "sources": [p.id for p in new],
              "revisions": fields["revisions"], "skipped_notes": skipped_data},
        insights=[clip(fields["summary"], 300)],
    )
