"""`handoff ingest`: the Kafka ingest worker, and the HTTP API's way onto the inbound topics.

The worker is a member of a kafka-python consumer group over the inbound topics (`handoff.in.<kind>`, one per agency
kind), working in two processes so that two cores work at once (kafka_fetch.py beside it says why and how):
- a fetch process reads the partitions the group gave this member and checks each message (parse, validate,
  authorise, key) without any store, sending back "runs": consecutive messages of one partition with the same header
  identity, checked;
- this process stays the group member and decides and stores each run through the one ingest path
  (`Ingestor.store_checked`, as `Ingestor.ingest` does), with an eventsourcing `Tracking` of the run's last offset, so
  the events, claims, dead letters and the position are stored in ONE transaction. On start and on every rebalance it
  reads the stored position of each partition it gets and has the fetch process read from the stored position + 1:
  the store, not Kafka's committed offsets, says what is on record. Its own group consumer pauses every partition
  (it never fetches data; its polls keep the membership and run the rebalance callbacks).
A crash of either process anywhere means re-delivery from the stored positions, and re-delivery changes nothing
(docs/kafka.md gives the whole argument).

Per message:
- the topic fixes the publisher kind (`PublisherIdentity(kind=...)`); headers put on by the HTTP API
  (`handoff-publisher-id`, `handoff-publisher-region`, `handoff-via: http`) can only narrow what is accepted;
- the key must be the envelope's `person.id_number` (it gives per-person order); a wrong or missing key is refused;
- refused messages are dead letters in the store and copies go to `handoff.rejected` with the reason in headers
  (never a name or an ID number: the event id, the dead letter's id and SHA-256 digests). The copy is produced
  before the run's transaction commits, so it is sent at least once; its `handoff-dead-letter-id` (derived from
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
from domain.envelope import MAX_ENVELOPE_BYTES, best_effort_event_id
from domain.errors import RejectionCode
from domain.person import DeadLetter

from services.ingest import FUTURE_TOLERANCE, Ingestor, Source, utc_now
from services.entrypoints.workers.kafka_fetch import (  # noqa: F401  (Narrowing, key_problem: part of this module's interface)
    H_PUBLISHER_ID, H_PUBLISHER_REGION, H_VIA, CheckedRun, FetchProcess, Narrowing, check_run, key_problem,
)

log = logging.getLogger("handoff.kafka")

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
# Attempts at one run whose transaction conflicted with another worker's (rebalance races).
MAX_BATCH_ATTEMPTS = 4
SMALL_COPY = 16 * 1024  # a rejected copy's value when the broker refused the whole one
# How long the main loop waits for the fetch process's next poll before polling the group again (membership,
# rebalances), renewing the check's time bound and calling `on_poll`.
RECEIVE_S = 0.1
# Waiting longer than this for the fetch process's next poll asks it to leave more of the checking to this process.
HUNGRY_S = 0.02


def dead_letter_id(source: str, position: str) -> uuid.UUID:
    """The id of the dead letter of one Kafka message: the same message is dead-lettered at most once."""
    return uuid.uuid5(DEAD_LETTER_NAMESPACE, f"{source}@{position}")


def header_text(text: str, limit: int = MAX_REASON_HEADER) -> str:
    """A reason fit for a header: long digit runs (ID numbers) masked, non-ASCII (names) replaced, cut short. The
    full reason stays in the dead-letter store."""
    text = LONG_DIGITS.sub("<digits>", text)
    return text.encode("ascii", "replace").decode("ascii")[:limit]


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
    first_record_at: float | None = None  # perf_counter when the first records were fetched
    last_batch_at: float | None = None  # perf_counter when the last run was stored

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _BatchStore:
    """The event store as the ingest path sees it during a Kafka run: dead letters get ids derived from their
    message's position, and the copies for `handoff.rejected` are produced (and acknowledged) before the run's
    transaction commits."""

    def __init__(self, store: EventStore, publish_rejected: Callable[[list[DeadLetter]], None]):
        self._store = store
        self._publish_rejected = publish_rejected

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def append(self, aggregates: Iterable[Any], tracking: Tracking | None = None, **new: Any) -> None:
        stored = [stable_dead_letter(a) if isinstance(a, DeadLetter) else a for a in aggregates]
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
    """One member of the ingest consumer group. `run()` until `stop()` (SIGTERM: the run in hand is finished)."""

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
        # TopicPartition -> last offset on record (None: nothing yet), for the partitions this member owns now.
        self.positions: dict[Any, int | None] = {}
        self._stop = threading.Event()
        self._batch_store = _BatchStore(store, self._publish_rejected)
        self.ingestor = Ingestor(self._batch_store, clock=clock)  # type: ignore[arg-type]
        self._messages: dict[str, tuple[bytes | None, bytes]] = {}  # offset -> (key, value): the run in hand
        # Set by the rebalance callbacks (kafka-python runs them inside our poll), acted on after the poll.
        self._newly_assigned: set = set()
        self._assignment_changed = False
        # The fetch process reads for assignment number `_generation`; runs fetched for an earlier one are dropped.
        self._generation = 0
        self._latest_sent = None
        self.consumer = None
        self.producer = None
        self.fetcher: FetchProcess | None = None
        # Share of each poll this process checks itself: None balances the two processes by feedback
        # (kafka_fetch.MAX_MAIN_SHARE); tests fix it to take each checking path.
        self.main_check_share: float | None = None

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

        class Membership(ConsumerRebalanceListener):
            # Called while our thread is inside poll(): only note what changed (and pause: this consumer must never
            # fetch); the main loop acts on it after the poll.
            def on_partitions_revoked(self, revoked):
                for tp in revoked:
                    worker.positions.pop(tp, None)
                    worker._newly_assigned.discard(tp)
                worker._assignment_changed = True

            def on_partitions_assigned(self, assigned):
                worker.consumer.pause(*assigned)
                worker._newly_assigned.update(assigned)
                worker._assignment_changed = True

        if self.create_topics:
            self.config.ensure_topics([*self.topics, self.config.rejected_topic])
        try:
            self.producer = self.config.producer(role=f"{self.name}-rejected")
            self.fetcher = FetchProcess(self.config, self.name, self.allow_recorded_at, self.main_check_share).start()
            self.consumer = self.config.consumer(group=self.config.group, role=self.name)
            self.consumer.subscribe(self.topics, listener=Membership())
            log.info("%s: consuming %s as group %s", self.name, ", ".join(self.topics), self.config.group)
            last_message = time.monotonic()
            last_report = time.monotonic()
            while not self.stopping:
                # No data comes from this poll (every partition is paused): it keeps the membership and runs the
                # rebalance callbacks, never in the middle of a run. Owning partitions, it must not keep us from
                # storing; owning none (joining, or an eager rebalance revoked everything), it must wait: kafka-python
                # completes a group join only within polls that last a while (a join never completed in polls of
                # 10 ms against Tansu).
                owning = bool(self.positions)
                self.consumer.poll(timeout_ms=0 if owning else int(RECEIVE_S * 1000))
                if self._assignment_changed:
                    self._follow_assignment()
                    last_message = time.monotonic()
                self._renew_latest()
                waiting = time.monotonic()
                received = self.fetcher.receive(timeout=RECEIVE_S if owning else 0)
                if owning and time.monotonic() - waiting > HUNGRY_S:
                    self.fetcher.hungry()
                if received is not None:
                    self._take(*received)
                    last_message = time.monotonic()
                elif idle_exit is not None and self.positions and time.monotonic() - last_message > idle_exit:
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
        if self.fetcher is not None:
            try:
                self.fetcher.stop()
            except Exception:
                log.exception("%s: stopping the fetch process failed", self.name)
            self.fetcher = None
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

    def _follow_assignment(self) -> None:
        """After a rebalance: read the stored position of every newly assigned partition (the store is the truth)
        and have the fetch process read what this member owns now from the stored positions + 1."""
        self._assignment_changed = False
        assigned, self._newly_assigned = self._newly_assigned, set()
        if assigned:
            self.stats.assignments += 1
        for tp in assigned:
            position = self.store.source_position(tracking_name(tp.topic, tp.partition))
            self.positions[tp] = position
            # Our own consumer fetches nothing (paused), but a position spares it looking up committed offsets.
            if position is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, position + 1)
        self._generation += 1
        self._latest_sent = self.clock() + FUTURE_TOLERANCE
        self.fetcher.assign(self._generation, {(tp.topic, tp.partition): None if position is None else position + 1
                                               for tp, position in self.positions.items()}, self._latest_sent)
        if assigned:
            log.info("%s: assigned %s", self.name,
                     ", ".join(f"{tp.topic}[{tp.partition}]@{self.positions[tp]}" for tp in sorted(assigned)))

    def _renew_latest(self) -> None:
        """The check's time bound follows this worker's clock: the fetch process checks with the latest bound sent
        (at most one loop turn old)."""
        latest = self.clock() + FUTURE_TOLERANCE
        if latest != self._latest_sent:
            self._latest_sent = latest
            self.fetcher.renew_latest(latest)

    # -- the runs of one poll -------------------------------------------------------------------------------------

    def _take(self, generation: int, fetched_at: float, runs: list[CheckedRun]) -> None:
        """Store each run of a poll the fetch process checked, in order; runs fetched for an earlier assignment, or
        for a partition this member no longer owns, are dropped (the owner reads them from the stored position)."""
        from kafka import TopicPartition

        if self.stats.first_record_at is None:
            self.stats.first_record_at = fetched_at
        stored: dict[Any, int] = {}
        for run in runs:
            if self.stopping:
                break  # the rest is delivered again from the stored positions
            tp = TopicPartition(run.topic, run.partition)
            if generation != self._generation or tp not in self.positions:
                continue
            last = self._ingest_run(tp, run)
            if last is not None:
                stored[tp] = last
        if stored and self.commit_offsets:
            self._commit(stored)

    def _ingest_run(self, tp, run: CheckedRun) -> int | None:
        """Store the part of a run beyond the stored position; the run's last offset, or None if nothing of it was
        new."""
        run = self._beyond(run, self.positions[tp])
        if run is None:
            return None
        for attempt in range(1, MAX_BATCH_ATTEMPTS + 1):
            try:
                self._store_run(tp, run)
                return run.offsets[-1]
            except (IntegrityError, OperationalError) as error:
                # Another member stored some of these meanwhile (it held the partition before a rebalance we have
                # not seen yet), or the store was busy: keep what is beyond the stored position and try again.
                stored = self.store.source_position(run.source.name)
                self.positions[tp] = stored
                run = self._beyond(run, stored)
                if run is None:
                    return None
                if attempt == MAX_BATCH_ATTEMPTS:
                    raise
                log.warning("%s: batch of %s conflicted (%s); retrying beyond offset %s", self.name, run.source.name,
                            type(error).__name__, stored)
        return None

    def _beyond(self, run: CheckedRun, position: int | None) -> CheckedRun | None:
        """The messages of a run beyond `position` (None: all of them), or None when there are none."""
        if position is None or run.offsets[0] > position:
            return run
        keep = [i for i, offset in enumerate(run.offsets) if offset > position]
        self.stats.already_on_record += len(run.offsets) - len(keep)
        if not keep:
            return None
        return CheckedRun(run.topic, run.partition, run.source, [run.offsets[i] for i in keep],
                          [run.values[i] for i in keep], [run.keys[i] for i in keep],
                          None if run.checked is None else [run.checked[i] for i in keep])

    def _store_run(self, tp, run: CheckedRun) -> None:
        """Decide and store one run as `Ingestor.ingest` would (checked in the fetch process, or here if it left the
        run to us): one transaction with the partition's Tracking at the run's last offset."""
        if run.checked is None:
            run.checked = check_run(run.values, run.keys, run.source, self.clock() + FUTURE_TOLERANCE)
        positions = [str(offset) for offset in run.offsets]
        self._messages = {position: (key, value) for position, key, value in zip(positions, run.keys, run.values)}
        try:
            tracking = Tracking(application_name=run.source.name, notification_id=run.offsets[-1])
            result = self.ingestor.store_checked(run.values, run.checked, run.source, positions, tracking)
        finally:
            self._messages = {}
        self.positions[tp] = run.offsets[-1]
        self.stats.messages += len(run.offsets)
        self.stats.accepted += result.accepted
        self.stats.duplicates += result.duplicates
        self.stats.rejected += result.rejected
        self.stats.batches += 1
        self.stats.last_batch_at = time.perf_counter()

    def _commit(self, offsets: dict[Any, int]) -> None:
        """Kafka's committed offsets, for lag monitoring only (seeks use the store's positions)."""
        from kafka.structs import OffsetAndMetadata

        try:
            self.consumer.commit_async({tp: OffsetAndMetadata(offset + 1, "", -1) for tp, offset in offsets.items()})
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
        """Copies of the run's refused messages to handoff.rejected, acknowledged before the run commits; a failure
        aborts the run (the worker exits; restarted, it consumes the run again)."""
        copies = []
        for letter in letters:
            key, value = self._messages.get(letter.position or "", (None, None))
            if value is None:
                value = letter.raw.encode("utf-8", errors="surrogatepass")
            headers = [
                (H_REASON_CODE, letter.code.encode()),
                (H_REASON, header_text(letter.reason).encode()),
                (H_DEAD_LETTER_ID, str(letter.id).encode()),
                (H_SOURCE, f"{letter.source[len('kafka:'):]}:{letter.position}".encode()),
                (H_VALUE_SHA256, hashlib.sha256(value).hexdigest().encode()),
            ]
            if letter.event_id and UUID_TEXT.match(letter.event_id):
                headers.append((H_EVENT_ID, letter.event_id.encode()))
            if key is not None:
                headers.append((H_KEY_SHA256, hashlib.sha256(key).hexdigest().encode()))
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
