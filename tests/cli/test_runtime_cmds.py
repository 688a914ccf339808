"""The daemon commands through the real CLI: simulate, status, queue, history, budget, pause/resume,
trigger, plan, approvals, run-action, init."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from support import OFFLINE, action_def, make_dist, make_sim_pack, run_cli

ENV = {"CASS_ACTIONS_LOAD_PLUGINS": "sim"}


@pytest.fixture
def sim_site(site: Path) -> Path:
    return make_sim_pack(site)


def test_simulate_a_day_and_every_unit_has_a_summary_with_reasons(sim_site: Path, tmp_path: Path):
    data = tmp_path / "sim"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[approvals]\nexpire_after_hours = 3\n[scheduler]\ncatch_up_window_minutes = 0\n")
    began = time.monotonic()
    out = run_cli("simulate", "--start", "2026-11-26", "--data-dir", str(data), "--config", str(cfg), site=sim_site, env=ENV)
    elapsed = time.monotonic() - began
    assert out.returncode == 0, out.stderr
    assert "morning of 2026-11-26 begins" in out.stdout and "night of 2026-11-26 begins" in out.stdout
    assert "unit(s):" in out.stdout
    history = json.loads(run_cli("history", "--json", "--data-dir", str(data), "--config", str(cfg), site=sim_site, env=ENV).stdout)
    queue = json.loads(run_cli("queue", "--json", "--data-dir", str(data), "--config", str(cfg), site=sim_site, env=ENV).stdout)
    assert {h["unit_id"] for h in history} == {u["id"] for u in queue}  # every unit has a summary
    status = {h["template_id"]: (h["status"], h["reason"]) for h in history}
    assert status["morning_thoughts"][0] == "completed"
    assert status["broken"] == ("failed", "step 1 (sim.fail) failed: nothing to work with")
    assert status["build"][0] == "failed" and "expired unanswered" in status["build"][1]  # approval expired → rejected
    # splurge ($0.60) can never fit creative's $0.50: the planner leaves it out and says why
    assert "splurge" not in status
    plan = json.loads(run_cli("plan", "--json", "--date", "2026-11-26", "--data-dir", str(data), "--config", str(cfg),
                              site=sim_site, env=ENV).stdout)
    assert "splurge: creative has $0.50 left today, its cheapest form needs $0.60" in plan["plan"]["dropped"]
    assert status["late_thoughts"][0] == "completed"
    thoughts = data / "workspace" / "sim" / "thoughts" / "2026-11-26.md"
    assert thoughts.read_text().startswith("[offline]")
    assert elapsed < 60  # a simulated day takes seconds (generous bound for slow CI machines)


def test_simulate_json_output_and_fresh_refuses_foreign_store(sim_site: Path, tmp_path: Path):
    data = tmp_path / "sim"
    out = run_cli("simulate", "--json", "--start", "2026-11-26", "--data-dir", str(data), site=sim_site, env=ENV)
    result = json.loads(out.stdout)
    assert result["units"] == len(result["summaries"]) >= 4
    assert result["cost_usd"] > 0 and "reflection" in result["cost_by_category"]
    again = run_cli("simulate", "--json", "--fresh", "--start", "2026-11-26", "--data-dir", str(data), site=sim_site, env=ENV)
    assert again.returncode == 0 and json.loads(again.stdout)["units"] == result["units"]
    real = tmp_path / "real"
    run_cli("init", "--data-dir", str(real), site=sim_site, env=ENV)
    assert run_cli("status", "--data-dir", str(real), site=sim_site, env=ENV).returncode == 0
    refused = run_cli("simulate", "--fresh", "--data-dir", str(real), site=sim_site, env=ENV)
    assert refused.returncode == 2 and "refuses to delete" in refused.stderr
    assert (real / "cass-actions.sqlite").exists()


def test_a_rehearsal_keeps_its_own_store_whatever_store_url_names(sim_site: Path, tmp_path: Path):
    # A shared database (here one that cannot even be reached) is never written by simulated days.
    shared = {**ENV, "CASS_ACTIONS_STORE_URL": "postgresql://nobody:secret@127.0.0.1:1/fleet"}
    data = tmp_path / "sim"
    out = run_cli("simulate", "--start", "2026-11-26", "--data-dir", str(data), site=sim_site, env=shared)
    assert out.returncode == 0, out.stderr
    assert f"a rehearsal keeps its own store in {data / 'cass-actions.sqlite'}" in out.stderr
    assert (data / "cass-actions.sqlite").exists()
    # queries in the rehearsal's folder read its store too
    queue = run_cli("queue", "--json", "--data-dir", str(data), site=sim_site, env=shared)
    assert queue.returncode == 0 and len(json.loads(queue.stdout)) >= 4, queue.stderr
    # outside a rehearsal the shared database is what store.url names (unreachable here: one paragraph)
    real = run_cli("status", "--data-dir", str(tmp_path / "real"), site=sim_site, env=shared)
    assert real.returncode == 1 and "postgresql://nobody:***@127.0.0.1:1/fleet" in real.stderr, real.stderr


def test_query_and_control_commands(sim_site: Path, tmp_path: Path):
    data = tmp_path / "d"
    common = ["--data-dir", str(data)]
    assert run_cli("simulate", "--start", "2026-11-26", *common, site=sim_site, env=ENV).returncode == 0

    status = json.loads(run_cli("status", "--json", *common, site=sim_site, env=ENV).stdout)
    assert status["daemon_id"] == "cass" and status["lease"] is None
    budget = json.loads(run_cli("budget", "--json", "--date", "2026-11-26", *common, site=sim_site, env=ENV).stdout)
    assert budget["categories"]["reflection"]["spent"] > 0
    assert "reflection" in run_cli("budget", "--date", "2026-11-26", *common, site=sim_site, env=ENV).stdout
    morning = json.loads(run_cli("queue", "--json", "--date", "2026-11-26", "--phase", "morning", *common, site=sim_site, env=ENV).stdout)
    assert [u["template_id"] for u in morning] == ["morning_thoughts"]
    found = json.loads(run_cli("history", "--json", "--text", "nothing to work with", *common, site=sim_site, env=ENV).stdout)
    assert [h["template_id"] for h in found] == ["broken"]

    assert "paused: reflection" in run_cli("pause", "reflection", *common, site=sim_site, env=ENV).stdout
    assert json.loads(run_cli("status", "--json", *common, site=sim_site, env=ENV).stdout)["paused_categories"] == ["reflection"]
    assert "paused: nothing" in run_cli("resume", "reflection", *common, site=sim_site, env=ENV).stdout

    queued = run_cli("trigger", "--json", "morning_thoughts", "--focus", "the garden", *common, site=sim_site, env=ENV)
    assert queued.returncode == 0 and json.loads(queued.stdout)["status"] == "queued"
    unknown = run_cli("trigger", "morning_thougts", *common, site=sim_site, env=ENV)
    assert unknown.returncode == 1 and "did you mean 'morning_thoughts'" in unknown.stderr

    ran = run_cli("run-action", "--json", "sim.think", "--focus", "octopuses", "--provider", "offline", *common,
                  site=sim_site, env=ENV)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "completed"
    # the default provider is anthropic: with no key nothing runs, and the error says which variable to set
    keyless = run_cli("run-action", "--json", "sim.think", *common, site=sim_site, env={**ENV, "ANTHROPIC_API_KEY": None})
    assert keyless.returncode == 1 and keyless.stdout == "" and "ANTHROPIC_API_KEY" in keyless.stderr
    assert "--provider offline" in keyless.stderr and "Traceback" not in keyless.stderr
    failed = run_cli("run-action", "sim.fail", *common, site=sim_site, env=ENV)
    assert failed.returncode == 1 and "nothing to work with" in failed.stdout
    bad_param = run_cli("run-action", "sim.tidy", "--param", "x=1", *common, site=sim_site, env=ENV)
    assert bad_param.returncode == 1 and "invalid params" in bad_param.stderr and "Traceback" not in bad_param.stderr
    assert run_cli("run-action", "sim.tidy", "--param", "novalue", *common, site=sim_site, env=ENV).returncode == 2
    # Refused before anything is created: a typo leaves no store in a data folder (which `simulate --fresh`
    # would then refuse to clear as not its own).
    for mistake in (["sim.thinkk"], ["sim.tidy", "--param", "x=1"]):
        fresh = tmp_path / "untouched"
        refused = run_cli("run-action", *mistake, "--provider", "offline", "--data-dir", str(fresh), site=sim_site, env=ENV)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert not fresh.exists()


def test_approvals_through_the_cli(sim_site: Path, tmp_path: Path):
    data = tmp_path / "d"
    common = ["--data-dir", str(data)]
    ran = run_cli("run-action", "--json", "sim.build", *common, site=sim_site, env=ENV)
    assert ran.returncode == 1  # parked, not completed
    assert json.loads(ran.stdout)["status"] == "awaiting_approval"
    pending = json.loads(run_cli("approvals", "--json", *common, site=sim_site, env=ENV).stdout)
    assert [a["action_id"] for a in pending] == ["sim.build"]
    out = run_cli("approve", pending[0]["id"], "--note", "fine", *common, site=sim_site, env=ENV)
    assert out.returncode == 0 and "approved" in out.stdout
    again = run_cli("approve", pending[0]["id"], *common, site=sim_site, env=ENV)
    assert again.returncode == 1 and "already" in again.stderr
    missing = run_cli("reject", "no-such-id", *common, site=sim_site, env=ENV)
    assert missing.returncode == 1 and "no-such-id" in missing.stderr and "Traceback" not in missing.stderr
    everything = json.loads(run_cli("approvals", "--all", "--json", *common, site=sim_site, env=ENV).stdout)
    assert [(a["status"], a["resolved_by"], a["note"]) for a in everything] == [("approved", "user", "fine")]
    none_waiting = run_cli("approvals", *common, site=sim_site, env=ENV)  # a sentence, not a bare table header
    assert none_waiting.returncode == 0 and none_waiting.stdout.strip() == (
        "no approvals are waiting (--all lists the answered ones too)")
    assert "sim.build" in run_cli("approvals", "--all", *common, site=sim_site, env=ENV).stdout


def test_plan_command_shows_and_replaces_a_plan(sim_site: Path, tmp_path: Path):
    data = tmp_path / "d"
    common = ["--data-dir", str(data)]
    day = (date.today() + timedelta(days=2)).isoformat()  # a date still to come, whatever the machine's zone
    none = run_cli("plan", "--date", day, *common, site=sim_site, env=ENV)
    assert none.returncode == 1 and f"no plan for {day}" in none.stderr and not data.exists()
    assert json.loads(run_cli("plan", "--json", "--date", day, *common, site=sim_site, env=ENV).stdout)["plan"] is None
    made = json.loads(run_cli("plan", "--json", "--date", day, "--replan", "--provider", "offline", *common,
                              site=sim_site, env=ENV).stdout)
    assert made["source"] == "llm" and len(made["units"]) >= 4
    assert made["plan"]["provider"] == "offline" and made["intention"].startswith("[offline]")
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"phases": {"evening": [{"template": "broken", "focus": "by hand"}]}}))
    replaced = json.loads(run_cli("plan", "--json", "--date", day, "--file", str(f), *common, site=sim_site, env=ENV).stdout)
    assert [(u["template_id"], u["phase"], u["focus"]) for u in replaced["units"]] == [("broken", "evening", "by hand")]
    f.write_text('{"phases": {"evening": [{"template": "brokn"}]}}')
    bad = run_cli("plan", "--date", day, "--file", str(f), *common, site=sim_site, env=ENV)
    assert bad.returncode == 1 and "did you mean 'broken'" in bad.stderr


def test_plan_dry_run_shows_candidates_components_and_the_prompt_and_changes_nothing(sim_site: Path, tmp_path: Path):
    data = tmp_path / "d"
    day = (date.today() + timedelta(days=2)).isoformat()
    out = run_cli("plan", "--dry-run", "--json", "--date", day, "--provider", "offline", "--data-dir", str(data),
                  site=sim_site, env=ENV)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    by_id = {c["template"]: c for c in info["candidates"]}
    assert {"morning_thoughts", "broken", "build", "late_thoughts"} <= set(by_id)
    components = by_id["morning_thoughts"]["components"]["morning"]
    assert set(components) == {"window", "growth", "curiosity", "mood", "variety", "priority"}
    assert by_id["morning_thoughts"]["best_phase"] == "morning"
    assert any(e.startswith("splurge: creative has $0.50 left today") for e in info["excluded"])
    prompt = info["prompt"]
    assert prompt["tokens_estimate"] <= prompt["tokens_bound"] and len(prompt["sha256"]) == 64
    assert "morning_thoughts" in prompt["message"] and prompt["system"][0]["text"]
    # nothing was called or stored
    none = run_cli("plan", "--json", "--date", day, "--data-dir", str(data), site=sim_site, env=ENV)
    shown = json.loads(none.stdout)
    assert shown["plan"] is None and shown["units"] == []
    table = run_cli("plan", "--dry-run", "--date", day, "--provider", "offline", "--data-dir", str(data), site=sim_site, env=ENV)
    assert "nothing was called or changed" in table.stdout and "morning_thoughts" in table.stdout


def test_replan_replaces_unstarted_units_and_status_shows_the_intention(sim_site: Path, tmp_path: Path):
    data = tmp_path / "d"
    common = ["--data-dir", str(data)]
    day = (date.today() + timedelta(days=2)).isoformat()
    first = json.loads(run_cli("plan", "--json", "--replan", "--provider", "offline", "--date", day, *common,
                               site=sim_site, env=ENV).stdout)
    again = json.loads(run_cli("plan", "--json", "--replan", "--provider", "offline", "--date", day, *common,
                               site=sim_site, env=ENV).stdout)
    assert len(again["units"]) == len(first["units"])  # replaced, never stacked
    assert not {u["id"] for u in first["units"]} & {u["id"] for u in again["units"]}
    assert all(u["focus"] and u["motivation"] for u in again["units"])
    shown = run_cli("plan", "--date", day, *common, site=sim_site, env=ENV).stdout
    assert f"intention: {again['intention']}" in shown
    for unit in again["units"]:  # focus and motivation in full, "[offline]" labels kept
        assert unit["motivation"].startswith("[offline]")
        assert unit["motivation"] in " ".join(shown.split()) or unit["motivation"][:60] in shown


def test_plan_refuses_a_date_that_is_over(sim_site: Path, tmp_path: Path):
    out = run_cli("plan", "--replan", "--date", "2026-01-01", "--data-dir", str(tmp_path / "d"), site=sim_site, env=ENV)
    assert out.returncode == 2 and "2026-01-01 is over; only today or a later date can be planned" in out.stderr
    assert "Traceback" not in out.stderr


def test_init_creates_the_demo_workspace_once(tmp_path: Path):
    data = tmp_path / "d"
    out = run_cli("init", "--data-dir", str(data), env={"CASS_ACTIONS_LOAD_PLUGINS": ""})
    assert out.returncode == 0 and "self/model.json" in out.stdout
    model = json.loads((data / "workspace" / "self" / "model.json").read_text())
    assert model["name"] == "Cass" and model["open_questions"]
    assert len((data / "workspace" / "conversations" / "inbox" / "demo.jsonl").read_text().splitlines()) > 10
    again = run_cli("init", "--data-dir", str(data), env={"CASS_ACTIONS_LOAD_PLUGINS": ""})
    assert "already set up" in again.stdout


def test_run_stops_cleanly_on_sigint(sim_site: Path, tmp_path: Path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
    env.update({"PYTHONPATH": str(sim_site), **ENV, "CASS_ACTIONS_DATA_DIR": str(tmp_path / "d"), **OFFLINE})
    proc = subprocess.Popen([sys.executable, "-m", "cass_actions_core.cli.main", "run"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from cass_actions_core.store import open_store

    def lease_taken() -> bool:
        db = tmp_path / "d" / "cass-actions.sqlite"
        if not db.exists():
            return False
        with open_store(db, daemon_id="cass") as store:
            return store.get_lease() is not None

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not lease_taken():
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped." in err and "Traceback" not in err


def test_run_refuses_a_broken_pack_and_a_bad_catalogue(site: Path, tmp_path: Path):
    make_dist(site, "cass-actions-broken", ep_name="broken", module_source="raise ImportError('missing dependency foo')\n")
    out = run_cli("run", "--data-dir", str(tmp_path / "d"), site=site, env={"CASS_ACTIONS_LOAD_PLUGINS": "broken"})
    assert out.returncode == 1
    assert "cass-actions-broken" in out.stderr and "missing dependency foo" in out.stderr and "Traceback" not in out.stderr
    # disabling it lets the daemon start (the strict check passes)
    assert run_cli("validate", "--strict", site=site,
                   env={"CASS_ACTIONS_LOAD_PLUGINS": "broken", "CASS_ACTIONS_DISABLE_PLUGINS": "broken"}).returncode == 0


def test_corrupt_store_gets_a_clear_error_and_is_left_untouched(tmp_path: Path):
    data = tmp_path / "d"
    data.mkdir()
    db = data / "cass-actions.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    out = run_cli("status", "--data-dir", str(data), env={"CASS_ACTIONS_LOAD_PLUGINS": ""})
    assert out.returncode == 1 and str(db) in out.stderr and "Traceback" not in out.stderr
    assert db.read_bytes() == before


def test_simulate_refuses_a_real_daemons_store(sim_site: Path, tmp_path: Path):
    real = tmp_path / "real"
    assert run_cli("init", "--data-dir", str(real), site=sim_site, env=ENV).returncode == 0
    out = run_cli("simulate", "--data-dir", str(real), site=sim_site, env=ENV)
    assert out.returncode == 2 and "no simulation created" in out.stderr
    assert run_cli("status", "--json", "--data-dir", str(real), site=sim_site, env=ENV).returncode == 0


def test_queries_work_when_a_pack_has_bad_metadata(sim_site: Path, tmp_path: Path):
    data = tmp_path / "d"
    assert run_cli("simulate", "--start", "2026-11-26", "--data-dir", str(data), site=sim_site, env=ENV).returncode == 0
    make_dist(sim_site, "cass-actions-badmeta", ep_name="badmeta", actions=[action_def("bad.one", tier=9)])
    env = {"CASS_ACTIONS_LOAD_PLUGINS": "sim,badmeta"}
    for command in (["status"], ["queue"], ["history"], ["approvals", "--all"], ["budget", "--date", "2026-11-26"]):
        out = run_cli(*command, "--data-dir", str(data), site=sim_site, env=env)
        assert out.returncode == 0, (command, out.stderr)
    refused = run_cli("run-action", "sim.tidy", "--data-dir", str(data), site=sim_site, env=env)
    assert refused.returncode == 1 and "$.actions[0].tier" in refused.stderr


def test_run_with_a_plan_refuses_without_touching_a_running_daemons_plan(sim_site: Path, tmp_path: Path):
    import os

    from cass_actions_core.store import open_store

    data = tmp_path / "d"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
    env.update({"PYTHONPATH": str(sim_site), **ENV, "CASS_ACTIONS_DATA_DIR": str(data), **OFFLINE})
    daemon = subprocess.Popen([sys.executable, "-m", "cass_actions_core.cli.main", "run"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        db = data / "cass-actions.sqlite"
        deadline = time.monotonic() + 60
        plan_before = None
        while time.monotonic() < deadline:
            if db.exists():
                with open_store(db, daemon_id="cass") as store:
                    if store.get_lease() is not None:
                        day = store.list_units()[0].local_date if store.list_units() else None
                        plan_before = store.get_plan(day) if day else None
                        if plan_before is not None:
                            break
            time.sleep(0.1)
        assert plan_before is not None
        f = tmp_path / "p.json"
        f.write_text(json.dumps({"date": plan_before.local_date.isoformat(), "phases": {"night": [{"template": "broken"}]}}))
        out = run_cli("run", "--plan", str(f), "--data-dir", str(data), site=sim_site, env={**ENV, **OFFLINE})
        assert out.returncode == 1 and f"pid {daemon.pid}" in out.stderr
        # plan --file and plan --replan follow the same rule (issue 9, finding 7)
        day = plan_before.local_date.isoformat()
        for args in (["--file", str(f)], ["--replan", "--provider", "offline"]):
            out = run_cli("plan", "--date", day, *args, "--data-dir", str(data), site=sim_site, env=ENV)
            assert out.returncode == 1 and f"pid {daemon.pid}" in out.stderr, (args, out.stderr)
            assert "Stop that daemon first" in out.stderr
        with open_store(db, daemon_id="cass") as store:
            # the daemon's plan (made by the offline planning call) stands, untouched
            assert store.get_plan(plan_before.local_date).source == plan_before.source == "llm"
            assert store.get_plan(plan_before.local_date).created_at == plan_before.created_at
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)


# -- issue 9, finding 7 -------------------------------------------------------------------------

def test_queue_and_history_report_a_damaged_row_in_one_line(sim_site: Path, tmp_path: Path):
    import sqlite3

    data = tmp_path / "d"
    assert run_cli("simulate", "--start", "2026-11-26", "--data-dir", str(data), site=sim_site, env=ENV).returncode == 0
    db = data / "cass-actions.sqlite"
    raw = sqlite3.connect(db)
    (unit_id,) = raw.execute("SELECT id FROM units LIMIT 1").fetchone()
    raw.execute("UPDATE units SET data = '{broken' WHERE id = ?", (unit_id,))
    raw.execute("UPDATE summaries SET created_at = 'not a time'")
    raw.commit()
    raw.close()
    for command, kind in (("queue", "unit"), ("history", "summary")):
        out = run_cli(command, "--data-dir", str(data), site=sim_site, env=ENV)
        assert out.returncode == 1, (command, out.stdout)
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith(f"Error: {db}: a damaged {kind} row ({'id' if kind == 'unit' else 'unit_id'} ")
        assert "Traceback" not in out.stderr


# -- issue 11: what a newcomer runs into ------------------------------------------------------------------


def test_without_an_api_key_run_simulate_and_run_action_refuse_once_and_create_nothing(sim_site: Path, tmp_path: Path):
    keyless = {**ENV, "ANTHROPIC_API_KEY": None, "ANTHROPIC_AUTH_TOKEN": None, "CASS_ACTIONS_LLM_PROVIDER": None}
    data = tmp_path / "d"
    for args in (["run"], ["simulate", "--provider", "anthropic"], ["run-action", "sim.think"]):
        out = run_cli(*args, "--data-dir", str(data), site=sim_site, env=keyless, timeout=60)
        assert out.returncode == 1, (args, out.stderr)
        assert out.stderr.count("ANTHROPIC_API_KEY") == 1 and "--provider offline" in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
        assert not data.exists(), args
    # the offline provider needs no key
    assert run_cli("simulate", "--data-dir", str(data), site=sim_site, env=keyless).returncode == 0


def test_an_unknown_provider_is_a_usage_error_naming_the_registered_ones(sim_site: Path, tmp_path: Path):
    for args in (["simulate"], ["run"], ["run-action", "sim.think"], ["plan", "--dry-run"]):
        out = run_cli(*args, "--provider", "nosuch", "--data-dir", str(tmp_path / "d"), site=sim_site, env=ENV)
        assert out.returncode == 2, (args, out.stderr)
        assert "'--provider'" in out.stderr and "registered: anthropic, offline" in out.stderr
        assert "configuration" not in out.stderr


def test_queries_and_controls_on_a_data_dir_without_a_store_create_nothing(sim_site: Path, tmp_path: Path):
    typo = tmp_path / "no-such-folder"
    for args in (["status"], ["queue"], ["history"], ["budget"], ["approvals"], ["pause", "reflection"],
                 ["trigger", "morning_thoughts"], ["reject", "some-id"], ["events"], ["plan"]):
        out = run_cli(*args, "--data-dir", str(typo), site=sim_site, env=ENV)
        assert out.returncode == 1, (args, out.stderr)
        assert str(typo) in out.stderr and "Nothing was created" in out.stderr and "Traceback" not in out.stderr
        assert not typo.exists(), args
    typo.mkdir()  # an existing folder without a store: the same, and no store appears
    assert run_cli("status", "--data-dir", str(typo), site=sim_site, env=ENV).returncode == 1
    assert list(typo.iterdir()) == []


def test_a_rejection_ends_the_unit_at_once_and_history_shows_it(sim_site: Path, tmp_path: Path):
    common = ["--data-dir", str(tmp_path / "d")]
    parked = json.loads(run_cli("run-action", "--json", "sim.build", *common, site=sim_site, env=ENV).stdout)
    assert parked["status"] == "awaiting_approval"
    (pending,) = json.loads(run_cli("approvals", "--json", *common, site=sim_site, env=ENV).stdout)
    assert pending["unit_id"][:8] in run_cli("approvals", *common, site=sim_site, env=ENV).stdout  # which unit waits
    out = run_cli("reject", pending["id"][:6], "--note", "not today", *common, site=sim_site, env=ENV)  # a prefix
    assert out.returncode == 0 and "rejected" in out.stdout
    # No daemon ran: the unit ended with the answer, and its summary says so.
    (unit,) = json.loads(run_cli("queue", "--json", *common, site=sim_site, env=ENV).stdout)
    assert unit["status"] == "failed" and "rejected by user: not today" in unit["reason"]
    (summary,) = json.loads(run_cli("history", "--json", *common, site=sim_site, env=ENV).stdout)
    assert summary["status"] == "failed" and "awaiting_approval" not in run_cli("history", *common, site=sim_site, env=ENV).stdout
    events = [json.loads(line)["type"] for line in
              run_cli("events", "--json", "--limit", "0", *common, site=sim_site, env=ENV).stdout.splitlines()]
    assert events[-2:] == ["approval.resolved", "work_unit.failed"]


def test_queue_takes_statuses_repeated_comma_separated_or_as_arguments(sim_site: Path, tmp_path: Path):
    common = ["--data-dir", str(tmp_path / "d")]
    assert run_cli("simulate", "--start", "2026-11-26", *common, site=sim_site, env=ENV).returncode == 0

    def statuses(*args: str) -> set[str]:
        out = run_cli("queue", "--json", *args, *common, site=sim_site, env=ENV)
        assert out.returncode == 0, out.stderr
        return {u["status"] for u in json.loads(out.stdout)}

    assert statuses("--status", "completed,failed") == statuses("--status", "completed", "--status", "failed") \
        == statuses("--status", "completed", "failed") == statuses("completed", "failed") == {"completed", "failed"}
    typo = run_cli("queue", "--status", "faild", *common, site=sim_site, env=ENV)
    assert typo.returncode == 2 and "did you mean 'failed'" in typo.stderr


def test_plan_file_params_are_checked_against_each_steps_action(sim_site: Path, tmp_path: Path):
    common = ["--data-dir", str(tmp_path / "d")]
    assert run_cli("init", *common, site=sim_site, env=ENV).returncode == 0
    day = (date.today() + timedelta(days=2)).isoformat()
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"date": day, "phases": {"morning": [
        {"template": "morning_thoughts", "params": {"1": {"conversation_id": 12345}, "5": {}}}]}}))
    for args in (["plan", "--file", str(f)], ["run", "--plan", str(f)]):
        out = run_cli(*args, *common, site=sim_site, env={**ENV, **OFFLINE})
        assert out.returncode == 1, out.stderr
        assert "$.phases.morning[0].params.1" in out.stderr and "conversation_id" in out.stderr and "sim.tidy" in out.stderr
        assert "$.phases.morning[0].params.5" in out.stderr and "has 2 step(s)" in out.stderr
    # nothing stored; the shape is the one /api/plan answers for a date with no plan
    assert json.loads(run_cli("plan", "--json", "--date", day, *common, site=sim_site, env=ENV).stdout) == {
        "date": day, "source": None, "reason": None, "intention": None, "plan": None, "units": []}


def test_env_variables_with_bad_values_are_named(tmp_path: Path):
    for var, value in (("CASS_ACTIONS_TIMEZONE", "Mars/Base"), ("CASS_ACTIONS_DAILY_BUDGET_USD", "-1"),
                       ("CASS_ACTIONS_DAILY_BUDGET_USD", "lots")):
        out = run_cli("validate", env={var: value, "CASS_ACTIONS_LOAD_PLUGINS": ""})
        assert out.returncode == 1 and var in out.stderr and "Traceback" not in out.stderr, (var, out.stderr)


def test_a_category_with_no_money_is_shown_as_dropped_work_with_its_reason_by_validate_simulate_and_plan(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("[budget.allocations]\nresearch = 0\n")
    env = {"CASS_ACTIONS_LOAD_PLUGINS": "journal,memory,wonderland,session"}
    common = ["--config", str(config), "--data-dir", str(tmp_path / "d")]
    checked = run_cli("validate", *common, env=env)
    assert checked.returncode == 0, checked.stdout
    (warning,) = [ln for ln in checked.stdout.splitlines() if ln.startswith("- warning:")]
    assert str(config.resolve()) in warning and "$.budget.allocations.research" in warning and "research_block" in warning
    assert "1 warning(s)" in checked.stdout
    reason = f"category 'research' has no budget: budget.allocations.research is 0 in {config.resolve()}"
    simulated = run_cli("simulate", "--start", "2026-11-26", *common, env=env)
    assert simulated.returncode == 0, simulated.stderr
    assert f"dropped: research_block: {reason}" in simulated.stdout
    shown = run_cli("plan", "--date", "2026-11-26", *common, env=env)
    assert shown.returncode == 0 and f"- research_block: {reason}" in shown.stdout


def test_plan_refuses_two_ways_of_planning_at_once(sim_site: Path, tmp_path: Path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"phases": {"evening": [{"template": "broken"}]}}))
    for extra in (["--replan"], ["--dry-run"]):
        out = run_cli("plan", "--file", str(f), *extra, "--data-dir", str(tmp_path / "d"), site=sim_site, env=ENV)
        assert out.returncode == 2 and "alternatives" in out.stderr and not (tmp_path / "d").exists()


def test_a_plan_file_for_a_date_that_is_over_is_refused_by_plan_and_run(sim_site: Path, tmp_path: Path):
    common = ["--data-dir", str(tmp_path / "d")]
    assert run_cli("init", *common, site=sim_site, env=ENV).returncode == 0
    f = tmp_path / "old.json"
    f.write_text(json.dumps({"date": "2020-01-01", "phases": {"evening": [{"template": "broken"}]}}))
    for args in (["plan", "--file", str(f)], ["run", "--plan", str(f)]):
        out = run_cli(*args, *common, site=sim_site, env={**ENV, **OFFLINE})
        assert out.returncode == 1 and "2020-01-01, which is over" in out.stderr, (args, out.stderr)
    assert json.loads(run_cli("queue", "--json", "--date", "2020-01-01", *common, site=sim_site, env=ENV).stdout) == []


def test_a_unit_removed_from_the_plan_does_not_count_toward_max_per_day(sim_site: Path, tmp_path: Path):
    common = ["--data-dir", str(tmp_path / "d")]
    assert run_cli("init", *common, site=sim_site, env=ENV).returncode == 0
    day = (date.today() + timedelta(days=2)).isoformat()
    added = run_cli("plan", "add", "broken", "--phase", "evening", "--date", day, "--json", *common, site=sim_site, env=ENV)
    assert added.returncode == 0, added.stderr
    unit_id = json.loads(added.stdout)["id"]
    assert run_cli("plan", "remove", unit_id, *common, site=sim_site, env=ENV).returncode == 0
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"date": day, "phases": {"evening": [{"template": "broken"}]}}))
    out = run_cli("plan", "--file", str(f), "--json", *common, site=sim_site, env=ENV)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert not any("max_per_day" in d for d in shown["plan"].get("dropped", []))
    assert [u["template_id"] for u in shown["units"] if u["status"] == "planned"] == ["broken"]


def test_simulate_without_a_terminal_neither_draws_nor_imports_a_progress_bar(tmp_path: Path):
    # stderr is a pipe here, as in CI or a script: rich's progress module (a third of a second) stays unloaded.
    code = ("import sys\nfrom cass_actions_core.cli.main import main\n"
            "sys.argv = ['cass-actions', 'simulate', '--data-dir', sys.argv[1], '--days', '2', '--start', '2026-11-23']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('PROGRESS', 'rich.progress' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sim")], capture_output=True, text=True,
                          cwd=Path(__file__).parent, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "unit(s):" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "PROGRESS False"
    assert "\r" not in done.stderr  # no bar redrawn over itself


def test_a_query_on_a_sqlite_store_url_naming_no_file_refuses_and_creates_nothing(sim_site: Path, tmp_path: Path):
    missing = tmp_path / "nowhere" / "x.db"
    env = {**ENV, "CASS_ACTIONS_STORE_URL": f"sqlite:///{missing}"}
    for command in (["status"], ["queue"], ["history"]):
        out = run_cli(*command, "--data-dir", str(tmp_path / "d"), site=sim_site, env=env)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"{missing} does not exist: store.url" in out.stderr
    assert not missing.parent.exists()
    # The daemon's own first start creates it; then the same query reads it.
    assert run_cli("init", "--data-dir", str(tmp_path / "d"), site=sim_site, env=env).returncode == 0
    assert missing.exists()
    assert run_cli("status", "--data-dir", str(tmp_path / "d"), site=sim_site, env=env).returncode == 0
