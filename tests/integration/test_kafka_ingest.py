"""The Kafka ingest worker against a real Kafka-protocol broker (Tansu) and a real store (SQLite and PostgreSQL).

No mocks: messages are produced with kafka-python, the worker consumes them in a consumer group, and what is on
record is read back from the store and from the `handoff.rejected` topic.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adapters.config import Settings
from adapters.eventstore import EventStore
from adapters.kafka import KafkaConfig, tracking_name
from domain.authorisation import PublisherIdentity
from domain.catalog import AgencyKind
from services.entrypoints.http.api import create_app
from services.bootstrap import bootstrap
from services.ingest import FUTURE_TOLERANCE, CheckedEvent, Source, check_items
from services.entrypoints.workers.kafka_fetch import FetchProcessFailed, checked_key_problem
from services.entrypoints.workers.kafka_ingest import (
    H_DEAD_LETTER_ID, H_EVENT_ID, H_REASON, H_REASON_CODE, H_SOURCE, IngestWorker, dead_letter_id, header_text,
    key_problem, publish_lines,
)
from tests.builders import decision, envelope, id_number
from tests.kafka_broker import (  # noqa: F401  (fixtures)
    headers_of, kafka, kafka_broker, kafka_cli, kafka_env, read_topic, stored_event_ids,
)

HANDOFF = str(Path(sys.executable).parent / "handoff")


@pytest.fixture
def store(database_url):
    store = EventStore(database_url)
    yield store
    store.close()


def produce(config: KafkaConfig, messages: list[tuple[str, bytes | None, bytes]], headers=None) -> list:
    """Send and wait: the record metadata (topic, partition, offset) of each message."""
    producer = config.producer(role="test")
    try:
        futures = [producer.send(topic, key=key, value=value, headers=headers or []) for topic, key, value in messages]
        producer.flush()
        return [future.get(timeout=30) for future in futures]
    finally:
        producer.close()


# Which process checks the messages: the fetch process (share 0), the worker's main process (share 1), or as the
# two processes' load says (None, what `handoff ingest` runs).
CHECKED_IN = {"fetch process": 0.0, "main process": 1.0}


def run_worker(store: EventStore, config: KafkaConfig, expected: int, idle: float = 20,
               main_check_share: float | None = None, **options) -> IngestWorker:
    """Run a worker in this thread until it has handled `expected` messages (or `idle` seconds brought none)."""
    worker = IngestWorker(store, config, **options)
    worker.main_check_share = main_check_share
    worker.run(until=lambda w: w.stats.messages >= expected, idle_exit=idle)
    return worker


def letters(store: EventStore) -> list:
    return list(store.dead_letters(limit=10_000))


def json_bytes(document) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def test_events_are_stored_with_their_partition_position_and_a_restart_changes_nothing(store, kafka):
    events = [decision(id_number(n)) for n in range(1, 41)]
    sent = produce(kafka, [(kafka.inbound_topic("court"), e["person"]["id_number"].encode(), json_bytes(e))
                           for e in events])

    worker = run_worker(store, kafka, expected=40)
    assert (worker.stats.accepted, worker.stats.rejected) == (40, 0)
    assert sorted(stored_event_ids(store)) == sorted(e["event_id"] for e in events)
    # Each partition's position is its last offset: the next start seeks just past it.
    last = {}
    for metadata in sent:
        last[metadata.partition] = max(last.get(metadata.partition, -1), metadata.offset)
    for partition in range(kafka.partitions):
        assert store.source_position(tracking_name(kafka.inbound_topic("court"), partition)) == last.get(partition)

    again = run_worker(store, kafka, expected=1, idle=3, create_topics=False)  # nothing new: exits when idle
    assert again.stats.messages == 0
    assert len(stored_event_ids(store)) == 40


@pytest.mark.parametrize("checked_in", CHECKED_IN)
def test_malformed_messages_are_dead_lettered_copied_to_rejected_and_the_worker_goes_on(store, kafka, checked_in):
    court = kafka.inbound_topic("court")
    person = id_number(7)
    name = "李四"
    good_before = decision(person, name=name)
    wrong_kind = envelope("subject_reported", {"region": "520222"}, kind="bureau", person=person, name=name)
    bad_payload = decision(person, name=name)
    del bad_payload["payload"]["term_end"]
    huge = decision(person, name=name)
    huge["case_ref"] = "案" * 200_000  # about 600 kB: over the 64 KiB envelope limit
    wrong_key = decision(person, name=name)
    no_key = decision(person, name=name)
    good_after = envelope("bureau_notified", {"execution_region": "520222"}, person=person, name=name,
                          occurred_at=None)
    key = person.encode()
    produce(kafka, [
        (court, key, json_bytes(good_before)),
        (court, key, b"{not json at all " + person.encode()),
        (court, key, json_bytes(wrong_kind)),
        (court, key, json_bytes(bad_payload)),
        (court, key, json_bytes(huge)),
        (court, id_number(8).encode(), json_bytes(wrong_key)),
        (court, None, json_bytes(no_key)),
        (court, key, json_bytes(good_after)),
    ])

    worker = run_worker(store, kafka, expected=8, main_check_share=CHECKED_IN[checked_in])
    assert (worker.stats.accepted, worker.stats.rejected) == (2, 6)
    assert sorted(stored_event_ids(store)) == sorted([good_before["event_id"], good_after["event_id"]])

    dead = letters(store)
    codes = sorted(letter.code for letter in dead)
    assert codes == sorted(["malformed", "not_as_itself", "invalid_payload", "malformed", "invalid_envelope",
                            "invalid_envelope"])
    assert {letter.source for letter in dead} <= {tracking_name(court, p) for p in range(kafka.partitions)}
    assert all(letter.id == dead_letter_id(letter.source, letter.position) for letter in dead)
    assert sum("key" in letter.reason for letter in dead) == 2

    rejected = read_topic(kafka, kafka.rejected_topic, expected=6)
    assert len(rejected) == 6
    by_letter = {headers_of(r)[H_DEAD_LETTER_ID]: r for r in rejected}
    assert set(by_letter) == {str(letter.id) for letter in dead}
    for letter in dead:
        record = by_letter[str(letter.id)]
        headers = headers_of(record)
        assert headers[H_REASON_CODE] == letter.code
        assert headers[H_REASON] == header_text(letter.reason)
        assert headers[H_SOURCE] == f"{letter.source[len('kafka:'):]}:{letter.position}"
        # Never a name or an ID number in clear in the headers.
        raw_headers = b"".join(k.encode() + v for k, v in record.headers)
        for secret in (person, id_number(8), name):
            assert secret.encode() not in raw_headers
        assert record.key == str(letter.id).encode()
    event_ids = {headers_of(r).get(H_EVENT_ID) for r in rejected}
    assert wrong_key["event_id"] in event_ids and bad_payload["event_id"] in event_ids
    # The huge message travels whole (the dead letter keeps it too: up to 1 MiB).
    [huge_copy] = [r for r in rejected if headers_of(r).get(H_EVENT_ID) == huge["event_id"]]
    assert huge_copy.value == json_bytes(huge)

    # Every offset is on record: a restart neither re-ingests nor re-rejects anything.
    again = run_worker(store, kafka, expected=1, idle=3, create_topics=False)
    assert again.stats.messages == 0
    assert len(letters(store)) == 6
    assert len(read_topic(kafka, kafka.rejected_topic, settle=1.5)) == 6


def test_a_poison_message_alone_in_its_partition_is_tracked_not_retried(store, kafka):
    court = kafka.inbound_topic("court")
    produce(kafka, [(court, id_number(1).encode(), b"\xff\xfe not utf-8")])
    worker = run_worker(store, kafka, expected=1)
    assert worker.stats.rejected == 1
    [letter] = letters(store)
    assert letter.code == "malformed" and letter.raw.startswith("base64:")
    assert store.source_position(letter.source) == int(letter.position)


def test_recorded_at_only_with_import_and_never_from_http(store, kafka):
    court = kafka.inbound_topic("court")
    legacy = decision(id_number(1), recorded_at="2024-03-02T09:00:00+08:00")
    via_http = decision(id_number(2), recorded_at="2024-03-02T09:00:00+08:00")
    produce(kafka, [(court, id_number(1).encode(), json_bytes(legacy))])
    produce(kafka, [(court, id_number(2).encode(), json_bytes(via_http))], headers=[("handoff-via", b"http")])
    worker = run_worker(store, kafka, expected=2, allow_recorded_at=True)
    assert stored_event_ids(store) == [legacy["event_id"]]
    [letter] = letters(store)
    assert letter.code == "recorded_at_not_allowed" and letter.event_id == via_http["event_id"]
    assert worker.stats.accepted == 1


def test_header_identity_only_narrows_what_the_topic_allows(store, kafka):
    court = kafka.inbound_topic("court")
    mine = decision(id_number(1))  # agency FY-520222 of region 520222
    other = decision(id_number(2))
    other["agency"]["id"] = "FY-OTHER"
    identity = [("handoff-publisher-id", b"FY-520222"), ("handoff-publisher-region", b"520222")]
    produce(kafka, [(court, id_number(1).encode(), json_bytes(mine)),
                    (court, id_number(2).encode(), json_bytes(other))], headers=identity)
    run_worker(store, kafka, expected=2)
    assert stored_event_ids(store) == [mine["event_id"]]
    assert [letter.code for letter in letters(store)] == ["not_as_itself"]


def test_http_with_kafka_answers_202_and_the_worker_stores_the_events(database_url, kafka):
    settings = Settings(database_url=database_url, kafka_bootstrap=",".join(kafka.bootstrap),
                        kafka_prefix=kafka.prefix)
    services = bootstrap(settings)
    try:
        token = services.principals.add("publisher", "某县人民法院", kind="court", agency_id="FY-520222",
                                        region="520222")[1]
        events = [decision(id_number(n)) for n in range(1, 4)]
        impostor = decision(id_number(9))
        impostor["agency"]["id"] = "FY-ELSEWHERE"
        with TestClient(create_app(services), headers={"Authorization": f"Bearer {token}"}) as client:
            single = client.post("/v1/events", json=events[0])
            batch = client.post("/v1/events", json=[*events[1:], impostor])
        assert single.status_code == 202
        assert single.json()["event_ids"] == [events[0]["event_id"]]
        assert batch.status_code == 202
        assert batch.json()["event_ids"] == [e["event_id"] for e in [*events[1:], impostor]]
        assert batch.json()["topic"] == kafka.inbound_topic("court")
        assert stored_event_ids(services.store) == []  # not stored by the API: by the worker

        worker = run_worker(services.store, kafka, expected=4)
        assert worker.stats.accepted == 3
        assert sorted(stored_event_ids(services.store)) == sorted(e["event_id"] for e in events)
        # The authenticated identity travelled in headers: the impostor's envelope is refused by the worker.
        [letter] = letters(services.store)
        assert (letter.code, letter.event_id) == ("not_as_itself", impostor["event_id"])
        [copy_] = read_topic(kafka, kafka.rejected_topic, expected=1)
        assert headers_of(copy_)[H_REASON_CODE] == "not_as_itself"
    finally:
        services.close()


def test_without_kafka_the_api_answers_synchronously_as_before(database_url):
    services = bootstrap(Settings(database_url=database_url))
    try:
        token = services.principals.add("publisher", "某县人民法院", kind="court", agency_id="FY-520222",
                                        region="520222")[1]
        with TestClient(create_app(services), headers={"Authorization": f"Bearer {token}"}) as client:
            response = client.post("/v1/events", json=decision(id_number(1)))
        assert response.status_code == 200 and response.json()["accepted"] == 1
    finally:
        services.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_mid_run_stores_the_batch_in_hand_leaves_the_group_and_exits_0(database_url, kafka):
    lines = [json_bytes(decision(id_number(n))) for n in range(1, 5001)]
    publish_lines(kafka, lines)
    env = {**os.environ, **kafka_env(kafka), "HANDOFF_DATABASE_URL": database_url,
           "HANDOFF_KAFKA_MAX_POLL_RECORDS": "50"}
    worker = subprocess.Popen([*kafka_cli(), "ingest"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = EventStore(database_url)
    try:
        deadline = time.monotonic() + 60
        while not stored_event_ids(store) and time.monotonic() < deadline:
            time.sleep(0.05)
        fetcher = fetch_process_of(worker.pid)
        assert fetcher is not None  # consuming in two processes, as `handoff ingest` always does
        worker.send_signal(signal.SIGTERM)  # while it works
        started = time.monotonic()
        out, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err.decode()
        assert not running(fetcher)  # stopped by the worker before it exited
        assert time.monotonic() - started < 10
        stats = json.loads(out.decode().strip().splitlines()[-1])
        stored = stored_event_ids(store)
        assert 0 < stats["accepted"] == len(stored) < 5000  # stopped mid-run, every batch it began is stored
        # What is stored is exactly what the stored positions say: a restart goes on from there.
        positions = [store.source_position(tracking_name(kafka.inbound_topic("court"), p)) for p in range(3)]
        assert sum(p + 1 for p in positions if p is not None) == len(stored)
        again = subprocess.run([*kafka_cli(), "ingest", "--until-idle", "3"], env=env, capture_output=True,
                               timeout=120)
        assert again.returncode == 0, again.stderr.decode()
        assert sorted(stored_event_ids(store)) == sorted(json.loads(line)["event_id"] for line in lines)
    finally:
        if worker.poll() is None:
            worker.kill()
        store.close()


@pytest.mark.parametrize("checked_in", CHECKED_IN)
def test_the_worker_s_clock_bounds_the_check_wherever_it_is_made(store, kafka, checked_in):
    """The fetch process checks with the bound the worker's clock gives (clock + FUTURE_TOLERANCE): an injected clock
    is obeyed there too, not replaced by the fetch process's own time."""
    court = kafka.inbound_topic("court")
    before = decision(id_number(1), start=dt.date(2024, 3, 1))
    after = decision(id_number(2), start=dt.date(2024, 9, 1))
    now = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
    produce(kafka, [(court, id_number(1).encode(), json_bytes(before)),
                    (court, id_number(2).encode(), json_bytes(after))])
    worker = run_worker(store, kafka, expected=2, clock=lambda: now, main_check_share=CHECKED_IN[checked_in])
    assert (worker.stats.accepted, worker.stats.rejected) == (1, 1)
    assert stored_event_ids(store) == [before["event_id"]]
    [letter] = letters(store)
    assert letter.event_id == after["event_id"] and "in the future" in letter.reason
    assert letter.received_at == now.isoformat()


@pytest.mark.clock
def test_the_key_check_on_the_parsed_envelope_refuses_exactly_what_the_check_on_the_raw_one_refuses(now):
    """The fetch process compares the key with the ID number the check parsed (normalised: a final x upper-cased)
    instead of decoding the envelope a second time; the key must still be the ID number exactly as sent."""
    ends_in_x = next(id_number(n) for n in range(1, 1000) if id_number(n).endswith("X"))
    source = Source("kafka:t.in.court:0", PublisherIdentity(kind=AgencyKind.COURT))
    latest = now + FUTURE_TOLERANCE  # the check's bound, as a worker whose clock says `now` gives it
    refused = decision(id_number(5))
    del refused["payload"]["term_end"]
    cases = [json_bytes(decision(sent)) for sent in (id_number(1), ends_in_x, ends_in_x[:17] + "x")]
    cases += [json_bytes(refused), b"{not json", json_bytes({"person": {"id_number": 7}})]
    checked = check_items(cases, source, latest)
    assert [isinstance(c, CheckedEvent) for c in checked] == [True] * 3 + [False] * 3
    for value, check in zip(cases, checked):
        sent = json.loads(value)["person"]["id_number"] if value.startswith(b"{\"") else "x"
        for key in (None, str(sent).encode(), str(sent).upper().encode(), str(sent).lower().encode(),
                    id_number(2).encode(), b"\xff\xfe", b""):
            assert checked_key_problem(key, value, check) == key_problem(key, value), (value[:60], key)
    assert key_problem(ends_in_x[:17].encode() + b"x", cases[1]) is not None  # the comparison is exact


def fetch_process_of(pid: int) -> int | None:
    """The pid of the worker's fetch process (its only child), once started."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # an exited process nobody reaped is not running


def test_the_worker_fails_loudly_when_its_fetch_process_dies(store, kafka):
    produce(kafka, [(kafka.inbound_topic("court"), id_number(1).encode(), json_bytes(decision(id_number(1))))])
    worker = IngestWorker(store, kafka)
    killed = []

    def kill_the_fetch_process():
        if worker.stats.messages and not killed:
            worker.fetcher.process.kill()
            killed.append(worker.fetcher.process.pid)

    # Without the failure the worker would idle out and return: the test cannot hang.
    with pytest.raises(FetchProcessFailed, match="fetch process"):
        worker.run(on_poll=kill_the_fetch_process, idle_exit=30)
    assert killed and not running(killed[0])
    assert worker.consumer is None and worker.fetcher is None  # it left the group: the others take over at once


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_fetch_process_exits_when_the_worker_is_killed(database_url, kafka):
    env = {**os.environ, **kafka_env(kafka), "HANDOFF_DATABASE_URL": database_url}
    worker = subprocess.Popen([*kafka_cli(), "ingest"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while fetch_process_of(worker.pid) is None and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        fetcher = fetch_process_of(worker.pid)
        assert fetcher is not None, worker.stderr.read().decode() if worker.poll() is not None else "no child"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        deadline = time.monotonic() + 60
        while running(fetcher) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(fetcher), "the fetch process outlived its worker"
    finally:
        if worker.poll() is None:
            worker.kill()


def test_the_handoff_command_has_ingest_and_route():
    """cli/main.py registers cli/kafka.py (one line in build_parser)."""
    completed = subprocess.run([HANDOFF, "--help"], capture_output=True, text=True, timeout=60)
    assert "ingest" in completed.stdout and "route" in completed.stdout


def test_a_wrong_prefix_or_security_setting_is_a_clear_configuration_error():
    from adapters.kafka import KafkaConfigError

    assert KafkaConfig.from_env({}) is None
    with pytest.raises(KafkaConfigError, match="PREFIX"):
        KafkaConfig.from_env({"HANDOFF_KAFKA_BOOTSTRAP": "k:9092", "HANDOFF_KAFKA_PREFIX": "a b"})
    with pytest.raises(KafkaConfigError, match="SASL"):
        KafkaConfig.from_env({"HANDOFF_KAFKA_BOOTSTRAP": "k:9092", "HANDOFF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    config = KafkaConfig.from_env({
        "HANDOFF_KAFKA_BOOTSTRAP": "k1:9093,k2:9093", "HANDOFF_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "HANDOFF_KAFKA_SASL_MECHANISM": "scram-sha-512", "HANDOFF_KAFKA_SASL_USERNAME": "handoff",
        "HANDOFF_KAFKA_SASL_PASSWORD": "s3cret", "HANDOFF_KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem"})
    settings = config.client_settings()
    assert settings["bootstrap_servers"] == ["k1:9093", "k2:9093"]
    assert (settings["security_protocol"], settings["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (settings["sasl_plain_username"], settings["sasl_plain_password"]) == ("handoff", "s3cret")
    assert settings["ssl_cafile"] == "/etc/kafka/ca.pem"
    assert "s3cret" not in json.dumps(config.describe()) and "s3cret" not in repr(config)
