"""The embedding API: a :class:`Runtime` an application builds, starts and queries.

A runtime owns one daemon's catalogue, store, ledger, event bus, phase tracker and
executor. Building it checks the catalogue and refuses to start on any problem (a pack
that failed to load included: disable it to go on). ``await runtime.start()`` acquires
the store's lease and starts the scheduler loop as a task in the caller's asyncio loop;
``await runtime.stop()`` ends it cleanly. The CLI is a thin layer over this class.

The loop, each tick:

1. report phase instances that began (once each); plan their local date if it has no
   plan yet (a restart never plans a date twice) and queue their units;
2. apply the catch-up policy to instances missed while the process was down;
3. expire approvals, re-queue units whose approval came, retry budget-blocked units
   when money frees up (or the budget day rolls over);
4. expire queued units whose phase (plus catch-up window) has ended, with the reason;
5. run queued units in order, up to ``max_concurrent_units`` at a time, honouring
   ``requires_idle``, paused categories and a paused daemon.

Operator controls (:meth:`Runtime.cancel`, :meth:`Runtime.pause` / :meth:`Runtime.resume`,
:meth:`Runtime.set_budget` / :meth:`Runtime.clear_budget`, :meth:`Runtime.plan_add`,
:meth:`Runtime.plan_remove`, :meth:`Runtime.plan_move`) are written to the store, so they work
the same from the daemon's own process, from another process on the same data folder (the CLI,
the HTTP API) and with no daemon running: a running daemon honours them at its next tick, and
between two steps of a running unit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cass_actions_core.catalogue import Catalogue, build_catalogue
from cass_actions_core.clock import Clock, SystemClock, VirtualClock, local_midnight, to_utc
from cass_actions_core.config import MAX_DAILY_USD, Config, load_config
from cass_actions_core.context import PlanningContext
from cass_actions_core.events import EventBus
from cass_actions_core.executor import (
    DAEMON_PAUSED_KEY,
    Executor,
    LedgerGate,
    NotQueued,
    cancel_key,
    cancel_reason,
    next_attempt,
    run_key,
    spend_key,
    step_key,
)
from cass_actions_core.ledger import BudgetLedger, _amount
from cass_actions_core.models import Priority
from cass_actions_core.phases import DayPhases, DayPhaseTracker, PhaseInstance
from cass_actions_core.planning import PHASE_ORDER, DayPlan
from cass_actions_core.planning.plans import window_opens
from cass_actions_core.planning.costs import CostBook
from cass_actions_core.planning.engine import DecisionEngine
from cass_actions_core.problems import UnknownItem, UserError, WrongState
from cass_actions_core.store import LeaseLostError, UnitBrief, Store, StoreUnavailable, UnitRow, open_store, store_location
from cass_actions_core.supervisor import STALL_KEY, stall_elsewhere, stall_note

log = logging.getLogger("cass_actions.runtime")

#: ``data.source`` of units a person queued or placed by hand: a new plan for their date keeps them.
MANUAL_SOURCES = ("trigger", "run-action", "manual")

#: The shortest unit id prefix the controls accept (``queue`` shows 8 characters).
MIN_UNIT_PREFIX = 4

#: State keys in the store.
LAST_PHASE_KEY = "tracker.last_seen"
PAUSED_KEY = "paused_categories"
ACTIVITY_KEY = "last_user_activity"

#: How long a lease lasts without renewal (real time), and how often it is renewed.
#: The lease is renewed every ``scheduler.lease_ttl_seconds`` times this fraction (90 s → every 20 s).
LEASE_RENEW_FRACTION = 2 / 9

#: The least time a re-queued unit gets to start before it expires.
REQUEUE_GRACE = timedelta(minutes=15)


#: A unit found running after this many consecutive crashes in the same step is poison: abandoned.
POISON_CRASHES = 3

#: How long a stop request lets the current step finish before stopping it (SIGTERM is honoured within ~2 s).
STOP_GRACE_SECONDS = 1.5


@dataclass(frozen=True)
class TickReport:
    """What one tick did (for the simulate timeline and for tests)."""

    at: datetime
    phases: list[str]
    ran: list[str]


class StoreTranscripts:
    """Transcripts go to the store, out of line; results keep only their ids."""

    def __init__(self, store: Store, clock: Clock, run_key: str) -> None:
        self._store, self._clock, self._key = store, clock, run_key

    def save(self, record: dict[str, Any]) -> str:
        """Store one call's request and response; return its id."""
        return self._store.save_transcript(record, self._key, self._clock.now())


class Runtime:
    """One daemon: catalogue, store, budget, phases and the scheduler loop.

    Args:
        config: the validated configuration (see :func:`load_config`).
        data_dir: where the store (``cass-actions.sqlite``) and, by default, the
            workspace (``workspace/``) live.
        clock: the time source (default: the system clock in the configured zone).
        plugins: extra ``(name, plugin)`` pairs registered by hand.
        entry_points: load installed packs (``False`` in tests).
        template_files: extra user template files.
        provider: force an LLM provider for every action (``"offline"`` for simulations).
        strict: refuse to build when a pack failed to load (the default, as ``run`` does).
        check: refuse to build on catalogue problems (``False`` only for read-only
            queries of the store, which must work whatever the packs' state).

    Raises :class:`~cass_actions_core.problems.CatalogueError` listing every catalogue
    problem before anything runs, and :class:`~cass_actions_core.store.StoreError` for
    a corrupt or newer store file.
    """

    def __init__(self, config: Config, *, data_dir: Path, clock: Clock | None = None,
                 plugins: Sequence[tuple[str, Any]] = (), entry_points: bool = True,
                 template_files: Sequence[str | Path] = (), provider: str | None = None, strict: bool = True,
                 check: bool = True, lease_holder: str | None = None, lease_pid: int | None = None) -> None:
        if provider is not None:
            config = config.with_provider(provider)
        config.check()  # built from a file or not, a runtime never runs on a configuration the schema refuses
        self.config = config
        self.data_dir = Path(data_dir)
        self.clock: Clock = clock or SystemClock(config.timezone)
        if str(self.clock.tz) != config.timezone:
            raise UserError(f"the clock's time zone {self.clock.tz} differs from the configured timezone {config.timezone!r}")
        self.catalogue: Catalogue = build_catalogue(config, plugins=plugins, entry_points=entry_points, template_files=template_files)
        if check:
            self.catalogue.check(strict=strict)
        self.providers = self.catalogue.providers
        self.workspace = Path(config.workspace).expanduser() if config.workspace else self.data_dir / "workspace"
        if not self.workspace.is_absolute() and config.source is not None:
            self.workspace = config.source.parent / self.workspace
        for folder, what in ((self.data_dir, "data directory (--data-dir)"), (self.workspace, "workspace folder ($.workspace)")):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"{folder}: cannot use it as the {what}: {exc.strerror or exc}.") from None
        self.store = open_store(store_location(config.store.url, self.data_dir), config.daemon_id)
        self.ledger = BudgetLedger(self.store, config.budget)
        self.bus = EventBus(self.store, self.catalogue.plugin_manager, self.clock)
        self.phases = DayPhases(config.phases, config.timezone)
        self.tracker = DayPhaseTracker(self.phases, self.clock, last_seen=self.store.get_state(LAST_PHASE_KEY))
        self.planner = DecisionEngine(catalogue=self.catalogue, store=self.store, ledger=self.ledger, phases=self.phases,
                                      now=self.clock.now, paused=self.paused_categories,
                                      transcripts=lambda key: StoreTranscripts(self.store, self.clock, key))
        self._costs: CostBook | None = None
        self.executor = Executor(catalogue=self.catalogue, store=self.store, ledger=self.ledger, clock=self.clock,
                                 bus=self.bus, workspace=self.workspace, llm_factory=self._llm_for,
                                 plan_source=self._plan_source, stop_requested=lambda: self._stop_requested,
                                 costs=self.costs)
        # run's supervisor hands each of its workers the same holder and its own pid (see supervisor.py)
        self._holder = lease_holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease_pid = lease_pid
        self._lease_ttl = timedelta(seconds=config.scheduler.lease_ttl_seconds)
        self._task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._stop_requested = False
        self._recovered = False
        self._wake: asyncio.Event | None = None
        self._lease_refs = 0
        #: Why the loop stopped on its own (the lease was lost), or None.
        self.lease_lost: str | None = None
        #: Why the last tick could not write to the store (a full disk...), or None.
        self.store_trouble: str | None = None
        #: Why the loop stopped asking for a new process (a handler ignored its cancellation), or None.
        self.restart_reason: str | None = None
        #: Whether :meth:`stop` had to leave a handler running (the process must exit without waiting for it).
        self.stuck = False
        #: How many units this runtime is running now.
        self.busy = 0

    # -- construction helpers ----------------------------------------------------------
    @classmethod
    def from_config(cls, config_path: str | Path | None = None, *, data_dir: str | Path | None = None,
                    **kwargs: Any) -> Runtime:
        """Build from a config file (or the defaults and environment) and a data folder."""
        from cass_actions_core.cli.state import default_data_dir

        config = load_config(config_path)
        return cls(config, data_dir=Path(data_dir) if data_dir else default_data_dir(), **kwargs)

    def _llm_for(self, action: Any, key: str, gate: LedgerGate, model: str | None = None) -> Any:
        return self.providers.metered(self.config.llm, action.definition, gate=gate,
                                      transcripts=StoreTranscripts(self.store, self.clock, key), run_key=key, model=model)

    def costs(self) -> CostBook:
        """Learned costs and durations (read from the store at each planning run, and on first use)."""
        if self._costs is None:
            self._costs = self.planner.costs()
        return self._costs

    def _plan_source(self, unit: UnitRow) -> str | None:
        return self.store.plan_source(unit.local_date) or unit.data.get("source")

    # -- lifecycle ---------------------------------------------------------------------
    def acquire_lease(self) -> None:
        """Take the store's single-scheduler lease (``LeaseHeldError`` if another process holds it)."""
        self.store.acquire_lease(self._holder, datetime.now(UTC), self._lease_ttl, pid=self._lease_pid)

    def release_lease(self) -> None:
        """Give the lease up (a no-op if this runtime does not hold it)."""
        self.store.release_lease(self._holder)

    async def start(self) -> None:
        """Acquire the lease, recover from a crash, and start the loop in the running event loop."""
        if self._task is not None:
            raise RuntimeError("the runtime is already started")
        self.acquire_lease()
        self.recover()
        self._stop_requested = False
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="cass-actions-scheduler")
        self._lease_task = asyncio.create_task(self._renew_lease(), name="cass-actions-lease")

    async def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Stop the loop, release the lease, close nothing else.

        The current step gets ``grace_seconds`` to finish; then it is cancelled: its cost so far
        (calls in flight at their worst case) is charged and its unit goes back to the queue
        (an idempotent step runs again at the next start) or, for a step that is not
        idempotent, is abandoned with the reason.
        """
        self._stop_requested = True
        if self._wake is not None:
            self._wake.set()
        if self._lease_task is not None:
            self._lease_task.cancel()
        task = self._task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=grace_seconds)
            if not done:
                log.warning("the current step did not finish within %g s of the stop request; stopping it", grace_seconds)
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=grace_seconds)
            if not done:
                # A handler deaf to cancellation: end its step and unit here; only a new process stops it.
                self.executor.stop_current()
                self.restart_reason = self.restart_reason or "a handler ignored the cancellation at shutdown"
                self.stuck = True
        for waiting in (task, self._lease_task):
            if waiting is None or (waiting is task and self.stuck):
                continue
            try:
                await waiting
            except asyncio.CancelledError:
                pass
            except Exception:  # the loop crashed: surfaced by wait(), not here
                if waiting is not task:
                    raise
        self._task = self._lease_task = None
        await self.bus.drain()
        await self.providers.aclose()
        self.release_lease()

    async def wait(self) -> None:
        """Wait until the loop ends (after :meth:`stop`, or if it crashed: then re-raise)."""
        if self._task is not None:
            await self._task

    def close(self) -> None:
        """Close the store (after :meth:`stop`)."""
        self.store.close()

    async def _renew_lease(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ttl.total_seconds() * LEASE_RENEW_FRACTION)
            try:
                self.store.renew_lease(self._holder, datetime.now(UTC), self._lease_ttl, pid=self._lease_pid)
            except Exception as exc:  # lost to another process, or the store is unusable
                # Never keep scheduling without the lease: stop now. Another process owns this
                # daemon's work; the current step is interrupted (its writes would be refused anyway).
                self.lease_lost = f"the scheduler lease could not be renewed: {exc}"
                log.error("%s; stopping", self.lease_lost)
                self._stop_requested = True
                self.poke()
                if isinstance(exc, LeaseLostError) and self._task is not None:
                    self._task.cancel()
                return

    async def _loop(self) -> None:
        while not self._stop_requested:
            try:
                report = await self.tick()
            except LeaseLostError as exc:
                self._lost(exc)
                break
            except StoreUnavailable as exc:
                # A full disk or a read-only store: nothing was written; wait and try again, never stop.
                log.error("%s; the scheduler tries again in %g s", exc, self.config.scheduler.tick_seconds)
                self.store_trouble = str(exc)
                report = None
            else:
                self.store_trouble = None
            if self.executor.restart_requested and self.restart_reason is None:
                # A handler that could not be stopped is still running here: only a new process ends it.
                self.restart_reason = self.executor.restart_requested
                log.error("%s; this process should be replaced", self.restart_reason)
                self._stop_requested = True
            if self._stop_requested:
                break
            if report is not None and report.ran:
                continue  # running took time: units whose window opened meanwhile start now
            wake = self.next_wakeup() if report is not None else \
                to_utc(self.clock.now()) + timedelta(seconds=self.config.scheduler.tick_seconds)
            assert self._wake is not None
            self._wake.clear()
            sleeper = asyncio.create_task(self.clock.sleep_until(wake))
            waker = asyncio.create_task(self._wake.wait())
            done, pending = await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()

    def _lost(self, exc: LeaseLostError) -> None:
        """The store refused a write: this process no longer holds the lease. Stop, writing nothing."""
        if self.lease_lost is None:
            self.lease_lost = f"the scheduler lease was lost: {exc}"
            log.error("%s; stopping", self.lease_lost)
        self._stop_requested = True
        self.poke()

    def poke(self) -> None:
        """Wake the loop now (after an approval, a trigger, recorded activity)."""
        if self._wake is not None:
            self._wake.set()

    def next_wakeup(self) -> datetime:
        """When the loop should look again: the next phase boundary, local midnight,
        approval expiry, or ``tick_seconds`` from now — whichever comes first."""
        now = self.clock.now()
        candidates = [
            self.phases.next_transition(now).start,
            local_midnight(self.clock.today() + timedelta(days=1), self.clock.tz),
        ]
        if not isinstance(self.clock, VirtualClock):
            # tick_seconds is real time: on an accelerated clock that many real seconds span more
            speed = getattr(self.clock, "speed", 1.0)
            candidates.append(to_utc(now) + timedelta(seconds=self.config.scheduler.tick_seconds * speed))
        for approval in self.store.list_approvals(status="pending"):
            candidates.append(approval.expires_at)
        for brief in self.store.unit_briefs():
            if brief.not_before is not None and to_utc(brief.not_before) > to_utc(now):
                candidates.append(brief.not_before)
        return min(candidates, key=to_utc)

    # -- recovery ----------------------------------------------------------------------
    def recover(self) -> list[UnitRow]:
        """After a crash: settle open reservations, then resume or abandon units found running.

        Each open reservation is settled at the spend recorded before the crash, which
        includes the worst case of any LLM call that was out (the API bills it). A unit
        found ``running`` resumes at its first unfinished step. If that step had started
        but not finished, its run is closed as failed with that cost (so history and the
        ledger agree), and the step runs again as a new attempt only when the action is
        idempotent; otherwise the unit is ``abandoned`` with the reason. A step the
        process died in :data:`POISON_CRASHES` times in a row abandons its unit as poison.
        """
        if self._recovered:
            return []
        self._recovered = True
        now = self.clock.now()
        crashed_cost: dict[str, float] = {}
        stalled = self.store.get_state(STALL_KEY)
        if stalled is not None:
            self.store.delete_state(STALL_KEY)
        for reservation in self.ledger.open_reservations():
            recorded = self.store.get_state(spend_key(reservation.id), 0.0)
            note = "settled after a restart with the spend recorded before the crash (calls in flight at their worst case)"
            try:
                spent = _amount(float(recorded or 0.0), "spent")
            except (TypeError, ValueError):
                # Not a spend (a damaged row, a bug): charge what was reserved rather than stop every restart here.
                spent = reservation.amount_usd
                note = f"settled after a restart at its reservation: the recorded spend {recorded!r} is not an amount"
            self.ledger.settle(reservation, spent, now, note=note)
            self.store.delete_state(spend_key(reservation.id))
            if reservation.unit_id:
                crashed_cost[reservation.unit_id] = crashed_cost.get(reservation.unit_id, 0.0) + spent
        touched = []
        for unit in self.store.list_units(statuses=["running"]):
            index = unit.next_step
            run = self.store.get_action_run(run_key(unit, index)) if index < len(unit.steps) else None
            action = self.catalogue.actions.get(unit.steps[index]["action"]) if index < len(unit.steps) else None
            if run is None or run.status != "started":
                unit = self._requeue(unit, f"resumed after a restart at step {index + 1}", now, retry="restart") or unit
                touched.append(unit)
                continue
            cost = round(crashed_cost.get(unit.id, 0.0), 6)
            crashes = unit.data.get("crashes", {})
            step = step_key(unit, index)
            # A stall another step caused (its handler blocked the loop this one shared) is no crash of this
            # step: it must not bring the unit nearer to being poison.
            bystander = stall_elsewhere(stalled, self.config.daemon_id, step)
            count = (int(crashes.get("count", 0)) if crashes.get("step") == index else 0) + (0 if bystander else 1)
            idempotent = action is not None and action.definition.idempotent
            why = stall_note(stalled, self.config.daemon_id, step)
            if count >= POISON_CRASHES:
                reason = (f"poison: the process died during step {index + 1} ({run.action_id}) {count} times in a "
                          "row; not resumed again" + (f" (the last time: {why})" if why else ""))
            elif not idempotent:
                reason = (f"interrupted by a crash during step {index + 1} ({run.action_id}), which is not idempotent: "
                          "not safe to run again" + (f" ({why})" if why else ""))
            else:
                reason = f"{why or 'interrupted by a crash (the process died during the step)'}; ${cost:.6f} charged for its calls"
            self.store.finish_action_run(run.key, "failed", cost, {"summary": "", "interrupted": True}, reason, now)
            if count >= POISON_CRASHES or not idempotent:
                unit = self.store.set_unit_status(unit.id, "abandoned", reason=reason, now=now)
                self.executor.write_summary(unit)
                self.bus.emit("work_unit.abandoned", {"reason": reason, "poison": count >= POISON_CRASHES}, unit_id=unit.id)
            else:
                _n, attempt = next_attempt(unit, index, reason, now.astimezone(self.clock.tz))
                crash = "by another step's stall" if bystander else f"(crash {count} of at most {POISON_CRASHES - 1})"
                unit = self._requeue(unit, f"resumed after a restart: step {index + 1} ({run.action_id}) was "
                                           f"interrupted {crash} and is idempotent, so it runs again", now,
                                     retry="restart",
                                     data={"crashes": {"step": index, "count": count}, "attempt": attempt}) or unit
            touched.append(unit)
        return touched

    # -- planning ----------------------------------------------------------------------
    async def plan_day(self, day: date, *, from_phase: str = "morning") -> DayPlan:
        """Plan ``day`` from ``from_phase`` on with the DecisionEngine, store the plan and create its units.

        One planning call per run (``source: llm``); any failure of it gives the
        deterministic plan from the same scores (``source: fallback``), with the reason.
        """
        phases = PHASE_ORDER[PHASE_ORDER.index(from_phase):]
        self._costs = self.planner.costs()
        plan = await self.planner.plan(day, phases, self.gather_context(), self._costs)
        return self.store_plan(day, plan)

    def plan_dry_run(self, day: date, *, from_phase: str = "morning") -> dict[str, Any]:
        """What :meth:`plan_day` would send and fall back to: candidates, score components, the prompt; calls nothing."""
        phases = PHASE_ORDER[PHASE_ORDER.index(from_phase):]
        return self.planner.dry_run(day, phases, self.gather_context())

    def store_plan(self, day: date, plan: DayPlan) -> DayPlan:
        """Store ``day``'s plan and create its units (a plan file, or one the planner made).

        Re-planning a date replaces its units that have not started (F9); units that
        started, or that a human answered, stay.
        """
        now = self.clock.now()
        with self.store.transaction():  # the plan and its units land whole or not at all, in one commit
            # units a person queued or placed by hand (trigger, run-action, plan_add) stay
            removed = self.store.delete_units_for_plan(day, keep_sources=MANUAL_SOURCES)
            self._apply_limits(plan)
            self.store.save_plan(day, plan.source, plan.reason, plan.intention, plan.to_dict(), now)
            count = 0
            for phase, items in plan.phases.items():
                for position, item in enumerate(items):
                    self._insert_unit(day, phase, item.template, focus=item.focus, motivation=item.motivation,
                                      params=item.params, position=position, source=plan.source, skip=item.skip_steps,
                                      model=item.model, choices=list(item.choices), estimate=item.estimated_cost_usd,
                                      wait_for_window=True)
                    count += 1
            self.bus.emit("day.planned", {"date": day.isoformat(), "source": plan.source, "reason": plan.reason,
                                          "units": count, "replaced": len(removed), "dropped": plan.dropped,
                                          "decisions": plan.decisions, "intention": plan.intention,
                                          "cost_usd": plan.cost_usd, "provider": plan.provider, "model": plan.model})
        return plan

    def _apply_limits(self, plan: DayPlan) -> None:
        """Drop plan items that break their template's ``cooldown`` or ``max_per_day``, with reasons."""
        counts: dict[str, int] = {}
        for unit in self.store.list_units(local_date=plan.day):
            if unit.status == "cancelled" and unit.started_at is None:
                continue  # removed or cancelled before it ran: it used none of the day's allowance
            counts[unit.template_id] = counts.get(unit.template_id, 0) + 1
        last_starts, _done = self.store.template_activity(plan.day)  # every template's latest start, one query
        for phase, items in plan.phases.items():
            kept = []
            begins = to_utc(self.phases.instance(plan.day, phase).start)
            for item in items:
                template = self.catalogue.template(item.template).template
                last = last_starts.get(template.id)
                if counts.get(template.id, 0) >= template.max_per_day:
                    plan.dropped.append(f"{template.id}: already {template.max_per_day} unit(s) on {plan.day} (max_per_day)")
                    continue
                if last is not None and begins < to_utc(last) + template.cooldown_delta:
                    plan.dropped.append(f"{template.id}: cooldown {template.cooldown} since it last started at "
                                        f"{last.astimezone(self.clock.tz):%Y-%m-%d %H:%M}")
                    continue
                counts[template.id] = counts.get(template.id, 0) + 1
                kept.append(item)
            plan.phases[phase] = kept

    def _insert_unit(self, day: date, phase: str, template_id: str, *, focus: str | None, motivation: str | None,
                     params: dict[str, dict[str, Any]] | None = None, position: int = 0, status: str = "planned",
                     source: str | None = None, deadline: datetime | None = None, skip: Sequence[int] = (),
                     model: str | None = None, choices: Sequence[str] = (), estimate: float | None = None,
                     wait_for_window: bool = False) -> UnitRow:
        template = self.catalogue.template(template_id).template
        steps = []
        for i, step in enumerate(template.steps):
            if i in skip:
                continue  # an optional step left out to fit the money (the reason is in choices)
            merged = {**step.params, **(params or {}).get(str(i), {})}
            steps.append({"action": step.action, "params": merged, "optional": step.optional})
        requires_idle = template.requires_idle or any(
            self.catalogue.actions[s.action].definition.requires_idle for s in template.steps)
        data: dict[str, Any] = {"source": source}
        if deadline is not None:
            data["deadline"] = deadline.isoformat()
        if model:
            data["model"] = model
        if choices:
            data["choices"] = list(choices)
        not_before = None
        if wait_for_window:
            # A planned unit starts no earlier than its preferred windows open in its phase.
            instance = self.phases.instance(day, phase)
            opens = window_opens(template, instance.start.astimezone(self.clock.tz), instance.end.astimezone(self.clock.tz))
            if opens is not None and to_utc(opens) > to_utc(instance.start):
                not_before = opens
        return self.store.insert_unit(
            local_date=day, phase=phase, template_id=template.id, name=template.name, category=template.category,
            steps=steps, now=self.clock.now(), priority=int(Priority.of(template.priority)), position=position,
            estimated_cost_usd=self.catalogue.template_cost(template) if estimate is None else estimate,
            status=status, focus=focus,
            motivation=motivation, requires_idle=requires_idle, data=data, not_before=not_before,
        )

    def trigger(self, template_id: str, *, focus: str | None = None, motivation: str | None = None) -> UnitRow:
        """Queue a unit of ``template_id`` now, in the current phase (a manual run).

        A human's explicit request: the template's ``max_per_day`` and ``cooldown``, which
        bind the planner, do not apply.
        """
        now = self.clock.now()
        instance = self.phases.instance_at(now)
        unit = self._insert_unit(instance.day, instance.phase.value, template_id, focus=focus,
                                 motivation=motivation or "triggered by hand", status="queued", source="trigger",
                                 position=10_000, deadline=to_utc(now) + max(self._catch_up_window(), REQUEUE_GRACE))
        self.bus.emit("work_unit.queued", {"template_id": template_id, "phase": unit.phase, "trigger": True}, unit_id=unit.id)
        self.poke()
        return unit

    async def run_action(self, action_id: str, params: dict[str, Any] | None = None, *,
                         focus: str | None = None) -> UnitRow:
        """Run one action now as a one-step unit, through the executor (the one path).

        Takes the lease for the duration, so it never races a running daemon. Raises
        :class:`KeyError` (with the closest id) for an unknown action and
        :class:`UserError` naming the parameter for params that break the action's schema.
        """
        params = dict(params or {})
        action = self.catalogue.action_for(action_id, params)
        now = self.clock.now()
        instance = self.phases.instance_at(now)
        # Inside a started runtime the lease is already ours; otherwise hold it (and keep
        # it renewed) for as long as the action runs, so no daemon starts meanwhile.
        owns_lease = self._task is None
        renewer = None
        if owns_lease:
            self.acquire_lease()
            renewer = asyncio.create_task(self._renew_lease(), name="cass-actions-run-action-lease")
        try:
            unit = self.store.insert_unit(
                local_date=instance.day, phase=instance.phase.value, template_id=f"run-action:{action_id}",
                name=action.definition.name, category=action.definition.category,
                steps=[{"action": action_id, "params": params, "optional": False}], now=now,
                priority=int(Priority.of(action.definition.priority)), status="queued",
                estimated_cost_usd=action.definition.estimated_cost_usd, focus=focus, motivation="run by hand",
                requires_idle=False, data={"source": "run-action"},
            )
            self.bus.emit("work_unit.queued", {"template_id": unit.template_id, "manual": True}, unit_id=unit.id)
            outcome = await self.executor.run_unit(unit.id)
            await self.bus.drain()
            return outcome.unit
        finally:
            if owns_lease:
                assert renewer is not None
                renewer.cancel()
                await self.providers.aclose()  # the SDK client must not outlive this event loop
                self.release_lease()

    # -- the tick ----------------------------------------------------------------------
    def _catch_up_window(self) -> timedelta:
        return timedelta(minutes=self.config.scheduler.catch_up_window_minutes)

    def _requeue_deadline(self, now: datetime) -> str:
        # A unit re-queued after an approval, a budget retry or a restart gets the
        # catch-up window to start, and never less than REQUEUE_GRACE.
        return (to_utc(now) + max(self._catch_up_window(), REQUEUE_GRACE)).isoformat()

    async def tick(self) -> TickReport:
        """One pass of the loop (see the module docstring). Safe to call by hand."""
        self.recover()
        now = self.clock.now()
        fired = self.tracker.poll()
        for instance in self._without_missed(fired, now):
            await self._phase_began(instance, now)
        if fired:
            self.store.set_state(LAST_PHASE_KEY, self.tracker.last_seen)
        self._handle_approvals(now)
        self._retry_budget_blocked(now)
        self._expire_stale(now)
        self._queue_due_planned(now)
        ran = await self._run_queued()
        return TickReport(now, [i.key for i in fired], ran)

    def _without_missed(self, fired: list[PhaseInstance], now: datetime) -> list[PhaseInstance]:
        """The phase instances still worth beginning: the current one and those that ended within the
        catch-up window. Older ones (the daemon was down) are neither planned nor replayed; one
        ``downtime.missed`` event says what was skipped, so a daemon asleep for months starts at once."""
        cutoff = to_utc(now) - self._catch_up_window()
        keep = [i for i in fired if to_utc(i.end) > cutoff or i.contains(now)]
        missed = [i for i in fired if i not in keep]
        if missed:
            days = sorted({i.day for i in missed})
            whole = [d for d in days if all(i.day != d for i in keep) and self.store.get_plan(d) is None]
            self.bus.emit("downtime.missed", {
                "from": missed[0].start.isoformat(), "to": missed[-1].end.isoformat(), "phases": len(missed),
                "days_missed": len(whole), "first_day": days[0].isoformat(), "last_day": days[-1].isoformat(),
                "reason": f"the scheduler was not running from {missed[0].start:%Y-%m-%d %H:%M} to "
                          f"{missed[-1].end:%Y-%m-%d %H:%M}: {len(missed)} phase(s) and {len(whole)} whole day(s) "
                          "were skipped, not planned",
            })
            log.warning("skipped %d phase(s) missed while the scheduler was not running (%s to %s)", len(missed),
                        missed[0].start, missed[-1].end)
        return keep

    async def _phase_began(self, instance: PhaseInstance, now: datetime) -> None:
        current = instance.contains(now) or instance.empty and to_utc(instance.start) == to_utc(now)
        self.bus.emit("day_phase.changed", {"phase": instance.phase.value, "day": instance.day.isoformat(),
                                            "start": instance.start.isoformat(), "end": instance.end.isoformat(),
                                            "late": not current})
        if self.store.get_plan(instance.day) is None:
            await self.plan_day(instance.day, from_phase=instance.phase.value)
        late = to_utc(now) - to_utc(instance.end)
        missed = not current
        with self.store.transaction():  # the phase's units move together: one commit, not one per unit
            units = self.store.list_units(local_date=instance.day, phase=instance.phase.value, statuses=["planned"])
            for unit in units:
                if missed and (self.config.scheduler.catch_up == "expire" or late > self._catch_up_window()):
                    reason = (f"its {instance.phase.value} phase ({instance.start:%H:%M}–{instance.end:%H:%M}) passed while "
                              "the scheduler was not running" + (
                                  " (catch-up policy: expire)" if self.config.scheduler.catch_up == "expire"
                                  else f" and the {self.config.scheduler.catch_up_window_minutes}-minute catch-up window is over"))
                    self._expire(unit.id, reason)
                    continue
                reason = "phase began" if not missed else f"running late: its {instance.phase.value} phase passed while the scheduler was down"
                self.store.set_unit_status(unit.id, "queued", reason=reason, now=now)
                self.bus.emit("work_unit.queued", {"template_id": unit.template_id, "phase": unit.phase, "late": missed},
                              unit_id=unit.id)

    def _expire(self, unit_id: str, reason: str) -> None:
        unit = self.store.set_unit_status(unit_id, "expired", reason=reason, now=self.clock.now())
        self.executor.write_summary(unit)
        self.bus.emit("work_unit.expired", {"template_id": unit.template_id, "reason": reason}, unit_id=unit.id)

    def _deadline(self, unit: UnitRow | UnitBrief) -> datetime:
        """When a queued unit must have started: its ``data.deadline`` (re-queued work), else its phase's end
        plus the catch-up window."""
        deadline = unit.deadline if isinstance(unit, UnitBrief) else unit.data.get("deadline")
        if deadline:
            return deadline if isinstance(deadline, datetime) else datetime.fromisoformat(deadline)
        instance = self.phases.instance(unit.local_date, unit.phase)
        window = self._catch_up_window() if self.config.scheduler.catch_up == "run_late" else timedelta(0)
        return to_utc(instance.end) + window

    def _queue_due_planned(self, now: datetime) -> None:
        """Queue planned units whose phase is under way (a plan replaced mid-phase, say)."""
        for brief in self.store.unit_briefs("planned"):  # the day's later phases: briefs, not whole rows, each tick
            if to_utc(self.phases.instance(brief.local_date, brief.phase).start) <= to_utc(now):
                unit = self.store.set_unit_status(brief.id, "queued", reason="its phase is under way", now=now)
                self.bus.emit("work_unit.queued", {"template_id": unit.template_id, "phase": unit.phase}, unit_id=unit.id)

    def _expire_stale(self, now: datetime) -> None:
        for brief in self.store.unit_briefs("planned"):
            # Planned for a phase that ended before it was ever queued (e.g. a plan replaced late).
            if to_utc(self._deadline(brief)) <= to_utc(now):
                self._expire(brief.id, f"its {brief.phase} phase ended before the unit was queued")
        for brief in self.store.unit_briefs():
            if to_utc(self._deadline(brief)) <= to_utc(now):
                unit = self.store.get_unit(brief.id)
                if unit is None or unit.status != "queued":
                    continue
                waiting = unit.reason or "queued"
                if unit.requires_idle and not self.is_idle():
                    waiting = "the daemon never became idle"
                elif unit.category in self.paused_categories():
                    waiting = f"category {unit.category!r} was paused"
                elif self.daemon_paused() is not None:
                    waiting = f"the daemon was paused by {self.daemon_paused().get('by', 'someone')}"
                self._expire(unit.id, f"its {unit.phase} phase ended before it could run ({waiting})")
        # Budget-blocked work waits for money until its plan day is over, then expires.
        for unit in self.store.list_units(statuses=["budget_blocked"]):
            day_end = to_utc(self.phases.instance(unit.local_date, "night").end) + self._catch_up_window()
            if to_utc(day_end) <= to_utc(now):
                self._expire(unit.id, f"still blocked by budget when its plan day ended ({unit.reason})")

    def _requeue(self, unit: UnitRow, reason: str, now: datetime, data: dict[str, Any] | None = None,
                 **event: Any) -> UnitRow | None:
        """Put a parked or interrupted unit back in the queue, with its reason and an event.

        ``data`` is merged into the unit's data. Another process (a CLI ``approve``) may
        have moved the unit first: then nothing happens, so two writers never fight over one unit.
        """
        try:
            unit = self.store.set_unit_status(unit.id, "queued", now=now, reason=reason,
                                              data={**unit.data, **(data or {}), "deadline": self._requeue_deadline(now)})
        except ValueError:
            current = self.store.get_unit(unit.id)
            if current is not None and current.status != unit.status:
                return None
            raise
        self.bus.emit("work_unit.queued", {"template_id": unit.template_id, "reason": reason, **event}, unit_id=unit.id)
        return unit

    def _handle_approvals(self, now: datetime) -> None:
        for approval in self.store.expire_approvals(now):
            self.bus.emit("approval.resolved", {"approval_id": approval.id, "status": "expired"}, unit_id=approval.unit_id)
        for unit in self.store.list_units(statuses=["awaiting_approval"]):
            approval = self.store.approval_for(unit.id, unit.next_step)
            if approval is None or approval.status == "pending":
                continue
            why = self.executor.refusal(approval)
            if why is not None:
                self.executor.end_refused(unit, why)  # a "no" ends the unit now, daemon running or not
            else:
                self._requeue(unit, f"approval {approval.id} {approval.status}", now, retry="approval")

    def _retry_budget_blocked(self, now: datetime) -> None:
        for unit in self.store.list_units(statuses=["budget_blocked"]):
            action = self.catalogue.actions.get(unit.steps[unit.next_step]["action"]) if unit.next_step < len(unit.steps) else None
            if action is None:
                continue
            # what it was refused (a step's reservation, or its next call's worst case), or its learned cost
            need = max(float(unit.data.get("budget_need_usd", 0.0)),
                       self.executor.reservation_for(action, unit.data.get("model") if action.definition.uses_llm else None))
            critical = Priority.of(action.definition.priority) == Priority.CRITICAL
            if self.ledger.available(action.definition.category, self.clock.today(), critical=critical) + 1e-9 >= need:
                self._requeue(unit, "budget available again", now, retry="budget")

    async def _run_queued(self) -> list[str]:
        """Run the queued units that may start now, in run order, ``max_concurrent_units`` at a time."""
        ran: list[str] = []
        if self.daemon_paused() is not None:
            return ran  # nothing starts while the whole daemon is paused (planning and parking go on)
        paused = self.paused_categories()
        idle: bool | None = None
        now = to_utc(self.clock.now())
        starts: dict[tuple[date, str], datetime] = {}
        candidates: list[str] = []
        for brief in self.store.unit_briefs():
            if brief.category in paused:
                continue
            start = starts.get((brief.local_date, brief.phase))
            if start is None:
                start = starts[(brief.local_date, brief.phase)] = to_utc(self.phases.instance(brief.local_date, brief.phase).start)
            if start > now:
                continue  # queued early (never by the loop itself); waits for its phase
            if brief.not_before is not None and to_utc(brief.not_before) > now:
                continue  # waits for its preferred window to open
            if brief.requires_idle:
                idle = self.is_idle() if idle is None else idle
                if not idle:
                    continue
            candidates.append(brief.id)
        pending = iter(candidates)

        async def worker() -> None:
            for unit_id in pending:  # one iterator shared by the workers: each unit is taken once
                if self._stop_requested or self.daemon_paused() is not None:  # paused meanwhile (another process)
                    return
                await self._run_one(unit_id, ran)

        workers = min(self.config.scheduler.max_concurrent_units, len(candidates))
        if workers == 1:
            await worker()
        elif workers > 1:
            await asyncio.gather(*(worker() for _ in range(workers)))
        return ran

    async def _run_one(self, unit_id: str, ran: list[str]) -> None:
        """Run one queued unit unless another writer moved it or its deadline passed meanwhile."""

        def due(unit: UnitRow) -> bool:
            # Its phase may have ended while earlier units ran (simulated time moves): it expires next tick.
            return to_utc(self._deadline(unit)) > to_utc(self.clock.now())

        self.busy += 1  # before the first await: a fleet worker sheds only a daemon with no unit under way
        try:
            outcome = await self.executor.run_unit(unit_id, due=due)
        except NotQueued:
            return
        except LeaseLostError as exc:  # another process runs this daemon now: write nothing more
            self._lost(exc)
            return
        except Exception as exc:  # a bug must cost one unit, never the loop
            log.exception("unit %s crashed the executor", unit_id)
            self._internal_failure(unit_id, exc)
            ran.append(unit_id)
            return
        finally:
            self.busy -= 1
        if outcome.ran_steps or outcome.unit.is_terminal:
            ran.append(unit_id)  # a unit that parked at once did no work: no reason to look again

    def _internal_failure(self, unit_id: str, exc: BaseException) -> None:
        """End a unit that an unexpected error interrupted: failed, with the reason and a summary."""
        reason = f"internal error while running the unit: {type(exc).__name__}: {exc}"
        try:
            unit = self.store.get_unit(unit_id)
            if unit is None or unit.is_terminal:
                return
            if unit.status == "running":
                for run in self.store.action_runs_for_unit(unit_id):
                    if run.status == "started":
                        self.store.finish_action_run(run.key, "failed", 0.0, {"summary": ""}, reason, self.clock.now())
                unit = self.store.set_unit_status(unit_id, "failed", reason=reason, now=self.clock.now())
            else:
                unit = self.store.set_unit_status(unit_id, "cancelled", reason=reason, now=self.clock.now())
            self.executor.write_summary(unit)
            self.bus.emit(f"work_unit.{unit.status}", {"template_id": unit.template_id, "reason": reason}, unit_id=unit_id)
        except LeaseLostError as lost:  # another process runs this daemon now: its recovery decides
            self._lost(lost)
        except Exception:
            log.exception("could not record the failure of unit %s", unit_id)

    # -- idle, pause -------------------------------------------------------------------
    def gather_context(self) -> PlanningContext:
        """Ask every pack's ``gather_context`` for facts (a failing pack is logged and skipped)."""
        context = PlanningContext(now=self.clock.now(), daemon_id=self.config.daemon_id, workspace=self.workspace)
        from cass_actions_core.plugins import call_per_plugin

        def arg(name: str) -> dict[str, Any]:
            context._current_pack = name
            context.settings = self.config.pack_settings(name)
            return {"context": context}

        for name, _kwargs, exc in call_per_plugin(self.catalogue.plugin_manager, "gather_context", arg):
            if exc is not None:
                context.forget(name)  # what it set before failing may be half a picture: none of it counts
                log.warning("gather_context of pack %s failed (its facts are left out): %s", name, exc)
        return context

    def record_activity(self, at: datetime | None = None) -> None:
        """Note user activity now (or ``at``): idle-only work waits ``idle_after_minutes``."""
        at = at or self.clock.now()
        self.store.set_state(ACTIVITY_KEY, at.isoformat())

    def last_activity(self) -> datetime | None:
        """The latest user activity known from the store or any pack's context."""
        times = []
        stored = self.store.get_state(ACTIVITY_KEY)
        if stored:
            times.append(datetime.fromisoformat(stored))
        context = self.gather_context()
        fact = context.get("last_user_activity")
        try:
            value = datetime.fromisoformat(fact) if isinstance(fact, str) else fact
            if value is not None:
                to_utc(value)  # rejects naive datetimes
                times.append(value)
        except (TypeError, ValueError, AttributeError):
            log.warning("pack %s set last_user_activity to %r, which is not an aware datetime; ignored",
                        context.sources.get("last_user_activity"), fact)
        return max(times, key=to_utc) if times else None

    def is_idle(self) -> bool:
        """No user activity for ``scheduler.idle_after_minutes`` (F6: idle-only work waits)."""
        last = self.last_activity()
        if last is None:
            return True
        return to_utc(self.clock.now()) - to_utc(last) >= timedelta(minutes=self.config.scheduler.idle_after_minutes)

    def paused_categories(self) -> set[str]:
        """Categories whose work is held (``pause`` / ``resume``)."""
        return set(self.store.get_state(PAUSED_KEY, []) or [])

    def daemon_paused(self) -> dict[str, Any] | None:
        """The whole-daemon pause (``{"by", "at", "reason"}``), or None when the daemon is not paused."""
        paused = self.store.get_state(DAEMON_PAUSED_KEY)
        return dict(paused) if isinstance(paused, dict) else None

    def pauses(self) -> dict[str, Any]:
        """What is paused: ``{"daemon_paused": {...} | None, "paused_categories": [...]}``."""
        return {"daemon_paused": self.daemon_paused(), "paused_categories": sorted(self.paused_categories())}

    def _known_category(self, category: str) -> str:
        known = self.config.budget.allocations
        if category not in known:
            from cass_actions_core.catalogue import closest

            hint = closest(category, known)
            raise UserError(f"unknown category {category!r}" + (f" (did you mean {hint!r}?)" if hint else "")
                            + f"; the known categories are {', '.join(sorted(known)) or 'none'} (budget.allocations).")
        return category

    def pause(self, category: str | None = None, *, by: str = "user", reason: str | None = None) -> dict[str, Any]:
        """Hold queued work of ``category`` until :meth:`resume`; without a category, pause the whole daemon.

        While the daemon is paused no unit starts (a running unit finishes its current step and goes
        back to the queue, to resume at its next step), while planning, approvals and budget retries
        go on. Pausing what is already paused changes nothing. Returns :meth:`pauses`.
        """
        now = self.clock.now()
        if category is None:
            if self.daemon_paused() is None:
                info = {"by": by, "at": now.isoformat(), "reason": reason}
                with self.store.transaction():
                    self.store.set_state(DAEMON_PAUSED_KEY, info)
                    self.bus.emit("daemon.paused", info)
        else:
            self._known_category(category)
            if category not in self.paused_categories():
                with self.store.transaction():
                    self.store.set_state(PAUSED_KEY, sorted(self.paused_categories() | {category}))
                    self.bus.emit("category.paused", {"category": category, "by": by, "reason": reason})
        return self.pauses()

    def resume(self, category: str | None = None, *, by: str = "user", reason: str | None = None) -> dict[str, Any]:
        """Release a paused category; without a category, resume the whole daemon. ``reason`` goes into the
        ``daemon.resumed`` / ``category.resumed`` event. Returns :meth:`pauses`."""
        if category is None:
            paused = self.daemon_paused()
            if paused is not None:
                with self.store.transaction():
                    self.store.delete_state(DAEMON_PAUSED_KEY)
                    self.bus.emit("daemon.resumed", {"by": by, "reason": reason, "paused_by": paused.get("by"),
                                                     "paused_at": paused.get("at")})
        else:
            if category in self.paused_categories():
                with self.store.transaction():
                    self.store.set_state(PAUSED_KEY, sorted(self.paused_categories() - {category}))
                    self.bus.emit("category.resumed", {"category": category, "by": by, "reason": reason})
            else:
                self._known_category(category)
        self.poke()
        return self.pauses()

    # -- operator controls: units ---------------------------------------------------------
    def find_unit(self, unit_id: str) -> UnitRow:
        """The unit ``unit_id`` names: a full id or a unique prefix of at least :data:`MIN_UNIT_PREFIX`
        characters. :class:`UnknownItem` if it names none, :class:`UserError` if too short or ambiguous."""
        text = (unit_id or "").strip()
        found = self.store.find_units(text, limit=3) if text else []
        if len(found) == 1 and (found[0].id == text or len(text) >= MIN_UNIT_PREFIX):
            return found[0]
        if len(text) < MIN_UNIT_PREFIX:
            raise UserError(f"unit id {unit_id!r} is too short: give the full id or at least {MIN_UNIT_PREFIX} "
                            "characters of it (as `cass-actions queue` shows).")
        if not found:
            raise UnknownItem(f"no work unit with id {unit_id!r} (see `cass-actions queue`).")
        raise UserError(f"unit id {unit_id!r} is ambiguous: it starts {', '.join(u.id for u in found[:2])}"
                        + (" and more" if len(found) > 2 else "") + "; give more characters.")

    def cancel(self, unit_id: str, *, reason: str | None = None, by: str = "user") -> UnitRow:
        """Cancel a unit (full id or unique prefix of 4+ characters).

        A ``planned``, ``queued``, ``budget_blocked`` or ``awaiting_approval`` unit ends
        ``cancelled`` at once: the reason says who (and why), its summary is written,
        ``work_unit.cancelled`` emitted, a pending approval of it closed (``expired``) and any
        reservation released. For a ``running`` unit a cancel request is stored: the executor ends
        it ``cancelled`` after its current step (the cost of finished steps stays charged); the row
        returned is still ``running``, its reason ``cancel requested …``. A unit that ended already
        raises :class:`WrongState`; an unknown id :class:`UnknownItem`.
        """
        now = self.clock.now()
        found = self.find_unit(unit_id)
        with self.store.transaction():
            unit = self.store.get_unit(found.id) or found
            if unit.is_terminal:
                raise WrongState(f"unit {unit.id} ({unit.template_id}) is already {unit.status}"
                                 + (f" ({unit.reason})" if unit.reason else "") + ": there is nothing to cancel.")
            if unit.status == "running":
                request = self.executor.cancel_request(unit.id)
                if request is None:
                    request = {"by": by, "at": now.isoformat(), "reason": reason}
                    self.store.set_state(cancel_key(unit.id), request)
                    self.bus.emit("work_unit.cancel_requested", {"template_id": unit.template_id, "by": by,
                                                                 "reason": reason, "step": unit.next_step}, unit_id=unit.id)
                note = (f"cancel requested by {request.get('by')} at {request.get('at')}: the unit stops after its "
                        f"current step (step {unit.next_step + 1} of {len(unit.steps)})"
                        + (f"; {request['reason']}" if request.get("reason") else ""))
                result = replace(unit, reason=note)
            else:
                result = self.executor.cancel(unit, cancel_reason(by, reason), by=by)
        self.poke()
        return result

    # -- operator controls: money ---------------------------------------------------------
    def _budget_target(self, category: str | None, day: date | None) -> date:
        if category is not None:
            self._known_category(category)
        today = self.clock.today()
        if day is not None:
            if isinstance(day, datetime) or not isinstance(day, date):
                raise UserError(f"day: expected a date, got {day!r}.")
            if day < today:
                raise UserError(f"day {day.isoformat()} is over (today's budget day is {today.isoformat()}): "
                                "only today or a later budget day can be changed.")
        return today

    def _budget_result(self, category: str | None, day: date | None, today: date, **extra: Any) -> dict[str, Any]:
        target = day or today
        info = self.ledger.status(target)
        limit = info["daily_usd"] if category is None else info["categories"][category]["limit"]
        override = info["daily_override"] if category is None else info["categories"][category].get("override")
        return {"category": category, "budget_day": None if day is None else day.isoformat(), "standing": day is None,
                **extra, "limit": limit, "override": override, "budget": info}

    def set_budget(self, amount_usd: float, category: str | None = None, *, day: date | None = None,
                   by: str = "user") -> dict[str, Any]:
        """Set a budget limit at run time: the daily total (``category`` None, ``budget.daily_usd``) or a
        category's USD limit.

        ``day`` None: a standing override, for every budget day from today on until changed; a
        date: that budget day only (today or later; a past day is a :class:`UserError`). A day's
        own override beats a standing one. The change is stored with who and when, and the ledger
        (so the planner and the executor) uses it at once; money already spent is never rewritten.
        A daily total set by hand scales the categories without an override of their own, and the
        reserve, by their configured shares. Unknown category, negative or non-finite amount:
        :class:`UserError`. Returns the new limit, the override and the day's budget status.
        """
        if isinstance(amount_usd, bool) or not isinstance(amount_usd, (int, float)):
            raise UserError(f"amount: expected a number of USD, got {amount_usd!r}.")
        if not math.isfinite(amount_usd):
            raise UserError(f"amount: {amount_usd!r} is not a finite number of USD.")
        if amount_usd < 0:
            raise UserError(f"amount: {amount_usd:g} is negative; a budget limit is 0 or more USD.")
        if amount_usd > MAX_DAILY_USD:
            # The same ceiling the configuration has for budget.daily_usd: a typo must not open the purse.
            raise UserError(f"amount: {amount_usd:g} USD is more than {MAX_DAILY_USD:g} USD, the most a day's budget "
                            "may be (as budget.daily_usd in the configuration).")
        today = self._budget_target(category, day)
        now = self.clock.now()
        with self.store.transaction():
            override = self.store.add_budget_override(category=category, budget_day=day, from_day=day or today,
                                                      amount_usd=float(amount_usd), by=by, now=now)
            self.bus.emit("budget.changed", {"what": "set", "category": category, "amount_usd": override.amount_usd,
                                             "budget_day": None if day is None else day.isoformat(),
                                             "standing": day is None, "by": by})
        self.poke()  # budget-blocked work may fit now
        return self._budget_result(category, day, today, amount_usd=override.amount_usd, by=by,
                                   at=override.set_at.isoformat(), cleared=False)

    def clear_budget(self, category: str | None = None, *, day: date | None = None, by: str = "user") -> dict[str, Any]:
        """Remove an override :meth:`set_budget` made: the standing one (``day`` None) or that day's one;
        the limit falls back to the standing override, else the configuration. :class:`WrongState` if
        there is no such override."""
        today = self._budget_target(category, day)
        latest = next((o for o in self.store.budget_override_history()
                       if o.category == category and o.budget_day == day), None)
        what = "the daily total" if category is None else f"category {category!r}"
        if latest is None or latest.amount_usd is None:
            raise WrongState(f"{what} has no {'standing override' if day is None else f'override for {day.isoformat()}'} "
                             "to clear.")
        now = self.clock.now()
        with self.store.transaction():
            self.store.add_budget_override(category=category, budget_day=day, from_day=day or today, amount_usd=None,
                                           by=by, now=now)
            self.bus.emit("budget.changed", {"what": "clear", "category": category, "amount_usd": None,
                                             "budget_day": None if day is None else day.isoformat(),
                                             "standing": day is None, "by": by})
        self.poke()
        return self._budget_result(category, day, today, amount_usd=None, by=by, at=now.isoformat(), cleared=True)

    # -- operator controls: today's plan ----------------------------------------------------
    def _open_phase(self, day: date, phase: str) -> PhaseInstance:
        if phase not in PHASE_ORDER:
            raise UserError(f"phase {phase!r} is not one of {', '.join(PHASE_ORDER)}.")
        instance = self.phases.instance(day, phase)
        if to_utc(instance.end) <= to_utc(self.clock.now()):
            raise WrongState(f"the {phase} phase of {day.isoformat()} is over "
                             f"(it ended at {instance.end.astimezone(self.clock.tz):%Y-%m-%d %H:%M}); "
                             "only a phase under way or still to come can be planned.")
        return instance

    def _window(self, template_id: str, instance: PhaseInstance) -> datetime | None:
        """When a unit of ``template_id`` may start in ``instance``: its preferred window's opening, if later."""
        template = self.catalogue.template(template_id).template
        opens = window_opens(template, instance.start.astimezone(self.clock.tz), instance.end.astimezone(self.clock.tz))
        return opens if opens is not None and to_utc(opens) > to_utc(instance.start) else None

    def _place(self, unit: UnitRow, position: int | None, **fields: Any) -> UnitRow:
        """Put a unit that has not started at ``position`` (0 = first; None = last) among its phase's planned and
        queued units, in run order, renumbering the others (inside the caller's transaction).

        Units run by priority, then position: the placed unit takes the priority of the unit it now
        precedes (or follows, when last), so the order the person asked for is the order they run in."""
        now = self.clock.now()
        phase = fields.get("phase") or unit.phase
        peers = [u for u in self.store.list_units(local_date=unit.local_date, phase=phase, statuses=["planned", "queued"])
                 if u.id != unit.id]
        index = len(peers) if position is None else min(max(0, position), len(peers))
        order = [*peers[:index], unit, *peers[index:]]
        placed = unit
        for i, peer in enumerate(order):
            if peer.id == unit.id:
                neighbour = order[i + 1] if i + 1 < len(order) else (order[i - 1] if i else None)
                priority = neighbour.priority if neighbour is not None else unit.priority
                placed = self.store.set_unit_placement(unit.id, now=now, position=i, priority=priority, **fields)
            elif peer.position != i and peer.started_at is None:
                self.store.set_unit_placement(peer.id, now=now, position=i)
        return placed

    @staticmethod
    def _check_position(position: int | None) -> None:
        if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
            raise UserError(f"position: expected a whole number from 0 (first), got {position!r}.")

    def plan_add(self, template_id: str, phase: str, *, day: date | None = None, focus: str | None = None,
                 motivation: str | None = None, params: dict[str, dict[str, Any]] | None = None,
                 position: int | None = None, by: str = "user") -> UnitRow:
        """Add a unit of ``template_id`` to a date's plan (default: the current phase's date), in ``phase``.

        The checks of a plan file: an unknown template is :class:`UnknownItem` (naming the closest
        id); ``params`` (step index → overrides) are checked against each step's action schema
        (:class:`UserError`); a phase that is over is :class:`WrongState`. ``position`` is its place
        among the phase's units not yet run (0 = first; default: last). The unit is ``planned``
        (queued when its phase begins, or at the next tick if it is under way) and stays when the
        planner re-plans the date. Emits ``plan.changed``.
        """
        from cass_actions_core.planning.plans import _param_problems

        try:
            template = self.catalogue.template(template_id).template
        except KeyError as exc:
            raise UnknownItem(f"{exc.args[0]}.") from None
        self._check_position(position)
        now = self.clock.now()
        day = day or self.phases.instance_at(now).day
        instance = self._open_phase(day, phase)
        params = params or {}
        if not isinstance(params, dict):
            raise UserError(f"params: expected a mapping of step index ('0', '1' ...) to a mapping of parameters, got "
                            f"{params!r}.")
        problems = _param_problems(self.catalogue, {"template": template.id, "params": params}, "params")
        if problems:
            raise UserError(f"template {template.id!r}: invalid params: " + "; ".join(problems) + ".")
        with self.store.transaction():
            unit = self._insert_unit(day, phase, template.id, focus=focus,
                                     motivation=motivation or f"added to the plan by {by}", params=params,
                                     position=10_000, source="manual", wait_for_window=True)
            unit = self._place(unit, position)
            self.bus.emit("plan.changed", {"what": "add", "by": by, "unit_id": unit.id, "template_id": template.id,
                                           "date": day.isoformat(), "phase": phase, "position": unit.position,
                                           "focus": focus, "window_opens": None if unit.not_before is None
                                           else unit.not_before.isoformat(), "phase_start": instance.start.isoformat()},
                          unit_id=unit.id)
        self.poke()
        return unit

    def _not_started(self, unit: UnitRow, doing: str) -> None:
        if unit.is_terminal:
            raise WrongState(f"unit {unit.id} ({unit.template_id}) is already {unit.status}: it cannot be {doing}.")
        if unit.status not in ("planned", "queued") or unit.started_at is not None:
            raise WrongState(f"unit {unit.id} ({unit.template_id}) has started (status {unit.status}): it cannot be "
                             f"{doing}; `cancel` stops it.")

    def plan_remove(self, unit_id: str, *, by: str = "user") -> UnitRow:
        """Take a unit that has not started off its plan: it ends ``cancelled``, reason ``removed from the
        plan by …``. A unit that started or ended is :class:`WrongState` (use :meth:`cancel`)."""
        found = self.find_unit(unit_id)
        with self.store.transaction():
            unit = self.store.get_unit(found.id) or found
            self._not_started(unit, "removed from the plan")
            unit = self.executor.cancel(unit, f"removed from the plan by {by}", by=by)
            self.bus.emit("plan.changed", {"what": "remove", "by": by, "unit_id": unit.id, "template_id": unit.template_id,
                                           "date": unit.local_date.isoformat(), "phase": unit.phase}, unit_id=unit.id)
        self.poke()
        return unit

    def plan_move(self, unit_id: str, *, phase: str | None = None, position: int | None = None,
                  by: str = "user") -> UnitRow:
        """Move a unit that has not started to another phase of its date and/or another place in its phase's
        order (``position``: 0 = first; with only ``phase``: last there). Its preferred window is worked out
        again for the new phase. Started or ended units: :class:`WrongState`; a phase that is over too."""
        if phase is None and position is None:
            raise UserError("plan_move needs a phase or a position (or both).")
        self._check_position(position)
        found = self.find_unit(unit_id)
        with self.store.transaction():
            unit = self.store.get_unit(found.id) or found
            self._not_started(unit, "moved")
            target = phase or unit.phase
            instance = self._open_phase(unit.local_date, target)
            fields: dict[str, Any] = {}
            if target != unit.phase:
                fields["phase"] = target
                fields["not_before"] = self._window(unit.template_id, instance) if unit.template_id in \
                    self.catalogue.templates else None
                fields["data"] = {k: v for k, v in unit.data.items() if k != "deadline"}  # the old phase's deadline
            moved = self._place(unit, position, **fields)
            self.bus.emit("plan.changed", {"what": "move", "by": by, "unit_id": moved.id, "template_id": moved.template_id,
                                           "date": moved.local_date.isoformat(), "from_phase": unit.phase,
                                           "phase": moved.phase, "from_position": unit.position,
                                           "position": moved.position}, unit_id=moved.id)
        self.poke()
        return moved

    # -- approvals ---------------------------------------------------------------------
    def approve(self, approval_id: str, *, by: str = "user", note: str | None = None) -> Any:
        """Approve a pending approval (its full id, or a unique prefix of 4+ characters); its unit is re-queued and continues."""
        return self._resolve(approval_id, True, by, note)

    def reject(self, approval_id: str, *, by: str = "user", note: str | None = None) -> Any:
        """Reject a pending approval; its unit fails with the reason."""
        return self._resolve(approval_id, False, by, note)

    def _resolve(self, approval_id: str, approved: bool, by: str, note: str | None) -> Any:
        wanted = approval_id.strip()
        if 4 <= len(wanted) < 32:  # a prefix, as units take (full ids are 32 hex characters)
            matches = [a.id for a in self.store.list_approvals() if a.id.startswith(wanted)]
            if len(matches) > 1:
                raise UserError(f"approval id prefix {wanted!r} is ambiguous: it starts {len(matches)} approvals; "
                                "give more characters.")
            wanted = matches[0] if matches else wanted
        row = self.store.resolve_approval(wanted, approved, by, note, self.clock.now())
        self.bus.emit("approval.resolved", {"approval_id": row.id, "status": row.status, "by": by, "note": note},
                      unit_id=row.unit_id)
        self._handle_approvals(self.clock.now())
        self.poke()
        return row

    # -- queries -----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Where things stand: phase, plan, unit counts, budget, approvals, pauses."""
        now = self.clock.now()
        instance = self.phases.instance_at(now)
        today = instance.day
        units = self.store.list_units(local_date=today)
        counts: dict[str, int] = {}
        for u in units:
            counts[u.status] = counts.get(u.status, 0) + 1
        plan = self.store.get_plan(today)
        lease = self.store.get_lease()
        return {
            "daemon_id": self.config.daemon_id,
            "now": now.isoformat(),
            "phase": instance.phase.value,
            "phase_day": today.isoformat(),
            "next_transition": self.phases.next_transition(now).start.isoformat(),
            "plan": None if plan is None else {"source": plan.source, "reason": plan.reason, "intention": plan.intention,
                                               "dropped": plan.data.get("dropped", []),
                                               "decisions": plan.data.get("decisions", [])},
            "units": counts,
            "today": [{"id": u.id, "phase": u.phase, "template_id": u.template_id, "status": u.status, "focus": u.focus,
                       "motivation": u.motivation} for u in units],
            "parked": [{"id": u.id, "template_id": u.template_id, "status": u.status, "reason": u.reason}
                       for u in self.store.list_units(statuses=["budget_blocked", "awaiting_approval"])],
            "budget": self.ledger.status(self.clock.today()),
            "pending_approvals": len(self.store.list_approvals(status="pending")),
            "paused_categories": sorted(self.paused_categories()),
            "daemon_paused": self.daemon_paused(),
            "lease": None if lease is None else {"holder": lease.holder, "pid": lease.pid, "host": lease.hostname,
                                                 "expires_at": lease.expires_at.isoformat()},
        }

    def units(self, **filters: Any) -> list[UnitRow]:
        """Units matching ``local_date``, ``phase``, ``statuses``, ``template_id``."""
        return self.store.list_units(**filters)

    def history(self, **filters: Any) -> list[Any]:
        """Work summaries by ``local_date``, ``phase``, ``category``, ``template_id``, ``text``."""
        return self.store.query_summaries(**filters)

    # -- simulation --------------------------------------------------------------------
    async def simulate_until(self, end: datetime, on_tick: Any = None) -> list[TickReport]:
        """Drive the loop on a :class:`VirtualClock` until ``end``, waking at each point of interest.

        Each step takes its learned duration of virtual time (so a phase's work ends
        when it would in a real day); between steps the clock jumps from one wake-up
        (phase boundary, local midnight, approval expiry) to the next, so a day takes seconds.
        """
        if not isinstance(self.clock, VirtualClock):
            raise TypeError("simulate_until needs a VirtualClock")
        self.executor.advance_clock = True
        reports = []
        while True:
            report = await self.tick()
            reports.append(report)
            if on_tick is not None:
                on_tick(report)
            # Work moves the virtual clock: after a tick that ran units, look again at once
            # (a window may have opened meanwhile); a wake-up may also be past already.
            wake = self.clock.now() if report.ran else max(self.next_wakeup(), self.clock.now(), key=to_utc)
            if to_utc(wake) >= to_utc(end):
                # Stop at `end` without starting the phase that begins there, but
                # close what ended with it (expiries), so no unit is left unexplained.
                if to_utc(self.clock.now()) < to_utc(end):  # the last step may have run past it
                    await self.clock.run_until(end)
                now = self.clock.now()
                self._handle_approvals(now)
                self._expire_stale(now)
                break
            await self.clock.run_until(wake)
        await self.bus.drain()
        await self.providers.aclose()
        return reports

    # -- approvals, listed -------------------------------------------------------------
    def approvals(self, status: str | None = "pending") -> list[Any]:
        """Approvals with ``status``, oldest request first: by default those waiting for a human yes.

        ``status`` is ``"pending"``, ``"approved"``, ``"rejected"``, ``"expired"``, or
        ``None`` for every approval; another value raises :class:`ValueError`. The rows
        are :class:`~cass_actions_core.store.ApprovalRow` (``id``, ``unit_id``,
        ``step_index``, ``action_id``, ``status``, ``reason``, ``requested_at``,
        ``expires_at``, ``resolved_at``, ``resolved_by``, ``note``), what
        ``cass-actions approvals`` prints; answer one with :meth:`approve` or
        :meth:`reject` and its ``id``.
        """
        return self.store.list_approvals(status=status)
