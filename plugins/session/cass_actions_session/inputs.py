"""What sessions read: the workspace's files and the history of work, gathered as material.

Every reader returns a :class:`Section` (possibly empty) that says where its text came
from. Bad input is reported, never fatal: a malformed JSON line in a feed or the
conversation inbox, or a line with a bad field (a conversation message whose ``role``
is not ``user`` or ``assistant``, a time without a UTC offset ...), is skipped with a
warning naming the file, the line and the field (the rest of the file is still read),
and a malformed self model is skipped with a warning naming the file, line and column.
Markdown files are read without their front matter (the ``---`` block of metadata).
The warnings end up in the action's result data, so they are visible in ``history``.
"""

from __future__ import annotations

import json
import os
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from cass_actions_core.actions import ActionContext
from cass_actions_core.text import clip, first_sentence, parse_front_matter
from cass_actions_core.workspace import CONVERSATION_INBOX, FEEDS, read_self_model

from cass_actions_session import selfmodel
from cass_actions_session.common import clip_block, date_in_name, plain, relative, short_hash

JOURNAL_DIR = Path("journal")
NOTES_DIR = Path("memory") / "notes"
#: Where the memory pack publishes one summary file per conversation.
CONVERSATION_SUMMARIES_DIR = Path("memory") / "summaries"

#: Characters of one file or item kept in a prompt, and of the whole material.
FILE_CHARS = 2500
MATERIAL_CHARS = 16000


@dataclass
class Section:
    """Material from one source: a heading, its text, how many items, their paths, highlights."""

    source: str
    title: str
    text: str = ""
    count: int = 0
    paths: list[str] = field(default_factory=list)
    #: Short lines a session can take up one per turn (questions, titles, first sentences).
    highlights: list[str] = field(default_factory=list)
    #: Open questions found in this source (kept apart: a derived session raises these).
    questions: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.count > 0 and bool(self.text.strip())


@dataclass
class Material:
    """Everything a session read, in order, plus the warnings raised while reading."""

    sections: list[Section] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, section: Section) -> None:
        """Keep a non-empty section."""
        if section:
            self.sections.append(section)

    def has(self, source: str) -> bool:
        """Whether anything was read from ``source``."""
        return any(s.source == source for s in self.sections)

    def counts(self) -> dict[str, int]:
        """Items read per source."""
        out: dict[str, int] = {}
        for s in self.sections:
            out[s.source] = out.get(s.source, 0) + s.count
        return out

    def paths(self) -> list[str]:
        """Every file read (workspace-relative)."""
        return [p for s in self.sections for p in s.paths]

    def highlights(self) -> list[str]:
        """Highlights of every section, interleaved so each source gets a turn."""
        return _interleave([s.highlights for s in self.sections])

    def questions(self) -> list[str]:
        """Open questions of every section, interleaved."""
        return _interleave([s.questions for s in self.sections])

    def render(self, limit: int = MATERIAL_CHARS) -> str:
        """The material as markdown (one ``##`` section per source), cut to ``limit`` characters."""
        text = "\n\n".join(f"## {s.title}\n\n{s.text.strip()}" for s in self.sections)
        return clip_block(text, limit)

    def describe(self) -> str:
        """One line saying what was read, e.g. ``self model, 2 journal entries``."""
        names = {"self": "self model", "journal": "journal entr{ies}", "notes": "note{s}", "summaries": "work summar{ies}",
                 "feeds": "feed item{s}", "conversations": "conversation{s}", "conversation_summaries": "conversation summar{ies}",
                 "sessions": "earlier session{s}", "research": "research note{s}", "insights": "insight{s}"}
        parts = []
        for source, count in self.counts().items():
            label = names.get(source, source)
            if source == "self":
                parts.append(label)
                continue
            plural = count != 1
            label = label.replace("{ies}", "ies" if plural else "y").replace("{s}", "s" if plural else "")
            parts.append(f"{count} {label}")
        return ", ".join(parts) if parts else "nothing"


def _interleave(lists: list[list[str]]) -> list[str]:
    """One item from each list in turn, until all are used; duplicates dropped."""
    queues = [list(items) for items in lists]
    out: list[str] = []
    while any(queues):
        for items in queues:
            if items:
                item = items.pop(0)
                if item not in out:
                    out.append(item)
    return out


# -- self model ----------------------------------------------------------------------------

class _WarningRecorder:
    """A logger stand-in for :func:`read_self_model`: keeps each warning and passes it on."""

    def __init__(self, logger: logging.Logger, warnings: list[str]) -> None:
        self.logger, self.warnings = logger, warnings

    def warning(self, message: str, *args: Any) -> None:
        text = message % args if args else message
        self.warnings.append(f"self model skipped: {text}")
        self.logger.warning("self model skipped: %s", text)


class _Quiet:
    """A logger stand-in that drops warnings (the self model is reported where it is read as material)."""

    def warning(self, message: str, *args: Any) -> None:
        """Drop the warning."""


def read_model(ctx: ActionContext, warnings: list[str] | None = None) -> dict[str, Any] | None:
    """The self model for reading (``None`` if missing or unusable).

    Why it is unusable (file, line, column) goes to ``warnings`` and the log; with
    ``warnings`` ``None`` it is not reported (a second read of the same file).
    """
    log = _Quiet() if warnings is None else _WarningRecorder(ctx.logger, warnings)
    return read_self_model(ctx.workspace, log)  # type: ignore[arg-type]


def self_section(ctx: ActionContext, material: Material) -> dict[str, Any] | None:
    """Add the self model to ``material``; return the document (``None`` if missing or malformed)."""
    model = read_model(ctx, material.warnings)
    if model is None:
        return None
    text = selfmodel.render(model)
    if text:
        highlights = selfmodel.open_questions(model) + [
            f"{e['area']}" + (f": {e['current_state']}" if isinstance(e.get("current_state"), str) and e["current_state"] else "")
            for e in selfmodel.growth_edges(model)]
        material.add(Section("self", "My self model", text, 1, [relative(ctx, selfmodel.model_path(ctx.workspace))],
                             highlights, selfmodel.open_questions(model)))
    return model


# -- markdown folders ------------------------------------------------------------------------

def markdown_files(folder: Path) -> list[Path]:
    """Markdown files directly in ``folder``, newest first: by the date in the name, then mtime.

    Not recursive on purpose: ``journal/*.md`` are the daily entries, while its
    sub-folders (dreams, weekly reviews) are other kinds of writing.
    """
    try:
        with os.scandir(folder) as entries:
            # The directory entry tells a file from a folder without a stat per file.
            found = [(folder / e.name, e) for e in entries if e.name.endswith(".md") and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    dates = [date_in_name(path) or "" for path, _entry in found]
    shared = Counter(dates)

    def key(i: int) -> tuple[str, float]:
        if dates[i] and shared[dates[i]] == 1:
            return (dates[i], 0.0)  # its date alone places it: no stat (a journal grows a file a day)
        try:
            mtime = found[i][1].stat().st_mtime
        except OSError:
            mtime = 0.0
        return (dates[i], mtime)

    return [found[i][0] for i in sorted(range(len(found)), key=key, reverse=True)]


def markdown_section(ctx: ActionContext, material: Material, source: str, title: str, folder: Path, *,
                     limit: int, since: date | None = None, until: date | None = None) -> Section:
    """Add the ``limit`` most recent markdown files of ``folder`` (optionally dated within a period)."""
    chosen: list[Path] = []
    for path in markdown_files(ctx.workspace / folder):
        stamp = date_in_name(path)
        if since is not None and stamp is not None and not (since.isoformat() <= stamp <= (until or since).isoformat()):
            continue
        chosen.append(path)
        if len(chosen) >= limit:
            break
    blocks, paths, highlights = [], [], []
    for path in chosen:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            material.warnings.append(f"{relative(ctx, path)}: unreadable, skipped ({exc})")
            continue
        _fields, text = parse_front_matter(text)  # metadata, not writing: never a thread to take up
        if not text.strip():
            continue
        rel = relative(ctx, path)
        blocks.append(f"### {rel}\n\n{clip_block(text, FILE_CHARS)}")
        paths.append(rel)
        lead = first_sentence(plain("\n".join(line for line in text.splitlines()
                                               if line.strip() and not line.lstrip().startswith("#"))))
        if lead:
            highlights.append(lead)
    section = Section(source, title, "\n\n".join(blocks), len(blocks), paths, highlights)
    material.add(section)
    return section


def journal_section(ctx: ActionContext, material: Material, *, limit: int, since: date | None = None,
                    until: date | None = None) -> Section:
    """Recent journal entries (``journal/*.md``, written by the journal pack)."""
    return markdown_section(ctx, material, "journal", "Recent journal entries", JOURNAL_DIR, limit=limit, since=since, until=until)


def notes_section(ctx: ActionContext, material: Material, *, limit: int) -> Section:
    """Recent notes (``memory/notes/*.md``, written by the memory pack)."""
    return markdown_section(ctx, material, "notes", "Notes", NOTES_DIR, limit=limit)


def data_markdown_section(ctx: ActionContext, material: Material, source: str, title: str, sub: str, *, limit: int) -> Section:
    """Recent markdown files from this pack's own folder (``<data_dir>/<sub>``)."""
    return markdown_section(ctx, material, source, title, Path(relative(ctx, ctx.data_dir / sub)), limit=limit)


# -- work summaries ----------------------------------------------------------------------------

def render_summary(summary: dict[str, Any]) -> str:
    """One work summary as a short markdown block: narrative, insights, questions."""
    head = f"- {summary.get('local_date', '?')} {summary.get('phase', '')} {summary.get('name') or summary.get('template_id') or ''}".rstrip()
    lines = [head + f" ({summary.get('status', '?')})", f"  {clip(str(summary.get('narrative', '')), 600)}"]
    for insight in summary.get("insights") or []:
        lines.append(f"  - insight: {clip(str(insight), 240)}")
    for question in summary.get("questions_raised") or []:
        lines.append(f"  - question: {clip(str(question), 240)}")
    return "\n".join(lines)


def summaries_section(ctx: ActionContext, material: Material, summaries: list[dict[str, Any]], *,
                      title: str = "Recent work summaries", source: str = "summaries") -> Section:
    """Add the given work summaries (newest first) to ``material``."""
    summaries = [s for s in summaries if isinstance(s, dict)]
    questions = [str(q) for s in summaries for q in (s.get("questions_raised") or [])]
    highlights = questions + [str(i) for s in summaries for i in (s.get("insights") or [])]
    section = Section(source, title, "\n".join(render_summary(s) for s in summaries), len(summaries), [], highlights,
                      questions)
    material.add(section)
    return section


def summaries_between(ctx: ActionContext, since: date, until: date, *, category: str | None = None,
                      limit: int = 50) -> list[dict[str, Any]]:
    """Work summaries of every local date in ``[since, until]``, newest first, at most ``limit``."""
    out: list[dict[str, Any]] = []
    day = until
    while day >= since and len(out) < limit:
        out.extend(ctx.history.summaries(local_date=day, category=category, limit=limit - len(out)))
        day -= timedelta(days=1)
    return out


# -- JSON lines (feeds, conversation inbox) -------------------------------------------------------

#: Roles a conversation message may have (as the memory pack imports them).
ROLES = ("user", "assistant")


def _warn(ctx: ActionContext, warnings: list[str], message: str) -> None:
    warnings.append(message)
    ctx.logger.warning("%s", message)


def read_jsonl(ctx: ActionContext, path: Path, warnings: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each JSON object line of a ``.jsonl`` file.

    Bad lines are reported with the file and line, then skipped.
    """
    rel = relative(ctx, path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _warn(ctx, warnings, f"{rel}: unreadable, skipped ({exc})")
        return []
    items: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            message = f"{rel} line {number}: invalid JSON, column {exc.colno}: {exc.msg}; line skipped"
        else:
            if isinstance(item, dict):
                items.append((number, item))
                continue
            message = f"{rel} line {number}: expected a JSON object, found {type(item).__name__}, line skipped"
        _warn(ctx, warnings, message)
    return items


def aware_time(value: Any) -> datetime | str:
    """``value`` as an aware datetime, or why it is not one (an ISO 8601 string with a UTC offset)."""
    if not isinstance(value, str):
        return f"must be an ISO 8601 date and time string, got {type(value).__name__}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return f"is not an ISO 8601 date and time: {value!r}"
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return f"has no UTC offset: {value!r} (write e.g. {value}Z or {value}+01:00)"
    return parsed


def feed_key(item: dict[str, Any]) -> str:
    """A stable identity for a feed item (so a world check does not report it twice)."""
    return short_hash(json.dumps([item.get("source"), item.get("title"), item.get("published")], sort_keys=True), 16)


def read_feed_items(ctx: ActionContext, warnings: list[str]) -> list[dict[str, Any]]:
    """Items of ``feeds/*.jsonl`` that have a title or summary, newest first (by ``published``).

    ``published`` is optional (undated items come last, in file order); when given it
    must be an ISO 8601 date and time with a UTC offset, else the line is skipped with a
    warning naming the file, the line and the field.
    """
    folder = ctx.workspace / FEEDS
    dated: list[tuple[datetime, dict[str, Any]]] = []
    undated: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        rel = relative(ctx, path)
        for number, item in read_jsonl(ctx, path, warnings):
            title, summary = item.get("title"), item.get("summary")
            if not (isinstance(title, str) and title.strip()) and not (isinstance(summary, str) and summary.strip()):
                _warn(ctx, warnings, f"{rel} line {number}: no field 'title' or 'summary', line skipped")
                continue
            entry = {**item, "_file": rel}
            if item.get("published") is None:
                undated.append(entry)
                continue
            published = aware_time(item["published"])
            if isinstance(published, str):
                _warn(ctx, warnings, f"{rel} line {number}: field 'published' {published}; line skipped")
                continue
            dated.append((published, entry))
    dated.sort(key=lambda pair: pair[0], reverse=True)  # aware datetimes: offsets compared correctly
    return [entry for _, entry in dated] + undated


def feeds_section(ctx: ActionContext, material: Material, items: list[dict[str, Any]]) -> Section:
    """Add feed items to ``material``."""
    lines, highlights = [], []
    for item in items:
        title = clip(str(item.get("title") or "(untitled)"), 200)
        meta = ", ".join(str(item[k]) for k in ("source", "published") if item.get(k))
        lines.append(f"- {title}" + (f" ({meta})" if meta else ""))
        if item.get("summary"):
            lines.append(f"  {clip(str(item['summary']), 500)}")
        highlights.append(title)
    section = Section("feeds", "World feed items", "\n".join(lines), len(items),
                      sorted({str(i["_file"]) for i in items}), highlights)
    material.add(section)
    return section


def message_problem(row: dict[str, Any]) -> str | None:
    """Why a conversation inbox line cannot be used (naming the field), or ``None``."""
    cid, content, role = row.get("conversation_id"), row.get("content"), row.get("role")
    if not isinstance(cid, str) or not cid.strip():
        return "field 'conversation_id' must be a non-empty string"
    if role not in ROLES:
        return f"field 'role' must be 'user' or 'assistant', got {role!r}"
    if not isinstance(content, str) or not content.strip():
        return "field 'content' must be a non-empty string"
    at = aware_time(row.get("at"))
    return f"field 'at' {at}" if isinstance(at, str) else None


def conversations_section(ctx: ActionContext, material: Material, *, limit: int) -> Section:
    """The most recent conversations of ``conversations/inbox/*.jsonl``, grouped by conversation id.

    Each line must be ``{"conversation_id", "role" (user or assistant), "content", "at"}``
    with ``at`` an ISO 8601 date and time with a UTC offset (the memory pack's import
    rules); other lines are skipped with a warning naming the file, line and field.
    Conversations and their messages are ordered by time.
    """
    folder = ctx.workspace / CONVERSATION_INBOX
    conversations: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}
    paths: list[str] = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        rel = relative(ctx, path)
        used = False
        for number, row in read_jsonl(ctx, path, material.warnings):
            problem = message_problem(row)
            if problem is not None:
                _warn(ctx, material.warnings, f"{rel} line {number}: {problem}; line skipped")
                continue
            at = aware_time(row["at"])
            assert isinstance(at, datetime)
            conversations.setdefault(row["conversation_id"].strip(), []).append((at, row))
            used = True
        if used:
            paths.append(rel)

    chosen = sorted(conversations.items(), key=lambda kv: max(at for at, _ in kv[1]), reverse=True)[:limit]
    blocks, highlights = [], []
    for cid, timed in chosen:
        timed.sort(key=lambda pair: pair[0])
        rows = [row for _, row in timed]
        body = "\n".join(f"- {r['role']}: {clip(str(r['content']), 400)}" for r in rows[-30:])
        blocks.append(f"### {cid} ({len(rows)} messages, last {timed[-1][1]['at']})\n\n{body}")
        first_user = next((r["content"] for r in rows if r["role"] == "user"), "")
        if first_user:
            highlights.append(first_sentence(first_user))
    section = Section("conversations", "Recent conversations", "\n\n".join(blocks), len(blocks), paths, highlights)
    material.add(section)
    return section
