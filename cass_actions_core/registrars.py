"""The objects a pack's ``register_actions`` / ``register_templates`` hooks receive.

Each pack gets its own registrar, so everything it registers is attributed to it and can
be discarded as a whole if the pack's hook raises.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cass_actions_core import schema_files
from cass_actions_core.models import ActionDefinition, Template
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


def _read_document(source: Source, pack: str, problems: list[Problem]) -> tuple[Any, str, str | None] | None:
    """``(document, label, digest of the file's text or None for inline metadata)``, or None (a problem is recorded)."""
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
    try:
        return parse_json(text), label, schema_files.digest(text)
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


def check_handler_signature(fn: Any) -> str | None:
    """Why ``fn`` cannot be an action handler, or ``None`` if it can.

    A handler is a coroutine function taking exactly one positional argument (the
    action context). Checking at registration removes the earlier system's second
    calling convention (keyword-spread context, F7).
    """
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
        why = schema_files.check_schema(schema)
        if why:
            self.problems.append(Problem("invalid-settings-schema", f"not a valid JSON Schema: {why}", file=label, pack=self.pack))
            return
        self.settings_schema = (schema, label)

    def load(self, source: Source) -> None:
        """Read an action metadata file (``{"actions": [...]}``) and register its definitions."""
        read = _read_document(source, self.pack, self.problems)
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
                self.problems.append(Problem("handler-signature", why, pack=self.pack, item_id=action_id))
                return fn
            entry = (fn, getattr(fn, "__qualname__", repr(fn)))
        if action_id in self.handlers:
            self.problems.append(
                Problem("duplicate-handler", "the pack registers two handlers for this action", pack=self.pack, item_id=action_id)
            )
            return fn
        self.handlers[action_id] = entry
        return fn


@dataclass
class TemplateRegistrar:
    """Collects one pack's (or one user file's) templates (see ``register_templates``)."""

    pack: str
    templates: list[tuple[Template, Registered]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def load(self, source: Source) -> None:
        """Read a template file (``{"templates": [...]}``) and register its templates."""
        read = _read_document(source, self.pack, self.problems)
        if read is None:
            return
        doc, label, digest = read
        schema_problems = _schema_problems(schema_files.TEMPLATE_FILE, doc, label, self.pack, "templates", digest)
        self.problems.extend(schema_problems)
        if schema_problems:
            return
        for index, raw in enumerate(doc["templates"]):
            try:
                template = Template.from_dict(raw)
            except (TypeError, ValueError) as exc:
                self.problems.append(_model_problem(exc, label, self.pack, f"$.templates[{index}]", raw))
                continue
            self.templates.append((template, Registered(self.pack, label, index)))
