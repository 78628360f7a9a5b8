"""What the use cases need of the world outside the domain, as small protocols. The adapters implement them
(adapters/eventstore.py over eventsourcing's SQLite, PostgreSQL or in-memory recorders; adapters/sessions.py), and
the composition root (services/bootstrap.py) wires them, so a use case never names a database.

Times cross the read model's port as integer microseconds since the epoch (`domain.calendar.micros`). The audit use
case works on the audit chain itself (adapters/chain.py): verifying it is reading those very tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Tracking

from domain.person import EventClaim, Person
from domain.supervision import PersonView


class IngestStore(Protocol):
    """Where ingest decides and stores a batch: the claims of event ids, the versions of streams, one atomic append."""

    def claims(self, event_ids: Iterable[str]) -> dict[str, EventClaim]: ...

    def retractions_of(self, event_ids: Iterable[str]) -> dict[str, list[EventClaim]]: ...

    def stream_versions(self, stream_ids: Iterable[UUID]) -> dict[UUID, int]: ...

    def append(self, aggregates: Iterable[Any], tracking: Tracking | None = None, events: Iterable[Any] = (),
               claims: Iterable[EventClaim] = ()) -> None: ...


class PersonStore(Protocol):
    def person(self, id_number: str) -> Person | None: ...


class EventLog(Protocol):
    """The event store as the read side's use cases see it: persons, aggregates, and the log's positions."""

    def person(self, id_number: str) -> Person | None: ...

    def get_aggregate(self, aggregate_id: UUID) -> Any | None: ...

    def aggregates(self, stream_ids: Iterable[UUID]) -> dict[UUID, Any]: ...

    def save(self, *aggregates: Any) -> Any: ...

    def originators_of_topic(self, topic: str, page_size: int = 1000) -> Iterator[list[UUID]]: ...

    def head(self) -> int: ...

    def topics_between(self, start: int, stop: int) -> Iterator[str]: ...


class Sealer(Protocol):
    def token(self, id_number: str) -> str: ...


class SupervisionReadModel(Protocol):
    """The projection's tables of persons and obligations in valid and transaction time, queried by region first;
    rows carry their times as microseconds (`*_us`); `known_at_us` None asks as known now; `rule_set` picks the
    rows of the rule set served; `exclude_imported` leaves out the persons with imported records (audit replay refolds
    them)."""

    sealer: Sealer

    def gaps(self, as_of_us: int, states: Iterable[str], region: str | None = None, rule: str | None = None,
             limit: int | None = None, offset: int = 0, agency: str | None = None,
             agency_region: str | None = None, agency_id: str | None = None, known_at_us: int | None = None,
             rule_set: str | None = None, exclude_imported: bool = False) -> list[Any]: ...

    def upcoming(self, from_us: int, until_us: int, region: str | None = None, agency: str | None = None,
                 agency_region: str | None = None, agency_id: str | None = None,
                 rule_set: str | None = None) -> list[Any]: ...

    def persons(self, region: str | None = None, limit: int | None = None, as_of_us: int | None = None,
                known_at_us: int | None = None, rule_set: str | None = None) -> list[Any]: ...

    def register(self, as_of_us: int, known_at_us: int | None = None, region: str | None = None,
                 rule_set: str | None = None) -> list[Any]: ...

    def quarantined(self) -> list[Any]: ...

    def person_counts(self, as_of_us: int, region: str | None = None, known_at_us: int | None = None,
                      rule_set: str | None = None, exclude_imported: bool = False) -> list[Any]: ...

    def open_gap_keys(self, as_of_us: int, region: str | None = None, known_at_us: int | None = None,
                      rule_set: str | None = None, exclude_imported: bool = False) -> list[Any]: ...

    def gaps_of_rules_before(self, rules: Sequence[str], as_of_us: int, region: str | None = None,
                             known_at_us: int | None = None, rule_set: str | None = None,
                             exclude_imported: bool = False) -> list[Any]: ...

    def imported_persons(self, rule_set: str | None = None) -> list[str]: ...


class Projection(Protocol):
    """Keeps the read model current (run by a worker, never by a query), says how current it is, and folds one
    person exactly (Unfoldable when their events cannot be)."""

    def catch_up(self) -> int: ...

    def freshness(self) -> dict[str, Any]: ...

    def serving_rule_set(self) -> str | None: ...

    def fold(self, person: Person, **bitemporal: Any) -> PersonView: ...

    def view_of(self, key: str, as_of: dt.datetime, known_at: dt.datetime | None = None) -> PersonView | None: ...


class AggregateStore(Protocol):
    """Aggregates by id, and the domain events of one kind in the order they were stored (principals, the access
    log)."""

    def get_aggregate(self, aggregate_id: UUID) -> Any | None: ...

    def save(self, *aggregates: Any) -> Any: ...

    def events_of_topic(self, topic: str) -> Iterator[Any]: ...

    def originators_after(self, topics: Sequence[str], start: int, limit: int = 500,
                          stop: int | None = None) -> list[tuple[int, UUID]]: ...

    def head(self) -> int: ...


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
