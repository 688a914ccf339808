"""Hook implementations of the memory pack (the module its entry point names).

Cheap to import: handlers are named by reference and imported when first needed; the
conversation store when the planner asks for context; click only when the CLI asks for
the pack's commands.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from cass_actions_core import hookimpl
from cass_actions_core.packs import file_pack_hooks

#: The pack's folder in the workspace (the runtime names it after the entry point).
PACK_FOLDER = "memory"

#: Action id -> handler (by reference: ``cass-actions list`` imports none of them).
HANDLERS: dict[str, str] = {
    "memory.summarize_conversation": ".conversations:summarize_conversation",
    "memory.summarize_idle_conversations": ".conversations:summarize_idle_conversations",
    "memory.generate_conversation_title": ".conversations:generate_conversation_title",
    "memory.consolidate": ".consolidate:consolidate",
    "memory.create_wiki_note": ".wiki:create_note",
    "memory.update_wiki_note": ".wiki:update_note",
}

register_actions, register_templates = file_pack_hooks(__package__, HANDLERS)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``cass-actions memory import FILE``, ``memory list`` and ``memory problems``."""
    from cass_actions_memory.cli import register

    register(cli)


@hookimpl
def gather_context(context: Any) -> None:
    """Report when the user last wrote (newest user message in the store) as ``last_user_activity``.

    The scheduler's idle check then holds idle-only work while a conversation is fresh.
    A later time already set by another pack is kept. Reads only; never creates the store.
    """
    from cass_actions_memory.store import DB_NAME, StoreError, last_user_message_at

    path = Path(context.workspace) / PACK_FOLDER / DB_NAME
    if not path.exists():
        return
    try:
        last = last_user_message_at(path)
    except StoreError:
        return
    if last is None:
        return
    current = context.get("last_user_activity")
    if isinstance(current, str):
        try:
            current = datetime.fromisoformat(current)
        except ValueError:
            current = None
    if isinstance(current, datetime) and current.tzinfo is not None and current >= last:
        return
    context.set("last_user_activity", last.astimezone(context.now.tzinfo))
