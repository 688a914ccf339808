"""``cass-actions run`` (and a fleet's ``cass-actions worker``) as a supervisor of one worker process, so no
handler can take a daemon down.

Pack handlers are other people's code. One that blocks the event loop (``time.sleep``, a
busy C call) or ignores cancellation cannot be stopped from inside the process: asyncio
has no way to interrupt it. So ``run`` does not run the scheduler itself; it runs it in a
**worker** child process (``run --worker``) and watches it, as Celery does with its pool:

- The worker writes a heartbeat byte to a pipe every :data:`BEAT_SECONDS` from its event
  loop. If none comes for ``scheduler.stall_limit_seconds`` (the loop is blocked), the
  supervisor records why in the store (``state['stalled']``), SIGKILLs the worker and
  starts a new one. The new worker's crash recovery charges the interrupted step (its
  calls in flight at their worst case), then runs it again if it is idempotent, abandons
  it otherwise, and abandons it as poison after three deaths in the same step.
- A worker that had to abandon a handler still running (it ignored the cancellation at
  its timeout) exits with :data:`EXIT_RESTART` after ending that unit; it is replaced at once.
- A worker that dies (a crash, the OOM killer) is replaced with a backoff of 1, 2, 4 …
  up to 30 seconds; a worker that ran for a minute resets the backoff.
- A worker that exits with another code (a catalogue problem, a held lease, a bad plan
  file: exit 1 or 2) is not restarted: restarting would not help; ``run`` exits with it.
- SIGTERM and SIGINT are passed to the worker, which stops within about two seconds
  (``Runtime.stop``); the supervisor then exits 0. A worker still there 10 s later is killed.
- The worker asks the kernel to kill it if the supervisor dies (``PR_SET_PDEATHSIG`` on
  Linux), and checks its parent every beat elsewhere, so a SIGKILLed ``run`` leaves no
  orphan scheduler behind.

A fleet ``worker`` supervises its child the same way (``worker --worker``): the child runs every daemon it
holds, and a stall is recorded for each of them that had a unit running (:func:`record_stall`).

The scheduler lease is held in the supervisor's name (its pid, one holder id for all its
workers), so a new worker takes over from a dead one at once, while another ``run`` is
refused as long as this supervisor lives. Every store write of a worker is fenced by that
lease (:meth:`~cass_actions_core.store.Store.transaction`): a worker that lost it can
write nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("cass_actions.supervisor")

#: A worker's exit code asking to be replaced now (a handler could not be stopped).
EXIT_RESTART = 75
#: A worker's exit code when a KeyboardInterrupt or SystemExit came out of its event loop: raised by a
#: task a handler started (see :func:`run_worker`), it is a crash, and the worker is replaced like one.
EXIT_CRASHED = 70
#: How often a worker's event loop sends its heartbeat.
BEAT_SECONDS = 0.5
#: Environment variables the supervisor hands its worker.
ENV_BEAT_FD = "CASS_ACTIONS_BEAT_FD"
ENV_HOLDER = "CASS_ACTIONS_LEASE_HOLDER"
ENV_LEASE_PID = "CASS_ACTIONS_LEASE_PID"
ENV_PARENT = "CASS_ACTIONS_SUPERVISOR_PID"
#: How long a stopping worker gets before it is killed.
STOP_KILL_SECONDS = 10.0
#: How long a new worker may take to start (build its catalogue, recover) before its first heartbeat.
STARTUP_LIMIT_SECONDS = 120.0
BACKOFF_START, BACKOFF_CAP, BACKOFF_RESET_AFTER = 1.0, 30.0, 60.0
#: How long a worker's loop must have missed its beats before its watchdog thread names the step blocking it.
WATCH_AFTER_SECONDS = 2 * BEAT_SECONDS
#: The name prefix of a handler's task (``<prefix><daemon id> <step key>``), so a blocked loop's step can be named.
STEP_TASK_PREFIX = "cass-actions-step:"


def step_task_name(daemon_id: str, step: str) -> str:
    """The name of the task running the handler of ``step`` (a step key) of ``daemon_id``."""
    return f"{STEP_TASK_PREFIX}{daemon_id} {step}"


@dataclass(frozen=True)
class Stall:
    """A worker process whose event loop stopped beating, as the supervisor saw it before the kill.

    ``blocked_by``: the step whose handler was running when the loop stopped, as ``(daemon id, step key)``,
    when the worker's watchdog thread could tell (it cannot when a C call holds the GIL, or when the
    blocking code is not a handler); None otherwise.
    """

    holder: str
    pid: int
    seconds: float
    blocked_by: tuple[str, str] | None = None


@dataclass(frozen=True)
class WorkerLink:
    """What a worker learns from its supervisor (the environment): the lease identity and the beat pipe."""

    holder: str
    lease_pid: int
    beat_fd: int
    parent: int

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WorkerLink | None:
        """The link, when this process was started by a supervisor; else None."""
        env = dict(os.environ if env is None else env)
        try:
            return cls(env[ENV_HOLDER], int(env[ENV_LEASE_PID]), int(env[ENV_BEAT_FD]), int(env[ENV_PARENT]))
        except (KeyError, ValueError):
            return None

    def die_with_parent(self) -> None:
        """Have the kernel kill this process when the supervisor dies (Linux); elsewhere the beat checks."""
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            except (OSError, AttributeError):
                pass
        if os.getppid() != self.parent:  # the supervisor died before prctl took effect
            os._exit(1)

    async def beat(self) -> None:
        """Send heartbeats from the event loop until cancelled (a blocked loop sends none); a watchdog
        thread meanwhile names the step blocking the loop (:meth:`_watch`)."""
        last = [time.monotonic()]
        threading.Thread(target=self._watch, args=(asyncio.get_running_loop(), last), daemon=True,
                         name="cass-actions-watchdog").start()
        try:
            while True:
                if os.getppid() != self.parent:
                    os._exit(1)  # orphaned: the supervisor is gone, so is the daemon
                try:
                    os.write(self.beat_fd, b".")
                except OSError:
                    os._exit(1)
                last[0] = time.monotonic()
                await asyncio.sleep(BEAT_SECONDS)
        finally:
            last[0] = math.inf  # no more beats on purpose: the watchdog stops

    def _watch(self, loop: asyncio.AbstractEventLoop, last: list[float]) -> None:
        """A thread: when the loop has missed its beats, tell the supervisor which handler's task it is in.

        A thread still runs while the loop's thread sleeps or computes in Python (the GIL is handed over);
        the task running on the loop at that moment is the one blocking it. The note (``!<daemon> <step
        key>``, one write, atomic on a pipe) lets the supervisor blame that step alone, so the daemons and
        units that only shared the process are not counted a crash of their own.
        """
        reported = ""
        while last[0] != math.inf:
            time.sleep(BEAT_SECONDS / 2)
            if time.monotonic() - last[0] < WATCH_AFTER_SECONDS:
                reported = ""
                continue
            task = asyncio.current_task(loop)
            name = task.get_name() if task is not None else ""
            if name.startswith(STEP_TASK_PREFIX) and name != reported:
                try:
                    os.write(self.beat_fd, f"!{name[len(STEP_TASK_PREFIX):]}\n".encode())
                except OSError:
                    return
                reported = name


def supervise(worker_args: Sequence[str], *, stall_limit: float | Callable[[], float],
              on_stall: Callable[[Stall], None], first_args: Sequence[str] = (),
              holder: str | None = None) -> int:
    """Run workers (``cass-actions <worker_args> --worker``) until one stops for good; its exit code.

    ``stall_limit``: seconds without a heartbeat that count as a stalled loop (a function is asked again
    before each worker starts); ``on_stall`` records a :class:`Stall` in the store before the worker is
    killed, for the next worker's recovery; ``first_args`` go to the first worker only (``--plan
    FILE``); ``holder``: the lease holder name every worker uses (default ``<host>:<pid>:<random>``).
    """
    holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    stopping: list[float] = []
    child: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, _frame: object) -> None:
        if not stopping:
            stopping.append(time.monotonic())
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    backoff = BACKOFF_START
    extra = list(first_args)
    try:
        while True:
            read_fd, write_fd = os.pipe()
            env = {**os.environ, ENV_BEAT_FD: str(write_fd), ENV_HOLDER: holder, ENV_LEASE_PID: str(os.getpid()),
                   ENV_PARENT: str(os.getpid())}
            command = [sys.executable, "-m", "cass_actions_core.cli.main", *worker_args, *extra, "--worker"]
            child = subprocess.Popen(command, env=env, pass_fds=(write_fd,), stdin=subprocess.DEVNULL)
            os.close(write_fd)
            extra = []
            began = time.monotonic()
            limit = stall_limit() if callable(stall_limit) else stall_limit
            last_beat: float | None = None  # the stall watch starts at the first beat: starting up is not a stall
            stalled: float | None = None
            blocked: str | None = None
            unread = b""
            try:
                while child.poll() is None:
                    ready, _, _ = select.select([read_fd], [], [], BEAT_SECONDS)
                    now = time.monotonic()
                    if ready:
                        beat, blocked, unread = _read_link(unread + os.read(read_fd, 4096), blocked)
                        if beat:
                            last_beat = now
                    if stopping:
                        if now - stopping[0] > STOP_KILL_SECONDS:
                            child.kill()
                    elif last_beat is None and now - began > STARTUP_LIMIT_SECONDS:
                        stalled = now - began
                        print(f"cass-actions: the worker sent no heartbeat {stalled:.0f} s after it started; "
                              "replacing it", file=sys.stderr, flush=True)
                        child.kill()
                        child.wait()
                    elif last_beat is not None and now - last_beat > limit:
                        stalled = now - last_beat
                        daemon, _, step = (blocked or "").partition(" ")
                        try:
                            on_stall(Stall(holder, child.pid, stalled, (daemon, step) if step else None))
                        except Exception as exc:  # best effort: the worker is replaced all the same
                            log.warning("could not record the stall in the store: %s", exc)
                        print(f"cass-actions: the worker's event loop stalled for {stalled:.0f} s; replacing it",
                              file=sys.stderr, flush=True)
                        child.kill()
                        child.wait()
            finally:
                os.close(read_fd)
            code = child.returncode
            if stopping:
                # Asked to stop: a worker that ended by a signal (ours, or a stall kill just before) stopped.
                return 0 if code <= 0 or code in (EXIT_RESTART, EXIT_CRASHED) else code
            if code == 0:
                return 0
            if code == EXIT_RESTART or stalled is not None:
                backoff = BACKOFF_START
                continue
            if code > 0 and code != EXIT_CRASHED and last_beat is None:
                # It never started working: a user error (catalogue, lease, plan file) that a new worker would meet
                # again. Once it had started, an exit nobody asked for (a handler's os._exit, a lost lease) is a
                # death like a signal: it is replaced, and recovery counts it against the step it was running.
                return code
            if time.monotonic() - began > BACKOFF_RESET_AFTER:
                backoff = BACKOFF_START
            print(f"cass-actions: the worker died ({_describe(code)}); starting a new one in {backoff:g} s",
                  file=sys.stderr, flush=True)
            deadline = time.monotonic() + backoff
            while time.monotonic() < deadline and not stopping:
                time.sleep(0.1)
            if stopping:
                return 0
            backoff = min(BACKOFF_CAP, backoff * 2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_worker(main: Coroutine[Any, Any, None]) -> None:
    """Run a supervised worker's event loop until ``main`` returns.

    A worker's signals are handled by its loop, so a KeyboardInterrupt or SystemExit that comes out of the
    loop was raised by a task some handler started. It must not pass for a shutdown (which would put the
    step back in the queue as cleanly stopped, to crash the next worker the same way, forever): the worker
    ends at once, as a crash (:data:`EXIT_CRASHED`); its supervisor replaces it, and the next worker's
    recovery counts the death against the step, which becomes poison after three.
    """
    runner = asyncio.Runner()
    try:
        runner.run(main)
    except (KeyboardInterrupt, SystemExit) as exc:
        print(f"cass-actions: {type(exc).__name__} came out of the event loop (raised by a task a handler started); "
              "this worker ends as crashed and is replaced", file=sys.stderr, flush=True)
        os._exit(EXIT_CRASHED)
    finally:
        runner.close()


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _read_link(data: bytes, blocked: str | None) -> tuple[bool, str | None, bytes]:
    """Read a worker's pipe: heartbeats (``.``) and watchdog notes (``!<daemon> <step key>\\n``).

    Returns whether a beat came, the step named as blocking the loop since the last beat (a beat after a
    note clears it: the loop moved on), and an incomplete note to read again with the next bytes.
    """
    beat = False
    while data:
        if data.startswith(b"!"):
            end = data.find(b"\n")
            if end < 0:
                break
            blocked, data = data[1:end].decode(errors="replace"), data[end + 1:]
            continue
        cut = data.find(b"!")
        chunk, data = (data, b"") if cut < 0 else (data[:cut], data[cut:])
        if b"." in chunk:
            beat, blocked = True, None
    return beat, blocked, data


def record_stall(location: str | Path, daemon_ids: Sequence[str], stall: Stall) -> None:
    """Tell the next recovery of each of ``daemon_ids`` (stores at ``location``) why its worker was replaced.

    Every daemon of a killed worker that had a unit running lost that unit's step to the stall: the
    blocking handler's and those of the daemons sharing the worker's event loop. The note names the
    blocking step when the worker's watchdog could tell, else the other daemons that had units running.
    """
    from cass_actions_core.store import StoreError, open_store

    at = datetime.now(UTC).isoformat()
    blocked = list(stall.blocked_by) if stall.blocked_by else None
    for daemon_id in daemon_ids:
        try:
            with open_store(location, daemon_id) as store:
                store.set_state(STALL_KEY, {"pid": stall.pid, "seconds": round(stall.seconds, 1), "at": at,
                                            "blocked_by": blocked,
                                            "alongside": [d for d in daemon_ids if d != daemon_id]})
        except (StoreError, OSError) as exc:
            log.warning("could not record the stall of daemon %r in the store: %s", daemon_id, exc)


#: The store state key where a supervisor notes a replaced worker's stall.
STALL_KEY = "stalled"


def stall_note(raw: object, daemon_id: str = "", step: str = "") -> str | None:
    """The reason wording for step ``step`` (a step key) of ``daemon_id`` interrupted by a stall, from
    ``state['stalled']``; None when no stall was noted."""
    if not isinstance(raw, dict):
        return None
    head = f"the worker's event loop stalled for {raw.get('seconds', '?')} s during the step"
    tail = "so the supervisor replaced the worker"
    blocked = raw.get("blocked_by")
    if isinstance(blocked, list) and len(blocked) == 2:
        if stall_elsewhere(raw, daemon_id, step):
            return (f"{head} (a handler blocking it: step {blocked[1]} of daemon {blocked[0]!r}, not this one), {tail}; "
                    "not counted as a crash of this step")
        return f"{head} (a handler blocking it: this step's), {tail}"
    alongside = raw.get("alongside") or []
    shared = f", here or in a unit of {', '.join(map(str, alongside))} running in the same worker" if alongside else ""
    return f"{head} (a handler blocking it{shared}), {tail}"


def stall_elsewhere(raw: object, daemon_id: str, step: str) -> bool:
    """Whether the stall noted in ``raw`` was another step's doing, so this step's interruption is no crash of its own."""
    blocked = raw.get("blocked_by") if isinstance(raw, dict) else None
    return isinstance(blocked, list) and len(blocked) == 2 and tuple(blocked) != (daemon_id, step)


__all__ = ["EXIT_RESTART", "STALL_KEY", "Stall", "WorkerLink", "record_stall", "stall_elsewhere", "stall_note",
           "step_task_name", "supervise"]
