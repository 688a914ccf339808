"""What the journal pack reads: the day's work summaries, conversation summaries, entries, the self model.

- Work summaries come from ``ctx.history.summaries(local_date=day)``.
- Conversation summaries are the memory pack's published files
  ``<workspace>/memory/summaries/*.md`` (setting ``memory_summaries``). A file counts for
  a day when its front matter's ``active_dates`` lists the day; files without that key
  count on the local date of their ``updated`` time, or else of their modification time.
  Without the memory pack the folder is simply absent and the journal uses work alone.
- Journal entries are this pack's own ``<data_dir>/<YYYY-MM-DD>.md`` files.
- The daemon's voice comes from ``<workspace>/self/model.json`` (read only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

from cass_actions_core.actions import ActionContext, ActionFailed

from cass_actions_core.text import body_text, bullets, clip, parse_front_matter, section_items
from cass_actions_core.workspace import read_self_model

#: Where the memory pack publishes conversation summaries, relative to the workspace.
DEFAULT_MEMORY_SUMMARIES = "memory/summaries"
#: Action namespaces of this pack: units made only of them are left out of the day's material.
OWN_NAMESPACES = ("journal.", "dream.")
#: Prompt budget (characters) for one day's material.
DAY_MATERIAL_CHARS = 12_000


@dataclass(frozen=True)
class WorkItem:
    """One work unit of the day, from its work summary."""

    phase: str
    name: str
    status: str
    text: str
    insights: list[str]
    questions: list[str]
    started_at: str

    def line(self) -> str:
        """One prompt/markdown line for the unit."""
        return f"[{self.phase}] {self.name} ({self.status}): {clip(self.text, 500)}"


@dataclass(frozen=True)
class ConversationItem:
    """One conversation summary the memory pack published."""

    conversation_id: str
    title: str
    summary: str
    key_points: list[str]
    open_questions: list[str]


@dataclass
class DayMaterial:
    """Everything known about one day."""

    day: date
    work: list[WorkItem] = field(default_factory=list)
    conversations: list[ConversationItem] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing happened that the journal could honestly write about."""
        return not self.work and not self.conversations

    def render(self, limit: int = DAY_MATERIAL_CHARS) -> str:
        """The material as prompt text, within ``limit`` characters."""
        parts: list[str] = []
        if self.work:
            parts.append(f"Work ({len(self.work)} unit(s)):")
            for w in self.work:
                parts.append(f"- {w.line()}")
                if w.insights:
                    parts.append(f"  insights: {'; '.join(clip(i, 200) for i in w.insights[:3])}")
                if w.questions:
                    parts.append(f"  questions raised: {'; '.join(clip(q, 200) for q in w.questions[:3])}")
        if self.conversations:
            parts.append(f"Conversations ({len(self.conversations)}):")
            for c in self.conversations:
                parts.append(f"- {c.title}: {clip(c.summary, 600)}")
                if c.key_points:
                    parts.append(f"  key points: {'; '.join(clip(k, 160) for k in c.key_points[:4])}")
        text = "\n".join(parts)
        return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def parse_day(value: Any, what: str = "date") -> date:
    """A ``YYYY-MM-DD`` parameter as a date; :class:`ActionFailed` naming the parameter otherwise."""
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ActionFailed(f"parameter {what!r} must be a date written YYYY-MM-DD, got {value!r}") from None


def work_of_day(ctx: ActionContext, day: date) -> list[WorkItem]:
    """The day's work summaries, in the order they started (units of this pack's own actions left out)."""
    items = []
    for s in ctx.history.summaries(local_date=day):
        ids = [str(a.get("action_id", "")) for a in s.get("actions", [])]
        if ids and all(i.startswith(OWN_NAMESPACES) for i in ids):
            continue  # the journal's own runs ("entry already written") are not part of the day's story
        actions = [a for a in s.get("actions", []) if a.get("summary") or a.get("error")]
        text = " ".join(
            f"{a.get('action_id')}: {a.get('summary') or 'error: ' + str(a.get('error'))}".rstrip(".") + "." for a in actions
        ) or str(s.get("reason") or s.get("narrative") or "")
        items.append(WorkItem(
            phase=str(s.get("phase") or "?"), name=str(s.get("name") or s.get("template_id") or "work"),
            status=str(s.get("status") or "?"), text=text, insights=[str(i) for i in s.get("insights") or []],
            questions=[str(q) for q in s.get("questions_raised") or []], started_at=str(s.get("started_at") or ""),
        ))
    items.sort(key=lambda w: w.started_at or "~")
    return items


def memory_summaries_dir(ctx: ActionContext) -> Path:
    """The folder of the memory pack's published summaries (setting ``memory_summaries``)."""
    value = ctx.settings.get("memory_summaries", DEFAULT_MEMORY_SUMMARIES)
    if not isinstance(value, str) or not value.strip():
        raise ActionFailed(f"setting [packs.journal] memory_summaries must be a folder path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else ctx.workspace / path


def _counts_for(fields: dict[str, Any], path: Path, day: date, tz: tzinfo) -> bool:
    dates = fields.get("active_dates")
    if isinstance(dates, list) and dates:
        return day.isoformat() in [str(d) for d in dates]
    try:
        updated = datetime.fromisoformat(str(fields.get("updated")))
        if updated.tzinfo is not None:
            return updated.astimezone(tz).date() == day
    except ValueError:
        pass
    return datetime.fromtimestamp(path.stat().st_mtime, tz).date() == day


def conversations_of_day(ctx: ActionContext, day: date) -> list[ConversationItem]:
    """Conversation summaries published by the memory pack that belong to ``day`` (none without it)."""
    folder = memory_summaries_dir(ctx)
    if not folder.is_dir():
        return []
    tz = ctx.now().tzinfo
    assert tz is not None
    items = []
    for path in sorted(folder.glob("*.md")):
        try:
            fields, body = parse_front_matter(path.read_text("utf-8"))
            if not _counts_for(fields, path, day, tz):
                continue
        except (OSError, UnicodeDecodeError) as exc:
            ctx.logger.warning("skipped conversation summary %s: %s", path, exc)
            continue
        title = str(fields.get("title") or fields.get("conversation_id") or path.stem)
        items.append(ConversationItem(
            conversation_id=str(fields.get("conversation_id") or path.stem), title=title,
            summary=body_text(body), key_points=section_items(body, "Key points"),
            open_questions=section_items(body, "Open questions"),
        ))
    return items


def material_for(ctx: ActionContext, day: date) -> DayMaterial:
    """The day's work and conversations."""
    return DayMaterial(day, work_of_day(ctx, day), conversations_of_day(ctx, day))


@dataclass(frozen=True)
class Entry:
    """A journal entry file, parsed."""

    day: date
    path: Path
    fields: dict[str, Any]
    body: str

    @property
    def title(self) -> str:
        """The entry's title."""
        return str(self.fields.get("title") or f"Journal for {self.day.isoformat()}")

    @property
    def prose(self) -> str:
        """The entry's text without its title and its lists."""
        return body_text(self.body)

    @property
    def insights(self) -> list[str]:
        """The entry's Insights list."""
        return section_items(self.body, "Insights")

    @property
    def questions(self) -> list[str]:
        """The entry's Questions list."""
        return section_items(self.body, "Questions")

    def render(self, limit: int = 2_500) -> str:
        """The entry as prompt material."""
        parts = [f"## {self.day:%A} {self.day.isoformat()}: {self.title}", clip(self.prose, limit)]
        if self.insights:
            parts.append("Insights:\n" + bullets(self.insights))
        if self.questions:
            parts.append("Questions:\n" + bullets(self.questions))
        return "\n".join(parts)


def entry_relpath(day: date) -> str:
    """``<YYYY-MM-DD>.md``, relative to the pack's data folder."""
    return f"{day.isoformat()}.md"


def read_entry(data_dir: Path, day: date) -> Entry | None:
    """The journal entry for ``day``, or ``None`` when none was written (or it cannot be read)."""
    path = data_dir / entry_relpath(day)
    try:
        fields, body = parse_front_matter(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return Entry(day, path, fields, body)


def self_voice(workspace: Path, logger: logging.Logger | None = None) -> tuple[str, list[str]]:
    """The daemon's name and identity statements from ``self/model.json`` (defaults when absent or unusable).

    Read with :func:`cass_actions_core.workspace.read_self_model`: a malformed file is
    reported through ``logger`` (file, line and column) and the defaults are used.
    """
    doc = read_self_model(workspace, logger)
    if doc is None:
        return "Cass", []
    name = doc.get("name") if isinstance(doc.get("name"), str) and doc.get("name").strip() else "Cass"
    identity = [str(i) for i in doc.get("identity") or [] if isinstance(i, str)][:3]
    return name, identity


def system_prompt(workspace: Path, task: str, logger: logging.Logger | None = None) -> str:
    """A system prompt in the daemon's own voice for ``task``."""
    name, identity = self_voice(workspace, logger)
    who = " ".join(identity) if identity else f"I am {name}, an AI daemon."
    return f"You are {name}. In your own words: {who} {task}"
