"""Events: stored first, then passed to ``on_event`` hooks without ever stalling the loop.

Event types used by the core: ``day_phase.changed``, ``day.planned``,
``work_unit.queued``, ``work_unit.started``, ``work_unit.completed``,
``work_unit.failed``, ``work_unit.parked``, ``work_unit.expired``,
``work_unit.cancelled``, ``work_unit.abandoned``, ``action.completed``,
``action.failed``, ``budget.blocked``, ``approval.requested``, ``approval.resolved``,
``listener.failed``. Packs may emit their own (``journal.entry_created`` ...).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from cass_actions_core.clock import Clock
    from cass_actions_core.store import Store

log = logging.getLogger("cass_actions.events")

#: Seconds an ``on_event`` listener may take before it is abandoned.
LISTENER_TIMEOUT = 5.0


@dataclass(frozen=True)
class Event:
    """Something that happened: a type, when, the unit it concerns, and its data."""

    id: int
    type: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    unit_id: str | None = None


class EventBus:
    """Stores events and fans them out to ``on_event`` hooks in background tasks."""

    def __init__(self, store: Store, plugin_manager: pluggy.PluginManager, clock: Clock) -> None:
        self._store = store
        self._pm = plugin_manager
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        #: Listener failures seen (plugin name, event type, error) — also stored as events.
        self.listener_failures: list[tuple[str, str, str]] = []

    def emit(self, type: str, data: dict[str, Any] | None = None, *, unit_id: str | None = None) -> Event:
        """Store the event now (in the caller's transaction, if one is open); deliver it to listeners in the
        background once that transaction commits."""
        now = self._clock.now()
        data = dict(data or {})
        event_id = self._store.append_event(type, data, now, unit_id=unit_id)
        event = Event(event_id, type, now, data, unit_id)
        impls = self._pm.hook.on_event.get_hookimpls() if type != "listener.failed" else []
        if impls:
            # Listeners hear of it only once it is stored for good: never of a write that rolled back.
            self._store.after_commit(lambda: self._dispatch(event, impls))
        return event

    def _dispatch(self, event: Event, impls: list[Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for impl in impls:
            if loop is None:
                # Outside a loop (a synchronous CLI command): call synchronous listeners inline.
                if not inspect.iscoroutinefunction(impl.function):
                    self._call_sync(impl, event)
                continue
            task = loop.create_task(self._deliver(impl, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _call_sync(self, impl: Any, event: Event) -> None:
        try:
            impl.function(event=event)
        except Exception as exc:
            self._failed(impl.plugin_name, event, exc)

    async def _deliver(self, impl: Any, event: Event) -> None:
        try:
            if inspect.iscoroutinefunction(impl.function):
                await asyncio.wait_for(impl.function(event=event), LISTENER_TIMEOUT)
            else:
                # A blocking listener runs in a thread so the loop keeps going.
                await asyncio.wait_for(_in_daemon_thread(impl.function, event), LISTENER_TIMEOUT)
        except Exception as exc:
            self._failed(impl.plugin_name, event, exc)

    def _failed(self, plugin: str, event: Event, exc: BaseException) -> None:
        reason = "timed out" if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) else f"{type(exc).__name__}: {exc}"
        log.warning("on_event listener %s failed on %s: %s", plugin, event.type, reason)
        self.listener_failures.append((plugin, event.type, reason))
        self.emit("listener.failed", {"plugin": plugin, "event_type": event.type, "event_id": event.id, "error": reason})

    async def drain(self, timeout: float = LISTENER_TIMEOUT + 1) -> None:
        """Wait (bounded) for listener deliveries in flight; used at shutdown and in tests."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)


def _in_daemon_thread(function: Any, event: Event) -> asyncio.Future[Any]:
    """Run a blocking listener in its own daemon thread; its outcome lands in a future.

    Unlike ``asyncio.to_thread`` (the loop's default executor), nothing waits for this
    thread: a listener abandoned after :data:`LISTENER_TIMEOUT` holds up neither
    ``asyncio.run``'s shutdown nor interpreter exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():  # timed out and cancelled meanwhile
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = function(event=event)
        except BaseException as exc:  # delivered to the awaiting task, not lost in the thread
            # A future cannot carry StopIteration, and SystemExit & co. must not end the loop.
            ok = isinstance(exc, Exception) and not isinstance(exc, StopIteration)
            error = exc if ok else RuntimeError(f"{type(exc).__name__}: {exc}")
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    name = f"cass-actions-listener-{getattr(function, '__qualname__', 'on_event')}"
    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def parse_event_types(values: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Event-type filters (each value possibly a comma list) as exact types and prefixes (``x.*`` → ``x.``);
    :class:`ValueError` with one sentence for a ``*`` anywhere but at the end."""
    exact: set[str] = set()
    prefixes: list[str] = []
    for value in values:
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            if item.endswith("*") and "*" not in item[:-1]:
                prefixes.append(item[:-1])
            elif "*" in item:
                raise ValueError(f"{item!r}: only a trailing * is understood (e.g. work_unit.*)")
            else:
                exact.add(item)
    return frozenset(exact), tuple(prefixes)
