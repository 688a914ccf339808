"""Issue 13's fleet: three `cass-actions worker` processes run twenty daemons of one PostgreSQL database for
two rehearsed days (one shared accelerated clock); one worker is SIGKILLed while two units of a daemon it
runs are mid-step. Then, from the store and the packs' own side effects: every unit ran exactly once
(completed steps never again; the interrupted idempotent step once more, the interrupted step that is not
idempotent abandoned, as after a restart), the dead worker's daemons went on on the others within the
lease time, and no category of any daemon spent past its limit. The registry commands' errors are here too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest


from cass_actions_core.config import Config
from cass_actions_core.store import open_store
from cass_actions_core.store.fleet import FleetRegistry
from support import action_def, make_dist, run_cli, template_def
from test_run_process import pack_source, wait_for

DAEMONS = [f"d{i:02d}" for i in range(20)]
WORKERS = 3
SPEED = 2400            # virtual seconds per real second: two days in 72 s
START = date(2027, 1, 4)
TTL = 3                 # the lease (and heartbeat) lifetime, real seconds
SLOW = "d00"            # the daemon whose two units are cut short by the kill

FLEET = pack_source("fleet", """
async def effect(ctx):
    note(ctx, "effects.log", ctx.run_key)
    return {"summary": "an effect"}

async def think(ctx):
    reply = await ctx.llm.complete("Think about " + (ctx.focus or "the day"))
    note(ctx, "effects.log", ctx.run_key)
    return {"summary": reply.text[:40]}

async def slow(ctx):
    note(ctx, "effects.log", ctx.run_key)
    if ctx.daemon_id == "d00" and first_time(ctx, "once-" + ctx.action_id):
        await asyncio.sleep(60)   # the test kills the worker here
    return {"summary": "slow step done"}
""", {"fleet.effect": "effect", "fleet.think": "think", "fleet.slow": "slow", "fleet.risky": "slow"})


def free(action_id: str, **kw) -> dict:
    return action_def(action_id, tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, category="system",
                      timeout_seconds=600, **kw)


def fleet_config(url: str, daemon_id: str = "cass", **scheduler: object) -> str:
    return (f'daemon_id = "{daemon_id}"\ntimezone = "UTC"\n[store]\nurl = "{url}"\n'
            '[plugins]\nload = ["fleet"]\n[planner]\nenabled = false\n'
            # dear tokens: a musing costs about a third of its daemon's daily reflection money
            '[llm]\nprovider = "offline"\nmax_tokens = 64\n[llm.prices."claude-haiku-5-5"]\ninput = 200\noutput = 200\n'
            '[budget]\ndaily_usd = 0.1\n'
            f"[scheduler]\nlease_ttl_seconds = {TTL}\ntick_seconds = 1\n"
            + "".join(f"{k} = {v}\n" for k, v in scheduler.items()))


@pytest.fixture(scope="module")
def fleet_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    make_dist(site, "cass-actions-fleet", ep_name="fleet", module="fleet", module_source=FLEET,
              actions=[free("fleet.effect", idempotent=True), free("fleet.slow", idempotent=True),
                       free("fleet.risky", idempotent=False),
                       action_def("fleet.think", category="reflection", estimated_cost_usd=0.004, max_cost_usd=0.02,
                                  idempotent=True)],
              templates=[template_def("chores", ["fleet.effect", "fleet.effect"], category="system", max_per_day=3),
                         template_def("musing", ["fleet.think", "fleet.effect"], max_per_day=6),
                         template_def("slow_course", ["fleet.effect", "fleet.slow", "fleet.effect"], category="system",
                                      max_per_day=1),
                         template_def("risky_course", ["fleet.effect", "fleet.risky", "fleet.effect"],
                                      category="system", max_per_day=1)])
    return site


@pytest.fixture(scope="module")
def fleet_url(pg_url: str) -> str:
    import psycopg

    name = "fleet_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    yield f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{name}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {name} CASCADE")


def cli_env(site: Path, data_dir: Path) -> dict[str, str | None]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CASS_ACTIONS_")}
    env.update({"PYTHONPATH": str(site), "CASS_ACTIONS_DATA_DIR": str(data_dir)})
    return env


@pytest.fixture(scope="module")
def fleet_run(fleet_site: Path, fleet_url: str, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fleet")
    worker_toml = root / "worker.toml"
    worker_toml.write_text(fleet_config(fleet_url))
    for daemon_id in DAEMONS:
        toml = root / f"{daemon_id}.toml"
        toml.write_text(fleet_config(fleet_url, daemon_id, max_concurrent_units=2 if daemon_id == SLOW else 1))
        done = run_cli("daemons", "add", daemon_id, "--config", str(toml), "--workspace", str(root / "ws" / daemon_id),
                       site=fleet_site, env=cli_env(fleet_site, root / "cli"))
        assert done.returncode == 0, done.stderr
    # The slow daemon's first morning: both interruptible units side by side (two at a time).
    plan = root / "plan.json"
    plan.write_text(json.dumps({"date": START.isoformat(), "phases": {"morning": [
        {"template": "slow_course"}, {"template": "risky_course"}, {"template": "chores"}]}}))
    done = run_cli("plan", "--file", str(plan), "--config", str(root / f"{SLOW}.toml"), site=fleet_site,
                   env=cli_env(fleet_site, root / "cli"))
    assert done.returncode == 0, done.stderr

    def start(n: int) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
        env.update({"PYTHONPATH": str(fleet_site), "CASS_ACTIONS_DATA_DIR": str(root / f"worker{n}")})
        return subprocess.Popen([sys.executable, "-m", "cass_actions_core.cli.main", "worker", "--all", "--config",
                                 str(worker_toml), "--speed", str(SPEED), "--start", START.isoformat()],
                                env=env, stdout=subprocess.DEVNULL, stderr=open(root / f"worker{n}.log", "w"),
                                stdin=subprocess.DEVNULL, start_new_session=True)

    workers = [start(n) for n in range(WORKERS)]
    registry = FleetRegistry.open(fleet_url)
    facts: dict[str, object] = {}
    try:
        ws = root / "ws" / SLOW / "fleet"
        wait_for(lambda: (ws / "once-fleet.slow").exists() and (ws / "once-fleet.risky").exists(), timeout=90,
                 what="both slow steps of d00 to be under way")
        lease = registry.leases()[SLOW]
        victim = next(w for w in workers if w.pid == lease.pid)
        held = sorted(d for d, l in registry.leases().items() if l.holder == lease.holder)
        killed_at = datetime.now(UTC)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        taken = wait_for(lambda: (ls := registry.leases()) and all(d in ls and ls[d].holder != lease.holder
                                                                   for d in held) and ls, timeout=60,
                         what="the killed worker's daemons to be taken over")
        facts.update(killed_at=killed_at, held=held, taken={d: taken[d] for d in held}, victim=lease.holder)
        clock = facts["clock"] = registry.setting("rehearsal_clock")
        end = datetime.fromisoformat(clock["start"]) + timedelta(days=2, hours=1)
        virtual = lambda: datetime.fromisoformat(clock["start"]) + timedelta(  # noqa: E731
            seconds=(time.time() - clock["epoch"]) * clock["speed"])
        wait_for(lambda: virtual() >= end, timeout=2 * 86400 / SPEED + 120, what="two rehearsed days")
    finally:
        registry.close()
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
        codes = []
        for w in workers:
            try:
                codes.append(w.wait(timeout=60))
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
                codes.append("hung")
    facts["codes"] = codes
    facts["logs"] = {n: (root / f"worker{n}.log").read_text()[-3000:] for n in range(WORKERS)}
    yield fleet_url, root, facts


def story(store, unit) -> list[str]:
    """A unit's transitions and action runs, for assertion messages."""
    return ([f"{t.at:%d %H:%M:%S} {t.from_status}->{t.to_status} {t.reason}" for t in store.transitions(unit.id)]
            + [f"run {r.key} {r.status} {r.error} {r.result}" for r in store.action_runs_for_unit(unit.id)])


def stores(url: str):
    for daemon_id in DAEMONS:
        with open_store(url, daemon_id) as store:
            yield daemon_id, store


def test_the_survivors_stopped_cleanly_and_took_over_within_the_lease_time(fleet_run):
    url, root, facts = fleet_run
    assert sorted(c for c in facts["codes"]) == [-signal.SIGKILL, 0, 0], facts
    assert len(facts["held"]) >= 1 and SLOW in facts["held"]
    delays = {d: (lease.acquired_at - facts["killed_at"]).total_seconds() for d, lease in facts["taken"].items()}
    print(f"killed worker held {len(facts['held'])} daemons; takeover delays (s): "
          f"max {max(delays.values()):.2f}, mean {sum(delays.values()) / len(delays):.2f}")
    # A lease of a dead process on this host is free at once; elsewhere at its expiry (3 s): either way
    # well within one lease time plus a balancing round, with room for a loaded machine.
    assert max(delays.values()) < TTL * 5, delays
    clock = facts["clock"]
    for daemon_id, lease in facts["taken"].items():
        # the daemon went on under its new worker: units moved after the takeover (on the shared timeline)
        taken_virtual = datetime.fromisoformat(clock["start"]) + timedelta(
            seconds=(lease.acquired_at.timestamp() - clock["epoch"]) * clock["speed"])
        with open_store(url, daemon_id) as store:
            after = [t for u in store.list_units() for t in store.transitions(u.id) if t.at >= taken_virtual]
        assert any(t.to_status == "completed" for t in after), daemon_id


def test_every_unit_ran_exactly_once(fleet_run):
    url, root, _facts = fleet_run
    units = 0
    statuses: Counter[str] = Counter()
    for daemon_id, store in stores(url):
        log = root / "ws" / daemon_id / "fleet" / "effects.log"
        effects = Counter(log.read_text().split()) if log.exists() else Counter()
        keys = set()
        for unit in store.list_units():
            units += 1
            statuses[unit.status] += 1
            assert unit.status in ("completed", "abandoned", "budget_blocked", "expired", "queued", "planned"), (
                daemon_id, unit.template_id, unit.status, unit.reason)
            runs = store.action_runs_for_unit(unit.id)
            by_step = defaultdict(list)
            for r in runs:
                by_step[r.step_index].append(r)
            for index, attempts in by_step.items():
                if not attempts[0].action_id.startswith("fleet."):
                    continue  # the core's own system work (retention) writes no effect line
                # ctx.run_key names the step (every attempt of it): a completed attempt left its side effect
                # once; an attempt the kill cut short left it at most once (the kill may come before it)
                key = attempts[0].key.split("~")[0]
                keys.add(key)
                done = len([r for r in attempts if r.status == "completed"])
                assert done <= 1 and done <= effects[key] <= len(attempts), \
                    "\n".join([daemon_id, key, str(effects[key]), *story(store, unit)])
                # a step ran again only after a crash interrupted it (the kill), never after it completed
                assert all((r.result or {}).get("interrupted") for r in attempts[:-1]), "\n".join(story(store, unit))
                assert all(r.status != "completed" for r in attempts[:-1]), "\n".join(story(store, unit))
            if unit.status == "completed":
                assert all(any(r.status == "completed" for r in by_step[i]) for i in range(len(unit.steps)))
        assert not set(effects) - keys, (daemon_id, set(effects) - keys)  # no effect without its run
    print(f"{units} units of {len(DAEMONS)} daemons over two days: {dict(statuses)}")
    assert units >= len(DAEMONS) * 2 * 2


def test_the_interrupted_units_followed_the_restart_rules(fleet_run):
    url, _root, _facts = fleet_run
    with open_store(url, SLOW) as store:
        (safe,) = store.list_units(template_id="slow_course", local_date=START)
        (risky,) = store.list_units(template_id="risky_course", local_date=START)
        assert safe.status == "completed", (safe.status, safe.reason)
        assert [r.status for r in store.action_runs_for_unit(safe.id) if r.step_index == 1] == ["failed", "completed"]
        assert risky.status == "abandoned" and "not idempotent" in risky.reason, risky.reason
        assert [r.step_index for r in store.action_runs_for_unit(risky.id)] == [0, 1]  # its last step never ran


def test_no_category_of_any_daemon_spent_past_its_limit(fleet_run):
    url, root, _facts = fleet_run
    budget = Config.from_dict({"budget": {"daily_usd": 0.1}}).budget
    spent_somewhere = tightest = 0.0
    for daemon_id, store in stores(url):
        committed: dict[tuple[date, str], float] = defaultdict(float)
        entries = store.ledger_entries()
        closed = {e.reservation_id: e for e in entries if e.kind in ("settle", "release")}
        for e in entries:
            if e.kind == "settle":
                committed[(e.budget_day, e.category)] += e.amount_usd
            elif e.kind == "reserve" and e.reservation_id not in closed:
                committed[(e.budget_day, e.category)] += e.amount_usd
        for (day, category), amount in committed.items():
            assert amount <= budget.category_limit(category) + 1e-6, (daemon_id, day, category, amount)
        spent_somewhere += sum(v for (d, c), v in committed.items() if c == "reflection")
        tightest = max(tightest, max((v / budget.category_limit(c) for (d, c), v in committed.items()
                                      if budget.category_limit(c) > 0), default=0.0))
        blocked = store.list_units(statuses=["budget_blocked"])
        assert all(u.reason for u in blocked)
    print(f"money: ${spent_somewhere:.4f} committed in reflection; the fullest category of any daemon and day "
          f"reached {tightest:.0%} of its limit")
    assert spent_somewhere > 0


def test_the_registry_commands_refuse_what_they_cannot_do(fleet_site: Path, fleet_url: str, tmp_path: Path):
    env = cli_env(fleet_site, tmp_path / "cli")
    sqlite_cfg = tmp_path / "one.toml"
    sqlite_cfg.write_text('timezone = "UTC"\n')
    for args in (["daemons", "list"], ["worker", "--all"]):
        done = run_cli(*args, "--config", str(sqlite_cfg), site=fleet_site, env=env)
        assert done.returncode == 1 and "needs a fleet database" in done.stderr and "Traceback" not in done.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(fleet_config(fleet_url).replace('load = ["fleet"]', 'load = ["fleet"]\ntemplates = ["t.json"]'))
    (tmp_path / "t.json").write_text(json.dumps({"templates": [template_def("oops", ["fleet.nope"], category="system")]}))
    done = run_cli("daemons", "add", "zz", "--config", str(bad), "--workspace", str(tmp_path / "ws"), site=fleet_site,
                   env=env)
    assert done.returncode == 1 and "fleet.nope" in done.stderr and "Traceback" not in done.stderr, done.stderr
    done = run_cli("daemons", "remove", "nobody", "--config", str(bad), site=fleet_site, env=env)
    assert done.returncode == 1 and "no daemon 'nobody' is registered" in done.stderr, done.stderr
    listing = run_cli("daemons", "list", "--json", "--config", str(bad), site=fleet_site, env=env)
    assert listing.returncode == 0 and "zz" not in listing.stdout


def test_a_control_wakes_the_worker_and_daemon_selects_the_daemon(fleet_site: Path, pg_schema_url: str,
                                                                  tmp_path: Path):
    env = cli_env(fleet_site, tmp_path / "cli")
    toml = tmp_path / "one.toml"
    # A loop that polls only every ten minutes: the trigger below is seen at once only through NOTIFY.
    toml.write_text(fleet_config(pg_schema_url, "solo").replace("tick_seconds = 1", "tick_seconds = 600"))
    assert run_cli("daemons", "add", "solo", "--config", str(toml), "--workspace", str(tmp_path / "ws"), site=fleet_site,
                   env=env).returncode == 0
    worker_env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
    worker_env.update({"PYTHONPATH": str(fleet_site), "CASS_ACTIONS_DATA_DIR": str(tmp_path / "w")})
    worker = subprocess.Popen([sys.executable, "-m", "cass_actions_core.cli.main", "worker", "--daemons", "solo",
                               "--config", str(toml)], env=worker_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        with FleetRegistry.open(pg_schema_url) as registry:
            wait_for(lambda: "solo" in registry.leases() and registry.leases()["solo"].holder.startswith("worker:"),
                     what="the worker to take the daemon")
        time.sleep(1)  # its first tick is over: it now sleeps for ten minutes
        done = run_cli("trigger", "chores", "--daemon", "solo", "--config", str(toml), site=fleet_site, env=env)
        assert done.returncode == 0, done.stderr
        with open_store(pg_schema_url, "solo") as store:
            wait_for(lambda: store.list_units(template_id="chores", statuses=["completed"]), timeout=120,
                     what="the triggered unit to run (woken by NOTIFY, not the ten-minute poll)")
        status = run_cli("status", "--json", "--daemon", "solo", "--config", str(toml), site=fleet_site, env=env)
        assert status.returncode == 0 and json.loads(status.stdout)["daemon_id"] == "solo", status.stdout[-500:]
        unknown = run_cli("queue", "--daemon", "nobody", "--config", str(toml), site=fleet_site, env=env)
        assert unknown.returncode == 1 and "no such daemon" in unknown.stderr and "Traceback" not in unknown.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err[-2000:]
    with FleetRegistry.open(pg_schema_url) as registry:
        assert "solo" not in registry.leases() and registry.workers() == []  # released, signed off


def test_daemon_on_an_sqlite_store_must_be_its_own_id(tmp_path: Path):
    data = tmp_path / "one"
    assert run_cli("init", env={"CASS_ACTIONS_DATA_DIR": str(data)}).returncode == 0
    done = run_cli("status", "--daemon", "other", env={"CASS_ACTIONS_DATA_DIR": str(data)})
    assert done.returncode == 1 and "holds the data of daemon 'cass', not 'other'" in done.stderr
    assert "Traceback" not in done.stderr
    assert run_cli("status", "--daemon", "cass", env={"CASS_ACTIONS_DATA_DIR": str(data)}).returncode == 0
