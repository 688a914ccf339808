"""Hook implementations of the memory pack (the module its entry point names)."""

from __future__ import annotations

from importlib.resources import files

from cass_actions_core import hookimpl

#: Action id -> handler; filled by the pack's handler modules.
HANDLERS: dict = {}


@hookimpl
def register_actions(register):
    """Register the pack's action metadata file and one handler per action."""
    register.load(files(__package__) / "actions.json")
    for action_id, handler in HANDLERS.items():
        register.handler(action_id, handler)


@hookimpl
def register_templates(register):
    """Register the pack's templates."""
    register.load(files(__package__) / "templates.json")
