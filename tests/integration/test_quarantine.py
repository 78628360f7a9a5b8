"""A person whose events the fold cannot process is quarantined; the projection goes on for everyone else.

The poison here is what issue #14 found: a `term_changed` to 9999-12-31 (R15's due time overflows). Ingest refuses
such dates now, so the event is appended below ingest, as a store written before that check would hold it."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest
from fastapi.testclient import TestClient

from adapters.config import Settings
from domain.person import EventClaim, Person, RecordedEvent
from projections.supervision import Unfoldable
from services.entrypoints.http.api import create_app
from services.bootstrap import bootstrap
from services.ingest import Source
from tests.builders import decision, id_number

NOW = dt.datetime(2026, 12, 3, 10, tzinfo=dt.timezone(dt.timedelta(hours=8)))
HEALTHY, POISONED = id_number(11), id_number(12)


@pytest.fixture
def services(database_url):
    services = bootstrap(Settings(database_url=database_url), clock=lambda: NOW)
    yield services
    services.close()


def store_poison(services, person: str) -> str:
    """A term_changed to the year 9999, stored without ingest's checks (as in a store older than them)."""
    stream_id = Person.create_id(person)
    version = services.store.stream_versions([stream_id])[stream_id]
    event_id = str(uuid.uuid4())
    recorded = RecordedEvent(
        event_id=event_id, event_type="term_changed", schema_version=1,
        agency={"kind": "court", "id": "FY-520222", "region": "520222"},
        person={"id_number": person, "name": "张三"}, occurred_at="2025-01-10T10:00:00+08:00",
        recorded_at="2025-01-10T10:00:00+08:00", case_ref=None,
        payload={"new_term_end": "9999-12-31", "reason": "减刑"}, content_hash="0" * 64, source="legacy",
        ingested_at="2025-01-10T10:00:00+08:00")
    services.store.append([], events=[Person.recorded_event(stream_id, version + 1, recorded)],
                          claims=[EventClaim.of(recorded, stream_id)])
    return event_id


@pytest.fixture
def poisoned(services):
    result = services.ingestor.ingest([decision(HEALTHY, start=dt.date(2024, 3, 1)),
                                       decision(POISONED, start=dt.date(2024, 3, 1))], Source("test"))
    assert result.accepted == 2
    store_poison(services, POISONED)
    return services


def test_the_projection_goes_on_and_quarantines_only_the_poisoned_person(poisoned, caplog, monkeypatch):
    monkeypatch.setattr("projections.supervision._alerted", set())  # as in a new process
    with caplog.at_level(logging.ERROR, logger="projections.supervision"):
        poisoned.projection.catch_up()
        poisoned.queries.gaps(as_of=NOW)  # folds the person again: alerted once, not per fold
    alerts = [r for r in caplog.records if "ALERT" in r.getMessage() and "quarantined" in r.getMessage()]
    assert len(alerts) == 1
    assert POISONED not in caplog.text  # the alert names the stream, never the ID number
    gaps = poisoned.queries.gaps(state="all")
    assert {g["id_number"] for g in gaps} == {HEALTHY}
    [county] = poisoned.queries.stats()
    assert county["region"] == "520222"
    [quarantined] = poisoned.queries.quarantined()
    assert quarantined.id_number == POISONED and quarantined.problem.startswith("OverflowError")
    with pytest.raises(Unfoldable):
        poisoned.queries.status(POISONED)
    assert poisoned.queries.status(HEALTHY)["status"] == "awaiting_report"


def test_past_questions_and_replays_leave_the_quarantined_person_out(poisoned):
    poisoned.projection.catch_up()  # the poison was stored behind the projector's back (by another process)
    as_of = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
    assert {g["id_number"] for g in poisoned.queries.gaps(as_of=as_of, state="all")} == {HEALTHY}
    assert poisoned.queries.stats(as_of=as_of)[0]["region"] == "520222"
    replayed = poisoned.replay.replay(NOW, state="all")
    assert {g["id_number"] for g in replayed["gaps"]} == {HEALTHY}


def test_a_rebuild_quarantines_the_same_person(poisoned):
    poisoned.projection.catch_up()
    live = poisoned.read_model.dump()
    poisoned.projection.rebuild()
    assert poisoned.read_model.dump() == live
    assert [row.id_number for row in poisoned.read_model.quarantined()] == [POISONED]


def test_auditors_see_the_quarantine_and_nobody_gets_a_500(poisoned):
    auditor = poisoned.principals.add("auditor", "审计员")[1]
    oversight = poisoned.principals.add("oversight", "监督员", region="5202")[1]
    poisoned.projection.catch_up()  # health reports what the projection found; it never folds itself
    with TestClient(create_app(poisoned)) as client:
        assert client.get("/health").json()["quarantined_persons"] == 1
        as_auditor = {"Authorization": f"Bearer {auditor}"}
        listed = client.get("/v1/quarantine", headers=as_auditor).json()["items"]
        assert [item["id_number"] for item in listed] == [POISONED]
        answer = client.get(f"/v1/persons/{POISONED}", headers=as_auditor)
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "quarantined"
        as_oversight = {"Authorization": f"Bearer {oversight}"}
        assert client.get(f"/v1/persons/{POISONED}", headers=as_oversight).status_code == 404
        assert client.get("/v1/quarantine", headers=as_oversight).status_code == 403
        for path in ("/v1/gaps", "/v1/stats", "/v1/upcoming", "/v1/gaps?as_of=2025-06-01",
                     "/v1/stats?as_of=2025-06-01", "/", "/gaps", f"/persons/{POISONED}"):
            response = client.get(path, headers=as_oversight)
            assert response.status_code < 500, (path, response.status_code, response.text[:200])
