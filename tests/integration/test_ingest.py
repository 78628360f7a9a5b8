"""The ingest path against a real store, on SQLite and on a real PostgreSQL server: what depends on the database
(transactions, concurrent writers, constraints, claims derived from old stores, a second process). The decisions
themselves (duplicates, conflicts, retractions, dead letters) are tested in the service tier (tests/service/)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from adapters.config import Settings
from adapters.eventstore import EventStore
from domain.person import Person
from services.ingest import Ingestor, Source
from tests.builders import CST, decision, envelope, id_number

OPERATOR = Source("test")


@pytest.fixture
def store(database_url):
    store = EventStore(database_url)
    yield store
    store.close()


@pytest.fixture
def ingestor(store, clock):
    """The ingestor on the tests' clock (`now`): what it records and what it calls the future are the test's."""
    return Ingestor(store, clock=clock)


def stored_events(store: EventStore, id_number_: str) -> list:
    person = store.person(id_number_)
    return person.events if person else []


def dead_letters(store: EventStore) -> list:
    return list(store.dead_letters(limit=10_000))


def test_an_event_can_be_retracted_only_once_even_by_concurrent_writers(store):
    """The store itself refuses a second claim retracting the same event (a unique column), so two workers that
    both found the event unretracted cannot both store their retraction."""
    from eventsourcing.persistence import IntegrityError

    from domain.person import EventClaim

    person = Person(id_number(22))
    store.append([person], claims=[EventClaim("0b7d5a4e-2222-4000-8000-000000000001", "h", person.id, "bureau", "SFJ",
                                              "subject_reported")])
    first = EventClaim("0b7d5a4e-2222-4000-8000-000000000002", "h2", person.id, "bureau", "SFJ", "event_retracted",
                       retracts="0b7d5a4e-2222-4000-8000-000000000001")
    store.append([], claims=[first])
    with pytest.raises(IntegrityError):
        store.append([], claims=[EventClaim("0b7d5a4e-2222-4000-8000-000000000003", "h3", person.id, "bureau", "SFJ",
                                            "event_retracted", retracts="0b7d5a4e-2222-4000-8000-000000000001")])
    assert store.retractions_of(["0b7d5a4e-2222-4000-8000-000000000001"]) == {
        "0b7d5a4e-2222-4000-8000-000000000001": [first]}
    # Another agency may hold a retraction of the same id (one that waits for its target; only the target's
    # publisher's takes effect).
    other = EventClaim("0b7d5a4e-2222-4000-8000-000000000004", "h4", person.id, "court", "FY", "event_retracted",
                       retracts="0b7d5a4e-2222-4000-8000-000000000001")
    store.append([], claims=[other])


def test_claims_are_derived_once_for_a_store_written_before_claims_existed(database_url):
    """A store whose claims table is empty but which holds person events (written before claims existed, or with
    the table emptied) gets its claims back from the events when it is opened: duplicates stay duplicates."""
    store = EventStore(database_url)
    events = [decision(id_number(30)), envelope("subject_reported", {"region": "520222"}, kind="bureau",
                                                person=id_number(30))]
    retraction = envelope("event_retracted", {"retracted_event_id": events[1]["event_id"], "reason": "x"},
                          kind="bureau", person=id_number(30))
    Ingestor(store).ingest([*events, retraction], OPERATOR)
    recorder = store.recorder
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(f"DELETE FROM {recorder.claims_table_name}")
    store.close()

    reopened = EventStore(database_url)
    try:
        assert reopened.claiming_recorder.count_claims() == 3
        assert [r.event_id for r in reopened.retractions_of([events[1]["event_id"]])[events[1]["event_id"]]] == \
            [retraction["event_id"]]
        result = Ingestor(reopened).ingest([*events, retraction], OPERATOR)
        assert [item.status for item in result.items] == ["duplicate"] * 3
    finally:
        reopened.close()


def test_a_concurrent_append_to_the_same_person_is_retried_not_lost(database_url, store):
    """Two ingestors (two workers) append to one person; the second's first attempt conflicts and is re-run."""
    person = id_number(9)
    other_worker = Ingestor(EventStore(database_url))
    interleaved = envelope("subject_reported", {"region": "520222"}, kind="bureau", person=person,
                           occurred_at=dt.datetime(2024, 3, 5, tzinfo=CST))

    class InterleavingStore(EventStore):
        calls = 0

        def append(self, aggregates, tracking=None, **kwargs):
            InterleavingStore.calls += 1
            if InterleavingStore.calls == 1:  # the other worker commits between our read and our write
                other_worker.ingest([interleaved], OPERATOR)
            super().append(aggregates, tracking, **kwargs)

    ingestor = Ingestor(InterleavingStore(database_url))
    other_worker.ingest([decision(person)], OPERATOR)
    mine = envelope("subject_enrolled", {"region": "520222"}, kind="bureau", person=person,
                    occurred_at=dt.datetime(2024, 3, 6, tzinfo=CST))
    result = ingestor.ingest([mine], OPERATOR)

    assert InterleavingStore.calls == 2
    assert [item.status for item in result.items] == ["accepted"]
    assert [e.event_type for e in stored_events(store, person)] == ["decision_effective", "subject_reported", "subject_enrolled"]


def test_batch_appends_are_one_transaction(store, ingestor):
    """A batch whose write fails in the database (here: an event_id claimed meanwhile) stores nothing at all."""
    from eventsourcing.persistence import IntegrityError

    from domain.person import DeadLetter, EventClaim

    claimed_meanwhile = "0b7d5a4e-1111-4000-8000-000000000001"
    other = Person(id_number(11))
    store.append([other], claims=[EventClaim(claimed_meanwhile, "hash-a", other.id, "court", "FY-1", "decision_effective")])

    person = Person(id_number(10))
    dead_letter = DeadLetter(raw="junk", raw_sha256="0", raw_bytes=4, code="malformed", reason="not JSON",
                             source="test", position="line 2", event_id=None, received_at="2026-01-01T00:00:00+00:00")
    with pytest.raises(IntegrityError):
        store.append([person, dead_letter],
                     claims=[EventClaim(claimed_meanwhile, "hash-b", person.id, "court", "FY-1", "decision_effective")])

    assert store.person(id_number(10)) is None
    assert dead_letters(store) == []


def test_ingest_batches_checks_ahead_in_a_second_process_with_the_results_of_ingest(database_url, tmp_path):
    """Bulk loads check the next batch in another process while storing this one: per batch, the same results and
    the same stored streams and dead letters as one `ingest` call per batch."""
    from tests.builders import mixed_lines

    from domain.envelope import parse_event

    lines = mixed_lines(300, seed=11)
    valid = []
    for line in lines:
        try:
            valid.append(parse_event(line))
        except Exception:
            pass
    target = valid[0]
    lines += [b"\x00not json", lines[3], lines[10]]  # refused, and duplicates of earlier batches
    retraction = envelope("event_retracted", {"retracted_event_id": target.event_id, "reason": "录入错误"},
                          kind=target.agency.kind.value, person=target.person.id_number, region=target.agency.region)
    lines.append(json.dumps(retraction).encode())
    batches = [lines[start:start + 40] for start in range(0, len(lines), 40)]
    sequential_store = EventStore(f"sqlite:///{tmp_path}/sequential.sqlite3")
    try:
        sequential = [Ingestor(sequential_store).ingest(batch, OPERATOR) for batch in batches]
        piped_store = EventStore(database_url)
        try:
            piped = list(Ingestor(piped_store).ingest_batches(((batch, None) for batch in batches), OPERATOR))
            assert [[(i.status, i.event_id, i.code) for i in r.items] for r in piped] == \
                   [[(i.status, i.event_id, i.code) for i in r.items] for r in sequential]
            assert sum(r.accepted for r in piped) > 200 and sum(r.rejected for r in piped) >= 1
            assert piped[-1].items[-1].status == sequential[-1].items[-1].status
            for id_number_ in {event.person.id_number for event in valid}:
                assert [(e.event_id, e.content_hash) for e in stored_events(piped_store, id_number_)] == \
                       [(e.event_id, e.content_hash) for e in stored_events(sequential_store, id_number_)]
            assert [(d.code, d.reason) for d in dead_letters(piped_store)] == \
                   [(d.code, d.reason) for d in dead_letters(sequential_store)]
        finally:
            piped_store.close()
    finally:
        sequential_store.close()


def test_notification_ids_handed_back_by_a_write_are_the_ids_the_log_gives_its_events(store, ingestor):
    # The SQLite recorder inserts a batch's events in one executemany and computes their notification ids; whoever
    # follows the write (the audit chain) must get exactly the ids the log then shows for those events.
    written = []
    store.after_write.append(lambda recordings: written.extend(
        (r.notification.id, r.notification.originator_id, r.notification.originator_version) for r in recordings))
    ingestor.ingest([decision(id_number(n)) for n in (1, 2)], OPERATOR)
    ingestor.ingest([decision(id_number(n)) for n in (2, 3, 4)], OPERATOR)
    logged = [(n.id, n.originator_id, n.originator_version) for n in store.recorder.select_notifications(1, 100)]
    assert written == logged
    assert [entry[0] for entry in logged] == list(range(logged[0][0], logged[0][0] + len(logged)))
    assert len(logged) == 5 + 4  # five accepted events, and the Registered event of each of the four persons


def test_a_nul_byte_is_refused_into_a_dead_letter_and_the_rest_of_the_batch_stands(database_url):
    """Issue #14: on PostgreSQL a NUL in person.name was accepted and then broke gaps and stats for good (COPY of
    the read model); in agency.id it failed the whole batch with no dead letter."""
    from services.bootstrap import bootstrap

    services = bootstrap(Settings(database_url=database_url))
    try:
        good = decision(id_number(41), start=dt.date(2025, 3, 3))
        bad_name = decision(id_number(42), start=dt.date(2025, 3, 3))
        bad_name["person"]["name"] = "张\x00三"
        bad_agency = decision(id_number(43), start=dt.date(2025, 3, 3))
        bad_agency["agency"]["id"] = "FY\x00-520222"
        items = [json.dumps(e, ensure_ascii=False).encode() for e in (good, bad_name, bad_agency)]
        result = services.ingestor.ingest(items, Source("test"))
        assert [item.status for item in result.items] == ["accepted", "rejected", "rejected"]
        letters = list(services.store.dead_letters(limit=10))
        assert len(letters) == 2 and all("\x00" in letter.raw or "\\u0000" in letter.raw for letter in letters)
        assert {g["id_number"] for g in services.queries.gaps(state="all", as_of=dt.datetime(2026, 1, 1,
                                                                                            tzinfo=dt.timezone.utc))} \
            == {id_number(41)}
        services.projection.catch_up()
        assert services.queries.stats()
    finally:
        services.close()
