"""pytest fixtures for pack authors (loaded automatically through the ``pytest11`` entry point).

Fixtures:

- ``virtual_clock`` — ``virtual_clock(tz="UTC", start=None)`` returns a
  :class:`~cass_actions_core.clock.VirtualClock` (default start: Monday 2026-01-05 09:00).
- ``scripted_llm`` — ``scripted_llm(script, usage=None)`` returns a plugin registering an
  LLM provider named ``"scripted"`` that answers from ``script`` and reports token usage;
  pass it to ``cass_runtime(plugins=[...], provider="scripted")``.
- ``fake_anthropic`` — a running :class:`~cass_actions_core.testing.fake_anthropic.FakeAnthropic`
  server on 127.0.0.1, with ``ANTHROPIC_API_KEY`` set to a dummy for the test.
- ``cass_runtime`` — ``cass_runtime(load=["journal"], config={...}, provider="offline", ...)``
  builds a throwaway :class:`~cass_actions_core.runtime.Runtime` in a temporary data
  folder from the *installed* packs you name (entry points, as users get them) plus any
  ``plugins`` registered by hand; closed after the test.
- ``run_action`` — ``run_action(runtime, "journal.generate_daily", params)`` runs one
  action through the executor and returns an :class:`ActionRun` (unit, run row, result,
  summary record).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core import hookimpl

DEFAULT_START = datetime(2026, 1, 5, 9, 0)


@dataclass
class ActionRun:
    """The outcome of :func:`run_action`: everything stored about one run."""

    unit: Any
    run: Any
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        """The action completed."""
        return self.unit.status == "completed"

    @property
    def result(self) -> dict[str, Any]:
        """The stored result (summary, data, artifacts, insights, questions, llm)."""
        return dict(self.run.result or {})

    @property
    def cost_usd(self) -> float:
        """What the run cost, from the metered LLM client."""
        return float(self.run.cost_usd)

    @property
    def error(self) -> str | None:
        """The run's error, if it failed."""
        return self.run.error


class ScriptedLLMPlugin:
    """Registers a ``"scripted"`` LLM provider that answers from a script."""

    def __init__(self, script: Any, usage: Any = None, cycle: bool = True) -> None:
        self.script, self.usage, self.cycle = script, usage, cycle
        self.providers: list[Any] = []

    @hookimpl
    def register_llm_providers(self, register: Any) -> None:
        """Register the ``"scripted"`` provider; each provider built is kept in :attr:`providers`."""
        from cass_actions_core.llm.scripted import ScriptedProvider

        def factory(settings: Any) -> Any:
            provider = ScriptedProvider(self.script, usage=self.usage, cycle=self.cycle, name="scripted", settings=settings)
            self.providers.append(provider)
            return provider

        register("scripted", factory)


@pytest.fixture
def virtual_clock() -> Callable[..., Any]:
    """Factory: ``virtual_clock(tz="UTC", start=None)`` -> a VirtualClock."""
    from cass_actions_core.clock import VirtualClock

    def make(tz: str = "UTC", start: datetime | None = None) -> VirtualClock:
        zone = ZoneInfo(tz)
        begin = start if start is not None else DEFAULT_START
        if begin.tzinfo is None:
            begin = begin.replace(tzinfo=zone)
        return VirtualClock(zone, begin)

    return make


@pytest.fixture
def scripted_llm() -> Callable[..., ScriptedLLMPlugin]:
    """Factory: ``scripted_llm(script, usage=None)`` -> a plugin registering provider ``"scripted"``."""
    return ScriptedLLMPlugin


@pytest.fixture
def fake_anthropic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fake Messages API on 127.0.0.1 (the real SDK talks to it); a dummy API key is set."""
    from cass_actions_core.testing.fake_anthropic import FakeAnthropic

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def cass_runtime(tmp_path: Path, virtual_clock: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Factory for throwaway runtimes; every runtime it built is closed after the test.

    ``cass_runtime(load=None, plugins=(), config=None, provider="offline", clock=None,
    data_dir=None, anthropic=None)``: ``load`` names installed packs to load (``None``:
    none); ``config`` is a mapping merged into the defaults (its ``timezone`` sets the
    clock's zone); ``anthropic`` is a FakeAnthropic server to send LLM calls to.
    """
    from cass_actions_core.config import Config
    from cass_actions_core.runtime import Runtime

    built: list[Runtime] = []
    counter = iter(range(10_000))

    def make(load: list[str] | None = None, *, plugins: Any = (), config: dict[str, Any] | None = None,
             provider: str | None = "offline", clock: Any = None, data_dir: Path | None = None,
             anthropic: Any = None) -> Runtime:
        doc: dict[str, Any] = {"timezone": "UTC", **(config or {})}
        doc.setdefault("plugins", {})
        doc["plugins"] = {**doc["plugins"], "load": list(load or [])}
        if anthropic is not None:
            doc["llm"] = {**doc.get("llm", {}), "provider": "anthropic", "base_url": anthropic.url, "max_retries": 0}
            provider = None
        cfg = Config.from_dict(doc)
        runtime = Runtime(cfg, data_dir=data_dir or tmp_path / f"runtime-{next(counter)}",
                          clock=clock or virtual_clock(cfg.timezone), plugins=list(plugins), provider=provider)
        built.append(runtime)
        return runtime

    yield make
    for runtime in built:
        runtime.close()


def _run_action(runtime: Any, action_id: str, params: dict[str, Any] | None = None, *, focus: str | None = None) -> ActionRun:
    unit = asyncio.run(runtime.run_action(action_id, params or {}, focus=focus))
    (run,) = runtime.store.action_runs_for_unit(unit.id)
    summary = runtime.store.get_summary(unit.id)
    return ActionRun(unit=unit, run=run, summary=summary.data if summary else {})


@pytest.fixture
def run_action() -> Callable[..., ActionRun]:
    """``run_action(runtime, action_id, params=None, focus=None)`` -> :class:`ActionRun`."""
    return _run_action
