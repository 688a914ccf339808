"""Hook implementations of the journal pack (the module its entry point names).

Cheap to import: the handler modules use only the standard library, pydantic and the
core; the LLM is reached through ``ctx.llm``.
"""

from __future__ import annotations

from cass_actions_core.packs import file_pack_hooks
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

register_actions, register_templates = file_pack_hooks(__package__, HANDLERS)
