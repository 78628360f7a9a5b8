"""The event store: an eventsourcing application over SQLite or PostgreSQL, chosen by the database URL.

It uses a process recorder, so a batch can be stored together with the position of its source (e.g. a Kafka
offset) in one transaction: re-delivery after a crash is then recognised and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking

from domain.person import DeadLetter, EventClaim, Person, RecordedEvent

from .claims import ClaimingRecorder, claims_by_event_id, retractions_of
from .config import cipher_env, persistence_env

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC = f"{DeadLetter.__module__}:{DeadLetter.__qualname__}.Refused"
PERSON_EVENT_TOPIC = f"{Person.__module__}:{Person.__qualname__}.EventRecorded"


class EventStore(Application[UUID]):
    # eventsourcing names PostgreSQL tables after the application ("handoff_events"); keep it fixed for subclasses.
    name = "handoff"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = EventStore.name

    def __init__(self, database_url: str, env: dict[str, str] | None = None, cipher_key: str | None = None):
        super().__init__(env={**persistence_env(database_url), **cipher_env(cipher_key), **(env or {})})
        self.database_url = database_url
        # Called with the recordings of every successful write, whoever wrote (ingest, principals, the access log,
        # the rule-set history): the audit chain links what was stored at once.
        self.after_write: list[Callable[[list[Any]], Any]] = []
        self._state_decoder: Any = None  # adapters.fastread.StateDecoder, made when first needed
        self._backfill_claims()

    def _notify(self, recordings: list[Any]) -> None:
        # eventsourcing's hook "called after new aggregate events have been saved" (by `save`; `append` calls it too).
        for listener in self.after_write:
            try:
                listener(recordings)
            except Exception:  # the write stands; the next write (or `handoff audit seal`) catches up
                log.exception("stored, but a follower of the log failed (audit chain); it catches up on the next write")

    def construct_recorder(self):  # type: ignore[override]
        return self.factory.process_recorder()

    def get_aggregate(self, aggregate_id: UUID) -> Any | None:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def person(self, id_number: str) -> Person | None:
        return self.get_aggregate(Person.create_id(id_number))

    @property
    def claiming_recorder(self) -> ClaimingRecorder:
        return self.recorder  # type: ignore[return-value]

    def claims(self, event_ids: Iterable[str]) -> dict[str, EventClaim]:
        """The claims of those event ids that are on record, by lower-case event_id."""
        return claims_by_event_id(self.claiming_recorder, event_ids)

    def retractions_of(self, event_ids: Iterable[str]) -> dict[str, list[EventClaim]]:
        """Retracted event id -> the claims of its retractions (by any agency), for those of these ids that have
        one."""
        return retractions_of(self.claiming_recorder, event_ids)

    def stream_versions(self, stream_ids: Iterable[UUID]) -> dict[UUID, int]:
        """The current version of each stream that exists (one indexed query per 500 ids, no events read)."""
        return self.claiming_recorder.stream_versions(list(dict.fromkeys(stream_ids)))

    def _backfill_claims(self) -> None:
        """Derive the claims of a store written before claims existed, once, from its person events."""
        if self.claiming_recorder.has_claims() or not self.recorder.max_notification_id():
            return
        start, claims = 1, []
        while page := self.recorder.select_notifications(start, 1000, topics=[PERSON_EVENT_TOPIC]):
            for notification in page:
                event = self.mapper.to_domain_event(notification)
                claims.append(EventClaim.of(_recorded_fields(event), event.originator_id))
            start = page[-1].id + 1
        if claims:
            log.warning("deriving %d event claims from the events of a store written before claims existed",
                        len(claims))
            try:
                self.recorder.insert_events([], claims=claims)
            except IntegrityError:
                pass  # another process derived them at the same moment

    def select_streams(self, stream_ids: Iterable[UUID]) -> dict[UUID, list[StoredEvent]]:
        """The stored events of many streams in one query per 500 ids (eventsourcing reads one stream at a time).

        Ingest and the projection read hundreds of streams per batch; one round trip instead of hundreds is most of
        their speed. Streams that do not exist are absent from the result.
        """
        ids = list(dict.fromkeys(stream_ids))
        streams: dict[UUID, list[StoredEvent]] = {}
        for start in range(0, len(ids), 500):
            streams.update(self.claiming_recorder.select_streams(ids[start:start + 500]))
        return streams

    def aggregates(self, stream_ids: Iterable[UUID]) -> dict[UUID, Any]:
        """Many aggregates reconstructed from one batched read (see select_streams)."""
        result = {}
        for stream_id, stored in self.select_streams(stream_ids).items():
            aggregate = None
            for domain_event in map(self.mapper.to_domain_event, stored):
                aggregate = domain_event.mutate(aggregate)
            result[stream_id] = aggregate
        return result

    def append(self, aggregates: Iterable[Aggregate], tracking: Tracking | None = None,
               events: Iterable[Any] = (), claims: Iterable[EventClaim] = ()) -> None:
        """Store in one transaction: the pending events of all aggregates, further new `events` (made without an
        aggregate, e.g. Person.recorded_event), the event `claims` and the source position if given."""
        # Collected directly: Application.save's ProcessingEvent.collect_events checks each object against
        # runtime-checkable protocols, which costs more than the rest of a batch's bookkeeping together.
        pending = [event for aggregate in aggregates for event in aggregate.collect_events()]
        pending.extend(events)
        claims = list(claims)
        recordings = self.events.put(pending, tracking=tracking, **({"claims": claims} if claims else {}))
        self._notify(recordings)

    def events_of_topic(self, topic: str, page_size: int = 1000) -> Iterator[Any]:
        """The stored domain events of one topic (e.g. every principal's creation), in the log's order."""
        start = 1
        while page := self.recorder.select_notifications(start, page_size, topics=[topic]):
            yield from map(self.mapper.to_domain_event, page)
            start = page[-1].id + 1

    def originators_of_topic(self, topic: str, page_size: int = 1000) -> Iterator[list[UUID]]:
        """The aggregate ids of the stored events of one topic (every person's registration: every person), a page
        at a time, in the log's order."""
        start = 1
        while page := self.recorder.select_notifications(start, page_size, topics=[topic]):
            yield [notification.originator_id for notification in page]
            start = page[-1].id + 1

    def originators_after(self, topics: Sequence[str], start: int, limit: int = 500,
                          stop: int | None = None) -> list[tuple[int, UUID]]:
        """(position, aggregate id) of the stored events of these topics from position `start` on (to `stop`), at
        most `limit`."""
        return [(notification.id, notification.originator_id)
                for notification in self.recorder.select_notifications(start, limit, stop=stop, topics=list(topics))]

    def log_states(self, topics: Sequence[str], start: int, limit: int,
                   stop: int | None = None) -> list[tuple[int, str, dict[str, Any]]]:
        """(position, topic, the event's attributes as plain values) of the stored events of these topics from
        position `start` on, at most `limit`: a follower of the log that counts, without a domain event each."""
        if self._state_decoder is None:
            from .fastread import StateDecoder

            self._state_decoder = StateDecoder(self.mapper)
        decode = self._state_decoder.decode
        return [(notification.id, notification.topic, decode(notification.state))
                for notification in self.recorder.select_notifications(start, limit, stop=stop, topics=list(topics))]

    def head(self) -> int:
        """The position of the last stored event in the log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def topics_between(self, start: int, stop: int, page_size: int = 500) -> Iterator[str]:
        """The topics of the stored events at positions start..stop, in order."""
        while start <= stop and (page := self.recorder.select_notifications(start, page_size, stop=stop)):
            yield from (notification.topic for notification in page)
            start = page[-1].id + 1

    def source_position(self, source: str) -> int | None:
        """The last stored position of a tracked source (e.g. one Kafka topic partition)."""
        return self.recorder.max_tracking_id(source)

    def dead_letters(self, start: int = 1, limit: int = 100) -> Iterator[DeadLetter]:
        for notification in self.recorder.select_notifications(start, limit, topics=[DEAD_LETTER_TOPIC]):
            yield self.repository.get(notification.originator_id)


def _recorded_fields(event: Any) -> RecordedEvent:
    """A stored Person.EventRecorded as the RecordedEvent it carries."""
    return RecordedEvent(**{name: getattr(event, name) for name in RecordedEvent.__dataclass_fields__
                            if hasattr(event, name)})
