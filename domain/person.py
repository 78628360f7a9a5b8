"""The person aggregate: one event stream per person, keyed by an id derived from the resident ID number.

It records every accepted event exactly as published (with when it occurred, when the service learned it, who
published it) and decides what may join the stream (`Person.admit`): an event id is used once, and an event is
retracted only by the agency that published it. A retraction may arrive before the event it retracts: it is
kept, and takes effect when its target arrives (if the target's publisher sent it; see `effective_retractions`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.domain import Aggregate, event

from .errors import Rejected, RejectionCode
from .identity import person_stream_id
from .supervision import effective_retractions

@dataclass(frozen=True)
class RecordedEvent:
    """An accepted event as stored in a person's stream."""

    event_id: str
    event_type: str
    schema_version: int
    agency: dict[str, str]
    person: dict[str, str]
    occurred_at: str  # ISO 8601 with offset, as published
    recorded_at: str  # ISO 8601, set by the service (or carried over by an import)
    case_ref: str | None
    payload: dict[str, Any]
    content_hash: str
    source: str
    # When this service stored it. Equal to recorded_at except for imported legacy records, whose recorded_at is
    # their original one: an audit replay of what the service showed at T uses this.
    ingested_at: str | None = None

    @property
    def publisher(self) -> tuple[str, str]:
        return self.agency["kind"], self.agency["id"]


class Person(Aggregate):
    """A person's stream. `admit` is the one place that decides whether an event joins it (ingest calls it for
    every event, with the store's claims; `record` calls it with the person's own)."""

    @staticmethod
    def create_id(id_number: str) -> uuid.UUID:
        return person_stream_id(id_number)

    @event("Registered")
    def __init__(self, id_number: str):
        self.id_number = id_number
        self.events: list[RecordedEvent] = []
        self.known = KnownClaims()  # the claims of this person's own events

    @property
    def retracted(self) -> dict[str, str]:
        """Retracted event_id -> the event_id of the retraction that took effect."""
        return effective_retractions(self.events)

    def find(self, event_id: str) -> RecordedEvent | None:
        key = event_id.lower()
        return next((e for e in self.events if e.event_id.lower() == key), None)

    @staticmethod
    def admit(recorded: RecordedEvent, stream_id: uuid.UUID, known: KnownClaims) -> Admission:
        """Decide an event for the stream `stream_id`, from what is known of the event ids it names.

        The same event_id with the same content is a duplicate (accepted once, idempotently); with other content a
        conflict. A retraction is refused unless its target's own publisher sends it (`retraction_refusal`); it waits
        when its target is not on record yet. An event whose retractions arrived first says which of them never take
        effect (`pending_retraction_refusal`). Raises Rejected; does not change `known` (the caller adds the claim
        when it stores the event)."""
        key = recorded.event_id.lower()
        on_record = known.by_event_id.get(key)
        if on_record is not None:
            if on_record.content_hash != recorded.content_hash:
                raise Rejected(RejectionCode.CONFLICT,
                               f"event_id {recorded.event_id} is already on record with different content")
            return Admission(duplicate=True)
        claim = EventClaim.of(recorded, stream_id)
        if claim.retracts is not None:
            earlier = known.retractions.get(claim.retracts, ())
            refusal = retraction_refusal(
                recorded.agency, recorded.payload["retracted_event_id"], known.by_event_id.get(claim.retracts),
                stream_id, next((r.event_id for r in earlier if r.publisher == claim.publisher), None))
            if refusal:
                raise refusal
            return Admission(claim=claim)
        refused = [(waiting, refusal) for waiting in known.retractions.get(key, ())
                   if (refusal := pending_retraction_refusal(waiting, claim)) is not None]
        return Admission(claim=claim, refused_retractions=tuple(refused))

    def record(self, recorded: RecordedEvent) -> Admission:
        """Record an event in this person's stream if `admit` accepts it (raises Rejected otherwise)."""
        admission = self.admit(recorded, self.id, self.known)
        if admission.duplicate:
            return admission
        self._record(
            event_id=recorded.event_id,
            event_type=recorded.event_type,
            schema_version=recorded.schema_version,
            agency=recorded.agency,
            person=recorded.person,
            occurred_at=recorded.occurred_at,
            recorded_at=recorded.recorded_at,
            case_ref=recorded.case_ref,
            payload=recorded.payload,
            content_hash=recorded.content_hash,
            source=recorded.source,
            ingested_at=recorded.ingested_at,
        )
        return admission

    @classmethod
    def recorded_event(cls, stream_id: uuid.UUID, version: int, recorded: RecordedEvent) -> Any:
        """The event `record` would add to the person at `version - 1`, made without loading the person.

        Ingest decides duplicates and retractions from the store's event claims (see EventClaim) instead of the
        whole stream, so it need neither read nor keep persons; a concurrent append to the same stream still fails
        on the version."""
        return cls.EventRecorded(  # type: ignore[attr-defined]
            originator_id=stream_id, originator_version=version,
            timestamp=cls.EventRecorded.create_timestamp(),  # type: ignore[attr-defined]
            event_id=recorded.event_id, event_type=recorded.event_type, schema_version=recorded.schema_version,
            agency=recorded.agency, person=recorded.person, occurred_at=recorded.occurred_at,
            recorded_at=recorded.recorded_at, case_ref=recorded.case_ref, payload=recorded.payload,
            content_hash=recorded.content_hash, source=recorded.source, ingested_at=recorded.ingested_at,
        )

    @event("EventRecorded")
    def _record(
        self,
        event_id: str,
        event_type: str,
        schema_version: int,
        agency: dict[str, str],
        person: dict[str, str],
        occurred_at: str,
        recorded_at: str,
        case_ref: str | None,
        payload: dict[str, Any],
        content_hash: str,
        source: str,
        ingested_at: str | None = None,
    ) -> None:
        recorded = RecordedEvent(
            event_id, event_type, schema_version, agency, person, occurred_at, recorded_at, case_ref, payload,
            content_hash, source, ingested_at,
        )
        self.events.append(recorded)
        self.known.add(EventClaim.of(recorded, self.id))


@dataclass(frozen=True, slots=True)
class EventClaim:
    """What the store keeps of every accepted event_id, across all persons: enough to tell a duplicate from a
    conflicting reuse (content hash) and to decide a retraction (whose stream, who published it, what it was)
    without loading the person."""

    event_id: str  # lower case
    content_hash: str
    person_stream: uuid.UUID
    publisher_kind: str
    publisher_id: str
    event_type: str
    retracts: str | None = None  # for an event_retracted: the event_id it retracts

    @property
    def publisher(self) -> tuple[str, str]:
        return self.publisher_kind, self.publisher_id

    @staticmethod
    def of(recorded: RecordedEvent, person_stream: uuid.UUID) -> EventClaim:
        kind, publisher = recorded.publisher
        retracts = recorded.payload["retracted_event_id"].lower() if recorded.event_type == "event_retracted" else None
        return EventClaim(recorded.event_id.lower(), recorded.content_hash, person_stream, kind, publisher,
                          recorded.event_type, retracts)


@dataclass
class KnownClaims:
    """What deciding an event needs to know: the claims of event ids (lower case), and the retractions naming each
    target. Event ids are unique across all persons, so ingest fills this from the store's claims of a whole batch
    (a few indexed queries, no stream read); a Person holds the claims of its own events."""

    by_event_id: dict[str, EventClaim] = field(default_factory=dict)
    retractions: dict[str, list[EventClaim]] = field(default_factory=dict)

    def add(self, claim: EventClaim) -> None:
        self.by_event_id[claim.event_id] = claim
        if claim.retracts is not None:
            self.retractions.setdefault(claim.retracts, []).append(claim)


@dataclass(frozen=True)
class Admission:
    """An admitted event: a duplicate of one on record (nothing to store), or its claim, with the retractions that
    waited for it and never take effect (each with why: kept as dead letters so their publisher sees it)."""

    duplicate: bool = False
    claim: EventClaim | None = None
    refused_retractions: tuple[tuple[EventClaim, Rejected], ...] = ()


def retraction_refusal(
    agency: dict[str, str], retracted_event_id: str, target: EventClaim | None, person_stream: uuid.UUID,
    retracted_by: str | None,
) -> Rejected | None:
    """Why this agency may not retract that event of this person now, or None if it may.

    `target` is the claim of the event to retract (None if it is not on record yet: the retraction is then kept
    and waits for it); `retracted_by` the event_id of this agency's earlier retraction of it, if any. The same test decides,
    when a target arrives after its retraction, whether that retraction takes effect (`pending_retraction_refusal`)."""
    if retracted_by is not None:
        return Rejected(
            RejectionCode.RETRACTION_REFUSED, f"event {retracted_event_id} was already retracted by {retracted_by}",
        )
    if target is None:
        return None
    if target.person_stream != person_stream:
        return Rejected(
            RejectionCode.RETRACTION_REFUSED,
            f"event {retracted_event_id} is on record for another person; a retraction must name the same person",
        )
    if (target.publisher_kind, target.publisher_id) != (agency["kind"], agency["id"]):
        return Rejected(
            RejectionCode.RETRACTION_REFUSED,
            f"event {retracted_event_id} was published by {target.publisher_kind} {target.publisher_id}; "
            "only the original publisher may retract it",
        )
    if target.event_type == "event_retracted":
        return Rejected(RejectionCode.RETRACTION_REFUSED, "a retraction cannot be retracted; publish the event again")
    return None


def pending_retraction_refusal(retraction: EventClaim, target: EventClaim) -> Rejected | None:
    """Why a retraction that arrived before its target does not take effect now that the target is here, or None.

    The fold decides the same from the person's events (`effective_retractions`); this says it when the target
    arrives, so that the refusal is kept as a dead letter and the retracting agency can see it."""
    refusal = retraction_refusal({"kind": retraction.publisher_kind, "id": retraction.publisher_id},
                                 target.event_id, target, retraction.person_stream, None)
    if refusal is None:
        return None
    return Rejected(refusal.code, f"retraction {retraction.event_id} (received before its target) has no effect: "
                                  f"{refusal.reason}")


class DeadLetter(Aggregate):
    """A refused input, kept with its reason so that nothing sent to the service is ever lost."""

    @event("Refused")
    def __init__(
        self,
        raw: str,
        raw_sha256: str,
        raw_bytes: int,
        code: str,
        reason: str,
        source: str,
        position: str | None,
        event_id: str | None,
        received_at: str,
    ):
        self.raw = raw
        self.raw_sha256 = raw_sha256
        self.raw_bytes = raw_bytes
        self.code = code
        self.reason = reason
        self.source = source
        self.position = position
        self.event_id = event_id
        self.received_at = received_at
