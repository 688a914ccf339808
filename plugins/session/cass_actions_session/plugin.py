"""Hook implementations of the session pack (the module its entry point names).

Kept cheap to import: handlers are named by reference and imported when first needed
(and they never import the Anthropic SDK; LLM calls go through ``ctx.llm``).
"""

from __future__ import annotations

from typing import Any

from cass_actions_core import hookimpl
from cass_actions_core.packs import file_pack_hooks

#: The twelve session actions (one spec each in ``sessions.SPECS``; a test keeps the two lists equal).
SESSION_ACTIONS: tuple[str, ...] = (
    "session.reflection", "session.synthesis", "session.meta_reflection", "session.consolidation",
    "session.growth_edge", "session.curiosity", "session.world_state", "session.research",
    "session.knowledge_building", "session.writing", "session.creative", "session.user_synthesis",
)

#: Action id -> handler, for every action in ``actions.json``, by reference: imported when first
#: needed (``cass-actions list`` imports none of them).
HANDLERS: dict[str, str] = {
    **{action_id: ".sessions:run" for action_id in SESSION_ACTIONS},
    "session.add_observation": ".self_actions:add_observation",
    "session.record_insight": ".self_actions:record_insight",
    "session.update_growth_edge": ".self_actions:update_growth_edge",
    "session.refresh_research_queue": ".research:refresh_queue",
    "session.research_single": ".research:run_single",
    "session.research_batch": ".research:run_batch",
}

register_actions, register_templates = file_pack_hooks(__package__, HANDLERS)


@hookimpl
def gather_context(context: Any) -> None:
    """Planning facts from ``self/model.json``: identity, values, mood, growth_edges, open_questions.

    A missing file sets nothing; a malformed one is logged (naming the file) and sets
    nothing. Other packs' facts of the same names merge with these (lists are joined,
    mappings merged key by key; ``PlanningContext.sources`` names the packs); an application
    with its own self model replaces them with ``context.replace`` from a pack loaded after
    this one (docs/plugins.md, "Planning facts").
    """
    from cass_actions_session import selfmodel

    selfmodel.gather(context)
