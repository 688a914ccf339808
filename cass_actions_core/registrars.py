"""The objects a pack's ``register_actions`` / ``register_templates`` hooks receive.

Each pack gets its own registrar, so everything it registers is attributed to it and can
be discarded as a whole if the pack's hook raises.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import cache, lru_cache
from typing import Any, Protocol

from cass_actions_core import schema_files
from cass_actions_core.models import ActionDefinition, Step, Template, TimeWindow, parse_cooldown
from cass_actions_core.problems import JSONTextError, Problem, parse_json

#: An action handler: ``async def handler(ctx) -> ActionResult | dict``.
Handler = Callable[[Any], Any]


class LazyHandler:
    """A handler named by reference, ``"package.module:function"``, imported on first use.

    A pack registering its handlers this way costs nothing to load until one of them is
    needed: ``cass-actions list`` never imports them; ``validate`` and a runtime resolve
    every one when the catalogue is built (:meth:`resolve`), so a bad reference or signature
    is reported before anything runs, as for a handler given directly.
    """

    __slots__ = ("ref", "_target")

    def __init__(self, ref: str) -> None:
        """Name the handler; nothing is imported yet."""
        self.ref = ref
        self._target: Handler | None = None

    def resolve(self) -> Handler:
        """Import the module and return the function (``ImportError``/``AttributeError``/``ValueError`` if it cannot)."""
        if self._target is None:
            import importlib

            module, sep, attr = self.ref.partition(":")
            if not sep or not module or not attr:
                raise ValueError(f"handler reference {self.ref!r} must look like 'package.module:function'")
            target = importlib.import_module(module)
            for part in attr.split("."):
                target = getattr(target, part)
            self._target = target
        return self._target

    def __call__(self, ctx: Any) -> Any:
        """Call the handler (resolving it first if needed)."""
        return self.resolve()(ctx)

    def __repr__(self) -> str:
        return f"LazyHandler({self.ref!r})"


class Readable(Protocol):
    """Anything with ``read_text`` (a :class:`pathlib.Path` or an importlib.resources traversable)."""

    def read_text(self, encoding: str = ...) -> str: ...


Source = Readable | Mapping[str, Any] | str


@dataclass(frozen=True, slots=True)
class Registered:
    """Where a registered item came from: the pack, the file and its index in the file."""

    pack: str
    file: str
    index: int


def _read_document(source: Source, pack: str, problems: list[Problem],
                   schema: str | None = None) -> tuple[Any, str, str | None] | None:
    """``(document, label, digest of the file's text or None for inline metadata)``, or None (a problem is
    recorded). ``schema``: the schema the document must pass (a text already found valid against it
    passed the depth check too)."""
    if isinstance(source, Mapping):
        return dict(source), f"<{pack}: inline metadata>", None
    if isinstance(source, str):
        from pathlib import Path

        source = Path(source)
    label = str(source)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem("unreadable-file", f"cannot read the file: {exc}", file=label, pack=pack))
        return None
    digest = schema_files.digest(text)
    try:
        return parse_json(text, depth_known_ok=schema is not None and schema_files.known_valid(schema, digest)), label, digest
    except JSONTextError as exc:
        problems.append(Problem("invalid-json", str(exc), file=label, pack=pack))
        return None


def _model_problem(exc: Exception, label: str, pack: str, where: str, raw: Any) -> Problem:
    """The schema passed a document the typed view refuses (a cooldown past its limit, or a schema
    and a dataclass that disagree): one problem at the item's path, in one sentence."""
    item_id = raw.get("id") if isinstance(raw, Mapping) and isinstance(raw.get("id"), str) else None
    field_name = ".cooldown" if "cooldown" in str(exc) else ""
    return Problem("schema", str(exc), file=label, pack=pack, item_id=item_id, path=where + field_name)


def _schema_problems(name: str, doc: Any, label: str, pack: str, key: str, digest: str | None) -> list[Problem]:
    out = []
    for path, message in schema_files.validate(name, doc, source_digest=digest):
        item_id = None
        # Name the item the error sits in, when it has a readable id.
        parts = path.split("]", 1)[0].split("[")
        if path.startswith(f"$.{key}[") and len(parts) == 2 and parts[1].isdigit():
            item = doc[key][int(parts[1])]
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                item_id = item["id"]
        out.append(Problem("schema", message, file=label, pack=pack, item_id=item_id, path=path))
    return out


def handler_location(fn: Any) -> str | None:
    """Where ``fn`` is defined, ``path/to/module.py:12``, for problems about it; None if unknown."""
    target = getattr(fn, "__func__", fn)
    try:
        source = inspect.getsourcefile(target)
        line = target.__code__.co_firstlineno
    except (TypeError, AttributeError):
        return None
    return f"{source}:{line}" if source else None


def check_handler_signature(fn: Any) -> str | None:
    """Why ``fn`` cannot be an action handler, or ``None`` if it can.

    A handler is a coroutine function taking exactly one positional argument (the
    action context). Checking at registration removes the earlier system's second
    calling convention (keyword-spread context, F7).
    """
    if inspect.isfunction(fn):  # a plain function, often registered for many actions: judged once
        return _function_verdict(fn)
    return _handler_verdict(fn)


@lru_cache(maxsize=1024)
def _function_verdict(fn: Any) -> str | None:
    return _handler_verdict(fn)


def _handler_verdict(fn: Any) -> str | None:
    if not callable(fn):
        return f"handler {fn!r} is not callable"
    target = fn.__call__ if not inspect.isfunction(fn) and not inspect.ismethod(fn) and hasattr(fn, "__call__") else fn
    if not (inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(target)):
        return f"handler {getattr(fn, '__qualname__', fn)!r} must be an 'async def' function"
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    positional = [
        p for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    extra_required = [
        p for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY and p.default is p.empty
    ]
    if len(positional) != 1 or extra_required:
        return f"handler {getattr(fn, '__qualname__', fn)!r} must take exactly one argument (the action context), has {sig}"
    return None


@dataclass
class ActionRegistrar:
    """Collects one pack's action definitions and handlers (see ``register_actions``)."""

    pack: str
    definitions: list[tuple[ActionDefinition, Registered]] = field(default_factory=list)
    handlers: dict[str, tuple[Handler, str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: The pack's settings schema and where it came from, if it declared one.
    settings_schema: tuple[dict[str, Any], str] | None = None

    def settings(self, source: Source) -> None:
        """Declare the JSON Schema of the pack's ``[packs.<pack>]`` settings table.

        The config's table is checked against it when the catalogue is built (``validate``
        and startup report a bad value with its key path), not when an action first runs.
        """
        read = _read_document(source, self.pack, self.problems)
        if read is None:
            return
        schema, label, _digest = read
        found = schema_files.schema_problems(schema)
        for where, why in found:
            self.problems.append(Problem("invalid-settings-schema", f"not a valid JSON Schema: {why}", file=label,
                                         pack=self.pack, path=where))
        if found:
            return
        self.settings_schema = (schema, label)

    def load(self, source: Source) -> None:
        """Read an action metadata file (``{"actions": [...]}``) and register its definitions."""
        read = _read_document(source, self.pack, self.problems, schema_files.ACTION_PACK)
        if read is None:
            return
        doc, label, digest = read
        schema_problems = _schema_problems(schema_files.ACTION_PACK, doc, label, self.pack, "actions", digest)
        self.problems.extend(schema_problems)
        if schema_problems:
            return
        for index, raw in enumerate(doc["actions"]):
            try:
                definition = ActionDefinition.from_dict(raw)
            except (TypeError, ValueError) as exc:  # the schema and the dataclass disagree: report, don't crash
                self.problems.append(_model_problem(exc, label, self.pack, f"$.actions[{index}]", raw))
                continue
            self.definitions.append((definition, Registered(self.pack, label, index)))

    def handler(self, action_id: str, fn: Handler | str | None = None) -> Any:
        """Bind ``fn`` as the handler of ``action_id``; without ``fn``, return a decorator.

        ``fn`` may be a reference, ``"package.module:function"``: the module is imported only
        when the handler is first needed (see :class:`LazyHandler`).
        """
        if fn is None:
            def decorate(func: Handler) -> Handler:
                self.handler(action_id, func)
                return func

            return decorate
        if isinstance(fn, str):
            entry: tuple[Handler, str] = (LazyHandler(fn), fn)  # its signature is checked when it is resolved
        else:
            why = check_handler_signature(fn)
            if why:
                self.problems.append(Problem("handler-signature", why, file=handler_location(fn), pack=self.pack,
                                             item_id=action_id))
                return fn
            entry = (fn, getattr(fn, "__qualname__", repr(fn)))
        if action_id in self.handlers:
            self.problems.append(
                Problem("duplicate-handler", "the pack registers two handlers for this action", pack=self.pack, item_id=action_id)
            )
            return fn
        self.handlers[action_id] = entry
        return fn


def _field_names(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """The fields a dataclass accepts, and those it requires (what its ``from_dict`` passes through)."""
    every = fields(cls)
    return (frozenset(f.name for f in every),
            frozenset(f.name for f in every if f.default is MISSING and f.default_factory is MISSING))


_TEMPLATE_FIELDS, _TEMPLATE_REQUIRED = _field_names(Template)
_STEP_FIELDS, _STEP_REQUIRED = _field_names(Step)
_WINDOW_FIELDS, _WINDOW_REQUIRED = _field_names(TimeWindow)


def _plain_template(raw: Any) -> bool:
    """Whether :meth:`Template.from_dict` certainly accepts ``raw``, a template the schema found valid:
    its cooldown parses and (unless the schema already guarantees it) its fields, its steps' and its
    windows' are the dataclasses' own. A plain check, so a catalogue check need not build ten thousand
    typed templates it only counts."""
    cooldown = raw.get("cooldown", "0m") if type(raw) is dict else None
    if type(cooldown) is not str or not _cooldown_ok(cooldown):
        return False
    if _schema_admits_only_model_fields():
        return True
    if not (_TEMPLATE_REQUIRED <= raw.keys() <= _TEMPLATE_FIELDS):
        return False
    steps, windows = raw["steps"], raw.get("preferred_windows", ())
    if type(steps) is not list or type(windows) not in (list, tuple):
        return False
    for step in steps:
        if type(step) is not dict or not (_STEP_REQUIRED <= step.keys() <= _STEP_FIELDS):
            return False
    for window in windows:
        if type(window) is not dict or not (_WINDOW_REQUIRED <= window.keys() <= _WINDOW_FIELDS):
            return False
    return True


@lru_cache(maxsize=256)
def _cooldown_ok(text: str) -> bool:
    try:
        parse_cooldown(text)
    except ValueError:
        return False
    return True


@cache
def _schema_admits_only_model_fields() -> bool:
    """Whether the template-file schema allows exactly the fields of Template, Step and TimeWindow (no
    other) and requires every field they require: then every document it finds valid has their shape."""
    schema = schema_files.load_schema(schema_files.TEMPLATE_FILE)
    defs = schema.get("$defs", {})
    if schema.get("properties", {}).get("templates", {}).get("items") != {"$ref": "#/$defs/template"}:
        return False
    for name, (names, required) in {"template": (_TEMPLATE_FIELDS, _TEMPLATE_REQUIRED), "step": (_STEP_FIELDS, _STEP_REQUIRED),
                                    "window": (_WINDOW_FIELDS, _WINDOW_REQUIRED)}.items():
        part = defs.get(name, {})
        if (part.get("type") != "object" or part.get("additionalProperties") is not False
                or set(part.get("properties", {})) != names or not required <= set(part.get("required", []))):
            return False
    template = defs["template"]["properties"]  # ... and its steps and windows are arrays of those objects
    return (template["steps"].get("type") == "array" and template["steps"].get("items") == {"$ref": "#/$defs/step"}
            and template["preferred_windows"].get("type") == "array"
            and template["preferred_windows"].get("items") == {"$ref": "#/$defs/window"})


@dataclass
class TemplateRegistrar:
    """Collects one pack's (or one user file's) templates (see ``register_templates``)."""

    pack: str
    problems: list[Problem] = field(default_factory=list)
    #: Each registered template and where it came from: a :class:`Template`, or the checked document of
    #: one read from a file (built on first use; see :attr:`templates`).
    entries: list[tuple[Template | dict[str, Any], Registered]] = field(default_factory=list)

    @property
    def templates(self) -> list[tuple[Template, Registered]]:
        """The registered templates, built."""
        return [(t if isinstance(t, Template) else Template.from_dict(t), origin) for t, origin in self.entries]

    def load(self, source: Source) -> None:
        """Read a template file (``{"templates": [...]}``) and register its templates."""
        read = _read_document(source, self.pack, self.problems, schema_files.TEMPLATE_FILE)
        if read is None:
            return
        doc, label, digest = read
        schema_problems = _schema_problems(schema_files.TEMPLATE_FILE, doc, label, self.pack, "templates", digest)
        self.problems.extend(schema_problems)
        if schema_problems:
            return
        entries = self.entries
        for index, raw in enumerate(doc["templates"]):
            # A file's documents are ours (parsed here, never shared): they may wait to be built. Inline
            # metadata is the pack's own object, which it could change later: built now.
            if digest is not None and _plain_template(raw):
                entries.append((raw, Registered(self.pack, label, index)))
                continue
            try:
                template = Template.from_dict(raw)
            except (TypeError, ValueError) as exc:
                self.problems.append(_model_problem(exc, label, self.pack, f"$.templates[{index}]", raw))
                continue
            entries.append((template, Registered(self.pack, label, index)))
