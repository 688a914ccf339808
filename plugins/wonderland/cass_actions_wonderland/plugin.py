"""Hook implementations of the wonderland pack (the module its entry point names).

Importing this module is cheap: the handlers import only the core, pydantic (already
loaded by the core) and the standard library; jsonschema is imported when a world file
is first loaded, and the LLM is reached only through ``ctx.llm``.
"""

from __future__ import annotations

from cass_actions_core.packs import file_pack_hooks

from cass_actions_wonderland.handlers import HANDLERS

register_actions, register_templates = file_pack_hooks(__package__, HANDLERS)

__all__ = ["HANDLERS", "register_actions", "register_templates"]
