"""Hook implementations of the wonderland pack (the module its entry point names).

Importing this module is cheap: handlers are named by reference and imported when first
needed; the world file is checked when first loaded, and the LLM is reached
only through ``ctx.llm``.
"""

from __future__ import annotations

from cass_actions_core.packs import file_pack_hooks

#: Action id -> handler (by reference: ``cass-actions list`` imports none of them).
HANDLERS: dict[str, str] = {action_id: f".handlers:{action_id.split('.', 1)[1]}" for action_id in (
    "wonderland.enter", "wonderland.explore", "wonderland.reflect", "wonderland.create", "wonderland.socialize",
    "wonderland.journal_experience")}

register_actions, register_templates = file_pack_hooks(__package__, HANDLERS)

__all__ = ["HANDLERS", "register_actions", "register_templates"]
