"""Shared fixtures: the store on each backend (SQLite file; a real throwaway PostgreSQL server), and the tests' "now"
(tests/clock.py)."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from tests.clock import NOW_VARIABLE, Clock, configured_now, faketime_env
from tests.postgres_server import PostgresServer, PostgresUnavailable


def pytest_configure(config):
    # Registered here, not in pyproject.toml, beside the fixtures it goes with.
    config.addinivalue_line(
        "markers", "clock: the outcome depends on \"now\": the test takes the `now` fixture (HANDOFF_TEST_NOW, "
                   "default 2026-12-03T10:00+08:00); tests/run_at_dates.sh runs these at several fixed dates")
    try:
        configured_now()
    except ValueError as error:  # a bad HANDOFF_TEST_NOW stops the run at once, not each test in turn
        raise pytest.UsageError(str(error)) from None


# The fixtures that carry the tests' "now". A test that uses one, itself or through another fixture, sees the time
# of HANDOFF_TEST_NOW: it is a `clock` test even where its mark was forgotten, so that the runs at other dates
# (tests/run_at_dates.sh) include it.
CLOCK_FIXTURES = frozenset({"now", "clock", "faketime"})


@pytest.hookimpl(tryfirst=True)  # before `-m clock` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if CLOCK_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("clock") is None:
            item.add_marker(pytest.mark.clock)


def pytest_report_header(config):
    source = f"{NOW_VARIABLE}" if os.environ.get(NOW_VARIABLE, "").strip() else "default"
    return f"handoff tests' now: {configured_now().isoformat()} ({source})"


@pytest.fixture(scope="session")
def now() -> dt.datetime:
    """The tests' "now" (aware, +08:00): what the services' clock and the `handoff` subprocesses are given."""
    return configured_now()


@pytest.fixture
def clock(now) -> Clock:
    """A clock at `now` that the test may move, to inject as `clock=`."""
    return Clock(now)


@pytest.fixture(scope="session")
def faketime(now) -> dict[str, str]:
    """Environment variables that start a subprocess's clock at `now` (libfaketime); merge them over os.environ."""
    return faketime_env(now)


@pytest.fixture(scope="session")
def postgres_server():
    if os.environ.get("HANDOFF_SKIP_POSTGRES") == "1":
        pytest.skip("HANDOFF_SKIP_POSTGRES=1")
    try:
        server = PostgresServer()
        server.start()
    except PostgresUnavailable as error:
        # Not skipped: CI installs PostgreSQL, and the same tests must pass on it.
        pytest.fail(f"{error} (or set HANDOFF_SKIP_POSTGRES=1 to skip PostgreSQL tests locally)")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """The URL of an empty event store, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/handoff.sqlite3"
    else:
        server = request.getfixturevalue("postgres_server")
        with server.database() as url:
            yield url
