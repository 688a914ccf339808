"""The usual shape of an action pack, as two ready hook implementations.

Most packs ship ``actions.json``, ``templates.json`` and (optionally)
``settings.schema.json`` inside their package and map action ids to handlers. Instead
of writing the same two hooks, a pack's plugin module can say::

    from cass_actions_core.packs import file_pack_hooks

    register_actions, register_templates = file_pack_hooks(__package__, HANDLERS)

and add any other hooks (``gather_context``, ``register_commands`` ...) by hand. The
result is ordinary pluggy hook implementations; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.resources import files

from cass_actions_core import hookimpl
from cass_actions_core.registrars import ActionRegistrar, Handler, TemplateRegistrar

ACTIONS_FILE = "actions.json"
TEMPLATES_FILE = "templates.json"
SETTINGS_FILE = "settings.schema.json"


def file_pack_hooks(package: str, handlers: Mapping[str, Handler | str]) -> tuple[Callable[..., None], Callable[..., None]]:
    """``(register_actions, register_templates)`` for a pack laid out the usual way.

    ``register_actions`` loads ``<package>/actions.json``, declares
    ``<package>/settings.schema.json`` when the package ships one, and registers every
    handler in ``handlers``; ``register_templates`` loads ``<package>/templates.json`` when
    it exists. A handler may be given as a reference, ``"package.module:function"`` or
    ``".module:function"`` (inside ``package``): its module is then imported only when the
    handler is first needed, so ``cass-actions list`` never pays for it.
    """
    root = files(package)
    handlers = {action_id: f"{package}{fn}" if isinstance(fn, str) and fn.startswith(".") else fn
                for action_id, fn in handlers.items()}

    @hookimpl
    def register_actions(register: ActionRegistrar) -> None:
        """Register the pack's action metadata, its settings schema and one handler per action."""
        register.load(root / ACTIONS_FILE)
        if (root / SETTINGS_FILE).is_file():
            register.settings(root / SETTINGS_FILE)
        for action_id, handler in handlers.items():
            register.handler(action_id, handler)

    @hookimpl
    def register_templates(register: TemplateRegistrar) -> None:
        """Register the pack's templates."""
        if (root / TEMPLATES_FILE).is_file():
            register.load(root / TEMPLATES_FILE)

    return register_actions, register_templates


__all__ = ["file_pack_hooks"]
