"""The Person aggregate: a person's stream of accepted events, and retraction only by the original publisher."""

from __future__ import annotations

import uuid

import pytest

from domain.errors import Rejected, RejectionCode
from domain.identity import person_stream_id
from domain.person import Person, RecordedEvent

from .factories import AGENCIES, ID_NUMBER, VALID_PAYLOADS

BUREAU = AGENCIES["bureau"]
OTHER_BUREAU = {**BUREAU, "id": "SFJ-520222-02"}
COURT = AGENCIES["court"]


def recorded(event_type="warning_issued", agency=BUREAU, payload=None, event_id=None) -> RecordedEvent:
    return RecordedEvent(
        event_id=event_id or str(uuid.uuid4()),
        event_type=event_type,
        schema_version=1,
        agency=dict(agency),
        person={"id_number": ID_NUMBER, "name": "张三"},
        occurred_at="2024-03-01T10:00:00+08:00",
        recorded_at="2024-03-01T10:00:05+08:00",
        case_ref=None,
        payload=dict(VALID_PAYLOADS[event_type] if payload is None else payload),
        content_hash="0" * 64,
        source="test",
    )


def retraction(of: RecordedEvent | str, agency=BUREAU) -> RecordedEvent:
    target = of if isinstance(of, str) else of.event_id
    return recorded("event_retracted", agency, {"retracted_event_id": target, "reason": "录入错误"})


def reconstruct(person: Person) -> Person:
    """The aggregate rebuilt from its (collected, pending) events, as the event store would."""
    copy = None
    for domain_event in person.collect_events():
        copy = domain_event.mutate(copy)
    return copy


@pytest.fixture
def person() -> Person:
    return Person(ID_NUMBER)


def test_new_person(person):
    assert person.id == person_stream_id(ID_NUMBER) == Person.create_id(ID_NUMBER)
    assert person.id_number == ID_NUMBER
    assert person.events == []
    assert person.retracted == {}


def test_record_and_find(person):
    warning = recorded()
    enrolled = recorded("subject_enrolled")
    person.record(warning)
    person.record(enrolled)
    assert person.events == [warning, enrolled]
    assert person.find(warning.event_id) == warning
    assert person.find(enrolled.event_id).event_type == "subject_enrolled"
    assert person.find(str(uuid.uuid4())) is None
    assert warning.publisher == ("bureau", BUREAU["id"])


def test_retraction_by_the_original_publisher_is_accepted(person):
    warning = recorded()
    person.record(warning)
    undo = retraction(warning)
    person.record(undo)
    assert person.retracted == {warning.event_id: undo.event_id}
    assert person.find(warning.event_id) == warning  # retracted, never deleted
    assert len(person.events) == 2


def test_retraction_from_another_region_of_the_same_agency_is_accepted(person):
    # An agency is its kind and id; its region is not part of who it is.
    warning = recorded()
    person.record(warning)
    person.record(retraction(warning, {**BUREAU, "region": "520221"}))
    assert warning.event_id in person.retracted


@pytest.mark.parametrize(
    "retracting_agency",
    [OTHER_BUREAU, COURT, {**COURT, "id": BUREAU["id"]}],
    ids=["same-kind-other-id", "other-kind", "other-kind-same-id"],
)
def test_retraction_by_another_agency_is_refused(person, retracting_agency):
    warning = recorded()
    person.record(warning)
    with pytest.raises(Rejected) as info:
        person.record(retraction(warning, retracting_agency))
    assert info.value.code == RejectionCode.RETRACTION_REFUSED
    assert "original publisher" in info.value.reason
    assert person.retracted == {}
    assert len(person.events) == 1


def test_a_retraction_received_before_its_target_waits_for_it_and_then_takes_effect(person):
    """The two messages crossed: the publisher's retraction arrived first. It is kept, and the target, when it
    arrives, is retracted (domain.md, "Same instant": a retraction that arrives before its target waits for it)."""
    detention = recorded("detention_started", AGENCIES["police"])
    undo = retraction(detention, AGENCIES["police"])
    person.record(undo)
    assert person.retracted == {}
    person.record(detention)
    assert person.retracted == {detention.event_id: undo.event_id}
    assert reconstruct(person).retracted == {detention.event_id: undo.event_id}


def test_a_waiting_retraction_by_another_agency_never_takes_effect(person):
    detention = recorded("detention_started", AGENCIES["police"])
    person.record(retraction(detention, BUREAU))
    person.record(detention)
    assert person.retracted == {}


def test_a_retraction_naming_another_persons_event_never_takes_effect_here(person):
    """The aggregate sees only its own stream: a retraction of an event that is not in it waits, and an event of
    another person never arrives here. (Ingest refuses it outright: the event claims say whose event it is.)"""
    someone_else = Person("11010519491231002X")
    warning = recorded()
    someone_else.record(warning)
    person.record(retraction(warning))
    assert person.retracted == {} and someone_else.retracted == {}


def test_retraction_of_a_retraction_is_refused(person):
    warning = recorded()
    undo = retraction(warning)
    person.record(warning)
    person.record(undo)
    with pytest.raises(Rejected) as info:
        person.record(retraction(undo))
    assert info.value.code == RejectionCode.RETRACTION_REFUSED
    assert "cannot be retracted" in info.value.reason


def test_second_retraction_of_the_same_event_is_refused(person):
    warning = recorded()
    first = retraction(warning)
    person.record(warning)
    person.record(first)
    with pytest.raises(Rejected) as info:
        person.record(retraction(warning))
    assert info.value.code == RejectionCode.RETRACTION_REFUSED
    assert first.event_id in info.value.reason
    assert person.retracted == {warning.event_id: first.event_id}


def test_refused_retraction_records_nothing(person):
    warning = recorded()
    person.record(warning)
    person.collect_events()
    with pytest.raises(Rejected):
        person.record(retraction(warning, OTHER_BUREAU))
    assert person.collect_events() == []
    assert len(person.events) == 1


def test_each_record_is_one_domain_event(person):
    warning = recorded()
    person.record(warning)
    person.record(retraction(warning))
    names = [type(domain_event).__name__ for domain_event in person.collect_events()]
    assert names == ["Registered", "EventRecorded", "EventRecorded"]
    assert person.version == 3


def test_reconstructed_person_has_the_same_state(person):
    warning = recorded()
    enrolled = recorded("subject_enrolled")
    undo = retraction(warning)
    for item in (warning, enrolled, undo):
        person.record(item)

    copy = reconstruct(person)

    assert copy.id == person.id
    assert copy.version == person.version
    assert copy.id_number == ID_NUMBER
    assert copy.events == [warning, enrolled, undo]
    assert copy.find(enrolled.event_id) == enrolled
    assert copy.retracted == {warning.event_id: undo.event_id}


def test_reconstructed_person_still_enforces_retraction_rules(person):
    warning = recorded()
    person.record(warning)
    person.record(retraction(warning))
    copy = reconstruct(person)
    with pytest.raises(Rejected) as info:
        copy.record(retraction(warning))
    assert info.value.code == RejectionCode.RETRACTION_REFUSED


# -- Person.admit: the decision ingest takes with the store's claims ------------------------------------------------


def test_the_same_event_again_is_a_duplicate_and_records_nothing(person):
    warning = recorded()
    person.record(warning)
    person.collect_events()
    again = person.record(recorded(event_id=warning.event_id.upper()))  # event ids compare case-insensitively
    assert again.duplicate and again.claim is None
    assert person.collect_events() == [] and len(person.events) == 1


def test_the_same_event_id_with_other_content_is_a_conflict(person):
    warning = recorded()
    person.record(warning)
    changed = RecordedEvent(**{**warning.__dict__, "content_hash": "1" * 64})
    with pytest.raises(Rejected) as info:
        person.record(changed)
    assert info.value.code == RejectionCode.CONFLICT


def test_admit_decides_from_claims_alone_across_persons():
    """Ingest does not load persons: it hands admit the claims of the batch's event ids, of any person."""
    from domain.person import EventClaim, KnownClaims

    someone_else = person_stream_id("110101199003074514")
    warning = recorded()
    known = KnownClaims()
    known.add(EventClaim.of(warning, someone_else))
    mine = Person.create_id(ID_NUMBER)
    with pytest.raises(Rejected) as info:
        Person.admit(retraction(warning), mine, known)
    assert "another person" in info.value.reason
    assert Person.admit(recorded(event_id=warning.event_id), mine, known).duplicate  # same content, any stream


def test_a_retraction_that_waited_for_the_wrong_publishers_event_is_named_when_it_arrives():
    from domain.person import KnownClaims

    detention = recorded("detention_started", agency=AGENCIES["police"])
    by_bureau = retraction(detention, BUREAU)
    known = KnownClaims()
    stream = Person.create_id(ID_NUMBER)
    known.add(Person.admit(by_bureau, stream, known).claim)  # waits: its target is not on record
    admitted = Person.admit(detention, stream, known)
    [(waiting, refusal)] = admitted.refused_retractions
    assert waiting.event_id == by_bureau.event_id.lower() and refusal.code == RejectionCode.RETRACTION_REFUSED
