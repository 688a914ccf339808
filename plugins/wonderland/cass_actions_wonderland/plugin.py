"""Hook implementations of the wonderland pack (the module its entry point names).

Importing this module is cheap: the handlers import only the core, pydantic (already
loaded by the core) and the standard library; jsonschema is imported when a world file
is first loaded, and the LLM is reached only through ``ctx.llm``.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from cass_actions_core import hookimpl

from cass_actions_wonderland.handlers import HANDLERS

__all__ = ["HANDLERS", "register_actions", "register_templates"]


@hookimpl
def register_actions(register: Any) -> None:
    """Register the pack's action metadata file, its settings schema and one handler per action."""
    register.load(files(__package__) / "actions.json")
    register.settings(files(__package__) / "settings.schema.json")
    for action_id, handler in HANDLERS.items():
        register.handler(action_id, handler)


@hookimpl
def register_templates(register: Any) -> None:
    """Register the pack's templates."""
    register.load(files(__package__) / "templates.json")
