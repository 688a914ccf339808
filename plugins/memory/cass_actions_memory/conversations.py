"""Handlers of the conversation actions: summarise one, summarise the idle ones, title them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from cass_actions_core.actions import ActionContext, ActionFailed, ActionResult
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.text import clip, first_sentence, label_offline

from cass_actions_memory.store import ConversationInfo, ConversationStore, ImportReport, StoreError
from cass_actions_memory.summarize import (
    DEFAULT_PROMPT_CHARS,
    SummaryOutcome,
    daemon_name,
    message_line,
    render_summary_file,
    summarise_conversation,
)
from cass_actions_memory.text import setting_int

#: Defaults of the ``[packs.memory]`` settings these actions read.
DEFAULT_IDLE_MINUTES = 30
DEFAULT_MIN_MESSAGES = 5
DEFAULT_MAX_CONVERSATIONS = 5
DEFAULT_MAX_TITLES = 10
#: Upper bounds of ``max_conversations_per_run`` and ``max_titles_per_run``: one LLM call
#: each, so they equal the actions' ``max_llm_calls`` in actions.json (and the settings schema).
MAX_CONVERSATIONS_PER_RUN = 5
MAX_TITLES_PER_RUN = 10
#: Output tokens for a title call, and how much of a conversation a title prompt shows.
TITLE_MAX_TOKENS = 60
TITLE_PROMPT_CHARS = 4_000


def open_store(ctx: ActionContext) -> ConversationStore:
    """The pack's conversations store; :class:`ActionFailed` naming the file if it cannot be opened."""
    try:
        return ConversationStore.in_folder(ctx.data_dir)
    except StoreError as exc:
        raise ActionFailed(str(exc)) from None


def import_inbox(ctx: ActionContext, store: ConversationStore) -> ImportReport:
    """Import the workspace's conversation inbox; log every skipped line with its file and line."""
    report = store.import_inbox(ctx.workspace, now=ctx.now())
    for problem in report.problems:
        ctx.logger.warning("skipped %s", problem)
    return report


def import_note(report: ImportReport) -> str:
    """A sentence about the inbox import for a result summary ('' when it found nothing new)."""
    if not report.imported and not report.problems:
        return ""
    text = f"Inbox: {report.describe()}"
    if report.problems:
        text += " (" + "; ".join(str(p) for p in report.problems[:3]) + ("; ..." if len(report.problems) > 3 else "") + ")"
    return text + "."


def prompt_chars(ctx: ActionContext) -> int:
    """The ``prompt_chars`` setting: transcript characters sent in one summary pass."""
    return setting_int(ctx.settings, "prompt_chars", DEFAULT_PROMPT_CHARS, minimum=500, maximum=200_000)


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _result_lists(outcomes: list[SummaryOutcome]) -> tuple[list[str], list[str]]:
    # The items keep any offline label they carry, so an offline key point (the user's own
    # sentence) never reaches the self model or the journal as the daemon's insight.
    insights = [o.summary.key_points[0] for o in outcomes if o.summary.key_points]
    questions = [q for o in outcomes for q in o.summary.open_questions]
    return insights[:3], questions[:3]


async def summarize_conversation(ctx: ActionContext) -> ActionResult:
    """``memory.summarize_conversation``: one summary pass over one conversation.

    ``conversation_id`` names the conversation; without it, the most recently active
    conversation that has unsummarised messages is chosen (so a template can use the
    action without knowing ids). The inbox is imported first.
    """
    with open_store(ctx) as store:
        report = import_inbox(ctx, store)
        wanted = ctx.params.get("conversation_id")
        if wanted:
            conversation = store.conversation(wanted)
            if conversation is None:
                known = [c.id for c in store.conversations()[:10]]
                raise ActionFailed(f"no conversation {wanted!r} in the memory store ({store.path}); "
                                   + (f"known: {', '.join(known)}" if known else "the store is empty"))
        else:
            conversation = next((c for c in store.conversations() if c.unsummarised), None)
            if conversation is None:
                return ActionResult(summary=_join("No conversation has unsummarised messages; nothing to do.", import_note(report)),
                                    data={"import": report.to_dict(), "summarised": None})
        outcome = await summarise_conversation(ctx, store, conversation, prompt_chars=prompt_chars(ctx),
                                               name=daemon_name(ctx.workspace, ctx.logger))
    if outcome is None:
        return ActionResult(summary=_join(f"Conversation {conversation.label()!r} has no unsummarised messages; nothing to do.",
                                          import_note(report)),
                            data={"import": report.to_dict(), "summarised": None})
    insights, questions = _result_lists([outcome])
    more = f" {outcome.remaining} more wait for the next pass (prompt size)." if outcome.remaining else ""
    return ActionResult(
        summary=_join(f"Summarised {outcome.summary.message_count} message(s) of {conversation.label()!r} "
                      f"into {outcome.to_dict()['path']}.{more}", import_note(report)),
        data={"import": report.to_dict(), "summarised": outcome.to_dict()},
        insights=insights, questions=questions,
    )


def _why_waiting(conversation: ConversationInfo, now: Any, idle: timedelta, min_messages: int) -> str | None:
    if conversation.unsummarised < min_messages:
        return f"{conversation.unsummarised} new message(s), fewer than {min_messages}"
    quiet = now - conversation.last_at
    if quiet < idle:
        return f"last message {max(0, int(quiet.total_seconds() // 60))} min ago, not idle for {int(idle.total_seconds() // 60)} min yet"
    return None


async def summarize_idle_conversations(ctx: ActionContext) -> ActionResult:
    """``memory.summarize_idle_conversations``: import the inbox, then summarise every idle conversation.

    Eligible: quiet for at least ``idle_minutes`` (default 30) since its last message and
    holding at least ``min_messages`` (default 5) unsummarised messages. Each eligible
    conversation (longest idle first, at most ``max_conversations_per_run``) gets one
    summary pass through the same code path as ``memory.summarize_conversation``. Messages
    already covered are never summarised again, so a second run right after the first
    finds nothing to do and makes no LLM call.
    """
    idle = timedelta(minutes=setting_int(ctx.settings, "idle_minutes", DEFAULT_IDLE_MINUTES))
    min_messages = setting_int(ctx.settings, "min_messages", DEFAULT_MIN_MESSAGES, minimum=1)
    limit = setting_int(ctx.settings, "max_conversations_per_run", DEFAULT_MAX_CONVERSATIONS, minimum=1,
                        maximum=MAX_CONVERSATIONS_PER_RUN)
    chars = prompt_chars(ctx)
    name: str | None = None
    now = ctx.now()
    outcomes: list[SummaryOutcome] = []
    waiting: list[dict[str, Any]] = []
    stopped: str | None = None
    with open_store(ctx) as store:
        report = import_inbox(ctx, store)
        eligible: list[ConversationInfo] = []
        for conversation in store.conversations():
            if not conversation.unsummarised:
                continue
            why = _why_waiting(conversation, now, idle, min_messages)
            if why is None:
                eligible.append(conversation)
            else:
                waiting.append({"conversation_id": conversation.id, "reason": why})
        eligible.sort(key=lambda c: (c.last_at, c.id))
        for conversation in eligible[:limit]:
            name = name or daemon_name(ctx.workspace, ctx.logger)  # read once per run, and only when needed
            try:
                outcome = await summarise_conversation(ctx, store, conversation, prompt_chars=chars, name=name)
            except LLMError as exc:
                if not outcomes:
                    raise
                # Keep what was done (it is recorded); say why the rest waits.
                stopped = f"stopped before {conversation.id!r}: {exc}"
                break
            if outcome is not None:
                outcomes.append(outcome)
        later = [c.id for c in eligible[limit:]]
    data = {"import": report.to_dict(), "summarised": [o.to_dict() for o in outcomes], "waiting": waiting,
            "deferred": later, "stopped": stopped, "idle_minutes": int(idle.total_seconds() // 60),
            "min_messages": min_messages}
    if not outcomes:
        return ActionResult(summary=_join(f"No idle conversation with {min_messages}+ unsummarised messages; nothing to do.",
                                          import_note(report)), data=data)
    names = ", ".join(repr(o.conversation_id) for o in outcomes)
    extra = f" {len(later)} more eligible conversation(s) wait for the next run." if later else ""
    if stopped:
        extra += f" Stopped early: {stopped}."
    insights, questions = _result_lists(outcomes)
    return ActionResult(
        summary=_join(f"Summarised {len(outcomes)} idle conversation(s) ({names}), "
                      f"{sum(o.summary.message_count for o in outcomes)} message(s) in all.{extra}", import_note(report)),
        data=data, insights=insights, questions=questions,
    )


class TitleDraft(BaseModel):
    """What the LLM returns for a conversation title."""

    title: str


def offline_title(first_user_text: str) -> str:
    """A title from the conversation's first user sentence (the offline provider's answer), labelled."""
    words = first_sentence(first_user_text, 200).rstrip(".!?").split()
    title = " ".join(words[:8]) + ("\u2026" if len(words) > 8 else "")
    return label_offline(title or "Untitled conversation")


def _clean_title(text: str) -> str:
    # Models sometimes wrap a title in quotes or a heading, or add a second line.
    lines = text.strip().strip("\"'\u201c\u201d#* ").splitlines()
    title = clip(lines[0], 80) if lines else ""
    return title.removeprefix("Title:").strip().strip("\"'\u201c\u201d")


async def generate_conversation_title(ctx: ActionContext) -> ActionResult:
    """``memory.generate_conversation_title``: give every untitled conversation a short title.

    One light LLM call per conversation (most recently active first, at most
    ``max_titles_per_run``); the title is stored and the conversation's summary file, if
    any, is published again with it. Nothing to do (no call) when all are titled.
    """
    limit = setting_int(ctx.settings, "max_titles_per_run", DEFAULT_MAX_TITLES, minimum=1, maximum=MAX_TITLES_PER_RUN)
    tz = ctx.now().tzinfo
    assert tz is not None
    name = daemon_name(ctx.workspace, ctx.logger)
    titled: list[dict[str, Any]] = []
    stopped: str | None = None
    with open_store(ctx) as store:
        report = import_inbox(ctx, store)
        untitled = [c for c in store.conversations() if not c.title]
        for conversation in untitled[:limit]:
            messages = store.messages(conversation.id)
            shown, used = [], 0
            for m in messages:
                line = message_line(m, tz)
                if shown and used + len(line) > TITLE_PROMPT_CHARS:
                    break
                shown.append(line)
                used += len(line) + 1
            first_user = next((m.content for m in messages if m.role == "user"), messages[0].content)
            prompt = ("Give this conversation a short title (at most eight words, no quotes) that would help me find it again.\n\n"
                      + "\n".join(shown))
            try:
                draft = await ctx.llm.structured(
                    prompt, TitleDraft, max_tokens=TITLE_MAX_TOKENS,
                    system=f"You name {name}'s conversations so they are easy to find later.",
                    offline=lambda first_user=first_user: TitleDraft(title=offline_title(first_user)),
                )
            except LLMError as exc:
                if not titled:
                    raise
                stopped = f"stopped before {conversation.id!r}: {exc}"
                break
            title = _clean_title(draft.title) or offline_title(first_user)
            has_summary = conversation.summaries > 0
            written: list[Any] = []

            def publish(cid: str = conversation.id, rel: str | None = conversation.summary_path) -> None:
                if has_summary and rel:
                    written.append(ctx.write_text(rel, render_summary_file(store, cid, tz)))

            store.set_title(conversation.id, title, now=ctx.now(), publish=publish)
            if written:
                ctx.add_artifact("markdown", f"Summary of {title}", written[0])
            titled.append({"conversation_id": conversation.id, "title": title,
                           "summary_file": conversation.summary_path if written else None})
        left = max(0, len(untitled) - limit)
    data = {"import": report.to_dict(), "titled": titled, "untitled_left": left, "stopped": stopped}
    if not titled:
        return ActionResult(summary=_join("Every conversation already has a title; nothing to do.", import_note(report)),
                            data=data)
    listing = "; ".join(f"{t['conversation_id']}: {t['title']}" for t in titled)
    extra = f" {left} more wait for the next run." if left else ""
    if stopped:
        extra += f" Stopped early: {stopped}."
    return ActionResult(summary=_join(f"Titled {len(titled)} conversation(s) ({listing}).{extra}", import_note(report)),
                        data=data)
