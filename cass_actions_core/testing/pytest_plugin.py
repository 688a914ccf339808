"""pytest fixtures for pack authors (loaded automatically through the ``pytest11`` entry point).

Install with ``pip install cass-actions[testing]``; ``docs/testing.md`` documents every
fixture with a complete example. In short:

- ``virtual_clock`` — ``virtual_clock(tz="UTC", start=None)`` returns a
  :class:`~cass_actions_core.clock.VirtualClock` (default start: Monday 2026-01-05 09:00).
- ``scripted_llm`` — ``scripted_llm(script, usage=None, cycle=True)`` returns a plugin
  registering an LLM provider named ``"scripted"`` that answers from ``script`` and
  reports token usage; pass it as a ``(name, plugin)`` pair:
  ``cass_runtime(plugins=[("llm", llm)], provider="scripted")``.
- ``fake_anthropic`` — a running :class:`~cass_actions_core.testing.fake_anthropic.FakeAnthropic`
  server on 127.0.0.1, with ``ANTHROPIC_API_KEY`` set to a dummy for the test.
- ``cass_runtime`` — ``cass_runtime(load=["journal"], config={...}, provider="offline", ...)``
  builds a throwaway :class:`~cass_actions_core.runtime.Runtime` in a temporary data
  folder from the *installed* packs you name (entry points, as users get them) plus any
  ``plugins`` registered by hand; closed after the test.
- ``run_action`` — ``run_action(runtime, "journal.generate_daily", params)`` runs one
  action through the executor and returns an :class:`ActionRun`: the unit's status
  (``completed``, ``failed``, or parked as ``awaiting_approval`` / ``budget_blocked``),
  its reason, the run row, result, cost, summary record, approval and budget refusal.
  ``run_action.approve(runtime, outcome)`` / ``run_action.reject(...)`` answer a parked
  approval and run the unit on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core import hookimpl

if TYPE_CHECKING:
    from cass_actions_core.llm.base import LLMRequest, Usage
    from cass_actions_core.llm.scripted import Script, ScriptedProvider
    from cass_actions_core.runtime import Runtime
    from cass_actions_core.store import ActionRunRow, ApprovalRow, EventRow, UnitRow

__all__ = ["ActionRun", "ActionRunner", "BudgetBlock", "DEFAULT_START", "ScriptedLLMPlugin", "PARKED_STATUSES"]

#: Where ``virtual_clock`` starts by default: Monday 2026-01-05 09:00 (the morning phase).
DEFAULT_START = datetime(2026, 1, 5, 9, 0)

#: Unit statuses in which the executor leaves a unit waiting instead of finishing it.
PARKED_STATUSES: tuple[str, ...] = ("awaiting_approval", "budget_blocked")


@dataclass(frozen=True)
class BudgetBlock:
    """Why the ledger refused the money for a step (from the stored ``budget.blocked`` event).

    Attributes:
        category: the budget category that had too little left.
        needed_usd: what the step asked to reserve.
        available_usd: what the category could still give.
        reason: the ledger's sentence, as shown in ``cass-actions queue``.
        action_id: the action whose step was refused.
    """

    category: str
    needed_usd: float
    available_usd: float
    reason: str
    action_id: str


@dataclass
class ActionRun:
    """The outcome of :func:`run_action`: everything the store holds about one one-step unit.

    Attributes:
        unit: the unit row (``status``, ``reason``, ``local_date``, ``phase``, ``data``...).
        run: the step's action-run row, or ``None`` when the step never started (the unit
            parked before its handler ran).
        summary: the unit's work-summary document (written for parked units too; ``{}``
            if none was stored).
        approval: the approval row of the step when the action needs a human yes, else ``None``.
        budget_block: the ledger's refusal when the unit parked for money, else ``None``.
        events: every stored event about the unit, oldest first.
    """

    unit: Any
    run: Any
    summary: dict[str, Any]
    approval: Any = None
    budget_block: BudgetBlock | None = None
    events: list[Any] = field(default_factory=list)

    @property
    def status(self) -> str:
        """The unit's status: ``completed``, ``failed``, ``awaiting_approval``, ``budget_blocked``,
        or ``queued`` (a temporary failure waits for another attempt)."""
        return str(self.unit.status)

    @property
    def reason(self) -> str | None:
        """Why the unit is in its status, as stored (``None`` for a completed unit)."""
        return self.unit.reason

    @property
    def ok(self) -> bool:
        """The action completed."""
        return self.unit.status == "completed"

    @property
    def parked(self) -> bool:
        """The unit waits (for an approval or for money) instead of having finished."""
        return self.unit.status in PARKED_STATUSES

    @property
    def awaiting_approval(self) -> bool:
        """The unit waits for a human yes (see :attr:`approval`)."""
        return self.unit.status == "awaiting_approval"

    @property
    def budget_blocked(self) -> bool:
        """The unit waits for its budget category to have money again (see :attr:`budget_block`)."""
        return self.unit.status == "budget_blocked"

    @property
    def result(self) -> dict[str, Any]:
        """The stored result (summary, data, artifacts, insights, questions, llm); ``{}`` when no step finished."""
        return dict(self.run.result or {}) if self.run is not None else {}

    @property
    def cost_usd(self) -> float:
        """What the run cost, from the metered LLM client (0.0 when the handler never ran: nothing was spent)."""
        return float(self.run.cost_usd) if self.run is not None else 0.0

    @property
    def error(self) -> str | None:
        """The run's error if it failed; for a unit that failed without a run, the unit's reason."""
        if self.run is not None and self.run.error:
            return str(self.run.error)
        return self.unit.reason if self.unit.status == "failed" else None


def _collect(runtime: Runtime, unit: UnitRow) -> ActionRun:
    """Read back everything stored about ``unit`` (nothing here is computed: it is what the executor wrote)."""
    store = runtime.store
    runs: list[ActionRunRow] = store.action_runs_for_unit(unit.id)
    summary = store.get_summary(unit.id)
    step = min(unit.next_step, len(unit.steps) - 1)
    approval: ApprovalRow | None = store.approval_for(unit.id, step)
    events: list[EventRow] = [e for e in store.list_events() if e.unit_id == unit.id]
    block = None
    if unit.status == "budget_blocked":
        # The unit row keeps only the reason sentence; the event has the figures.
        last = next((e for e in reversed(events) if e.type == "budget.blocked"), None)
        if last is not None:
            data = last.data
            block = BudgetBlock(category=str(data["category"]), needed_usd=float(data["needed_usd"]),
                                available_usd=float(data["available_usd"]), reason=str(data["reason"]),
                                action_id=str(data.get("action_id", "")))
    # The last run is the current attempt (earlier ones exist only after a retry).
    return ActionRun(unit=unit, run=runs[-1] if runs else None, summary=summary.data if summary else {},
                     approval=approval, budget_block=block, events=events)


async def _run_queued_unit(runtime: Runtime, unit_id: str) -> UnitRow:
    """Run one re-queued unit through the executor, holding the lease as ``Runtime.run_action`` does."""
    runtime.acquire_lease()
    try:
        outcome = await runtime.executor.run_unit(unit_id)
        await runtime.bus.drain()
        return outcome.unit
    finally:
        await runtime.providers.aclose()  # the SDK client must not outlive this event loop
        runtime.release_lease()


class ActionRunner:
    """What the ``run_action`` fixture returns: call it to run an action; answer its approval with
    :meth:`approve` / :meth:`reject`."""

    def __call__(self, runtime: Runtime, action_id: str, params: dict[str, Any] | None = None, *,
                 focus: str | None = None) -> ActionRun:
        """Run ``action_id`` with ``params`` now as a one-step unit, through the executor.

        Returns the :class:`ActionRun` whatever happened: completed, failed, or parked
        (``awaiting_approval``, ``budget_blocked``). Raises ``KeyError`` for an unknown
        action and :class:`~cass_actions_core.problems.UserError` for params its schema
        refuses, as ``Runtime.run_action`` does.
        """
        unit = asyncio.run(runtime.run_action(action_id, params or {}, focus=focus))
        return _collect(runtime, unit)

    def approve(self, runtime: Runtime, outcome: ActionRun, *, by: str = "test", note: str | None = None) -> ActionRun:
        """Approve the pending approval ``outcome`` waits for, run the unit on and return its new outcome."""
        return self._answer(runtime, outcome, True, by, note)

    def reject(self, runtime: Runtime, outcome: ActionRun, *, by: str = "test", note: str | None = None) -> ActionRun:
        """Reject the pending approval ``outcome`` waits for; the unit fails with the reason (returned)."""
        return self._answer(runtime, outcome, False, by, note)

    def _answer(self, runtime: Runtime, outcome: ActionRun, approved: bool, by: str, note: str | None) -> ActionRun:
        current = runtime.store.get_unit(outcome.unit.id)
        if current is None or current.status != "awaiting_approval" or outcome.approval is None:
            # A mistake in the test, not in the pack: one clear line, no traceback.
            status = current.status if current is not None else "missing"
            pytest.fail(f"run_action.{'approve' if approved else 'reject'}: unit {outcome.unit.id} is not awaiting "
                        f"approval (status {status!r}: {current.reason if current else ''})", pytrace=False)
        if not approved:
            # A rejection ends the unit at once (failed, with the reason), as it does for the daemon.
            runtime.reject(outcome.approval.id, by=by, note=note)
            return _collect(runtime, runtime.store.get_unit(outcome.unit.id))
        runtime.approve(outcome.approval.id, by=by, note=note)
        # An approval re-queues the unit (Runtime._handle_approvals); run it on as the scheduler would.
        unit = asyncio.run(_run_queued_unit(runtime, outcome.unit.id))
        return _collect(runtime, unit)


class ScriptedLLMPlugin:
    """Registers a ``"scripted"`` LLM provider that answers from a script.

    Args:
        script: replies in order (text, a JSON-able mapping, a pydantic model, a
            :class:`~cass_actions_core.llm.scripted.ScriptedReply` or an
            :class:`~cass_actions_core.llm.errors.LLMError` to raise), or
            ``fn(request) -> reply``.
        usage: the :class:`~cass_actions_core.llm.base.Usage` every reply reports (``None``:
            estimated from characters, about 4 per token).
        cycle: start the list over when it runs out (``False``: a further call fails as
            ``script_exhausted``).
    """

    def __init__(self, script: Script, usage: Usage | None = None, cycle: bool = True) -> None:
        self.script, self.usage, self.cycle = script, usage, cycle
        #: Every provider the runtime built from this plugin, in order.
        self.providers: list[ScriptedProvider] = []

    @property
    def requests(self) -> list[LLMRequest]:
        """Every request the scripted providers received, in order (prompts, system, model, max_tokens)."""
        return [request for provider in self.providers for request in provider.requests]

    @hookimpl
    def register_llm_providers(self, register: Any) -> None:
        """Register the ``"scripted"`` provider; each provider built is kept in :attr:`providers`."""
        from cass_actions_core.llm.scripted import ScriptedProvider

        def factory(settings: Any) -> ScriptedProvider:
            provider = ScriptedProvider(self.script, usage=self.usage, cycle=self.cycle, name="scripted", settings=settings)
            self.providers.append(provider)
            return provider

        register("scripted", factory)


@pytest.fixture
def virtual_clock() -> Callable[..., Any]:
    """Factory: ``virtual_clock(tz="UTC", start=None)`` -> a VirtualClock (default start Monday 2026-01-05 09:00)."""
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
    """Factory: ``scripted_llm(script, usage=None, cycle=True)`` -> a plugin registering provider ``"scripted"``.

    Register it as a ``(name, plugin)`` pair and select the provider::

        from cass_actions_core.llm.base import Usage

        def test_greet_with_scripted_replies(cass_runtime, run_action, scripted_llm):
            llm = scripted_llm(["Good morning, world!"], usage=Usage(input_tokens=100, output_tokens=20))
            runtime = cass_runtime(load=["hello"], plugins=[("llm", llm)], provider="scripted")
            outcome = run_action(runtime, "hello.greet", {"name": "world"})
            assert outcome.ok, outcome.error
            assert outcome.cost_usd > 0
            assert "world" in llm.requests[0].prompt_text()
    """
    return ScriptedLLMPlugin


@pytest.fixture
def fake_anthropic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fake Messages API on 127.0.0.1 (the real SDK talks to it); a dummy API key is set."""
    from cass_actions_core.testing.fake_anthropic import FakeAnthropic

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic() as server:
        yield server


def _checked_plugins(plugins: Sequence[Any]) -> list[tuple[str, Any]]:
    """``plugins`` as ``(name, plugin)`` pairs; anything else fails the test with one clear line."""
    pairs: list[tuple[str, Any]] = []
    for i, entry in enumerate(plugins):
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)):
            # Without this check a bare plugin fails deep inside the loader with "cannot unpack".
            pytest.fail(f"cass_runtime(plugins=...): entry {i} is {type(entry).__name__}, not a (name, plugin) pair; "
                        f"write plugins=[(\"my-name\", plugin)]", pytrace=False)
        pairs.append((entry[0], entry[1]))
    return pairs


@pytest.fixture
def cass_runtime(tmp_path: Path, virtual_clock: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Factory for throwaway runtimes; every runtime it built is closed after the test.

    ``cass_runtime(load=None, plugins=(), config=None, provider="offline", clock=None,
    data_dir=None, anthropic=None)``: ``load`` names installed packs to load (``None``:
    none); ``plugins`` are ``(name, plugin)`` pairs registered by hand; ``config`` is a
    mapping merged into the defaults (its ``timezone`` sets the clock's zone);
    ``anthropic`` is a FakeAnthropic server to send LLM calls to.
    """
    from cass_actions_core.config import Config
    from cass_actions_core.runtime import Runtime

    built: list[Runtime] = []
    counter = iter(range(10_000))

    def make(load: list[str] | None = None, *, plugins: Sequence[tuple[str, Any]] = (), config: dict[str, Any] | None = None,
             provider: str | None = "offline", clock: Any = None, data_dir: Path | None = None,
             anthropic: Any = None) -> Runtime:
        pairs = _checked_plugins(plugins)
        doc: dict[str, Any] = {"timezone": "UTC", **(config or {})}
        doc.setdefault("plugins", {})
        doc["plugins"] = {**doc["plugins"], "load": list(load or [])}
        if anthropic is not None:
            doc["llm"] = {**doc.get("llm", {}), "provider": "anthropic", "base_url": anthropic.url, "max_retries": 0}
            provider = None
        cfg = Config.from_dict(doc)
        runtime = Runtime(cfg, data_dir=data_dir or tmp_path / f"runtime-{next(counter)}",
                          clock=clock or virtual_clock(cfg.timezone), plugins=pairs, provider=provider)
        built.append(runtime)
        return runtime

    yield make
    for runtime in built:
        runtime.close()


@pytest.fixture
def run_action() -> ActionRunner:
    """``run_action(runtime, action_id, params=None, focus=None)`` -> :class:`ActionRun`.

    Never crashes on a unit that parks: check ``outcome.status`` (``completed``, ``failed``,
    ``awaiting_approval``, ``budget_blocked``) and ``outcome.reason``.
    ``run_action.approve(runtime, outcome)`` and ``run_action.reject(runtime, outcome)``
    answer a pending approval and return the unit's next outcome.
    """
    return ActionRunner()
