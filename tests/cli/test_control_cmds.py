"""The operator controls through the real CLI: cancel, pause/resume (whole daemon), budget set/clear and
plan add/remove/move, against a stopped daemon's store and against a running `cass-actions run` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from cass_actions_core.store import open_store
from support import OFFLINE, action_def, make_dist, run_cli, template_def

PACK = '''
import asyncio
from pathlib import Path
from cass_actions_core import hookimpl

HERE = Path(__file__).resolve().parent

def note(ctx, name):
    with open(ctx.data_dir / name, "a") as f:
        f.write(ctx.unit_id + chr(10))

async def hold(ctx):
    # step 1 of a two-step unit: says it started, then waits until the test writes "release"
    note(ctx, "hold.log")
    while not (ctx.data_dir / "release").exists():
        await asyncio.sleep(0.05)
    return {"summary": "held"}

async def after(ctx):
    note(ctx, "after.log")
    return {"summary": "after"}

async def tidy(ctx):
    note(ctx, "tidy.log")
    return {"summary": "tidied"}

async def spend(ctx):
    reply = await ctx.llm.complete("spend a little")
    return {"summary": reply.text[:20]}

@hookimpl
def register_actions(register):
    register.load(HERE / "ctl_actions.json")
    register.handler("ctl.hold", hold)
    register.handler("ctl.after", after)
    register.handler("ctl.tidy", tidy)
    register.handler("ctl.spend", spend)

@hookimpl
def register_templates(register):
    register.load(HERE / "ctl_templates.json")
'''

ENV = {"CASS_ACTIONS_LOAD_PLUGINS": "ctl"}


@pytest.fixture
def ctl_site(site: Path) -> Path:
    free = dict(tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, category="system", timeout_seconds=120)
    make_dist(site, "cass-actions-ctl", ep_name="ctl", module="ctl", module_source=PACK,
              actions=[action_def("ctl.hold", **free), action_def("ctl.after", **free), action_def("ctl.tidy", **free),
                       action_def("ctl.spend", category="creative", estimated_cost_usd=0.02, max_cost_usd=0.05)],
              templates=[template_def("hold_then_after", ["ctl.hold", "ctl.after"], category="system"),
                         template_def("tidy", ["ctl.tidy"], category="system"),
                         template_def("splurge", ["ctl.spend"], category="creative")])
    return site


def current_phase() -> tuple[str, str, str]:
    """The phase under way's day, the phase, and the day after, as the daemon (UTC, default phases) sees them
    (after midnight the night phase still belongs to the day before)."""
    from cass_actions_core.clock import SystemClock
    from cass_actions_core.phases import DayPhases

    instance = DayPhases(None, "UTC").instance_at(SystemClock("UTC").now())
    return instance.day.isoformat(), instance.phase.value, (instance.day + timedelta(days=1)).isoformat()


def setup_data(tmp_path: Path) -> Path:
    data = tmp_path / "d"
    data.mkdir()
    # a short tick: the running daemon looks at the store's controls twice a second
    (data / "config.toml").write_text('timezone = "UTC"\n[scheduler]\ntick_seconds = 0.5\n[planner]\nenabled = false\n')
    return data


def cli(site: Path, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--data-dir", str(data), site=site, env=ENV)


def ok_json(out: subprocess.CompletedProcess[str]) -> dict:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def unit(data: Path, unit_id: str):
    with open_store(data / "cass-actions.sqlite", daemon_id="cass") as store:
        return store.get_unit(unit_id)


def test_controls_on_a_stopped_daemon(ctl_site: Path, tmp_path: Path):
    data = setup_data(tmp_path)
    assert cli(ctl_site, data, "init").returncode == 0
    today, phase, tomorrow = current_phase()

    # cancel: a queued unit ends at once; again, or an unknown id, exits 1 with one sentence
    queued = ok_json(cli(ctl_site, data, "trigger", "--json", "tidy"))
    cancelled = ok_json(cli(ctl_site, data, "cancel", queued["id"][:8], "--reason", "not now", "--json"))
    assert cancelled["status"] == "cancelled" and cancelled["reason"] == "cancelled by user: not now"
    again = cli(ctl_site, data, "cancel", queued["id"])
    assert again.returncode == 1 and "already cancelled" in again.stderr and "Traceback" not in again.stderr
    unknown = cli(ctl_site, data, "cancel", "ffff0000")
    assert unknown.returncode == 1 and "ffff0000" in unknown.stderr
    assert cli(ctl_site, data, "cancel").returncode == 2
    assert "Cancel UNIT_ID" in cli(ctl_site, data, "cancel", "--help").stdout

    # whole-daemon pause and resume
    paused = ok_json(cli(ctl_site, data, "pause", "--reason", "away", "--by", "kai", "--json"))
    assert paused["daemon_paused"]["by"] == "kai" and paused["daemon_paused"]["reason"] == "away"
    assert ok_json(cli(ctl_site, data, "status", "--json"))["daemon_paused"]["reason"] == "away"
    assert "daemon paused by kai" in cli(ctl_site, data, "status").stdout
    assert ok_json(cli(ctl_site, data, "resume", "--json"))["daemon_paused"] is None
    assert "paused: system" in cli(ctl_site, data, "pause", "system").stdout  # the category form is unchanged
    assert cli(ctl_site, data, "pause", "sytem").returncode == 2
    assert "paused: nothing" in cli(ctl_site, data, "resume", "system").stdout

    # budget set / clear; plain `budget` still shows the day
    set_ = ok_json(cli(ctl_site, data, "budget", "set", "2.5", "--category", "creative", "--json"))
    assert set_["limit"] == 2.5 and set_["standing"] is True
    shown = ok_json(cli(ctl_site, data, "budget", "--json"))
    assert shown["categories"]["creative"]["limit"] == 2.5 and shown["categories"]["creative"]["override"]["by"] == "user"
    assert "standing, by user" in cli(ctl_site, data, "budget").stdout
    from cass_actions_core.clock import SystemClock

    budget_day = SystemClock("UTC").today()  # the local calendar date
    daily = ok_json(cli(ctl_site, data, "budget", "set", "$8", "--date", budget_day.isoformat(), "--json"))
    assert daily["category"] is None and daily["budget"]["daily_usd"] == 8.0
    next_day = (budget_day + timedelta(days=1)).isoformat()
    assert ok_json(cli(ctl_site, data, "budget", "--date", next_day, "--json"))["daily_usd"] == 5.0  # only that day
    past = cli(ctl_site, data, "budget", "set", "1", "--date", "2000-01-01")
    assert past.returncode == 1 and "2000-01-01" in past.stderr
    nope = cli(ctl_site, data, "budget", "set", "1", "--category", "nope")
    assert nope.returncode == 1 and "nope" in nope.stderr and "creative" in nope.stderr
    assert cli(ctl_site, data, "budget", "set", "lots").returncode == 2
    assert cli(ctl_site, data, "budget", "set", "nan").returncode == 1
    cleared = ok_json(cli(ctl_site, data, "budget", "clear", "--category", "creative", "--json"))
    assert cleared["limit"] == 0.8 and cleared["cleared"] is True  # its share of today's $8 again
    assert cli(ctl_site, data, "budget", "clear", "--category", "creative").returncode == 1

    # plan add / move / remove on tomorrow's plan (every phase still to come)
    first = ok_json(cli(ctl_site, data, "plan", "add", "tidy", "--phase", "evening", "--date", tomorrow, "--json"))
    second = ok_json(cli(ctl_site, data, "plan", "add", "splurge", "--phase", "evening", "--date", tomorrow,
                         "--focus", "paint", "--json"))
    assert first["status"] == second["status"] == "planned" and second["position"] == 1
    moved = ok_json(cli(ctl_site, data, "plan", "move", second["id"][:8], "--position", "0", "--json"))
    assert moved["position"] == 0
    order = ok_json(cli(ctl_site, data, "queue", "--date", tomorrow, "--phase", "evening", "--json"))
    assert [u["id"] for u in order] == [second["id"], first["id"]]
    assert ok_json(cli(ctl_site, data, "plan", "move", first["id"], "--phase", "morning", "--json"))["phase"] == "morning"
    removed = ok_json(cli(ctl_site, data, "plan", "remove", second["id"], "--json"))
    assert removed["status"] == "cancelled" and removed["reason"] == "removed from the plan by user"
    assert cli(ctl_site, data, "plan", "remove", second["id"]).returncode == 1
    typo = cli(ctl_site, data, "plan", "add", "tidyy", "--phase", "night")
    assert typo.returncode == 1 and "did you mean 'tidy'" in typo.stderr
    assert cli(ctl_site, data, "plan", "add", "tidy").returncode == 2  # --phase is required
    assert cli(ctl_site, data, "plan", "add", "tidy", "--phase", "night", "--param", "0.x=1",
               "--date", tomorrow).returncode == 1
    # `plan` itself works as before
    shown = cli(ctl_site, data, "plan", "--date", tomorrow, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["plan"] is None


def test_controls_reach_a_running_daemon(ctl_site: Path, tmp_path: Path):
    data = setup_data(tmp_path)
    assert cli(ctl_site, data, "init").returncode == 0
    today, phase, tomorrow = current_phase()
    # creative gets no money until the test raises it while the daemon runs
    assert cli(ctl_site, data, "budget", "set", "0", "--category", "creative").returncode == 0
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"date": today, "phases": {phase: [{"template": "hold_then_after"},
                                                                   {"template": "splurge"}]}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
    env.update({"PYTHONPATH": str(ctl_site), **ENV, "CASS_ACTIONS_DATA_DIR": str(data), **OFFLINE})
    daemon = subprocess.Popen([sys.executable, "-m", "cass_actions_core.cli.main", "run", "--plan", str(plan)], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pack_dir = data / "workspace" / "ctl"
    try:
        held = wait_for(lambda: (pack_dir / "hold.log").exists() and (pack_dir / "hold.log").read_text().split(),
                        what="the first step to start")[0]
        # cancel a running unit: a request; the daemon ends it after the current step
        requested = ok_json(cli(ctl_site, data, "cancel", held[:8], "--json"))
        assert requested["status"] == "running" and requested["reason"].startswith("cancel requested by user")
        # pause the whole daemon; a unit queued now must not start
        assert ok_json(cli(ctl_site, data, "pause", "--json"))["daemon_paused"] is not None
        queued = ok_json(cli(ctl_site, data, "trigger", "--json", "tidy"))
        (pack_dir / "release").write_text("go")
        wait_for(lambda: unit(data, held).status == "cancelled", what="the running unit to be cancelled")
        assert not (pack_dir / "after.log").exists()  # its second step never ran
        time.sleep(1.5)  # three ticks
        splurge = [u for u in ok_json(cli(ctl_site, data, "queue", "--json")) if u["template_id"] == "splurge"][0]
        assert splurge["status"] == "queued"  # nothing starts while paused
        assert unit(data, queued["id"]).status == "queued" and not (pack_dir / "tidy.log").exists()
        # resume: the daemon starts work again at its next tick
        assert ok_json(cli(ctl_site, data, "resume", "--json"))["daemon_paused"] is None
        wait_for(lambda: unit(data, queued["id"]).status == "completed", what="the queued unit to run after resume")
        blocked = wait_for(lambda: unit(data, splurge["id"]).status == "budget_blocked" and splurge,
                           what="the splurge unit to be budget-blocked (creative has $0)")
        # money raised at run time: the daemon retries the blocked unit and it runs
        assert ok_json(cli(ctl_site, data, "budget", "set", "1", "--category", "creative", "--json"))["limit"] == 1.0
        wait_for(lambda: unit(data, blocked["id"]).status == "completed", what="the budget-blocked unit to run")
        # today's plan: a unit added to the phase under way is queued and run by the daemon
        added = ok_json(cli(ctl_site, data, "plan", "add", "tidy", "--phase", phase, "--json"))
        wait_for(lambda: unit(data, added["id"]).status == "completed", what="the added unit to run")
        later = ok_json(cli(ctl_site, data, "plan", "add", "tidy", "--phase", "night", "--date", tomorrow, "--json"))
        assert ok_json(cli(ctl_site, data, "plan", "move", later["id"], "--phase", "evening", "--json"))["phase"] == "evening"
        assert ok_json(cli(ctl_site, data, "plan", "remove", later["id"], "--json"))["status"] == "cancelled"
        assert daemon.poll() is None  # the daemon ran throughout
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
