"""Finding and loading action packs: our own loop over the ``cass_actions`` entry points.

pluggy's ``load_setuptools_entrypoints`` imports everything and lets one broken plugin
take the host down. This loop instead

1. enumerates entry points without importing anything,
2. drops duplicates (the same distribution seen twice on the path) and sorts by
   distribution and entry-point name, so the load order is deterministic,
3. decides from names alone which packs are skipped (``CASS_ACTIONS_LOAD_PLUGINS``,
   ``CASS_ACTIONS_DISABLE_PLUGINS`` and the config's ``plugins.load`` /
   ``plugins.disable``): a skipped pack is never imported,
4. imports and registers each remaining pack inside its own ``try``, recording the
   distribution, version, entry point and a one-line error for any that fail.

The core's built-in plugin is always registered first, under the name ``core``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import pluggy

from cass_actions_core import ENTRY_POINT_GROUP, PROJECT_NAME, hookspecs
from cass_actions_core.problems import Problem

Status = Literal["loaded", "error", "disabled", "not-selected", "missing"]

BUILTIN_NAME = "core"


def normalize(name: str) -> str:
    """PEP 503 normalisation, so ``Cass_Actions.Journal`` matches ``cass-actions-journal``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class PluginRecord:
    """What happened to one pack: where it came from, whether it loaded, what it gave."""

    name: str
    distribution: str | None
    version: str | None
    entry_point: str | None
    status: Status
    error: str | None = None
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    actions: int = 0
    templates: int = 0
    #: Catalogue problems attributed to this pack (bad metadata, missing handlers ...).
    problems: int = 0

    @property
    def ok(self) -> bool:
        """Loaded without error."""
        return self.status == "loaded"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (for ``cass-actions plugins --json``)."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "status": self.status,
            "error": self.error,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "actions": self.actions,
            "templates": self.templates,
            "problems": self.problems,
        }


@dataclass(frozen=True)
class FoundEntryPoint:
    """An entry point found on the path, before anything is imported."""

    entry_point: metadata.EntryPoint
    distribution: str | None
    version: str | None

    @property
    def name(self) -> str:
        """The entry-point name (the pack's name)."""
        return self.entry_point.name


def find_entry_points(group: str = ENTRY_POINT_GROUP) -> list[FoundEntryPoint]:
    """Enumerate the group's entry points without importing them.

    Each (distribution, entry point) appears once, even when the distribution is on the
    path twice (a ``lib64`` symlink, a user and a system site); the result is sorted by
    normalised distribution name, then entry-point name.
    """
    seen: set[tuple[str, str]] = set()
    unique: list[FoundEntryPoint] = []
    # importlib.metadata already keeps the first of same-named distributions; the key
    # check below also covers entry points whose distribution it cannot name.
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        meta = dist.metadata if dist is not None else None  # parsed once: it holds both
        dist_name = meta["Name"] if meta is not None else None
        version = meta["Version"] if meta is not None else None
        found = FoundEntryPoint(ep, dist_name, version)
        key = (normalize(dist_name or ""), ep.name)
        if key in seen:
            continue
        seen.add(key)
        unique.append(found)
    unique.sort(key=lambda f: (normalize(f.distribution or ""), f.name))
    return unique


def _matches(found: FoundEntryPoint, names: Iterable[str]) -> bool:
    wanted = {normalize(n) for n in names}
    return normalize(found.name) in wanted or (found.distribution is not None and normalize(found.distribution) in wanted)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with the cass-actions hookspecs and nothing registered."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _register(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    pm.register(plugin, name=name)
    try:
        # Reject hook implementations whose names match no hookspec (typos) now,
        # naming the pack, instead of silently never calling them.
        pm.check_pending()
    except pluggy.PluginValidationError:
        pm.unregister(name=name)
        raise


def hooks_of(pm: pluggy.PluginManager, name: str) -> list[str]:
    """Names of the hooks the registered plugin ``name`` implements."""
    plugin = pm.get_plugin(name)
    callers = pm.get_hookcallers(plugin) if plugin is not None else None
    return sorted(c.name for c in callers or [])


def load_plugins(
    pm: pluggy.PluginManager,
    *,
    load: Sequence[str] | None = None,
    disable: Sequence[str] = (),
    extra: Sequence[tuple[str, Any]] = (),
    entry_points: bool = True,
    discovered: Sequence[FoundEntryPoint] | None = None,
) -> list[PluginRecord]:
    """Register the built-in plugin, the selected entry-point packs, then ``extra`` plugins.

    ``load`` (``None``: every pack; ``[]``: none but the built-ins) and ``disable`` name
    packs by entry-point or distribution name. ``extra`` is a list of ``(name, plugin)``
    pairs registered by hand (tests, embedding applications). ``entry_points=False``
    skips discovery altogether; ``discovered`` gives what :func:`find_entry_points` returned
    (default: discover now). Never raises for a broken pack.
    """
    from cass_actions_core.builtin import plugin as builtin_plugin

    records: list[PluginRecord] = []
    _register(pm, builtin_plugin, BUILTIN_NAME)
    from cass_actions_core import __version__

    records.append(
        PluginRecord(BUILTIN_NAME, "cass-actions", __version__, "cass_actions_core.builtin.plugin", "loaded",
                     builtin=True, hooks=hooks_of(pm, BUILTIN_NAME))
    )

    if entry_points:
        for found in find_entry_points() if discovered is None else discovered:
            record = PluginRecord(found.name, found.distribution, found.version, found.entry_point.value, "loaded")
            records.append(record)
            if disable and _matches(found, disable):
                record.status = "disabled"
                continue
            if load is not None and not _matches(found, load):
                record.status = "not-selected"
                continue
            if pm.has_plugin(found.name):
                record.status, record.error = "error", f"another pack already uses the name {found.name!r}"
                continue
            try:
                obj = found.entry_point.load()
                _register(pm, obj, found.name)
            except (Exception, SystemExit) as exc:  # a broken pack must never take the CLI down
                record.status, record.error = "error", _one_line(exc)
                continue
            record.hooks = hooks_of(pm, found.name)

    if entry_points and load:
        # A name in the load list that no installed pack answers to is a typo or a missing
        # install: say so (a load error: `validate --strict` and the daemon refuse it).
        known = {normalize(r.name) for r in records} | {normalize(r.distribution) for r in records if r.distribution}
        known |= {normalize(name) for name, _ in extra}
        for wanted in load:
            if normalize(wanted) not in known:
                import difflib

                hint = difflib.get_close_matches(wanted, sorted({r.name for r in records if not r.builtin}), n=1)
                records.append(PluginRecord(
                    wanted, None, None, None, "missing",
                    error="the load list (CASS_ACTIONS_LOAD_PLUGINS or [plugins] load) names it, but no "
                          "installed pack has this entry-point or distribution name"
                          + (f"; did you mean {hint[0]!r}?" if hint else ""),
                ))

    for name, obj in extra:
        record = PluginRecord(name, None, None, None, "loaded")
        records.append(record)
        try:
            _register(pm, obj, name)
        except (Exception, SystemExit) as exc:
            record.status, record.error = "error", _one_line(exc)
            continue
        record.hooks = hooks_of(pm, name)
    return records


def call_per_plugin(pm: pluggy.PluginManager, hook_name: str, make_arg: Any) -> list[tuple[str, Any, BaseException | None]]:
    """Call ``hook_name`` on each plugin separately, in registration order.

    ``make_arg(plugin_name)`` returns the keyword arguments for that plugin's call.
    Returns ``(plugin_name, kwargs, exception_or_None)`` for each implementation, so the
    caller can attribute results and discard a failing plugin's contributions.
    """
    out = []
    caller = getattr(pm.hook, hook_name)
    # get_hookimpls() lists implementations in call order reversed (LIFO); registration
    # order is the deterministic one we sorted for.
    for impl in caller.get_hookimpls():
        kwargs = make_arg(impl.plugin_name)
        try:
            impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            out.append((impl.plugin_name, kwargs, None))
        except Exception as exc:
            out.append((impl.plugin_name, kwargs, exc))
    return out


def pack_load_problems(records: Iterable[PluginRecord]) -> list[Problem]:
    """One problem per pack that failed to load (or that the load list names but is not installed)."""
    return [
        Problem("pack-load", f"pack could not be loaded: {p.error}", pack=p.name,
                file=None if p.status == "missing" else
                f"{p.distribution or '?'} {p.version or ''} ({p.entry_point or 'registered by hand'})".replace("  ", " "))
        for p in records
    ]


def one_line(exc: BaseException) -> str:
    """An exception as ``Type: message`` on one line."""
    return _one_line(exc)
