"""`cass-actions worker` as real processes on a private PostgreSQL: its supervisor replaces a worker process
whose event loop a handler blocked (the blocked unit ends by the restart rules, with the reason; the other
daemons go on), and a worker joining a running fleet gets its share of the daemons with no unit run twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from cass_actions_core.clock import SystemClock
from cass_actions_core.phases import DayPhases
from cass_actions_core.store import open_store
from cass_actions_core.store.fleet import FleetRegistry
from support import make_dist, run_cli, template_def
from test_fleet import TTL, cli_env, fleet_config, free
from test_run_process import pack_source, wait_for

PACE = pack_source("pace", """
async def step(ctx):
    note(ctx, "effects.log", ctx.run_key)
    await asyncio.sleep(0.2)
    return {"summary": "a step"}

async def blocks(ctx):
    note(ctx, "effects.log", ctx.run_key)
    if ctx.daemon_id == "blocky" and (ctx.action_id == "pace.stuck" or first_time(ctx, "blocked-" + ctx.action_id)):
        # wait (without blocking) until calm1's long step is under way beside this one, then block the loop
        running = ctx.data_dir.parents[1] / "calm1" / "pace" / "running"
        for _ in range(100):
            if running.exists():
                break
            await asyncio.sleep(0.1)
        running.unlink(missing_ok=True)
        time.sleep(600)   # blocks the worker's event loop: only a new process ends this
    return {"summary": "done without blocking"}

async def long(ctx):
    # an innocent bystander: an asynchronous step that lasts until the test releases it
    note(ctx, "effects.log", ctx.run_key)
    (ctx.data_dir / "running").write_text(ctx.run_key)
    while ctx.daemon_id == "calm1" and not (ctx.data_dir.parents[2] / "release").exists():
        await asyncio.sleep(0.1)
    return {"summary": "a long step"}
""", {"pace.step": "step", "pace.blocks": "blocks", "pace.risky": "blocks", "pace.stuck": "blocks",
      "pace.long": "long"})

STALL_LIMIT = 3


@pytest.fixture
def pace_site(site: Path) -> Path:
    make_dist(site, "cass-actions-pace", ep_name="pace", module="pace", module_source=PACE,
              actions=[free("pace.step", idempotent=True), free("pace.blocks", idempotent=True),
                       free("pace.risky", idempotent=False), free("pace.stuck", idempotent=True),
                       free("pace.long", idempotent=True)],
              templates=[template_def("paced", ["pace.step", "pace.step"], category="system", max_per_day=20),
                         template_def("blocking", ["pace.step", "pace.blocks"], category="system"),
                         template_def("risky_block", ["pace.risky", "pace.step"], category="system"),
                         template_def("stuck", ["pace.stuck"], category="system"),
                         template_def("long", ["pace.long"], category="system")])
    return site


def pace_config(url: str, daemon_id: str = "cass", ttl: float = TTL, **scheduler: object) -> str:
    """test_fleet's config, with the pace pack and a lease (and heartbeat) lifetime of ``ttl`` seconds."""
    return (fleet_config(url, daemon_id, **scheduler).replace('load = ["fleet"]', 'load = ["pace"]')
            .replace(f"lease_ttl_seconds = {TTL}", f"lease_ttl_seconds = {ttl}"))


class Fleet:
    """Daemons registered in a fresh schema, and worker processes started on it."""

    def __init__(self, site: Path, url: str, root: Path, ttl: float = TTL) -> None:
        self.site, self.url, self.root, self.ttl = site, url, root, ttl
        self.workers: list[subprocess.Popen[str]] = []
        (root / "worker.toml").write_text(pace_config(url, ttl=ttl))

    def add(self, daemon_id: str, templates: list[str], **scheduler: object) -> None:
        toml = self.root / f"{daemon_id}.toml"
        toml.write_text(pace_config(self.url, daemon_id, ttl=self.ttl, **scheduler))
        self.cli("daemons", "add", daemon_id, "--config", str(toml), "--workspace", str(self.root / "ws" / daemon_id))
        instance = DayPhases(None, "UTC").instance_at(SystemClock("UTC").now())
        plan = self.root / f"{daemon_id}-plan.json"
        plan.write_text(json.dumps({"date": instance.day.isoformat(),
                                    "phases": {instance.phase.value: [{"template": t} for t in templates]}}))
        self.cli("plan", "--file", str(plan), "--config", str(toml))

    def cli(self, *args: str) -> str:
        done = run_cli(*args, site=self.site, env=cli_env(self.site, self.root / "cli"))
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start_worker(self, *args: str) -> subprocess.Popen[str]:
        n = len(self.workers)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
        env.update({"PYTHONPATH": str(self.site), "CASS_ACTIONS_DATA_DIR": str(self.root / f"worker{n}")})
        worker = subprocess.Popen([sys.executable, "-m", "cass_actions_core.cli.main", "worker", "--all", "--config",
                                   str(self.root / "worker.toml"), *args], env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(self.root / f"worker{n}.log", "w"), stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        self.workers.append(worker)
        return worker

    def log(self, n: int) -> str:
        return (self.root / f"worker{n}.log").read_text()

    def stop(self) -> list[int | str]:
        """SIGTERM every worker (the supervisor: it passes the signal on); their exit codes."""
        for w in self.workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        codes: list[int | str] = []
        for w in self.workers:
            try:
                codes.append(w.wait(timeout=30))
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
                codes.append("hung")
        return codes

    def units(self, daemon_id: str, template: str, statuses: list[str] | None = None) -> list:
        with open_store(self.url, daemon_id) as store:
            return store.list_units(template_id=template, statuses=statuses)

    def effects(self, daemon_id: str) -> list[str]:
        log = self.root / "ws" / daemon_id / "pace" / "effects.log"
        return log.read_text().split() if log.exists() else []


@pytest.fixture
def fleet(pace_site: Path, pg_schema_url: str, tmp_path: Path):
    fleet = Fleet(pace_site, pg_schema_url, tmp_path, ttl=60)
    try:
        yield fleet
    finally:
        fleet.stop()


def steps_ran_once(store, unit) -> None:
    """Every step of ``unit`` completed exactly once; an attempt before it was cut short by a restart."""
    by_step = defaultdict(list)
    for r in store.action_runs_for_unit(unit.id):
        by_step[r.step_index].append(r)
    for index in range(len(unit.steps)):
        attempts = by_step[index]
        assert [r.status for r in attempts].count("completed") == 1, (unit.template_id, index, attempts)
        assert all((r.result or {}).get("interrupted") for r in attempts[:-1]), attempts


def test_a_handler_blocking_a_workers_event_loop_ends_its_unit_and_the_other_daemons_go_on(fleet: Fleet):
    # blocky's handlers block the worker's event loop five times: once in an idempotent step, once in one
    # that is not, three times in a step that always blocks. calm1's long (asynchronous) step is under way
    # each time; calm2 runs short units. The stall limit is blocky's own (the worker's config keeps the 30 s
    # default); a long lease shows that each new worker process takes the leases over at once, not at expiry.
    fleet.add("blocky", ["blocking", "risky_block", "stuck"], stall_limit_seconds=STALL_LIMIT)
    fleet.add("calm1", ["long", "paced", "paced"])
    fleet.add("calm2", ["paced"] * 4)
    began = time.monotonic()
    worker = fleet.start_worker()
    with FleetRegistry.open(fleet.url) as registry:
        first = wait_for(lambda: len(ls := registry.leases()) == 3 and ls, timeout=30, what="the worker to take all")
        wait_for(lambda: len(fleet.units("calm2", "paced", ["completed"])) == 4, timeout=30, what="calm2's units")
        (stuck,) = wait_for(lambda: fleet.units("blocky", "stuck", ["abandoned"]), timeout=60,
                            what="the step that always blocks to be abandoned as poison")
        (fleet.root / "release").write_text("")  # calm1's long step may finish now
        (blocking,) = fleet.units("blocky", "blocking", ["completed"])  # its idempotent step ran again
        (risky,) = fleet.units("blocky", "risky_block", ["abandoned"])  # not idempotent: never run again
        # the other daemons go on: calm1's bystander unit completes, new work is taken up and done
        fleet.cli("trigger", "paced", "--daemon", "calm2", "--config", str(fleet.root / "worker.toml"))
        wait_for(lambda: len(fleet.units("calm1", "paced", ["completed"])) == 2, timeout=30, what="calm1's units")
        wait_for(lambda: len(fleet.units("calm2", "paced", ["completed"])) == 5, timeout=30, what="the triggered unit")
        print(f"five stalls survived, all work done in {time.monotonic() - began:.1f} s")
        assert worker.poll() is None  # the supervisor stayed up through every stall
        last = registry.leases()
        # one holder throughout, the supervisor's: each new process took the leases over by name at once
        assert {lease.holder for lease in last.values()} == {first["blocky"].holder}
        assert {lease.pid for lease in last.values()} == {worker.pid}
        assert all(last[d].token == first[d].token for d in last)
    log = fleet.log(0)
    assert log.count("event loop stalled") == 5, log[-3000:]
    with open_store(fleet.url, "blocky") as store:
        runs = store.action_runs_for_unit(blocking.id)
        assert [(r.step_index, r.status) for r in runs] == [(0, "completed"), (1, "failed"), (1, "completed")]
        assert "the worker's event loop stalled for" in runs[1].error and "this step's" in runs[1].error, runs[1].error
        assert "not idempotent" in risky.reason and "stalled" in risky.reason, risky.reason
        assert [r.step_index for r in store.action_runs_for_unit(risky.id)] == [0]  # its next step never ran
        assert stuck.reason.startswith("poison: the process died during step 1 (pace.stuck) 3 times"), stuck.reason
        assert "(the last time: the worker's event loop stalled for" in stuck.reason, stuck.reason  # why, not only how often
    assert fleet.effects("blocky").count(f"{risky.local_date}/{risky.phase}/{risky.id}/0") == 1
    with open_store(fleet.url, "calm1") as store:
        (long_unit,) = store.list_units(template_id="long")
        assert long_unit.status == "completed", long_unit.reason  # five interruptions, none its own: not poison
        runs = store.action_runs_for_unit(long_unit.id)
        assert [r.status for r in runs] == ["failed"] * 5 + ["completed"], [(r.status, r.error) for r in runs]
        assert all("of daemon 'blocky', not this one" in r.error for r in runs[:-1]), runs[0].error
    for calm in ("calm1", "calm2"):
        with open_store(fleet.url, calm) as store:
            for unit in store.list_units():
                steps_ran_once(store, unit)
    assert fleet.stop() == [0]
    with FleetRegistry.open(fleet.url) as registry:
        assert registry.leases() == {} and registry.workers() == []  # released, signed off


def test_a_worker_joining_a_running_fleet_gets_its_share_and_no_unit_runs_twice(pace_site: Path, pg_schema_url: str,
                                                                                 tmp_path: Path):
    daemons = [f"j{i}" for i in range(6)]
    fleet = Fleet(pace_site, pg_schema_url, tmp_path)
    try:
        for daemon_id in daemons:
            toml = tmp_path / f"{daemon_id}.toml"
            toml.write_text(pace_config(fleet.url, daemon_id))
            fleet.cli("daemons", "add", daemon_id, "--config", str(toml), "--workspace", str(tmp_path / "ws" / daemon_id))
        # A rehearsed day (each daemon's fallback plan spreads its units over it): units with gaps between them,
        # when a worker can give a daemon up (never one with a unit running).
        fleet.start_worker("--speed", "3600", "--start", "2027-01-04")

        def completed() -> dict[str, int]:
            return {d: len(fleet.units(d, None, ["completed"])) for d in daemons}

        with FleetRegistry.open(fleet.url) as registry:
            def holders() -> dict[str, str]:
                return {d: lease.holder for d, lease in registry.leases().items() if d in daemons}

            wait_for(lambda: len(holders()) == 6 and all(completed().values()), timeout=40,
                     what="the first worker to run all six daemons")
            (alone,) = set(holders().values())
            joined = time.monotonic()
            fleet.start_worker()  # no --speed: it joins the fleet's rehearsal clock

            def shared() -> dict[str, int] | None:
                by_worker: dict[str, int] = defaultdict(int)
                for holder in holders().values():
                    by_worker[holder] += 1
                return by_worker if len(by_worker) == 2 and sorted(by_worker.values()) == [3, 3] else None

            by_worker = wait_for(shared, timeout=30, what="the second worker to get its share (3 of 6)")
            balanced = time.monotonic() - joined
            split, mid = holders(), completed()
            wait_for(lambda: all(completed()[d] > mid[d] for d in daemons), timeout=40,
                     what="every daemon to complete more units under its worker")
            assert holders() == split  # no more moves once balanced
            # the CLI reads and steers a daemon on the fleet's rehearsal timeline, not the wall clock's
            shown = json.loads(fleet.cli("status", "--json", "--daemon", "j0", "--config", str(tmp_path / "worker.toml")))
            assert shown["phase_day"] in ("2027-01-04", "2027-01-05"), shown["phase_day"]
        print(f"the second worker had its share ({dict(by_worker)}) {balanced:.1f} s after it started")
        assert balanced < 20
        assert alone in split.values()
        assert all(w.poll() is None for w in fleet.workers)
    finally:
        codes = fleet.stop()
    assert codes == [0, 0], [fleet.log(0)[-2000:], fleet.log(1)[-2000:]]
    for daemon_id in daemons:
        effects = Counter(fleet.effects(daemon_id))
        with open_store(fleet.url, daemon_id) as store:
            for unit in store.list_units():
                runs = store.action_runs_for_unit(unit.id)
                # a hand-over between units interrupts nothing: every step ran once, and its effect happened once
                assert len({r.step_index for r in runs}) == len(runs), [(r.key, r.status) for r in runs]
                for r in runs:
                    if r.action_id.startswith("pace."):
                        assert r.status == "completed" and effects[r.key] == 1, (daemon_id, r.key, r.status, r.error)
        assert set(effects.values()) <= {1}


def test_serve_daemon_serves_that_daemon_of_a_fleet_database(pace_site: Path, pg_schema_url: str, tmp_path: Path):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    import socket

    fleet = Fleet(pace_site, pg_schema_url, tmp_path)
    fleet.add("alpha", ["paced"])
    fleet.add("beta", ["paced", "paced"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
    env.update({"PYTHONPATH": str(pace_site), "CASS_ACTIONS_DATA_DIR": str(tmp_path / "serve")})
    server = subprocess.Popen([sys.executable, "-m", "cass_actions_core.cli.main", "serve", "--daemon", "beta",
                               "--config", str(tmp_path / "worker.toml"), "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api"

        def up() -> bool:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                return httpx.get(f"{url}/status", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=30, what="serve to answer")
        status = httpx.get(f"{url}/status").json()
        assert status["daemon_id"] == "beta"
        assert [u["template_id"] for u in status["today"]] == ["paced", "paced"]  # beta's units, not alpha's
        assert httpx.post(f"{url}/pause", json={"reason": "maintenance"}).status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        _out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert "serving daemon 'beta'" in err
    # the pause went to beta's rows in the shared database, and to no other daemon's
    for daemon_id, paused in (("beta", True), ("alpha", False)):
        shown = json.loads(fleet.cli("status", "--json", "--daemon", daemon_id, "--config", str(tmp_path / "worker.toml")))
        assert bool(shown["daemon_paused"]) is paused, (daemon_id, shown["daemon_paused"])


def test_a_worker_rides_out_its_database_connections_being_cut(pace_site: Path, pg_schema_url: str, tmp_path: Path):
    import psycopg

    app = "cut_" + os.urandom(4).hex()
    url = f"{pg_schema_url}&application_name={app}"  # the worker's connections, to cut them and no others
    fleet = Fleet(pace_site, url, tmp_path)
    try:
        fleet.add("one", ["paced"])
        fleet.add("two", ["paced"])
        worker = fleet.start_worker()
        with FleetRegistry.open(pg_schema_url) as registry:
            before = wait_for(lambda: len(ls := registry.leases()) == 2 and ls, timeout=30, what="the worker to start")
            for daemon_id in ("one", "two"):
                wait_for(lambda: fleet.units(daemon_id, "paced", ["completed"]), timeout=30, what="a first unit")
            with psycopg.connect(pg_schema_url, autocommit=True) as admin:
                cut = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                    " WHERE application_name = %s", (app,)).fetchone()[0]
            assert cut >= 3  # the registry's, the LISTEN connection, each daemon's store
            # the worker goes on: it runs both daemons again and takes new work up
            for daemon_id in ("one", "two"):
                fleet.cli("trigger", "paced", "--daemon", daemon_id, "--config", str(tmp_path / "worker.toml"))
            for daemon_id in ("one", "two"):
                wait_for(lambda: len(fleet.units(daemon_id, "paced", ["completed"])) == 2, timeout=40,
                         what=f"{daemon_id}'s unit after the cut")
            assert worker.poll() is None
            assert {d: lease.holder for d, lease in registry.leases().items()} == \
                {d: lease.holder for d, lease in before.items()}
    finally:
        codes = fleet.stop()
    assert codes == [0], fleet.log(0)[-3000:]
    assert "Traceback" not in fleet.log(0), fleet.log(0)[-3000:]


def test_run_daemon_on_a_shared_database_runs_that_daemon_in_its_supervised_process(pace_site: Path,
                                                                                   pg_schema_url: str, tmp_path: Path):
    fleet = Fleet(pace_site, pg_schema_url, tmp_path)
    fleet.add("solo", ["paced"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASS_ACTIONS_")}
    env.update({"PYTHONPATH": str(pace_site), "CASS_ACTIONS_DATA_DIR": str(tmp_path / "run")})
    run = subprocess.Popen([sys.executable, "-m", "cass_actions_core.cli.main", "run", "--daemon", "solo", "--config",
                            str(tmp_path / "worker.toml")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, stdin=subprocess.DEVNULL)
    try:
        # the supervisor's child (the scheduler) runs solo, not the config file's own daemon id (cass)
        wait_for(lambda: fleet.units("solo", "paced", ["completed"]), timeout=30, what="solo's unit")
        with FleetRegistry.open(pg_schema_url) as registry:
            assert set(registry.leases()) == {"solo"} and registry.leases()["solo"].pid == run.pid
    finally:
        run.send_signal(signal.SIGTERM)
        _out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    assert "daemon 'solo' running" in err
