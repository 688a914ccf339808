"""Problems found while loading packs or checking the catalogue, and the error that carries them."""

from __future__ import annotations

import gc
import json
from dataclasses import asdict, dataclass, field
from itertools import compress
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the catalogue, a file or a pack.

    ``code`` is a stable machine-readable kind (``unknown-action``, ``schema``,
    ``duplicate-action`` ...); ``message`` is the sentence a person reads. ``file``,
    ``item_id`` (the action or template id) and ``path`` (a JSON path such as
    ``$.templates[0].steps[1].action``) locate it; ``hint`` says what to do, for
    example the closest registered action id.
    """

    code: str
    message: str
    file: str | None = None
    pack: str | None = None
    item_id: str | None = None
    path: str | None = None
    hint: str | None = None

    def render(self) -> str:
        """One paragraph: where, then what, then the hint."""
        where = [p for p in (self.file, self.item_id and f"id {self.item_id!r}", self.path) if p]
        head = ": ".join(where)
        text = f"{head}: {self.message}" if head else self.message
        if self.pack and (self.file is None or self.pack not in self.file):
            text += f" [pack {self.pack}]"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The problem as a JSON-ready mapping."""
        return asdict(self)


@dataclass
class CatalogueError(Exception):
    """Raised when the catalogue (or a file given to it) has problems; lists them all."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"the action catalogue has {len(self.problems)} problem(s):"]
        lines += [f"  - {p.render()}" for p in self.problems]
        return "\n".join(lines)


class UserError(Exception):
    """A mistake in the user's input (config, arguments, data files); shown without a traceback."""


class UnknownItem(UserError):
    """An id that names nothing (a unit, a template ...): the HTTP API answers 404."""


class WrongState(UserError):
    """The item exists but the action does not apply to it now (cancelling a completed unit ...): HTTP 409."""


def read_user_file(path: Path, what: str) -> str:
    """The text of a file the user named, or a :class:`UserError` naming it and ``what`` it is."""
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the {what}: {exc}.") from None


#: Deepest nesting accepted in any JSON file the framework reads (its formats need a handful).
MAX_JSON_DEPTH = 64


class JSONTextError(ValueError):
    """Text that is not usable JSON; the message is one sentence saying where or why."""


def parse_json(text: str, *, depth_known_ok: bool = False) -> Any:
    """``json.loads`` that refuses, with :class:`JSONTextError`, invalid text and nesting deeper than
    :data:`MAX_JSON_DEPTH` (which would otherwise end in a ``RecursionError`` somewhere later).
    ``depth_known_ok``: this very text passed the depth check before (skip it)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JSONTextError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise JSONTextError(f"nested too deeply (more than {MAX_JSON_DEPTH} levels)") from None
    if depth_known_ok:
        return doc
    # Iterative, level by level: the check itself must not recurse. Each level is found in C, not
    # container by container: gc.get_referents gives the values of the level's dicts and lists (and
    # dict keys: strings), of which the dicts and lists make the next level. (A small document
    # costs microseconds; a large one far less than parsing it.)
    level: list[Any] = [doc] if type(doc) is dict or type(doc) is list else []
    for _depth in range(MAX_JSON_DEPTH):
        if not level:
            return doc
        children = gc.get_referents(*level)
        level = list(compress(children, map(_CONTAINERS.__contains__, map(type, children))))
    if not level:
        return doc
    raise JSONTextError(f"nested too deeply (more than {MAX_JSON_DEPTH} levels)")


_CONTAINERS = frozenset({dict, list})
