"""Ingest, the use case: what is accepted, what is a duplicate or a conflict, who may retract what, and that every
refusal is kept as a dead letter. On the in-memory store (tests/service/conftest.py): the decisions are the domain's
(Person.admit) and the ingestor's; the database's own part is tested in tests/integration/test_ingest.py."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest

from adapters.eventstore import EventStore
from domain.authorisation import PublisherIdentity
from domain.catalog import AgencyKind
from domain.person import Person
from services.history import person_history
from services.ingest import FUTURE_TOLERANCE, Ingestor, Source
from tests.builders import CST, agency, decision, envelope, id_number

OPERATOR = Source("test")


def stored_events(store: EventStore, id_number_: str) -> list:
    person = store.person(id_number_)
    return person.events if person else []


def dead_letters(store: EventStore) -> list:
    return list(store.dead_letters(limit=10_000))


@pytest.mark.clock
def test_accepted_event_is_stored_with_times_publisher_and_payload(store, ingestor, now):
    event = decision(id_number(1))
    result = ingestor.ingest([event], OPERATOR)
    assert [item.status for item in result.items] == ["accepted"]

    [stored] = stored_events(store, id_number(1))
    assert stored.event_id == event["event_id"]
    assert stored.occurred_at == "2024-03-01T10:00:00+08:00"
    assert dt.datetime.fromisoformat(stored.recorded_at) == now  # recorded at the ingestor's clock
    assert stored.agency == agency("court")
    assert stored.payload == event["payload"]
    assert store.person(id_number(1)).id == Person.create_id(id_number(1))


def test_duplicate_is_harmless_within_and_across_batches(store, ingestor):
    event = decision(id_number(1))
    first = ingestor.ingest([event, copy.deepcopy(event)], OPERATOR)
    second = ingestor.ingest([json.dumps(event).encode()], OPERATOR)
    assert [item.status for item in first.items] == ["accepted", "duplicate"]
    assert [item.status for item in second.items] == ["duplicate"]
    assert len(stored_events(store, id_number(1))) == 1
    assert dead_letters(store) == []


def test_same_id_different_content_is_a_conflict_even_for_another_person(store, ingestor):
    event = decision(id_number(1))
    changed = copy.deepcopy(event)
    changed["payload"]["document_no"] = "另一个文号"
    other_person = copy.deepcopy(event)
    other_person["person"]["id_number"] = id_number(2)
    ingestor.ingest([event], OPERATOR)
    result = ingestor.ingest([changed, other_person], OPERATOR)
    assert [(item.status, item.code) for item in result.items] == [("rejected", "conflict"), ("rejected", "conflict")]
    assert len(stored_events(store, id_number(1))) == 1
    assert store.person(id_number(2)) is None
    assert [letter.code for letter in dead_letters(store)] == ["conflict", "conflict"]


def test_a_batch_with_bad_items_stores_the_good_and_dead_letters_the_bad(store, ingestor):
    person = id_number(3)
    good1 = decision(person)
    good2 = envelope("bureau_notified", {"execution_region": "520222"}, person=person)
    bad_payload = envelope("subject_reported", {"region": "5202"}, kind="bureau", person=person)
    wrong_publisher = envelope("subject_enrolled", {"region": "520222"}, kind="court", person=person)
    items = [good1, b"\x00not json", bad_payload, good2, wrong_publisher, "[1, 2]"]

    result = ingestor.ingest(items, OPERATOR, positions=[f"line {i}" for i in range(1, 7)])

    assert [item.status for item in result.items] == ["accepted", "rejected", "rejected", "accepted", "rejected", "rejected"]
    assert {e.event_id for e in stored_events(store, person)} == {good1["event_id"], good2["event_id"]}
    letters = dead_letters(store)
    assert [(letter.position, letter.code) for letter in letters] == [
        ("line 2", "malformed"), ("line 3", "invalid_payload"), ("line 5", "forbidden_event_type"), ("line 6", "malformed"),
    ]
    assert letters[0].raw == "\x00not json"
    assert json.loads(letters[1].raw) == bad_payload
    assert "payload.region" in letters[1].reason
    assert letters[2].event_id == wrong_publisher["event_id"]
    assert all(letter.source == "test" and letter.received_at for letter in letters)


def test_undecodable_bytes_are_kept_as_base64(store, ingestor):
    ingestor.ingest([b"\xff\xfe\xfd"], OPERATOR)
    [letter] = dead_letters(store)
    assert letter.raw == "base64://79"
    assert letter.raw_bytes == 3


def test_retraction_only_by_the_original_publisher(store, ingestor):
    person = id_number(4)
    original = envelope("subject_reported", {"region": "520222"}, kind="bureau", person=person)
    by_other_bureau = envelope(
        "event_retracted", {"retracted_event_id": original["event_id"], "reason": "录入错误"}, kind="bureau",
        person=person, region="520221",
    )
    by_publisher = envelope(
        "event_retracted", {"retracted_event_id": original["event_id"], "reason": "录入错误"}, kind="bureau",
        person=person,
    )
    again = envelope(
        "event_retracted", {"retracted_event_id": original["event_id"], "reason": "again"}, kind="bureau", person=person,
    )
    result = ingestor.ingest([original, by_other_bureau, by_publisher, again], OPERATOR)
    assert [(item.status, item.code) for item in result.items] == [
        ("accepted", None), ("rejected", "retraction_refused"), ("accepted", None), ("rejected", "retraction_refused"),
    ]
    history = person_history(store, person)
    assert history[0]["retracted_by"] == by_publisher["event_id"]


def test_a_retraction_received_before_its_target_is_kept_and_voids_it_when_it_arrives(store, ingestor):
    """The police retract a wrongful detention, and the two messages cross: the retraction is accepted and waits;
    when the detention arrives, it is void (domain.md, "Same instant")."""
    person = id_number(9)
    detention = envelope("detention_started", {"detention_kind": "administrative"}, kind="police", person=person,
                         occurred_at=dt.datetime(2024, 3, 2, 9, tzinfo=CST))
    undo = envelope("event_retracted", {"retracted_event_id": detention["event_id"], "reason": "抓错人"},
                    kind="police", person=person, occurred_at=dt.datetime(2024, 3, 2, 11, tzinfo=CST))
    assert [i.status for i in ingestor.ingest([undo], OPERATOR).items] == ["accepted"]
    assert [i.status for i in ingestor.ingest([detention], OPERATOR).items] == ["accepted"]
    history = person_history(store, person)
    assert {e["event_id"]: e["retracted_by"] for e in history}[detention["event_id"]] == undo["event_id"]
    assert dead_letters(store) == []


def test_a_waiting_retraction_by_another_agency_is_refused_visibly_when_its_target_arrives(store, ingestor):
    person = id_number(10)
    detention = envelope("detention_started", {"detention_kind": "administrative"}, kind="police", person=person)
    by_bureau = envelope("event_retracted", {"retracted_event_id": detention["event_id"], "reason": "x"},
                         kind="bureau", person=person)
    ingestor.ingest([by_bureau], OPERATOR)
    [item] = ingestor.ingest([detention], OPERATOR).items
    assert item.status == "accepted"  # the detention stands ...
    assert all(e["retracted_by"] is None for e in person_history(store, person))
    [letter] = dead_letters(store)  # ... and the retraction's refusal is kept where the bureau can see it
    assert (letter.code, letter.event_id) == ("retraction_refused", by_bureau["event_id"])
    assert "only the original publisher" in letter.reason and detention["event_id"] in letter.raw


@pytest.mark.parametrize("publisher_first", [True, False])
def test_retractions_by_two_agencies_waiting_for_the_same_target_end_alike_in_either_order(store, ingestor,
                                                                                        publisher_first):
    """Found by the arrival-order property test: a wrong agency's retraction that arrived first must not keep the
    publisher's own from being stored."""
    person = id_number(11)
    discharged = envelope("discharged", {"certificate_no": "JJ1"}, kind="bureau", person=person)
    by_bureau = envelope("event_retracted", {"retracted_event_id": discharged["event_id"], "reason": "录入错误"},
                         kind="bureau", person=person)
    by_court = envelope("event_retracted", {"retracted_event_id": discharged["event_id"], "reason": "录入错误"},
                        kind="court", person=person)
    for item in ([by_bureau, by_court] if publisher_first else [by_court, by_bureau]):
        assert [i.status for i in ingestor.ingest([item], OPERATOR).items] == ["accepted"]
    assert [i.status for i in ingestor.ingest([discharged], OPERATOR).items] == ["accepted"]
    retracted = {e["event_id"]: e["retracted_by"] for e in person_history(store, person)}
    assert retracted[discharged["event_id"]] == by_bureau["event_id"]
    [letter] = dead_letters(store)
    assert (letter.code, letter.event_id) == ("retraction_refused", by_court["event_id"])


def test_retraction_rules_hold_across_batches_and_workers(store):
    """Ingest decides retractions from the store's event claims, not from memory: each batch here goes through a
    fresh Ingestor, so every check reads what earlier batches stored."""
    person, other_person = id_number(20), id_number(21)
    original = envelope("subject_reported", {"region": "520222"}, kind="bureau", person=person)
    others_event = envelope("subject_reported", {"region": "520222"}, kind="bureau", person=other_person)
    assert [i.status for i in Ingestor(store).ingest([original, others_event], OPERATOR).items] == ["accepted"] * 2

    def retract(target_id, **kwargs):
        return envelope("event_retracted", {"retracted_event_id": target_id, "reason": "录入错误"},
                        kind="bureau", person=person, **kwargs)

    def outcome(item):
        [result] = Ingestor(store).ingest([item], OPERATOR).items
        return result.status, result.code, result.reason

    status, code, reason = outcome(retract(original["event_id"], region="520221"))
    assert (status, code) == ("rejected", "retraction_refused") and "only the original publisher" in reason
    status, code, reason = outcome(retract(others_event["event_id"]))
    assert (status, code) == ("rejected", "retraction_refused") and "on record for another person" in reason
    first = retract(original["event_id"])
    assert outcome(first)[:2] == ("accepted", None)
    status, code, reason = outcome(retract(original["event_id"]))
    assert (status, code) == ("rejected", "retraction_refused") and f"already retracted by {first['event_id']}" in reason
    status, code, reason = outcome(retract(first["event_id"]))
    assert (status, code) == ("rejected", "retraction_refused") and "cannot be retracted" in reason
    assert [e.event_type for e in stored_events(store, person)] == ["subject_reported", "event_retracted"]
    assert len(dead_letters(store)) == 4


def test_an_authenticated_publisher_publishes_only_as_itself(store, ingestor):
    court = Source("http", publisher=PublisherIdentity(kind=AgencyKind.COURT, id="FY-520222", region="520222"))
    as_itself = decision(id_number(5))
    as_another_court = decision(id_number(5), region="520221")
    as_bureau = envelope("subject_reported", {"region": "520222"}, kind="bureau", person=id_number(5))
    result = ingestor.ingest([as_itself, as_another_court, as_bureau], court)
    assert [(item.status, item.code) for item in result.items] == [
        ("accepted", None), ("rejected", "not_as_itself"), ("rejected", "not_as_itself"),
    ]


def test_recorded_at_only_when_importing(store, ingestor):
    legacy = decision(id_number(6), recorded_at="2024-03-05T09:00:00+08:00")
    [refused] = ingestor.ingest([legacy], OPERATOR).items
    assert refused.code == "recorded_at_not_allowed"
    [imported] = ingestor.ingest([legacy], Source("import", allow_recorded_at=True)).items
    assert imported.status == "accepted"
    [stored] = stored_events(store, id_number(6))
    assert stored.recorded_at == "2024-03-05T09:00:00+08:00"


@pytest.mark.clock
def test_events_from_the_future_are_refused(store, ingestor, now):
    """The future is the ingestor's clock's (give or take FUTURE_TOLERANCE for the publishers' clocks), not the
    machine's: at a `now` ahead of the real date, an event of a minute ago is accepted."""
    future = decision(id_number(7))
    future["occurred_at"] = (now + dt.timedelta(days=2)).isoformat()
    [item] = ingestor.ingest([future], OPERATOR).items
    assert (item.status, item.code) == ("rejected", "invalid_envelope")
    assert "future" in item.reason

    just_beyond = decision(id_number(12))
    just_beyond["occurred_at"] = (now + FUTURE_TOLERANCE + dt.timedelta(minutes=1)).isoformat()
    within = decision(id_number(10))
    within["occurred_at"] = (now + FUTURE_TOLERANCE - dt.timedelta(minutes=1)).isoformat()
    a_minute_ago = decision(id_number(11))
    a_minute_ago["occurred_at"] = (now - dt.timedelta(minutes=1)).isoformat()
    items = ingestor.ingest([just_beyond, within, a_minute_ago], OPERATOR).items
    assert [item.status for item in items] == ["rejected", "accepted", "accepted"]


def test_history_is_in_occurred_at_order_whatever_the_arrival_order(store, ingestor):
    person = id_number(8)
    late = envelope("subject_enrolled", {"region": "520222"}, kind="bureau", person=person,
                    occurred_at=dt.datetime(2024, 3, 8, 9, tzinfo=CST))
    early = decision(person)
    middle = envelope("subject_reported", {"region": "520222"}, kind="bureau", person=person,
                      occurred_at=dt.datetime(2024, 3, 4, 1, tzinfo=dt.timezone.utc))
    ingestor.ingest([late], OPERATOR)
    ingestor.ingest([middle, early], OPERATOR)
    history = person_history(store, person)
    assert [event["event_type"] for event in history] == ["decision_effective", "subject_reported", "subject_enrolled"]
