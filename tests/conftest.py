"""Shared fixtures for the core tests (helpers live in ``support.py``).

The store contract: a test that takes ``store_location`` (or a fixture built on it, such as the
``store`` fixtures of test_store.py and test_ledger.py) runs once on a SQLite file and once on
PostgreSQL, in a schema of its own. The PostgreSQL server is ``$CASS_ACTIONS_TEST_PG_URL``, else a
private one started from the machine's PostgreSQL binaries for the session (``pg_server.py``). Without
binaries the PostgreSQL cases skip, except in CI (``CI`` set), where they fail. A test marked
``sqlite_only`` (file, PRAGMA and corruption tests) runs on SQLite alone.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import pg_server

#: The environment variable naming an existing PostgreSQL server for the store tests.
TEST_PG_URL_ENV = "CASS_ACTIONS_TEST_PG_URL"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests marked ``sqlite_only`` on the SQLite backend only (deselected, not skipped, on PostgreSQL)."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_pg = callspec is not None and callspec.params.get("store_location") == "postgres"
        (drop if on_pg and item.get_closest_marker("sqlite_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL server's URL for the session (an existing one, or a private one stopped at the end)."""
    url = os.environ.get(TEST_PG_URL_ENV)
    if url:
        yield url
        return
    pg_bin = pg_server.find_bin()
    if pg_bin is None:
        why = (f"no PostgreSQL server: neither ${TEST_PG_URL_ENV} nor PostgreSQL's initdb and pg_ctl "
               "(/usr/lib/postgresql/*/bin or PATH) are available")
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL store tests, but there is {why}.")
        pytest.skip(f"PostgreSQL store tests skipped: {why}.")
    try:
        server = pg_server.start(pg_bin)
    except (RuntimeError, OSError, LookupError) as exc:
        pytest.fail(f"could not start a private PostgreSQL server from {pg_bin}: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """The URL of a fresh, empty schema of its own on the session's server (dropped afterwards)."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's store lives: a new SQLite file, or a new PostgreSQL schema (the store contract)."""
    if request.param == "sqlite":
        return tmp_path / "store" / "cass.db"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture(scope="session")
def validation_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One validation cache folder for the test session (never the user's own)."""
    return tmp_path_factory.mktemp("validation-cache")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, validation_cache: Path) -> Path:
    """No ambient cass-actions or Anthropic settings; a throwaway data dir."""
    for var in list(os.environ):
        if var.startswith("CASS_ACTIONS_") or var.startswith("ANTHROPIC_"):
            monkeypatch.delenv(var, raising=False)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("CASS_ACTIONS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CASS_ACTIONS_CACHE_DIR", str(validation_cache))
    return data_dir


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An empty folder to put fake installed distributions in (see ``support.make_dist``)."""
    path = tmp_path / "site"
    path.mkdir()
    return path
