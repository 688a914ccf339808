"""The catalogue: every action, handler and template from every pack, checked as a whole.

:func:`build_catalogue` loads the packs, gathers what they register, adds the user's
own template files and checks everything at once. It never raises for bad input; it
collects :class:`~cass_actions_core.problems.Problem` objects, and
:meth:`Catalogue.check` raises one :class:`~cass_actions_core.problems.CatalogueError`
listing all of them, so a bad catalogue can never start.
"""

from __future__ import annotations

import difflib
import gc
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from cass_actions_core.config import Config
from cass_actions_core.models import ActionDefinition, Template
from cass_actions_core.plugins import (FoundEntryPoint, PluginRecord, call_per_plugin, load_plugins, new_plugin_manager,
                                       one_line, pack_load_problems)
from cass_actions_core.problems import CatalogueError, Problem, UserError
from cass_actions_core.registrars import (ActionRegistrar, Handler, LazyHandler, Registered, TemplateRegistrar,
                                          check_handler_signature, handler_location)
from cass_actions_core import schema_files


@dataclass(frozen=True)
class CatalogueAction:
    """A registered action: its definition, its handler and where it came from."""

    definition: ActionDefinition
    handler: Handler | None
    origin: Registered

    @property
    def pack(self) -> str:
        """The pack that registered it."""
        return self.origin.pack


class CatalogueTemplate:
    """A registered template and where it came from.

    The typed :class:`Template` is built on first use of :attr:`template`: one read from a file is
    kept as its checked document until then, so checking a catalogue (which reads only ids,
    categories and steps) never builds ten thousand templates it does not use.
    """

    __slots__ = ("_template", "_doc", "_origin")

    def __init__(self, template: Template | dict[str, Any], origin: Registered) -> None:
        """``template``: the template, or a document :meth:`Template.from_dict` is known to accept."""
        self._template, self._doc = (template, None) if isinstance(template, Template) else (None, template)
        self._origin = origin

    @property
    def template(self) -> Template:
        """The template (built the first time it is asked for)."""
        if self._template is None:
            self._template, self._doc = Template.from_dict(self._doc), None
        return self._template

    @property
    def origin(self) -> Registered:
        """Where it came from."""
        return self._origin

    @property
    def id(self) -> str:
        """The template id."""
        return self._template.id if self._template is not None else self._doc["id"]

    @property
    def category(self) -> str:
        """The template's budget category."""
        return self._template.category if self._template is not None else self._doc["category"]

    def step_params(self) -> list[tuple[str, Any]]:
        """``(action id, params)`` of each step, in order."""
        if self._template is not None:
            return [(s.action, s.params) for s in self._template.steps]
        return [(s["action"], s.get("params", {})) for s in self._doc["steps"]]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CatalogueTemplate):
            return NotImplemented
        return (self.template, self.origin) == (other.template, other.origin)

    __hash__ = None  # type: ignore[assignment]  # like the frozen dataclass it was: a Template holds lists

    def __repr__(self) -> str:
        return f"CatalogueTemplate(template={self.template!r}, origin={self.origin!r})"


@dataclass
class Catalogue:
    """Actions, templates and packs, plus every problem found while building them."""

    config: Config
    plugin_manager: pluggy.PluginManager
    plugins: list[PluginRecord]
    actions: dict[str, CatalogueAction] = field(default_factory=dict)
    templates: dict[str, CatalogueTemplate] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: Things that are allowed but probably not meant (a used category with no money): reported, never fatal.
    warnings: list[Problem] = field(default_factory=list)
    #: LLM providers registered through ``register_llm_providers`` (a ProviderRegistry).
    providers: Any = None
    #: Actions whose params schema is not a valid JSON Schema (their steps' params cannot be checked).
    invalid_params_schemas: set[str] = field(default_factory=set)

    # -- queries -------------------------------------------------------------------
    def action(self, action_id: str) -> CatalogueAction:
        """The action ``action_id``; :class:`KeyError` with the closest id if unknown."""
        try:
            return self.actions[action_id]
        except KeyError:
            hint = closest(action_id, self.actions)
            raise KeyError(f"unknown action {action_id!r}" + (f" (did you mean {hint!r}?)" if hint else "")) from None

    def action_for(self, action_id: str, params: dict[str, Any]) -> CatalogueAction:
        """The action ``action_id`` once ``params`` are found valid for it: :class:`KeyError` (with the closest
        id) for an unknown action, :class:`UserError` naming each parameter its params schema refuses."""
        action = self.action(action_id)
        errors = [] if action_id in self.invalid_params_schemas else schema_files.validate_instance(action.definition.params, params)
        if errors:
            raise UserError(f"action {action_id!r}: invalid params: " + "; ".join(f"{p}: {m}" for p, m in errors) + ".")
        return action

    def template(self, template_id: str) -> CatalogueTemplate:
        """The template ``template_id``; :class:`KeyError` with the closest id if unknown."""
        try:
            return self.templates[template_id]
        except KeyError:
            hint = closest(template_id, self.templates)
            raise KeyError(f"unknown template {template_id!r}" + (f" (did you mean {hint!r}?)" if hint else "")) from None

    def template_cost(self, template: Template) -> float:
        """Estimated USD of a template: the sum of its steps' estimates (never typed twice)."""
        return round(sum(self.actions[s.action].definition.estimated_cost_usd for s in template.steps if s.action in self.actions), 6)

    def template_duration(self, template: Template) -> float:
        """Estimated minutes of a template: the sum of its steps' default durations."""
        return sum(self.actions[s.action].definition.default_duration_minutes for s in template.steps if s.action in self.actions)

    def categories(self) -> set[str]:
        """Every budget category used by an action or a template."""
        return {a.definition.category for a in self.actions.values()} | {t.category for t in self.templates.values()}

    @property
    def load_errors(self) -> list[PluginRecord]:
        """Packs that failed to import or register, and packs the load list names that are not installed."""
        return [p for p in self.plugins if p.status in ("error", "missing")]

    def all_problems(self, strict: bool = False) -> list[Problem]:
        """The catalogue's problems, plus (``strict``) one per pack that failed to load."""
        return (pack_load_problems(self.load_errors) if strict else []) + self.problems

    def check(self, strict: bool = True) -> None:
        """Raise :class:`CatalogueError` listing every problem (and, ``strict``, every broken pack)."""
        problems = self.all_problems(strict)
        if problems:
            raise CatalogueError(problems)


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The registered id nearest to ``name``, if any is reasonably close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def build_catalogue(
    config: Config,
    *,
    plugins: Sequence[tuple[str, Any]] = (),
    template_files: Sequence[str | Path] = (),
    entry_points: bool = True,
    full: bool = True,
    discovered: Sequence[FoundEntryPoint] | None = None,
) -> Catalogue:
    """Load packs, gather their actions and templates, add user template files, check all.

    ``plugins`` registers extra plugin objects by hand as ``(name, plugin)`` pairs;
    ``template_files`` adds user template files beside those named in the config;
    ``entry_points=False`` ignores installed packs (tests). ``full=False`` gathers and
    checks the action definitions only, without templates and without importing handlers
    registered by reference (``cass-actions list``: it checks what it prints, and a pack
    with ten thousand templates or heavy handler modules costs it nothing). ``discovered``: the
    entry points to load from, as :func:`~cass_actions_core.plugins.find_entry_points` found them
    (default: discover them now). Problems are collected on the returned catalogue; call
    :meth:`Catalogue.check` to refuse a bad one.
    """
    with _bulk():
        return _build(config, plugins, template_files, entry_points, full, discovered)


@contextmanager
def _bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while a catalogue is built: parsing pack files and building
    their definitions makes hundreds of thousands of acyclic objects, and the collector's repeated
    full passes over them cost a third of building a large catalogue. Reference counting still frees
    garbage meanwhile; the collector resumes (if it was on) when the block ends."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _build(config: Config, plugins: Sequence[tuple[str, Any]], template_files: Sequence[str | Path],
           entry_points: bool, full: bool, discovered: Sequence[FoundEntryPoint] | None) -> Catalogue:
    pm = new_plugin_manager()
    records = load_plugins(pm, load=config.plugins.load, disable=config.plugins.disable, extra=plugins,
                           entry_points=entry_points, discovered=discovered)
    catalogue = Catalogue(config=config, plugin_manager=pm, plugins=records)
    by_name = {r.name: r for r in records}

    registrars: dict[str, ActionRegistrar] = {}
    for name, kwargs, exc in call_per_plugin(pm, "register_actions", lambda n: {"register": registrars.setdefault(n, ActionRegistrar(n))}):
        if exc is not None:
            _mark_failed(by_name[name], "register_actions", exc)
            registrars.pop(name)
    template_regs: dict[str, TemplateRegistrar] = {}
    hooks = call_per_plugin(pm, "register_templates",
                            lambda n: {"register": template_regs.setdefault(n, TemplateRegistrar(n))}) if full else []
    for name, kwargs, exc in hooks:
        if exc is not None:
            _mark_failed(by_name[name], "register_templates", exc)
            template_regs.pop(name)
    # A pack that failed in one hook is dropped from both, so nothing half-registered remains.
    failed = {r.name for r in records if r.status == "error"}
    for name in failed:
        registrars.pop(name, None)
        template_regs.pop(name, None)

    for path in [*config.user_template_files(), *map(Path, template_files)] if full else []:
        reg = template_regs.setdefault(f"file:{path}", TemplateRegistrar("user templates"))
        reg.load(path)

    from cass_actions_core.llm.registry import collect_providers

    catalogue.providers, provider_failures = collect_providers(pm)
    for name, exc in provider_failures:
        _mark_failed(by_name[name], "register_llm_providers", exc)
    _collect_actions(catalogue, registrars.values(), resolve=full)
    _collect_templates(catalogue, template_regs.values())
    _check_categories(catalogue)
    _check_providers(catalogue)
    _check_pack_settings(catalogue, registrars.values())
    actions = Counter(a.origin.pack for a in catalogue.actions.values())
    templates = Counter(t.origin.pack for t in catalogue.templates.values())
    problems = Counter(p.pack for p in catalogue.problems)
    for name, record in by_name.items():
        record.actions, record.templates, record.problems = actions[name], templates[name], problems[name]
    return catalogue


def _mark_failed(record: PluginRecord, hook: str, exc: BaseException) -> None:
    record.status = "error"
    record.error = f"{hook} raised {one_line(exc)}"


def _collect_actions(catalogue: Catalogue, registrars: Iterable[ActionRegistrar], resolve: bool = True) -> None:
    problems = catalogue.problems
    registrars = list(registrars)
    handlers: dict[str, tuple[Handler, str]] = {}
    handler_pack: dict[str, str] = {}
    # Packs whose metadata file could not be read: their orphaned handlers are a
    # consequence, not a second problem.
    unreadable = set()
    for reg in registrars:
        problems.extend(reg.problems)
        if any(p.code in ("schema", "invalid-json", "unreadable-file") for p in reg.problems):
            unreadable.add(reg.pack)
        for definition, origin in reg.definitions:
            namespace, _, name = definition.id.partition(".")
            if namespace != reg.pack:
                problems.append(Problem(
                    "foreign-namespace",
                    f"action id is outside the pack's namespace: the ids of pack {reg.pack!r} start with {reg.pack + '.'!r} "
                    "(a pack's namespace is its entry-point name)",
                    file=origin.file, pack=origin.pack, item_id=definition.id, path=f"$.actions[{origin.index}].id",
                    hint=f"rename it to {reg.pack + '.' + name!r}",
                ))
            existing = catalogue.actions.get(definition.id)
            if existing is not None:
                # Both packs hear of it; the namespace's owner keeps the id whatever the load order.
                message = (f"action id registered by two packs: {existing.pack!r} ({existing.origin.file}) "
                           f"and {origin.pack!r} ({origin.file})")
                for clashing in (existing.origin, origin):
                    problems.append(Problem(
                        "duplicate-action", message, file=clashing.file, pack=clashing.pack, item_id=definition.id,
                        path=f"$.actions[{clashing.index}].id", hint="rename one of them or disable one pack",
                    ))
                if existing.pack == namespace or origin.pack != namespace:
                    continue
            problems.extend(_check_definition(definition, origin, catalogue.invalid_params_schemas))
            catalogue.actions[definition.id] = CatalogueAction(definition, None, origin)
    for reg in registrars:
        for action_id, handler in reg.handlers.items():
            if action_id in handlers and handler_pack[action_id] != reg.pack:
                defined_by = catalogue.actions[action_id].pack if action_id in catalogue.actions else None
                if defined_by != reg.pack:
                    problems.append(Problem(
                        "duplicate-handler",
                        f"two packs register a handler for this action: {handler_pack[action_id]!r} and {reg.pack!r}",
                        pack=reg.pack, item_id=action_id,
                    ))
                    continue
            handlers[action_id] = handler
            handler_pack[action_id] = reg.pack

    for action_id, (fn, qualname) in handlers.items():
        action = catalogue.actions.get(action_id)
        if action is None and handler_pack[action_id] in unreadable:
            continue
        if action is None:
            hint = closest(action_id, catalogue.actions)
            problems.append(Problem(
                "handler-without-definition",
                f"handler {qualname} is registered for an action with no definition",
                pack=handler_pack[action_id], item_id=action_id,
                hint=f"did you mean {hint!r}?" if hint else "add the action to the pack's metadata file",
            ))
            continue
        if handler_pack[action_id] != action.pack:
            problems.append(Problem(
                "foreign-handler",
                f"pack {handler_pack[action_id]!r} registers a handler for an action defined by pack {action.pack!r}",
                pack=handler_pack[action_id], item_id=action_id,
            ))
            continue
        if resolve and isinstance(fn, LazyHandler):
            unusable = _resolve(fn)
            if unusable:
                code, why, where = unusable
                problems.append(Problem(code, why, file=where, pack=action.pack, item_id=action_id))
                continue
        catalogue.actions[action_id] = CatalogueAction(action.definition, fn, action.origin)
    # A handler that was registered but refused (its signature) is already a problem of its own.
    refused = {p.item_id for p in problems if p.code in ("handler-signature", "handler-import")}
    for action in catalogue.actions.values():
        if action.handler is None and action.definition.id not in handlers and action.definition.id not in refused:
            problems.append(Problem(
                "missing-handler", "action is defined but no handler is registered for it",
                file=action.origin.file, pack=action.pack, item_id=action.definition.id,
                path=f"$.actions[{action.origin.index}]",
            ))


def _resolve(handler: LazyHandler) -> tuple[str, str, str | None] | None:
    """Import a handler registered by reference and check its signature: ``(problem code, why, where it is
    defined)`` when it is unusable, else None."""
    try:
        target = handler.resolve()
    except Exception as exc:  # a pack's module failing to import is the pack's problem, reported, not raised
        return "handler-import", f"cannot import handler {handler.ref!r}: {one_line(exc)}", None
    why = check_handler_signature(target)
    return ("handler-signature", why, handler_location(target)) if why else None


def _check_definition(definition: ActionDefinition, origin: Registered, invalid_params: set[str]) -> list[Problem]:
    out: list[Problem] = []
    base = f"$.actions[{origin.index}]"

    def add(code: str, message: str, field_name: str) -> None:
        out.append(Problem(code, message, file=origin.file, pack=origin.pack, item_id=definition.id, path=f"{base}.{field_name}"))

    for where, why in schema_files.schema_problems(definition.params):
        add("invalid-params-schema", f"params is not a valid JSON Schema: {why}", "params" + where[1:])
        invalid_params.add(definition.id)
    if not definition.uses_llm and definition.estimated_cost_usd > 0:
        add("cost-without-llm", "an action that makes no LLM call must estimate 0 USD", "estimated_cost_usd")
    if definition.tier == 1 and definition.uses_llm:
        add("tier-mismatch", "tier 1 (system) actions make no LLM call", "uses_llm")
    if definition.max_cost_usd < definition.estimated_cost_usd:
        add("cap-below-estimate", f"max_cost_usd {definition.max_cost_usd} is below estimated_cost_usd {definition.estimated_cost_usd}", "max_cost_usd")
    return out


def _collect_templates(catalogue: Catalogue, registrars: Iterable[TemplateRegistrar]) -> None:
    problems = catalogue.problems
    checks: dict[str, Any] = {}  # action id -> its params check (see _check_template)
    for reg in registrars:
        problems.extend(reg.problems)
        for entry, origin in reg.entries:
            item = CatalogueTemplate(entry, origin)
            existing = catalogue.templates.get(item.id)
            if existing is not None:
                problems.append(Problem(
                    "duplicate-template",
                    f"template id registered twice: by {existing.origin.pack!r} ({existing.origin.file}) and by {origin.pack!r} ({origin.file})",
                    file=origin.file, pack=origin.pack, item_id=item.id, path=f"$.templates[{origin.index}].id",
                ))
                continue
            problems.extend(_check_template(catalogue, item, checks))
            catalogue.templates[item.id] = item


#: Problems of a pack's metadata file that leave its actions unregistered (see registrars.py).
_UNREAD_METADATA = frozenset({"unreadable-file", "invalid-json", "schema"})


def _check_template(catalogue: Catalogue, item: CatalogueTemplate, checks: dict[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    origin = item.origin
    for j, (action_id, params) in enumerate(item.step_params()):
        check = checks.get(action_id)
        if check is None:
            check = checks[action_id] = _params_check(catalogue, action_id)
        if check is True or check(params):
            continue
        path = f"$.templates[{origin.index}].steps[{j}]"
        action = catalogue.actions.get(action_id)
        if action is None:
            hint = closest(action_id, catalogue.actions)
            namespace = action_id.partition(".")[0]
            unread = any(p.pack == namespace and p.code in _UNREAD_METADATA for p in catalogue.problems)
            out.append(Problem(
                "unknown-action", f"step {j + 1} names unregistered action {action_id!r}",
                file=origin.file, pack=origin.pack, item_id=item.id, path=f"{path}.action",
                # A pack whose metadata file could not be read registers nothing: say so, not "no action is close".
                hint=(f"pack {namespace!r} registered no actions from its metadata, which could not be read: "
                      "see that problem first" if unread else
                      f"closest registered action: {hint!r}" if hint else "no registered action is close; run 'cass-actions list'"),
            ))
            continue
        for sub, message in schema_files.validate_instance(action.definition.params, params):
            out.append(Problem(
                "invalid-params", f"step {j + 1} params for {action_id!r}: {message}",
                file=origin.file, pack=origin.pack, item_id=item.id, path=f"{path}.params{sub[1:]}",
            ))
    return out


def _params_check(catalogue: Catalogue, action_id: str) -> Any:
    """What a step naming ``action_id`` is checked with: ``True`` (nothing to check: its params schema is
    itself invalid, reported once on the action), else a function saying whether params are valid (always
    false for an unknown action, so the step is reported)."""
    action = catalogue.actions.get(action_id)
    if action is None:
        return lambda params: False
    if action_id in catalogue.invalid_params_schemas:
        return True
    return schema_files.instance_check(action.definition.params)


def _check_categories(catalogue: Catalogue) -> None:
    allocations = catalogue.config.budget.allocations
    label = str(catalogue.config.source) if catalogue.config.source else "configuration (defaults)"
    users: dict[str, list[str]] = {}
    for a in catalogue.actions.values():
        users.setdefault(a.definition.category, []).append(a.definition.id)
    for t in catalogue.templates.values():
        users.setdefault(t.category, []).append(t.id)
    planner = catalogue.config.planner
    if planner.enabled:
        users.setdefault(planner.category, []).append("the day planner ($.planner.category)")
    for category in sorted(users):
        if category in allocations and catalogue.config.budget.category_limit(category) <= 0:
            templates = sorted(t.id for t in catalogue.templates.values() if t.category == category)
            what = (f"the planner never plans its {len(templates)} template(s): {_some(templates)}" if templates else
                    f"its actions can never be paid for: {_some(sorted(users[category]))}")
            catalogue.warnings.append(Problem(
                "zero-budget",
                f"category {category!r} gets no money ("
                + ("budget.daily_usd is 0" if catalogue.config.budget.daily_usd <= 0 else "its share is 0") + f"), so {what}",
                file=label, item_id=category, path=f"$.budget.allocations.{category}",
                hint="give it a share if that work should run",
            ))
            continue
        if category not in allocations:
            ids = users[category]
            catalogue.problems.append(Problem(
                "unbudgeted-category",
                f"category {category!r} has no budget allocation but is used by {', '.join(sorted(ids)[:5])}"
                + (f" and {len(ids) - 5} more" if len(ids) > 5 else ""),
                file=label, item_id=category, path=f"$.budget.allocations.{category}",
                hint="add it under [budget.allocations] in the config file",
            ))


def _some(ids: list[str], shown: int = 6) -> str:
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def _check_providers(catalogue: Catalogue) -> None:
    """Every LLM provider the config or an action names must be registered."""
    from cass_actions_core.llm.registry import resolve_settings

    registry = catalogue.providers
    config = catalogue.config
    label = str(config.source) if config.source else "configuration (defaults)"
    known = ", ".join(registry.names) or "none"
    if config.llm.provider not in registry:
        catalogue.problems.append(Problem(
            "unknown-provider", f"LLM provider {config.llm.provider!r} is not registered (known: {known})",
            file=label, path="$.llm.provider", hint=f"closest: {closest(config.llm.provider, registry.names)!r}"
            if closest(config.llm.provider, registry.names) else None))
        return
    for action in catalogue.actions.values():
        if not action.definition.uses_llm:
            continue
        name = resolve_settings(config.llm, action.definition).provider
        if name not in registry:
            in_config = action.definition.id in config.llm.actions and config.llm.actions[action.definition.id].provider
            catalogue.problems.append(Problem(
                "unknown-provider", f"LLM provider {name!r} is not registered (known: {known})",
                file=label if in_config else action.origin.file, pack=action.pack, item_id=action.definition.id,
                path=f"$.llm.actions.{action.definition.id}.provider" if in_config else f"$.actions[{action.origin.index}].llm.provider",
            ))


def _check_pack_settings(catalogue: Catalogue, registrars: Iterable[ActionRegistrar]) -> None:
    """Each pack's ``[packs.<pack>]`` table must satisfy the settings schema the pack declared."""
    config = catalogue.config
    label = str(config.source) if config.source else "configuration (defaults)"
    registrars = list(registrars)
    known = {reg.pack for reg in registrars} | {record.name for record in catalogue.plugins}
    for pack in sorted(set(config.packs) - known):
        # A misspelt table would otherwise be ignored without a word (a pack not installed here is told the same).
        hint = closest(pack, known)
        catalogue.warnings.append(Problem(
            "unknown-pack-settings", f"[packs.{pack}] names no installed pack, so nothing reads its settings",
            file=label, path=f"$.packs.{pack}", hint=f"did you mean [packs.{hint}]?" if hint else "run 'cass-actions plugins'",
        ))
    for reg in registrars:
        if reg.settings_schema is None:
            continue
        schema, _source = reg.settings_schema
        for sub, message in schema_files.validate_instance(schema, config.pack_settings(reg.pack)):
            catalogue.problems.append(Problem(
                "invalid-pack-settings", message, file=label, pack=reg.pack, path=f"$.packs.{reg.pack}{sub[1:]}",
            ))
