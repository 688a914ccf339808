"""The planning context that ``gather_context`` hooks fill with facts.

Every pack's ``gather_context`` writes into the same :class:`PlanningContext`, one pack
after another in load order. Two packs may well give the same fact (the session pack's
``open_questions`` and an application's own), so values are **merged**, never silently
overwritten:

- **lists** (and tuples): concatenated in pack order; an item equal to one already
  there is dropped, so the first occurrence keeps its place;
- **mappings**: keys merged; for a key two packs both give, the later pack's value
  wins (shallow: the values are not merged further). ``mood`` is such a mapping;
- **``last_user_activity``** (see :data:`LATEST_WINS`): the latest time wins, whichever
  pack gave it, because the idle check must never think the user is away when one pack
  saw them more recently. A value that is not an aware datetime (or ISO text of one)
  loses to any that is;
- **anything else** (numbers, text, datetimes of other facts, ``None``), and two
  values of different kinds (a list and a text): the later pack's value wins.

Nothing is lost: :meth:`PlanningContext.given` returns what each pack gave, and
:attr:`PlanningContext.sources` names the packs whose values make up each fact. A pack
that really means to override what earlier packs said calls
:meth:`PlanningContext.replace` instead of :meth:`PlanningContext.set`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Facts whose value in effect is the latest time any pack gave, not the later pack's.
LATEST_WINS: frozenset[str] = frozenset({"last_user_activity"})

_NOTHING = object()


@dataclass(frozen=True, slots=True)
class _Given:
    """One pack's value for one fact, and whether it replaces what earlier packs gave."""

    value: Any
    replaces: bool


@dataclass
class PlanningContext:
    """Facts about the daemon right now, gathered from every pack's ``gather_context``.

    ``facts`` maps a key to its merged value (the module docstring gives the rules);
    ``sources`` maps it to the packs whose values make up that value, comma-separated
    in call order (one name for a fact a single pack decides). Read facts with
    :meth:`get`, and what each pack gave with :meth:`given`.
    """

    now: datetime
    daemon_id: str
    workspace: Path
    facts: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    #: The ``[packs.<pack>]`` settings of the pack whose hook is running.
    settings: dict[str, Any] = field(default_factory=dict)
    _current_pack: str = "core"
    _given: dict[str, dict[str, _Given]] = field(default_factory=dict, repr=False)

    def set(self, key: str, value: Any) -> None:
        """Give fact ``key`` (``mood``, ``growth_edges``, ``open_questions``, ``last_user_activity`` ...).

        The value is merged with what other packs gave (lists concatenated without
        duplicates, mappings merged key by key, ``last_user_activity`` the latest time,
        anything else the later pack's value). Calling it again from the same pack
        replaces that pack's own earlier value.
        """
        self._give(key, value, replaces=False)

    def replace(self, key: str, value: Any) -> None:
        """Give fact ``key`` and drop what packs called before this one gave for it.

        For a pack that means to override, not add to, another pack's fact (an
        application with its own self model). Packs called after this one still merge
        their values onto it; :meth:`given` still shows the dropped values.
        """
        self._give(key, value, replaces=True)

    def get(self, key: str, default: Any = None) -> Any:
        """The merged fact ``key`` as the planner and the idle check see it, or ``default``.

        Treat the value as read-only: change a fact with :meth:`set`.
        """
        return self.facts.get(key, default)

    def given(self, key: str) -> dict[str, Any]:
        """What each pack gave for ``key``, pack name -> value, in call order ({} if none).

        Includes values the merge did not keep (an earlier pack's text, an older
        ``last_user_activity``, values dropped by :meth:`replace`).
        """
        return {pack: given.value for pack, given in self._given.get(key, {}).items()}

    def forget(self, pack: str) -> None:
        """Drop every fact ``pack`` gave (its hook failed part-way: nothing half-given stays)."""
        for key in [k for k, by_pack in self._given.items() if pack in by_pack]:
            del self._given[key][pack]
            if self._given[key]:
                self.facts[key], packs = merge_fact(key, [(p, g.value, g.replaces) for p, g in self._given[key].items()])
                self.sources[key] = ", ".join(packs)
            else:
                del self._given[key], self.facts[key], self.sources[key]

    def _give(self, key: str, value: Any, *, replaces: bool) -> None:
        self._given.setdefault(key, {})[self._current_pack] = _Given(value, replaces)
        # Recomputed from every pack's value each time, so a pack setting a key twice,
        # or a replace, never leaves stale pieces of an earlier merge behind.
        merged, packs = merge_fact(key, [(pack, g.value, g.replaces) for pack, g in self._given[key].items()])
        self.facts[key] = merged
        self.sources[key] = ", ".join(packs)


def merge_fact(key: str, given: list[tuple[str, Any, bool]]) -> tuple[Any, list[str]]:
    """Merge the values packs gave for fact ``key``: ``(pack, value, replaces)`` in call order.

    Returns the value in effect and the packs it comes from (see the module docstring
    for the rules). ``given`` must not be empty.
    """
    start = max((i for i, (_pack, _value, replaces) in enumerate(given) if replaces), default=0)
    given = given[start:]
    if key in LATEST_WINS:
        return _latest(given)
    merged: Any = _NOTHING
    packs: list[str] = []
    for pack, value, _replaces in given:
        if isinstance(merged, list) and isinstance(value, (list, tuple)):
            for item in value:
                if item not in merged:
                    merged.append(item)
            packs.append(pack)
        elif isinstance(merged, dict) and isinstance(value, Mapping):
            merged.update(value)
            packs.append(pack)
        else:  # the first value, a scalar, or a change of kind: the later pack's value wins
            merged, packs = _fresh(value), [pack]
    return merged, packs


def _fresh(value: Any) -> Any:
    """A container of our own to merge into (never the pack's object, which it may reuse)."""
    if isinstance(value, (list, tuple)):
        return _unique(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _unique(items: Any) -> list[Any]:
    # Equality, not hashing: items are often mappings (growth edges).
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _latest(given: list[tuple[str, Any, bool]]) -> tuple[Any, list[str]]:
    best: tuple[datetime, str, Any] | None = None
    for pack, value, _replaces in given:
        at = _aware(value)
        if at is not None and (best is None or at >= best[0]):  # >=: on a tie the later pack wins
            best = (at, pack, value)
    if best is None:  # no usable time at all: the later pack's value, for the idle check to report
        pack, value, _replaces = given[-1]
        return value, [pack]
    return best[2], [best[1]]


def _aware(value: Any) -> datetime | None:
    """``value`` as an aware datetime in UTC (a datetime or ISO text), or None if it is not one."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        return None
    return value.astimezone(UTC)
