"""Shared fixtures: the store on each backend (SQLite file; a real throwaway PostgreSQL server)."""

from __future__ import annotations

import os

import pytest

from tests.postgres_server import PostgresServer, PostgresUnavailable


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
