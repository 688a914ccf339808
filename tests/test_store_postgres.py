"""What only the PostgreSQL store has to show: many daemons in one database never see each other's rows,
connections racing for one daemon's money never overspend, durable commits need nothing more, and a
database that cannot be reached is one paragraph naming the URL without its password (the store contract
itself, shared with SQLite, is in test_store.py and test_ledger.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cass_actions_core.config import DEFAULT_ALLOCATIONS, BudgetSettings
from cass_actions_core.ledger import Blocked, BudgetLedger
from cass_actions_core.store import PostgresStore, Store, StoreError, StoreUnavailable, open_store, redact_url

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=TOKYO)
DAY = date(2026, 11, 26)
# A category with $1.00 a day: ten $0.10 grants at most.
BUDGET = BudgetSettings(daily_usd=10.0, reserve_fraction=0.0, allocations={**{c: 0.0 for c in DEFAULT_ALLOCATIONS},
                                                                      "reflection": 0.1})


@pytest.fixture
def url(pg_schema_url: str) -> str:
    """A fresh schema of its own on the session's PostgreSQL server."""
    return pg_schema_url


@pytest.fixture
def two(url: str) -> Iterator[tuple[Store, Store]]:
    """Two daemons' stores in one database."""
    with open_store(url, "alpha") as a, open_store(url, "beta") as b:
        yield a, b


def _fill(store: Store, tag: str) -> str:
    unit = store.insert_unit(local_date=DAY, phase="morning", template_id=f"t-{tag}", name=tag, category="reflection",
                             steps=[{"action": "session.reflection"}], now=NOW, status="queued")
    store.set_unit_status(unit.id, "running", reason=None, now=NOW)
    store.begin_action_run(f"run-{tag}", unit.id, 0, "session.reflection", NOW)
    store.finish_action_run(f"run-{tag}", "completed", 0.1, {"tag": tag}, None, NOW + timedelta(minutes=2))
    store.save_plan(DAY, "llm", tag, tag, {"tag": tag}, NOW)
    store.append_ledger_entry(budget_day=DAY, category="reflection", kind="reserve", amount_usd=0.5,
                              reservation_id=f"r-{tag}", now=NOW, unit_id=unit.id)
    store.add_budget_override(category=None, budget_day=DAY, from_day=DAY, amount_usd=3.0, by=tag, now=NOW)
    store.request_approval(unit.id, 0, "session.reflection", tag, NOW, NOW + timedelta(hours=1))
    store.append_event("day.planned", {"tag": tag}, NOW, unit_id=unit.id)
    store.save_summary(unit_id=unit.id, slug="same-slug", local_date=DAY, phase="morning", category="reflection",
                       template_id=f"t-{tag}", status="completed", text=f"text {tag}", data={}, now=NOW)
    store.save_transcript({"tag": tag}, f"run-{tag}", NOW)
    store.kv_set("pack", "key", tag, NOW)
    store.set_state("paused", [tag])
    store.acquire_lease(f"holder-{tag}", NOW, timedelta(minutes=5))
    return unit.id


def test_two_daemons_in_one_database_never_see_each_others_rows(two: tuple[Store, Store]) -> None:
    a, b = two
    unit_a, unit_b = _fill(a, "a"), _fill(b, "b")  # the same slug, kv key, state key and plan date in both
    for store, mine, other, tag in ((a, unit_a, unit_b, "a"), (b, unit_b, unit_a, "b")):
        assert [u.id for u in store.list_units()] == [mine]
        assert store.get_unit(other) is None and store.find_units(other[:6]) == []
        assert [q.id for q in store.unit_briefs()] == []
        assert store.get_action_run(f"run-{'b' if tag == 'a' else 'a'}") is None
        assert list(store.recent_action_runs(5)) == ["session.reflection"]
        assert set(store.template_activity(DAY)[0]) == {f"t-{tag}"}
        assert store.get_plan(DAY).data == {"tag": tag}
        assert {e.reservation_id for e in store.ledger_entries()} == {f"r-{tag}"}
        assert store.ledger_totals(DAY)["reflection"].reserved_usd == 0.5
        assert store.open_reservation_ids() == [f"r-{tag}"]
        assert [o.set_by for o in store.budget_override_history()] == [tag]
        assert [p.unit_id for p in store.list_approvals()] == [mine]
        assert [e.data for e in store.list_events()] == [{"tag": tag}]
        assert store.last_event_id() == store.list_events()[0].id
        assert store.get_summary_by_slug("same-slug").text == f"text {tag}"
        assert [s.unit_id for s in store.query_summaries(text="TEXT")] == [mine]
        assert store.kv_items("pack") == {"key": tag} and store.get_state("paused") == [tag]
        assert store.get_lease().holder == f"holder-{tag}"
        assert [t.to_status for t in store.transitions(other)] == []
    # Ids are global: a unit of another daemon cannot be touched through this one.
    with pytest.raises(StoreError):
        a.set_unit_status(unit_b, "completed", reason=None, now=NOW)
    with pytest.raises(StoreError):
        a.begin_action_run("k", unit_b, 0, "x.y", NOW)
    assert a.prune(NOW + timedelta(days=1), NOW + timedelta(days=1)) == {"events": 1, "transcripts": 1}
    assert len(b.list_events()) == 1
    assert a.registered_daemons() == ["alpha", "beta"]


def test_connections_racing_for_one_daemons_money_never_overspend(url: str) -> None:
    open_store(url, "racer").close()
    grants: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)
    lock = threading.Lock()

    def worker() -> None:
        try:
            with open_store(url, "racer") as own:
                ledger = BudgetLedger(own, BUDGET)
                start.wait()
                while not isinstance(result := ledger.reserve("reflection", 0.1, budget_day=DAY, now=NOW), Blocked):
                    with lock:
                        grants.append(result.id)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(grants) == len(set(grants)) == 10
    with open_store(url, "racer") as s:
        assert BudgetLedger(s, BUDGET).committed("reflection", budget_day=DAY) == pytest.approx(1.0)


def test_a_durable_transaction_commits_like_any_other(url: str) -> None:
    with open_store(url, "cass") as store:
        with store.transaction(durable=True):
            store.kv_set("n", "k", 1)
            with store.transaction(durable=True):
                store.kv_set("n", "j", 2)
    with open_store(url, "cass") as again:
        assert again.kv_items("n") == {"j": 2, "k": 1}


def test_a_failed_statement_in_a_savepoint_leaves_the_transaction_usable(url: str) -> None:
    import psycopg

    with open_store(url, "cass") as store:
        with store.transaction():
            store.kv_set("n", "before", 1)
            with pytest.raises(psycopg.IntegrityError), store.transaction(savepoint=True):
                store._x("INSERT INTO kv (daemon_id, namespace, key, value, updated_at) VALUES ('cass', 'n', 'before', '1', 'x')")
            store.kv_set("n", "after", 2)
        assert store.kv_items("n") == {"after": 2, "before": 1}


def test_opening_an_unreachable_database_names_the_url_without_its_password() -> None:
    url = "postgresql://cass:s3cret@127.0.0.1:1/cass"
    with pytest.raises(StoreUnavailable) as raised:
        open_store(url, "cass")
    message = str(raised.value)
    assert "postgresql://cass:***@127.0.0.1:1/cass" in message and "s3cret" not in message
    assert "store.url" in message and "\n" not in message
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_the_cli_reports_an_unreachable_store_url_in_one_paragraph(tmp_path: Path) -> None:
    env = {"CASS_ACTIONS_STORE_URL": "postgresql://cass:s3cret@127.0.0.1:1/cass", "PATH": "/usr/bin:/bin",
           "CASS_ACTIONS_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "cass_actions_core.cli.main", "status"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr and "s3cret" not in out.stderr
    assert out.stderr.startswith("Error: postgresql://cass:***@127.0.0.1:1/cass: cannot connect to the PostgreSQL store")
    assert len(out.stderr.strip().splitlines()) == 1


def test_the_store_class_reports_its_backend(url: str) -> None:
    with open_store(url, "cass") as store:
        assert isinstance(store, PostgresStore) and "cass" in repr(store)
        assert store.schema_version >= 6


def test_a_database_holding_another_programs_tables_is_refused_with_the_url(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as other:
        other.execute("CREATE TABLE units (x integer)")
    with pytest.raises(StoreError, match="cannot set up the cass-actions schema") as raised:
        open_store(url, "cass")
    assert url.split("?")[0] in str(raised.value)
    with psycopg.connect(url, autocommit=True) as other:  # the failed migration left nothing behind
        tables = {r[0] for r in other.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    assert tables == {"units"}
