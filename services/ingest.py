"""The one ingest path: every publisher (HTTP, Kafka, CLI) goes through `Ingestor.ingest`.

For each raw envelope: parse → validate → authorise → dedupe by event_id → append. All appends of a batch, its
dead letters and (for Kafka) the source position are stored in one transaction, so a crash loses and duplicates
nothing. Every refused input is kept as a dead letter with its reason and reported back per item.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from eventsourcing.persistence import IntegrityError, OperationalError, Tracking

from domain.authorisation import PublisherIdentity, authorise
from domain.envelope import ParsedEvent, best_effort_event_id, parse_event
from domain.errors import Rejected, RejectionCode
from domain.person import DeadLetter, EventClaim, KnownClaims, Person, RecordedEvent

from services.ports import IngestStore

log = logging.getLogger(__name__)

RawItem = bytes | str | dict[str, Any]

# A dead letter keeps the raw input whole up to this size; beyond it, the head and a SHA-256 of the whole.
MAX_DEAD_LETTER_RAW = 1024 * 1024
# Clocks of agencies' systems drift; an event "occurring" further ahead than this is refused as impossible.
FUTURE_TOLERANCE = dt.timedelta(hours=1)
# Concurrency conflicts (another worker appended to the same person) are resolved by re-running the batch.
MAX_ATTEMPTS = 5
# Events per transaction in bulk loads (`handoff publish`, the bench). Each event inserts into two indexes keyed by
# random values (the stream index, the event-id claims); once they outgrow a batch, every event dirties a page of
# each, and the commit writes those pages. Larger batches share more pages: measured on SQLite (2 cores) loading a
# 30,000-person county (459,000 events), batches of 500 -> 9,700 events/s, 2,000 -> 10,200, 5,000 -> 11,600,
# 10,000 -> 11,600; peak memory of the loading process 80, 100, 136 and 194 MiB (a 3,000-person county: 14,100,
# 15,600, 15,100 and 14,200 events/s).
BULK_BATCH = 5_000


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Source:
    """Where a batch came from: a name for the records, who sent it, and what it may carry."""

    name: str
    publisher: PublisherIdentity = field(default_factory=PublisherIdentity.trusted_operator)
    allow_recorded_at: bool = False


@dataclass(frozen=True)
class ItemResult:
    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    event_id: str | None
    code: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None or key == "event_id"}


@dataclass(frozen=True)
class BatchResult:
    items: list[ItemResult]

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def accepted(self) -> int:
        return self.count("accepted")

    @property
    def duplicates(self) -> int:
        return self.count("duplicate")

    @property
    def rejected(self) -> int:
        return self.count("rejected")


def raw_as_text(raw: RawItem) -> tuple[str, str, int]:
    """The raw input as storable text (base64 if not UTF-8), with the SHA-256 and size of the whole input."""
    if isinstance(raw, dict):
        data = json.dumps(raw, ensure_ascii=False, default=repr).encode("utf-8", errors="surrogatepass")
    elif isinstance(raw, str):
        data = raw.encode("utf-8", errors="surrogatepass")
    elif isinstance(raw, (bytes, bytearray)):
        data = bytes(raw)
    else:
        data = repr(raw).encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    head = data[:MAX_DEAD_LETTER_RAW]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = "base64:" + base64.b64encode(head).decode("ascii")
    return text, digest, len(data)


@dataclass(frozen=True, slots=True)
class CheckedEvent:
    """A parsed, validated and authorised event, as the plain values deciding and storing it need (plain, so that
    it can be checked in another process: Ingestor.ingest_batches)."""

    event_id: str
    event_type: str
    id_number: str
    schema_version: int
    document: dict[str, Any]  # the canonical JSON form (domain/envelope.py): agency, person, case_ref, payload
    content_hash: str
    occurred_at: str  # as published, with its offset
    recorded_at: str | None  # carried only by an import of legacy records

    def __reduce__(self):  # pickled as its values: a slotted dataclass's default state lists its fields each time
        return CheckedEvent, (self.event_id, self.event_type, self.id_number, self.schema_version, self.document,
                              self.content_hash, self.occurred_at, self.recorded_at)


Checked = CheckedEvent | Rejected


def check_items(items: Sequence[RawItem], source: Source, latest: dt.datetime) -> list[Checked]:
    """Parse, validate and authorise each item: the checked event, or why it is refused. No store is read.

    `latest`: the latest time an event may carry (now, give or take the clocks' drift)."""
    return [_check_item(index, raw, source, latest) for index, raw in enumerate(items)]


def _check_item(index: int, raw: RawItem, source: Source, latest: dt.datetime) -> Checked:
    try:
        event = parse_event(raw, allow_recorded_at=source.allow_recorded_at)
        authorise(event, source.publisher)
        _check_times(event, latest)
    except Exception as error:
        return as_rejection(error, index, source)
    return CheckedEvent(
        event_id=event.event_id, event_type=event.event_type, id_number=event.person_key,
        schema_version=event.schema_version, document=event.document, content_hash=event.content_hash,
        occurred_at=event.occurred_at.isoformat(),
        recorded_at=event.recorded_at.isoformat() if event.recorded_at else None,
    )


def as_rejection(error: Exception, index: int, source: Source) -> Rejected:
    """Rejected, or a defect of ours that this input exposed: either way the input is kept and the batch goes on;
    a defect is logged with its traceback for the developers."""
    if isinstance(error, Rejected):
        return error
    log.error("unexpected error ingesting item %d from %s", index, source.name, exc_info=error)
    return Rejected(RejectionCode.UNPROCESSABLE, f"internal error: {type(error).__name__}")


def _check_times(event: ParsedEvent, latest: dt.datetime) -> None:
    occurred_at = event.occurred_at
    if occurred_at > latest:
        raise Rejected(RejectionCode.INVALID_ENVELOPE, f"occurred_at {occurred_at.isoformat()} is in the future")
    recorded_at = event.recorded_at
    if recorded_at is not None:
        if recorded_at < occurred_at:
            raise Rejected(RejectionCode.INVALID_ENVELOPE, "recorded_at is before occurred_at")
        if recorded_at > latest:
            raise Rejected(RejectionCode.INVALID_ENVELOPE, f"recorded_at {recorded_at.isoformat()} is in the future")


# A batch (raw items, and their positions in the source or None) for Ingestor.ingest_batches.
SourcedBatch = tuple[Sequence[RawItem], Sequence[str | None] | None]


@dataclass
class _Batch:
    """What one attempt at a batch decided: per-item results, and what to store for them in one transaction."""

    results: list[ItemResult] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)  # new person events, in input order
    claims: list[EventClaim] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class Ingestor:
    def __init__(self, store: IngestStore, clock: Callable[[], dt.datetime] = utc_now):
        self.store = store
        self.clock = clock
        # Called after a batch that recorded events (the projector's nudge: services/entrypoints/workers/projector.py).
        self.after_store: list[Callable[[], None]] = []

    def ingest(
        self,
        items: Sequence[RawItem],
        source: Source,
        positions: Sequence[str | None] | None = None,
        tracking: Tracking | None = None,
    ) -> BatchResult:
        """Ingest a batch. `positions` name each item in its source (a line number, an offset) for dead letters."""
        checked = check_items(items, source, self.clock() + FUTURE_TOLERANCE)
        return self.store_checked(items, checked, source, positions, tracking)

    def ingest_batches(self, batches: Iterable[SourcedBatch], source: Source) -> Iterator[BatchResult]:
        """Ingest many batches in order, each exactly as `ingest` would (its own transaction), for bulk loads
        (`handoff publish`, the bench): checking a batch needs no store, so the next batch is checked in a second
        process while this one is decided and stored, and the two cores work at once."""
        batches = iter(batches)
        current = next(batches, None)
        following = next(batches, None)
        if current is None:
            return
        checked = check_items(current[0], source, self.clock() + FUTURE_TOLERANCE)
        if following is None:
            yield self.store_checked(current[0], checked, source, current[1])
            return
        # The checker only parses (it never touches this process's database connections), so a fork is safe and
        # quick; with other threads running, a fork could copy a lock held by one of them, so then forkserver.
        context = multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as checker:
            while current is not None:
                upcoming = None
                if following is not None:
                    upcoming = checker.submit(check_items, following[0], source, self.clock() + FUTURE_TOLERANCE)
                yield self.store_checked(current[0], checked, source, current[1])
                current, following = following, next(batches, None) if following is not None else None
                if upcoming is not None:
                    checked = upcoming.result()

    def store_checked(self, items: Sequence[RawItem], checked: Sequence[Checked], source: Source,
                      positions: Sequence[str | None] | None, tracking: Tracking | None = None) -> BatchResult:
        """Decide and store a batch whose items were already checked (`check_items`, possibly in another process:
        `ingest_batches`, the Kafka worker's fetch process), exactly as `ingest` does after its own check."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            batch = self._decide(items, checked, source, positions)
            try:
                self.store.append(batch.dead_letters, tracking=tracking, events=batch.events, claims=batch.claims)
                if batch.events:
                    for observer in self.after_store:
                        observer()
                return BatchResult(batch.results)
            except (IntegrityError, OperationalError) as error:
                # Someone else appended to a stream this batch touches or claimed one of its event ids, or the file
                # was locked: decide again from the store's new state; items now on record become duplicates.
                if attempt == MAX_ATTEMPTS:
                    raise
                log.warning("ingest batch conflicted (%s), retrying (attempt %d)", type(error).__name__, attempt)
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def refuse(self, raw: RawItem, code: RejectionCode, reason: str, source: Source, position: str | None = None) -> None:
        """Keep an input refused before it reached the per-item path (e.g. an HTTP body that is not JSON)."""
        self.store.append([self._dead_letter(raw, Rejected(code, reason), source, position, self.clock().isoformat())])

    def _dead_letter(
        self, raw: RawItem, rejection: Rejected, source: Source, position: str | None, received_at: str
    ) -> DeadLetter:
        text, digest, size = raw_as_text(raw)
        return DeadLetter(
            raw=text, raw_sha256=digest, raw_bytes=size, code=str(rejection.code), reason=rejection.reason,
            source=source.name, position=position, event_id=best_effort_event_id(raw), received_at=received_at,
        )

    def _decide(self, items: Sequence[RawItem], checked: Sequence[Checked], source: Source,
                positions: Sequence[str | None] | None) -> _Batch:
        recorded_at = self.clock().isoformat()
        batch = _Batch()
        # What deciding needs from the store, in a few indexed queries, without reading any person's stream: the
        # claims of the batch's event ids and of the events it retracts, and the version of each person's stream.
        events = [event for event in checked if isinstance(event, CheckedEvent)]
        targets = [e.document["payload"]["retracted_event_id"] for e in events if e.event_type == "event_retracted"]
        # The retractions (by any agency) of the batch's targets, and those received before the batch's own events,
        # which waited for them.
        known = KnownClaims(self.store.claims([e.event_id for e in events] + targets),
                            self.store.retractions_of(targets + [e.event_id for e in events]))
        stream_ids = {e.id_number: Person.create_id(e.id_number) for e in events}
        versions = self.store.stream_versions(stream_ids.values())

        for index, (raw, event) in enumerate(zip(items, checked)):
            try:
                if isinstance(event, Rejected):
                    raise event
                id_number = event.id_number
                stream_id = stream_ids[id_number]
                recorded = self._recorded(event, recorded_at, source)
                admission = Person.admit(recorded, stream_id, known)
                if admission.duplicate:
                    batch.results.append(ItemResult(index, "duplicate", event.event_id))
                    continue
                for waited, refusal in admission.refused_retractions:  # the event stands; visibly refused
                    batch.dead_letters.append(self._dead_letter(
                        {"event_id": waited.event_id, "retracted_event_id": admission.claim.event_id}, refusal,
                        source, positions[index] if positions is not None else str(index), recorded_at))
                version = versions.get(stream_id)
                if version is None:  # a new person: their stream starts with Registered
                    person = Person(id_number)
                    batch.events.extend(person.collect_events())
                    version = person.version
                versions[stream_id] = version + 1
                batch.events.append(Person.recorded_event(stream_id, version + 1, recorded))
                batch.claims.append(admission.claim)
                known.add(admission.claim)
                batch.results.append(ItemResult(index, "accepted", event.event_id))
            except Exception as error:
                rejection = as_rejection(error, index, source)
                position = positions[index] if positions is not None else str(index)
                dead_letter = self._dead_letter(raw, rejection, source, position, recorded_at)
                batch.dead_letters.append(dead_letter)
                batch.results.append(
                    ItemResult(index, "rejected", dead_letter.event_id, str(rejection.code), rejection.reason)
                )
        return batch

    @staticmethod
    def _recorded(event: CheckedEvent, recorded_at: str, source: Source) -> RecordedEvent:
        document = event.document
        return RecordedEvent(
            event_id=event.event_id,
            event_type=event.event_type,
            schema_version=event.schema_version,
            agency=document["agency"],
            person=document["person"],
            occurred_at=event.occurred_at,
            recorded_at=event.recorded_at or recorded_at,
            case_ref=document["case_ref"],
            payload=document["payload"],
            content_hash=event.content_hash,
            source=source.name,
            ingested_at=recorded_at,
        )
