"""The session log's layout (one key per local date and an index): migration of the single-key
log, the readers, retention, what one session writes, and replay of a finished run."""

from __future__ import annotations

import copy
import json
import logging
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cass_actions_session import runner
from cass_actions_session.runner import (
    SESSION_LOG_DAYS,
    SESSION_LOG_INDEX_KEY,
    SESSION_LOG_KEY,
    SESSION_LOG_SIZE,
    finished_run,
    log_session,
    recent_sessions,
    session_log,
    sessions_between,
    sessions_on,
)
from cass_actions_session.sessions import PERIOD_DAYS

KINDS = ["session.reflection", "session.research", "session.curiosity", "session.knowledge_building",
         "session.consolidation", "session.writing"]
RESEARCH = ("session.research", "session.knowledge_building")
PADDING = "x" * 1500  # an entry carries the action's result: about 1.8 KB each


class RecordingKV:
    """A pack's key-value area in memory (JSON round trips, like the store) that records every access."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, str] = {k: json.dumps(v) for k, v in (data or {}).items()}
        self.reads: list[str] = []
        self.writes: list[tuple[str, int]] = []
        self.deletes: list[str] = []
        self.scans = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads.append(key)
        return json.loads(self.data[key]) if key in self.data else default

    def set(self, key: str, value: Any) -> None:
        text = json.dumps(value)
        self.writes.append((key, len(text)))
        self.data[key] = text

    def delete(self, key: str) -> None:
        self.deletes.append(key)
        self.data.pop(key, None)

    def items(self) -> dict[str, Any]:
        self.scans += 1
        return {k: json.loads(v) for k, v in sorted(self.data.items())}

    def value(self, key: str) -> Any:
        return json.loads(self.data[key]) if key in self.data else None

    def forget(self) -> None:
        self.reads, self.writes, self.deletes, self.scans = [], [], [], 0


def make_ctx(kv: RecordingKV, today: date, tmp_path: Path, run_key: str | None = None) -> Any:
    return SimpleNamespace(kv=kv, local_date=today, data_dir=tmp_path,
                           run_key=run_key or f"{today.isoformat()}/evening/unit0000/0",
                           logger=logging.getLogger("test.session_log"))


def entry(day: date, n: int, action_id: str | None = None) -> dict[str, Any]:
    kind = action_id or KINDS[n % len(KINDS)]
    return {"run_key": f"{day.isoformat()}/evening/unit{n:04d}/0", "local_date": day.isoformat(), "action_id": kind,
            "theme": f"theme {n}", "path": f"sessions/{day.isoformat()}/{kind.split('.')[1]}-{n:04d}.md",
            "turns": 4, "stop_reason": "turn_cap", "summary": f"summary {n}", "insights": [f"insight {n}"],
            "questions": [f"question {n}?"], "result": {"summary": f"result {n}", "data": {"padding": PADDING}}}


def history(start: date, days: int, per_day: int) -> list[dict[str, Any]]:
    """``per_day`` entries a day for ``days`` days, oldest first (what the single-key log held)."""
    return [entry(start + timedelta(days=d), d * per_day + i) for d in range(days) for i in range(per_day)]


# -- what the single-key log's readers returned (the version before this layout) ------------------

def old_log(legacy: list[Any]) -> list[dict[str, Any]]:
    return [e for e in legacy if isinstance(e, dict)]


def old_between(legacy: list[Any], since: date, until: date) -> list[dict[str, Any]]:
    return [e for e in old_log(legacy) if since.isoformat() <= str(e.get("local_date", "")) <= until.isoformat()]


def seeded(legacy: list[Any], today: date, tmp_path: Path) -> tuple[RecordingKV, Any]:
    kv = RecordingKV({SESSION_LOG_KEY: legacy, "world_state_seen": ["a", "b"]})
    return kv, make_ctx(kv, today, tmp_path)


# -- migration --------------------------------------------------------------------------------------

def test_the_single_key_log_is_split_into_day_keys_with_every_entry_kept(tmp_path):
    start, today = date(2026, 11, 23), date(2026, 12, 26)
    legacy: list[Any] = history(start, 34, 6)[-SESSION_LOG_SIZE:]  # a full log: 200 entries over 34 days
    day = date.fromisoformat(legacy[99]["local_date"])
    no_date = {**entry(day, 9001), "local_date": None}  # filed under its run key's date
    undated = {"summary": "an entry with no date at all", "insights": [], "questions": []}  # with the one before
    legacy[100:100] = ["not an entry", None, 7, no_date, undated]
    kv, ctx = seeded(copy.deepcopy(legacy), today, tmp_path)

    assert session_log(ctx) == old_log(legacy)  # every well-formed entry, in the same order
    assert kv.value(SESSION_LOG_KEY) is None  # the old key is gone
    assert kv.value("world_state_seen") == ["a", "b"]  # the pack's other keys are untouched
    index = kv.value(SESSION_LOG_INDEX_KEY)
    dates = [day for day, _counts in index]
    assert dates == sorted(dates) and len(dates) == 34
    assert sum(sum(counts.values()) for _day, counts in index) == len(old_log(legacy))
    assert {k for k in kv.data if k.startswith("session_log/")} == {SESSION_LOG_INDEX_KEY} | {f"session_log/{d}" for d in dates}
    for d in dates:  # each day key holds that day's entries, oldest first
        assert all(e.get("local_date") in (d, None) for e in kv.value(f"session_log/{d}"))
    that_day = kv.value(f"session_log/{day.isoformat()}")
    assert that_day[that_day.index(no_date) + 1] == undated

    # Idempotent: once migrated, a reader reads the index and its days, writes nothing and never scans.
    kv.forget()
    assert session_log(ctx) == old_log(legacy)
    assert kv.writes == [] and kv.deletes == [] and kv.scans == 0


def test_a_migration_cut_short_is_repeated_without_duplicates(tmp_path):
    today = date(2026, 12, 26)
    legacy = history(date(2026, 12, 1), 20, 5)
    kv, ctx = seeded(copy.deepcopy(legacy), today, tmp_path)
    session_log(ctx)
    # As if the process died after the day keys were written: the old key is still there, no index yet.
    kv.set(SESSION_LOG_KEY, copy.deepcopy(legacy))
    kv.delete(SESSION_LOG_INDEX_KEY)
    assert session_log(ctx) == legacy
    assert kv.value(SESSION_LOG_KEY) is None


def test_a_store_without_any_log_gets_an_empty_index_once(tmp_path):
    kv = RecordingKV()
    ctx = make_ctx(kv, date(2026, 12, 26), tmp_path)
    assert recent_sessions(ctx, 8) == [] and session_log(ctx) == [] and finished_run(ctx) is None
    assert kv.value(SESSION_LOG_INDEX_KEY) == [] and kv.scans == 1


def test_a_malformed_old_log_or_index_is_tolerated(tmp_path):
    kv, ctx = seeded({"not": "a list"}, date(2026, 12, 26), tmp_path)  # type: ignore[arg-type]
    assert session_log(ctx) == [] and kv.value(SESSION_LOG_KEY) is None
    kv.set(SESSION_LOG_INDEX_KEY, [["2026-12-26", {"session.reflection": 1}], "junk", ["not a date", {}]])
    kv.set("session_log/2026-12-26", [entry(date(2026, 12, 26), 1), "junk"])
    assert [e["theme"] for e in session_log(ctx)] == ["theme 1"]


# -- readers ----------------------------------------------------------------------------------------

def test_the_readers_return_what_the_single_key_log_returned(tmp_path):
    today = date(2026, 12, 26)
    legacy = history(today - timedelta(days=33), 34, 6)[-SESSION_LOG_SIZE:]
    legacy.insert(50, "junk")
    kv, ctx = seeded(copy.deepcopy(legacy), today, tmp_path)
    log = old_log(legacy)
    for n in (1, 6, 8, 12, 199, 200, 500):
        assert recent_sessions(ctx, n) == log[-n:]
        assert recent_sessions(ctx, n, RESEARCH) == [e for e in log if e["action_id"] in RESEARCH][-n:]
        assert recent_sessions(ctx, n, ["session.nothing"]) == []
    assert recent_sessions(ctx, 0) == []
    for period in PERIOD_DAYS.values():
        since = today - timedelta(days=period - 1)
        assert sessions_between(ctx, since, today) == old_between(legacy, since, today)
    assert sessions_between(ctx, date(2026, 12, 3), date(2026, 12, 9)) == old_between(legacy, date(2026, 12, 3), date(2026, 12, 9))
    assert sessions_on(ctx, today) == [e for e in log if e["local_date"] == today.isoformat()]
    assert sessions_on(ctx, "2026-12-20") == [e for e in log if e["local_date"] == "2026-12-20"]


def test_the_newest_entries_read_only_the_days_they_need(tmp_path):
    today = date(2026, 12, 26)
    kv, ctx = seeded(history(today - timedelta(days=33), 34, 6)[-SESSION_LOG_SIZE:], today, tmp_path)
    session_log(ctx)  # migrated
    kv.forget()
    assert len(recent_sessions(ctx, 8)) == 8
    assert kv.reads == [SESSION_LOG_INDEX_KEY, "session_log/2026-12-26", "session_log/2026-12-25"]
    kv.forget()
    sessions_between(ctx, date(2026, 12, 20), today)
    assert kv.reads == [SESSION_LOG_INDEX_KEY, *(f"session_log/2026-12-{d}" for d in range(20, 27))]
    # A filtered read skips the days whose index lists none of the actions.
    log_session(ctx, entry(today + timedelta(days=1), 99999, "session.reflection"))
    kv.forget()
    found = recent_sessions(ctx, 1, ["session.research"])
    assert found[0]["action_id"] == "session.research" and "session_log/2026-12-27" not in kv.reads


# -- retention --------------------------------------------------------------------------------------

def _log_days(tmp_path: Path, days: int, per_day: int) -> tuple[RecordingKV, Any, date]:
    kv = RecordingKV()
    start = date(2026, 11, 1)
    ctx = None
    for d in range(days):
        day = start + timedelta(days=d)
        ctx = make_ctx(kv, day, tmp_path)
        for i in range(per_day):
            log_session(ctx, entry(day, d * per_day + i))
    return kv, ctx, start + timedelta(days=days - 1)


def test_pruning_keeps_every_day_the_monthly_review_reads(tmp_path):
    kv, ctx, today = _log_days(tmp_path, 45, 10)  # 300 entries a month: more than SESSION_LOG_SIZE
    assert max(PERIOD_DAYS.values()) <= SESSION_LOG_DAYS
    since = today - timedelta(days=PERIOD_DAYS["monthly"] - 1)
    assert len(sessions_between(ctx, since, today)) == 30 * 10  # the whole month, not only the newest 200
    dates = [day for day, _ in kv.value(SESSION_LOG_INDEX_KEY)]
    assert dates[0] == since.isoformat() and len(dates) == SESSION_LOG_DAYS
    assert not any(k for k in kv.data if k.startswith("session_log/2026-11-0"))  # older day keys deleted


def test_pruning_keeps_at_least_the_newest_entries_the_single_key_log_kept(tmp_path):
    kv, ctx, today = _log_days(tmp_path, 150, 2)  # 200 entries reach back 100 days
    log = session_log(ctx)
    assert len(log) == SESSION_LOG_SIZE and log[0]["local_date"] == (today - timedelta(days=99)).isoformat()
    assert len([k for k in kv.data if k.startswith("session_log/")]) == 100 + 1


def test_one_day_keeps_at_most_the_log_size(tmp_path):
    kv, ctx, today = _log_days(tmp_path, 1, SESSION_LOG_SIZE + 5)
    assert len(sessions_on(ctx, today)) == SESSION_LOG_SIZE


# -- what one session writes ------------------------------------------------------------------------

def test_a_session_writes_its_day_key_and_the_index_only(tmp_path):
    kv, ctx, today = _log_days(tmp_path, 40, 6)
    total = sum(len(v) for k, v in kv.data.items() if k.startswith("session_log/"))
    kv.forget()
    new = entry(today, 77777)
    log_session(ctx, new)
    assert [k for k, _ in kv.writes] == [f"session_log/{today.isoformat()}", SESSION_LOG_INDEX_KEY]
    assert kv.reads == [SESSION_LOG_INDEX_KEY, f"session_log/{today.isoformat()}"]
    written = sum(size for _, size in kv.writes)
    assert total > 300_000 and written < 7 * 2000 + 8000 < total / 10  # one day and the index, not the history
    assert sessions_on(ctx, today)[-1] == new
    # A new day prunes the oldest day: 6 entries a day, so the newest 200 entries no longer reach back to it.
    oldest = kv.value(SESSION_LOG_INDEX_KEY)[0][0]
    kv.forget()
    log_session(make_ctx(kv, today + timedelta(days=1), tmp_path), entry(today + timedelta(days=1), 88888))
    assert kv.deletes == [f"session_log/{oldest}"]
    index = kv.value(SESSION_LOG_INDEX_KEY)
    assert len(index) > SESSION_LOG_DAYS and sum(sum(c.values()) for _, c in index) >= SESSION_LOG_SIZE


def test_logging_a_run_key_again_replaces_its_entry(tmp_path):
    kv = RecordingKV()
    today = date(2026, 12, 26)
    ctx = make_ctx(kv, today, tmp_path)
    first, second = entry(today, 1), {**entry(today, 1), "summary": "again"}
    log_session(ctx, first)
    log_session(ctx, entry(today, 2))
    log_session(ctx, second)
    assert [e["summary"] for e in session_log(ctx)] == ["summary 2", "again"]
    assert kv.value(SESSION_LOG_INDEX_KEY) == [[today.isoformat(), {"session.research": 1, "session.curiosity": 1}]]


def test_a_session_run_writes_small_values_on_a_month_of_history(demo_runtime, run_action, monkeypatch):
    from cass_actions_core.executor import StoreKV

    runtime = demo_runtime()
    today = runtime.clock.now().date()
    kv = StoreKV(runtime.store, "session")
    legacy = history(today - timedelta(days=30), 30, 6)  # 180 entries of the single-key log: ~330 KB
    runtime.store.kv_set("session", SESSION_LOG_KEY, legacy)
    writes: list[tuple[str, int]] = []
    reads: list[tuple[str, int]] = []
    real_set, real_get = runtime.store.kv_set, runtime.store.kv_get

    def spy_set(namespace, key, value, *args, **kwargs):
        if namespace == "session":
            writes.append((key, len(json.dumps(value))))
        return real_set(namespace, key, value, *args, **kwargs)

    def spy_get(namespace, key, default=None):
        value = real_get(namespace, key, default)
        if namespace == "session":
            reads.append((key, len(json.dumps(value))))
        return value

    monkeypatch.setattr(runtime.store, "kv_set", spy_set)
    monkeypatch.setattr(runtime.store, "kv_get", spy_get)
    first = run_action(runtime, "session.meta_reflection")  # the first use migrates the old log
    assert first.ok, first.error
    assert runtime.store.kv_get("session", SESSION_LOG_KEY) is None
    assert len(session_log(make_ctx(kv, today, Path(runtime.workspace)))) == len(legacy) + 1
    writes.clear()
    reads.clear()
    again = run_action(runtime, "session.meta_reflection")
    assert again.ok, again.error
    day_keys = [k for k, _ in writes if k.startswith("session_log/")]
    assert day_keys == [f"session_log/{today.isoformat()}", SESSION_LOG_INDEX_KEY]
    assert max(size for _, size in writes) < 20_000  # today's entries, not the 330 KB history
    assert sum(size for _, size in reads) < 60_000  # the index and the two newest days


# -- replay of a finished run -----------------------------------------------------------------------

def test_a_finished_run_of_a_migrated_log_is_found_by_its_run_key(tmp_path):
    today = date(2026, 12, 26)
    legacy = history(today - timedelta(days=20), 21, 6)
    done = legacy[-30]
    kv, ctx = seeded(copy.deepcopy(legacy), today, tmp_path)
    ctx.run_key = done["run_key"]
    assert finished_run(ctx) is None  # its record file is missing: not a finished run
    (tmp_path / done["path"]).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / done["path"]).write_text("# record\n", encoding="utf-8")
    kv.forget()
    assert finished_run(ctx) == done
    assert kv.reads == [SESSION_LOG_INDEX_KEY, f"session_log/{done['local_date']}"]  # one day key read
    ctx.run_key = "2026-12-26/evening/unknown/0"
    assert finished_run(ctx) is None


def test_the_day_helpers_agree_with_the_module_constants():
    assert runner.SESSION_LOG_INDEX_KEY.startswith(runner.SESSION_LOG_PREFIX)
    assert runner._as_date(runner.SESSION_LOG_INDEX_KEY[len(runner.SESSION_LOG_PREFIX):]) is None
