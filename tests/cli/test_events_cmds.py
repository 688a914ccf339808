"""``cass-actions events`` and ``cass-actions activity`` through the real CLI, on a real store."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core.clock import VirtualClock
from cass_actions_core.config import load_config
from cass_actions_core.runtime import Runtime
from cass_actions_core.store import open_store
from support import HandPack, action_def, run_cli, template_def

ENV = {"CASS_ACTIONS_LOAD_PLUGINS": ""}  # built-in pack only: the commands need no others
TZ = "Europe/London"
CLI = Path(sys.executable).with_name("cass-actions")  # the installed console script, as a user runs it


def utc(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 7, 1, hour, minute, tzinfo=UTC)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory with a config (London time) and a store holding a few events."""
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "config.toml").write_text(f'timezone = "{TZ}"\n')
    with open_store(folder / "cass-actions.sqlite", daemon_id="cass") as store:
        unit = store.insert_unit(local_date=date(2026, 7, 1), phase="morning", template_id="tidy", name="Tidy",
                                 category="system", steps=[{"action": "core.prune_history"}], now=utc(9))
        store.append_event("day.planned", {"date": "2026-07-01", "units": 1}, utc(9))
        store.append_event("work_unit.queued", {"template_id": "tidy"}, utc(10), unit_id=unit.id)
        store.append_event("work_unit.started", {"template_id": "tidy", "step": 0}, utc(11), unit_id=unit.id)
        store.append_event("action.completed", {"action_id": "core.prune_history", "summary": "pruned 0 events"},
                           utc(11, 1), unit_id=unit.id)
        store.append_event("work_unit.completed", {"template_id": "tidy", "reason": None}, utc(12), unit_id=unit.id)
        store.append_event("work_unit.queued", {"template_id": "gone"}, utc(13), unit_id="deleted-unit-id")
    (folder / "unit_id").write_text(unit.id)
    return folder


def events(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("events", "--data-dir", str(data), *args, env=ENV)


def json_lines(out: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def assert_one_paragraph_error(out: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert out.returncode == code, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and "Error:" in out.stderr
    for needle in needles:
        assert needle in out.stderr


# -- events -----------------------------------------------------------------------------

def test_events_prints_one_line_per_event_in_the_daemons_time_zone(data: Path):
    out = events(data)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 6
    unit = (data / "unit_id").read_text()
    # 10:00 UTC is 11:00 in London in July; the unit id is shortened as `queue` shows it
    assert lines[1].split() == ["2026-07-01", "11:00:00", "work_unit.queued", unit[:8], "template_id=tidy"]
    assert lines[0].split()[3] == "-"  # no unit
    assert 'summary="pruned 0 events"' in lines[3]


def test_events_json_lines_with_limit_type_and_unit_filters(data: Path):
    every = json_lines(events(data, "--json"))
    assert [e["type"] for e in every] == ["day.planned", "work_unit.queued", "work_unit.started", "action.completed",
                                         "work_unit.completed", "work_unit.queued"]
    assert every[0] == {"id": 1, "at": "2026-07-01T09:00:00+00:00", "type": "day.planned", "unit_id": None,
                        "data": {"date": "2026-07-01", "units": 1}}
    # --limit keeps the newest N, printed oldest first
    assert [e["id"] for e in json_lines(events(data, "--json", "--limit", "2"))] == [5, 6]
    assert len(json_lines(events(data, "--json", "--limit", "0"))) == 6
    # repeatable, comma-separated, and trailing-* prefixes
    typed = json_lines(events(data, "--json", "--type", "day.planned,action.completed", "--type", "work_unit.q*"))
    assert [e["id"] for e in typed] == [1, 2, 4, 6]
    assert [e["id"] for e in json_lines(events(data, "--json", "--type", "work_unit.*"))] == [2, 3, 5, 6]
    assert json_lines(events(data, "--json", "--type", "work_unit")) == []  # exact unless it ends in *
    # a type no stored event has is named on stderr, with the closest stored one
    typo = events(data, "--json", "--type", "work_unit.complete,day.planned")
    assert [e["id"] for e in json_lines(typo)] == [1]
    assert typo.stderr.strip() == "no stored event has type 'work_unit.complete' (did you mean 'work_unit.completed'?)"
    assert events(data, "--json", "--type", "day.planned").stderr == ""
    unit = (data / "unit_id").read_text()
    assert [e["id"] for e in json_lines(events(data, "--json", "--unit", unit))] == [2, 3, 4, 5]
    assert [e["id"] for e in json_lines(events(data, "--json", "--unit", unit[:8]))] == [2, 3, 4, 5]  # a prefix
    # a unit a re-plan deleted is known from its events
    assert [e["id"] for e in json_lines(events(data, "--json", "--unit", "deleted-unit-id"))] == [6]
    both = json_lines(events(data, "--json", "--unit", unit[:8], "--type", "work_unit.*", "--limit", "1"))
    assert [e["id"] for e in both] == [5]


def test_events_since_accepts_timestamps_dates_and_durations(data: Path):
    # Without an offset the daemon's zone is meant: 11:30 in London is 10:30 UTC.
    assert [e["id"] for e in json_lines(events(data, "--json", "--since", "2026-07-01T11:30"))] == [3, 4, 5, 6]
    assert [e["id"] for e in json_lines(events(data, "--json", "--since", "2026-07-01T11:30+00:00"))] == [5, 6]
    assert [e["id"] for e in json_lines(events(data, "--json", "--since", "2026-07-01T11:00:00Z"))] == [3, 4, 5, 6]
    assert len(json_lines(events(data, "--json", "--since", "2026-07-01"))) == 6  # local midnight
    assert json_lines(events(data, "--json", "--since", "2026-07-02")) == []
    with open_store(data / "cass-actions.sqlite", daemon_id="cass") as store:
        store.append_event("listener.failed", {"why": "test"}, datetime.now(UTC) - timedelta(minutes=5))
    assert [e["id"] for e in json_lines(events(data, "--json", "--since", "1h"))] == [7]
    empty = events(data, "--since", "1m")
    assert empty.returncode == 0 and empty.stdout == "" and "no matching events" in empty.stderr


@pytest.mark.parametrize("args, code, needles", [
    (["--since", "yesterday"], 2, ["--since", "'yesterday' is not a time", "ISO timestamp"]),
    (["--since", "2026-13-45"], 2, ["--since", "is not a time"]),
    (["--type", "work*unit"], 2, ["--type", "only a trailing *"]),
    (["--type", ","], 2, ["--type", "no event type"]),
    (["--limit", "-1"], 2, ["--limit"]),
    (["--unit", "no-such-unit"], 1, ["no work unit 'no-such-unit'", "cass-actions queue"]),
])
def test_events_bad_input_is_one_paragraph_and_non_zero(data: Path, args: list[str], code: int, needles: list[str]):
    assert_one_paragraph_error(events(data, *args), code, *needles)


def test_an_ambiguous_unit_prefix_is_refused(data: Path):
    with open_store(data / "cass-actions.sqlite", daemon_id="cass") as store:
        for suffix in ("aaa", "bbb"):
            store.insert_unit(local_date=date(2026, 7, 1), phase="morning", template_id="tidy", name="Tidy",
                              category="system", steps=[{"action": "core.prune_history"}], now=utc(9),
                              unit_id=f"feedface{suffix}")
    assert_one_paragraph_error(events(data, "--unit", "feedface"), 1, "ambiguous", "feedfaceaaa", "feedfacebbb")
    assert json_lines(events(data, "--json", "--unit", "feedfaceaaa")) == []  # a known unit without events


@pytest.mark.parametrize("command", [["events"], ["events", "--follow"], ["activity"], ["activity", "--show"]])
def test_a_data_dir_without_a_store_is_reported_and_nothing_is_created(tmp_path: Path, command: list[str]):
    missing = tmp_path / "missing" / "deeper"
    out = run_cli(*command, "--data-dir", str(missing), env=ENV, timeout=30)
    assert_one_paragraph_error(out, 1, str(missing), "does not exist", "Nothing was created")
    assert not (tmp_path / "missing").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run_cli(*command, "--data-dir", str(empty), env=ENV, timeout=30)
    assert_one_paragraph_error(out, 1, "has no store")
    assert list(empty.iterdir()) == []


class LineReader:
    """Read a process's stdout lines in a thread, so the test can wait for one with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next(self, timeout: float = 15) -> dict[str, Any]:
        line = self.lines.get(timeout=timeout)
        assert line is not None, "the follower ended early"
        return json.loads(line)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_follow_prints_events_written_after_it_started_and_stops_cleanly(data: Path, sig: signal.Signals):
    assert CLI.exists(), f"{CLI}: the cass-actions console script is not installed next to {sys.executable}"
    proc = subprocess.Popen([str(CLI), "events", "--follow", "--json", "--type", "work_unit.*", "--limit", "1",
                             "--data-dir", str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ENV}, stdin=subprocess.DEVNULL)
    try:
        reader = LineReader(proc)
        assert reader.next()["id"] == 6  # the newest matching event: it has scanned the log and now follows
        with open_store(data / "cass-actions.sqlite", daemon_id="cass") as store:
            store.append_event("day_phase.changed", {"phase": "evening"}, utc(18))  # filtered out
            new_id = store.append_event("work_unit.failed", {"reason": "no luck"}, utc(18, 1), unit_id="u-new")
        event = reader.next()
        assert (event["id"], event["type"], event["unit_id"], event["data"]) == (new_id, "work_unit.failed", "u-new",
                                                                                {"reason": "no luck"})
        time.sleep(0.3)  # let a poll pass: the filtered-out event must not show up late either
        assert reader.lines.empty()
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
        stderr = proc.stderr.read() if proc.stderr else ""
        assert "Traceback" not in stderr and "Abort" not in stderr, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_follow_human_output_streams_lines(data: Path):
    proc = subprocess.Popen([str(CLI), "events", "-f", "--limit", "1", "--data-dir", str(data)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV}, stdin=subprocess.DEVNULL)
    try:
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or []], daemon=True).start()
        assert "deleted-" in (lines.get(timeout=15) or "")
        with open_store(data / "cass-actions.sqlite", daemon_id="cass") as store:
            store.append_event("approval.requested", {"action_id": "x.y"}, utc(19))
        assert (lines.get(timeout=15) or "").split() == ["2026-07-01", "20:00:00", "approval.requested", "-",
                                                         "action_id=x.y"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- activity ---------------------------------------------------------------------------

def activity(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("activity", "--data-dir", str(data), *args, env=ENV)


def test_activity_records_keeps_the_later_time_and_shows_the_idle_verdict(data: Path):
    (data / "config.toml").write_text(f'timezone = "{TZ}"\n[scheduler]\nidle_after_minutes = 30\n')
    shown = json.loads(activity(data, "--show", "--json").stdout)
    assert (shown["last_activity"], shown["source"], shown["idle"]) == (None, None, True)
    assert "last user activity: none known" in activity(data, "--show").stdout

    out = activity(data, "--at", "10m", "--json")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)
    assert first["recorded"] is True and first["last_activity"] == first["recorded_activity"] == first["at"]
    assert first["source"] == "recorded" and first["idle"] is False
    at = datetime.fromisoformat(first["at"])
    assert timedelta(minutes=9) < datetime.now(UTC) - at < timedelta(minutes=11)
    assert datetime.fromisoformat(first["idle_from"]) - at == timedelta(minutes=30)
    assert at.utcoffset() == ZoneInfo(TZ).utcoffset(at.replace(tzinfo=None))  # written in the daemon's zone

    older = json.loads(activity(data, "--at", "2h", "--json").stdout)
    assert older["recorded"] is False and older["last_activity"] == first["at"]  # an old report never shortens the wait
    human = activity(data, "--at", "1h")
    assert human.returncode == 0 and "kept the later activity" in human.stdout and "idle: no" in human.stdout

    (data / "config.toml").write_text(f'timezone = "{TZ}"\n[scheduler]\nidle_after_minutes = 5\n')
    assert json.loads(activity(data, "--show", "--json").stdout)["idle"] is True  # 10 minutes > 5
    now = activity(data)
    assert now.returncode == 0 and "recorded user activity at" in now.stdout and "idle: no" in now.stdout


@pytest.mark.parametrize("args, needles", [
    (["--at", "2099-01-01T00:00"], ["--at", "in the future"]),
    (["--at", "soon"], ["--at", "'soon' is not a time"]),
    (["--at", "5m", "--show"], ["--show only reads"]),
])
def test_activity_bad_input_is_one_paragraph_and_non_zero(data: Path, args: list[str], needles: list[str]):
    assert_one_paragraph_error(activity(data, *args), 2, *needles)
    with open_store(data / "cass-actions.sqlite", daemon_id="cass") as store:
        assert store.get_state("last_user_activity") is None  # nothing recorded


def test_recorded_activity_holds_idle_only_work_in_the_scheduler(tmp_path: Path):
    """The record `activity` writes is the one the scheduler's idle check reads: a unit that requires
    idle runs when nobody was active, waits after `cass-actions activity`, and runs once the user
    has been away for idle_after_minutes."""
    data = tmp_path / "d"
    data.mkdir()
    (data / "config.toml").write_text('timezone = "UTC"\n[scheduler]\nidle_after_minutes = 30\n'
                                      "catch_up_window_minutes = 180\n")
    pack = HandPack([action_def("t.quiet", tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0,
                                category="system", requires_idle=True)],
                    [template_def("quiet", ["t.quiet"], category="system")])
    start = datetime.now(UTC).replace(microsecond=0)
    clock = VirtualClock(ZoneInfo("UTC"), start)
    runtime = Runtime(load_config(data / "config.toml"), data_dir=data, clock=clock, plugins=[("t", pack)],
                      entry_points=False, provider="offline")
    try:
        runtime.acquire_lease()
        before = runtime.trigger("quiet")
        asyncio.run(runtime.tick())
        assert runtime.store.get_unit(before.id).status == "completed"  # nobody active: idle

        out = activity(data)
        assert out.returncode == 0, out.stderr
        assert runtime.is_idle() is False
        waiting = runtime.trigger("quiet")
        asyncio.run(runtime.tick())
        assert runtime.store.get_unit(waiting.id).status == "queued"  # the user is active: it waits

        clock.set(start + timedelta(minutes=20))
        asyncio.run(runtime.tick())
        assert runtime.store.get_unit(waiting.id).status == "queued"
        shown = json.loads(activity(data, "--show", "--json").stdout)
        assert shown["idle"] is False and shown["source"] == "recorded"

        clock.set(start + timedelta(minutes=32))  # 30 minutes after the recorded activity (wall clock ~ start)
        asyncio.run(runtime.tick())
        assert runtime.store.get_unit(waiting.id).status == "completed"
    finally:
        runtime.close()


def test_activity_in_a_rehearsal_is_recorded_on_the_rehearsal_clock(tmp_path: Path):
    """A rehearsal (`run --speed`) runs on an accelerated clock: "now" is its virtual time, not the wall clock."""
    from cass_actions_core.cli.runtime_cmds import REHEARSAL_KEY, SIM_MARKER

    data = tmp_path / "rehearsal"
    data.mkdir()
    (data / SIM_MARKER).write_text("created by a test\n")
    with open_store(data / "cass-actions.sqlite", daemon_id="cass") as store:
        store.set_state(REHEARSAL_KEY, {"start": "2030-01-01T06:00:00+00:00", "epoch": time.time(), "speed": 60})
    out = activity(data, "--json")
    assert out.returncode == 0, out.stderr
    at = datetime.fromisoformat(json.loads(out.stdout)["at"])
    # 60 virtual seconds per real second: a few real seconds of start-up are a few virtual minutes
    assert datetime(2030, 1, 1, 6, tzinfo=UTC) <= at < datetime(2030, 1, 1, 7, tzinfo=UTC)
    assert (data / SIM_MARKER).read_text() == "created by a test\n"  # read, never rewritten


def test_queries_about_a_daemon_of_a_rehearsing_fleet_follow_the_fleets_virtual_clock(pg_schema_url: str, tmp_path: Path):
    from cass_actions_core.fleet import FLEET_CLOCK_KEY
    from cass_actions_core.store.fleet import FleetRegistry

    toml = tmp_path / "alpha.toml"
    toml.write_text(f'daemon_id = "alpha"\ntimezone = "UTC"\n[store]\nurl = "{pg_schema_url}"\n[planner]\nenabled = false\n'
                    '[llm]\nprovider = "offline"\n')
    env = {k: None for k in os.environ if k.startswith("CASS_ACTIONS_")} | {"CASS_ACTIONS_DATA_DIR": str(tmp_path / "cli")}
    added = run_cli("daemons", "add", "alpha", "--config", str(toml), "--workspace", str(tmp_path / "ws"), env=env)
    assert added.returncode == 0, added.stderr
    status = run_cli("status", "--json", "--daemon", "alpha", "--config", str(toml), env=env)
    assert status.returncode == 0, status.stderr
    assert abs(datetime.fromisoformat(json.loads(status.stdout)["now"]) - datetime.now(UTC)) < timedelta(minutes=5)
    # The first `worker --speed 3600 --start 2026-01-05` of the fleet stores its shared clock; a query follows it.
    start = datetime(2026, 1, 5, 6, tzinfo=UTC)
    with FleetRegistry.open(pg_schema_url) as registry:
        registry.setting_once(FLEET_CLOCK_KEY, {"start": start.isoformat(), "epoch": time.time(), "speed": 3600})
    status = run_cli("status", "--json", "--daemon", "alpha", "--config", str(toml), env=env)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    now = datetime.fromisoformat(shown["now"])
    assert start <= now < start + timedelta(hours=3), shown["now"]  # a few real seconds: a few virtual hours at most
    assert shown["phase_day"] == "2026-01-05" and shown["budget"]["budget_day"] == "2026-01-05"
    events = run_cli("events", "--json", "--since", "1h", "--daemon", "alpha", "--config", str(toml), env=env)
    assert events.returncode == 0, events.stderr
