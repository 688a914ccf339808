"""Hook implementations of the journal pack (the module its entry point names).

Cheap to import: handlers are named by reference and imported when first needed.
"""

from __future__ import annotations

from cass_actions_core.packs import file_pack_hooks

#: Action id -> handler (by reference: ``cass-actions list`` imports none of them).
HANDLERS: dict[str, str] = {
    "journal.generate_daily": ".daily:generate_daily",
    "journal.weekly_review": ".weekly:weekly_review",
    "journal.dream": ".dream:nightly",
}

register_actions, register_templates = file_pack_hooks(__package__, HANDLERS)
