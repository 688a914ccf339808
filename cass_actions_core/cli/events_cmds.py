"""Commands over the store's event log and the user's activity: ``events`` and ``activity``.

``events`` reads the events the daemon stores (every unit transition, action run, plan,
approval ...), filtered, and with ``--follow`` keeps printing new ones as they are written.
``activity`` records that the user was active, which the scheduler's idle check reads
(``Runtime.record_activity`` / ``Runtime.is_idle``), so work that ``requires_idle`` waits.

Both only ever open an existing store: pointed at a folder with no store they say so and
exit 1, creating neither the folder nor an empty store (a mistyped ``--data-dir`` must not
leave a new daemon's files behind).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from cass_actions_core.cli.output import print_json
from cass_actions_core.problems import UnknownItem, UserError
from cass_actions_core.cli.state import CLIState, global_options

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from cass_actions_core.clock import Clock
    from cass_actions_core.config import Config
    from cass_actions_core.runtime import Runtime
    from cass_actions_core.store import EventRow, Store


#: How often ``events --follow`` looks for new events (seconds).
FOLLOW_POLL_SECONDS = 0.5
#: Events read per query while scanning: bounds memory whatever the size of the log.
PAGE_SIZE = 2000
#: A shortest unit id prefix accepted by ``--unit`` (``queue`` shows 8 characters).
MIN_UNIT_PREFIX = 4
#: How far in the future ``activity --at`` may lie (clock skew between machines), no more:
#: a future activity would hold idle-only work until long after the user left.
FUTURE_SKEW = timedelta(minutes=1)
#: Characters of payload shown on a human-readable event line.
PAYLOAD_CHARS = 100

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)$", re.IGNORECASE)
_UNITS = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days"}


# --------------------------------------------------------------------------- shared helpers


def daemon_clock(state: CLIState, config: Config, store: Store | None) -> Clock:
    """The clock the daemon runs on: the system clock in its time zone, or the accelerated clock of a
    rehearsal, read without writing anything: ``run --speed`` in this data directory (from ``store``, the
    folder's own), else a fleet's ``worker --speed`` in its PostgreSQL database (``store.url``)."""
    from cass_actions_core.cli.runtime_cmds import REHEARSAL_KEY, SIM_MARKER
    from cass_actions_core.clock import AcceleratedClock, SystemClock
    from cass_actions_core.store import is_postgres_url

    saved = None
    if (state.data_dir / SIM_MARKER).exists() and store is not None:
        saved = store.get_state(REHEARSAL_KEY)
    elif is_postgres_url(config.store.url):
        from cass_actions_core.fleet import FLEET_CLOCK_KEY
        from cass_actions_core.store.fleet import FleetRegistry

        assert config.store.url is not None
        with FleetRegistry.open(config.store.url) as registry:
            saved = registry.setting(FLEET_CLOCK_KEY)
    # A rehearsal's "now" is virtual: activity, --since and controls must be on its timeline.
    return AcceleratedClock.from_setting(config.timezone, saved) if saved is not None else SystemClock(config.timezone)


def parse_time(value: str, *, now: datetime, tz: ZoneInfo, option: str) -> datetime:
    """An instant from the command line: ``now``, an ISO timestamp (without an offset: the daemon's
    time zone), a date (its local midnight), or a duration back from now (``90s``, ``30m``, ``2h``, ``3d``).

    Raises :class:`click.BadParameter` (exit 2) naming the option and the forms accepted.
    """
    from cass_actions_core.clock import local_midnight, resolve_wall_time

    text = value.strip()
    if text.lower() == "now":
        return now
    duration = _DURATION.match(text)
    if duration:
        amount = float(duration.group(1))
        return now - timedelta(**{_UNITS[duration.group(2).lower()]: amount})
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return local_midnight(date.fromisoformat(text), tz)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a time. Give an ISO timestamp such as 2026-11-26T14:30 or 2026-11-26T14:30+01:00 "
            f"(without an offset the daemon's time zone {tz.key} is meant), a date such as 2026-11-26 (its local "
            "midnight), a duration back from now such as 30m, 2h or 3d, or 'now'.", param_hint=option) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return resolve_wall_time(parsed, tz).astimezone(tz)
    return parsed


def _local(dt: datetime, tz: ZoneInfo) -> str:
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class EventFilter:
    """Which events ``cass-actions events`` prints: every given criterion must hold.

    ``types`` match exactly, ``prefixes`` by the start of the type (``work_unit.*``); with
    neither, every type matches.
    """

    types: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    unit_id: str | None = None
    since: datetime | None = None

    def __call__(self, event: EventRow) -> bool:
        """Whether ``event`` passes the filter."""
        from cass_actions_core.clock import to_utc

        if (self.types or self.prefixes) and not (
                event.type in self.types or any(event.type.startswith(p) for p in self.prefixes)):
            return False
        if self.unit_id is not None and event.unit_id != self.unit_id:
            return False
        return self.since is None or to_utc(event.at) >= to_utc(self.since)


def parse_types(values: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """``--type`` values (repeatable, comma-separated) as exact types and prefixes (``x.*`` → ``x.``)."""
    from cass_actions_core.events import parse_event_types

    try:
        exact, prefixes = parse_event_types(values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--type") from None
    if values and not exact and not prefixes:
        raise click.BadParameter("no event type given", param_hint="--type")
    return exact, prefixes


def resolve_unit(store: Store, wanted: str) -> str:
    """The full id of the unit ``wanted`` names: its id, or a unique prefix of at least
    :data:`MIN_UNIT_PREFIX` characters. Units a re-plan deleted still have their events, so an id
    only the event log knows is accepted too. Otherwise :class:`UnknownItem`, or :class:`UserError` for an
    ambiguous prefix (one paragraph, exit 1 on the command line; 404 / 400 over HTTP)."""
    wanted = wanted.strip()
    if store.get_unit(wanted) is not None:
        return wanted
    matches: list[str] = []
    if len(wanted) >= MIN_UNIT_PREFIX:
        matches = sorted({u.id for u in store.list_units() if u.id.startswith(wanted)})
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserError(f"unit id prefix {wanted!r} is ambiguous: it starts {len(matches)} units "
                                   f"({', '.join(m[:12] for m in matches[:5])}{' ...' if len(matches) > 5 else ''}); "
                                   "give more characters.")
    if any(e.unit_id == wanted for e in _scan(store, 0)):
        return wanted
    raise UnknownItem(
        f"no work unit {wanted!r} in {store.path}: no unit has this id (or starts with it, for a prefix of "
        f"{MIN_UNIT_PREFIX}+ characters) and no stored event names it. `cass-actions queue` lists the units "
        "with their ids.")


def _scan(store: Store, after_id: int) -> Iterator[EventRow]:
    """Every event with id above ``after_id``, oldest first, read a page at a time."""
    while True:
        page = store.list_events(since_id=after_id, limit=PAGE_SIZE)
        yield from page
        if len(page) < PAGE_SIZE:
            return
        after_id = page[-1].id


def _short(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"=" for c in value):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def event_line(event: EventRow, tz: ZoneInfo) -> str:
    """One human-readable line: local time, type, the unit id's first 8 characters, a short payload."""
    payload = " ".join(f"{k}={_short(v)}" for k, v in event.data.items())
    if len(payload) > PAYLOAD_CHARS:
        payload = payload[:PAYLOAD_CHARS - 1] + "…"
    unit = event.unit_id[:8] if event.unit_id else "-"
    return f"{_local(event.at, tz)}  {event.type:<22} {unit:<8}  {payload}".rstrip()


def event_json(event: EventRow) -> str:
    """One event as a single line of JSON (the ``--json`` output is JSON Lines)."""
    return json.dumps({"id": event.id, "at": event.at.isoformat(), "type": event.type, "unit_id": event.unit_id,
                       "data": event.data}, ensure_ascii=False, default=str)


@contextmanager
def _stop_signals(enabled: bool = True) -> Iterator[Callable[[], bool]]:
    """While inside, SIGINT and SIGTERM only ask to stop (the yielded function says whether one
    came): ``--follow`` then ends between two polls, closes the store and exits 0, never with a
    KeyboardInterrupt traceback or click's "Aborted!". ``enabled=False`` changes nothing."""
    caught: list[int] = []
    if not enabled:
        yield lambda: False
        return

    def handler(signum: int, frame: Any) -> None:
        caught.append(signum)

    previous: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:
        pass  # not the main thread (an embedding caller): signals stay theirs
    try:
        yield lambda: bool(caught)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _echo(line: str) -> None:
    """Print a line, flushed at once (``--follow`` output goes to pipes that buffer)."""
    try:
        click.echo(line)
    except BrokenPipeError:
        # The reader went away (`events --follow | head`): that ends the command, quietly. Point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(0) from None


@click.command("events")
@global_options
@click.option("--type", "types", multiple=True, metavar="TYPE[,TYPE...]",
              help="Only events of these types (repeatable, or comma-separated). A trailing * matches by prefix: "
                   "work_unit.* is every work unit event.")
@click.option("--unit", "unit_text", metavar="UNIT_ID",
              help="Only events of this work unit (its id, or a unique prefix of 4+ characters as `queue` shows).")
@click.option("--since", "since_text", metavar="TIME",
              help="Only events at or after TIME: an ISO timestamp (no offset: the daemon's time zone), a date "
                   "(its local midnight), or a duration back from now such as 30m, 2h or 3d.")
@click.option("--limit", type=click.IntRange(0, 1_000_000), default=50, metavar="N", show_default=True,
              help="Print the last N matching events (oldest first); 0 prints all of them.")
@click.option("--follow", "-f", is_flag=True,
              help="Then keep printing new matching events as they are stored (polls every 0.5 s), until Ctrl-C "
                   "or SIGTERM (exit 0).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON Lines: one object per event with id, at, type, unit_id and data.")
@click.pass_obj
def events_command(state: CLIState, types: tuple[str, ...], unit_text: str | None, since_text: str | None,
                   limit: int, follow: bool, as_json: bool) -> None:
    """Print the events the daemon stored: unit transitions, action runs, plans, approvals ...

    One line per event: local time, type, unit id (first 8 characters) and a short payload;
    --json prints one JSON object per line instead (also while following). Filters combine:
    an event is printed when it matches every one given.
    """
    from cass_actions_core.store import StoreError, open_store

    exact, prefixes = parse_types(types)
    path = state.require_store()
    config = state.config()
    # Signals are taken over before the store is opened: a Ctrl-C at any moment of a
    # follow ends it cleanly, not with a traceback from the middle of a query.
    with _stop_signals(follow) as stopped, open_store(path, config.daemon_id) as store:
        clock = daemon_clock(state, config, store)
        tz = clock.tz
        since = parse_time(since_text, now=clock.now(), tz=tz, option="--since") if since_text else None
        unit_id = resolve_unit(store, unit_text) if unit_text else None
        wanted = EventFilter(exact, prefixes, unit_id, since)
        show = event_json if as_json else (lambda e: event_line(e, tz))
        last_id = 0
        # Keep only the last `limit` matches while scanning, so a long log costs time, not memory.
        tail: deque[EventRow] = deque(maxlen=limit or None)
        seen_types: set[str] = set()
        try:
            for event in _scan(store, 0):
                last_id = event.id
                seen_types.add(event.type)
                if wanted(event):
                    tail.append(event)
            for event in tail:
                _echo(show(event))
            _hint_unknown_types(exact, seen_types)
            if not follow:
                if not tail and not as_json:
                    click.echo("no matching events", err=True)
                return
            if sys.stderr.isatty():
                click.echo(f"following {path} (Ctrl-C stops) ...", err=True)
            while not stopped():
                # Ids only grow and a writer holds the store's write lock until it commits, so
                # "id above the last one seen" never skips an event that commits late.
                got = 0
                for event in _scan(store, last_id):
                    got += 1
                    last_id = event.id
                    if wanted(event):
                        _echo(show(event))
                if got >= PAGE_SIZE:
                    continue  # a burst: read on before sleeping
                deadline = time.monotonic() + FOLLOW_POLL_SECONDS
                while not stopped() and time.monotonic() < deadline:
                    time.sleep(0.05)  # short naps: a stop request is honoured within 50 ms
        except StoreError as exc:
            raise click.ClickException(f"{path}: reading the events failed: {exc}. Nothing was changed; "
                                       "try again.") from None


def _hint_unknown_types(exact: frozenset[str], seen: set[str]) -> None:
    """On stderr: each exact ``--type`` no stored event has, with the closest stored type (a typo
    would otherwise just print nothing). Packs emit types of their own, so it is a hint, not an error."""
    missing = sorted(exact - seen)
    if not missing:
        return
    from cass_actions_core.catalogue import closest

    for wanted in missing:
        hint = closest(wanted, seen)
        click.echo(f"no stored event has type {wanted!r}" + (f" (did you mean {hint!r}?)" if hint else ""), err=True)


# --------------------------------------------------------------------------- activity


def idle_report(runtime: Runtime) -> dict[str, Any]:
    """What the scheduler's idle check sees now: the last user activity (from the store or a pack's
    ``gather_context``), its source, and whether idle-only work may start (``Runtime.is_idle``)."""
    from cass_actions_core.clock import to_utc
    from cass_actions_core.runtime import ACTIVITY_KEY

    tz = runtime.clock.tz
    now = runtime.clock.now()
    try:
        recorded_text = runtime.store.get_state(ACTIVITY_KEY)
        recorded = datetime.fromisoformat(recorded_text) if recorded_text else None
        last = runtime.last_activity()  # exactly what the scheduler reads
    except (TypeError, ValueError) as exc:
        raise click.ClickException(f"{runtime.store.path}: the recorded user activity is damaged ({exc}); "
                                   "`cass-actions activity` records a new one.") from None
    idle = runtime.is_idle()
    after = timedelta(minutes=runtime.config.scheduler.idle_after_minutes)
    source = None
    if last is not None:
        if recorded is not None and to_utc(recorded) == to_utc(last):
            source = "recorded"
        else:
            source = f"pack:{runtime.gather_context().sources.get('last_user_activity', '?')}"
    return {"now": now.isoformat(), "last_activity": last.astimezone(tz).isoformat() if last else None,
            "source": source, "recorded_activity": recorded.astimezone(tz).isoformat() if recorded else None,
            "idle": idle, "idle_after_minutes": runtime.config.scheduler.idle_after_minutes,
            "idle_from": (last + after).astimezone(tz).isoformat() if last else None}


def _print_idle(report: dict[str, Any], tz: ZoneInfo) -> None:
    minutes = report["idle_after_minutes"]
    last = report["last_activity"]
    if last is None:
        click.echo("last user activity: none known")
    else:
        ago = int((datetime.fromisoformat(report["now"]) - datetime.fromisoformat(last)).total_seconds() // 60)
        when = "just now" if ago <= 0 else f"{ago} min ago"
        source = report["source"]
        origin = ("recorded with `cass-actions activity`" if source == "recorded"
                  else f"reported by pack {source.split(':', 1)[1]!r}")
        click.echo(f"last user activity: {_local(datetime.fromisoformat(last), tz)} {tz.key} ({when}; {origin})")
    if report["idle"]:
        click.echo(f"idle: yes — no user activity for {minutes:g} min or more; work that requires idle may start")
    else:
        until = _local(datetime.fromisoformat(report["idle_from"]), tz)
        click.echo(f"idle: no — work that requires idle waits until {until} "
                   f"(scheduler.idle_after_minutes = {minutes:g})")


@click.command("activity")
@global_options
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: what was recorded, the last activity, its source and the idle verdict.")
@click.option("--at", "at_text", metavar="TIME",
              help="When the user was active: an ISO timestamp (no offset: the daemon's time zone) or a duration "
                   "back from now such as 5m  [default: now]. A time later than now is refused.")
@click.option("--show", is_flag=True,
              help="Record nothing: print the last user activity the daemon knows and whether it counts as idle now.")
@click.pass_obj
def activity_command(state: CLIState, as_json: bool, at_text: str | None, show: bool) -> None:
    """Record that the user is active now (or --at TIME): work that requires idle waits.

    The daemon counts as idle once no user activity was seen for scheduler.idle_after_minutes
    (default 30); until then units whose actions or template require idle stay queued. A
    running daemon sees the record at its next idle check. A later activity already
    recorded is kept (an old --at never shortens the wait). Call it from a shell hook, an
    editor or a chat front end whenever the user does something.
    """
    from cass_actions_core.clock import to_utc
    from cass_actions_core.runtime import ACTIVITY_KEY
    from cass_actions_core.store import open_store

    if show and at_text:
        raise click.UsageError("--show only reads; --at records an activity: give one of them")
    path = state.require_store()
    config = state.config()
    with open_store(path, config.daemon_id) as store:
        clock = daemon_clock(state, config, store)
    tz = clock.tz
    at: datetime | None = None
    if not show:
        # Bad input is refused before the packs are loaded and anything is written.
        now = clock.now()
        at = parse_time(at_text, now=now, tz=tz, option="--at") if at_text else now
        if to_utc(at) > to_utc(now) + FUTURE_SKEW:
            raise click.BadParameter(f"{at.isoformat()} is in the future (now is {now.isoformat()}): a future "
                                     "activity would hold idle-only work until long after it; give a past time.",
                                     param_hint="--at")
    from cass_actions_core.cli.runtime_cmds import open_runtime

    # A runtime, not the bare store: the record is written and the verdict read by the very
    # methods the scheduler uses (record_activity, last_activity, is_idle), packs' facts included.
    with open_runtime(state, clock=clock) as runtime:
        recorded: bool | None = None
        if at is not None:
            with runtime.store.transaction(immediate=True):
                # Read and write under the write lock: two hooks recording at once keep the later time.
                stored = runtime.store.get_state(ACTIVITY_KEY)
                try:
                    previous = datetime.fromisoformat(stored) if stored else None
                except (TypeError, ValueError):
                    previous = None  # a damaged record: replace it
                recorded = previous is None or to_utc(at) > to_utc(previous)
                if recorded:
                    runtime.record_activity(at.astimezone(tz))
        report = idle_report(runtime)
    if recorded is not None and at is not None:
        report = {"recorded": recorded, "at": at.astimezone(tz).isoformat(), **report}
    if as_json:
        print_json(report)
        return
    if recorded is True and at is not None:
        click.echo(f"recorded user activity at {_local(at, tz)} {tz.key}")
    elif recorded is False:
        kept = _local(datetime.fromisoformat(report["recorded_activity"]), tz)
        click.echo(f"kept the later activity already recorded ({kept}); nothing changed")
    _print_idle(report, tz)
