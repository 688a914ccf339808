"""Commands that drive or query a daemon: run, simulate, status, queue, history, budget (show, set,
clear), pause/resume, cancel, trigger, plan (show, add, remove, move), approvals/approve/reject,
run-action, init.

The controls (cancel, pause/resume, budget set/clear, plan add/remove/move) call the Runtime's
methods, which write to the store: a running daemon (another process) honours them at its next
tick, or between two steps of a running unit."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cass_actions_core.cli.output import print_json, print_table, usd
from cass_actions_core.cli.state import STORE_NAME, CLIState, global_options, json_option
from cass_actions_core.problems import UserError
from cass_actions_core.text import clip

if TYPE_CHECKING:
    from cass_actions_core.runtime import Runtime

SIM_MARKER = ".cass-actions-simulation"


def rehearsal_config(config: Any) -> Any:
    """The configuration a rehearsal (``simulate``, ``run --speed``) runs with: its store is always the
    data folder's SQLite file, whatever ``store.url`` says, so simulated days never move a real daemon's
    calendar, plans or money in a shared database."""
    from dataclasses import replace

    return config if config.store.url is None else replace(config, store=replace(config.store, url=None))


def _say_rehearsal_store(config: Any, data_dir: Path) -> None:
    if config.store.url is not None:
        click.echo(f"note: a rehearsal keeps its own store in {data_dir / STORE_NAME}; store.url (a shared database) "
                   "is not used by simulate or run --speed.", err=True)
STATUSES = ["planned", "queued", "running", "completed", "failed", "budget_blocked", "awaiting_approval",
            "expired", "cancelled", "abandoned"]


@contextmanager
def open_runtime(state: CLIState, *, strict: bool = False, check: bool = False, create: bool = False,
                 **kwargs: Any) -> Iterator[Runtime]:
    """Build a runtime for a command and close its store afterwards.

    Queries (``check=False``) work whatever state the packs are in; commands that run
    work pass ``check=True`` and refuse a catalogue with problems. Only commands that
    start a daemon's life here (``create=True``) may create a missing store.
    """
    from cass_actions_core.runtime import Runtime

    if not create:
        state.require_store()
    if "clock" not in kwargs:
        # A rehearsal (`run --speed`, a fleet's `worker --speed`) lives on a virtual timeline: controls and
        # queries must act on its day and phase, not the wall clock's.
        from cass_actions_core.cli.events_cmds import daemon_clock
        from cass_actions_core.store import is_postgres_url, open_store

        config = state.config()
        if (state.data_dir / SIM_MARKER).exists() and (state.data_dir / STORE_NAME).exists():
            with open_store(state.data_dir / STORE_NAME, config.daemon_id) as store:
                kwargs["clock"] = daemon_clock(state, config, store)
        elif is_postgres_url(config.store.url):
            kwargs["clock"] = daemon_clock(state, config, None)

    config = state.config()
    if (state.data_dir / SIM_MARKER).exists() and (state.data_dir / STORE_NAME).exists():
        config = rehearsal_config(config)  # a rehearsal's folder: its own store, as simulate and run --speed use
    runtime = Runtime(config, data_dir=state.data_dir, strict=strict, check=check or strict, **kwargs)
    try:
        yield runtime
    finally:
        runtime.close()


def check_provider_option(state: CLIState, provider: str | None) -> None:
    """``--provider`` must name a registered LLM provider: a usage error (exit 2) otherwise."""
    if provider is None:
        return
    registry = state.catalogue().providers
    if provider not in registry:
        raise click.BadParameter(f"unknown provider {provider!r}; registered: {', '.join(registry.names)}",
                                 param_hint="'--provider'")


def require_llm_ready(state: CLIState, provider: str | None, action_ids: Sequence[str] | None = None) -> None:
    """Refuse to start work whose LLM calls cannot succeed (the Anthropic provider without an API key):
    one error now instead of every unit failing. ``action_ids``: only these actions (no planning call)."""
    from cass_actions_core.llm.registry import providers_not_ready

    check_provider_option(state, provider)
    config = state.config() if provider is None else state.config().with_provider(provider)
    catalogue = state.catalogue()
    catalogue.check(strict=True)  # a broken catalogue is the first thing to fix: report it, not the key
    actions = [a.definition for i, a in catalogue.actions.items() if action_ids is None or i in action_ids]
    problems = providers_not_ready(catalogue.providers, config.llm, actions, planner=action_ids is None and config.planner.enabled)
    if problems:
        raise UserError(" ".join(problems) + " Nothing was started; to rehearse without a key, pass --provider offline.")


def _statuses(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--status`` values, each possibly a comma list; a usage error naming the closest status for a typo."""
    import difflib

    out: list[str] = []
    for value in values:
        for status in filter(None, (s.strip() for s in value.split(","))):
            if status not in STATUSES:
                near = difflib.get_close_matches(status, STATUSES, n=1)
                raise click.BadParameter(f"{status!r} is not a unit status" + (f" (did you mean {near[0]!r}?)" if near else "")
                                         + f"; one of: {', '.join(STATUSES)}", param_hint="'--status'")
            out.append(status)
    return tuple(out)


def _parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _timeline_printer(runtime: Runtime) -> Any:
    """Print every event stored since the last call, one line each."""
    last = {"id": max((e.id for e in runtime.store.list_events()), default=0)}
    names: dict[str, str] = {}

    def show() -> None:
        for event in runtime.store.list_events(since_id=last["id"]):
            last["id"] = event.id
            line = _event_line(runtime, event, names)
            if line:
                click.echo(line)

    return show


def _event_line(runtime: Runtime, event: Any, names: dict[str, str]) -> str | None:
    d = event.data
    at = event.at.astimezone(runtime.clock.tz).strftime("%Y-%m-%d %H:%M")
    if event.unit_id and event.unit_id not in names:
        unit = runtime.store.get_unit(event.unit_id)
        names[event.unit_id] = unit.template_id if unit else event.unit_id[:8]
    who = names.get(event.unit_id or "", "")
    t = event.type
    if t == "day_phase.changed":
        return f"{at}  ── {d['phase']} of {d['day']} begins{' (late)' if d.get('late') else ''}"
    if t == "day.planned":
        lines = [f"{at}  plan for {d['date']}: {d['units']} unit(s) ({d['source']}: {d['reason']})"]
        if d.get("intention"):
            lines.append(f"{at}    intention: {d['intention']}")
        for decision in d.get("decisions") or []:
            lines.append(f"{at}    choice: {decision}")
        for drop in d.get("dropped") or []:
            lines.append(f"{at}    dropped: {drop}")
        return "\n".join(lines)
    if t == "work_unit.started":
        unit = runtime.store.get_unit(event.unit_id) if event.unit_id else None
        if unit is None or not (unit.focus or unit.motivation) or d.get("step"):
            return None
        return f"{at}  start      {who} — focus: {clip(unit.focus or '', 80)}; why: {clip(unit.motivation or '', 80)}"
    if t in ("work_unit.completed", "work_unit.failed", "work_unit.expired", "work_unit.abandoned", "work_unit.cancelled"):
        reason = f" — {d['reason']}" if d.get("reason") else ""
        return f"{at}  {t.split('.')[1]:<10} {who}{reason}"
    if t == "work_unit.parked":
        return f"{at}  parked     {who} — {d['status']}: {d['reason']}"
    if t == "action.completed":
        return f"{at}    ✓ {d['action_id']} ({usd(d.get('cost_usd') or 0)}) {(d.get('summary') or '')[:90]}"
    if t == "action.failed":
        return f"{at}    ✗ {d['action_id']}: {d.get('error')}"
    if t == "approval.requested":
        return f"{at}  approval   {who}: {d['action_id']} needs a yes (id {d['approval_id']})"
    return None


def _summary_tables(runtime: Runtime, start: date, end: date) -> dict[str, Any]:
    # Day by day, newest first (each a look-up by date), not the whole history filtered: a long-lived
    # simulation folder holds months of summaries.
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    summaries = [s for day in reversed(days) for s in runtime.history(local_date=day)]
    counts: dict[str, int] = {}
    cost = 0.0
    per_category: dict[str, float] = {}
    artifacts = []
    for s in summaries:
        counts[s.status] = counts.get(s.status, 0) + 1
        cost += s.data["cost_usd"]
        per_category[s.category] = per_category.get(s.category, 0.0) + s.data["cost_usd"]
        artifacts += [a for a in s.data["artifacts"]]
    return {"units": len(summaries), "by_status": counts, "cost_usd": round(cost, 6),
            "cost_by_category": {k: round(v, 6) for k, v in sorted(per_category.items())},
            "artifacts": artifacts,
            "summaries": [{"slug": s.slug, "template_id": s.template_id, "status": s.status, "reason": s.data.get("reason"),
                           "cost_usd": s.data["cost_usd"]} for s in summaries]}


@click.command("simulate")
@global_options
@json_option
@click.option("--days", type=click.IntRange(1, 366), default=1, show_default=True, help="How many days to simulate.")
@click.option("--start", "start_text", metavar="YYYY-MM-DD", help="First local date (default: today).")
@click.option("--provider", default="offline", show_default=True, help="LLM provider for every action.")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False), help="A plan file for the first day.")
@click.option("--fresh", is_flag=True, help="Start from an empty store (only in a folder a simulation created).")
@click.pass_obj
def simulate_command(state: CLIState, as_json: bool, days: int, start_text: str | None, provider: str,
                     plan_file: str | None, fresh: bool) -> None:
    """Simulate DAYS days on a virtual clock in the data directory (offline LLM by default).

    Runs from the morning boundary of --start to the morning after the last day. Each
    day is planned by the planner (the offline provider answers its call), each unit
    waits for its preferred window and each step takes its learned duration of virtual
    time, so a simulated day shows when the work would happen. Prints a timeline and a
    closing summary; the store keeps a summary for every unit, including failed, parked
    and expired ones.
    """
    from cass_actions_core.clock import VirtualClock, to_utc
    from cass_actions_core.phases import DayPhases
    from cass_actions_core.planning import load_plan_file
    from cass_actions_core.runtime import Runtime
    from cass_actions_core.workspace import seed_demo_workspace

    data_dir = state.data_dir
    config = state.config()
    if not as_json:
        _say_rehearsal_store(config, data_dir)
    config = rehearsal_config(config)
    require_llm_ready(state, provider)
    store_file = data_dir / "cass-actions.sqlite"
    if fresh and data_dir.exists():
        if store_file.exists() and not (data_dir / SIM_MARKER).exists():
            raise click.UsageError(f"{data_dir} holds a store that no simulation created; --fresh refuses to delete it. "
                                   "Use another --data-dir.")
        for path in data_dir.glob("cass-actions.sqlite*"):
            path.unlink()
        shutil.rmtree(data_dir / "workspace", ignore_errors=True)
    if store_file.exists() and not (data_dir / SIM_MARKER).exists():
        # Simulated days would move a real daemon's calendar, plans and budget.
        raise click.UsageError(f"{data_dir} holds a daemon's store that no simulation created; simulate only in an "
                               "empty folder or one an earlier simulation made (use another --data-dir).")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        if not store_file.exists():
            (data_dir / SIM_MARKER).write_text("created by cass-actions simulate\n")
    except OSError as exc:
        raise click.UsageError(f"{data_dir}: cannot use it as the data directory: {exc.strerror or exc}") from None
    phases = DayPhases(config.phases, config.timezone)
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(config.timezone)
    start_day = _parse_date(start_text) or datetime.now(tz).date()
    begin = phases.boundary(start_day, "morning")
    end = phases.boundary(start_day + timedelta(days=days), "morning")
    clock = VirtualClock(tz, begin)
    runtime = Runtime(config, data_dir=data_dir, clock=clock, provider=provider)
    try:
        seeded = seed_demo_workspace(runtime.workspace, now=clock.now())
        if seeded and not as_json:
            click.echo(f"demo workspace created in {runtime.workspace}: {', '.join(seeded)}")
        if plan_file:
            plan = load_plan_file(plan_file, runtime.catalogue, start_day)
            runtime.store_plan(plan.day, plan)
        show = _timeline_printer(runtime) if not as_json else (lambda: None)
        if not as_json:
            click.echo(f"simulating {days} day(s) from {begin:%Y-%m-%d %H:%M} {config.timezone} "
                       f"with provider {provider!r} in {data_dir}")

        async def drive() -> None:
            runtime.acquire_lease()
            try:
                if as_json or not sys.stderr.isatty():
                    # No bar to draw: rich's progress module is not even imported (a third of a second).
                    await runtime.simulate_until(end, on_tick=lambda report: show())
                else:
                    from rich.console import Console
                    from rich.progress import BarColumn, Progress, TextColumn

                    total = (to_utc(end) - to_utc(begin)).total_seconds()
                    with Progress(TextColumn("[dim]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                  transient=True, console=Console(stderr=True)) as progress:
                        task = progress.add_task("virtual time", total=total)

                        def on_tick(report: Any) -> None:
                            show()
                            progress.update(task, completed=(to_utc(clock.now()) - to_utc(begin)).total_seconds(),
                                            description=f"virtual time {clock.now():%Y-%m-%d %H:%M}")

                        await runtime.simulate_until(end, on_tick=on_tick)
                show()
            finally:
                runtime.release_lease()

        asyncio.run(drive())
        result = _summary_tables(runtime, start_day, start_day + timedelta(days=days))
        result["budget"] = runtime.ledger.status(clock.today() - timedelta(days=1))
        if as_json:
            print_json(result)
            return
        click.echo("")
        print_table("Work units", ["unit", "status", "cost", "reason"],
                    [(s["slug"].split("/", 2)[2], s["status"], usd(s["cost_usd"]), clip(s["reason"] or "", 70))
                     for s in result["summaries"]], justify_right=["cost"])
        print_table("Spend by category", ["category", "spent"],
                    [(k, usd(v)) for k, v in result["cost_by_category"].items()], justify_right=["spent"])
        files = sorted({a["path"] for a in result["artifacts"] if a.get("path")})
        if files:
            click.echo(f"Files written or updated in the workspace ({runtime.workspace}):")
            for path in files:
                click.echo(f"  - {path}")
        statuses = ", ".join(f"{v} {k}" for k, v in sorted(result["by_status"].items()))
        click.echo(f"\n{result['units']} unit(s): {statuses}; total spent {usd(result['cost_usd'])}. "
                   f"Store: {store_file}")
    finally:
        runtime.close()


@click.command("run")
@global_options
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False), help="A plan file for today.")
@click.option("--speed", type=click.FloatRange(min=1, max=1_000_000), default=None,
              help="Rehearse: run on an accelerated clock, SPEED virtual seconds per real second (only in a data "
                   "directory a simulation or rehearsal made). Restarts continue the same timeline.")
@click.option("--start", "start_text", metavar="YYYY-MM-DD", help="With --speed: the first local date (default: today).")
@click.option("--provider", help="LLM provider for every action (e.g. offline, for a rehearsal without an API key).")
@click.option("--worker", is_flag=True, hidden=True, help="Be the supervised worker (run starts it itself).")
@click.pass_obj
def run_command(state: CLIState, plan_file: str | None, speed: float | None, start_text: str | None,
                provider: str | None, worker: bool) -> None:
    """Run the daemon: the scheduler loop on the system clock, until SIGINT or SIGTERM.

    The scheduler runs in a worker process that run supervises: a worker whose event
    loop stalls (a handler blocking it) or that dies is replaced, and the step it was in
    is charged and then run again or abandoned, with the reason (docs/reliability.md).
    Refuses to start if the catalogue has any problem, a pack failed to load, or another
    process holds this daemon's lease.
    """
    from cass_actions_core.planning import load_plan_file
    from cass_actions_core.runtime import STOP_GRACE_SECONDS, Runtime
    from cass_actions_core.store import LeaseHeldError
    from cass_actions_core.store import store_location
    from cass_actions_core.supervisor import EXIT_RESTART, WorkerLink, record_stall, run_worker, supervise

    config = state.config()
    if start_text and speed is None:
        raise click.UsageError("--start needs --speed (a rehearsal); a real daemon runs on today's clock")
    if speed is not None or _rehearsing(state):
        if not worker:
            _say_rehearsal_store(config, state.data_dir)
        config = rehearsal_config(config)
    if not worker:
        if speed is not None:
            _rehearsal_clock(state, config, speed, start_text)  # refuse early, in one line, before any worker
        require_llm_ready(state, provider)
        args = state.child_args("run")
        if provider:
            args += ["--provider", provider]
        first = ["--plan", str(Path(plan_file).expanduser().resolve())] if plan_file else []
        if speed is not None:
            first += ["--speed", f"{speed:g}"]
        location = store_location(config.store.url, state.data_dir)
        code = supervise(args, first_args=first, stall_limit=config.scheduler.stall_limit_seconds,
                         on_stall=lambda stall: record_stall(location, [config.daemon_id], stall))
        click.get_current_context().exit(code)
    link = WorkerLink.from_env()
    if link is not None:
        link.die_with_parent()
    clock = _rehearsal_clock(state, config, speed, start_text) if speed is not None or _rehearsing(state) else None
    runtime = Runtime(config, data_dir=state.data_dir, plugins=[("cli-timeline", _TimelinePlugin())], clock=clock,
                      provider=provider, lease_holder=link.holder if link else None,
                      lease_pid=link.lease_pid if link else None)
    try:
        if plan_file:
            today = runtime.phases.instance_at(runtime.clock.now()).day
            plan = load_plan_file(plan_file, runtime.catalogue, today)
            if plan.day < today:
                raise click.ClickException(f"{plan_file} plans {plan.day}, which is over (today is {today}); "
                                           "only today or a later date can be planned. Nothing was started.")
            try:
                runtime.acquire_lease()  # never change a plan under another running daemon
            except LeaseHeldError as exc:
                raise click.ClickException(str(exc)) from None
            runtime.store_plan(plan.day, plan)

        async def serve() -> None:
            # Handlers first: a signal that arrives while the runtime starts still stops it cleanly.
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                await runtime.start()
            except LeaseHeldError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(f"cass-actions: daemon {runtime.config.daemon_id!r} running "
                       f"(data dir {state.data_dir}, time zone {runtime.config.timezone}); Ctrl-C stops it.", err=True)
            beat = asyncio.create_task(link.beat()) if link is not None else None
            waiter = asyncio.create_task(stop.wait())
            loop_task = runtime._task
            assert loop_task is not None
            done, _ = await asyncio.wait({waiter, loop_task}, return_when=asyncio.FIRST_COMPLETED)
            if loop_task in done:
                waiter.cancel()
                if not loop_task.cancelled():  # cancelled: the lease was lost (runtime.lease_lost says so)
                    loop_task.result()  # re-raise a crash of the loop
            if runtime.restart_reason:
                click.echo(f"cass-actions: {runtime.restart_reason}; this worker is replaced", err=True)
            else:
                click.echo(f"cass-actions: stopping (the current step gets {STOP_GRACE_SECONDS:g} s to finish) ...",
                           err=True)
            await runtime.stop()
            if beat is not None:
                beat.cancel()
            click.echo("cass-actions: stopped.", err=True)
            # A handler deaf to cancellation may still be running as its own task: asyncio.run would wait
            # for it forever, so give it a moment, then leave without it.
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
            if others:
                _done, pending = await asyncio.wait(others, timeout=0.5)
                if pending:
                    runtime.restart_reason = runtime.restart_reason or "a handler ignored the cancellation at shutdown"
            if runtime.restart_reason:
                # The abandoned handler is still running, deaf to cancellation: leave without
                # waiting for it (asyncio.run would), with everything written and the lease released.
                runtime.close()
                sys.stderr.flush()
                os._exit(0 if stop.is_set() else EXIT_RESTART)
            if runtime.lease_lost:
                raise click.ClickException(runtime.lease_lost)

        run_worker(serve())
    finally:
        runtime.close()


REHEARSAL_KEY = "rehearsal_clock"


def _rehearsing(state: CLIState) -> bool:
    """Whether the data directory's store runs on a rehearsal clock (set by an earlier ``run --speed``)."""
    from cass_actions_core.store import open_store

    path = state.data_dir / STORE_NAME
    if not (state.data_dir / SIM_MARKER).exists() or not path.exists():
        return False
    with open_store(path, state.config().daemon_id) as store:
        return store.get_state(REHEARSAL_KEY) is not None


def _rehearsal_clock(state: CLIState, config: Any, speed: float | None, start_text: str | None) -> Any:
    """The accelerated clock of a rehearsal, continued from the store, or started (``--start``, ``--speed``)."""
    import time as wall
    from zoneinfo import ZoneInfo

    from cass_actions_core.clock import AcceleratedClock, to_utc
    from cass_actions_core.phases import DayPhases
    from cass_actions_core.store import open_store

    data_dir = state.data_dir
    path = data_dir / STORE_NAME
    if path.exists() and not (data_dir / SIM_MARKER).exists():
        raise click.UsageError(f"{data_dir} holds a daemon's store that no simulation or rehearsal created; "
                               "rehearse (run --speed) only in an empty folder or one a rehearsal made.")
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / SIM_MARKER).write_text("created by cass-actions simulate or a rehearsal (run --speed)\n")
    tz = ZoneInfo(config.timezone)
    with open_store(path, config.daemon_id) as store:
        saved = store.get_state(REHEARSAL_KEY)
        now_real = wall.time()
        if saved is not None:
            clock = AcceleratedClock.from_setting(tz, saved)
            if start_text:
                raise click.UsageError(f"{data_dir} already rehearses from {saved['start']}; --start applies to a new "
                                       "rehearsal only (use another --data-dir)")
            if speed is None or speed == saved["speed"]:
                return clock
            start = to_utc(clock.now())  # a new speed from here on, the same timeline
        else:
            day = _parse_date(start_text) or datetime.now(tz).date()
            start = to_utc(DayPhases(config.phases, config.timezone).boundary(day, "morning"))
        assert speed is not None
        store.set_state(REHEARSAL_KEY, {"start": start.isoformat(), "epoch": now_real, "speed": speed})
        return AcceleratedClock(tz, start=start, epoch=now_real, speed=speed)


class _TimelinePlugin:
    """Prints each event as a timeline line (``run``'s console output), via ``on_event``."""

    from cass_actions_core import hookimpl

    @hookimpl
    def on_event(self, event: Any) -> None:
        """Print one line per event on stderr."""
        data = json.dumps(event.data, default=str)
        click.echo(f"{event.at:%Y-%m-%d %H:%M:%S} {event.type} {event.unit_id or ''} {data[:160]}", err=True)


@click.command("status")
@global_options
@json_option
@click.pass_obj
def status_command(state: CLIState, as_json: bool) -> None:
    """Where things stand: phase, plan, units by status, parked work, budget, lease."""
    with open_runtime(state) as runtime:
        info = runtime.status()
    if as_json:
        print_json(info)
        return
    click.echo(f"daemon {info['daemon_id']}: {info['phase']} of {info['phase_day']} (next phase at {info['next_transition']})")
    plan = info["plan"]
    click.echo(f"plan: {plan['source']} — {plan['reason']}" if plan else "plan: none yet for this date")
    if plan and plan.get("intention"):
        click.echo(f"intention: {plan['intention']}")
    for item in info.get("today", []):
        click.echo(f"  {item['phase']:<9} {item['template_id']:<24} {item['status']:<17} {clip(item['focus'] or '', 60)}"
                   + (f" — {clip(item['motivation'], 60)}" if item.get("motivation") else ""))
    click.echo("units: " + (", ".join(f"{v} {k}" for k, v in sorted(info["units"].items())) or "none"))
    for p in info["parked"]:
        click.echo(f"  parked {p['id'][:8]} {p['template_id']}: {p['status']} — {p['reason']}")
    b = info["budget"]["totals"]
    click.echo(f"budget {info['budget']['budget_day']}: spent {usd(b['spent'])}, reserved {usd(b['reserved'])}, "
               f"available {usd(b['available'])}")
    click.echo(f"pending approvals: {info['pending_approvals']}; paused categories: {', '.join(info['paused_categories']) or 'none'}")
    if info.get("daemon_paused"):
        click.echo(_daemon_paused_line(info["daemon_paused"]))
    lease = info["lease"]
    click.echo(f"scheduler: {'held by pid %s on %s until %s' % (lease['pid'], lease['host'], lease['expires_at']) if lease else 'not running'}")


def unit_dict(u: Any) -> dict[str, Any]:
    """A unit as `queue --json` (and the HTTP API) shows it."""
    return {"id": u.id, "date": u.local_date.isoformat(), "phase": u.phase, "template_id": u.template_id,
            "status": u.status, "reason": u.reason, "category": u.category, "next_step": u.next_step,
            "steps": [s["action"] for s in u.steps], "estimated_cost_usd": u.estimated_cost_usd,
            "focus": u.focus, "motivation": u.motivation}


def plan_dict(day: date | str | None, row: Any, units: list[dict[str, Any]]) -> dict[str, Any]:
    """A date's plan as `plan --json` (and the HTTP API) shows it: every key present, None where there is no plan."""
    when = day.isoformat() if isinstance(day, date) else day
    if row is None:
        return {"date": when, "source": None, "reason": None, "intention": None, "plan": None, "units": units}
    return {"date": when, "source": row.source, "reason": row.reason, "intention": row.intention, "plan": row.data,
            "units": units}


@click.command("queue")
@global_options
@json_option
@click.option("--date", "date_text", metavar="YYYY-MM-DD", help="Only this plan date.")
@click.option("--phase", type=click.Choice(["morning", "afternoon", "evening", "night"]))
@click.option("--status", "statuses", multiple=True, metavar="STATUS[,STATUS…]", callback=lambda ctx, param, value: _statuses(value),
              help=f"Only these statuses: repeat the option or separate them with commas ({', '.join(STATUSES)}).")
@click.argument("more_statuses", nargs=-1, metavar="[STATUS]…", callback=lambda ctx, param, value: _statuses(value))
@click.pass_obj
def queue_command(state: CLIState, as_json: bool, date_text: str | None, phase: str | None, statuses: tuple[str, ...],
                  more_statuses: tuple[str, ...]) -> None:
    """List work units (planned, queued, parked and finished) with their reasons.

    Statuses may also follow as arguments: `queue failed expired` is `queue --status failed,expired`.
    """
    statuses = statuses + more_statuses
    with open_runtime(state) as runtime:
        units = runtime.units(local_date=_parse_date(date_text), phase=phase, statuses=list(statuses) or None)
    rows = [unit_dict(u) for u in units]
    if as_json:
        print_json(rows)
        return
    print_table(None, ["id", "date", "phase", "template", "status", "step", "reason"],
                [(r["id"][:8], r["date"], r["phase"], r["template_id"], r["status"], f"{r['next_step']}/{len(r['steps'])}",
                  (r["reason"] or "")[:80]) for r in rows])


@click.command("history")
@global_options
@json_option
@click.option("--date", "date_text", metavar="YYYY-MM-DD")
@click.option("--phase", type=click.Choice(["morning", "afternoon", "evening", "night"]))
@click.option("--category")
@click.option("--template", "template_id")
@click.option("--text", help="Only summaries containing this text.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=None)
@click.pass_obj
def history_command(state: CLIState, as_json: bool, date_text: str | None, phase: str | None, category: str | None,
                    template_id: str | None, text: str | None, limit: int | None) -> None:
    """Work summaries: what ran, why, results, costs; every skip, block and expiry with its reason."""
    with open_runtime(state) as runtime:
        rows = runtime.history(local_date=_parse_date(date_text), phase=phase, category=category,
                               template_id=template_id, text=text, limit=limit)
    if as_json:
        print_json([r.data for r in rows])
        return
    for r in rows:
        click.echo(f"{r.slug}  [{r.status}]  {usd(r.data['cost_usd'])}")
        click.echo(f"  {r.text}")
    click.echo(f"{len(rows)} summary(ies)")


def _override_text(override: dict[str, Any] | None) -> str:
    if not override:
        return ""
    scope = "standing" if override["standing"] else f"for {override['budget_day']}"
    return f"{scope}, by {override['by']} at {override['at'][:16].replace('T', ' ')}"


@click.group("budget", invoke_without_command=True)
@global_options
@json_option
@click.option("--date", "date_text", metavar="YYYY-MM-DD", help="Budget day (default: today, local).")
@click.pass_context
def budget_command(ctx: click.Context, as_json: bool, date_text: str | None) -> None:
    """The day's budget per category: limit (and who overrode it), spent, reserved, available; and the reserve.

    `budget set` and `budget clear` change a limit at run time (a running daemon follows at once).
    """
    if ctx.invoked_subcommand is not None:
        return
    state = ctx.ensure_object(CLIState)
    with open_runtime(state) as runtime:
        info = runtime.ledger.status(_parse_date(date_text) or runtime.clock.today())
    if as_json:
        print_json(info)
        return
    daily = f"daily {usd(info['daily_usd'])}" + (f", {_override_text(info['daily_override'])}" if info.get("daily_override") else "")
    print_table(f"Budget for {info['budget_day']} ({daily})", ["category", "limit", "spent", "reserved", "available", "override"],
                [(k, usd(v["limit"]), usd(v["spent"]), usd(v["reserved"]), usd(v["available"]), _override_text(v.get("override")))
                 for k, v in info["categories"].items()],
                justify_right=["limit", "spent", "reserved", "available"])
    r = info["reserve"]
    click.echo(f"reserve: {usd(r['limit'])} ({usd(r['used'])} used; only critical work may draw on it)")


def _amount(text: str) -> float:
    try:
        return float(text.strip().lstrip("$"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an amount of USD (for example 2.50)", param_hint="AMOUNT") from None


def _print_budget_change(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    what = "daily total" if result["category"] is None else f"{result['category']} limit"
    when = "from today on (standing)" if result["standing"] else f"for {result['budget_day']}"
    if result["cleared"]:
        click.echo(f"{what} override {when} cleared by {result['by']}; the limit is now {usd(result['limit'])}")
    else:
        click.echo(f"{what} set to {usd(result['amount_usd'])} {when} by {result['by']}")
    category = result["category"]
    info = result["budget"]
    if category is None:
        click.echo(f"{info['budget_day']}: daily {usd(info['daily_usd'])}, ordinary pool {usd(info['totals']['limit'])}, "
                   f"available {usd(info['totals']['available'])}")
    else:
        c = info["categories"][category]
        click.echo(f"{info['budget_day']} {category}: limit {usd(c['limit'])}, spent {usd(c['spent'])}, "
                   f"reserved {usd(c['reserved'])}, available {usd(c['available'])}")


@budget_command.command("set")
@global_options
@json_option
@click.argument("amount")
@click.option("--category", help="A category's limit (default: the daily total, budget.daily_usd).")
@click.option("--date", "date_text", metavar="YYYY-MM-DD",
              help="Only this budget day (today or later; default: a standing override, every day from today on).")
@click.option("--by", default="user", show_default=True, help="Who sets it (stored with the override).")
@click.pass_obj
def budget_set_command(state: CLIState, as_json: bool, amount: str, category: str | None, date_text: str | None,
                       by: str) -> None:
    """Set the daily total (or, with --category, a category's limit) to AMOUNT USD.

    Without --date the override stands from today on, until changed or cleared; with --date it
    applies to that budget day only, and beats a standing one. A running daemon uses it at once
    (budget-blocked work is retried at its next tick). Money already spent is never rewritten.
    """
    with open_runtime(state) as runtime:
        result = runtime.set_budget(_amount(amount), category, day=_parse_date(date_text), by=by)
    _print_budget_change(result, as_json)


@budget_command.command("clear")
@global_options
@json_option
@click.option("--category", help="A category's override (default: the daily total's).")
@click.option("--date", "date_text", metavar="YYYY-MM-DD", help="That budget day's override (default: the standing one).")
@click.option("--by", default="user", show_default=True, help="Who clears it.")
@click.pass_obj
def budget_clear_command(state: CLIState, as_json: bool, category: str | None, date_text: str | None, by: str) -> None:
    """Remove an override `budget set` made; the limit falls back to the standing override, else the config."""
    with open_runtime(state) as runtime:
        result = runtime.clear_budget(category, day=_parse_date(date_text), by=by)
    _print_budget_change(result, as_json)


def _daemon_paused_line(paused: dict[str, Any]) -> str:
    return (f"daemon paused by {paused.get('by')} at {str(paused.get('at'))[:19].replace('T', ' ')}"
            + (f" ({paused['reason']})" if paused.get("reason") else "") + ": no unit starts until `cass-actions resume`")


def _pause_command(name: str, pause: bool) -> click.Command:
    @click.command(name)
    @global_options
    @json_option
    @click.argument("category", required=False)
    @click.option("--by", default="user", show_default=True, help="Who does it (stored and shown by status).")
    def command(as_json: bool, category: str | None, by: str, **more: Any) -> None:
        state = click.get_current_context().ensure_object(CLIState)
        with open_runtime(state) as runtime:
            if category is not None:
                known = runtime.config.budget.allocations
                if category not in known:
                    from cass_actions_core.catalogue import closest

                    hint = closest(category, known)
                    raise click.BadParameter(f"unknown category {category!r}" + (f" (did you mean {hint!r}?)" if hint else ""),
                                             param_hint="CATEGORY")
            if pause:
                info = runtime.pause(category, by=by, reason=more.get("reason"))
            else:
                info = runtime.resume(category, by=by, reason=more.get("reason"))
        if as_json:
            print_json(info)
        elif category is not None:
            click.echo(f"paused: {', '.join(info['paused_categories']) or 'nothing'}")
        elif info["daemon_paused"]:
            click.echo(_daemon_paused_line(info["daemon_paused"]))
        else:
            click.echo("daemon running: units start again (a running daemon picks them up at its next tick)")

    command = click.option("--reason", help="Why (shown by status)." if pause else "Why (kept in the event log).")(command)
    command.help = ("Pause the whole daemon, or with CATEGORY hold queued work of that category.\n\n"
                    "While the daemon is paused no unit starts: a running unit finishes its current step and goes "
                    "back to the queue (it resumes at its next step); planning, approvals and budget retries go on. "
                    "Paused work stays queued, with the reason, until resumed or expired."
                    if pause else
                    "Resume the whole daemon, or with CATEGORY release that paused category. A running daemon "
                    "starts work again at its next tick.")
    return command


pause_command = _pause_command("pause", True)
resume_command = _pause_command("resume", False)


@click.command("cancel")
@global_options
@json_option
@click.argument("unit_id")
@click.option("--reason", help="Why (stored with the unit and its summary).")
@click.option("--by", default="user", show_default=True, help="Who cancels it.")
@click.pass_obj
def cancel_command(state: CLIState, as_json: bool, unit_id: str, reason: str | None, by: str) -> None:
    """Cancel UNIT_ID (the full id or 4+ characters of it, as `queue` shows).

    A planned, queued, budget-blocked or awaiting-approval unit ends cancelled at once (its
    pending approval is closed). A running unit stops after its current step (the cost of
    finished steps stays charged): the daemon running it ends it cancelled. Exit 1 for an
    unknown id or a unit that already ended.
    """
    with open_runtime(state) as runtime:
        unit = runtime.cancel(unit_id, reason=reason, by=by)
    if as_json:
        print_json(unit_dict(unit))
    elif unit.status == "running":
        click.echo(f"unit {unit.id} ({unit.template_id}) is running: {unit.reason}")
    else:
        click.echo(f"unit {unit.id} ({unit.template_id}) cancelled: {unit.reason}")


@click.command("trigger")
@global_options
@json_option
@click.argument("template_id")
@click.option("--focus", help="What the unit should focus on.")
@click.pass_obj
def trigger_command(state: CLIState, as_json: bool, template_id: str, focus: str | None) -> None:
    """Queue a unit of TEMPLATE_ID in the current phase; the running daemon picks it up.

    A manual request: the template's max_per_day and cooldown (which bind the planner)
    do not apply.
    """
    with open_runtime(state, check=True) as runtime:
        try:
            unit = runtime.trigger(template_id, focus=focus)
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from None
    if as_json:
        print_json(unit_dict(unit))
    else:
        click.echo(f"queued {unit.template_id} as unit {unit.id} ({unit.phase} of {unit.local_date})")


@click.group("plan", invoke_without_command=True)
@global_options
@json_option
@click.option("--date", "date_text", metavar="YYYY-MM-DD", help="Plan date (default: the current phase's date).")
@click.option("--file", "plan_file", type=click.Path(dir_okay=False), help="Replace the date's plan with this plan file.")
@click.option("--replan", is_flag=True, help="Plan the date's remaining phases again with the planner (one planning call).")
@click.option("--dry-run", is_flag=True,
              help="Print the candidates with their score components and the exact planning prompt; calls nothing, changes nothing.")
@click.option("--provider", help="LLM provider for --replan or --dry-run (e.g. offline).")
@click.pass_context
def plan_command(ctx: click.Context, as_json: bool, date_text: str | None, plan_file: str | None, replan: bool,
                 dry_run: bool, provider: str | None) -> None:
    """Show a date's plan, re-plan it, or show what the planner would do; change it by hand
    (`plan add`, `plan remove`, `plan move`).

    Re-planning replaces the units that have not started (never stacks them) and plans
    only the phases still to come; units added by hand stay. A plan shows its source (llm,
    fallback, file, manual), the day's intention, each unit's focus and motivation, and what
    was dropped or chosen to fit the money, with the reasons.
    """
    from cass_actions_core.planning import load_plan_file

    if ctx.invoked_subcommand is not None:
        if plan_file or replan or dry_run:
            raise click.UsageError(f"--file, --replan and --dry-run do not go with `plan {ctx.invoked_subcommand}`")
        return
    state = ctx.ensure_object(CLIState)

    if sum(map(bool, (plan_file, replan, dry_run))) > 1:
        raise click.UsageError("--file, --replan and --dry-run are alternatives: give one of them")
    check_provider_option(state, provider)
    if not (plan_file or replan or dry_run) and not state.config().store.url and not (state.data_dir / STORE_NAME).exists():
        # Nothing has been planned where no daemon has run: say so without creating a store.
        if as_json:
            print_json(plan_dict(_parse_date(date_text), None, []))
            return
        try:
            state.require_store()
        except click.ClickException as exc:
            raise click.ClickException(f"no plan for {date_text or 'today'}: {exc.message}") from None
    with open_runtime(state, strict=bool(plan_file or replan or dry_run), create=True, provider=provider) as runtime:
        now = runtime.clock.now()
        current = runtime.phases.instance_at(now)
        day = _parse_date(date_text) or current.day
        # A date under way is planned from its current phase on; a later date from its morning.
        from_phase = current.phase.value if day == current.day else "morning"
        if day < current.day:
            if replan or dry_run:
                raise click.UsageError(f"{day} is over; only today or a later date can be planned")
        if dry_run:
            info = runtime.plan_dry_run(day, from_phase=from_phase)
            _print_dry_run(info, as_json)
            return
        if plan_file or replan:
            from cass_actions_core.store import LeaseHeldError

            plan = load_plan_file(plan_file, runtime.catalogue, day) if plan_file else None
            if plan is not None and date_text and plan.day != day:
                raise click.UsageError(f"{plan_file} plans {plan.day}, but --date says {day}")
            if plan is not None and plan.day < current.day:
                raise click.ClickException(f"{plan_file} plans {plan.day}, which is over (today is {current.day}); "
                                           "only today or a later date can be planned. Nothing was changed.")
            try:
                runtime.acquire_lease()  # never change a plan under another running daemon (as run --plan)
            except LeaseHeldError as exc:
                raise click.ClickException(f"{exc} Stop that daemon first, or give the plan to it with `run --plan`.") \
                    from None
            try:
                if plan is not None:
                    day = plan.day
                    runtime.store_plan(day, plan)
                else:
                    async def replan_day() -> None:
                        try:
                            await runtime.plan_day(day, from_phase=from_phase)
                        finally:
                            await runtime.providers.aclose()

                    asyncio.run(replan_day())
            finally:
                runtime.release_lease()
        row = runtime.store.get_plan(day)
        units = runtime.units(local_date=day)
    if as_json:
        print_json(plan_dict(day, row, [unit_dict(u) for u in units]))
        return
    if row is None:
        raise click.ClickException(f"no plan for {day} yet (it is made when the daemon reaches that date; "
                                   "`cass-actions plan --replan` makes it now).")
    _print_plan(row, units)


PHASE_CHOICE = click.Choice(["morning", "afternoon", "evening", "night"])


def _step_params(items: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``--param STEP.KEY=VALUE`` values as ``{"STEP": {"KEY": VALUE}}`` (JSON values allowed)."""
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        head, sep, raw = item.partition("=")
        step, dot, key = head.partition(".")
        if not sep or not dot or not step.isdigit() or not key:
            raise click.BadParameter(f"{item!r}: expected STEP.KEY=VALUE (STEP is the step index, from 0)",
                                     param_hint="--param")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params.setdefault(step, {})[key] = value
    return params


def _print_plan_change(unit: Any, what: str, as_json: bool) -> None:
    if as_json:
        print_json({**unit_dict(unit), "position": unit.position})
        return
    click.echo(f"{what} unit {unit.id} ({unit.template_id}): {unit.phase} of {unit.local_date}, position {unit.position}, "
               f"status {unit.status}" + (f" — {unit.reason}" if unit.reason else ""))


@plan_command.command("add")
@global_options
@json_option
@click.argument("template_id")
@click.option("--phase", type=PHASE_CHOICE, required=True, help="The phase to run it in (under way or still to come).")
@click.option("--date", "date_text", metavar="YYYY-MM-DD", help="Plan date (default: the current phase's date).")
@click.option("--focus", help="What the unit should focus on.")
@click.option("--motivation", help="Why (default: added to the plan by WHO).")
@click.option("--position", type=click.IntRange(min=0, max=1_000_000), help="Its place in the phase's order (0 = first; default: last).")
@click.option("--param", "params", multiple=True, metavar="STEP.KEY=VALUE",
              help="A parameter of step STEP (from 0), checked against its action (JSON values allowed; repeatable).")
@click.option("--by", default="user", show_default=True, help="Who adds it.")
@click.pass_obj
def plan_add_command(state: CLIState, as_json: bool, template_id: str, phase: str, date_text: str | None,
                     focus: str | None, motivation: str | None, position: int | None, params: tuple[str, ...],
                     by: str) -> None:
    """Add a unit of TEMPLATE_ID to a date's plan, with the checks of a plan file.

    It is planned (queued when its phase begins, or at once in a phase under way) and stays
    when the planner re-plans the date. Exit 1 for an unknown template, bad parameters or a
    phase that is over.
    """
    parsed = _step_params(params)
    with open_runtime(state, check=True) as runtime:
        unit = runtime.plan_add(template_id, phase, day=_parse_date(date_text), focus=focus, motivation=motivation,
                                params=parsed or None, position=position, by=by)
    _print_plan_change(unit, "added", as_json)


@plan_command.command("remove")
@global_options
@json_option
@click.argument("unit_id")
@click.option("--by", default="user", show_default=True, help="Who removes it.")
@click.pass_obj
def plan_remove_command(state: CLIState, as_json: bool, unit_id: str, by: str) -> None:
    """Take UNIT_ID (not started yet) off its plan: it ends cancelled, "removed from the plan by WHO".

    A unit that started or ended cannot be removed (exit 1): `cancel` stops a running one.
    """
    with open_runtime(state) as runtime:
        unit = runtime.plan_remove(unit_id, by=by)
    _print_plan_change(unit, "removed", as_json)


@plan_command.command("move")
@global_options
@json_option
@click.argument("unit_id")
@click.option("--phase", type=PHASE_CHOICE, help="Move it to this phase of its date (under way or still to come).")
@click.option("--position", type=click.IntRange(min=0, max=1_000_000), help="Its place in the phase's order (0 = first).")
@click.option("--by", default="user", show_default=True, help="Who moves it.")
@click.pass_obj
def plan_move_command(state: CLIState, as_json: bool, unit_id: str, phase: str | None, position: int | None,
                      by: str) -> None:
    """Move UNIT_ID (not started yet) to another phase of its date and/or another place in its phase's order."""
    if phase is None and position is None:
        raise click.UsageError("give --phase, --position or both")
    with open_runtime(state) as runtime:
        unit = runtime.plan_move(unit_id, phase=phase, position=position, by=by)
    _print_plan_change(unit, "moved", as_json)


def _print_plan(row: Any, units: list[Any]) -> None:
    data = row.data
    click.echo(f"plan for {row.local_date}: {row.source} — {row.reason}")
    if data.get("provider"):
        click.echo(f"planning call: {data['provider']} {data.get('model')}, {data.get('input_tokens', 0)} in / "
                   f"{data.get('output_tokens', 0)} out tokens, {usd(data.get('cost_usd') or 0)}")
    if row.intention:
        click.echo(f"intention: {row.intention}")
    print_table(None, ["phase", "from", "template", "status", "cost", "focus", "motivation"],
                [(u.phase, f"{u.not_before:%H:%M}" if u.not_before else "", u.template_id, u.status,
                  usd(u.estimated_cost_usd), u.focus or "", u.motivation or "") for u in units], justify_right=["cost"])
    for decision in data.get("decisions") or []:
        click.echo(f"choice: {decision}")
    dropped = data.get("dropped") or []
    if dropped:
        click.echo(f"dropped ({len(dropped)}):")
        for drop in dropped:
            click.echo(f"  - {drop}")


def _print_dry_run(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(info)
        return
    click.echo(f"dry run for {info['date']} (phases: {', '.join(info['phases'])}); nothing was called or changed")
    rows = []
    for c in info["candidates"]:
        comp = c["components"][c["best_phase"]]
        rows.append((c["template"], c["category"], c["best_phase"], f"{c['best_score']:.2f}",
                     " ".join(f"{k[:3]}={v:+.2f}" for k, v in comp.items()), usd(c["cost_usd"]),
                     "yes" if c["template"] in info["offered"] else ""))
    print_table("Candidates (components in their best phase)", ["template", "category", "phase", "score", "components",
                                                                 "cost", "offered"], rows, justify_right=["score", "cost"])
    for line in info["excluded"]:
        click.echo(f"excluded: {line}")
    for line in info["decisions"]:
        click.echo(f"fallback choice: {line}")
    prompt = info["prompt"]
    click.echo(f"\n--- planning prompt (about {prompt['tokens_estimate']} tokens, bound {prompt['tokens_bound']}; "
               f"sha256 {prompt['sha256'][:16]}) ---")
    for block in prompt["system"]:
        click.echo(f"[system{' (cached)' if block.get('cache_control') else ''}]\n{block['text']}\n")
    click.echo(f"[user]\n{prompt['message']}")


@click.command("approvals")
@global_options
@json_option
@click.option("--all", "show_all", is_flag=True, help="Include answered and expired approvals.")
@click.pass_obj
def approvals_command(state: CLIState, as_json: bool, show_all: bool) -> None:
    """List approvals waiting for a human yes (or all of them)."""
    with open_runtime(state) as runtime:
        rows = runtime.store.list_approvals(status=None if show_all else "pending")
    data = [{"id": a.id, "unit_id": a.unit_id, "action_id": a.action_id, "step": a.step_index, "status": a.status,
             "reason": a.reason, "requested_at": a.requested_at.isoformat(), "expires_at": a.expires_at.isoformat(),
             "resolved_by": a.resolved_by, "note": a.note} for a in rows]
    if as_json:
        print_json(data)
        return
    if not data:
        click.echo("no approvals" if show_all else "no approvals are waiting (--all lists the answered ones too)")
        return
    print_table(None, ["id", "unit", "action", "status", "expires", "reason"],
                [(a["id"], a["unit_id"][:8], a["action_id"], a["status"], a["expires_at"], clip(a["reason"] or "", 70))
                 for a in data])


def _resolve_command(name: str, approve: bool) -> click.Command:
    @click.command(name)
    @global_options
    @click.argument("approval_id")
    @click.option("--note", help="Why (stored with the answer).")
    @click.option("--by", default="user", show_default=True, help="Who answers.")
    @click.pass_obj
    def command(state: CLIState, approval_id: str, note: str | None, by: str) -> None:
        from cass_actions_core.store import StoreError

        with open_runtime(state) as runtime:
            try:
                row = (runtime.approve if approve else runtime.reject)(approval_id, by=by, note=note)
            except StoreError as exc:
                raise click.ClickException(str(exc)) from None
        click.echo(f"approval {row.id}: {row.status}")

    command.__doc__ = f"{'Approve' if approve else 'Reject'} APPROVAL_ID; the parked unit {'continues' if approve else 'fails with the reason'}."
    command.help = command.__doc__
    return command


approve_command = _resolve_command("approve", True)
reject_command = _resolve_command("reject", False)


def _parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--param")
        key, raw = item.split("=", 1)
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


@click.command("run-action")
@global_options
@json_option
@click.argument("action_id")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A parameter (JSON values allowed; repeatable).")
@click.option("--focus", help="Focus for the run.")
@click.option("--provider", help="Force an LLM provider (e.g. offline).")
@click.pass_obj
def run_action_command(state: CLIState, as_json: bool, action_id: str, params: tuple[str, ...], focus: str | None,
                       provider: str | None) -> None:
    """Run one action by hand, through the executor like any unit; exit 1 if it fails."""
    parsed = _parse_params(params)
    try:  # refused before anything is created: a typo leaves no store behind in the data folder
        state.catalogue().action_for(action_id, parsed)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    require_llm_ready(state, provider, [action_id])
    with open_runtime(state, strict=True, create=True, provider=provider) as runtime:
        try:
            unit = asyncio.run(runtime.run_action(action_id, parsed, focus=focus))
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from None
        summary = runtime.store.get_summary(unit.id)
    record = summary.data if summary else unit_dict(unit)
    if as_json:
        print_json(record)
    else:
        click.echo(record.get("narrative", unit.reason or unit.status) if summary else unit.reason or unit.status)
    if unit.status != "completed":
        click.get_current_context().exit(1)


@click.command("init")
@global_options
@click.pass_obj
def init_command(state: CLIState) -> None:
    """Create a demo workspace in the data directory: a self model, conversations, a feed."""
    from cass_actions_core.workspace import seed_demo_workspace

    with open_runtime(state, create=True) as runtime:
        created = seed_demo_workspace(runtime.workspace, now=runtime.clock.now())
    click.echo(f"workspace {runtime.workspace}: " + (f"created {', '.join(created)}" if created else "already set up"))
