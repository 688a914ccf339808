"""Issue 9's soak: thirty rehearsed days of the real daemon (``run --speed``: supervisor and worker
processes) with the four bundled packs and a pack of misbehaving handlers, against the fake Messages
API misbehaving at random from a fixed seed, while the test SIGKILLs the daemon at random moments,
restarts it, and once SIGSTOPs it past its lease while another daemon takes over. Then the promises
of docs/reliability.md are checked on what the store and the packs' own side effects say.

To see that it can fail, point ``SOAK_BREAK`` at a folder whose ``sitecustomize.py`` breaks the
core in the daemon processes (for example one that makes finished steps look unfinished, so a
restart resumes a completed step): ``test_no_completed_step_ran_again`` then fails.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from cass_actions_core.config import BudgetSettings
from cass_actions_core.store import open_store
from cass_actions_core.testing.fake_anthropic import FakeAnthropic
from support import action_def, make_dist, template_def
from test_fault_days import ENDED, PARKED, faulty
from test_run_process import pack_source

SEED = 20261204
SPEED = 15_000          # virtual seconds per real second: 30 days in under three minutes
DAYS = 30
START = date(2026, 11, 1)

SOAK = pack_source("soak", """
import random

def _roll(ctx):
    return random.Random(ctx.run_key).random()   # the same draw for every attempt of a step

async def effect(ctx):
    note(ctx, "effects.log", ctx.run_key)         # the side effect the soak counts
    return {"summary": "an effect"}

async def boom(ctx):
    roll = _roll(ctx)
    if roll < 0.2:
        raise asyncio.CancelledError("raised by the handler")
    if roll < 0.3:
        raise SystemExit(3)
    if roll < 0.5:
        raise ValueError("a bug")
    return {"summary": "no boom this time"}

async def block(ctx):
    if first_time(ctx, "blocked-" + ctx.local_date.isoformat()) and ctx.local_date.day % 10 == 3:
        time.sleep(8)                               # blocks the event loop: the worker is replaced
    return {"summary": "unblocked"}
""", {"soak.effect": "effect", "soak.boom": "boom", "soak.block": "block"})


def free(action_id: str, **kw) -> dict:
    return action_def(action_id, tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, category="system",
                      timeout_seconds=30, idempotent=True, **kw)


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory):
    site = tmp_path_factory.mktemp("site")
    make_dist(site, "cass-actions-soak", ep_name="soak", module="soak", module_source=SOAK,
              actions=[free("soak.effect"), free("soak.boom"), free("soak.block")],
              templates=[template_def("soak_mix", ["soak.effect", {"action": "soak.boom", "optional": True}, "soak.effect"],
                                      category="system", max_per_day=2, cooldown="2h"),
                         template_def("soak_block", ["soak.block"], category="system")])
    data_dir = tmp_path_factory.mktemp("soak") / "daemon"
    rng = random.Random(SEED)
    log: list[str] = []
    with FakeAnthropic(responder=faulty(SEED)) as fake:
        data_dir.mkdir(parents=True)
        (data_dir / "config.toml").write_text(
            "[scheduler]\nlease_ttl_seconds = 3\nstall_limit_seconds = 5\n"
            f'[llm]\nprovider = "anthropic"\nbase_url = "{fake.url}"\nmax_retries = 0\ntimeout_seconds = 10\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
        # SOAK_BREAK: a folder with a sitecustomize.py that breaks the core, to see the soak fail (see the module doc)
        extra = [os.environ["SOAK_BREAK"]] if os.environ.get("SOAK_BREAK") else []
        env.update({"PYTHONPATH": os.pathsep.join([*extra, str(site)]), "CASS_ACTIONS_DATA_DIR": str(data_dir),
                    "ANTHROPIC_API_KEY": "test-key",
                    "CASS_ACTIONS_LOAD_PLUGINS": "journal,memory,wonderland,session,soak"})
        command = [sys.executable, "-m", "cass_actions_core.cli.main", "run"]

        def start(*extra: str) -> subprocess.Popen[str]:
            return subprocess.Popen([*command, *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True, stdin=subprocess.DEVNULL, start_new_session=True)

        epoch = time.time()  # the rehearsal clock starts now (within the worker's start-up)

        def virtual_now() -> datetime:
            # computed, not read from the store: the soak must not contend for the daemon's store
            return datetime(START.year, START.month, START.day, 6, tzinfo=UTC) + timedelta(
                seconds=(time.time() - epoch) * SPEED)

        end = datetime(START.year, START.month, START.day, 6, tzinfo=UTC) + timedelta(days=DAYS, hours=1)
        daemon = start("--speed", str(SPEED), "--start", START.isoformat())
        real_span = DAYS * 86400 / SPEED
        kills = sorted(rng.uniform(0.1, 0.85) * real_span for _ in range(5))
        stop_at = rng.uniform(0.3, 0.7) * real_span
        began = time.monotonic()
        stopped_once = False
        try:
            while True:
                now = virtual_now()
                if now >= end:
                    break
                elapsed = time.monotonic() - began
                if kills and elapsed >= kills[0]:
                    kills.pop(0)
                    os.killpg(daemon.pid, signal.SIGKILL)
                    daemon.wait(timeout=30)
                    log.append(f"SIGKILL at {now}")
                    daemon = start()
                elif not stopped_once and elapsed >= stop_at:
                    stopped_once = True
                    os.killpg(daemon.pid, signal.SIGSTOP)
                    time.sleep(4)  # past the 3 s lease
                    taker = start()
                    time.sleep(3)
                    os.killpg(daemon.pid, signal.SIGCONT)
                    _out, err = daemon.communicate(timeout=60)
                    log.append(f"SIGSTOP at {now}: the woken daemon exited {daemon.returncode}")
                    assert daemon.returncode != 0, err
                    daemon = taker
                assert time.monotonic() - began < real_span * 3 + 120, "the soak does not advance"
                time.sleep(0.2)
        finally:
            last_err = ""
            if daemon.poll() is None:
                os.killpg(daemon.pid, signal.SIGTERM)
                try:
                    _out, last_err = daemon.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(daemon.pid, signal.SIGKILL)
        assert daemon.returncode == 0, (log, last_err[-3000:])
        # one more start: its crash recovery settles what the last kill or stall left running
        final = start()
        time.sleep(3)
        # A loaded machine starts it slowly: give it up to a minute to settle the days already over
        # (what test_every_planned_unit_ended_or_parked_with_a_reason then checks, unit by unit).
        settle_by = time.monotonic() + 60
        while time.monotonic() < settle_by and _unsettled(data_dir, START + timedelta(days=DAYS - 2)):
            time.sleep(0.5)
        os.killpg(final.pid, signal.SIGTERM)
        final.communicate(timeout=60)
        assert final.returncode == 0
        billed = len(fake.message_requests)
    store = open_store(data_dir / "cass-actions.sqlite", daemon_id="cass")
    yield store, data_dir, log, billed
    store.close()


def _unsettled(data_dir: Path, last: date) -> int:
    """How many units of the days up to ``last`` are neither ended nor parked (a read-only look that
    never takes the daemon's write lock)."""
    import sqlite3

    done = sorted(ENDED | PARKED)
    conn = sqlite3.connect(f"file:{data_dir / 'cass-actions.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(f"SELECT count(*) FROM units WHERE local_date <= ? AND status NOT IN ({', '.join('?' * len(done))})",
                           (last.isoformat(), *done)).fetchone()
    except sqlite3.Error:
        return 1  # busy or not there yet: look again
    finally:
        conn.close()
    return int(row[0])


def test_the_soak_killed_restarted_and_stopped_the_daemon_and_it_worked(soak):
    store, _data_dir, log, billed = soak
    assert sum("SIGKILL" in line for line in log) == 5 and sum("SIGSTOP" in line for line in log) == 1, log
    assert billed >= 300
    # every day has work, or a downtime record says why not (a restart at 15,000x costs hours)
    days = {u.local_date for u in store.list_units()}
    missed = store.list_events(types=["downtime.missed"])
    covered = {date.fromisoformat(e.data["first_day"]) + timedelta(days=i) for e in missed
               for i in range((date.fromisoformat(e.data["last_day"]) - date.fromisoformat(e.data["first_day"])).days + 1)}
    for offset in range(DAYS - 1):
        day = START + timedelta(days=offset)
        assert day in days or day in covered, day
    assert len(days) >= DAYS // 2
    assert Counter(u.status for u in store.list_units())["completed"] >= 5 * len(days)


def test_every_planned_unit_ended_or_parked_with_a_reason(soak):
    store, *_ = soak
    last = START + timedelta(days=DAYS - 2)
    for unit in store.list_units():
        if unit.local_date > last:
            continue  # the last days may still be under way when the soak stopped
        assert unit.status in ENDED | PARKED, (unit.local_date, unit.template_id, unit.status,
                                               [(t.at.isoformat(), t.to_status, t.reason) for t in store.transitions(unit.id)],
                                               [(r.key, r.status) for r in store.action_runs_for_unit(unit.id)])
        if unit.status != "completed":
            assert unit.reason, (unit.template_id, unit.status)


def test_no_completed_step_ran_again(soak):
    store, data_dir, *_ = soak
    effects = Counter((data_dir / "workspace" / "soak" / "effects.log").read_text().split())
    for unit in store.list_units():
        runs = store.action_runs_for_unit(unit.id)
        by_step = defaultdict(list)
        for r in runs:
            by_step[r.step_index].append(r)
        for index, attempts in by_step.items():
            done = [r for r in attempts if r.status == "completed"]
            assert len(done) <= 1, (unit.template_id, index, [r.key for r in attempts])
            if done:  # nothing of this step started after it completed
                assert attempts[-1] is done[0], (unit.template_id, index, [(r.key, r.status) for r in attempts])
            key = f"{unit.local_date.isoformat()}/{unit.phase}/{unit.id}/{index}"
            assert effects.get(key, 0) <= len(attempts), (key, effects.get(key), len(attempts))


def test_money_held_and_history_agrees_with_the_ledger(soak):
    store, *_ = soak
    entries = store.ledger_entries()
    # every unit's money is in its action runs (attempts cut by kills included, at their worst case)
    settled_units = sum(e.amount_usd for e in entries if e.kind == "settle" and e.unit_id)
    runs = sum(r.cost_usd for u in store.list_units() for r in store.action_runs_for_unit(u.id))
    assert settled_units == pytest.approx(runs, abs=1e-6)
    # the planning calls: the stored plans' costs, plus calls a kill cut off (charged at their worst case)
    plans = sum(float((row.data or {}).get("cost_usd") or 0.0) for offset in range(DAYS + 1)
                if (row := store.get_plan(START + timedelta(days=offset))))
    assert sum(e.amount_usd for e in entries if e.kind == "settle" and not e.unit_id) >= plans - 1e-6
    assert not [e for e in entries if e.kind == "reserve" and not any(
        x.reservation_id == e.reservation_id and x.kind in ("settle", "release") for x in entries)], "open reservations"
    for unit in store.list_units():
        summary = store.get_summary(unit.id)
        ledger = sum(e.amount_usd for e in entries if e.unit_id == unit.id and e.kind == "settle")
        if summary is not None and unit.is_terminal:
            assert summary.data["cost_usd"] == pytest.approx(ledger, abs=1e-6), unit.template_id


def test_no_day_or_category_passed_its_money_by_more_than_the_stated_bound(soak):
    store, *_ = soak
    budget = BudgetSettings()  # the soak runs with the default budget
    entries = store.ledger_entries()
    # what each unit's calls were billed past their worst case (the bound's terms), counted in every
    # (budget day, category) the unit settled money in: generous, never too strict
    overshoot: dict[str, float] = defaultdict(float)
    for unit in store.list_units():
        for r in store.action_runs_for_unit(unit.id):
            for tid in (r.result or {}).get("llm", {}).get("transcript_ids", []):
                t = store.get_transcript(tid)
                if t is not None:
                    overshoot[unit.id] += max(0.0, t.data["cost_usd"] - t.data["estimate_usd"])
    over: dict[tuple[date, str], float] = defaultdict(float)
    by_day: dict[tuple[date, str], float] = defaultdict(float)
    places = {(e.unit_id, e.budget_day, e.category) for e in entries if e.kind == "settle" and e.unit_id}
    for unit_id, day, category in places:
        over[(day, category)] += overshoot[unit_id]
    for e in entries:
        if e.kind == "settle":
            by_day[(e.budget_day, e.category)] += e.amount_usd
    for (day, category), spent in by_day.items():
        limit = budget.category_limit(category)
        assert spent <= limit + over[(day, category)] + 1e-6, (day, category, spent, limit)
    for day in {d for d, _c in by_day}:
        spent = sum(v for (d, _c), v in by_day.items() if d == day)
        assert spent <= budget.daily_usd + sum(v for (d, _c), v in over.items() if d == day) + 1e-6, (day, spent)


def test_the_store_is_intact(soak):
    store, *_ = soak
    assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
