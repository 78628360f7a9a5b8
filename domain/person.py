"""The person aggregate: one event stream per person, keyed by an id derived from the resident ID number.

It records every accepted event exactly as published (with when it occurred, when the service learned it, who
published it) and enforces the rules that need the person's own history: an event id is used once, and an event
is retracted only by the agency that published it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from eventsourcing.domain import Aggregate, event

from .errors import Rejected, RejectionCode
from .identity import person_stream_id

RECEIPT_NAMESPACE = uuid.UUID("0e6b3c55-7a39-5c0e-8d6f-2b8f4a1c9d07")


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
    @staticmethod
    def create_id(id_number: str) -> uuid.UUID:
        return person_stream_id(id_number)

    @event("Registered")
    def __init__(self, id_number: str):
        self.id_number = id_number
        self.events: list[RecordedEvent] = []
        self._by_id: dict[str, RecordedEvent] = {}
        self.retracted: dict[str, str] = {}  # retracted event_id -> the retraction's event_id

    def find(self, event_id: str) -> RecordedEvent | None:
        return self._by_id.get(event_id)

    def check_retraction(self, agency: dict[str, str], retracted_event_id: str) -> None:
        """Raise Rejected unless this agency may retract that event of this person now."""
        target = self._by_id.get(retracted_event_id)
        if target is None:
            raise Rejected(
                RejectionCode.RETRACTION_REFUSED,
                f"event {retracted_event_id} is not on record for this person (publish it before retracting it)",
            )
        if target.publisher != (agency["kind"], agency["id"]):
            raise Rejected(
                RejectionCode.RETRACTION_REFUSED,
                f"event {retracted_event_id} was published by {target.agency['kind']} {target.agency['id']}; "
                "only the original publisher may retract it",
            )
        if target.event_type == "event_retracted":
            raise Rejected(RejectionCode.RETRACTION_REFUSED, "a retraction cannot be retracted; publish the event again")
        if retracted_event_id in self.retracted:
            raise Rejected(
                RejectionCode.RETRACTION_REFUSED,
                f"event {retracted_event_id} was already retracted by {self.retracted[retracted_event_id]}",
            )

    def record(self, recorded: RecordedEvent) -> None:
        if recorded.event_id in self._by_id:
            raise Rejected(RejectionCode.CONFLICT, f"event_id {recorded.event_id} is already on record for this person")
        if recorded.event_type == "event_retracted":
            self.check_retraction(recorded.agency, recorded.payload["retracted_event_id"])
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
        self._by_id[recorded.event_id] = recorded
        if recorded.event_type == "event_retracted":
            self.retracted[recorded.payload["retracted_event_id"]] = recorded.event_id


class EventReceipt(Aggregate):
    """Claims an event_id across all persons: a second claim of the same id fails in the store (unique version)."""

    @staticmethod
    def create_id(event_id: str) -> uuid.UUID:
        return uuid.uuid5(RECEIPT_NAMESPACE, event_id.lower())

    @event("Claimed")
    def __init__(self, event_id: str, content_hash: str, person_stream: uuid.UUID):
        self.event_id = event_id
        self.content_hash = content_hash
        self.person_stream = person_stream


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
