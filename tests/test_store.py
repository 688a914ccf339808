"""The SQLite store: schema and migrations, refusing bad files untouched, the lease, units and their
state machine, action runs, approvals, events, summaries, kv/state and retention.

Every test uses a real SQLite file under ``tmp_path``.
"""

from __future__ import annotations

import json
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core import store as store_module
from cass_actions_core.store import leases as store_leases
from cass_actions_core.store import (
    ALLOWED_TRANSITIONS,
    SCHEMA_VERSION,
    UNIT_STATUSES,
    LeaseHeldError,
    LeaseLostError,
    Migration,
    NotFoundError,
    Store,
    StoreError,
    UnitRow,
    open_store,
)

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=TOKYO)
DAY = date(2026, 11, 26)
REPO_ROOT = Path(__file__).resolve().parents[1]

# The state machine as the design states it, written out independently of the code.
EXPECTED_TRANSITIONS: dict[str, set[str]] = {
    "planned": {"queued", "cancelled", "expired"},
    "queued": {"running", "budget_blocked", "awaiting_approval", "expired", "cancelled"},
    "running": {"completed", "failed", "budget_blocked", "awaiting_approval", "abandoned", "queued"},
    "budget_blocked": {"queued", "expired", "cancelled"},
    "awaiting_approval": {"queued", "cancelled", "expired", "failed"},
    "completed": set(),
    "failed": set(),
    "expired": set(),
    "cancelled": set(),
    "abandoned": set(),
}

# A legal path from 'planned' to each status.
PATH_TO: dict[str, list[str]] = {
    "planned": [],
    "queued": ["queued"],
    "running": ["queued", "running"],
    "completed": ["queued", "running", "completed"],
    "failed": ["queued", "running", "failed"],
    "budget_blocked": ["queued", "budget_blocked"],
    "awaiting_approval": ["queued", "awaiting_approval"],
    "expired": ["expired"],
    "cancelled": ["cancelled"],
    "abandoned": ["queued", "running", "abandoned"],
}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's store file lives."""
    return tmp_path / "data" / "cass.db"


@pytest.fixture
def store(store_location: Path | str) -> Iterator[Store]:
    """A freshly created store for daemon 'cass'."""
    with open_store(store_location, "cass") as opened:
        yield opened


def digest(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_unit(store: Store, **overrides: Any) -> UnitRow:
    """Insert a one-step reflection unit (fields overridable)."""
    fields: dict[str, Any] = {
        "local_date": DAY,
        "phase": "morning",
        "template_id": "solo_reflection",
        "name": "Solo reflection",
        "category": "reflection",
        "steps": [{"action": "session.reflection", "params": {"focus": "x"}}],
        "now": NOW,
        "estimated_cost_usd": 0.15,
    }
    fields.update(overrides)
    return store.insert_unit(**fields)


def drive(store: Store, unit_id: str, path: list[str]) -> UnitRow:
    """Walk a unit along legal transitions, with a reason for each."""
    row = store.get_unit(unit_id)
    assert row is not None
    for i, status in enumerate(path):
        row = store.set_unit_status(unit_id, status, reason=f"step to {status}", now=NOW + timedelta(minutes=i + 1))
    return row


# --------------------------------------------------------------------------- schema, migrations


@pytest.mark.sqlite_only
def test_new_file_is_created_with_the_current_schema(store: Store) -> None:
    db_path = Path(store.path)
    assert db_path.exists()
    assert store.schema_version == SCHEMA_VERSION
    assert store.journal_mode == "wal"
    raw = sqlite3.connect(db_path)
    try:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta = dict(raw.execute("SELECT key, value FROM meta").fetchall())
    finally:
        raw.close()
    assert {
        "meta", "plans", "units", "unit_transitions", "action_runs", "ledger_entries", "approvals",
        "events", "summaries", "transcripts", "kv", "state", "lease",
    } <= tables
    assert meta["daemon_id"] == "cass"
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_reopen_keeps_data(store_location: Path | str) -> None:
    with open_store(store_location, "cass") as first:
        unit = make_unit(first)
        first.save_plan(DAY, "llm", None, "be curious", {"items": [1, 2]}, NOW)
        first.kv_set("journal", "last", {"date": "2026-11-25"})
        event_id = first.append_event("day.planned", {"n": 1}, NOW)
    with open_store(store_location, "cass") as second:
        assert second.get_unit(unit.id) == unit
        plan = second.get_plan(DAY)
        assert plan is not None and plan.intention == "be curious" and plan.data == {"items": [1, 2]}
        assert second.kv_get("journal", "last") == {"date": "2026-11-25"}
        assert [e.id for e in second.list_events()] == [event_id]
        assert second.schema_version == SCHEMA_VERSION


def test_later_migrations_run_in_order_on_an_older_file(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(db_path, daemon_id="cass") as old:
        unit = make_unit(old)
    applied: list[int] = []

    def step(version: int, sql: str) -> Migration:
        def apply(conn: sqlite3.Connection) -> None:
            applied.append(version)
            conn.execute(sql)

        return Migration(version, f"test step {version}", apply)

    extra = [
        step(SCHEMA_VERSION + 1, "CREATE TABLE extra (x INTEGER)"),
        step(SCHEMA_VERSION + 2, "ALTER TABLE extra ADD COLUMN y TEXT"),
    ]
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, *extra])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 2)
    with open_store(db_path, daemon_id="cass") as upgraded:
        assert applied == [SCHEMA_VERSION + 1, SCHEMA_VERSION + 2]
        assert upgraded.schema_version == SCHEMA_VERSION + 2
        cols = [r[1] for r in upgraded._conn.execute("PRAGMA table_info(extra)")]
        assert cols == ["x", "y"]
        assert upgraded.get_unit(unit.id) == unit
    # Nothing to do the second time.
    with open_store(db_path, daemon_id="cass"):
        assert applied == [SCHEMA_VERSION + 1, SCHEMA_VERSION + 2]


def test_a_version_1_file_keeps_its_plans_and_template_plans_become_fallbacks(db_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # A store written before the planner (schema 1, plan source 'templates'), upgraded in place.
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 1)
    with open_store(db_path, daemon_id="cass") as old:
        old._conn.execute("INSERT INTO plans (local_date, created_at, source, reason, intention, data) VALUES "
                          "('2026-11-25', '2026-11-25T06:00:00+00:00', 'templates', 'each template once', '', '{}')")
        old._conn.execute("INSERT INTO plans (local_date, created_at, source, reason, intention, data) VALUES "
                          "(?, '2026-11-26T06:00:00+00:00', 'file', 'by hand', '', '{\"phases\": {}}')", (DAY.isoformat(),))
        assert old.schema_version == 1
    monkeypatch.undo()
    with open_store(db_path, daemon_id="cass") as upgraded:
        assert upgraded.schema_version == SCHEMA_VERSION >= 2
        assert upgraded.get_plan(date(2026, 11, 25)).source == "fallback"
        assert upgraded.get_plan(DAY).source == "file" and upgraded.get_plan(DAY).reason == "by hand"
        with pytest.raises(sqlite3.IntegrityError):
            upgraded._conn.execute("UPDATE plans SET source = 'templates'")


def test_a_failing_migration_leaves_the_file_at_its_old_version(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(db_path, daemon_id="cass"):
        pass

    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, Migration(SCHEMA_VERSION + 1, "bad", half_done)])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError, match="migration bug"):
        open_store(db_path, daemon_id="cass")
    raw = sqlite3.connect(db_path)
    try:
        version = raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        raw.close()
    assert version == str(SCHEMA_VERSION)
    assert "half" not in tables


def test_newer_schema_is_refused_and_the_file_left_untouched(db_path: Path) -> None:
    with open_store(db_path, daemon_id="cass") as s:
        make_unit(s)
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 5),))
    raw.commit()
    raw.close()
    before = digest(db_path)
    with pytest.raises(StoreError) as caught:
        open_store(db_path, daemon_id="cass")
    message = str(caught.value)
    assert f"newer cass-actions (schema {SCHEMA_VERSION + 5}, this version knows {SCHEMA_VERSION})" in message
    assert "upgrade cass-actions or use another data directory" in message
    assert str(db_path) in message
    assert digest(db_path) == before


def _garbage(path: Path, valid: bytes) -> None:
    path.write_bytes(os.urandom(16384))


def _text_file(path: Path, valid: bytes) -> None:
    path.write_bytes(b"this is my diary, not a database\n" * 10)


def _truncated_mid_page(path: Path, valid: bytes) -> None:
    path.write_bytes(valid[: len(valid) // 2 + 123])


def _truncated_at_page(path: Path, valid: bytes) -> None:
    path.write_bytes(valid[: 4096 * 3])


def _header_only(path: Path, valid: bytes) -> None:
    path.write_bytes(valid[:60])


def _damaged_pages(path: Path, valid: bytes) -> None:
    # Keep the header page, scribble over the middle of the b-tree pages.
    body = bytearray(valid)
    start, end = 4096, len(valid) - 4096
    body[start:end] = os.urandom(end - start)
    path.write_bytes(bytes(body))


@pytest.mark.parametrize(
    "damage", [_garbage, _text_file, _truncated_mid_page, _truncated_at_page, _header_only, _damaged_pages]
)
def test_corrupt_file_is_refused_and_left_untouched(db_path: Path, damage: Callable[[Path, bytes], None]) -> None:
    with open_store(db_path, daemon_id="cass") as s:
        for i in range(60):
            s.append_event("filler", {"i": i, "pad": "x" * 400}, NOW)
    valid = db_path.read_bytes()
    assert len(valid) > 4096 * 8
    damage(db_path, valid)
    before = digest(db_path)
    size = db_path.stat().st_size
    with pytest.raises(StoreError) as caught:
        open_store(db_path, daemon_id="cass")
    message = str(caught.value)
    assert str(db_path) in message
    assert "left untouched" in message
    assert db_path.exists()
    assert db_path.stat().st_size == size
    assert digest(db_path) == before


def test_many_connections_creating_one_file_at_once_agree(db_path: Path) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def opener(n: int) -> None:
        try:
            start.wait()
            with open_store(db_path, daemon_id="cass") as s:
                s.kv_set("openers", str(n), n)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=opener, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with open_store(db_path, daemon_id="cass") as s:
        assert s.kv_items("openers") == {str(n): n for n in range(8)}
        assert s.schema_version == SCHEMA_VERSION


def test_other_sqlite_database_is_not_taken_over(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    raw = sqlite3.connect(db_path)
    raw.execute("CREATE TABLE recipes (name TEXT)")
    raw.execute("INSERT INTO recipes VALUES ('soup')")
    raw.commit()
    raw.close()
    before = digest(db_path)
    with pytest.raises(StoreError, match="not a cass-actions store"):
        open_store(db_path, daemon_id="cass")
    assert digest(db_path) == before


def test_store_of_another_daemon_is_refused(db_path: Path) -> None:
    with open_store(db_path, daemon_id="cass"):
        pass
    before = digest(db_path)
    with pytest.raises(StoreError) as caught:
        open_store(db_path, daemon_id="other")
    assert "'cass'" in str(caught.value) and "'other'" in str(caught.value)
    assert digest(db_path) == before


def test_transaction_rolls_back_everything_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction():
            make_unit(store, template_id="a")
            store.append_event("x", {}, NOW)
            raise RuntimeError("boom")
    assert store.list_units() == []
    assert store.list_events() == []
    # A failing inner savepoint does not undo the outer block's work.
    with store.transaction():
        kept = make_unit(store, template_id="kept")
        with pytest.raises(ValueError):
            with store.transaction(savepoint=True):
                make_unit(store, template_id="lost")
                raise ValueError("inner")
    assert [u.id for u in store.list_units()] == [kept.id]


@pytest.mark.sqlite_only
def test_a_nested_block_joins_the_outer_transaction_and_one_that_fails_after_writing_dooms_it(store: Store) -> None:
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    with store.transaction():
        make_unit(store, template_id="a")  # its own transaction() joins this one
    store._conn.set_trace_callback(None)
    assert not [s for s in statements if "SAVEPOINT" in s or "RELEASE" in s]
    # An inner block that fails before writing anything leaves the outer one usable.
    with store.transaction():
        b = make_unit(store, template_id="b")
        with pytest.raises(ValueError):
            store.set_unit_status(b.id, "completed", reason=None, now=NOW)  # refused before any write
    assert sorted(u.template_id for u in store.list_units()) == ["a", "b"]
    # One that fails after writing cannot be undone alone: the whole transaction goes, even if caught.
    with pytest.raises(StoreError, match="rolled back"):
        with store.transaction():
            make_unit(store, template_id="c")
            try:
                with store.transaction():
                    store.append_event("half", {}, NOW)
                    raise RuntimeError("midway")
            except RuntimeError:
                pass
    assert sorted(u.template_id for u in store.list_units()) == ["a", "b"]
    assert [e for e in store.list_events() if e.type == "half"] == []
    # A savepoint inside catches it: undone alone, and the outer transaction commits.
    with store.transaction():
        make_unit(store, template_id="d")
        with pytest.raises(RuntimeError):
            with store.transaction(savepoint=True):
                with store.transaction():
                    store.append_event("half", {}, NOW)
                    raise RuntimeError("midway")
    assert sorted(u.template_id for u in store.list_units()) == ["a", "b", "d"]


# --------------------------------------------------------------------------- datetimes


NAIVE = datetime(2026, 11, 26, 9, 30)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: make_unit(s, now=NAIVE),
        lambda s: s.append_event("x", {}, NAIVE),
        lambda s: s.save_plan(DAY, "llm", None, None, {}, NAIVE),
        lambda s: s.acquire_lease("me", NAIVE, timedelta(minutes=1)),
        lambda s: s.set_unit_status(make_unit(s).id, "queued", reason=None, now=NAIVE),
        lambda s: s.set_unit_status(make_unit(s).id, "cancelled", reason="r", now=NOW, not_before=NAIVE),
        lambda s: s.save_transcript({}, None, NAIVE),
        lambda s: s.prune(NAIVE, NOW),
        lambda s: s.kv_set("ns", "k", 1, now=NAIVE),
    ],
)
def test_naive_datetimes_are_rejected(store: Store, call: Callable[[Store], object]) -> None:
    with pytest.raises(ValueError, match="naive"):
        call(store)


def test_datetimes_come_back_aware_with_their_offset(store: Store) -> None:
    unit = make_unit(store)
    assert unit.created_at == NOW
    assert unit.created_at.utcoffset() == timedelta(hours=9)
    raw = store._one("SELECT created_at FROM units WHERE id = ?", (unit.id,))[0]
    assert raw == "2026-11-26T09:30:00+09:00"
    la = datetime(2026, 11, 25, 16, 30, 0, 123456, tzinfo=ZoneInfo("America/Los_Angeles"))
    moved = store.set_unit_status(unit.id, "queued", reason=None, now=la)
    assert moved.updated_at == la and moved.updated_at.utcoffset() == timedelta(hours=-8)


def test_a_date_argument_must_be_a_date_not_a_datetime(store: Store) -> None:
    with pytest.raises(TypeError):
        store.save_plan(NOW, "llm", None, None, {}, NOW)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lease


def test_second_holder_is_refused_with_a_clear_message(store_location: Path | str) -> None:
    with open_store(store_location, "cass") as a, open_store(store_location, "cass") as b:
        lease = a.acquire_lease("run-a", NOW, timedelta(minutes=2))
        assert lease.holder == "run-a" and lease.pid == os.getpid()
        assert lease.expires_at == NOW + timedelta(minutes=2)
        with pytest.raises(LeaseHeldError) as caught:
            b.acquire_lease("run-b", NOW + timedelta(seconds=30), timedelta(minutes=2))
        message = str(caught.value)
        assert f"pid {os.getpid()}" in message
        assert a.hostname in message
        assert (NOW + timedelta(minutes=2)).isoformat() in message
        assert "run-a" in message
        # The holder itself may re-acquire (and so renew) its own lease.
        again = a.acquire_lease("run-a", NOW + timedelta(minutes=1), timedelta(minutes=2))
        assert again.acquired_at == NOW and again.expires_at == NOW + timedelta(minutes=3)


def test_expired_lease_is_taken_over_and_the_old_holder_learns_it_lost(db_path: Path) -> None:
    with open_store(db_path, daemon_id="cass") as a, open_store(db_path, daemon_id="cass") as b:
        a.acquire_lease("run-a", NOW, timedelta(minutes=2))
        renewed = a.renew_lease("run-a", NOW + timedelta(minutes=1), timedelta(minutes=2))
        assert renewed.expires_at == NOW + timedelta(minutes=3)
        with pytest.raises(LeaseHeldError):
            b.acquire_lease("run-b", NOW + timedelta(minutes=2, seconds=59), timedelta(minutes=2))
        taken = b.acquire_lease("run-b", NOW + timedelta(minutes=3), timedelta(minutes=2))
        assert taken.holder == "run-b" and taken.acquired_at == NOW + timedelta(minutes=3)
        with pytest.raises(LeaseLostError, match="run-b"):
            a.renew_lease("run-a", NOW + timedelta(minutes=3, seconds=1), timedelta(minutes=2))
        assert a.release_lease("run-a") is False
        assert b.get_lease() == taken
        assert b.release_lease("run-b") is True
        assert a.get_lease() is None
        assert a.acquire_lease("run-a", NOW + timedelta(minutes=4), timedelta(minutes=2)).holder == "run-a"


def test_a_store_that_lost_its_lease_writes_nothing_more_until_it_takes_the_lease_again(db_path: Path) -> None:
    # A process stuck past its lease (SIGSTOP) wakes up after another took over: its first refused write used
    # to unfence it, so its next writes (a unit's failure, an event) landed over the new holder's work.
    with open_store(db_path, daemon_id="cass") as a, open_store(db_path, daemon_id="cass") as b:
        a.acquire_lease("run-a", NOW, timedelta(minutes=2))
        b.acquire_lease("run-b", NOW + timedelta(minutes=3), timedelta(minutes=2))
        with pytest.raises(LeaseLostError, match="run-b"):
            a.set_state("k", 1)  # the fence check refuses it
        for write in (lambda: a.set_state("k", 2), lambda: a.append_event("work_unit.failed", {}, NOW),
                      lambda: a.kv_set("pack", "k", 3)):
            with pytest.raises(LeaseLostError, match="run-a.*lost the lease"):
                write()  # and every write after it: no second check could let one through
        assert b.get_state("k") is None and b.list_events() == [] and b.kv_get("pack", "k") is None
        assert a.get_state("k") is None  # reads still work
        b.release_lease("run-b")
        a.acquire_lease("run-a", NOW + timedelta(minutes=4), timedelta(minutes=2))
        a.set_state("k", 4)  # holding the lease again, it writes again
        assert b.get_state("k") == 4
    with open_store(db_path, daemon_id="cass") as a, open_store(db_path, daemon_id="cass") as b:
        a.acquire_lease("run-a", NOW + timedelta(minutes=10), timedelta(minutes=2))
        b.acquire_lease("run-b", NOW + timedelta(minutes=13), timedelta(minutes=2))
        with pytest.raises(LeaseLostError):
            a.renew_lease("run-a", NOW + timedelta(minutes=13), timedelta(minutes=2))  # learnt at renewal instead
        with pytest.raises(LeaseLostError, match="no longer holds the lease"):
            a.set_state("k", 5)
        assert b.get_state("k") == 4


CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timedelta, timezone
    from pathlib import Path
    from cass_actions_core.store import open_store

    store = open_store(Path(sys.argv[1]), daemon_id="cass")
    store.acquire_lease("child-run", datetime.now(timezone.utc), timedelta(hours=1))
    print("ready", flush=True)
    time.sleep(120)
    """
)


def _spawn_lease_holder(db_path: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"lease-holding child did not start: {line!r} {err}")
    return proc


@pytest.mark.skipif(os.name == "nt", reason="pid liveness is only checked on POSIX")
def test_lease_of_a_killed_process_on_this_host_is_taken_over_at_once(db_path: Path) -> None:
    with open_store(db_path, daemon_id="cass"):
        pass
    proc = _spawn_lease_holder(db_path)
    try:
        with open_store(db_path, daemon_id="cass") as mine:
            now = datetime.now(timezone.utc)
            with pytest.raises(LeaseHeldError) as caught:
                mine.acquire_lease("parent-run", now, timedelta(minutes=5))
            assert f"pid {proc.pid}" in str(caught.value)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            # The child's lease still has most of an hour to run, but its process is gone.
            lease = mine.acquire_lease("parent-run", datetime.now(timezone.utc), timedelta(minutes=5))
            assert lease.holder == "parent-run" and lease.pid == os.getpid()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="zombie detection reads /proc")
def test_an_unreaped_killed_process_counts_as_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert store_leases._pid_alive(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while store_leases._pid_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not store_leases._pid_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert not store_leases._pid_alive(proc.pid)


def test_a_dead_pid_on_another_host_still_waits_for_expiry(store_location: Path | str) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    with open_store(store_location, "cass") as a, open_store(store_location, "cass") as b:
        a.acquire_lease("remote-run", NOW, timedelta(minutes=2))
        a._x("UPDATE lease SET pid = ?, hostname = 'some-other-host'", (dead_pid,))
        with pytest.raises(LeaseHeldError, match="some-other-host"):
            b.acquire_lease("local-run", NOW + timedelta(minutes=1), timedelta(minutes=2))
        # Same dead pid on this host: taken over.
        a._x("UPDATE lease SET hostname = ?", (a.hostname,))
        assert b.acquire_lease("local-run", NOW + timedelta(minutes=1), timedelta(minutes=2)).holder == "local-run"


def test_the_fencing_token_only_grows_across_releases(store_location: Path | str) -> None:
    with open_store(store_location, "cass") as a, open_store(store_location, "cass") as b:
        first = a.acquire_lease("run-a", NOW, timedelta(minutes=2))
        assert a.release_lease("run-a") is True
        assert a.get_lease() is None  # released: nobody holds it
        second = b.acquire_lease("run-b", NOW + timedelta(seconds=1), timedelta(minutes=2))
        assert second.token > first.token
        # A clean hand-over back to a holder of the old name still moves the token on, so a write
        # fenced by the old token (a process that kept its store open) is refused.
        assert b.release_lease("run-b") is True
        third = a.acquire_lease("run-a", NOW + timedelta(seconds=2), timedelta(minutes=2))
        assert third.token > second.token
        with pytest.raises(LeaseLostError, match="nobody|run-a"):
            b._fence, b._fence_token = "run-a", first.token
            b.set_state("x", 1)
        with pytest.raises(LeaseLostError, match="nobody"):
            a.release_lease("run-a")
            a.renew_lease("run-a", NOW + timedelta(seconds=3), timedelta(minutes=2))


# --------------------------------------------------------------------------- plans


def test_replanning_a_date_replaces_its_plan(store: Store) -> None:
    assert store.get_plan(DAY) is None
    store.save_plan(DAY, "fallback", "planner timed out", "rest", {"items": ["a"]}, NOW)
    store.save_plan(DAY, "llm", None, "explore", {"items": ["b", "c"]}, NOW + timedelta(hours=1))
    plan = store.get_plan(DAY)
    assert plan is not None
    assert (plan.source, plan.reason, plan.intention, plan.data) == ("llm", None, "explore", {"items": ["b", "c"]})
    assert plan.created_at == NOW + timedelta(hours=1)
    assert store._one("SELECT COUNT(*) FROM plans")[0] == 1
    with pytest.raises(ValueError, match="source"):
        store.save_plan(DAY, "guess", None, None, {}, NOW)


# --------------------------------------------------------------------------- units


def test_insert_and_read_back_a_unit(store: Store) -> None:
    unit = make_unit(
        store,
        focus="patience",
        motivation="growth edge",
        requires_idle=True,
        priority=1,
        position=3,
        data={"plan_item": 2},
        steps=[{"action": "a.one"}, {"action": "a.two", "params": {"k": 1}, "optional": True}],
    )
    assert unit.status == "planned" and unit.next_step == 0
    assert unit.steps == [
        {"action": "a.one", "params": {}, "optional": False},
        {"action": "a.two", "params": {"k": 1}, "optional": True},
    ]
    assert unit.requires_idle is True and unit.daemon_id == "cass"
    assert store.get_unit(unit.id) == unit
    assert store.get_unit("nope") is None
    created = store.transitions(unit.id)
    assert [(t.from_status, t.to_status) for t in created] == [(None, "planned")]
    with pytest.raises(ValueError, match="phase"):
        make_unit(store, phase="dawn")
    with pytest.raises(ValueError, match="steps"):
        make_unit(store, steps=[{"params": {}}])
    with pytest.raises(ValueError):
        make_unit(store, status="running")


def test_every_transition_is_checked_against_the_state_machine(store: Store) -> None:
    assert {k: set(v) for k, v in ALLOWED_TRANSITIONS.items()} == EXPECTED_TRANSITIONS
    for source in UNIT_STATUSES:
        for target in UNIT_STATUSES:
            unit = drive(store, make_unit(store).id, PATH_TO[source])
            assert unit.status == source
            count = len(store.transitions(unit.id))
            if target in EXPECTED_TRANSITIONS[source]:
                moved = store.set_unit_status(unit.id, target, reason="because", now=NOW + timedelta(hours=1))
                assert moved.status == target
                assert len(store.transitions(unit.id)) == count + 1
            else:
                with pytest.raises(ValueError, match="cannot go from"):
                    store.set_unit_status(unit.id, target, reason="because", now=NOW + timedelta(hours=1))
                assert store.get_unit(unit.id) == unit
                assert len(store.transitions(unit.id)) == count


@pytest.mark.parametrize("target", ["budget_blocked", "awaiting_approval", "expired", "cancelled"])
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_parking_expiring_and_cancelling_need_a_reason(store: Store, target: str, reason: str | None) -> None:
    unit = drive(store, make_unit(store).id, ["queued"])
    with pytest.raises(ValueError, match="reason"):
        store.set_unit_status(unit.id, target, reason=reason, now=NOW)
    assert store.get_unit(unit.id) == unit


def test_abandoning_needs_a_reason(store: Store) -> None:
    unit = drive(store, make_unit(store).id, ["queued", "running"])
    with pytest.raises(ValueError, match="reason"):
        store.set_unit_status(unit.id, "abandoned", reason=None, now=NOW)


def test_each_transition_is_recorded_with_its_reason_and_times(store: Store) -> None:
    unit = make_unit(store)
    t = [NOW + timedelta(minutes=m) for m in range(1, 8)]
    retry_at = NOW + timedelta(hours=2)
    store.set_unit_status(unit.id, "queued", reason="morning began", now=t[0])
    running = store.set_unit_status(unit.id, "running", reason=None, now=t[1])
    assert running.started_at == t[1]
    blocked = store.set_unit_status(
        unit.id, "budget_blocked", reason="reflection: $0.05 left of $0.90, needs $0.15", now=t[2], not_before=retry_at
    )
    assert blocked.not_before == retry_at and blocked.reason.startswith("reflection:")
    store.set_unit_status(unit.id, "queued", reason="money freed up", now=t[3])
    again = store.set_unit_status(unit.id, "running", reason=None, now=t[4], next_step=1)
    assert again.started_at == t[1], "started_at is the first start"
    assert again.next_step == 1
    done = store.set_unit_status(unit.id, "completed", reason=None, now=t[5], data={"summary": "ok"})
    assert done.finished_at == t[5] and done.data == {"summary": "ok"} and done.is_terminal
    rows = store.transitions(unit.id)
    assert [(r.from_status, r.to_status, r.reason, r.at) for r in rows] == [
        (None, "planned", None, NOW),
        ("planned", "queued", "morning began", t[0]),
        ("queued", "running", None, t[1]),
        ("running", "budget_blocked", "reflection: $0.05 left of $0.90, needs $0.15", t[2]),
        ("budget_blocked", "queued", "money freed up", t[3]),
        ("queued", "running", None, t[4]),
        ("running", "completed", None, t[5]),
    ]
    with pytest.raises(TypeError):
        store.set_unit_status(unit.id, "queued", reason="x", now=t[6], status="running")
    with pytest.raises(NotFoundError):
        store.set_unit_status("missing", "queued", reason=None, now=t[6])


def test_a_move_from_a_stale_row_is_checked_against_the_row_as_it_is_now(store: Store) -> None:
    queued = make_unit(store, status="queued")
    # Another writer (a CLI cancel) moves the unit after the caller read it.
    store.set_unit_status(queued.id, "cancelled", reason="cancelled by user", now=NOW)
    with pytest.raises(ValueError, match="cannot go from 'cancelled' to 'running'"):
        store.set_unit_status(queued.id, "running", reason=None, now=NOW + timedelta(minutes=1), current=queued)
    assert store.get_unit(queued.id).status == "cancelled"
    assert [r.to_status for r in store.transitions(queued.id)] == ["queued", "cancelled"]
    # A stale row whose move is still allowed from the status the row has now: the move applies to that.
    other = make_unit(store, status="queued")
    store.set_unit_status(other.id, "running", reason=None, now=NOW)
    ended = store.set_unit_status(other.id, "abandoned", reason="stopped", now=NOW, current=other)
    assert ended.status == "abandoned" and store.get_unit(other.id) == ended
    assert [(r.from_status, r.to_status) for r in store.transitions(other.id)][-1] == ("running", "abandoned")


def test_a_claim_moves_only_a_queued_unit_and_returns_it_as_stored(store: Store) -> None:
    unit = make_unit(store, status="queued", data={"source": "trigger"})
    claimed = store.claim_unit(unit.id, NOW + timedelta(minutes=5))
    assert claimed == store.get_unit(unit.id)
    assert claimed.status == "running" and claimed.started_at == NOW + timedelta(minutes=5)
    assert claimed.data == {"source": "trigger"}
    with pytest.raises(ValueError, match="not queued"):
        store.claim_unit(unit.id, NOW + timedelta(minutes=6))
    with pytest.raises(ValueError, match="not queued"):
        store.claim_unit("missing", NOW)
    # A unit claimed again after a requeue keeps its first start.
    store.set_unit_status(unit.id, "queued", reason="requeued", now=NOW + timedelta(minutes=7))
    assert store.claim_unit(unit.id, NOW + timedelta(minutes=8)).started_at == NOW + timedelta(minutes=5)
    assert [r.to_status for r in store.transitions(unit.id)] == ["queued", "running", "queued", "running"]


def test_unit_briefs_give_the_units_of_one_status_in_run_order_with_their_deadline(store: Store) -> None:
    deadline = NOW + timedelta(hours=2)
    evening = make_unit(store, phase="evening", status="planned")
    morning = make_unit(store, phase="morning", status="planned", data={"deadline": deadline.isoformat()})
    queued = make_unit(store, status="queued", not_before=NOW + timedelta(minutes=30), requires_idle=True)
    assert [b.id for b in store.unit_briefs("planned")] == [morning.id, evening.id]
    first = store.unit_briefs("planned")[0]
    assert (first.local_date, first.phase, first.category, first.deadline) == (DAY, "morning", "reflection", deadline)
    assert store.unit_briefs("planned")[1].deadline is None
    (brief,) = store.unit_briefs()  # queued by default
    assert (brief.id, brief.not_before, brief.requires_idle) == (queued.id, NOW + timedelta(minutes=30), True)
    assert store.unit_briefs("running") == []
    with pytest.raises(ValueError, match="unknown unit status 'planed'"):
        store.unit_briefs("planed")


def test_next_step_is_bounded_by_the_steps(store: Store) -> None:
    unit = make_unit(store, steps=[{"action": "a.one"}, {"action": "a.two"}])
    assert store.set_next_step(unit.id, 2, NOW).next_step == 2
    for bad in (-1, 3):
        with pytest.raises(ValueError):
            store.set_next_step(unit.id, bad, NOW)


def test_list_units_orders_by_day_phase_priority_position(store: Store) -> None:
    other_day = DAY + timedelta(days=1)
    made = {
        "night": make_unit(store, phase="night", template_id="night"),
        "eve": make_unit(store, phase="evening", template_id="eve"),
        "morning_p3": make_unit(store, phase="morning", priority=3, template_id="m3"),
        "morning_p1_pos2": make_unit(store, phase="morning", priority=1, position=2, template_id="m1b"),
        "morning_p1_pos1": make_unit(store, phase="morning", priority=1, position=1, template_id="m1a"),
        "afternoon": make_unit(store, phase="afternoon", template_id="aft"),
        "next_day": make_unit(store, local_date=other_day, phase="morning", template_id="next"),
    }
    order = [u.template_id for u in store.list_units()]
    assert order == ["m1a", "m1b", "m3", "aft", "eve", "night", "next"]
    assert [u.template_id for u in store.list_units(local_date=other_day)] == ["next"]
    assert [u.template_id for u in store.list_units(local_date=DAY, phase="morning")] == ["m1a", "m1b", "m3"]
    store.set_unit_status(made["eve"].id, "queued", reason=None, now=NOW)
    assert [u.template_id for u in store.list_units(statuses=["queued"])] == ["eve"]
    assert [u.template_id for u in store.list_units(statuses=("planned",), template_id="night")] == ["night"]
    assert store.list_units(statuses=[]) == []
    with pytest.raises(ValueError):
        store.list_units(statuses=["sleeping"])


def test_replacing_a_plan_deletes_only_units_that_never_started(store: Store) -> None:
    planned = make_unit(store, template_id="planned")
    queued = drive(store, make_unit(store, template_id="queued").id, ["queued"])
    running = drive(store, make_unit(store, template_id="running").id, ["queued", "running"])
    resumed = drive(store, make_unit(store, template_id="resumed").id, ["queued", "running", "queued"])
    with_run = drive(store, make_unit(store, template_id="with_run").id, ["queued"])
    store.begin_action_run(f"{DAY}/morning/{with_run.id}/0", with_run.id, 0, "session.reflection", NOW)
    approved = drive(store, make_unit(store, template_id="approved").id, ["queued", "awaiting_approval"])
    req = store.request_approval(approved.id, 0, "session.reflection", "needs a yes", NOW, NOW + timedelta(hours=1))
    store.resolve_approval(req.id, True, "kai", None, NOW)
    store.set_unit_status(approved.id, "queued", reason="approved", now=NOW)
    other_day = make_unit(store, local_date=DAY + timedelta(days=1), template_id="tomorrow")

    removed = store.delete_units_for_plan(DAY)
    assert sorted(u.template_id for u in removed) == ["planned", "queued"]
    left = {u.template_id for u in store.list_units()}
    assert left == {"running", "resumed", "with_run", "approved", "tomorrow"}
    assert store.get_unit(planned.id) is None and store.get_unit(queued.id) is None
    assert store.transitions(planned.id) == []
    assert store.get_unit(running.id) is not None and store.get_unit(resumed.id) is not None
    assert store.get_unit(other_day.id) is not None


# --------------------------------------------------------------------------- action runs


def test_begin_action_run_twice_returns_the_same_row(store: Store) -> None:
    unit = make_unit(store)
    key = f"{DAY}/morning/{unit.id}/0"
    first = store.begin_action_run(key, unit.id, 0, "session.reflection", NOW)
    assert (first.status, first.started_at, first.finished_at, first.cost_usd) == ("started", NOW, None, 0.0)
    second = store.begin_action_run(key, unit.id, 0, "something.else", NOW + timedelta(hours=1))
    assert second == first
    done = store.finish_action_run(key, "completed", 0.1234567, {"text": "hi"}, None, NOW + timedelta(minutes=5))
    assert done.status == "completed" and done.cost_usd == 0.123457 and done.result == {"text": "hi"}
    assert store.begin_action_run(key, unit.id, 0, "session.reflection", NOW + timedelta(hours=2)) == done
    with pytest.raises(StoreError, match="already finished"):
        store.finish_action_run(key, "failed", 0.0, None, "late", NOW + timedelta(hours=3))
    assert store.get_action_run(key) == done
    key2 = f"{DAY}/morning/{unit.id}/1"
    store.begin_action_run(key2, unit.id, 1, "journal.write", NOW)
    failed = store.finish_action_run(key2, "failed", 0.0, None, "timeout", NOW)
    assert failed.error == "timeout"
    assert [r.key for r in store.action_runs_for_unit(unit.id)] == [key, key2]
    with pytest.raises(NotFoundError):
        store.finish_action_run("no/such/key", "completed", 0, {}, None, NOW)
    with pytest.raises(NotFoundError):
        store.begin_action_run("k", "no-unit", 0, "a.b", NOW)
    with pytest.raises(ValueError):
        store.finish_action_run(key2, "started", 0, {}, None, NOW)


# --------------------------------------------------------------------------- approvals


def test_approval_lifecycle(store: Store) -> None:
    unit = drive(store, make_unit(store).id, ["queued", "awaiting_approval"])
    expires = NOW + timedelta(hours=24)
    req = store.request_approval(unit.id, 0, "session.reflection", "category needs approval", NOW, expires)
    assert (req.status, req.expires_at, req.resolved_at) == ("pending", expires, None)
    assert store.request_approval(unit.id, 0, "session.reflection", "again", NOW + timedelta(minutes=1), expires) == req
    assert store.approval_for(unit.id, 0) == req
    assert store.approval_for(unit.id, 1) is None
    assert store.list_approvals("pending") == [req]
    approved = store.resolve_approval(req.id, True, "kai", "go ahead", NOW + timedelta(hours=1))
    assert (approved.status, approved.resolved_by, approved.note) == ("approved", "kai", "go ahead")
    assert approved.resolved_at == NOW + timedelta(hours=1)
    with pytest.raises(StoreError, match="already approved"):
        store.resolve_approval(req.id, False, "kai", None, NOW + timedelta(hours=2))
    with pytest.raises(NotFoundError, match="deadbeef"):
        store.resolve_approval("deadbeef", True, "kai", None, NOW)
    # A new request for the same step after the answer is a new row.
    second = store.request_approval(unit.id, 0, "session.reflection", "once more", NOW + timedelta(hours=3), expires)
    assert second.id != req.id
    rejected = store.resolve_approval(second.id, False, "kai", "not today", NOW + timedelta(hours=3))
    assert rejected.status == "rejected"
    assert store.approval_for(unit.id, 0) == rejected
    assert [a.id for a in store.list_approvals()] == [req.id, second.id]
    assert store.list_approvals("approved") == [approved]
    with pytest.raises(ValueError):
        store.list_approvals("maybe")


def test_pending_approvals_expire(store: Store) -> None:
    units = [drive(store, make_unit(store).id, ["queued", "awaiting_approval"]) for _ in range(3)]
    # Deadlines given in different offsets: comparison must be by instant.
    soon = store.request_approval(units[0].id, 0, "a.b", None, NOW, (NOW + timedelta(hours=1)).astimezone(timezone.utc))
    later = store.request_approval(units[1].id, 0, "a.b", None, NOW, NOW + timedelta(hours=5))
    answered = store.request_approval(units[2].id, 0, "a.b", None, NOW, NOW + timedelta(minutes=30))
    store.resolve_approval(answered.id, True, "kai", None, NOW)
    assert store.expire_approvals(NOW + timedelta(minutes=59)) == []
    expired = store.expire_approvals(NOW + timedelta(hours=1))
    assert [a.id for a in expired] == [soon.id]
    assert expired[0].status == "expired" and expired[0].resolved_at == NOW + timedelta(hours=1)
    assert store.expire_approvals(NOW + timedelta(hours=2)) == []
    assert store.get_approval(later.id).status == "pending"  # type: ignore[union-attr]
    assert store.get_approval(answered.id).status == "approved"  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="already expired"):
        store.resolve_approval(soon.id, True, "kai", None, NOW + timedelta(hours=3))


# --------------------------------------------------------------------------- events


def test_events_append_and_page(store: Store) -> None:
    ids = [
        store.append_event("work_unit.queued", {"n": 1}, NOW, unit_id="u1"),
        store.append_event("budget.blocked", {"n": 2}, NOW),
        store.append_event("work_unit.completed", {"n": 3}, NOW, unit_id="u1"),
    ]
    assert ids == sorted(ids)
    events = store.list_events()
    assert [(e.type, e.data, e.unit_id, e.at) for e in events] == [
        ("work_unit.queued", {"n": 1}, "u1", NOW),
        ("budget.blocked", {"n": 2}, None, NOW),
        ("work_unit.completed", {"n": 3}, "u1", NOW),
    ]
    assert [e.id for e in store.list_events(since_id=ids[0])] == ids[1:]
    assert [e.type for e in store.list_events(types=["budget.blocked"])] == ["budget.blocked"]
    assert [e.id for e in store.list_events(limit=2)] == ids[:2]
    assert store.list_events(types=[]) == []


# --------------------------------------------------------------------------- summaries


def _summary(store: Store, n: int, **fields: Any) -> None:
    values: dict[str, Any] = {
        "unit_id": f"u{n}",
        "slug": f"2026-11-26-solo-reflection-{n}",
        "local_date": DAY,
        "phase": "morning",
        "category": "reflection",
        "template_id": "solo_reflection",
        "status": "completed",
        "text": f"summary {n}",
        "data": {"insights": []},
        "now": NOW + timedelta(minutes=n),
    }
    values.update(fields)
    store.save_summary(**values)


def test_summaries_are_queryable_by_every_field(store: Store) -> None:
    _summary(store, 1, text="Thought about patience and rain.")
    _summary(store, 2, phase="evening", category="creative", template_id="writing_session", text="Wrote a poem.")
    _summary(store, 3, local_date=DAY + timedelta(days=1), data={"insights": ["Rain is 100% water_ish"]})
    _summary(store, 4, phase="night", template_id="meta_reflection", status="failed", text="Timed out.")

    def ids(**filters: Any) -> list[str]:
        return [s.unit_id for s in store.query_summaries(**filters)]

    assert ids() == ["u3", "u4", "u2", "u1"], "newest first: by date, then phase"
    assert ids(local_date=DAY) == ["u4", "u2", "u1"]
    assert ids(phase="evening") == ["u2"]
    assert ids(category="creative") == ["u2"]
    assert ids(template_id="solo_reflection") == ["u3", "u1"]
    assert ids(text="RAIN") == ["u3", "u1"], "text matches the text and the data, case-insensitively"
    assert ids(text="100%") == ["u3"]
    assert ids(text="100% w") == ["u3"]
    assert ids(text="0%") == ["u3"]
    assert ids(text="water_ish") == ["u3"]
    assert ids(text="ter_i") == ["u3"]
    assert ids(text="patience and") == ["u1"]
    assert ids(text="patience_and") == [], "an underscore matches only an underscore"
    assert ids(text="about%rain") == [], "a percent sign matches only a percent sign"
    assert ids(local_date=DAY, category="reflection", limit=1) == ["u4"]
    assert ids(status="failed") == ["u4"]
    assert ids(local_date=DAY, phase="morning", category="reflection", template_id="solo_reflection", text="patience") == ["u1"]


def test_saving_a_summary_again_replaces_it_but_slugs_stay_unique(store: Store) -> None:
    _summary(store, 1, text="first draft")
    _summary(store, 1, text="final", status="failed")
    saved = store.get_summary("u1")
    assert saved is not None and saved.text == "final" and saved.status == "failed"
    assert store.get_summary_by_slug(saved.slug) == saved
    assert len(store.query_summaries()) == 1
    _summary(store, 2)
    with pytest.raises(StoreError, match="slug"):
        _summary(store, 3, slug=saved.slug)
    assert store.get_summary("u1") == saved
    assert store.get_summary("u3") is None


# --------------------------------------------------------------------------- transcripts, kv, state


def test_transcripts_are_kept_out_of_line(store: Store) -> None:
    record = {"model": "claude-haiku-5-5", "messages": [{"role": "user", "content": "hé"}], "usage": {"input_tokens": 3}}
    tid = store.save_transcript(record, "2026-11-26/morning/u1/0", NOW)
    row = store.get_transcript(tid)
    assert row is not None
    assert (row.data, row.run_key, row.created_at) == (record, "2026-11-26/morning/u1/0", NOW)
    assert store.get_transcript("missing") is None


def test_a_transcript_keeps_content_json_cannot_hold_as_its_text_and_refuses_nan(store: Store) -> None:
    class Block:
        def __str__(self) -> str:
            return "ToolUseBlock(name='search')"

    record = {"messages": [{"role": "assistant", "content": [Block(), {"type": "text", "text": "ok"}]}]}
    row = store.get_transcript(store.save_transcript(record, None, NOW))
    assert row is not None
    assert row.data == {"messages": [{"role": "assistant", "content": ["ToolUseBlock(name='search')",
                                                                          {"type": "text", "text": "ok"}]}]}
    with pytest.raises(ValueError):
        store.save_transcript({"cost_usd": float("nan")}, None, NOW)


def test_kv_and_state_round_trip_and_survive_reopening(store_location: Path | str) -> None:
    with open_store(store_location, "cass") as s:
        assert s.kv_get("memory", "cursor") is None
        assert s.kv_get("memory", "cursor", default=0) == 0
        s.kv_set("memory", "cursor", 41)
        s.kv_set("memory", "cursor", 42, now=NOW)
        s.kv_set("memory", "seen", ["a", "b"])
        s.kv_set("journal", "cursor", {"d": "x"})
        assert s.kv_items("memory") == {"cursor": 42, "seen": ["a", "b"]}
        assert s.kv_delete("memory", "seen") is True
        assert s.kv_delete("memory", "seen") is False
        s.set_state("paused_categories", ["research"])
        s.set_state("last_phase_instance", "2026-11-26/morning")
        s.set_state("last_phase_instance", "2026-11-26/afternoon")
        with pytest.raises(TypeError):
            s.set_state("bad", object())
        with pytest.raises(ValueError):
            s.set_state("bad", float("nan"))
    with open_store(store_location, "cass") as s:
        assert s.kv_items("memory") == {"cursor": 42}
        assert s.kv_items("journal") == {"cursor": {"d": "x"}}
        assert s.get_state("paused_categories") == ["research"]
        assert s.get_state("last_phase_instance") == "2026-11-26/afternoon"
        assert s.get_state("missing", default={}) == {}
        assert s.delete_state("paused_categories") is True
        assert s.get_state("paused_categories") is None


def test_prune_removes_only_old_events_and_transcripts(store: Store) -> None:
    utc = timezone.utc
    cutoff = datetime(2026, 11, 1, 0, 0, tzinfo=utc)
    # 08:30 in Tokyo on Nov 1 is 23:30 UTC on Oct 31: older than the cutoff although its
    # text sorts after it.
    old_local = datetime(2026, 11, 1, 8, 30, tzinfo=TOKYO)
    store.append_event("old", {}, old_local)
    store.append_event("old", {}, datetime(2026, 10, 1, tzinfo=utc))
    # 17:30 in Los Angeles on Oct 31 (PDT) is 00:30 UTC on Nov 1: newer, although its text
    # sorts before the cutoff's.
    kept_event = store.append_event("new", {}, datetime(2026, 10, 31, 17, 30, tzinfo=ZoneInfo("America/Los_Angeles")))
    store.save_transcript({"n": 1}, None, datetime(2026, 9, 1, tzinfo=utc))
    kept_transcript = store.save_transcript({"n": 2}, None, datetime(2026, 11, 20, tzinfo=utc))
    unit = make_unit(store)
    counts = store.prune(before_events=cutoff, before_transcripts=cutoff)
    assert counts == {"events": 2, "transcripts": 1}
    assert [e.id for e in store.list_events()] == [kept_event]
    assert store.get_transcript(kept_transcript) is not None
    assert store.get_unit(unit.id) is not None
    assert store.prune(cutoff, cutoff) == {"events": 0, "transcripts": 0}


# -- issue 9, finding 7: store faults ---------------------------------------------------------

def test_an_empty_store_file_is_refused_untouched_not_taken_for_a_new_store(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db_path.write_bytes(b"")
    with pytest.raises(StoreError) as info:
        open_store(db_path, daemon_id="cass")
    assert str(db_path) in str(info.value) and "empty (0 bytes)" in str(info.value)
    assert db_path.read_bytes() == b""  # untouched
    assert not db_path.with_name(db_path.name + "-wal").exists()


@pytest.mark.parametrize("column, value", [("data", "{not json"), ("created_at", "yesterday-ish"),
                                           ("local_date", "2026-13-45")])
def test_a_damaged_row_is_an_error_naming_the_file_and_the_row(db_path: Path, column: str, value: str) -> None:
    with open_store(db_path, daemon_id="cass") as s:
        unit = make_unit(s)
    raw = sqlite3.connect(db_path)
    raw.execute(f"UPDATE units SET {column} = ? WHERE id = ?", (value, unit.id))
    raw.commit()
    raw.close()
    with open_store(db_path, daemon_id="cass") as s:
        with pytest.raises(StoreError) as info:
            s.list_units()
    message = str(info.value)
    assert message.startswith(f"{db_path}: a damaged unit row (id {unit.id!r}): ") and "\n" not in message


def test_a_damaged_running_total_is_an_error_naming_the_file_and_the_category(db_path: Path) -> None:
    from cass_actions_core.ledger import BudgetLedger
    from cass_actions_core.config import Config

    with open_store(db_path, daemon_id="cass") as s:
        BudgetLedger(s, Config().budget).reserve("reflection", 0.05, budget_day=DAY, now=NOW)
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE ledger_totals SET spent_micros = 'lots'")
    raw.commit()
    raw.close()
    with open_store(db_path, daemon_id="cass") as s:
        with pytest.raises(StoreError) as info:
            s.ledger_totals(DAY)
    message = str(info.value)
    assert message.startswith(f"{db_path}: a damaged ledger totals row (category 'reflection'): TypeError: 'lots' is not")
    assert "\n" not in message


def test_a_full_disk_or_a_read_only_store_is_a_store_unavailable_error_and_nothing_is_half_written(db_path: Path) -> None:
    from cass_actions_core.store import StoreUnavailable

    with open_store(db_path, daemon_id="cass") as s:
        unit = make_unit(s)
        pages = s._conn.execute("PRAGMA page_count").fetchone()[0]
        s._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full now
        with pytest.raises(StoreUnavailable) as info:
            for i in range(200):
                s.append_event("filler", {"text": "x" * 4000, "i": i}, NOW)
        assert str(db_path) in str(info.value) and "database or disk is full" in str(info.value)
        assert "Free some disk space" in str(info.value)
        s._conn.execute("PRAGMA max_page_count = 1073741823")
        s._conn.execute("PRAGMA query_only = ON")  # and now read-only
        with pytest.raises(StoreUnavailable, match="readonly"):
            s.set_unit_status(unit.id, "queued", reason=None, now=NOW)
        s._conn.execute("PRAGMA query_only = OFF")
        assert s.get_unit(unit.id).status == unit.status  # nothing half-written


def test_a_version_3_file_gets_the_renamed_action_ids_in_its_queue_runs_approvals_and_plans(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A store written before action ids had to be in their pack's namespace (schema 3).
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:3])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 3)
    steps = [{"action": "wiki.create_note", "params": {}}, {"action": "dream.nightly", "params": {"note": "wiki.create_note"}},
             {"action": "session.reflection", "params": {}}]
    with open_store(db_path, daemon_id="cass") as old:
        # Written as that version wrote them (today's methods write today's columns).
        unit_id = _legacy_insert(old._conn, "units", _legacy_unit(steps))
        _legacy_insert(old._conn, "approvals", {
            "id": "a1", "unit_id": unit_id, "step_index": 1, "action_id": "dream.nightly", "status": "pending",
            "reason": "asks first", "requested_at": NOW.isoformat(), "expires_at": (NOW + timedelta(days=1)).isoformat()})
        _legacy_insert(old._conn, "plans", {"local_date": DAY.isoformat(), "created_at": NOW.isoformat(), "source": "file",
                                            "reason": "by hand", "intention": "",
                                            "data": json.dumps({"phases": {"morning": [{"steps": steps}]}})})
        assert old.schema_version == 3
    monkeypatch.undo()
    with open_store(db_path, daemon_id="cass") as upgraded:
        assert upgraded.schema_version == SCHEMA_VERSION >= 4
        migrated = upgraded.get_unit(unit_id)
        assert migrated is not None
        assert [s["action"] for s in migrated.steps] == ["memory.create_wiki_note", "journal.dream", "session.reflection"]
        # Only ids in a step's "action" are renamed, never a parameter holding the same text.
        assert migrated.steps[1]["params"] == {"note": "wiki.create_note"}
        assert [a.action_id for a in upgraded.list_approvals()] == ["journal.dream"]
        plan = upgraded.get_plan(DAY)
        assert plan is not None and [s["action"] for s in plan.data["phases"]["morning"][0]["steps"]] == [s["action"] for s in migrated.steps]


def _legacy_insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> Any:
    """Insert ``row`` into ``table`` by raw SQL, as an older schema's code did; returns its ``id`` (if any)."""
    conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    return row.get("id")


def _legacy_unit(steps: list[dict[str, Any]], unit_id: str = "u1", **overrides: Any) -> dict[str, Any]:
    return {"id": unit_id, "daemon_id": "cass", "local_date": DAY.isoformat(), "phase": "morning",
            "template_id": "reflect", "name": "Reflect", "category": "reflection", "priority": 2, "position": 0,
            "status": "queued", "steps": json.dumps(steps), "estimated_cost_usd": 0.0, "next_step": 0,
            "created_at": NOW.isoformat(), "updated_at": NOW.isoformat(), "data": "{}", **overrides}


def test_a_version_5_file_migrates_to_every_row_a_daemon_with_its_data_intact(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A store of schema 5 (one daemon per file, no daemon_id on most tables), upgraded in place to 6.
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:5])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 5)
    steps = [{"action": "session.reflection", "params": {}, "optional": False}]
    at = NOW.isoformat()
    with open_store(db_path, daemon_id="cass") as old:
        conn = old._conn
        _legacy_insert(conn, "plans", {"local_date": DAY.isoformat(), "created_at": at, "source": "llm", "reason": "r",
                                       "intention": "be curious", "data": '{"items": [1]}'})
        _legacy_insert(conn, "units", _legacy_unit(steps, "u1", status="running", started_at=at))
        _legacy_insert(conn, "units", _legacy_unit(steps, "u2", position=1))
        _legacy_insert(conn, "unit_transitions", {"unit_id": "u1", "at": at, "from_status": None, "to_status": "queued"})
        _legacy_insert(conn, "action_runs", {"key": "k1", "unit_id": "u1", "step_index": 0, "action_id": "session.reflection",
                                             "status": "completed", "started_at": at, "finished_at": at, "cost_usd": 0.25})
        for kind, amount in (("reserve", 0.5), ("settle", 0.25)):
            _legacy_insert(conn, "ledger_entries", {"budget_day": DAY.isoformat(), "category": "reflection", "kind": kind,
                                                    "amount_usd": amount, "reservation_id": "r1", "unit_id": "u1", "at": at})
        _legacy_insert(conn, "ledger_totals", {"budget_day": DAY.isoformat(), "category": "reflection",
                                               "spent_micros": 250_000, "reserved_micros": 0})
        _legacy_insert(conn, "budget_overrides", {"category": "", "budget_day": DAY.isoformat(), "from_day": DAY.isoformat(),
                                                  "amount_usd": 3.0, "set_by": "cli", "set_at": at})
        _legacy_insert(conn, "approvals", {"id": "a1", "unit_id": "u2", "step_index": 0, "action_id": "session.reflection",
                                           "status": "pending", "requested_at": at, "expires_at": at})
        _legacy_insert(conn, "events", {"at": at, "type": "day.planned", "unit_id": None, "data": '{"n": 1}'})
        _legacy_insert(conn, "summaries", {"unit_id": "u1", "slug": "reflect-1", "local_date": DAY.isoformat(),
                                           "phase": "morning", "category": "reflection", "template_id": "reflect",
                                           "status": "completed", "text": "Thought hard", "data": "{}", "created_at": at})
        _legacy_insert(conn, "transcripts", {"id": "t1", "run_key": "k1", "created_at": at, "data": "{}"})
        _legacy_insert(conn, "kv", {"namespace": "journal", "key": "last", "value": '"x"', "updated_at": at})
        _legacy_insert(conn, "state", {"key": "paused", "value": '["research"]'})
        _legacy_insert(conn, "lease", {"daemon_id": "cass", "holder": "old", "pid": 1, "hostname": "h", "acquired_at": at,
                                       "renewed_at": at, "expires_at": at})
        assert old.schema_version == 5
    monkeypatch.undo()
    with open_store(db_path, daemon_id="cass") as new:
        assert new.schema_version == SCHEMA_VERSION >= 6
        plan = new.get_plan(DAY)
        assert plan is not None and plan.intention == "be curious" and plan.data == {"items": [1]}
        assert [u.id for u in new.list_units(DAY)] == ["u1", "u2"]
        assert [t.to_status for t in new.transitions("u1")] == ["queued"]
        assert new.get_action_run("k1").cost_usd == 0.25
        assert [e.kind for e in new.ledger_entries(budget_day=DAY)] == ["reserve", "settle"]
        assert new.ledger_totals(DAY)["reflection"].spent_usd == 0.25
        assert new.budget_overrides(DAY)[None].amount_usd == 3.0
        assert [a.id for a in new.list_approvals("pending")] == ["a1"]
        assert [e.data for e in new.list_events()] == [{"n": 1}]
        assert new.get_summary_by_slug("reflect-1").text == "Thought hard"
        assert new.get_transcript("t1") is not None
        assert new.kv_get("journal", "last") == "x" and new.get_state("paused") == ["research"]
        lease = new.get_lease()
        assert lease is not None and lease.holder == "old" and lease.token == 0
        tables = [r[0] for r in new._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in set(tables) - {"meta", "sqlite_sequence"}:
            owners = {r[0] for r in new._conn.execute(f"SELECT DISTINCT daemon_id FROM {table}")}
            assert owners <= {"cass"}, table
        # The ledger is still append-only after the backfill lifted its guard for one statement.
        with pytest.raises(sqlite3.IntegrityError):
            new._conn.execute("UPDATE ledger_entries SET amount_usd = 0")
        # New rows land beside the old ones.
        new.kv_set("journal", "next", 1)
        assert new.kv_items("journal") == {"last": "x", "next": 1}
        # The foreign keys that find a missing unit (no look-up before each insert) survived the migration.
        with pytest.raises(NotFoundError, match="no work unit with id 'gone'"):
            new.begin_action_run("k9", "gone", 0, "session.reflection", NOW)
        with pytest.raises(NotFoundError, match="no work unit with id 'gone'"):
            new.request_approval("gone", 0, "session.reflection", "why", NOW, NOW)
        assert new.get_action_run("k9") is None and new.list_approvals("pending")[-1].id == "a1"


def test_every_statement_of_a_units_run_on_sqlite_finds_its_rows_through_an_index(tmp_path: Path) -> None:
    """SQLite has no statistics: an index led by the file's one daemon id looked as good as any, so a
    unit's run once scanned the whole ledger (dispatch grew with the day). Each statement the executor
    runs for a unit must search by an index on more than the daemon id, never scan a table."""
    import asyncio

    from cass_actions_core.clock import VirtualClock
    from cass_actions_core.config import Config
    from cass_actions_core.runtime import Runtime
    from support import HandPack, action_def, template_def

    async def noop(ctx: Any) -> dict[str, Any]:
        return {"summary": "nothing"}

    pack = HandPack([action_def("p.noop", tier=1, uses_llm=False, estimated_cost_usd=0, max_cost_usd=0, category="system")],
                    [template_def("noop", ["p.noop"], category="system", max_per_day=100)], handlers={"p.noop": noop})
    start = datetime(2026, 11, 26, 9, tzinfo=ZoneInfo("UTC"))
    runtime = Runtime(Config.from_dict({"timezone": "UTC", "planner": {"enabled": False}}), data_dir=tmp_path / "d",
                      clock=VirtualClock("UTC", start), plugins=[("p", pack)], entry_points=False)
    runtime.acquire_lease()
    asyncio.run(runtime.tick())  # the start-up recovery (once per process, a look at the whole ledger) is not timed here
    for _ in range(3):
        runtime.trigger("noop")
    raw = runtime.store._db.raw
    statements: list[str] = []
    raw.set_trace_callback(statements.append)
    asyncio.run(runtime.tick())
    raw.set_trace_callback(None)
    assert len(runtime.store.list_units(statuses=["completed"], template_id="noop")) >= 3
    unit_id = runtime.store.list_units()[0].id
    checked = 0
    for sql in dict.fromkeys(s for s in statements if s.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE"))):
        if "ROW_NUMBER() OVER" in sql:
            continue  # the learned-cost read: once per process, over every run by design
        details = [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + sql).fetchall()]
        checked += 1
        assert not any(d.startswith("SCAN") for d in details), (sql, details)
        assert not any(d.endswith("(daemon_id=?)") and "lease" not in d for d in details), (sql, details)
    assert checked >= 10 and unit_id
    runtime.close()
