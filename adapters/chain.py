"""The audit hash chain: SQL tables beside the event store, and the code that follows the global log into them.

Every notification of the event store's global log becomes one link of one of two chains: `dead_letters` (topic
`DeadLetter.Refused`) or `events` (everything else). A link records the notification's position (its id), what it
was (topic, originator, version), the SHA-256 of its canonical encoding (`event_hash`) and the hash chaining it to
the link before it in the same chain: chain_hash = SHA-256(prev_hash ‖ event_hash) over the raw 32-byte digests,
with 32 zero bytes before the first link. The hashes cover the state bytes exactly as stored, so they work the same
with encryption at rest (they cover the ciphertext).

The service's own writes are linked inside their transaction (`link_in_transaction`); a row it did not write is
never linked by an ordinary write, only reported (docs/audit.md). `AuditChain.extend()` follows the log from the
chains' head, for `handoff audit seal` only. Like the read models' position, the head of each chain (`audit_heads`)
is moved from the value read to the new one in the same transaction that inserts the links, guarded by the value
read: a concurrent extender that lost the race finds the head moved, discards its page and looks again. Links are
keyed by (chain, position), so no position is ever linked twice.

The raw reads of the events table (`EventLog`) bypass eventsourcing on purpose: they must read rows that
eventsourcing would refuse (an originator id that is not a UUID, a state that is not bytes) when someone has
tampered with them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from .config import create_engine
from .eventstore import DEAD_LETTER_TOPIC, EventStore

log = logging.getLogger(__name__)

EVENTS = "events"
DEAD_LETTERS = "dead_letters"
CHAINS = (EVENTS, DEAD_LETTERS)
GENESIS = "0" * 64  # the prev_hash of a chain's first link
HASH_DOMAIN = b"handoff.audit.event.v1"

metadata = sa.MetaData()

links = sa.Table(
    "audit_chain", metadata,
    sa.Column("chain", sa.String(16), primary_key=True),
    sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),  # the notification id
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("originator_id", sa.String(36), nullable=False),
    sa.Column("originator_version", sa.BigInteger, nullable=False),
    sa.Column("event_hash", sa.String(64), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("chain_hash", sa.String(64), nullable=False),
    sa.Column("linked_at", sa.String(40), nullable=False),
    sa.Index("ix_audit_chain_position", "position"),
)

heads = sa.Table(
    "audit_heads", metadata,
    sa.Column("chain", sa.String(16), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),  # of the chain's last link, 0 before the first
    sa.Column("head_hash", sa.String(64), nullable=False),
    sa.Column("links", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

anchors = sa.Table(
    "audit_anchors", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("chain", sa.String(16), nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("head_hash", sa.String(64), nullable=False),
    sa.Column("anchored_at", sa.String(40), nullable=False),
)


# -- hashing (tools/verify_export.py repeats these few lines with the standard library only) ---------------------

def _field(value: bytes) -> bytes:
    return len(value).to_bytes(8, "big") + value


_DOMAIN_FIELD = _field(HASH_DOMAIN)


def event_hash(topic: str, originator_id: str, originator_version: int | str, state: bytes) -> str:
    """SHA-256 over length-prefixed fields: a domain tag, the topic (UTF-8), the originator id (its canonical
    36-character UUID text), the version (decimal) and the state bytes as stored."""
    topic_, originator, version = (topic.encode("utf-8", "surrogatepass"),
                                   originator_id.encode("utf-8", "surrogatepass"),
                                   str(originator_version).encode("utf-8", "surrogatepass"))
    digest = hashlib.sha256(_DOMAIN_FIELD)
    for value in (topic_, originator, version, state):
        digest.update(len(value).to_bytes(8, "big"))
        digest.update(value)
    return digest.hexdigest()


def chain_hash(prev_hash: str, event_hash_: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + bytes.fromhex(event_hash_)).hexdigest()


def chain_of(topic: str | None) -> str:
    return DEAD_LETTERS if topic == DEAD_LETTER_TOPIC else EVENTS


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


# -- the events table, read raw ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One row of the events table as stored (normalised for hashing, never validated)."""

    id: int
    topic: str
    originator_id: str
    originator_version: int | str
    state: bytes

    @classmethod
    def stored(cls, position: int, event: Any) -> Row:
        """The row of an event just written (a StoredEvent or Notification) at this position."""
        return cls(id=position, topic=event.topic, originator_id=_originator_text(event.originator_id),
                   originator_version=event.originator_version, state=_state_bytes(event.state))

    @property
    def event_hash(self) -> str:
        return event_hash(self.topic, self.originator_id, self.originator_version, self.state)

    @property
    def chain(self) -> str:
        return chain_of(self.topic)


_HEX32 = re.compile(r"[0-9a-f]{32}")


def _originator_text(value: Any) -> str:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str) and _HEX32.fullmatch(value):  # SQLite's form, fast (this runs for every row)
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    try:
        return str(UUID(str(value)))
    except ValueError:
        return str(value)  # tampered: not a UUID; hashed as found


def _state_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return bytes(value)


class EventLog:
    """Batched raw reads of eventsourcing's events table (SQLite `stored_events` with the rowid as notification
    id; PostgreSQL `<schema>.handoff_events` with its `notification_id` column)."""

    def __init__(self, store: EventStore):
        self.store = store
        self.recorder = store.recorder
        self.sqlite = store.recorder.dialect == "sqlite"
        table = self.recorder.events_table_name
        if self.sqlite:
            self._columns = "rowid AS id, originator_id, originator_version, topic, state"
            self._from = table
            self._id = "rowid"
        else:
            from psycopg.sql import Identifier

            schema = self.recorder.datastore.schema
            quote = lambda name: Identifier(name).as_string(None)  # noqa: E731
            self._columns = "notification_id AS id, originator_id, originator_version, topic, state"
            self._from = f"{quote(schema)}.{quote(table)}"
            self._id = "notification_id"

    def _query(self, sql: str, params: Sequence[Any]) -> list[Row]:
        if not self.sqlite:
            sql = sql.replace("?", "%s")
        with self.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(sql, list(params))
            rows = cursor.fetchall()
        return [Row(id=int(r["id"]), topic=r["topic"] if r["topic"] is not None else "",
                    originator_id=_originator_text(r["originator_id"]),
                    originator_version=r["originator_version"], state=_state_bytes(r["state"])) for r in rows]

    def page(self, after: int, limit: int, stop: int | None = None) -> list[Row]:
        """Rows with after < id (<= stop), in id order, at most `limit`."""
        if stop is None:
            return self._query(f"SELECT {self._columns} FROM {self._from} WHERE {self._id} > ? "
                               f"ORDER BY {self._id} LIMIT ?", (after, limit))
        return self._query(f"SELECT {self._columns} FROM {self._from} WHERE {self._id} > ? AND {self._id} <= ? "
                           f"ORDER BY {self._id} LIMIT ?", (after, stop, limit))

    def _key(self, originator_id: str) -> Any:
        try:
            uuid = UUID(originator_id)
        except ValueError:
            return originator_id
        return uuid.hex if self.sqlite else uuid

    def find(self, originator_id: str, originator_version: int) -> Row | None:
        """Where the event (originator, version) is now, if anywhere."""
        found = self._query(f"SELECT {self._columns} FROM {self._from} "
                            "WHERE originator_id = ? AND originator_version = ?",
                            (self._key(originator_id), originator_version))
        return found[0] if found else None

    def stream(self, originator_id: UUID) -> list[Row]:
        """Every stored event of one stream, in version order, with its notification id."""
        return self._query(f"SELECT {self._columns} FROM {self._from} WHERE originator_id = ? "
                           "ORDER BY originator_version", (self._key(str(originator_id)),))

    def max_id(self) -> int:
        return self.recorder.max_notification_id() or 0


# -- the chain tables -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Head:
    chain: str
    position: int
    head_hash: str
    links: int


@dataclass(frozen=True)
class Link:
    chain: str
    position: int
    topic: str
    originator_id: str
    originator_version: int
    event_hash: str
    prev_hash: str
    chain_hash: str
    linked_at: str


def _linked(current: dict[str, Head], rows: Sequence[Row]) -> tuple[dict[str, Head], list[tuple]]:
    """The heads after linking these rows (in position order) and the new links, as rows of the links table."""
    new_links, moved = [], dict(current)
    linked_at = now_iso()
    for row in rows:
        head = moved[row.chain]
        digest = row.event_hash
        link_hash = chain_hash(head.head_hash, digest)
        new_links.append((row.chain, row.id, row.topic, row.originator_id, int(row.originator_version), digest,
                          head.head_hash, link_hash, linked_at))
        moved[row.chain] = Head(row.chain, row.id, link_hash, head.links + 1)
    return moved, new_links


class ChainMoved(Exception):
    """Another extender moved a head first; this page's links are discarded (it linked the same rows)."""


def _link(row) -> Link:
    return Link(row.chain, int(row.position), row.topic, row.originator_id, int(row.originator_version),
                row.event_hash, row.prev_hash, row.chain_hash, row.linked_at)


class AuditChain:
    def __init__(self, store: EventStore, database_url: str | None = None, page_size: int = 2000):
        self.store = store
        self.log = EventLog(store)
        self.page_size = page_size
        self.engine = create_engine(database_url or store.database_url)
        if self.engine.dialect.name == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(connection, _record):  # wait for the event store's writer instead of failing at once
                connection.execute("PRAGMA busy_timeout = 30000")
        self._create_tables()
        self._linked_in_transaction_through = 0
        # The chain links what the service writes inside the write's own transaction (both backends): a row that
        # reaches the events table any other way is never linked by an ordinary write (it would launder a forged
        # row into the chain); it stays reported by `audit verify` until an auditor decides (docs/audit.md).
        self.links_in_transaction = database_url in (None, store.database_url) and hasattr(store.recorder, "link_chain")
        if self.links_in_transaction:
            store.recorder.link_chain = self.link_in_transaction
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._mark = mark
        self._select_heads = f"SELECT chain, position, head_hash, links FROM {heads.name}" + (
            "" if mark == "?" else " FOR UPDATE")
        self._update_head = (f"UPDATE {heads.name} SET position = {mark}, head_hash = {mark}, links = {mark}, "
                             f"updated_at = {mark} WHERE chain = {mark}")
        self._insert_links = (f"INSERT INTO {links.name} ({', '.join(c.name for c in links.columns)}) "
                              f"VALUES ({', '.join([mark] * len(links.columns))})")

    def _create_tables(self) -> None:
        # Processes starting at the same moment race to create the tables; PostgreSQL then refuses the loser's
        # CREATE ("tuple concurrently updated", a duplicate type): look again and it is there.
        for attempt in range(5):
            try:
                metadata.create_all(self.engine)
                self._create_heads()
                return
            except sa.exc.DBAPIError:
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _create_heads(self) -> None:
        for name in CHAINS:
            try:
                with self.engine.begin() as connection:
                    if connection.execute(sa.select(heads.c.chain).where(heads.c.chain == name)).first() is None:
                        connection.execute(heads.insert().values(chain=name, position=0, head_hash=GENESIS, links=0,
                                                                 updated_at=now_iso()))
            except sa.exc.IntegrityError:
                pass  # another process created it at the same moment

    def close(self) -> None:
        self.engine.dispose()

    # -- extending ----------------------------------------------------------------------------------------------

    def heads(self) -> dict[str, Head]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(heads)).all()
        found = {row.chain: Head(row.chain, int(row.position), row.head_hash, int(row.links)) for row in rows}
        return {name: found.get(name, Head(name, 0, GENESIS, 0)) for name in CHAINS}

    def link_written(self, recordings: Sequence[Any]) -> int:
        """After a write (EventStore.after_write): link it, from the recordings in hand, when it was not linked in
        its own transaction (a chain in another database) and it follows the head. Never reads the log: rows it did
        not write are not its to link."""
        if not recordings or recordings[-1].notification.id <= self._linked_in_transaction_through:
            return 0  # linked in its own transaction (link_in_transaction)
        written = [Row.stored(r.notification.id, r.notification) for r in recordings]
        start = max(head.position for head in self.heads().values())
        if any(row.id != start + offset for offset, row in enumerate(written, 1)):
            log.warning("rows %d-%d not linked: the log holds rows after the chain's head that this process did "
                        "not write; see `handoff audit verify`", written[0].id, written[-1].id)
            return 0
        return self.extend(written=written)

    def extend(self, stop: int | None = None, written: Sequence[Row] = ()) -> int:
        """Link every notification after the chains' head (up to `stop`); returns how many links were added.

        Idempotent, and safe to call from several processes at once. `written`: rows just stored, used instead of
        reading the log when they are the next positions after the head without a gap."""
        added = 0
        while True:
            current = self.heads()
            start = max(head.position for head in current.values())
            if written and written[-1].id <= start:
                return added  # linked already, in its own transaction (link_in_transaction) or by another extender
            follows = bool(written) and all(row.id == start + offset for offset, row in enumerate(written, 1))
            rows = list(written) if follows else self.log.page(start, self.page_size, stop=stop)
            written = ()
            if not rows:
                return added
            moved, new_links = _linked(current, rows)
            try:
                self._commit(current, moved, new_links)
            except ChainMoved:
                continue  # someone else linked these rows: look again from the new head
            added += len(new_links)
            if follows or len(rows) < self.page_size:
                return added  # the log's end when read: later rows are their writers' to link (or the next call's)

    def link_in_transaction(self, cursor: Any, stored_events: Sequence[Any], notification_ids: Sequence[int]) -> None:
        """Link events inside the transaction that inserts them (called by the recorder, SQLite and PostgreSQL):
        the write and its links commit together. Rows between the head and this write that no link covers were
        not written by the service (a forged insert, or a process without the chain): they are skipped, never
        linked, and `audit verify` reports them. A failure here is rolled back to a savepoint and logged: it never
        fails the write, and verify then reports the write's rows as unchained until `audit seal`."""
        cursor.execute("SAVEPOINT audit_chain")
        try:
            # SQLite: the recorder's transaction holds the write lock. PostgreSQL: it holds the events table's lock
            # (every writer takes it), and FOR UPDATE keeps `audit seal` from moving a head meanwhile.
            cursor.execute(self._select_heads)
            found = {row["chain"]: Head(row["chain"], int(row["position"]), row["head_hash"], int(row["links"]))
                     for row in cursor.fetchall()}
            start = max((head.position for head in found.values()), default=0)
            if set(found) != set(CHAINS) or not notification_ids or min(notification_ids) <= start:
                cursor.execute("RELEASE audit_chain")
                return
            rows = [Row.stored(position, event) for position, event in zip(notification_ids, stored_events)]
            moved, new_links = _linked(found, rows)
            cursor.executemany(self._update_head,
                               [(head.position, head.head_hash, head.links, new_links[0][-1], head.chain)
                                for name, head in moved.items() if head != found[name]])
            cursor.executemany(self._insert_links, new_links)
            cursor.execute("RELEASE audit_chain")
            # Not committed yet: if the write fails, recordings never reach link_written, which reads this.
            self._linked_in_transaction_through = rows[-1].id
        except Exception:
            log.exception("linking in the write's transaction failed; the follower links it after the commit")
            cursor.execute("ROLLBACK TO audit_chain")
            cursor.execute("RELEASE audit_chain")

    def _commit(self, expected: dict[str, Head], new: dict[str, Head], new_links: list[tuple]) -> None:
        try:
            with self.engine.begin() as connection:
                # Every head is moved (or confirmed) under the guard of the value read, so two extenders that read
                # the same head cannot both commit, whichever chains their pages touch.
                for name, old in expected.items():
                    head = new[name]
                    moved = connection.execute(
                        heads.update()
                        .where(heads.c.chain == name, heads.c.position == old.position,
                               heads.c.head_hash == old.head_hash)
                        .values(position=head.position, head_hash=head.head_hash, links=head.links,
                                updated_at=now_iso() if head != old else heads.c.updated_at)
                    ).rowcount
                    if moved != 1:
                        raise ChainMoved(name)
                # The driver's executemany directly: SQLAlchemy's per-row parameter processing cost as much as
                # the rest of extending together.
                connection.exec_driver_sql(self._insert_links, new_links)
        except sa.exc.IntegrityError as error:
            raise ChainMoved(str(error)) from None

    # -- reading ------------------------------------------------------------------------------------------------

    def links_page(self, after: int, limit: int, stop: int | None = None,
                   chains: Iterable[str] = CHAINS) -> list[Link]:
        """Links of these chains with after < position (<= stop), in position order."""
        conditions = [links.c.position > after, links.c.chain.in_(list(chains))]
        if stop is not None:
            conditions.append(links.c.position <= stop)
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(links).where(*conditions).order_by(links.c.position, links.c.chain).limit(limit)).all()
        return [_link(row) for row in rows]

    def stream_is_chained(self, originator_id: UUID) -> bool:
        """Whether every stored event of this stream is the one linked at its position (a principal forged into the
        events table is not)."""
        rows = self.log.stream(originator_id)
        by_chain: dict[str, list[Row]] = {}
        for row in rows:
            by_chain.setdefault(row.chain, []).append(row)
        for chain, chain_rows in by_chain.items():
            linked = self.links_at(chain, [row.id for row in chain_rows])
            if any(row.id not in linked or linked[row.id].event_hash != row.event_hash for row in chain_rows):
                return False
        return bool(rows)

    def links_at(self, chain: str, positions: Iterable[int]) -> dict[int, Link]:
        wanted = sorted(set(positions))
        found: dict[int, Link] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                for row in connection.execute(
                        sa.select(links).where(links.c.chain == chain, links.c.position.in_(chunk))):
                    found[int(row.position)] = _link(row)
        return found

    def next_link(self, chain: str, after: int) -> Link | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(links).where(links.c.chain == chain, links.c.position > after)
                                     .order_by(links.c.position).limit(1)).first()
        return _link(row) if row else None

    def last_link(self, chain: str) -> Link | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(links).where(links.c.chain == chain)
                                     .order_by(links.c.position.desc()).limit(1)).first()
        return _link(row) if row else None

    def links_with_hash(self, chain: str, event_hash_: str) -> list[Link]:
        """Links whose event_hash is this one (a scan: only used to explain a finding)."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(links).where(links.c.chain == chain,
                                                             links.c.event_hash == event_hash_)).all()
        return [_link(row) for row in rows]

    def window(self, chain: str, first: int, last: int, batch: int = 20000) -> list[tuple[int, str]]:
        """(position, event_hash) of the chain's links from `first` to `last`, inclusive."""
        result: list[tuple[int, str]] = []
        after = first - 1
        with self.engine.connect() as connection:
            while True:
                rows = connection.execute(
                    sa.select(links.c.position, links.c.event_hash)
                    .where(links.c.chain == chain, links.c.position > after, links.c.position <= last)
                    .order_by(links.c.position).limit(batch)).all()
                if not rows:
                    return result
                result.extend((int(p), h) for p, h in rows)
                after = int(rows[-1][0])

    # -- anchors ------------------------------------------------------------------------------------------------

    def add_anchors(self, records: Sequence[dict[str, Any]]) -> None:
        with self.engine.begin() as connection:
            connection.execute(anchors.insert(), [dict(record) for record in records])

    def anchors(self, chain: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(anchors).order_by(anchors.c.id)
        if chain:
            query = query.where(anchors.c.chain == chain)
        with self.engine.connect() as connection:
            return [{"chain": r.chain, "position": int(r.position), "head_hash": r.head_hash,
                     "anchored_at": r.anchored_at} for r in connection.execute(query)]
