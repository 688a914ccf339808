"""Hook implementations of the session pack (the module its entry point names).

Kept cheap to import: the handler modules import only the core, pydantic and the
standard library (never the Anthropic SDK; LLM calls go through ``ctx.llm``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from cass_actions_core import hookimpl
from cass_actions_core.packs import file_pack_hooks
from cass_actions_core.actions import ActionContext, ActionResult

from cass_actions_session import research, self_actions, selfmodel
from cass_actions_session.sessions import SESSION_HANDLERS

#: Action id -> handler, for every action in ``actions.json``.
HANDLERS: dict[str, Callable[[ActionContext], Awaitable[ActionResult]]] = {
    **SESSION_HANDLERS,
    "self.add_observation": self_actions.add_observation,
    "self.record_insight": self_actions.record_insight,
    "self.update_growth_edge": self_actions.update_growth_edge,
    "research.refresh_queue": research.refresh_queue,
    "research.run_single": research.run_single,
    "research.run_batch": research.run_batch,
}

register_actions, register_templates = file_pack_hooks(__package__, HANDLERS)


@hookimpl
def gather_context(context: Any) -> None:
    """Planning facts from ``self/model.json``: identity, values, mood, growth_edges, open_questions.

    A missing file sets nothing; a malformed one is logged (naming the file) and sets
    nothing. An application with its own self model overrides these keys from a pack
    loaded after this one (packs load in order of distribution name; the later value
    wins and ``PlanningContext.sources`` shows which pack set it).
    """
    selfmodel.gather(context)
