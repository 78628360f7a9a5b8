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
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from eventsourcing.persistence import IntegrityError, OperationalError, Tracking

from adapters.eventstore import EventStore
from domain.authorisation import PublisherIdentity, authorise
from domain.envelope import ParsedEvent, best_effort_event_id, parse_event
from domain.errors import Rejected, RejectionCode
from domain.person import DeadLetter, EventReceipt, Person, RecordedEvent

log = logging.getLogger(__name__)

RawItem = bytes | str | dict[str, Any]

# A dead letter keeps the raw input whole up to this size; beyond it, the head and a SHA-256 of the whole.
MAX_DEAD_LETTER_RAW = 1024 * 1024
# Clocks of agencies' systems drift; an event "occurring" further ahead than this is refused as impossible.
FUTURE_TOLERANCE = dt.timedelta(hours=1)
# Concurrency conflicts (another worker appended to the same person) are resolved by re-running the batch.
MAX_ATTEMPTS = 5


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


# Persons kept in memory between batches (each a few kB): events of one person arrive spread over many batches,
# and re-reading a stream for every batch that touches it dominated ingest. Bounded, so memory stays flat.
PERSON_CACHE_SIZE = int(os.environ.get("HANDOFF_PERSON_CACHE", "5000"))


class Ingestor:
    def __init__(self, store: EventStore, clock: Callable[[], dt.datetime] = utc_now,
                 cache_size: int = PERSON_CACHE_SIZE):
        self.store = store
        self.clock = clock
        self.cache_size = cache_size
        # Current as of our last successful append. Another writer appending to a cached person makes our next
        # append conflict; the batch is then re-run with the cache dropped (optimistic concurrency).
        self._persons: OrderedDict[Any, Person] = OrderedDict()

    def ingest(
        self,
        items: Sequence[RawItem],
        source: Source,
        positions: Sequence[str | None] | None = None,
        tracking: Tracking | None = None,
    ) -> BatchResult:
        """Ingest a batch. `positions` name each item in its source (a line number, an offset) for dead letters."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            results, aggregates = self._process(items, source, positions)
            try:
                self.store.append(aggregates, tracking=tracking)
                self._remember(aggregate for aggregate in aggregates if isinstance(aggregate, Person))
                return BatchResult(results)
            except Exception as error:
                self._persons.clear()  # they may hold events that were not stored
                if not isinstance(error, (IntegrityError, OperationalError)):
                    raise
                # Someone else appended to a stream this batch touches, or the file was locked: start again from
                # the store's new state; items now on record become duplicates.
                if attempt == MAX_ATTEMPTS:
                    raise
                log.warning("ingest batch conflicted (%s), retrying (attempt %d)", type(error).__name__, attempt)
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _remember(self, persons) -> None:
        for person in persons:
            self._persons[person.id] = person
            self._persons.move_to_end(person.id)
        while len(self._persons) > self.cache_size:
            self._persons.popitem(last=False)

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

    def _process(
        self, items: Sequence[RawItem], source: Source, positions: Sequence[str | None] | None
    ) -> tuple[list[ItemResult], list[Any]]:
        now = self.clock()
        recorded_at = now.isoformat()
        claims: dict[str, str] = {}  # event_id -> content hash, for this batch
        receipts: list[EventReceipt] = []
        dead_letters: list[DeadLetter] = []
        results: list[ItemResult] = []

        checked = [self._check(raw, source, now) for raw in items]
        # One read for every receipt and person the batch may touch, instead of one read per item.
        events = [event for event in checked if isinstance(event, ParsedEvent)]
        person_ids = {Person.create_id(e.envelope.person.id_number) for e in events}
        loaded = self.store.aggregates(
            [EventReceipt.create_id(e.event_id) for e in events] + [i for i in person_ids if i not in self._persons]
        )
        loaded.update((i, self._persons[i]) for i in person_ids if i in self._persons)
        persons: dict[Any, Person] = {}

        for index, (raw, event) in enumerate(zip(items, checked)):
            try:
                if isinstance(event, Exception):
                    raise event
                known_hash = claims.get(event.event_id)
                if known_hash is None:
                    receipt = loaded.get(EventReceipt.create_id(event.event_id))
                    known_hash = receipt.content_hash if receipt else None
                if known_hash is not None:
                    if known_hash != event.content_hash:
                        raise Rejected(
                            RejectionCode.CONFLICT,
                            f"event_id {event.event_id} is already on record with different content",
                        )
                    results.append(ItemResult(index, "duplicate", event.event_id))
                    continue
                id_number = event.envelope.person.id_number
                stream_id = Person.create_id(id_number)
                person = persons.get(stream_id) or loaded.get(stream_id) or Person(id_number)
                persons[stream_id] = person
                person.record(self._recorded(event, recorded_at, source))
                receipts.append(EventReceipt(event.event_id, event.content_hash, person.id))
                claims[event.event_id] = event.content_hash
                results.append(ItemResult(index, "accepted", event.event_id))
            except Exception as error:
                rejection = self._as_rejection(error, index, source)
                position = positions[index] if positions is not None else str(index)
                dead_letter = self._dead_letter(raw, rejection, source, position, recorded_at)
                dead_letters.append(dead_letter)
                results.append(
                    ItemResult(index, "rejected", dead_letter.event_id, str(rejection.code), rejection.reason)
                )
        return results, [*persons.values(), *receipts, *dead_letters]

    def _check(self, raw: RawItem, source: Source, now: dt.datetime) -> ParsedEvent | Exception:
        """Parse, validate and authorise one item: the event, or the exception that refuses it."""
        try:
            event = parse_event(raw, allow_recorded_at=source.allow_recorded_at)
            authorise(event, source.publisher)
            self._check_times(event, now)
            return event
        except Exception as error:
            return error

    @staticmethod
    def _as_rejection(error: Exception, index: int, source: Source) -> Rejected:
        """Rejected, or a defect of ours that this input exposed: either way the input is kept and the batch goes
        on; a defect is logged with its traceback for the developers."""
        if isinstance(error, Rejected):
            return error
        log.error("unexpected error ingesting item %d from %s", index, source.name, exc_info=error)
        return Rejected(RejectionCode.UNPROCESSABLE, f"internal error: {type(error).__name__}")

    @staticmethod
    def _check_times(event: ParsedEvent, now: dt.datetime) -> None:
        occurred_at = event.envelope.occurred_at
        if occurred_at > now + FUTURE_TOLERANCE:
            raise Rejected(RejectionCode.INVALID_ENVELOPE, f"occurred_at {occurred_at.isoformat()} is in the future")
        recorded_at = event.envelope.recorded_at
        if recorded_at is not None:
            if recorded_at < occurred_at:
                raise Rejected(RejectionCode.INVALID_ENVELOPE, "recorded_at is before occurred_at")
            if recorded_at > now + FUTURE_TOLERANCE:
                raise Rejected(RejectionCode.INVALID_ENVELOPE, f"recorded_at {recorded_at.isoformat()} is in the future")

    @staticmethod
    def _recorded(event: ParsedEvent, recorded_at: str, source: Source) -> RecordedEvent:
        envelope = event.envelope
        return RecordedEvent(
            event_id=event.event_id,
            event_type=event.event_type,
            schema_version=envelope.schema_version,
            agency=envelope.agency.model_dump(mode="json"),
            person=envelope.person.model_dump(mode="json"),
            occurred_at=envelope.occurred_at.isoformat(),
            recorded_at=envelope.recorded_at.isoformat() if envelope.recorded_at else recorded_at,
            case_ref=envelope.case_ref,
            payload=dict(envelope.payload),
            content_hash=event.content_hash,
            source=source.name,
            ingested_at=recorded_at,
        )
