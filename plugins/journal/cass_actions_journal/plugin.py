"""Hook implementations of the journal pack (the module its entry point names).

Cheap to import: the handler modules use only the standard library, pydantic and the
core; the LLM is reached through ``ctx.llm``.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from cass_actions_core import hookimpl
from cass_actions_core.registrars import Handler

from cass_actions_journal.daily import generate_daily
from cass_actions_journal.dream import nightly
from cass_actions_journal.weekly import weekly_review

#: Action id -> handler.
HANDLERS: dict[str, Handler] = {
    "journal.generate_daily": generate_daily,
    "journal.weekly_review": weekly_review,
    "dream.nightly": nightly,
}


@hookimpl
def register_actions(register: Any) -> None:
    """Register the pack's settings schema, action metadata file and one handler per action."""
    register.settings(files(__package__) / "settings.schema.json")
    register.load(files(__package__) / "actions.json")
    for action_id, handler in HANDLERS.items():
        register.handler(action_id, handler)


@hookimpl
def register_templates(register: Any) -> None:
    """Register the pack's templates."""
    register.load(files(__package__) / "templates.json")
