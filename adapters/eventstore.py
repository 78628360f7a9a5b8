"""The event store: an eventsourcing application over SQLite or PostgreSQL, chosen by the database URL.

It uses a process recorder, so a batch can be stored together with the position of its source (e.g. a Kafka
offset) in one transaction: re-delivery after a crash is then recognised and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Tracking

from domain.person import DeadLetter, EventReceipt, Person

from .config import persistence_env

DEAD_LETTER_TOPIC = f"{DeadLetter.__module__}:{DeadLetter.__qualname__}.Refused"


class EventStore(Application[UUID]):
    # eventsourcing names PostgreSQL tables after the application ("handoff_events"); keep it fixed for subclasses.
    name = "handoff"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = EventStore.name

    def __init__(self, database_url: str, env: dict[str, str] | None = None):
        super().__init__(env={**persistence_env(database_url), **(env or {})})
        self.database_url = database_url

    def construct_recorder(self):  # type: ignore[override]
        return self.factory.process_recorder()

    def _get(self, aggregate_id: UUID) -> Any | None:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def person(self, id_number: str) -> Person | None:
        return self._get(Person.create_id(id_number))

    def receipt(self, event_id: str) -> EventReceipt | None:
        return self._get(EventReceipt.create_id(event_id))

    def append(self, aggregates: Iterable[Aggregate], tracking: Tracking | None = None) -> None:
        """Store the pending events of all aggregates, and the source position if given, in one transaction."""
        processing = ProcessingEvent[UUID](tracking)
        processing.collect_events(*aggregates)
        self._record(processing)

    def source_position(self, source: str) -> int | None:
        """The last stored position of a tracked source (e.g. one Kafka topic partition)."""
        return self.recorder.max_tracking_id(source)

    def dead_letters(self, start: int = 1, limit: int = 100) -> Iterator[DeadLetter]:
        for notification in self.recorder.select_notifications(start, limit, topics=[DEAD_LETTER_TOPIC]):
            yield self.repository.get(notification.originator_id)
