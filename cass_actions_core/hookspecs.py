"""The plugin contract: every hook an action pack may implement.

An action pack is a distribution with an entry point in the ``cass_actions`` group that
points at a module (or object) holding hook implementations marked with
:data:`cass_actions_core.hookimpl`::

    # pyproject.toml
    [project.entry-points.cass_actions]
    journal = "cass_actions_journal.plugin"

    # cass_actions_journal/plugin.py
    from importlib.resources import files
    from cass_actions_core import hookimpl

    @hookimpl
    def register_actions(register):
        register.load(files(__package__) / "actions.json")
        register.handler("journal.generate_daily", generate_daily)

A pack implements only the hooks it needs. Each hook receives keyword arguments named
as below (pluggy matches by name, so an implementation may accept fewer arguments than
the spec offers). Hooks are called pack by pack, so everything a pack registers is
attributed to it, and a pack that raises inside a hook is reported and rolled back
without affecting the others.

Keep the module the entry point names cheap to import: ``cass-actions list`` imports
every enabled pack, so import heavy libraries (the Anthropic SDK above all) inside
handlers, not at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cass_actions_core import hookspec

if TYPE_CHECKING:  # pragma: no cover - names for the documentation only
    import click

    from cass_actions_core.context import PlanningContext
    from cass_actions_core.events import Event
    from cass_actions_core.llm.registry import ProviderRegistrar
    from cass_actions_core.registrars import ActionRegistrar, TemplateRegistrar


@hookspec
def register_actions(register: ActionRegistrar) -> None:
    """Register the pack's action definitions and one handler per action.

    ``register.load(source)`` reads an action metadata file: a JSON document valid
    against ``schemas/action-pack.schema.json`` (``{"actions": [ {...}, ... ]}``).
    ``source`` is a path, an :mod:`importlib.resources` traversable (ship the file as
    package data) or an already-parsed mapping. Problems (schema errors with their
    JSON path, unreadable JSON) are reported against the file and the pack.

    ``register.handler(action_id, fn)`` binds a handler: an ``async def
    handler(ctx) -> ActionResult | dict`` taking exactly one positional argument, the
    :class:`~cass_actions_core.actions.ActionContext`. The signature is checked here,
    at registration, not when the action first runs. ``register.handler(action_id)``
    with no function returns a decorator.

    ``register.settings(source)`` (optional) declares a JSON Schema for the pack's
    ``[packs.<pack>]`` config table; a bad value is then a catalogue problem with its key
    path, reported by ``validate`` and at startup.

    Every definition needs a handler and every handler a definition; an id
    registered by two packs is an error that names both.
    """


@hookspec
def register_templates(register: TemplateRegistrar) -> None:
    """Register work-unit templates that compose registered actions.

    ``register.load(source)`` reads a template file valid against
    ``schemas/template-file.schema.json`` (``{"templates": [ {...}, ... ]}``). Templates
    are validated exactly like a user's own template files: every step must name a
    registered action and its ``params`` must satisfy that action's params schema.
    A template's estimated cost and duration are derived from its steps.
    """


@hookspec
def register_llm_providers(register: ProviderRegistrar) -> None:
    """Register extra LLM providers by name.

    ``register(name, factory)`` where ``factory(settings)`` returns an object
    implementing :class:`cass_actions_core.llm.base.LLMProvider`. The core registers
    ``anthropic`` and ``offline`` itself; a pack may not reuse those names.
    """


@hookspec
def gather_context(context: PlanningContext) -> None:
    """Add facts for the day planner: mood, growth edges, open questions, idle state.

    Called before each planning run and before a unit that ``requires_idle`` starts.
    Write facts with ``context.set(key, value)``; well-known keys are ``identity``
    (list of str), ``values`` (list of str), ``mood`` (mapping of name to 0..1),
    ``growth_edges`` (list of ``{"area", "current_state"}``), ``open_questions``
    (list of str) and ``last_user_activity`` (an aware datetime, for the idle check).
    ``context.now`` is the daemon's local time, ``context.workspace`` its
    workspace folder and ``context.settings`` this pack's ``[packs.<pack>]`` table. Must not block for long: it runs inside the scheduler loop.

    Packs are called in load order and their values for the same key are merged, not
    overwritten: lists are concatenated without exact duplicates, mappings merged key
    by key (the later pack wins per key), ``last_user_activity`` is the latest time any
    pack gave, and any other value is the later pack's. ``context.get(key)`` reads the
    merged fact (what earlier packs gave is visible to later ones),
    ``context.given(key)`` what each pack gave, ``context.sources[key]`` the packs the
    merged value comes from; ``context.replace(key, value)`` overrides what earlier
    packs gave instead of adding to it. See :mod:`cass_actions_core.context`.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``cass-actions`` command line.

    ``cli`` is a :class:`click.Group`; decorate functions with ``@cli.command()``.
    Commands receive the usual global options through the click context
    (``ctx.obj`` is a :class:`cass_actions_core.cli.state.CLIState`).
    """


@hookspec
def on_event(event: Event) -> Any:
    """Observe an event (``work_unit.completed``, ``budget.blocked``, ...).

    Called after the event is stored, from a background task with a time limit, so a
    slow or failing listener never stalls the scheduler loop. It may be a plain
    function or a coroutine function. Its return value is ignored; an exception is
    logged and recorded, never raised into the loop.
    """
