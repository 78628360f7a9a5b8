"""The service tier: the use cases on an in-memory store (eventsourcing's POPO recorders with the event claims,
read models in an in-memory SQLite), fast enough to run on every change, like cosmicpython's tests of its handlers.
What the database itself must do (transactions, constraints, concurrent writers) is tested in tests/integration/."""

from __future__ import annotations

import pytest

from adapters.config import Settings
from adapters.eventstore import EventStore
from services.bootstrap import bootstrap
from services.ingest import Ingestor

MEMORY = "memory:"


@pytest.fixture
def store():
    store = EventStore(MEMORY)
    yield store
    store.close()


@pytest.fixture
def ingestor(store, clock):
    """The ingestor on the tests' clock (`now`): what it records and what it calls the future are the test's."""
    return Ingestor(store, clock=clock)


@pytest.fixture
def services(clock):
    """Every use case wired as `handoff serve` wires them (services/bootstrap.py), on the in-memory store."""
    services = bootstrap(Settings(database_url=MEMORY), clock=clock)
    yield services
    services.close()
