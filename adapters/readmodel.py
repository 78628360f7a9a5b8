"""Read models in SQL (SQLite or PostgreSQL via SQLAlchemy Core): persons and their obligations, with the
projection's position stored in the same transaction as the rows it produced (exactly once)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, NamedTuple

import sqlalchemy as sa


from domain.calendar import micros, moment_of_micros
from domain.identity import normalised_case_ref, normalised_name
from domain.merging import Link
from domain.leads import LeadFilter

from .config import create_engine

metadata = sa.MetaData()

# Personal data at rest: `person_key` is the ID number itself, or with a key (HANDOFF_CIPHER_KEY) a keyed token;
# `id_number` and `name` are then AES-GCM ciphertext (see Sealer). Regions, rules and times stay in clear: they
# are what oversight counts and filters on, and identify nobody.
# The region columns compare byte by byte (PostgreSQL's "C" collation; SQLite's default), so that a region prefix
# is a range of an index (`_in_region`), not a LIKE no index serves.
REGION = sa.String(6).with_variant(sa.String(6, collation="C"), "postgresql")


def _versioned() -> list[sa.Column]:
    """The row's number among the person's rows (domain/bitemporal.Version.number: the projector closes a row in
    place by it), and both times of the row as microseconds since the epoch; NULL is an open end. A row answers
    for (as_of T, known_at K) when valid_from <= T < valid_to and known_from <= K < known_to; rows known now have
    known_to NULL."""
    return [sa.Column("number", sa.Integer, nullable=False),
            sa.Column("valid_from_us", sa.BigInteger, nullable=False), sa.Column("valid_to_us", sa.BigInteger),
            sa.Column("known_from_us", sa.BigInteger, nullable=False), sa.Column("known_to_us", sa.BigInteger)]


# Personal data at rest: `person_key` is the ID number itself, or with a key (HANDOFF_CIPHER_KEY) a keyed token;
# `id_number` and `name` are then AES-GCM ciphertext (see Sealer). Regions, rules and times stay in clear: they
# are what oversight counts and filters on, and identify nobody. Each table holds every version of a person's
# rows, and the rows of each rule set being served or built (`rule_set`).
persons = sa.Table(
    "rm_persons", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("person_key", sa.String(64), nullable=False, index=True),
    sa.Column("id_number", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("region", REGION),
    sa.Column("status", sa.String(32)),
    sa.Column("responsible_kind", sa.String(16)),
    sa.Column("responsible_region", sa.String(6)),
    sa.Column("received_us", sa.BigInteger),  # enrolment time of the current episode, microseconds since epoch
    sa.Column("ended", sa.String(16)),
    sa.Column("ended_us", sa.BigInteger),
    sa.Column("category", sa.String(24)),
    # The decision's number (案号) as compared, keyed like the name: a search by it finds the person.
    sa.Column("case_key", sa.Text),
    # The decision organ's id (an agency's code, not personal data): a court's roster is compared with its decisions.
    sa.Column("decided_by", sa.Text),
    sa.Column("rule_set", sa.Text, nullable=False),
    # Why the fold could not process this person's events (status `quarantined`), else NULL: the person is kept
    # out of every figure until the cause is mended, and everyone else is projected as usual.
    sa.Column("problem", sa.Text),
    # Some of this person's events were stored later than their recorded_at (imported legacy records): what the
    # service showed at a past moment then differs from what it knew by that moment, so audit replay refolds them.
    sa.Column("imported", sa.Boolean, nullable=False, default=False),
    *_versioned(),
    # The name as compared (domain.identity.normalised_name), keyed like person_key: a search by name finds the
    # person without opening every sealed name.
    sa.Column("name_key", sa.Text, nullable=False, default=""),
    sa.Index("ix_rm_persons_region_valid", "region", "valid_from_us"),
    sa.Index("ix_rm_persons_name_key", "name_key"),
    sa.Index("ix_rm_persons_case_key", "case_key"),
    sa.Index("ix_rm_persons_decided_by", "decided_by"),
)
p_ = persons.c
# The counts of a region as known now read this index alone (it holds every column they need): the current rows
# are about half of all, and the database does not visit the table.
# (known_to_us, NULL in all of them, is there too: SQLite counts an index as covering only if it holds every column
# the query names, the one of the index's own condition included.)
sa.Index("ix_rm_persons_now", p_.region, p_.valid_to_us, p_.valid_from_us, p_.rule_set, p_.status, p_.received_us,
         p_.ended, p_.category, p_.known_to_us, sqlite_where=p_.known_to_us.is_(None),
         postgresql_where=p_.known_to_us.is_(None))

obligations = sa.Table(
    "rm_obligations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("person_key", sa.String(64), nullable=False, index=True),
    sa.Column("id_number", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("region", REGION),
    sa.Column("rule", sa.String(40), nullable=False),
    sa.Column("triggered_by", sa.String(64), nullable=False),
    sa.Column("obligated_kind", sa.String(16), nullable=False),
    sa.Column("obligated_id", sa.Text),
    sa.Column("obligated_region", sa.String(6)),
    sa.Column("due_at", sa.Text),
    sa.Column("due_us", sa.BigInteger),
    sa.Column("fulfilled_at", sa.Text),
    sa.Column("fulfilled_us", sa.BigInteger),
    # When this row is (or will be) a gap: due_us, or NULL when it is a gap at no moment (met in time, or no longer
    # holding by its due time). Only these rows can ever be open or late.
    sa.Column("gap_us", sa.BigInteger),
    sa.Column("rule_set", sa.Text, nullable=False),
    # The due time was counted over a year whose 调休 notice is not known yet (domain/calendar.py): it may move.
    sa.Column("provisional", sa.Boolean, nullable=False),
    # Why an anomaly was raised when its rule alone does not say (A10: whose jurisdiction it was), else NULL.
    sa.Column("reason", sa.Text),
    sa.Column("imported", sa.Boolean, nullable=False, default=False),  # as in rm_persons
    *_versioned(),
)
o_ = obligations.c
# The rows that were gaps while they were believed: a row superseded (known_to) before its due time is a gap only
# to a question about a moment later than what it asks to be known (known_at < as_of). Most superseded rows are
# such (an obligation met in time, recorded after its trigger), so the gap queues read indexes of these rows only,
# whose size follows the gaps, not the persons.
BELIEVED_GAP = sa.or_(o_.known_to_us.is_(None), o_.known_to_us > o_.gap_us)
# What a count of a region's open gaps reads (open_gap_keys), besides region and gap_us: the region's index covers it.
GAP_COUNTED = (o_.fulfilled_us, o_.valid_from_us, o_.valid_to_us, o_.known_from_us, o_.known_to_us, o_.rule_set,
               o_.imported, o_.rule, o_.person_key)
for name, columns in (("region", (o_.region,)), ("rule", (o_.rule,)), ("all", ())):
    # The gap queue of a region (most overdue first), of a rule, or of everyone.
    where = sa.and_(o_.gap_us.is_not(None), BELIEVED_GAP)
    sa.Index(f"ix_rm_obligations_gaps_{name}" + ("_counted" if name == "region" else ""), *columns, o_.gap_us,
             *(GAP_COUNTED if name == "region" else ()), sqlite_where=where, postgresql_where=where)
# Every row that may be a gap, for the rare question known_at < as_of; and what falls due soon (known now).
sa.Index("ix_rm_obligations_gap_us", o_.region, o_.gap_us)
# A lead's gap, found by its id (domain.leads.lead_id: the rule's code and the triggering event).
sa.Index("ix_rm_obligations_trigger", o_.triggered_by)
CURRENT = o_.known_to_us.is_(None)
sa.Index("ix_rm_obligations_due", o_.due_us, sqlite_where=CURRENT, postgresql_where=CURRENT)

# Every region a row was written for (a few thousand at most, nationally): a page of a region prefix is read as the
# pages of its regions, each in the order of its index (see ReadModel.gaps), and this says which regions there are.
regions = sa.Table("rm_regions", metadata, sa.Column("region", REGION, primary_key=True))

# Where each projector stands in the event log, per rule set: the rule set served is the newest complete one, so a
# new rule set is built beside the old, which serves until the new one has caught up (`complete`).
positions = sa.Table(
    "rm_positions", metadata,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("rule_set", sa.Text, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False, default=False),
    # When the projector last stood at the log's head (microseconds): how stale the answers may be while behind.
    sa.Column("caught_up_us", sa.BigInteger),
)

# The lead register (domain/leads.py): each lead's state after each of its actions, valid from the action's time
# until the next one's (`to_us` NULL: the lead's state now). Only leads someone acted on have rows; every other
# gap is a lead in state `new`. Derived from the leads' streams (projection `leads` in rm_positions).
lead_versions = sa.Table(
    "rm_lead_versions", metadata,
    sa.Column("lead_id", sa.String(80), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("person_key", sa.String(64), nullable=False),
    sa.Column("rule", sa.String(40), nullable=False),
    sa.Column("triggered_by", sa.String(64), nullable=False),
    sa.Column("region", REGION),
    sa.Column("from_us", sa.BigInteger, nullable=False),
    sa.Column("to_us", sa.BigInteger),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("snoozed_until_us", sa.BigInteger),  # snoozed while the moment is earlier
    sa.Column("assignee", sa.String(64)),
    sa.Column("assignee_name", sa.Text),
    sa.Column("notice_event", sa.String(64)),  # the procuratorial_notice_issued event, whose reply fulfils R16
    sa.Column("escalated_to", sa.String(6)),
    sa.Column("pending", sa.String(16)),  # the action waiting for a supervisor
    sa.Column("updated_by", sa.Text),
    sa.Index("ix_rm_lead_versions_gap", "person_key", "rule", "triggered_by", "from_us"),
    sa.Index("ix_rm_lead_versions_assignee", "assignee"),
)
l_ = lead_versions.c

# What each agency published and had refused, per day the service received it (Asia/Shanghai): events published,
# backdated ones (recorded more than 24 h after they occurred) and refusals by code (`measure`: published,
# backdated or refused:<code>). Counted by the day of receipt, a month's figures as known at its end never change.
# Derived from the log (projection `publications` in rm_positions).
publications = sa.Table(
    "rm_publications", metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("agency_kind", sa.String(16), primary_key=True),
    sa.Column("agency_id", sa.String(200), primary_key=True),
    sa.Column("region", REGION, primary_key=True),
    sa.Column("measure", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)


# Who is who (domain/merging.py): every identity link and unlink on record, by the keys it joins (tokens, as the
# persons' rows key them, and sealed). Written by the supervision projection with the rows of the stream holding the
# event; read to find the keys a person's history must be folded with.
identity_links = sa.Table(
    "rm_identity_links", metadata,
    sa.Column("link_id", sa.String(80), primary_key=True),  # the event's id (a retraction's, for its undoing)
    sa.Column("linked", sa.Boolean, nullable=False),
    sa.Column("source_key", sa.String(200), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("target_key", sa.String(200), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
    sa.Index("ix_rm_identity_links_source", "source_key"),
    sa.Index("ix_rm_identity_links_target", "target_key"),
)


# Who each person key is, for finding probable matches (the same normalised name and birth date under different
# keys: services/identity.py): one row per key, its name and birth date as keyed tokens, its current region.
identities = sa.Table(
    "rm_identities", metadata,
    sa.Column("person_key", sa.String(200), primary_key=True),
    sa.Column("id_number", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_key", sa.String(200), nullable=False),
    sa.Column("birth_key", sa.String(200)),
    sa.Column("region", REGION),
    sa.Index("ix_rm_identities_match", "name_key", "birth_key"),
)


class Sealer:
    """Seals the personal fields of read-model rows when a key is configured; passes them through otherwise.

    The ID number gets a keyed token (HMAC-SHA256) that joins and deletes use, and both ID number and name are
    stored as AES-GCM ciphertext that only holders of the key can open."""

    PREFIX = "gcm:"

    def __init__(self, key_b64: str | None = None):
        self.key = base64.b64decode(key_b64) if key_b64 else None
        self._aead = None
        if self.key:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(self.key)

    def token(self, id_number: str) -> str:
        if not self.key:
            return id_number
        return hmac.new(self.key, id_number.encode(), hashlib.sha256).hexdigest()[:40]

    def name_token(self, name: str) -> str:
        """The key of a name as compared (normalised), for searching by name."""
        return self.token("name:" + normalised_name(name))

    def case_token(self, case_ref: str) -> str:
        """The key of a case number (案号) as compared: full-width brackets and digits as half-width, no spaces."""
        return self.token("case:" + normalised_case_ref(case_ref))

    def seal(self, text: str) -> str:
        if self._aead is None:
            return text
        nonce = os.urandom(12)
        return self.PREFIX + base64.b64encode(nonce + self._aead.encrypt(nonce, text.encode(), None)).decode()

    def open(self, text: str) -> str:
        if not text.startswith(self.PREFIX):
            return text
        if self._aead is None:
            raise ValueError("read model holds sealed personal data: set HANDOFF_CIPHER_KEY")
        data = base64.b64decode(text[len(self.PREFIX):])
        return self._aead.decrypt(data[:12], data[12:], None).decode()


QUARANTINED = "quarantined"  # the status of a person whose events the fold could not process


class PositionMoved(Exception):
    """Another projector advanced the position first; this page's work is discarded (it did the same)."""


# The columns a projection supplies for a person and for each obligation, after the personal ones (person_key,
# id_number, name), which `ReadModel.apply` fills in (sealed when a key is set).
PERSONAL_COLUMNS = ("person_key", "id_number", "name")
VERSION_COLUMNS = ("number", "valid_from_us", "valid_to_us", "known_from_us", "known_to_us")
PERSON_COLUMNS = ("region", "status", "responsible_kind", "responsible_region", "received_us", "ended", "ended_us",
                  "category", "case_key", "decided_by", "rule_set", "problem", "imported", *VERSION_COLUMNS)
# The projection gives the decision's number (案号) in this column; `apply` stores its key (Sealer.case_token).
CASE_KEY = PERSON_COLUMNS.index("case_key")
OBLIGATION_COLUMNS = ("region", "rule", "triggered_by", "obligated_kind", "obligated_id", "obligated_region",
                      "due_at", "due_us", "fulfilled_at", "fulfilled_us", "gap_us", "rule_set", "provisional", "reason",
                      "imported", *VERSION_COLUMNS)


LEADS_PROJECTION = "leads"
PUBLICATIONS_PROJECTION = "publications"


# The orders of a gap page, on the columns of the rows' table (or of a subquery of them).
_GAP_ORDERS: dict[str, Callable[[Any], tuple]] = {
    "due": lambda c: (c.gap_us, c.person_key, c.rule, c.triggered_by),
    "-due": lambda c: (c.gap_us.desc(), c.person_key, c.rule, c.triggered_by),
    "rule": lambda c: (c.rule, c.gap_us, c.person_key, c.triggered_by),
    "region": lambda c: (c.region, c.gap_us, c.person_key, c.rule, c.triggered_by),
}


class PersonRows(NamedTuple):
    """One person's read-model rows: plain tuples (cheap to build, to send between processes and to insert)."""

    id_number: str
    name: str
    persons: list[tuple]  # values of PERSON_COLUMNS, one tuple per version
    obligations: list[tuple]  # values of OBLIGATION_COLUMNS, one tuple per version of an obligation
    # True: the rows opened since the person's last write, and (below) the rows written then that are closed now,
    # as (known_to_us, number): written by inserting the first and closing the second in place, as rows, once
    # closed, never change. False: all of the person's rows, replacing whatever the read model has of them.
    changes_only: bool = False
    person_closures: Sequence[tuple[int, int]] = ()
    obligation_closures: Sequence[tuple[int, int]] = ()
    links: Sequence[Link] = ()  # the identity links and unlinks in the person's stream (domain/merging.py)
    birth_date: str | None = None  # ISO date, from the document number or as published beside it


class ReadModel:
    def __init__(self, database_url: str, sealer: Sealer | None = None):
        self.sealer = sealer or Sealer()
        self.engine = create_engine(database_url)
        if self.engine.dialect.name == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(connection, _record):  # wait for the event store's writer instead of failing at once
                connection.execute("PRAGMA busy_timeout = 30000")
        self._set_up_schema()
        self._add_regions = _insert_ignoring_duplicates(self.engine.dialect, regions)
        self._add_links_statement = _insert_ignoring_duplicates(self.engine.dialect, identity_links)
        self._index_identity = _upsert_identities(self.engine.dialect)
        self._known_regions: set[str] = set()  # written by this process: no need to write them again
        self._insert_persons = _insert_statement(self.engine.dialect, persons,
                                                 PERSONAL_COLUMNS + PERSON_COLUMNS + ("name_key",))
        self._insert_obligations = _insert_statement(self.engine.dialect, obligations,
                                                     PERSONAL_COLUMNS + OBLIGATION_COLUMNS)

    def _set_up_schema(self) -> None:
        """Check the tables and create (or drop and create) them in one transaction that holds the database's write
        lock: processes starting together (an API and the projector's shares) never see another's half-made
        schema, which would look like an older one and be dropped under the other's feet. Read models are derived
        data: a table of an older shape is dropped and rebuilt from the event log."""
        with self._schema_lock() as connection:
            if not self._schema_is_current(connection):
                metadata.drop_all(connection)
            metadata.create_all(connection)

    @contextlib.contextmanager
    def _schema_lock(self) -> Iterator[sa.Connection]:
        if self.engine.dialect.name == "sqlite":
            # pysqlite commits before each DDL statement unless the connection leaves transactions to us.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.exec_driver_sql("ROLLBACK")
                    raise
                connection.exec_driver_sql("COMMIT")
            return
        with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":  # DDL is transactional; this serialises the check too
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(726570001)"))
            yield connection

    def _schema_is_current(self, connection: sa.Connection) -> bool:
        inspector = sa.inspect(connection)
        present = [inspector.has_table(table.name) for table in metadata.sorted_tables]
        if any(present) and not all(present):
            return False  # a table added since: the rows it would derive from are in the others, so all go
        for table in metadata.sorted_tables:
            if inspector.has_table(table.name):
                existing = {column["name"] for column in inspector.get_columns(table.name)}
                if existing != set(table.columns.keys()):
                    return False
                if {index["name"] for index in inspector.get_indexes(table.name)} != {i.name for i in table.indexes}:
                    return False  # rows of a shape these indexes assume, perhaps not the stored ones
        return True

    def close(self) -> None:
        self.engine.dispose()

    def drop(self) -> None:
        """Empty every table in one transaction: a reader meanwhile sees the old rows or none, never a missing
        table (PostgreSQL's TRUNCATE is transactional; SQLite empties a table deleted without WHERE at once)."""
        self._known_regions = set()
        with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                connection.execute(sa.text("TRUNCATE " + ", ".join(t.name for t in metadata.sorted_tables)))
            else:
                for table in metadata.sorted_tables:
                    connection.execute(table.delete())

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Load many rows into the (freshly dropped) tables: the obligations' secondary indexes are dropped meanwhile
        and built once at the end, which is cheaper than maintaining them row by row. They are rebuilt even if the
        load fails; queries meanwhile are correct, only slower."""
        secondary = list(obligations.indexes)
        with self.engine.begin() as connection:
            for index in secondary:
                index.drop(connection, checkfirst=True)
        try:
            yield
        finally:
            with self.engine.begin() as connection:
                for index in secondary:
                    index.create(connection, checkfirst=True)

    def refresh_statistics(self) -> None:
        """Gather the tables' statistics, from which the database chooses an index per query: without them SQLite
        reads a region's gaps through the index of every obligation row (a hundred times the rows) rather than
        through the small index of the gaps. PostgreSQL's autovacuum gathers them too, later."""
        with self.engine.begin() as connection:
            for table in metadata.sorted_tables:  # the read model's own (on SQLite the file holds the events too)
                connection.exec_driver_sql(f"ANALYZE {table.name}")

    # -- positions ---------------------------------------------------------------------------------------------

    def position(self, projection: str, rule_set: str) -> tuple[int, bool]:
        """Where the projector of this rule set stands in the log (0: not started), and whether it completed."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(positions.c.position, positions.c.complete)
                .where(positions.c.projection == projection, positions.c.rule_set == rule_set)).first()
        return (row.position, bool(row.complete)) if row else (0, False)

    def serving(self, projection: str) -> tuple[str | None, int, int | None]:
        """The rule set whose rows answer (the complete one; before any completed, the one being built), its
        position and when it last stood at the log's head (microseconds, None if never). A projection run as
        shares (`projection/K:N`) stands where its furthest-behind share stands, and is complete when all are."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(positions.c.rule_set, positions.c.position, positions.c.complete, positions.c.caught_up_us)
                .where(_of_projection(projection))).all()
        if not rows:
            return None, 0, None
        by_rule_set: dict[str, list] = {}
        for row in rows:
            by_rule_set.setdefault(row.rule_set, []).append(row)
        standing = [(all(r.complete for r in shares), min(r.position for r in shares), rule_set,
                     None if any(r.caught_up_us is None for r in shares) else min(r.caught_up_us for r in shares))
                    for rule_set, shares in by_rule_set.items()]
        _, position, rule_set, caught_up_us = max(standing, key=lambda s: (s[0], s[1]))
        return rule_set, position, caught_up_us

    def adopt(self, projection: str, rule_set: str, names: Sequence[str]) -> bool:
        """Positions for the shares `names` of `projection`, taken over from rows of this rule set stored under
        other names (the projection run as another number of shares): every new share starts where the
        furthest-behind old one stood, so no event is skipped (persons of shares that were ahead are folded again,
        which changes nothing). False when there was nothing to take over."""
        with self.engine.begin() as connection:
            rows = connection.execute(
                sa.select(positions.c.projection, positions.c.position, positions.c.complete, positions.c.caught_up_us)
                .where(_of_projection(projection), positions.c.rule_set == rule_set)).all()
            others = [row for row in rows if row.projection not in names]
            if not others:
                return False
            position = min(row.position for row in others)
            complete = all(row.complete for row in others)
            caught_up = None if any(r.caught_up_us is None for r in others) else min(r.caught_up_us for r in others)
            connection.execute(positions.delete().where(
                positions.c.projection.in_([row.projection for row in others]), positions.c.rule_set == rule_set))
            present = {row.projection for row in rows}
            for name in names:
                if name not in present:
                    connection.execute(positions.insert().values(
                        projection=name, rule_set=rule_set, position=position, complete=complete,
                        caught_up_us=caught_up))
        return True

    def apply(self, projection: str, rule_set: str, expected: int, new: int, rows: Sequence[PersonRows],
              replace: bool = True, caught_up_us: int | None = None) -> None:
        """Replace the rows of these persons (of this rule set) and move the position from `expected` to `new`,
        atomically; `caught_up_us`: the position is the log's head, reached at that moment.

        `replace=False`: the persons have no rows yet (a rebuild into freshly dropped tables, each person once), so
        nothing is deleted first. During `bulk_load` the obligations' person_key index is gone, and each delete
        would scan every obligation loaded so far: quadratic in the store's size."""
        with self.engine.begin() as connection:
            where = (positions.c.projection == projection, positions.c.rule_set == rule_set)
            values: dict[str, Any] = {"position": new}
            if caught_up_us is not None:
                values["caught_up_us"] = caught_up_us
            moved = connection.execute(
                positions.update().where(*where, positions.c.position == expected).values(**values)).rowcount
            if moved == 0:
                if expected != 0 or connection.execute(sa.select(positions.c.position).where(*where)).first():
                    raise PositionMoved(projection)
                connection.execute(positions.insert().values(projection=projection, rule_set=rule_set,
                                                             complete=False, **values))
            if not rows:
                return
            self._add_links(connection, [link for r in rows for link in r.links])
            sealer = self.sealer
            # Sealed once per person: every row of a person carries the same key already, so sharing the
            # ciphertext across them tells nothing more.
            personal = [(sealer.token(r.id_number), sealer.seal(r.id_number), sealer.seal(r.name)) for r in rows]
            name_keys = [(sealer.name_token(r.name),) for r in rows]
            self._index_identities(connection, rows, personal, name_keys)
            if replace:
                keys = [key for (key, _, _), r in zip(personal, rows) if not r.changes_only]
                for chunk in _chunks(keys, 500):
                    for table in (obligations, persons):
                        connection.execute(table.delete().where(table.c.person_key.in_(chunk),
                                                                table.c.rule_set == rule_set))
            for table, closures in ((persons, [(known_to, key, rule_set, number) for (key, _, _), r in
                                               zip(personal, rows) for known_to, number in r.person_closures]),
                                    (obligations, [(known_to, key, rule_set, number) for (key, _, _), r in
                                                   zip(personal, rows) for known_to, number in r.obligation_closures])):
                if closures:
                    connection.execute(_CLOSE[table.name], [dict(zip(_CLOSE_PARAMETERS, c))
                                                            for c in closures])
            person_rows = [sealed + _with_case_key(p, sealer) + name_key
                           for sealed, name_key, r in zip(personal, name_keys, rows) for p in r.persons]
            obligation_rows = [sealed + o for sealed, r in zip(personal, rows) for o in r.obligations]
            # The region is the first column of both tables' rows.
            written_regions = {row[3] for row in person_rows} | {row[3] for row in obligation_rows}
            written_regions.discard(None)
            if written_regions - self._known_regions:
                connection.execute(self._add_regions, [{"region": region} for region in sorted(written_regions)])
                self._known_regions |= written_regions
            if person_rows:
                self._insert_persons(connection, person_rows)
            if obligation_rows:
                self._insert_obligations(connection, obligation_rows)

    def _add_links(self, connection: sa.Connection, links: Sequence[Link]) -> None:
        if not links:
            return
        token, seal = self.sealer.token, self.sealer.seal
        connection.execute(self._add_links_statement, [
            {"link_id": link.event_id.lower(), "linked": link.linked, "source_key": token(link.source),
             "source": seal(link.source), "target_key": token(link.target), "target": seal(link.target),
             "recorded_at_us": micros(link.recorded_at)} for link in links])

    def _index_identities(self, connection: sa.Connection, rows: Sequence[PersonRows],
                          personal: Sequence[tuple[str, str, str]], name_keys: Sequence[tuple[str]]) -> None:
        """Each person's row of rm_identities, from the tokens and seals `apply` made for their rows."""
        region_at, known_to, valid_to = (PERSON_COLUMNS.index(column)
                                         for column in ("region", "known_to_us", "valid_to_us"))
        values = {}
        for (key, id_number, name), (name_key,), r in zip(personal, name_keys, rows):
            region = next((p[region_at] for p in reversed(r.persons) if p[known_to] is None and p[valid_to] is None),
                          None)
            values[key] = {"person_key": key, "id_number": id_number, "name": name, "name_key": name_key,
                           "birth_key": self.sealer.token("birth:" + r.birth_date) if r.birth_date else None,
                           "region": region}
        connection.execute(self._index_identity, list(values.values()))

    def identity_names(self, keys: Iterable[str]) -> dict[str, str]:
        """The name each of these person keys was last published under (those on record)."""
        tokens = {self.sealer.token(key): key for key in keys}
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(identities.c.person_key, identities.c.name).where(
                identities.c.person_key.in_(list(tokens)))).all()
        return {tokens[row.person_key]: self.sealer.open(row.name) for row in rows}

    def probable_matches(self) -> list[list[dict[str, Any]]]:
        """Groups of person keys with the same normalised name and birth date: each key with its name and region."""
        opened = self.sealer.open
        with self.engine.connect() as connection:
            shared = sa.select(identities.c.name_key, identities.c.birth_key).where(
                identities.c.birth_key.is_not(None)).group_by(identities.c.name_key, identities.c.birth_key).having(
                sa.func.count() > 1).subquery()
            rows = connection.execute(sa.select(identities).join(shared, sa.and_(
                identities.c.name_key == shared.c.name_key, identities.c.birth_key == shared.c.birth_key))).all()
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault((row.name_key, row.birth_key), []).append(
                {"id_number": opened(row.id_number), "name": opened(row.name), "region": row.region})
        return [sorted(members, key=lambda m: m["id_number"]) for _, members in sorted(groups.items())]

    def identity_links(self, keys: Iterable[str] | None) -> list[Link]:
        """Every identity link and unlink joining these person keys to others, directly or through others (the
        whole group they were ever part of); None: all of them."""
        token = self.sealer.token
        wanted, seen, found = set(), set(), {}
        with self.engine.connect() as connection:
            if connection.execute(sa.select(identity_links.c.link_id).limit(1)).first() is None:
                return []  # nobody linked anywhere: the common case, one cheap query
            if keys is None:
                found = {row.link_id: row for row in connection.execute(sa.select(identity_links))}
            else:
                wanted = {token(key) for key in keys}
            while wanted - seen:
                batch = list(wanted - seen)
                seen |= set(batch)
                for chunk in _chunks(batch, 500):
                    for row in connection.execute(sa.select(identity_links).where(sa.or_(
                            identity_links.c.source_key.in_(chunk), identity_links.c.target_key.in_(chunk)))):
                        found[row.link_id] = row
                        wanted |= {row.source_key, row.target_key}
        opened = self.sealer.open
        return [Link(row.link_id, bool(row.linked), opened(row.source), opened(row.target),
                     moment_of_micros(row.recorded_at_us)) for row in found.values()]

    def complete(self, projection: str, rule_set: str) -> None:
        """The rows of `rule_set` are complete for this projection (or share of one): once every share of the
        projection is, they serve from now on, and those of any other rule set go."""
        family = projection.split("/", 1)[0]
        with self.engine.begin() as connection:
            connection.execute(positions.update().where(positions.c.projection == projection,
                                                        positions.c.rule_set == rule_set).values(complete=True))
            if connection.execute(sa.select(positions.c.projection).where(
                    _of_projection(family), positions.c.rule_set == rule_set,
                    sa.not_(positions.c.complete)).limit(1)).first():
                return  # another share is still building
            for table in (obligations, persons):
                connection.execute(table.delete().where(table.c.rule_set != rule_set))
            connection.execute(positions.delete().where(_of_projection(family),
                                                        positions.c.rule_set != rule_set))

    def _opened(self, rows) -> list[SimpleNamespace]:
        """Rows as attribute objects with the personal fields readable again."""
        opened = []
        for row in rows:
            values = dict(row._mapping)
            values["id_number"] = self.sealer.open(values["id_number"])
            values["name"] = self.sealer.open(values["name"])
            opened.append(SimpleNamespace(**values))
        return opened

    # -- queries ----------------------------------------------------------------------------------------------
    # Every query answers for a moment `as_of_us` as known at `known_at_us` (None: as known now) from the rows of
    # one rule set (`rule_set`; None: whatever rows there are), filtered by region first.

    @staticmethod
    def _holding(table: sa.Table, as_of_us: int, known_at_us: int | None, rule_set: str | None,
                 exclude_imported: bool = False) -> list[Any]:
        c = table.c
        conditions = [c.valid_from_us <= as_of_us, sa.or_(c.valid_to_us.is_(None), c.valid_to_us > as_of_us)]
        if exclude_imported:
            conditions.append(c.imported.is_(False))
        if known_at_us is None:
            conditions.append(c.known_to_us.is_(None))
        else:
            conditions += [c.known_from_us <= known_at_us,
                           sa.or_(c.known_to_us.is_(None), c.known_to_us > known_at_us)]
        if rule_set is not None:
            conditions.append(c.rule_set == rule_set)
        return conditions

    def gaps(self, as_of_us: int, states: Iterable[str], region: str | None = None, rule: str | None = None,
             limit: int | None = None, offset: int = 0, agency: str | None = None,
             agency_region: str | None = None, agency_id: str | None = None, known_at_us: int | None = None,
             rule_set: str | None = None, exclude_imported: bool = False, leads: LeadFilter | None = None,
             order: str = "due") -> list[SimpleNamespace]:
        """Gaps in `order`: "due" (most overdue first, then person, rule, trigger), "-due", "rule" or "region";
        `leads` keeps those whose lead is in a state, assigned to someone or of some persons (the lead register)."""
        o = obligations.c
        conditions = self._gap_conditions(as_of_us, states, rule, agency, agency_region, agency_id, known_at_us,
                                          rule_set, exclude_imported, leads)
        of_leads = self._lead_conditions(leads, rule_set) if leads is not None else None
        if of_leads:
            rows = self._gap_rows(conditions, region)
            query = sa.select(rows).where(*of_leads(rows.c)).order_by(*_GAP_ORDERS[order](rows.c)).offset(offset)
        elif region and limit is not None and order == "due":
            # Each region's page in the order of its gap index, then the first rows of those pages: a database
            # reads a page's worth of rows per region, where a range over the prefix would sort all of its gaps.
            pages = [sa.select(obligations).where(*conditions, o.region == code).order_by(*_GAP_ORDERS[order](o))
                     .limit(offset + limit).subquery() for code in self._regions_under(region)]
            if not pages:
                return []
            merged = sa.union_all(*(sa.select(page) for page in pages)).subquery()
            query = sa.select(merged).order_by(*_GAP_ORDERS[order](merged.c)).offset(offset)
        else:
            if region:  # the regions' codes, each an equality on the index, so that gap_us is a range of it too
                conditions.append(o.region.in_(self._regions_under(region)))
            query = sa.select(obligations).where(*conditions).order_by(*_GAP_ORDERS[order](o)).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return self._opened(connection.execute(query))

    def count_gaps(self, as_of_us: int, states: Iterable[str], region: str | None = None, rule: str | None = None,
                   agency: str | None = None, agency_region: str | None = None, agency_id: str | None = None,
                   known_at_us: int | None = None, rule_set: str | None = None,
                   leads: LeadFilter | None = None) -> int:
        """How many gaps `gaps` would list without a limit."""
        conditions = self._gap_conditions(as_of_us, states, rule, agency, agency_region, agency_id, known_at_us,
                                          rule_set, False, leads)
        of_leads = self._lead_conditions(leads, rule_set) if leads is not None else None
        if of_leads:
            rows = self._gap_rows(conditions, region)
            query = sa.select(sa.func.count()).select_from(rows).where(*of_leads(rows.c))
        else:
            if region:
                conditions.append(obligations.c.region.in_(self._regions_under(region)))
            query = sa.select(sa.func.count()).select_from(obligations).where(*conditions)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def _gap_rows(self, conditions: list[Any], region: str | None) -> Any:
        """The gap rows of the conditions, gathered first (a region's gaps are a few thousand at most), so that
        the conditions on their leads are tested on them alone, not on every row of the index range."""
        if region:
            conditions = [*conditions, obligations.c.region.in_(self._regions_under(region))]
        return sa.select(obligations).where(*conditions).cte("gap_rows").prefix_with("MATERIALIZED")

    def _gap_conditions(self, as_of_us: int, states: Iterable[str], rule: str | None, agency: str | None,
                        agency_region: str | None, agency_id: str | None, known_at_us: int | None,
                        rule_set: str | None, exclude_imported: bool, leads: LeadFilter | None) -> list[Any]:
        o = obligations.c
        conditions = self._holding(obligations, as_of_us, known_at_us, rule_set, exclude_imported)
        wanted = set(states)
        # A fulfilment after as_of is not yet one (domain.bitemporal.ObligationFacts.visible_at).
        open_ = sa.and_(o.gap_us < as_of_us, sa.or_(o.fulfilled_us.is_(None), o.fulfilled_us > as_of_us))
        late = sa.and_(o.gap_us.is_not(None), o.fulfilled_us <= as_of_us)
        if known_at_us is None or known_at_us >= as_of_us:
            conditions.append(BELIEVED_GAP)  # implied here; it lets the database read the gaps' small indexes
        if wanted == {"open"}:
            conditions.append(open_)
        elif wanted == {"late"}:
            conditions.append(late)
        else:
            conditions += [o.gap_us < as_of_us, sa.or_(open_, late)]
        if rule:
            conditions.append(o.rule == rule)
        conditions += self._agency_conditions(agency, agency_region, agency_id)
        if leads is not None and leads.person_keys is not None:
            conditions.append(o.person_key.in_(leads.person_keys))
        return conditions

    # -- the lead register ------------------------------------------------------------------------------------

    @staticmethod
    def _lead_at(at_us: int) -> list[Any]:
        """The versions of leads that hold at `at_us`."""
        return [l_.from_us <= at_us, sa.or_(l_.to_us.is_(None), l_.to_us > at_us)]

    @staticmethod
    def _snoozed(at_us: int) -> Any:
        return sa.and_(sa.func.coalesce(l_.snoozed_until_us, 0) > at_us, l_.state != "closed")

    @staticmethod
    def _replied(at_us: int, reply_rule: str, rule_set: str | None) -> Any:
        """The notice issued from the lead (`l_.notice_event`) was replied by `at_us`: its reply obligation is met."""
        reply = obligations.alias("reply")
        r = reply.c
        return sa.exists().where(r.person_key == l_.person_key, r.rule == reply_rule,
                                 r.triggered_by == l_.notice_event, r.fulfilled_us <= at_us,
                                 *ReadModel._holding(reply, at_us, None, rule_set))

    def _leads_in_state(self, state: str, at_us: int, reply_rule: str, rule_set: str | None) -> Any:
        """The condition on a lead version (holding at `at_us`) of being in `state` as shown then
        (domain.leads.Lead.effective_state)."""
        snoozed = self._snoozed(at_us)
        if state == "snoozed":
            return snoozed
        if state in ("replied", "notice_issued"):
            replied = self._replied(at_us, reply_rule, rule_set)
            return sa.and_(sa.not_(snoozed), l_.state == "notice_issued",
                           replied if state == "replied" else sa.not_(replied))
        return sa.and_(l_.state == state, sa.not_(snoozed))

    def _lead_conditions(self, leads: LeadFilter, rule_set: str | None) -> Callable[[Any], list[Any]] | None:
        """The conditions of a register query on the leads of gap rows (given their columns), or None when it
        asks nothing of the leads. A state other than new, or an assignee, is a set of gap keys read from the
        leads' own table: the leads acted on are few beside the gaps."""
        if leads.assignee is None and leads.state is None:
            return None
        at_us = leads.at_us
        acted = sa.select(l_.person_key, l_.rule, l_.triggered_by).where(*self._lead_at(at_us))

        def conditions(g: Any) -> list[Any]:
            keys = sa.tuple_(g.person_key, g.rule, g.triggered_by)
            found: list[Any] = []
            if leads.assignee is not None:
                found.append(keys.in_(acted.where(l_.assignee == leads.assignee)))
            if leads.state == "new":
                # Never acted on, or acted on and still new (assigned only), and not snoozed.
                found.append(sa.not_(sa.exists().where(
                    l_.person_key == g.person_key, l_.rule == g.rule, l_.triggered_by == g.triggered_by,
                    *self._lead_at(at_us), sa.or_(l_.state != "new", self._snoozed(at_us)))))
            elif leads.state is not None:
                found.append(keys.in_(acted.where(
                    self._leads_in_state(leads.state, at_us, leads.reply_rule, rule_set))))
            return found
        return conditions

    def lead_counts(self, at_us: int, region: str | None, reply_rule: str, rule_set: str | None) -> dict[str, int]:
        """How many leads of the region's gaps (open or late at `at_us`) are in each state other than new, as
        shown then; the rest are new."""
        o = obligations.c
        conditions = [*self._gap_conditions(at_us, ("open", "late"), None, None, None, None, None, rule_set, False,
                                            None),
                      l_.person_key == o.person_key, l_.rule == o.rule, l_.triggered_by == o.triggered_by,
                      *self._lead_at(at_us)]
        if region:
            conditions.append(o.region.in_(self._regions_under(region)))
        shown = sa.case((self._snoozed(at_us), "snoozed"),
                        (sa.and_(l_.state == "notice_issued", self._replied(at_us, reply_rule, rule_set)), "replied"),
                        else_=l_.state)
        query = sa.select(shown.label("state"), sa.func.count()).select_from(lead_versions).join(
            obligations, sa.and_(l_.person_key == o.person_key)).where(*conditions).group_by(shown)
        with self.engine.connect() as connection:
            return {row[0]: int(row[1]) for row in connection.execute(query)}

    def lead_versions_of(self, lead_ids: Sequence[str], at_us: int | None = None) -> dict[str, SimpleNamespace]:
        """The version of each lead holding at `at_us` (None: its current one)."""
        if not lead_ids:
            return {}
        conditions: list[Any] = [l_.lead_id.in_(list(lead_ids))]
        if at_us is None:
            conditions.append(l_.to_us.is_(None))
        else:
            conditions += self._lead_at(at_us)
        with self.engine.connect() as connection:
            return {row.lead_id: SimpleNamespace(**row._mapping)
                    for row in connection.execute(sa.select(lead_versions).where(*conditions))}

    def gap_of_lead(self, triggered_by: str, rule: str, as_of_us: int, known_at_us: int | None = None,
                    rule_set: str | None = None) -> SimpleNamespace | None:
        """The obligation row of a lead at a moment, whatever its state (None: there is none then)."""
        o = obligations.c
        query = sa.select(obligations).where(o.triggered_by == triggered_by, o.rule == rule,
                                             *self._holding(obligations, as_of_us, known_at_us, rule_set))
        with self.engine.connect() as connection:
            rows = self._opened(connection.execute(query.limit(1)))
        return rows[0] if rows else None

    def person_keys_named(self, text: str) -> list[str]:
        """The keys of the persons of this name, or of a decision of this number (案号), both compared
        normalised, whatever their region."""
        p = persons.c
        query = sa.select(p.person_key).distinct().where(sa.or_(
            p.name_key == self.sealer.name_token(text), p.case_key == self.sealer.case_token(text)))
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def write_leads(self, position: int, new_position: int, versions: Sequence[dict[str, Any]]) -> bool:
        """Replace the versions of the leads given (all of each one's versions) and move the register's position
        from `position` to `new_position`, atomically; False (and nothing written) when another writer moved the
        position first."""
        with self.engine.begin() as connection:
            if not _move_position(connection, LEADS_PROJECTION, position, new_position):
                return False
            ids = sorted({v["lead_id"] for v in versions})
            for chunk in _chunks(ids, 500):
                connection.execute(lead_versions.delete().where(l_.lead_id.in_(chunk)))
            if versions:
                connection.execute(lead_versions.insert(), list(versions))
            return True

    def lead_outcomes(self, region: str | None, rule_set: str | None) -> list[SimpleNamespace]:
        """Per lead acted on (of a region prefix): its rule, whether it was ever confirmed or dismissed, when it was
        closed (None: open) and when its gap fell due (None: the gap is gone)."""
        o = obligations.c
        conditions = [_in_region(l_.region, region)] if region else []
        ever = sa.select(l_.lead_id, l_.rule, l_.person_key, l_.triggered_by,
                         sa.func.max(sa.case((l_.state == "confirmed", 1), else_=0)).label("confirmed"),
                         sa.func.max(sa.case((l_.state == "dismissed", 1), else_=0)).label("dismissed"),
                         sa.func.max(sa.case((l_.state == "closed", l_.from_us), else_=None)).label("closed_us")) \
            .where(*conditions).group_by(l_.lead_id, l_.rule, l_.person_key, l_.triggered_by).subquery()
        due = sa.select(sa.func.min(o.due_us)).where(
            o.person_key == ever.c.person_key, o.rule == ever.c.rule, o.triggered_by == ever.c.triggered_by,
            o.known_to_us.is_(None), *([o.rule_set == rule_set] if rule_set else [])).scalar_subquery()
        query = sa.select(ever.c.lead_id, ever.c.rule, ever.c.confirmed, ever.c.dismissed, ever.c.closed_us,
                          due.label("due_us"))
        with self.engine.connect() as connection:
            return [SimpleNamespace(**row._mapping) for row in connection.execute(query)]

    def leads_position(self) -> int:
        return self.position(LEADS_PROJECTION, "")[0]

    # -- the monthly scorecard (services/scorecard.py) ----------------------------------------------------------

    def publications_position(self) -> int:
        return self.position(PUBLICATIONS_PROJECTION, "")[0]

    def add_publications(self, position: int, new_position: int, counts: Mapping[tuple, int]) -> bool:
        """Add counts keyed (day, agency_kind, agency_id, region, measure) and move the position, atomically; False
        (nothing written) when another writer moved it first."""
        with self.engine.begin() as connection:
            if not _move_position(connection, PUBLICATIONS_PROJECTION, position, new_position):
                return False
            if counts:
                rows = [dict(zip(("day", "agency_kind", "agency_id", "region", "measure"), key), count=count)
                        for key, count in counts.items()]
                if self.engine.dialect.name == "postgresql":
                    from sqlalchemy.dialects.postgresql import insert as upsert
                else:
                    from sqlalchemy.dialects.sqlite import insert as upsert
                insert = upsert(publications)
                connection.execute(insert.on_conflict_do_update(
                    index_elements=["day", "agency_kind", "agency_id", "region", "measure"],
                    set_={"count": publications.c.count + insert.excluded.count}), rows)
            return True

    def publication_counts(self, first_day: str, last_day: str, region: str | None) -> list[SimpleNamespace]:
        """(agency_kind, agency_id, region, measure, count) over the days first..last (ISO dates), of a region
        prefix's agencies."""
        c = publications.c
        conditions = [c.day >= first_day, c.day <= last_day]
        if region:
            conditions.append(_in_region(c.region, region))
        query = (sa.select(c.agency_kind, c.agency_id, c.region, c.measure, sa.func.sum(c.count).label("count"))
                 .where(*conditions).group_by(c.agency_kind, c.agency_id, c.region, c.measure))
        with self.engine.connect() as connection:
            return [SimpleNamespace(**row._mapping) for row in connection.execute(query)]

    def obligations_due(self, from_us: int, to_us: int, known_at_us: int, rule_set: str | None,
                        region: str | None) -> list[SimpleNamespace]:
        """The obligations that fell due in [from, to) as they stood at `to` as known at `known_at` (rows of a region
        prefix's persons): obligated_kind, obligated_id, obligated_region, rule, due_us, fulfilled_us and whether
        they were a gap (`gap`: met late, or still open)."""
        o = obligations.c
        conditions = [*self._holding(obligations, to_us - 1, known_at_us, rule_set), o.due_us >= from_us,
                      o.due_us < to_us]
        if region:
            conditions.append(o.region.in_(self._regions_under(region)))
        query = sa.select(o.obligated_kind, o.obligated_id, o.obligated_region, o.rule, o.due_us, o.fulfilled_us,
                          o.gap_us.is_not(None).label("gap")).where(*conditions)
        with self.engine.connect() as connection:
            return [SimpleNamespace(**row._mapping) for row in connection.execute(query)]

    def _regions_under(self, prefix: str | None) -> list[str]:
        """The regions rows were written for whose code starts with `prefix` (None: all of them)."""
        query = sa.select(regions.c.region).order_by(regions.c.region)
        if prefix:
            query = query.where(_in_region(regions.c.region, prefix))
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def open_gap_keys(self, as_of_us: int, region: str | None = None, known_at_us: int | None = None,
                      rule_set: str | None = None, exclude_imported: bool = False) -> list[sa.Row]:
        """(region, rule, person_key) of each gap open at as_of: what the regional figures count, read from the
        gap index alone when there is a region."""
        o = obligations.c
        conditions = [*self._holding(obligations, as_of_us, known_at_us, rule_set, exclude_imported),
                      o.gap_us < as_of_us, sa.or_(o.fulfilled_us.is_(None), o.fulfilled_us > as_of_us)]
        if known_at_us is None or known_at_us >= as_of_us:
            conditions.append(BELIEVED_GAP)
        if region:
            conditions.append(o.region.in_(self._regions_under(region)))
        with self.engine.connect() as connection:
            return list(connection.execute(sa.select(o.region, o.rule, o.person_key).where(*conditions)))

    @staticmethod
    def _agency_conditions(agency: str | None, agency_region: str | None, agency_id: str | None = None) -> list[Any]:
        """Obligations borne by an agency kind, and/or by agencies of a region prefix; with `agency_id`, by that one
        agency of the kind and (exact) region (domain.authorisation.bears)."""
        o = obligations.c
        conditions = []
        if agency:
            conditions.append(o.obligated_kind == agency)
        if agency_id:
            conditions.append(sa.or_(o.obligated_id == agency_id,
                                     sa.and_(o.obligated_id.is_(None), o.obligated_region == agency_region)))
        elif agency_region:
            conditions.append(o.obligated_region.startswith(agency_region, autoescape=True))
        return conditions

    def upcoming(self, from_us: int, until_us: int, region: str | None = None, agency: str | None = None,
                 agency_region: str | None = None, agency_id: str | None = None,
                 rule_set: str | None = None) -> list[SimpleNamespace]:
        o = obligations.c
        conditions = [*self._holding(obligations, from_us, None, rule_set), o.due_us >= from_us,
                      o.due_us <= until_us, sa.or_(o.fulfilled_us.is_(None), o.fulfilled_us > from_us),
                      *self._agency_conditions(agency, agency_region, agency_id)]
        if region:
            conditions.append(_in_region(o.region, region))
        with self.engine.connect() as connection:
            return self._opened(connection.execute(
                sa.select(obligations).where(*conditions).order_by(o.due_us, o.person_key, o.rule, o.triggered_by)))

    def persons(self, region: str | None = None, limit: int | None = None, as_of_us: int | None = None,
                known_at_us: int | None = None, rule_set: str | None = None) -> list[SimpleNamespace]:
        """The persons (of a region) as of a moment (None: their latest rows), personal fields opened; `limit`: at
        most that many, in person_key order (keys are keyed hashes, so that is a sample across regions)."""
        p = persons.c
        if as_of_us is None:
            conditions = [p.valid_to_us.is_(None), p.known_to_us.is_(None)]
            if rule_set is not None:
                conditions.append(p.rule_set == rule_set)
        else:
            conditions = self._holding(persons, as_of_us, known_at_us, rule_set)
        if region:
            conditions.append(_in_region(p.region, region))
        query = sa.select(persons).where(*conditions)
        if limit is not None:
            query = query.order_by(p.person_key).limit(limit)
        with self.engine.connect() as connection:
            return self._opened(connection.execute(query))

    def register(self, as_of_us: int, known_at_us: int | None = None, region: str | None = None,
                 rule_set: str | None = None) -> list[sa.Row]:
        """(status, category, in the register, how many) of the persons of a region as of a moment."""
        p = persons.c
        in_register = sa.and_(p.received_us.is_not(None), p.received_us <= as_of_us,
                              sa.or_(p.ended.is_(None), p.ended.not_in(("discharged", "committed", "deceased"))))
        flag = sa.case((in_register, True), else_=False)
        conditions = self._holding(persons, as_of_us, known_at_us, rule_set)
        if region:
            conditions.append(_in_region(p.region, region))
        query = (sa.select(p.status, p.category, flag.label("in_register"), sa.func.count().label("count"))
                 .where(*conditions).group_by(p.status, p.category, flag))
        with self.engine.connect() as connection:
            return list(connection.execute(query))

    # -- what a roster is compared with (services/rosters.py) ------------------------------------------------------

    _IN_REGISTER = sa.and_(p_.received_us.is_not(None),
                           sa.or_(p_.ended.is_(None), p_.ended.not_in(("discharged", "committed", "deceased"))))

    def decisions(self, as_of_us: int, known_at_us: int | None, rule_set: str | None,
                  decided_by: str | None = None, person_keys: Sequence[str] | None = None) -> list[SimpleNamespace]:
        """The decisions on record by `as_of` (as known at `known_at`) of an organ or of some persons: person_key,
        id_number, name, region, decided_by, case_key and `effective_us` (the first moment the record shows it)."""
        p = persons.c
        conditions = [p.valid_from_us <= as_of_us, p.decided_by.is_not(None)]
        conditions += self._known(persons, known_at_us, rule_set)
        if decided_by is not None:
            conditions.append(p.decided_by == decided_by)
        query = (sa.select(p.person_key, sa.func.min(p.id_number).label("id_number"),
                           sa.func.min(p.name).label("name"), sa.func.max(p.region).label("region"), p.decided_by,
                           p.case_key, sa.func.min(p.valid_from_us).label("effective_us"))
                 .group_by(p.person_key, p.decided_by, p.case_key))
        return self._by_keys(query, conditions, p.person_key, person_keys)

    def shown_at(self, as_of_us: int, known_at_us: int | None, rule_set: str | None,
                 person_keys: Sequence[str] | None = None, region: str | None = None,
                 in_register: bool = False) -> list[SimpleNamespace]:
        """What the record showed of persons at `as_of`: of some persons, or of everyone in a region (only those in
        the register with `in_register`); with `in_register` the flag of the row."""
        p = persons.c
        conditions = self._holding(persons, as_of_us, known_at_us, rule_set)
        if region:
            conditions.append(_in_region(p.region, region))
        if in_register:
            conditions += [self._IN_REGISTER, p.received_us <= as_of_us]
        flag = sa.case((sa.and_(self._IN_REGISTER, p.received_us <= as_of_us), True), else_=False)
        query = sa.select(p.person_key, p.id_number, p.name, p.region, p.status, flag.label("in_register"),
                          p.valid_from_us, p.valid_to_us)
        return self._by_keys(query, conditions, p.person_key, person_keys)

    def spans(self, from_us: int, to_us: int, known_at_us: int | None, rule_set: str | None,
              person_keys: Sequence[str]) -> list[SimpleNamespace]:
        """Every row of these persons valid at some moment of [from, to), as known at `known_at`, in time order."""
        p = persons.c
        conditions = [p.valid_from_us < to_us, sa.or_(p.valid_to_us.is_(None), p.valid_to_us > from_us)]
        conditions += self._known(persons, known_at_us, rule_set)
        flag = sa.case((sa.and_(self._IN_REGISTER, p.received_us <= p.valid_from_us), True), else_=False)
        query = sa.select(p.person_key, p.id_number, p.name, p.region, p.status, flag.label("in_register"),
                          p.valid_from_us, p.valid_to_us).order_by(p.person_key, p.valid_from_us)
        return self._by_keys(query, conditions, p.person_key, person_keys)

    @staticmethod
    def _known(table: sa.Table, known_at_us: int | None, rule_set: str | None) -> list[Any]:
        c = table.c
        conditions = [c.known_to_us.is_(None)] if known_at_us is None else [
            c.known_from_us <= known_at_us, sa.or_(c.known_to_us.is_(None), c.known_to_us > known_at_us)]
        return conditions + ([c.rule_set == rule_set] if rule_set is not None else [])

    def _by_keys(self, query: Any, conditions: list[Any], key: Any,
                 person_keys: Sequence[str] | None) -> list[SimpleNamespace]:
        """The query's rows (personal columns opened), for some persons a chunk of keys at a time."""
        chunks = [None] if person_keys is None else list(_chunks(list(dict.fromkeys(person_keys)), 500))
        rows: list[SimpleNamespace] = []
        with self.engine.connect() as connection:
            for chunk in chunks:
                where = conditions if chunk is None else [*conditions, key.in_(chunk)]
                rows += self._opened(connection.execute(query.where(*where)))
        return rows

    def imported_persons(self, rule_set: str | None = None) -> list[str]:
        """The ID numbers of the persons with events stored later than their recorded_at (imported records)."""
        p = persons.c
        query = sa.select(p.id_number).where(p.imported.is_(True), p.known_to_us.is_(None), p.valid_to_us.is_(None))
        if rule_set is not None:
            query = query.where(p.rule_set == rule_set)
        with self.engine.connect() as connection:
            return sorted({self.sealer.open(id_number) for (id_number,) in connection.execute(query)})

    def quarantined(self) -> list[SimpleNamespace]:
        """The persons whose events the fold could not process, with the problem."""
        p = persons.c
        query = sa.select(persons).where(p.status == QUARANTINED, p.known_to_us.is_(None)).order_by(p.person_key)
        with self.engine.connect() as connection:
            return self._opened(connection.execute(query))

    def quarantined_count(self) -> int:
        p = persons.c
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(persons).where(
                p.status == QUARANTINED, p.known_to_us.is_(None))).scalar_one()

    def person_total(self) -> int:
        """How many persons the read model holds (as known now: each has one row open in both times)."""
        p = persons.c
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count(sa.distinct(p.person_key)))
                .where(p.known_to_us.is_(None), p.valid_to_us.is_(None))).scalar_one()

    def regions(self) -> list[str]:
        """Every region a person is (or was) registered in."""
        with self.engine.connect() as connection:
            return sorted(region for (region,) in connection.execute(
                sa.select(persons.c.region).where(persons.c.region.is_not(None)).distinct()))

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row, personal fields opened, in a canonical order: for comparing two read models."""
        dumped = {}
        for table, key in ((persons, ("id_number", "known_from_us", "valid_from_us")),
                           (obligations, ("id_number", "rule", "triggered_by", "due_us", "known_from_us",
                                          "valid_from_us"))):
            with self.engine.connect() as connection:
                rows = self._opened(connection.execute(sa.select(table)))
            records = [{k: v for k, v in vars(row).items() if k not in ("id", "person_key")} for row in rows]
            dumped[table.name] = sorted(records, key=lambda r: tuple(str(r[k]) for k in key) + (repr(r),))
        return dumped

    def person_counts(self, as_of_us: int, region: str | None = None, known_at_us: int | None = None,
                      rule_set: str | None = None, exclude_imported: bool = False) -> list[SimpleNamespace]:
        """Per region: received (enrolled by as_of), in register (received, not ended), discharged, terminated."""
        p = persons.c
        received = sa.and_(p.received_us.is_not(None), p.received_us <= as_of_us)
        not_ended = sa.or_(p.ended.is_(None), p.ended.not_in(("discharged", "committed", "deceased")))  # NULL-safe
        counted = (
            sa.func.sum(sa.case((received, 1), else_=0)).label("received"),
            sa.func.sum(sa.case((sa.and_(received, not_ended), 1), else_=0)).label("in_register"),
            sa.func.sum(sa.case((p.ended == "discharged", 1), else_=0)).label("discharged"),
            sa.func.sum(sa.case((p.ended.in_(("committed", "deceased")), 1), else_=0)).label("terminated"),
        )
        counting = sa.or_(p.status.is_(None), p.status != QUARANTINED)
        if known_at_us is not None:
            query = sa.select(p.region, *counted).where(
                *self._holding(persons, as_of_us, known_at_us, rule_set, exclude_imported), counting)
            if region:
                query = query.where(_in_region(p.region, region))
            with self.engine.connect() as connection:
                return [SimpleNamespace(**row._mapping) for row in connection.execute(query.group_by(p.region))]
        # As known now: the current rows, read from their covering index as two ranges per region (rows open in
        # valid time, and rows ending after as_of) instead of every current row of the region. The valid_from
        # condition is written `+ 0` on SQLite so that its planner takes that index and not (region, valid_from).
        in_regions = [p.region.in_(self._regions_under(region))] if region else \
            [p.region.in_(self._regions_under(None)), p.region.is_(None)]
        valid_from = p.valid_from_us + 0 if self.engine.dialect.name == "sqlite" else p.valid_from_us
        common = [valid_from <= as_of_us, p.known_to_us.is_(None), counting,
                  *((p.rule_set == rule_set,) if rule_set is not None else ()),
                  *((p.imported.is_(False),) if exclude_imported else ())]
        totals: dict[str | None, dict[str, int]] = {}
        with self.engine.connect() as connection:
            for where, ending in itertools.product(in_regions, (p.valid_to_us.is_(None), p.valid_to_us > as_of_us)):
                query = sa.select(p.region, *counted).where(*common, where, ending).group_by(p.region)
                for row in connection.execute(query):
                    entry = totals.setdefault(row.region, dict.fromkeys(("received", "in_register", "discharged",
                                                                         "terminated"), 0))
                    for key in entry:
                        entry[key] += int(row._mapping[key] or 0)
        return [SimpleNamespace(region=code, **figures) for code, figures in totals.items()]

    def gaps_of_rules_before(self, rules: Sequence[str], as_of_us: int, region: str | None = None,
                             known_at_us: int | None = None, rule_set: str | None = None,
                             exclude_imported: bool = False) -> list[SimpleNamespace]:
        """Obligations of these rules that had become gaps by as_of (open or closed late): the lost time."""
        o = obligations.c
        query = sa.select(obligations).where(*self._holding(obligations, as_of_us, known_at_us, rule_set,
                                                            exclude_imported),
                                             o.rule.in_(rules), o.gap_us.is_not(None), o.gap_us < as_of_us)
        if known_at_us is None or known_at_us >= as_of_us:
            query = query.where(BELIEVED_GAP)
        if region:
            query = query.where(o.region.in_(self._regions_under(region)))
        with self.engine.connect() as connection:
            return self._opened(connection.execute(query))


# Closing a row in place: the row of a person (and rule set) with this number is known until known_to.
# (The parameters' names differ from the columns': SQLAlchemy would otherwise also set the columns they name.)
_CLOSE = {table.name: table.update().where(table.c.person_key == sa.bindparam("p_key"),
                                           table.c.rule_set == sa.bindparam("p_rule_set"),
                                           table.c.number == sa.bindparam("p_number"))
          .values(known_to_us=sa.bindparam("p_known_to")) for table in (persons, obligations)}
_CLOSE_PARAMETERS = ("p_known_to", "p_key", "p_rule_set", "p_number")


def _move_position(connection: sa.Connection, projection: str, position: int, new_position: int) -> bool:
    """Move a log follower's position (rule set "") from `position` to `new_position`; False when another writer
    moved it first. A follower starting at 0 has no row yet: it is inserted."""
    where = (positions.c.projection == projection, positions.c.rule_set == "")
    moved = connection.execute(positions.update().where(*where, positions.c.position == position)
                               .values(position=new_position)).rowcount
    if moved:
        return True
    if position != 0 or connection.execute(sa.select(positions.c.position).where(*where)).first():
        return False
    connection.execute(positions.insert().values(projection=projection, rule_set="", position=new_position,
                                                 complete=True))
    return True


def _with_case_key(row: tuple, sealer: Sealer) -> tuple:
    """A person row from the projection with its case number replaced by the number's key."""
    case_ref = row[CASE_KEY]
    if case_ref is None:
        return row
    return row[:CASE_KEY] + (sealer.case_token(case_ref),) + row[CASE_KEY + 1:]


def _of_projection(projection: str) -> sa.ColumnElement:
    """The position rows of a projection: its own, or those of its shares (`projection/K:N`)."""
    return sa.or_(positions.c.projection == projection, positions.c.projection.like(projection + "/%"))


def _in_region(column: sa.ColumnElement, prefix: str) -> sa.ColumnElement:
    """Regions starting with `prefix`, as a range of the byte-ordered region column (so an index serves it)."""
    return sa.and_(column >= prefix, column < prefix[:-1] + chr(ord(prefix[-1]) + 1))


def _dialect_insert(dialect: sa.Dialect, table: sa.Table) -> Any:
    """The INSERT of the database's dialect, which knows ON CONFLICT."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _insert_ignoring_duplicates(dialect: sa.Dialect, table: sa.Table) -> Any:
    return _dialect_insert(dialect, table).on_conflict_do_nothing()


def _upsert_identities(dialect: sa.Dialect) -> Any:
    """A key's row of rm_identities written again; its region kept when the rows written have no current one."""
    insert = _dialect_insert(dialect, identities)
    return insert.on_conflict_do_update(index_elements=["person_key"], set_={
        "id_number": insert.excluded.id_number, "name": insert.excluded.name, "name_key": insert.excluded.name_key,
        "birth_key": insert.excluded.birth_key,
        "region": sa.func.coalesce(insert.excluded.region, identities.c.region)})


def _insert_statement(dialect: sa.Dialect, table: sa.Table,
                      columns: tuple[str, ...]) -> Callable[[sa.Connection, list[tuple]], None]:
    """Inserts many rows given as tuples of `columns`: PostgreSQL (psycopg) by COPY, others through the driver's
    executemany.

    SQLAlchemy Core would build a parameter dict per row and process each value; the rows here are plain values of
    the columns' own types already (str, int, None), which sqlite3 and psycopg take as they are. psycopg's
    executemany still sends one statement per row; COPY streams them all."""
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        from psycopg import sql as psql

        copy = psql.SQL("COPY {} ({}) FROM STDIN").format(
            psql.Identifier(table.name), psql.SQL(", ").join(map(psql.Identifier, columns)))

        def copy_rows(connection: sa.Connection, rows: list[tuple]) -> None:
            with connection.connection.cursor() as cursor, cursor.copy(copy) as stream:
                for start in range(0, len(rows), 5000):
                    stream.write(_copy_text(rows[start:start + 5000]))

        return copy_rows
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
    if marker is None:  # a driver of another parameter style: let SQLAlchemy bind the values
        statement = table.insert()

        def insert(connection: sa.Connection, rows: list[tuple]) -> None:
            connection.execute(statement, [dict(zip(columns, row)) for row in rows])

        return insert
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})"

    def insert(connection: sa.Connection, rows: list[tuple]) -> None:
        cursor = connection.connection.cursor()  # the driver's cursor, inside this connection's transaction
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()

    return insert


# COPY's text format: values separated by tabs, rows by newlines, NULL written \N; a backslash, tab, newline or
# carriage return within a value is escaped. (psycopg's write_row does the same value by value, at many times the
# cost in its pure-Python build.)
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")


def _copy_text(rows: list[tuple]) -> str:
    # Such characters hardly ever occur (sealed fields are base64): one scan over all the text decides whether
    # any value needs escaping at all.
    escape = _COPY_SPECIAL.search("".join([value for row in rows for value in row if isinstance(value, str)]))
    return "".join([
        "\t".join([
            "\\N" if value is None else (value.translate(_COPY_ESCAPES) if escape else value)
            if isinstance(value, str) else str(value)
            for value in row
        ]) + "\n"
        for row in rows
    ])


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
