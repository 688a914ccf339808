"""What sessions read: the workspace's files and the history of work, gathered as material.

Every reader returns a :class:`Section` (possibly empty) that says where its text came
from. Bad input is reported, never fatal: a malformed JSON line in a feed or the
conversation inbox is skipped with a warning naming the file and line (the rest of the
file is still read), and a malformed self model is skipped with a warning naming the file.
The warnings end up in the action's result data, so they are visible in ``history``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cass_actions_core.actions import ActionContext
from cass_actions_core.workspace import CONVERSATION_INBOX, FEEDS

from cass_actions_session import selfmodel
from cass_actions_session.common import clip, clip_block, date_in_name, first_sentence, relative, short_hash

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

def self_section(ctx: ActionContext, material: Material) -> dict[str, Any] | None:
    """Add the self model to ``material``; return the document (``None`` if missing or malformed)."""
    try:
        model = selfmodel.load_self_model(ctx.workspace)
    except selfmodel.SelfModelError as exc:
        material.warnings.append(f"self model skipped: {exc}")
        ctx.logger.warning("self model skipped: %s", exc)
        return None
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
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("*.md") if p.is_file()]

    def key(p: Path) -> tuple[str, float]:
        try:
            mtime = p.stat().st_mtime
        except OSError:
            mtime = 0.0
        return (date_in_name(p) or "", mtime)

    return sorted(found, key=key, reverse=True)


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
        if not text.strip():
            continue
        rel = relative(ctx, path)
        blocks.append(f"### {rel}\n\n{clip_block(text, FILE_CHARS)}")
        paths.append(rel)
        lead = first_sentence("\n".join(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")))
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

def read_jsonl(ctx: ActionContext, path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file; bad lines are reported with file and line, then skipped."""
    rel = relative(ctx, path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        warnings.append(f"{rel}: unreadable, skipped ({exc})")
        ctx.logger.warning("%s: unreadable, skipped (%s)", rel, exc)
        return []
    items: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            message = f"{rel} line {number}: invalid JSON ({exc.msg} at column {exc.colno}), line skipped"
        else:
            if isinstance(item, dict):
                items.append(item)
                continue
            message = f"{rel} line {number}: expected a JSON object, found {type(item).__name__}, line skipped"
        warnings.append(message)
        ctx.logger.warning("%s", message)
    return items


def feed_key(item: dict[str, Any]) -> str:
    """A stable identity for a feed item (so a world check does not report it twice)."""
    return short_hash(json.dumps([item.get("source"), item.get("title"), item.get("published")], sort_keys=True), 16)


def read_feed_items(ctx: ActionContext, warnings: list[str]) -> list[dict[str, Any]]:
    """Items of ``feeds/*.jsonl`` that have a title or summary, newest first (by ``published``)."""
    folder = ctx.workspace / FEEDS
    items: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for number, item in enumerate(read_jsonl(ctx, path, warnings), start=1):
            title, summary = item.get("title"), item.get("summary")
            if not (isinstance(title, str) and title.strip()) and not (isinstance(summary, str) and summary.strip()):
                warnings.append(f"{relative(ctx, path)} item {number}: no title or summary, skipped")
                continue
            items.append({**item, "_file": relative(ctx, path)})
    items.sort(key=lambda i: str(i.get("published") or ""), reverse=True)
    return items


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


def conversations_section(ctx: ActionContext, material: Material, *, limit: int) -> Section:
    """The most recent conversations of ``conversations/inbox/*.jsonl``, grouped by conversation id."""
    folder = ctx.workspace / CONVERSATION_INBOX
    conversations: dict[str, list[dict[str, Any]]] = {}
    paths: list[str] = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        rows = read_jsonl(ctx, path, material.warnings)
        if rows:
            paths.append(relative(ctx, path))
        for row in rows:
            cid, content = row.get("conversation_id"), row.get("content")
            if not isinstance(cid, str) or not isinstance(content, str):
                material.warnings.append(f"{relative(ctx, path)}: a message without conversation_id or content, skipped")
                continue
            conversations.setdefault(cid, []).append(row)

    def last_at(rows: list[dict[str, Any]]) -> str:
        return max(str(r.get("at") or "") for r in rows)

    chosen = sorted(conversations.items(), key=lambda kv: last_at(kv[1]), reverse=True)[:limit]
    blocks, highlights = [], []
    for cid, rows in chosen:
        rows.sort(key=lambda r: str(r.get("at") or ""))
        body = "\n".join(f"- {r.get('role', '?')}: {clip(str(r['content']), 400)}" for r in rows[-30:])
        blocks.append(f"### {cid} ({len(rows)} messages, last {last_at(rows) or 'unknown time'})\n\n{body}")
        first_user = next((r["content"] for r in rows if r.get("role") == "user"), "")
        if first_user:
            highlights.append(first_sentence(first_user))
    section = Section("conversations", "Recent conversations", "\n\n".join(blocks), len(blocks), paths, highlights)
    material.add(section)
    return section
