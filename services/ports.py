"""What the use cases need of the world outside the domain, as small protocols. The adapters implement them
(adapters/eventstore.py over eventsourcing's SQLite, PostgreSQL or in-memory recorders; adapters/sessions.py), and
the composition root (services/bootstrap.py) wires them, so a use case never names a database.

The read side's use cases (queries, replay, audit) work on the read model's and the audit chain's own queries
(adapters/readmodel.py, adapters/chain.py): those are the ports there, indexed SQL that a protocol would only repeat.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Tracking

from domain.person import EventClaim, Person


class IngestStore(Protocol):
    """Where ingest decides and stores a batch: the claims of event ids, the versions of streams, one atomic append."""

    def claims(self, event_ids: Iterable[str]) -> dict[str, EventClaim]: ...

    def retractions_of(self, event_ids: Iterable[str]) -> dict[str, list[EventClaim]]: ...

    def stream_versions(self, stream_ids: Iterable[UUID]) -> dict[UUID, int]: ...

    def append(self, aggregates: Iterable[Any], tracking: Tracking | None = None, events: Iterable[Any] = (),
               claims: Iterable[EventClaim] = ()) -> None: ...


class PersonStore(Protocol):
    def person(self, id_number: str) -> Person | None: ...


class AggregateStore(Protocol):
    """Aggregates by id, and the domain events of one kind in the order they were stored (principals, the access log)."""

    def get_aggregate(self, aggregate_id: UUID) -> Any | None: ...

    def save(self, *aggregates: Any) -> Any: ...

    def events_of_topic(self, topic: str) -> Iterator[Any]: ...


class Session(Protocol):
    @property
    def principal_id(self) -> str: ...

    @property
    def csrf(self) -> str: ...


class SessionStore(Protocol):
    """Dashboard sessions kept on the server: the browser holds only the session id."""

    def open(self, principal_id: str, now_s: int) -> tuple[str, Session]: ...

    def get(self, session_id: str | None, now_s: int) -> Session | None: ...

    def close_session(self, session_id: str) -> None: ...
