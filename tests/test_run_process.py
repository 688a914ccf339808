"""`cass-actions run` as a real process: SIGKILL mid-unit and restart, the lease, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cass_actions_core.store import Store, open_store
from support import OFFLINE, action_def, make_dist, template_def

def pack_source(pack: str, body: str, handlers: dict[str, str]) -> str:
    """The module of a hand-made pack: shared helpers, ``body`` (the handlers) and the two registration hooks."""
    bind = "".join(f"    register.handler({a!r}, {f})\n" for a, f in handlers.items())
    return (f"import asyncio, os, signal, time\nfrom pathlib import Path\nfrom cass_actions_core import hookimpl\n\n"
            f"HERE = Path(__file__).resolve().parent\n\n{HELPERS}\n{body}\n\n"
            f"@hookimpl\ndef register_actions(register):\n    register.load(HERE / '{pack}_actions.json')\n{bind}\n"
            f"@hookimpl\ndef register_templates(register):\n    register.load(HERE / '{pack}_templates.json')\n")


HELPERS = """
def note(ctx, name, line="started"):
    # one line per run in a log file of the pack: the tests count side effects, not rows
    with open(ctx.data_dir / name, "a") as f:
        f.write(line + chr(10))

def first_time(ctx, marker):
    path = ctx.data_dir / marker
    if path.exists():
        return False
    path.write_text("x")
    return True
"""


CRASHY = pack_source("crashy", """
async def first(ctx):
    note(ctx, "first.log", "ran")
    return {"summary": "first step done"}

async def slow(ctx):
    note(ctx, "slow.log")
    if first_time(ctx, "slow-once"):
        await asyncio.sleep(120)   # the test kills the process here
    return {"summary": "slow step done"}
""", {"crashy.first": "first", "crashy.slow": "slow", "crashy.risky": "slow"})


def no_llm(action_id: str, **kw):
    return action_def(action_id, tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, category="system",
                      timeout_seconds=600, **kw)


@pytest.fixture
def crashy_site(site: Path) -> Path:
    make_dist(site, "cass-actions-crashy", ep_name="crashy", module="crashy",
              actions=[no_llm("crashy.first"), no_llm("crashy.slow", idempotent=True), no_llm("crashy.risky", idempotent=False)],
              templates=[template_def("safe_course", ["crashy.first", "crashy.slow"], category="system"),
                         template_def("risky_course", ["crashy.first", "crashy.risky"], category="system")],
              module_source=CRASHY)
    return site


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def store(data_dir: Path) -> Store:
    return open_store(data_dir / "cass-actions.sqlite", daemon_id="cass")


def unit_of(data_dir: Path, template: str):
    with store(data_dir) as s:
        units = s.list_units(template_id=template)
    return units[0] if units else None


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    return proc.returncode, err


def plan_only(data_dir: Path, template: str) -> Path:
    """Give today a plan holding only ``template``, so the test controls what runs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    plan = data_dir.parent / "plan.json"
    from cass_actions_core.clock import SystemClock
    from cass_actions_core.phases import DayPhases

    instance = DayPhases(None, "UTC").instance_at(SystemClock("UTC").now())
    plan.write_text(json.dumps({"date": instance.day.isoformat(), "phases": {instance.phase.value: [{"template": template}]}}))
    return plan


def start_run(site: Path, data_dir: Path, pack: str, *args: str) -> subprocess.Popen[str]:
    """``cass-actions run *args`` as a real process on ``data_dir``, loading only the hand-made ``pack`` from ``site``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
    env.update({"PYTHONPATH": str(site), "CASS_ACTIONS_LOAD_PLUGINS": pack, "CASS_ACTIONS_DATA_DIR": str(data_dir), **OFFLINE})
    return subprocess.Popen([sys.executable, "-m", "cass_actions_core.cli.main", "run", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def run_with_plan(site: Path, data_dir: Path, template: str) -> subprocess.Popen[str]:
    return start_run(site, data_dir, "crashy", "--plan", str(plan_only(data_dir, template)))


def restart(site: Path, data_dir: Path) -> subprocess.Popen[str]:
    return start_run(site, data_dir, "crashy")


def test_sigkill_mid_unit_then_restart_resumes_at_the_unfinished_step(crashy_site: Path, tmp_path: Path):
    data_dir = tmp_path / "daemon"
    pack_dir = data_dir / "workspace" / "crashy"
    first = run_with_plan(crashy_site, data_dir, "safe_course")
    wait_for(lambda: (pack_dir / "slow.log").exists(), what="the slow step to start")
    first.kill()  # SIGKILL: no cleanup at all
    first.wait(timeout=30)
    unit = unit_of(data_dir, "safe_course")
    assert unit.status == "running" and unit.next_step == 1
    with store(data_dir) as s:
        plans_before = len(s.list_events(types=["day.planned"]))

    second = restart(crashy_site, data_dir)  # takes the lease at once: the holder's pid is dead
    done = wait_for(lambda: (u := unit_of(data_dir, "safe_course")) and u.status == "completed" and u, what="completion")
    code, err = stop(second)
    assert code == 0 and "stopped" in err, err
    assert done.id == unit.id  # no unit lost or replaced
    assert (pack_dir / "first.log").read_text() == "ran\n"  # the completed step never ran twice
    assert (pack_dir / "slow.log").read_text() == "started\nstarted\n"  # the idempotent step ran again
    with store(data_dir) as s:
        transitions = [t.reason or "" for t in s.transitions(unit.id)]
        assert any("resumed after a restart" in r and "idempotent" in r for r in transitions)
        assert len(s.list_events(types=["day.planned"])) == plans_before == 1  # the plan was not made again
        assert s.get_summary(unit.id).status == "completed"
        # the interrupted attempt is kept, with what it cost, next to the one that completed
        assert [r.status for r in s.action_runs_for_unit(unit.id)] == ["completed", "failed", "completed"]
        assert "interrupted by a crash" in s.action_runs_for_unit(unit.id)[1].error


def test_sigkill_during_a_non_idempotent_step_abandons_the_unit(crashy_site: Path, tmp_path: Path):
    data_dir = tmp_path / "daemon"
    pack_dir = data_dir / "workspace" / "crashy"
    first = run_with_plan(crashy_site, data_dir, "risky_course")
    wait_for(lambda: (pack_dir / "slow.log").exists(), what="the risky step to start")
    first.kill()
    first.wait(timeout=30)
    second = restart(crashy_site, data_dir)
    abandoned = wait_for(lambda: (u := unit_of(data_dir, "risky_course")) and u.status == "abandoned" and u, what="abandon")
    code, err = stop(second)
    assert code == 0, err
    assert "not idempotent" in abandoned.reason and "crashy.risky" in abandoned.reason
    assert (pack_dir / "slow.log").read_text() == "started\n"  # not run again
    with store(data_dir) as s:
        assert s.get_summary(abandoned.id).status == "abandoned"


def test_second_run_refuses_while_the_first_holds_the_lease_and_takes_over_after_it_dies(crashy_site: Path, tmp_path: Path):
    data_dir = tmp_path / "daemon"
    first = run_with_plan(crashy_site, data_dir, "safe_course")
    wait_for(lambda: (data_dir / "workspace" / "crashy" / "slow.log").exists(), what="the first daemon to work")
    second = restart(crashy_site, data_dir)
    _out, err = second.communicate(timeout=60)
    assert second.returncode == 1
    assert f"pid {first.pid}" in err and "Traceback" not in err
    first.kill()
    first.wait(timeout=30)
    third = restart(crashy_site, data_dir)
    holder = wait_for(lambda: (lease := store_lease(data_dir)) and lease.pid == third.pid and lease, what="takeover")
    assert holder.pid == third.pid
    code, err = stop(third)
    assert code == 0, err
    assert store_lease(data_dir) is None  # released on a clean stop


def store_lease(data_dir: Path):
    with store(data_dir) as s:
        return s.get_lease()


POISON = pack_source("poison", """
async def die(ctx):
    note(ctx, "die.log")
    os.kill(os.getpid(), signal.SIGKILL)   # takes the whole process down, every time
""", {"poison.die": "die"})


def test_a_unit_that_kills_the_process_every_time_is_abandoned_as_poison(site: Path, tmp_path: Path):
    make_dist(site, "cass-actions-poison", ep_name="poison", module="poison", module_source=POISON,
              actions=[no_llm("poison.die", idempotent=True)],
              templates=[template_def("poison_course", ["poison.die"], category="system")])
    data_dir = tmp_path / "daemon"
    log = data_dir / "workspace" / "poison" / "die.log"
    # One `run`: its supervisor replaces the worker each time the step kills it; the third death abandons the unit.
    daemon = start_run(site, data_dir, "poison", "--plan", str(plan_only(data_dir, "poison_course")))
    abandoned = wait_for(lambda: (u := unit_of(data_dir, "poison_course")) and u.status == "abandoned" and u,
                         what="the poison unit to be abandoned")
    assert daemon.poll() is None  # the daemon lived on
    code, err = stop(daemon)
    assert code == 0, err
    assert err.count("the worker died (killed by SIGKILL)") == 3
    assert abandoned.reason.startswith("poison: the process died during step 1 (poison.die) 3 times in a row")
    assert log.read_text().count("started") == 3  # not run a fourth time
    with store(data_dir) as s:
        assert s.get_summary(abandoned.id).status == "abandoned"


ESCAPES = pack_source("escapes", """
async def _raise(exc):
    raise exc

KEEP = []

async def interrupts(ctx):
    note(ctx, "escapes.log")
    KEEP.append(asyncio.get_running_loop().create_task(_raise(KeyboardInterrupt())))  # comes out of the event loop
    await asyncio.sleep(5)
    return {"summary": "never"}

async def exits_quietly(ctx):
    note(ctx, "escapes.log")
    KEEP.append(asyncio.get_running_loop().create_task(_raise(SystemExit(0))))  # looks like a clean stop
    await asyncio.sleep(5)
    return {"summary": "never"}

async def exits_one(ctx):
    note(ctx, "escapes.log")
    os._exit(1)   # the exit code of a user error, from the middle of a step
""", {"escapes.interrupts": "interrupts", "escapes.exits_quietly": "exits_quietly", "escapes.exits_one": "exits_one"})


@pytest.mark.parametrize("action", ["interrupts", "exits_quietly", "exits_one"])
def test_a_handler_ending_its_worker_from_inside_becomes_poison_and_the_daemon_lives_on(site: Path, tmp_path: Path,
                                                                                        action: str):
    # Each used to stop `run` for good (exit 130, 0 or 1) or to be put back as "stopped by a shutdown" and
    # crash every later start the same way.
    make_dist(site, "cass-actions-escapes", ep_name="escapes", module="escapes", module_source=ESCAPES,
              actions=[no_llm(f"escapes.{a}", idempotent=True) for a in ("interrupts", "exits_quietly", "exits_one")],
              templates=[template_def("escaping", [f"escapes.{action}"], category="system")])
    data_dir = tmp_path / "daemon"
    log = data_dir / "workspace" / "escapes" / "escapes.log"
    daemon = start_run(site, data_dir, "escapes", "--plan", str(plan_only(data_dir, "escaping")))
    try:
        abandoned = wait_for(lambda: (u := unit_of(data_dir, "escaping")) and u.status == "abandoned" and u,
                             what="the unit to be abandoned as poison")
    except AssertionError:
        daemon.kill()
        raise AssertionError(daemon.communicate()[1][-4000:] + repr(unit_of(data_dir, "escaping"))) from None
    assert daemon.poll() is None  # the daemon lived on
    code, err = stop(daemon)
    assert code == 0, err
    assert abandoned.reason.startswith(f"poison: the process died during step 1 (escapes.{action}) 3 times in a row")
    assert log.read_text().count("started") == 3
    assert err.count("the worker died") == 3, err


THINKER = pack_source("thinker", """
async def think(ctx):
    reply = await ctx.llm.complete("Think about the day, at length. " * 40)
    return {"summary": reply.text[:40]}
""", {"thinker.think": "think"})


def test_sigkill_during_an_llm_call_charges_its_worst_case_and_history_agrees_with_the_ledger(site: Path, tmp_path: Path):
    from cass_actions_core.testing.fake_anthropic import FakeAnthropic, usage

    make_dist(site, "cass-actions-thinker", ep_name="thinker", module="thinker", module_source=THINKER,
              actions=[action_def("thinker.think", category="reflection", estimated_cost_usd=0.001, max_cost_usd=0.5,
                                  idempotent=True, timeout_seconds=600)],
              templates=[template_def("thinking", ["thinker.think"])])
    data_dir = tmp_path / "daemon"
    with FakeAnthropic() as fake:
        data_dir.mkdir(parents=True)
        (data_dir / "config.toml").write_text(
            f'[llm]\nprovider = "anthropic"\nbase_url = "{fake.url}"\nmax_retries = 0\nmodel = "claude-sonnet-5-5"\n'
            "max_tokens = 2000\n[planner]\nenabled = false\n")
        fake.reply_text("never seen", delay=120)  # the call hangs: the process is killed while it is out
        fake.reply_text("a thought", usage=usage(900, 50))
        plan = plan_only(data_dir, "thinking")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
        env.update({"PYTHONPATH": str(site), "CASS_ACTIONS_LOAD_PLUGINS": "thinker", "CASS_ACTIONS_DATA_DIR": str(data_dir),
                    "ANTHROPIC_API_KEY": "test-key"})
        command = [sys.executable, "-m", "cass_actions_core.cli.main", "run"]
        first = subprocess.Popen(command + ["--plan", str(plan)], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        wait_for(lambda: len(fake.message_requests) == 1, what="the call to go out")
        first.kill()
        first.wait(timeout=30)
        second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  stdin=subprocess.DEVNULL)
        done = wait_for(lambda: (u := unit_of(data_dir, "thinking")) and u.status == "completed" and u, what="completion")
        code, err = stop(second)
        assert code == 0, err
    with store(data_dir) as s:
        runs = s.action_runs_for_unit(done.id)
        assert [r.status for r in runs] == ["failed", "completed"]
        # the killed call: 2,000 output tokens at $10/M at least (its worst case), never $0
        assert runs[0].cost_usd >= 0.02 and "interrupted by a crash" in runs[0].error
        ledger_total = sum(e.amount_usd for e in s.ledger_entries() if e.unit_id == done.id and e.kind == "settle")
        summary = s.get_summary(done.id).data
        assert summary["cost_usd"] == pytest.approx(ledger_total, abs=1e-6) == pytest.approx(sum(r.cost_usd for r in runs))
        assert summary["actions"][0]["attempts"] == 2


def test_sigterm_during_a_long_step_is_honoured_within_two_seconds_and_the_step_runs_again(crashy_site: Path,
                                                                                          tmp_path: Path):
    data_dir = tmp_path / "daemon"
    pack_dir = data_dir / "workspace" / "crashy"
    first = run_with_plan(crashy_site, data_dir, "safe_course")
    wait_for(lambda: (pack_dir / "slow.log").exists(), what="the slow step (120 s) to start")
    began = time.monotonic()
    code, err = stop(first)
    took = time.monotonic() - began
    assert code == 0, err
    assert took < 2.0 + 1.0, f"SIGTERM took {took:.2f} s to stop the daemon"  # 2 s, plus interpreter exit
    unit = unit_of(data_dir, "safe_course")
    assert unit.status == "queued" and "stopped by a shutdown during step 2 (crashy.slow)" in unit.reason
    with store(data_dir) as s:
        assert [r.status for r in s.action_runs_for_unit(unit.id)] == ["completed", "failed"]
        assert store_lease(data_dir) is None
    second = restart(crashy_site, data_dir)
    wait_for(lambda: (u := unit_of(data_dir, "safe_course")) and u.status == "completed" and u, what="completion")
    code, err = stop(second)
    assert code == 0, err
    assert (pack_dir / "first.log").read_text() == "ran\n"  # the finished step did not run again
    assert (pack_dir / "slow.log").read_text() == "started\nstarted\n"


HOSTILE = pack_source("hostile", """
async def blocks(ctx):
    note(ctx, "blocks.log")
    if first_time(ctx, "blocked-once"):
        time.sleep(60)   # blocks the whole event loop: no timeout can fire
    return {"summary": "done without blocking"}

async def deaf(ctx):
    note(ctx, "deaf.log")
    while True:          # ignores every cancellation
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue

async def fine(ctx):
    return {"summary": "fine"}
""", {"hostile.blocks": "blocks", "hostile.deaf": "deaf", "hostile.fine": "fine"})


@pytest.fixture
def hostile_site(site: Path) -> Path:
    make_dist(site, "cass-actions-hostile", ep_name="hostile", module="hostile", module_source=HOSTILE,
              actions=[no_llm("hostile.blocks", idempotent=True),
                       action_def("hostile.deaf", tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0,
                                  category="system", timeout_seconds=1, idempotent=True),
                       no_llm("hostile.fine", idempotent=True)],
              templates=[template_def("blocking", ["hostile.blocks"], category="system"),
                         template_def("deafening", ["hostile.deaf"], category="system"),
                         template_def("afterwards", ["hostile.fine"], category="system")])
    return site


def hostile_daemon(site: Path, data_dir: Path, templates: list[str], **config: str) -> subprocess.Popen[str]:
    from cass_actions_core.clock import SystemClock
    from cass_actions_core.phases import DayPhases

    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "config.toml").write_text("[scheduler]\nstall_limit_seconds = 2\n[planner]\nenabled = false\n")
    instance = DayPhases(None, "UTC").instance_at(SystemClock("UTC").now())
    plan = data_dir.parent / "plan.json"
    plan.write_text(json.dumps({"date": instance.day.isoformat(),
                                "phases": {instance.phase.value: [{"template": t} for t in templates]}}))
    return start_run(site, data_dir, "hostile", "--plan", str(plan))


def test_a_handler_blocking_the_event_loop_gets_its_worker_replaced_and_the_daemon_goes_on(hostile_site: Path,
                                                                                            tmp_path: Path):
    data_dir = tmp_path / "daemon"
    daemon = hostile_daemon(hostile_site, data_dir, ["blocking", "afterwards"])
    done = wait_for(lambda: (u := unit_of(data_dir, "blocking")) and u.status == "completed" and u, what="the rerun")
    after = wait_for(lambda: (u := unit_of(data_dir, "afterwards")) and u.status == "completed" and u, what="more work")
    code, err = stop(daemon)
    assert code == 0, err
    assert "event loop stalled" in err
    with store(data_dir) as s:
        runs = s.action_runs_for_unit(done.id)
        assert [r.status for r in runs] == ["failed", "completed"]
        # the worker's watchdog thread named the blocking step: this one
        assert "the worker's event loop stalled for" in runs[0].error and "a handler blocking it: this step's" in \
            runs[0].error, runs[0].error
        assert after.status == "completed"


def test_a_handler_deaf_to_cancellation_fails_its_unit_and_a_new_worker_carries_on(hostile_site: Path, tmp_path: Path):
    data_dir = tmp_path / "daemon"
    daemon = hostile_daemon(hostile_site, data_dir, ["deafening", "afterwards"])
    failed = wait_for(lambda: (u := unit_of(data_dir, "deafening")) and u.status == "failed" and u, what="the deaf unit")
    after = wait_for(lambda: (u := unit_of(data_dir, "afterwards")) and u.status == "completed" and u, what="more work")
    assert daemon.poll() is None
    code, err = stop(daemon)
    assert code == 0, err
    assert "timed out after 1 s and ignored the cancellation for 5 s" in failed.reason
    assert "this worker is replaced" in err
    assert after.status == "completed"
    assert (data_dir / "workspace" / "hostile" / "deaf.log").read_text().count("started") == 1  # not run again


def test_sigterm_with_a_handler_deaf_to_cancellation_still_stops_within_seconds(hostile_site: Path, tmp_path: Path):
    data_dir = tmp_path / "daemon"
    daemon = hostile_daemon(hostile_site, data_dir, ["deafening"])
    wait_for(lambda: (data_dir / "workspace" / "hostile" / "deaf.log").exists(), what="the deaf step")
    began = time.monotonic()
    code, err = stop(daemon)
    assert code == 0, err
    assert time.monotonic() - began < 5.0  # 1.5 s to finish, 1.5 s to honour the cancellation, then left behind
    unit = unit_of(data_dir, "deafening")
    assert unit.status == "queued" and "stopped by a shutdown during step 1 (hostile.deaf)" in unit.reason
    assert store_lease(data_dir) is None


def test_a_rehearsal_runs_days_in_seconds_and_a_killed_run_continues_the_same_timeline(site: Path, tmp_path: Path):
    data_dir = tmp_path / "rehearsal"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
    env.update({"CASS_ACTIONS_LOAD_PLUGINS": "journal", "CASS_ACTIONS_DATA_DIR": str(data_dir)})
    command = [sys.executable, "-m", "cass_actions_core.cli.main", "run", "--provider", "offline"]
    first = subprocess.Popen([*command, "--speed", "7200", "--start", "2026-11-26"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def phases_begun() -> list[tuple[str, str]]:
        if not (data_dir / "cass-actions.sqlite").exists():
            return []
        with store(data_dir) as s:
            return [(e.data["day"], e.data["phase"]) for e in s.list_events(types=["day_phase.changed"])]

    wait_for(lambda: ("2026-11-26", "afternoon") in phases_begun(), what="the rehearsal's afternoon")
    first.kill()  # the supervisor; its worker dies with it
    first.wait(timeout=30)
    with store(data_dir) as s:
        last_before = max(e.at for e in s.list_events())
    second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL)
    wait_for(lambda: ("2026-11-26", "night") in phases_begun(), what="the night, after the restart")
    try:
        # Queries and controls act on the rehearsal's timeline, not the wall clock's.
        status = json.loads(run_cli_in(data_dir, env, ["status", "--json"]).stdout)
    finally:
        code, err = stop(second)  # never leave the daemon running, whatever the check says
    assert "2026-11-26" <= status["phase_day"] < "2026-12-01", status["phase_day"]
    assert code == 0, err
    with store(data_dir) as s:
        events = s.list_events()
        assert len(s.list_events(types=["day.planned"])) == 1  # the restart did not plan the day again
        assert s.get_state("rehearsal_clock")["speed"] == 7200
    after = [e.at for e in events if e.at > last_before]
    assert after and min(after) > last_before  # the timeline went on from where it was
    assert phases_begun()[:4] == [("2026-11-26", p) for p in ("morning", "afternoon", "evening", "night")]
    # a real daemon's folder cannot be rehearsed in
    real = tmp_path / "real"
    assert run_cli_in(real, env, ["init"]).returncode == 0
    refused = run_cli_in(real, env, ["run", "--speed", "60"])
    assert refused.returncode == 2 and "rehearse (run --speed) only in an empty folder" in refused.stderr


def run_cli_in(data_dir: Path, env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cass_actions_core.cli.main", *args, "--data-dir", str(data_dir)],
                          env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_a_daemon_sigstopped_past_its_lease_is_taken_over_and_can_write_nothing_when_it_wakes(crashy_site: Path,
                                                                                              tmp_path: Path):
    data_dir = tmp_path / "daemon"
    data_dir.mkdir(parents=True)
    (data_dir / "config.toml").write_text("[scheduler]\nlease_ttl_seconds = 3\n[planner]\nenabled = false\n")
    pack_dir = data_dir / "workspace" / "crashy"
    plan = plan_only(data_dir, "safe_course")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
    env.update({"PYTHONPATH": str(crashy_site), "CASS_ACTIONS_LOAD_PLUGINS": "crashy", "CASS_ACTIONS_DATA_DIR": str(data_dir), **OFFLINE})
    command = [sys.executable, "-m", "cass_actions_core.cli.main", "run"]
    sleeper = subprocess.Popen([*command, "--plan", str(plan)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: (pack_dir / "slow.log").exists(), what="the slow step to start")
    os.killpg(sleeper.pid, signal.SIGSTOP)  # supervisor and worker, frozen mid-step
    try:
        time.sleep(4)  # past the 3 s lease
        taker = restart(crashy_site, data_dir)
        done = wait_for(lambda: (u := unit_of(data_dir, "safe_course")) and u.status == "completed" and u,
                        what="the new daemon to finish the unit")
        with store(data_dir) as s:
            rows_before = [(r.key, r.status) for r in s.action_runs_for_unit(done.id)]
            transitions_before = [(t.from_status, t.to_status) for t in s.transitions(done.id)]
            ledger_before = [e.id for e in s.ledger_entries() if e.unit_id == done.id]
    finally:
        os.killpg(sleeper.pid, signal.SIGCONT)
    try:
        _out, err = sleeper.communicate(timeout=60)  # it wakes, finds the lease gone, and stops
    finally:
        if sleeper.poll() is None:  # never leave a daemon behind, whatever failed
            os.killpg(sleeper.pid, signal.SIGKILL)
    assert sleeper.returncode != 0 and "lease" in err, err
    code, err2 = stop(taker)
    assert code == 0, err2
    with store(data_dir) as s:
        # no late write of the woken daemon landed: same runs, transitions, ledger rows, one completion
        assert [(r.key, r.status) for r in s.action_runs_for_unit(done.id)] == rows_before
        assert [(t.from_status, t.to_status) for t in s.transitions(done.id)] == transitions_before
        assert [e.id for e in s.ledger_entries() if e.unit_id == done.id] == ledger_before
        assert s.get_unit(done.id).status == "completed"
        assert len([e for e in s.list_events(types=["work_unit.completed"]) if e.unit_id == done.id]) == 1
    assert [st for _k, st in rows_before] == ["completed", "failed", "completed"]
    assert (pack_dir / "first.log").read_text() == "ran\n"
    assert (pack_dir / "slow.log").read_text() == "started\nstarted\n"


def test_the_supervisor_reads_beats_and_the_watchdogs_notes_from_a_worker_pipe():
    from cass_actions_core.supervisor import _read_link

    assert _read_link(b"...", None) == (True, None, b"")
    # a note after the last beat names the step blocking the loop; a beat after it clears it
    assert _read_link(b"..!d.1 2027-01-04/morning/u1/0\n", None) == (True, "d.1 2027-01-04/morning/u1/0", b"")
    assert _read_link(b"!d 2027/x/u/1\n.", "d 2027/x/u/0") == (True, None, b"")
    # a note cut by a read is kept for the next one, and its dots are no beats
    beat, blocked, rest = _read_link(b"!d.x 2027", None)
    assert (beat, blocked, rest) == (False, None, b"!d.x 2027")
    assert _read_link(rest + b"/m/u/0\n", blocked) == (False, "d.x 2027/m/u/0", b"")
