"""Event claims: one row per accepted event_id, written in the same transaction as the event itself.

The event store alone can tell whether an event_id is on record only by reading streams. Ingest needs to know it
for every incoming event, across all persons, so each accepted event also claims its id in a narrow table
(`EventClaim` in domain/person.py): the primary key makes a second claim of the same id fail inside the store's
transaction, exactly like a second writer's version conflict, and a unique (`retracts`, publisher) pair lets an
agency retract an event only once even with concurrent writers. Several agencies may hold a retraction of the same
event id: one that arrived before its target waits for it, and only the target's own publisher's takes effect.

The claims are an index over the person events, not a record of their own: they are not in the audit chain;
`audit verify` re-derives them from the chained events and reports any difference, and `backfill` derives them for
stores written before claims existed.

The recorders below are eventsourcing's process recorders with three additions: `insert_events(..., claims=[...])`
inserts the claims in the transaction that inserts the events and the tracking position; the audit chain links
the written rows in that same transaction (`link_chain`); and on SQLite every write takes the write lock when it
begins and is tried again if the database stays locked. They are selected with eventsourcing's
PROCESS_RECORDER_TOPIC setting (adapters/eventstore.py).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent, Tracking
from eventsourcing.popo import POPOFactory, POPOProcessRecorder
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder, SQLiteTransaction

from domain.person import EventClaim

COLUMNS = "event_id, content_hash, person_stream, publisher_kind, publisher_id, event_type, retracts"
WAL_CHECKPOINT_PAGES = 20_000  # 80 MB of 4 KiB pages
# Lookups are chunked so that a statement's parameter list stays well inside SQLite's and PostgreSQL's limits.
CHUNK = 500


log = logging.getLogger(__name__)
# A write that still finds the database locked after SQLite's busy timeout (30 s, adapters/config.py) is tried again
# this many times, after these pauses: a burst of writers queues up instead of failing.
WRITE_ATTEMPTS = 4
RETRY_PAUSE_SECONDS = 0.2


class _ImmediateTransaction(SQLiteTransaction):
    """`BEGIN IMMEDIATE`: the write lock is taken when the transaction begins, waiting for another writer (the busy
    timeout) if need be. eventsourcing's deferred `BEGIN` takes it only at the first write; a transaction that read
    first (the next notification id, the chain's heads) then fails at once with "database is locked" if another
    writer committed in between, which SQLite cannot wait out."""

    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        return cursor


def _locked(error: BaseException) -> bool:
    cause = error.__cause__ if isinstance(error, OperationalError) else error
    return isinstance(cause, sqlite3.OperationalError) and ("locked" in str(cause) or "busy" in str(cause))


def claims_table_name(events_table_name: str) -> str:
    return events_table_name.replace("events", "event_claims")


def _row(claim: EventClaim, stream: Any) -> tuple:
    return (claim.event_id, claim.content_hash, stream, claim.publisher_kind, claim.publisher_id, claim.event_type,
            claim.retracts)


def _claim(row: Any) -> EventClaim:
    stream = row["person_stream"]
    return EventClaim(row["event_id"], row["content_hash"], stream if isinstance(stream, UUID) else UUID(stream),
                      row["publisher_kind"], row["publisher_id"], row["event_type"], row["retracts"])


def _streams(rows: Iterable[Any]) -> dict[UUID, list[StoredEvent]]:
    streams: dict[UUID, list[StoredEvent]] = {}
    for row in rows:
        originator_id = row["originator_id"]
        stream_id = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
        streams.setdefault(stream_id, []).append(StoredEvent(
            originator_id=stream_id, originator_version=row["originator_version"], topic=row["topic"],
            state=bytes(row["state"])))
    return streams


class SQLiteClaimingRecorder(SQLiteProcessRecorder):
    dialect = "sqlite"

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events"):
        self.claims_table_name = claims_table_name(events_table_name)
        super().__init__(datastore, events_table_name=events_table_name)

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {self.claims_table_name} (event_id TEXT PRIMARY KEY, "
            "content_hash TEXT NOT NULL, person_stream TEXT NOT NULL, publisher_kind TEXT NOT NULL, "
            "publisher_id TEXT NOT NULL, event_type TEXT NOT NULL, retracts TEXT, "
            "UNIQUE (retracts, publisher_kind, publisher_id))",
        ]

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[SQLiteCursor]:
        with self.datastore.get_connection(commit=True) as connection, \
                _ImmediateTransaction(connection, commit=True) as cursor, cursor:
            yield cursor

    def _writing(self, write: Callable[[SQLiteCursor], Any]) -> Any:
        """Run `write` in an immediate transaction, again if the database stayed locked (nothing was written)."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self._write_transaction() as cursor:
                    return write(cursor)
            except (OperationalError, sqlite3.OperationalError) as error:
                if not _locked(error) or attempt == WRITE_ATTEMPTS:
                    raise
                log.warning("database locked, write tried again (attempt %d of %d)", attempt + 1, WRITE_ATTEMPTS)
                time.sleep(RETRY_PAUSE_SECONDS * attempt)

    # Every write of the event store (events with their claims, dead letters, access records, principals, tracking
    # positions) goes through these two.
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        return self._writing(lambda cursor: self._insert_events(cursor, stored_events, **kwargs))

    def insert_tracking(self, tracking: Tracking) -> None:
        self._writing(lambda cursor: self._insert_tracking(cursor, tracking))

    # Set by the audit chain (adapters/chain.py) when its tables live in this database: links each write inside
    # the write's own transaction.
    link_chain: Callable[[SQLiteCursor, Sequence[StoredEvent], Sequence[int]], None] | None = None

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any):
        # A batch of events touches random pages of the stream and claim indexes. SQLite's default checkpoints the
        # WAL into the database file at every 1,000 pages, i.e. after nearly every batch, copying each page once per
        # batch; a longer WAL copies a page once for many batches (ingest 15-20% faster). Commits still sync the
        # WAL: durability is unchanged. Per connection, so set on the writer's connection with each write.
        c.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        claims: Sequence[EventClaim] = kwargs.get("claims") or ()
        if claims:
            c.executemany(f"INSERT INTO {self.claims_table_name} ({COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                          [_row(claim, claim.person_stream.hex) for claim in claims])
        notification_ids = self._insert_stored_events(c, stored_events)
        tracking = kwargs.get("tracking")
        if tracking is not None:  # as eventsourcing's SQLiteProcessRecorder._insert_events, whose loop this replaces
            self._insert_tracking(c, tracking)
        if self.link_chain is not None and stored_events and notification_ids:
            self.link_chain(c, stored_events, notification_ids)
        return notification_ids

    def _insert_stored_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent]) -> list[int]:
        """Insert the events in one executemany, not one execute each as eventsourcing's SQLiteApplicationRecorder
        does (bulk ingest 2-6% faster). Their notification ids are the rowids SQLite gives them: one
        above the largest in the table, each in turn, so consecutive while this transaction holds the write lock;
        checked against the table after the insert all the same."""
        if not stored_events:
            return []
        c.execute(self.select_max_notification_id_statement)
        before = c.fetchone()[0] or 0
        c.executemany(self.insert_events_statement, [
            (s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id, s.originator_version,
             s.topic, s.state) for s in stored_events])
        c.execute(self.select_max_notification_id_statement)
        after = c.fetchone()[0]
        if after != before + len(stored_events):  # never seen; fail the write rather than misnumber the log
            raise RuntimeError(f"notification ids not consecutive: {before} + {len(stored_events)} != {after}")
        return list(range(before + 1, after + 1))

    def select_claims(self, column: str, values: list[str]) -> list[EventClaim]:
        found = []
        for start in range(0, len(values), CHUNK):
            chunk = values[start:start + CHUNK]
            with self.datastore.transaction(commit=False) as c:
                c.execute(f"SELECT {COLUMNS} FROM {self.claims_table_name} "
                          f"WHERE {column} IN ({','.join('?' * len(chunk))})", chunk)
                found += [_claim(row) for row in c.fetchall()]
        return found

    def stream_versions(self, stream_ids: list[UUID]) -> dict[UUID, int]:
        versions = {}
        for start in range(0, len(stream_ids), CHUNK):
            chunk = stream_ids[start:start + CHUNK]
            with self.datastore.transaction(commit=False) as c:
                c.execute(f"SELECT originator_id, MAX(originator_version) AS version FROM {self.events_table_name} "
                          f"WHERE originator_id IN ({','.join('?' * len(chunk))}) GROUP BY originator_id",
                          [stream_id.hex for stream_id in chunk])
                versions.update((UUID(row["originator_id"]), row["version"]) for row in c.fetchall())
        return versions

    def select_streams(self, stream_ids: Sequence[UUID]) -> dict[UUID, list[StoredEvent]]:
        statement = (f"SELECT originator_id, originator_version, topic, state FROM {self.events_table_name} "
                     f"WHERE originator_id IN ({','.join('?' * len(stream_ids))}) "
                     "ORDER BY originator_id, originator_version")
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, [stream_id.hex for stream_id in stream_ids])
            return _streams(cursor.fetchall())

    def select_all_claims(self) -> list[EventClaim]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {COLUMNS} FROM {self.claims_table_name}")
            return [_claim(row) for row in c.fetchall()]

    def count_claims(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT COUNT(*) AS n FROM {self.claims_table_name}")
            return c.fetchone()["n"]

    def has_claims(self) -> bool:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT 1 FROM {self.claims_table_name} LIMIT 1")
            return c.fetchone() is not None


class PostgresClaimingRecorder(PostgresProcessRecorder):
    dialect = "postgres"

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events",
                 tracking_table_name: str = "notification_tracking"):
        super().__init__(datastore, events_table_name=events_table_name, tracking_table_name=tracking_table_name)
        from psycopg.sql import SQL, Identifier

        self.claims_table_name = claims_table_name(events_table_name)
        self.check_identifier_length(self.claims_table_name)
        self._claims = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(self.claims_table_name))
        self._events = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {} (event_id text PRIMARY KEY, content_hash text NOT NULL, "
            "person_stream uuid NOT NULL, publisher_kind text NOT NULL, publisher_id text NOT NULL, "
            "event_type text NOT NULL, retracts text, UNIQUE (retracts, publisher_kind, publisher_id))").format(
                self._claims))

    # Set by the audit chain (adapters/chain.py): links each write inside the write's own transaction.
    link_chain: Callable[[Any, Sequence[StoredEvent], Sequence[int]], None] | None = None

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """eventsourcing's PostgresApplicationRecorder.insert_events, with the chain's links added in the same
        transaction once the notification ids are known (the events table's lock is still held)."""
        if self.datastore.enable_db_functions or self.link_chain is None:
            return super().insert_events(stored_events, **kwargs)
        failure: Exception | None = None
        notification_ids: Sequence[int] | None = None
        with self.datastore.get_connection() as conn:
            with conn.pipeline() as pipeline, conn.transaction():
                with conn.cursor() as curs:
                    self._insert_events(curs, stored_events, **kwargs)
                if stored_events:
                    with conn.cursor() as curs:
                        try:
                            self._insert_stored_events(curs, stored_events, **kwargs)
                            pipeline.sync()  # a uniqueness violation raises here, not at commit
                            notification_ids = self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
                            self.link_chain(curs, stored_events, notification_ids)
                        except Exception as error:  # re-raised once the pipeline has exited (as eventsourcing does)
                            failure = error
            if failure:
                raise failure
        return notification_ids

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        from psycopg.sql import SQL

        claims: Sequence[EventClaim] = kwargs.get("claims") or ()
        if claims:
            curs.executemany(SQL("INSERT INTO {} (" + COLUMNS + ") VALUES (%s,%s,%s,%s,%s,%s,%s)").format(self._claims),
                             [_row(claim, claim.person_stream) for claim in claims])
        super()._insert_events(curs, stored_events, **kwargs)

    def select_claims(self, column: str, values: list[str]) -> list[EventClaim]:
        from psycopg.sql import SQL, Identifier

        statement = SQL("SELECT " + COLUMNS + " FROM {} WHERE {} = ANY(%s)").format(self._claims, Identifier(column))
        found = []
        for start in range(0, len(values), CHUNK):
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(statement, [values[start:start + CHUNK]])
                found += [_claim(row) for row in curs.fetchall()]
        return found

    def stream_versions(self, stream_ids: list[UUID]) -> dict[UUID, int]:
        from psycopg.sql import SQL

        statement = SQL("SELECT originator_id, MAX(originator_version) AS version FROM {} "
                        "WHERE originator_id = ANY(%s) GROUP BY originator_id").format(self._events)
        versions = {}
        for start in range(0, len(stream_ids), CHUNK):
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(statement, [stream_ids[start:start + CHUNK]])
                versions.update((row["originator_id"], row["version"]) for row in curs.fetchall())
        return versions

    def select_streams(self, stream_ids: Sequence[UUID]) -> dict[UUID, list[StoredEvent]]:
        from psycopg.sql import SQL

        statement = SQL("SELECT originator_id, originator_version, topic, state FROM {} "
                        "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version").format(self._events)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, [list(stream_ids)])
            return _streams(curs.fetchall())

    def select_all_claims(self) -> list[EventClaim]:
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT " + COLUMNS + " FROM {}").format(self._claims))
            return [_claim(row) for row in curs.fetchall()]

    def count_claims(self) -> int:
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT COUNT(*) AS n FROM {}").format(self._claims))
            return curs.fetchone()["n"]

    def has_claims(self) -> bool:
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT 1 FROM {} LIMIT 1").format(self._claims))
            return curs.fetchone() is not None


class POPOClaimingRecorder(POPOProcessRecorder):
    """eventsourcing's in-memory process recorder with the claims: the service tests' store (`memory:`)."""

    dialect = "memory"

    def __init__(self) -> None:
        super().__init__()
        self._claims: dict[str, EventClaim] = {}
        self._retracted_by: set[tuple[str, str, str]] = set()

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        claims: Sequence[EventClaim] = kwargs.get("claims") or ()
        ids = [claim.event_id for claim in claims]
        retracting = [(claim.retracts, *claim.publisher) for claim in claims if claim.retracts is not None]
        if len(set(ids)) < len(ids) or any(event_id in self._claims for event_id in ids):
            raise IntegrityError("event_id already claimed")
        if len(set(retracting)) < len(retracting) or self._retracted_by.intersection(retracting):
            raise IntegrityError("event already retracted by this agency")

    def _update_table(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        notification_ids = super()._update_table(stored_events, **kwargs)
        for claim in kwargs.get("claims") or ():
            self._claims[claim.event_id] = claim
            if claim.retracts is not None:
                self._retracted_by.add((claim.retracts, *claim.publisher))
        return notification_ids

    def select_claims(self, column: str, values: list[str]) -> list[EventClaim]:
        wanted = set(values)
        with self._database_lock:
            return [claim for claim in self._claims.values() if getattr(claim, column) in wanted]

    def stream_versions(self, stream_ids: list[UUID]) -> dict[UUID, int]:
        versions = {}
        for stream_id in stream_ids:
            latest = self.select_events(stream_id, desc=True, limit=1)
            if latest:
                versions[stream_id] = latest[0].originator_version
        return versions

    def select_streams(self, stream_ids: Sequence[UUID]) -> dict[UUID, list[StoredEvent]]:
        return {stream_id: list(events) for stream_id in stream_ids if (events := self.select_events(stream_id))}

    def select_all_claims(self) -> list[EventClaim]:
        with self._database_lock:
            return list(self._claims.values())

    def count_claims(self) -> int:
        return len(self._claims)

    def has_claims(self) -> bool:
        return bool(self._claims)


class POPOClaimingFactory(POPOFactory):
    """PERSISTENCE_MODULE of a `memory:` store (eventsourcing resolves a factory class by its topic)."""

    def process_recorder(self) -> POPOClaimingRecorder:
        return POPOClaimingRecorder()


ClaimingRecorder = SQLiteClaimingRecorder | PostgresClaimingRecorder | POPOClaimingRecorder


def claims_by_event_id(recorder: ClaimingRecorder, event_ids: Iterable[str]) -> dict[str, EventClaim]:
    return {claim.event_id: claim for claim in recorder.select_claims("event_id", sorted({i.lower() for i in event_ids}))}


def retractions_of(recorder: ClaimingRecorder, event_ids: Iterable[str]) -> dict[str, list[EventClaim]]:
    """For each of these event ids that some agency has retracted: the claims of those retractions."""
    found: dict[str, list[EventClaim]] = {}
    for claim in recorder.select_claims("retracts", sorted({i.lower() for i in event_ids})):
        if claim.retracts:
            found.setdefault(claim.retracts, []).append(claim)
    return found
