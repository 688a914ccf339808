"""Summarising a conversation: the one code path every summary action uses.

A *summary pass* covers the conversation's messages that no pass has covered yet
(oldest first, as many as fit the prompt budget), makes one structured LLM call with the
previous summary as context, and records the pass and the messages it covered in one
transaction, together with the published file ``<data_dir>/summaries/<conversation>.md``.
A message is therefore summarised exactly once; a later pass updates the rolling summary
with newer messages only.

The summary file is the memory pack's published form (the journal pack reads it). Its
front matter (JSON values, one ``key: value`` per line) holds ``conversation_id``,
``title``, ``updated`` (when the summary last changed), ``first_message_at``,
``last_message_at``, ``active_dates`` (local dates with summarised messages),
``messages_summarised`` and ``summary_passes``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cass_actions_core.actions import ActionContext
from cass_actions_core.text import (
    OFFLINE_LABEL,
    bullets,
    clip,
    first_sentence,
    label_offline,
    render_front_matter,
    sentences,
    unique,
)
from cass_actions_core.workspace import read_self_model

from cass_actions_memory.store import ConversationInfo, ConversationStore, Message, SummaryPass
from cass_actions_memory.text import safe_file_stem

#: Folder (inside the pack's data folder) of the published summaries.
SUMMARIES_DIR = "summaries"
#: Output tokens allowed for one summary pass.
SUMMARY_MAX_TOKENS = 800
#: Default size (characters) of the transcript sent in one pass (setting ``prompt_chars``).
DEFAULT_PROMPT_CHARS = 16_000
#: Longest single message put in a prompt (longer ones are clipped in the prompt only).
MESSAGE_CHARS = 2_000
#: At most this many key points and open questions are kept per pass.
MAX_KEY_POINTS = 6
MAX_OPEN_QUESTIONS = 4


class SummaryDraft(BaseModel):
    """What the LLM returns for one summary pass."""

    summary: str
    key_points: list[str]
    open_questions: list[str]


@dataclass(frozen=True)
class SummaryOutcome:
    """One pass done: what it recorded and where the summary file is."""

    conversation_id: str
    summary: SummaryPass
    path: Path
    remaining: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"conversation_id": self.conversation_id, "summary_id": self.summary.id,
                "messages": self.summary.message_count, "remaining_unsummarised": self.remaining,
                "path": f"{SUMMARIES_DIR}/{self.path.name}"}


def summary_relpath(conversation_id: str) -> str:
    """``summaries/<safe id>.md``, relative to the pack's data folder."""
    return f"{SUMMARIES_DIR}/{safe_file_stem(conversation_id)}.md"


def daemon_name(workspace: Path, logger: logging.Logger | None = None) -> str:
    """The daemon's name from ``self/model.json`` (``"Cass"`` when absent or unusable).

    A malformed self model is reported through ``logger`` with its file, line and column
    (:func:`cass_actions_core.workspace.read_self_model`); it is only read here, never written.
    """
    doc = read_self_model(Path(workspace), logger)
    name = doc.get("name") if doc is not None else None
    return name.strip() if isinstance(name, str) and name.strip() else "Cass"


def message_line(message: Message, tz: tzinfo) -> str:
    """``[2026-01-05 09:04] user: ...`` (content clipped to :data:`MESSAGE_CHARS`)."""
    return f"[{message.at.astimezone(tz):%Y-%m-%d %H:%M}] {message.role}: {clip(message.content, MESSAGE_CHARS)}"


def fitting_chunk(messages: list[Message], max_chars: int, tz: tzinfo) -> list[Message]:
    """The oldest messages whose transcript fits in ``max_chars`` (always at least one).

    Messages that do not fit stay unsummarised for the next pass, so nothing is skipped
    and nothing is covered twice.
    """
    chunk: list[Message] = []
    used = 0
    for message in messages:
        size = len(message_line(message, tz)) + 1
        if chunk and used + size > max_chars:
            break
        chunk.append(message)
        used += size
    return chunk


def offline_draft(label: str, messages: list[Message], previous: SummaryPass | None, tz: tzinfo) -> SummaryDraft:
    """A deterministic summary built from the messages themselves (the offline provider's answer).

    Every part carries the offline label: the key points and questions are the user's own
    sentences, not anything a model concluded, and must never pass for insights.
    """
    users = [m for m in messages if m.role == "user"]
    first, last = messages[0].at.astimezone(tz), messages[-1].at.astimezone(tz)
    parts = [f"{len(messages)} message(s) in \u201c{label}\u201d "
             f"({len(users)} from the user, {len(messages) - len(users)} from me), "
             f"{first:%Y-%m-%d %H:%M} to {last:%H:%M}."]
    if previous is not None:
        parts.append(f"Earlier: {first_sentence(previous.text.removeprefix(OFFLINE_LABEL).strip(), 200)}")
    if users:
        parts.append(f"The user opened with: \u201c{first_sentence(users[0].content, 200)}\u201d")
    parts.append(f"It ended with {messages[-1].role}: \u201c{first_sentence(messages[-1].content, 200)}\u201d")
    key_points = unique((first_sentence(m.content, 160) for m in users), 5)
    questions = unique((clip(s, 200) for m in users for s in sentences(m.content) if s.endswith("?")), 3)
    return SummaryDraft(summary=label_offline(" ".join(parts)), key_points=[label_offline(k) for k in key_points],
                        open_questions=[label_offline(q) for q in questions])


def render_summary_file(store: ConversationStore, conversation_id: str, tz: tzinfo) -> str:
    """The published summary file of a conversation, from the store's current state."""
    info = store.conversation(conversation_id)
    latest = store.latest_summary(conversation_id)
    if info is None or latest is None:
        raise ValueError(f"conversation {conversation_id!r} has no summary to publish")
    count, first, last = store.summarised_span(conversation_id)
    front = render_front_matter({
        "conversation_id": conversation_id,
        "title": info.title,
        "updated": latest.created_at.isoformat(),
        "first_message_at": first.astimezone(tz).isoformat() if first else None,
        "last_message_at": last.astimezone(tz).isoformat() if last else None,
        "active_dates": store.active_dates(conversation_id, tz),
        "messages_summarised": count,
        "summary_passes": info.summaries,
    })
    parts = [front, f"# {info.title or 'Conversation ' + conversation_id}\n", latest.text.strip() + "\n"]
    if latest.key_points:
        parts.append("## Key points\n\n" + bullets(latest.key_points) + "\n")
    if latest.open_questions:
        parts.append("## Open questions\n\n" + bullets(latest.open_questions) + "\n")
    return "\n".join(parts)


async def summarise_conversation(ctx: ActionContext, store: ConversationStore, conversation: ConversationInfo,
                                 *, prompt_chars: int, name: str | None = None) -> SummaryOutcome | None:
    """Run one summary pass over ``conversation``'s unsummarised messages (``None``: nothing new).

    One structured LLM call; the pass, the covered messages and the published file are
    recorded together (see :meth:`ConversationStore.record_summary`). ``name`` is the
    daemon's name (read from the self model when not given).
    """
    tz = ctx.now().tzinfo
    assert tz is not None
    pending = store.messages(conversation.id, unsummarised=True)
    if not pending:
        return None
    chunk = fitting_chunk(pending, prompt_chars, tz)
    previous = store.latest_summary(conversation.id)
    label = conversation.label()
    name = name or daemon_name(ctx.workspace, ctx.logger)
    system = (f"You keep the memory of {name}, an AI daemon, by summarising its conversations faithfully. "
              f"Refer to {name} as 'I' and to the other person as 'the user'. Never add details that are not in the messages.")
    lines = [f"Summarise the conversation \u201c{label}\u201d for my memory."]
    if previous is not None:
        lines += ["", "The summary so far (it covers earlier messages):", previous.text.strip()]
        if previous.key_points:
            lines += ["Key points so far:", bullets(previous.key_points)]
        lines += ["", "Update it with the new messages below so that it covers the whole conversation."]
    lines += ["", f"New messages ({len(chunk)}):", *(message_line(m, tz) for m in chunk), "",
              "Return: summary (one or two short paragraphs); key_points (up to 5 short facts worth remembering); "
              "open_questions (up to 3 questions the conversation left open; an empty list if none)."]
    draft = await ctx.llm.structured(
        "\n".join(lines), SummaryDraft, system=system, max_tokens=SUMMARY_MAX_TOKENS,
        offline=lambda: offline_draft(label, chunk, previous, tz),
    )
    # An empty reply leaves a derived stand-in, labelled like any text built without a model.
    text = draft.summary.strip() or label_offline(first_sentence(chunk[-1].content, 160))
    relative = summary_relpath(conversation.id)
    written: list[Path] = []

    def publish(_recorded: SummaryPass) -> None:
        written.append(ctx.write_text(relative, render_summary_file(store, conversation.id, tz)))

    recorded = store.record_summary(
        conversation.id, chunk, text=text, key_points=unique(draft.key_points, MAX_KEY_POINTS),
        open_questions=unique(draft.open_questions, MAX_OPEN_QUESTIONS), path=relative, now=ctx.now(), publish=publish,
    )
    ctx.add_artifact("markdown", f"Summary of {label}", written[0])
    return SummaryOutcome(conversation.id, recorded, written[0], len(pending) - len(chunk))
