"""What an action handler receives and returns.

A handler is ``async def handler(ctx: ActionContext) -> ActionResult | dict``. It does its
work through the context: parameters, the unit's focus, the metered LLM client, its
pack's data folder and key-value area, the clock, events and artifacts. It never
reaches for globals; everything it may touch is here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cass_actions_core.clock import Clock
    from cass_actions_core.config import Config
    from cass_actions_core.llm.metered import MeteredLLM
    from cass_actions_core.store import Store


@dataclass(frozen=True)
class CoreServices:
    """Store and config access, given only to the core's own (``system.*``) actions."""

    store: Store
    config: Config


class KeyValue(Protocol):
    """A pack's private key-value area in the store (JSON values)."""

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key``."""

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    def items(self) -> dict[str, Any]:
        """Every key and value of the area."""


class HistoryView(Protocol):
    """Read-only queries over the daemon's work summaries (what happened and why)."""

    def summaries(self, *, local_date: date | None = None, category: str | None = None,
                  text: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Summaries as mappings (newest first), filtered as asked."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """Something an action produced that a person may want to open."""

    kind: str
    title: str
    path: str | None = None
    ref: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"kind": self.kind, "title": self.title, "path": self.path, "ref": self.ref}

    def check(self) -> None:
        """Raise :class:`InvalidResult` unless kind and title are strings and path and ref strings or None."""
        for name in ("kind", "title"):
            if not isinstance(getattr(self, name), str):
                raise InvalidResult(f"artifact {name} must be a string, not {type(getattr(self, name)).__name__}")
        for name in ("path", "ref"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise InvalidResult(f"artifact {name} must be a string or null, not {type(getattr(self, name)).__name__}")


#: The most a handler's result may hold, as UTF-8 JSON: a work summary is for a person to read, and
#: the result is stored with the run, the unit's summary and an event.
MAX_RESULT_BYTES = 1_000_000


@dataclass
class ActionResult:
    """The outcome of one action run.

    ``summary`` is one or two sentences for the work summary; ``data`` holds structured
    output; ``insights`` and ``questions`` feed the unit's summary. ``cost_usd`` is filled
    in by the executor from the metered LLM client (a handler does not report its own
    cost, so cost bookkeeping has one source).
    """

    success: bool = True
    summary: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    insights: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    error: str | None = None
    cost_usd: float = 0.0

    @classmethod
    def from_handler(cls, value: Any) -> ActionResult:
        """Normalise a handler's return value (an ActionResult, a mapping or ``None``)."""
        if isinstance(value, ActionResult):
            return value
        if value is None:
            return cls(success=True)
        if isinstance(value, Mapping):
            known = {k: value[k] for k in ("success", "summary", "data", "insights", "questions", "error") if k in value}
            try:
                arts = [a if isinstance(a, Artifact) else Artifact(**a) for a in value.get("artifacts", [])]
            except TypeError as exc:
                raise InvalidResult(f"artifacts: {exc}") from None
            return cls(**known, artifacts=arts)
        raise InvalidResult(f"a handler must return an ActionResult, a mapping or None, not {type(value).__name__}")

    def check(self) -> None:
        """Raise :class:`InvalidResult` unless every field has its type and ``data`` is plain JSON."""
        import json

        if not isinstance(self.success, bool):
            raise InvalidResult(f"success must be true or false, not {self.success!r}")
        for name in ("summary",):
            if not isinstance(getattr(self, name), str):
                raise InvalidResult(f"{name} must be a string, not {type(getattr(self, name)).__name__}")
        if self.error is not None and not isinstance(self.error, str):
            raise InvalidResult(f"error must be a string, not {type(self.error).__name__}")
        for name in ("insights", "questions"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidResult(f"{name} must be a list of strings, not {value!r}"[:200])
        if not isinstance(self.data, dict):
            raise InvalidResult(f"data must be a mapping, not {type(self.data).__name__}")
        if not all(isinstance(a, Artifact) for a in self.artifacts):
            raise InvalidResult("artifacts must be Artifact objects or mappings of kind, title, path, ref")
        for a in self.artifacts:
            a.check()
        try:  # one encoding of the whole result proves it storable and gives its size
            size = len(json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False).encode("utf-8"))
        except UnicodeEncodeError as exc:  # a lone surrogate, say, from bytes decoded with surrogateescape
            raise InvalidResult(f"the result holds text that is not valid Unicode ({exc.reason}: "
                                f"{exc.object[max(0, exc.start - 20):exc.end + 20]!r})") from None
        except (TypeError, ValueError, RecursionError) as whole:
            # The other fields' types are checked above, so the fault is nearly always in data: say what it is.
            try:
                json.dumps(self.data, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise InvalidResult(f"data is not plain JSON ({exc})") from None
            except RecursionError:
                raise InvalidResult("data is nested too deeply to store") from None
            raise InvalidResult(f"the result is not plain JSON ({whole})") from None
        if size > MAX_RESULT_BYTES:
            # It is kept in the run, the summary and its event: a few copies of a huge string would
            # fill the disk and stall the loop. Big output belongs in a file the result points to.
            raise InvalidResult(f"the result is {size:,} bytes of JSON, more than the {MAX_RESULT_BYTES:,} a result may "
                                "hold; write large output to a file (ctx.write_text) and return an artifact naming it")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "success": self.success, "summary": self.summary, "data": self.data,
            "artifacts": [a.to_dict() for a in self.artifacts], "insights": self.insights,
            "questions": self.questions, "error": self.error, "cost_usd": self.cost_usd,
        }


class InvalidResult(ValueError):
    """A handler returned something that cannot be stored as a result."""


class ActionFailed(Exception):
    """Raise from a handler to fail the action with a clear message (no traceback is stored)."""


@dataclass
class ActionContext:
    """Everything a handler may use. Built by the executor for each run.

    - ``params``: validated against the action's params schema.
    - ``focus`` / ``motivation``: why the unit was chosen (from the planner).
    - ``llm``: the metered client bound to this run (cost cap, call cap, budget).
    - ``data_dir``: the pack's own folder in the workspace, for human-readable artifacts.
    - ``workspace``: the whole workspace (read other packs' published files from here).
    - ``kv``: the pack's key-value area in the store.
    - ``history``: read-only queries over work summaries.
    - ``settings``: the ``[packs.<pack>]`` table from the config.
    - ``core``: store and config access for the core's own actions; ``None`` for packs
      (a pack reaches the store only through ``kv`` and ``history``).
    """

    action_id: str
    pack: str
    params: dict[str, Any]
    focus: str | None
    motivation: str | None
    unit_id: str | None
    run_key: str
    daemon_id: str
    phase: str | None
    local_date: date
    clock: Clock
    llm: MeteredLLM
    workspace: Path
    data_dir: Path
    kv: KeyValue
    history: HistoryView
    settings: dict[str, Any]
    emit: Callable[[str, dict[str, Any]], None]
    logger: logging.Logger
    core: CoreServices | None = None
    artifacts: list[Artifact] = field(default_factory=list)

    def now(self) -> datetime:
        """The daemon's local time (aware)."""
        return self.clock.now()

    def add_artifact(self, kind: str, title: str, path: Path | str | None = None, ref: str | None = None) -> Artifact:
        """Record an artifact; a path inside the workspace is stored relative to it."""
        if path is not None:
            p = Path(path)
            try:
                path = str(p.resolve().relative_to(self.workspace.resolve()))
            except ValueError:
                path = str(p)
        artifact = Artifact(kind, title, path, ref)
        artifact.check()
        self.artifacts.append(artifact)
        return artifact

    def write_text(self, relative: str, text: str) -> Path:
        """Write ``text`` to ``data_dir/relative`` (folders created), atomically; return the path."""
        target = (self.data_dir / relative).resolve()
        if self.data_dir.resolve() not in target.parents:
            raise ActionFailed(f"refusing to write outside the pack's data folder: {relative!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        return target
