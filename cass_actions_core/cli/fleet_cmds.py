"""The fleet commands, for many daemons in one PostgreSQL database (``store.url``): ``daemons add``,
``daemons list``, ``daemons remove`` (the registry) and ``worker`` (a process running the daemons whose
scheduling leases it holds; see :mod:`cass_actions_core.fleet`)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cass_actions_core.cli.output import print_json, print_table
from cass_actions_core.cli.state import CLIState, global_options, json_option
from cass_actions_core.problems import UserError

if TYPE_CHECKING:
    from cass_actions_core.store.fleet import FleetRegistry


def fleet_url(state: CLIState, command: str) -> str:
    """The fleet's PostgreSQL URL (``store.url`` or ``$CASS_ACTIONS_STORE_URL``); a one-paragraph error otherwise."""
    from cass_actions_core.store import is_postgres_url, redact_url

    url = state.config().store.url
    if not is_postgres_url(url):
        where = f"store.url is {redact_url(url)!r}" if url else "store.url is not set"
        raise UserError(f"`cass-actions {command}` needs a fleet database, a PostgreSQL URL in store.url (or "
                        f"CASS_ACTIONS_STORE_URL), but {where}. A SQLite file holds one daemon, run by "
                        "`cass-actions run`; see the README's \"From one daemon to a fleet\".")
    assert url is not None
    return url


def _registry(state: CLIState, command: str) -> FleetRegistry:
    from cass_actions_core.store.fleet import FleetRegistry

    return FleetRegistry.open(fleet_url(state, command))


@click.group("daemons", invoke_without_command=True)
@global_options
@json_option
@click.pass_context
def daemons_command(ctx: click.Context, as_json: bool) -> None:
    """The daemons of a fleet database: register (add), list, remove. Alone: the same as `daemons list`."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(daemons_list_command, as_json=as_json)


@daemons_command.command("add")
@global_options
@json_option
@click.argument("daemon_id")
@click.option("--workspace", required=True, type=click.Path(file_okay=False),
              help="The daemon's workspace root: a folder every worker can reach (a shared mount).")
@click.pass_obj
def daemons_add_command(state: CLIState, as_json: bool, daemon_id: str, workspace: str) -> None:
    """Register DAEMON_ID with its config (--config FILE) and workspace (or replace them); running workers
    take it up at once.

    The config is checked like `validate` checks it, packs and templates included: a config with a
    problem is refused and nothing is registered. The fleet's database is the file's store.url or
    CASS_ACTIONS_STORE_URL; other environment overrides are not stored: what is registered is the file.
    """
    import os
    from dataclasses import replace

    from cass_actions_core.catalogue import build_catalogue
    from cass_actions_core.config import CONFIG_ENV, Config, StoreSettings, load_config

    config_file = state.config_path or os.environ.get(CONFIG_ENV)
    if not config_file:
        raise click.UsageError("daemons add needs the daemon's config file: --config FILE")
    url = fleet_url(state, "daemons add")
    config = load_config(config_file, env={})
    try:
        config = Config.from_dict({**config.to_dict(), "daemon_id": daemon_id}, source=config.source)
    except UserError:
        raise UserError(f"{daemon_id!r} is not a daemon id: use letters, digits, '_', '.' and '-', starting with a "
                        "letter or a digit. Nothing was registered.") from None
    root = Path(workspace).expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{root}: cannot use it as daemon {daemon_id!r}'s workspace: {exc.strerror or exc}. "
                        "Nothing was registered.") from None
    doc = config.to_dict()
    doc["plugins"]["templates"] = [str(p) for p in config.user_template_files()]
    doc["workspace"] = str(root)
    doc["store"] = {}
    config = replace(Config.from_dict(doc), store=StoreSettings(url=url))
    build_catalogue(config).check(strict=True)  # a CatalogueError: the same report as `validate`
    with _registry(state, "daemons add") as registry:
        new = registry.add_daemon(daemon_id, doc, str(root), datetime.now(UTC))
    if as_json:
        print_json({"daemon_id": daemon_id, "workspace": str(root), "new": new})
        return
    click.echo(f"daemon {daemon_id!r} {'registered' if new else 'updated'} (workspace {root}); running workers "
               "take it up now.")


@daemons_command.command("list")
@global_options
@json_option
@click.pass_obj
def daemons_list_command(state: CLIState, as_json: bool) -> None:
    """Every daemon of the fleet database: workspace, lease holder and expiry, queued and running units."""
    now = datetime.now(UTC)
    with _registry(state, "daemons list") as registry:
        entries = registry.daemons()
        workers = len(registry.live_workers(now, _ttl(state)))
    rows = []
    for e in entries:
        lease = e.lease
        live = lease is not None and not lease.expired(now)
        rows.append({"daemon_id": e.daemon_id, "registered": e.registered, "workspace": e.workspace,
                     "holder": lease.holder if live and lease else None,
                     "lease_expires_at": lease.expires_at.isoformat() if live and lease else None,
                     "lease_token": lease.token if lease else None, "queued": e.queued, "running": e.running})
    if as_json:
        print_json({"daemons": rows, "live_workers": workers})
        return
    print_table(None, ["daemon", "workspace", "held by", "lease expires", "queued", "running"],
                [[r["daemon_id"] + ("" if r["registered"] else " (not registered)"), r["workspace"] or "-",
                  r["holder"] or "-", (r["lease_expires_at"] or "-")[:19], r["queued"], r["running"]] for r in rows])
    click.echo(f"{len([r for r in rows if r['registered']])} registered daemon(s), {workers} live worker(s)")


@daemons_command.command("remove")
@global_options
@click.argument("daemon_id")
@click.pass_obj
def daemons_remove_command(state: CLIState, daemon_id: str) -> None:
    """Take DAEMON_ID off the registry: workers stop running it. Refused while a unit of it is running.
    Its history (units, ledger, events) stays in the database."""
    with _registry(state, "daemons remove") as registry:
        registry.remove_daemon(daemon_id)
    click.echo(f"daemon {daemon_id!r} removed from the registry; its history stays in the database.")


def _ttl(state: CLIState) -> Any:
    from datetime import timedelta

    return timedelta(seconds=state.config().scheduler.lease_ttl_seconds)


@click.command("worker")
@global_options
@click.option("--daemons", "daemon_list", metavar="A,B", help="Run only these daemons (comma-separated ids).")
@click.option("--all", "run_all", is_flag=True, help="Run any registered daemon (the default).")
@click.option("--speed", type=click.FloatRange(min=1, max=1_000_000), default=None,
              help="Rehearse: every worker of the fleet shares one accelerated clock, SPEED virtual seconds per "
                   "real second (the first worker to start it sets it; later ones join it).")
@click.option("--start", "start_text", metavar="YYYY-MM-DD", help="With --speed: the first local date (default: today).")
@click.option("--provider", help="LLM provider for every action (e.g. offline, for a rehearsal without an API key).")
@click.option("--worker", "child", is_flag=True, hidden=True,
              help="Be the supervised worker process (worker starts it itself).")
@click.pass_obj
def worker_command(state: CLIState, daemon_list: str | None, run_all: bool, speed: float | None,
                   start_text: str | None, provider: str | None, child: bool) -> None:
    """Run a fleet worker until SIGINT or SIGTERM: it takes the scheduling leases of its share of the
    registered daemons (ceil(daemons / live workers)), runs each one's scheduler and units, and takes over
    the daemons of a worker that died once their leases expire. Its own config gives the database
    (store.url) and the heartbeat's lifetime (scheduler.lease_ttl_seconds); each daemon runs with its
    registered config.

    The daemons run in a child process that this command supervises, as `run` does. A child whose event
    loop a handler blocks for scheduler.stall_limit_seconds (the smallest of this config's and its
    daemons') is killed and replaced at once: the new one takes the leases back, ends or runs again the
    interrupted steps by the restart rules, with the reason, and runs the other daemons on. A child that
    crashes is replaced after a backoff. SIGTERM stops the daemons and releases their leases.
    """
    from cass_actions_core.fleet import Worker, fleet_stall_limit, new_worker_id, record_worker_stall
    from cass_actions_core.supervisor import EXIT_RESTART, WorkerLink, run_worker, supervise

    if daemon_list and run_all:
        raise click.UsageError("--daemons and --all exclude each other")
    if start_text and speed is None:
        raise click.UsageError("--start needs --speed (a rehearsal); a real worker runs on today's clock")
    config = state.config()
    url = fleet_url(state, "worker")
    if provider is not None:
        from cass_actions_core.cli.runtime_cmds import check_provider_option

        check_provider_option(state, provider)
    only = [d.strip() for d in daemon_list.split(",") if d.strip()] if daemon_list else None
    if not child:
        # Set or join the rehearsal clock here, refusing a wrong --start in one line before any process;
        # each worker process then joins the clock stored in the fleet.
        _fleet_clock(state, url, speed, start_text)
        args = state.child_args("worker")
        if provider:
            args += ["--provider", provider]
        args += ["--daemons", ",".join(only)] if only is not None else ["--all"]
        own = config.scheduler.stall_limit_seconds
        code = supervise(args, holder=new_worker_id(),
                         stall_limit=lambda: fleet_stall_limit(url, own, only),
                         on_stall=lambda stall: record_worker_stall(url, stall))
        click.get_current_context().exit(code)
    link = WorkerLink.from_env()
    if link is not None:
        link.die_with_parent()
    worker = Worker(url, data_dir=state.data_dir, only=only, ttl=config.scheduler.lease_ttl_seconds,
                    clock_for=_fleet_clock(state, url, None, None), provider=provider,
                    worker_id=link.holder if link else None, pid=link.lease_pid if link else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"cass-actions: worker {worker.id} running (fleet {_shown(url)}); Ctrl-C stops it.", err=True)
        beat = asyncio.create_task(link.beat()) if link is not None else None
        try:
            await worker.run(stop)
        finally:
            if beat is not None:
                beat.cancel()
        click.echo("cass-actions: worker stopped; its daemons' leases were released.", err=True)
        # A handler deaf to cancellation may still run as a task of its own: asyncio.run would wait for
        # it forever. Everything is written and released: leave without it.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        if others and (await asyncio.wait(others, timeout=0.5))[1]:
            sys.stderr.flush()
            os._exit(0 if stop.is_set() else EXIT_RESTART)

    run_worker(serve())


def _shown(url: str) -> str:
    from cass_actions_core.store import redact_url

    return redact_url(url)


def _fleet_clock(state: CLIState, url: str, speed: float | None, start_text: str | None) -> Any:
    """A function giving each daemon's clock: the fleet's shared rehearsal clock (set here by the first
    worker with ``--speed``, joined by every later worker), or None (the system clock) without one."""
    import time as wall

    from cass_actions_core.clock import AcceleratedClock, to_utc
    from cass_actions_core.fleet import FLEET_CLOCK_KEY
    from cass_actions_core.phases import DayPhases
    from cass_actions_core.store.fleet import FleetRegistry

    config = state.config()
    with FleetRegistry.open(url) as registry:
        saved = registry.setting(FLEET_CLOCK_KEY)
        if saved is None and speed is not None:
            try:
                day = datetime.fromisoformat(start_text).date() if start_text else datetime.now(UTC).date()
            except ValueError:
                raise click.BadParameter(f"{start_text!r} is not a date (YYYY-MM-DD)", param_hint="'--start'") from None
            start = to_utc(DayPhases(config.phases, config.timezone).boundary(day, "morning"))
            saved = registry.setting_once(FLEET_CLOCK_KEY, {"start": start.isoformat(), "epoch": wall.time(),
                                                            "speed": speed})
        elif saved is not None and start_text and not saved["start"].startswith(start_text):
            raise click.UsageError(f"this fleet already rehearses from {saved['start']} at {saved['speed']:g}x; a "
                                   "worker joins that timeline (drop --start), or use another database")
    if saved is None:
        return lambda tz: None
    return lambda tz: AcceleratedClock.from_setting(tz, saved)
