"""Read models in SQL (SQLite or PostgreSQL via SQLAlchemy Core): persons and their obligations, with the
projection's position stored in the same transaction as the rows it produced (exactly once)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any, NamedTuple

import sqlalchemy as sa


from .config import create_engine

metadata = sa.MetaData()

# Personal data at rest: `person_key` is the ID number itself, or with a key (HANDOFF_CIPHER_KEY) a keyed token;
# `id_number` and `name` are then AES-GCM ciphertext (see Sealer). Regions, rules and times stay in clear: they
# are what oversight counts and filters on, and identify nobody.
persons = sa.Table(
    "rm_persons", metadata,
    sa.Column("person_key", sa.String(64), primary_key=True),
    sa.Column("id_number", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("region", sa.String(6)),
    sa.Column("status", sa.String(32)),
    sa.Column("responsible_kind", sa.String(16)),
    sa.Column("responsible_region", sa.String(6)),
    sa.Column("received_us", sa.BigInteger),  # enrolment time of the current episode, microseconds since epoch
    sa.Column("ended", sa.String(16)),
    sa.Column("ended_us", sa.BigInteger),
    sa.Column("category", sa.String(24)),
    sa.Column("rule_set", sa.Text, nullable=False),
    # Why the fold could not process this person's events (status `quarantined`), else NULL: the person is kept
    # out of every figure until the cause is mended, and everyone else is projected as usual.
    sa.Column("problem", sa.Text),
)

obligations = sa.Table(
    "rm_obligations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("person_key", sa.String(64), nullable=False, index=True),
    sa.Column("id_number", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("region", sa.String(6), index=True),
    sa.Column("rule", sa.String(40), nullable=False, index=True),
    sa.Column("triggered_by", sa.String(64), nullable=False),
    sa.Column("obligated_kind", sa.String(16), nullable=False),
    sa.Column("obligated_id", sa.Text),
    sa.Column("obligated_region", sa.String(6)),
    sa.Column("due_at", sa.Text),
    sa.Column("due_us", sa.BigInteger),
    sa.Column("fulfilled_at", sa.Text),
    sa.Column("fulfilled_us", sa.BigInteger),
    # When this obligation is (or will be) a gap: due_us unless it was met in time, then NULL. Only these rows can
    # ever be open or late, so the gap queries read a small index instead of every obligation.
    sa.Column("gap_us", sa.BigInteger, index=True),
    sa.Column("rule_set", sa.Text, nullable=False),
    # The due time was counted over a year whose 调休 notice is not known yet (domain/calendar.py): it may move.
    sa.Column("provisional", sa.Boolean, nullable=False),
    # Why an anomaly was raised when its rule alone does not say (A10: whose jurisdiction it was), else NULL.
    sa.Column("reason", sa.Text),
    # The gap queue filtered by rule, most overdue first, without scanning every gap of other rules.
    sa.Index("ix_rm_obligations_rule_gap", "rule", "gap_us"),
)

positions = sa.Table(
    "rm_positions", metadata,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("rule_set", sa.Text, nullable=False),
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
PERSON_COLUMNS = ("region", "status", "responsible_kind", "responsible_region", "received_us", "ended", "ended_us",
                  "category", "rule_set", "problem")
OBLIGATION_COLUMNS = ("region", "rule", "triggered_by", "obligated_kind", "obligated_id", "obligated_region",
                      "due_at", "due_us", "fulfilled_at", "fulfilled_us", "gap_us", "rule_set", "provisional", "reason")


class PersonRows(NamedTuple):
    """One person's read-model rows: plain tuples (cheap to build, to send between processes and to insert)."""

    id_number: str
    name: str
    person: tuple  # values of PERSON_COLUMNS
    obligations: list[tuple]  # values of OBLIGATION_COLUMNS, one tuple per obligation


class ReadModel:
    def __init__(self, database_url: str, sealer: Sealer | None = None):
        self.sealer = sealer or Sealer()
        self.engine = create_engine(database_url)
        if self.engine.dialect.name == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(connection, _record):  # wait for the event store's writer instead of failing at once
                connection.execute("PRAGMA busy_timeout = 30000")
        if not self._schema_is_current():
            # Read models are derived data: a table of an older shape is dropped and rebuilt from the event log.
            metadata.drop_all(self.engine)
        metadata.create_all(self.engine)
        self._insert_persons = _insert_statement(self.engine.dialect, persons, PERSONAL_COLUMNS + PERSON_COLUMNS)
        self._insert_obligations = _insert_statement(self.engine.dialect, obligations,
                                                     PERSONAL_COLUMNS + OBLIGATION_COLUMNS)

    def _schema_is_current(self) -> bool:
        inspector = sa.inspect(self.engine)
        for table in metadata.sorted_tables:
            if inspector.has_table(table.name):
                existing = {column["name"] for column in inspector.get_columns(table.name)}
                if existing != set(table.columns.keys()):
                    return False
        return True

    def close(self) -> None:
        self.engine.dispose()

    def drop(self) -> None:
        metadata.drop_all(self.engine)
        metadata.create_all(self.engine)

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

    def position(self, projection: str) -> tuple[int, str | None]:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(positions.c.position, positions.c.rule_set).where(positions.c.projection == projection)
            ).first()
        return (row.position, row.rule_set) if row else (0, None)

    def apply(self, projection: str, expected: int, new: int, rule_set: str, rows: Sequence[PersonRows],
              replace: bool = True) -> None:
        """Replace the rows of these persons and move the position from `expected` to `new`, atomically.

        `replace=False`: the persons have no rows yet (a rebuild into freshly dropped tables, each person once), so
        nothing is deleted first. During `bulk_load` the obligations' person_key index is gone, and each delete
        would scan every obligation loaded so far: quadratic in the store's size."""
        with self.engine.begin() as connection:
            moved = connection.execute(
                positions.update()
                .where(positions.c.projection == projection, positions.c.position == expected)
                .values(position=new, rule_set=rule_set)
            ).rowcount
            if moved == 0:
                if expected != 0 or connection.execute(
                    sa.select(positions.c.position).where(positions.c.projection == projection)
                ).first():
                    raise PositionMoved(projection)
                connection.execute(positions.insert().values(projection=projection, position=new, rule_set=rule_set))
            if not rows:
                return
            sealer = self.sealer
            # Sealed once per person: every row of a person carries the same key already, so sharing the
            # ciphertext across them tells nothing more.
            personal = [(sealer.token(r.id_number), sealer.seal(r.id_number), sealer.seal(r.name)) for r in rows]
            for chunk in _chunks([key for key, _, _ in personal], 500) if replace else ():
                connection.execute(obligations.delete().where(obligations.c.person_key.in_(chunk)))
                connection.execute(persons.delete().where(persons.c.person_key.in_(chunk)))
            person_rows = [sealed + r.person for sealed, r in zip(personal, rows)]
            obligation_rows = [sealed + o for sealed, r in zip(personal, rows) for o in r.obligations]
            self._insert_persons(connection, person_rows)
            if obligation_rows:
                self._insert_obligations(connection, obligation_rows)

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

    def gaps(self, as_of_us: int, states: Iterable[str], region: str | None = None, rule: str | None = None,
             limit: int | None = None, offset: int = 0, agency: str | None = None,
             agency_region: str | None = None, agency_id: str | None = None) -> list[SimpleNamespace]:
        o = obligations.c
        conditions = []
        wanted = set(states)
        open_ = sa.and_(o.gap_us < as_of_us, sa.or_(o.fulfilled_us.is_(None), o.fulfilled_us > as_of_us))
        late = sa.and_(o.gap_us.is_not(None), o.fulfilled_us <= as_of_us)
        if wanted == {"open"}:
            conditions.append(open_)
        elif wanted == {"late"}:
            conditions.append(late)
        else:
            conditions.append(sa.or_(open_, late))
        if region:
            conditions.append(o.region.startswith(region, autoescape=True))
        if rule:
            conditions.append(o.rule == rule)
        conditions += self._agency_conditions(agency, agency_region, agency_id)
        query = (sa.select(obligations).where(*conditions)
                 .order_by(o.gap_us, o.person_key, o.rule, o.triggered_by).offset(offset))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return self._opened(connection.execute(query))

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
                 agency_region: str | None = None, agency_id: str | None = None) -> list[SimpleNamespace]:
        o = obligations.c
        conditions = [o.gap_us >= from_us, o.gap_us <= until_us, o.fulfilled_us.is_(None),
                      *self._agency_conditions(agency, agency_region, agency_id)]
        if region:
            conditions.append(o.region.startswith(region, autoescape=True))
        with self.engine.connect() as connection:
            return self._opened(connection.execute(
                sa.select(obligations).where(*conditions).order_by(o.gap_us, o.person_key, o.rule, o.triggered_by)))

    def persons(self, region: str | None = None, limit: int | None = None) -> list[sa.Row]:
        """The persons (of a region), personal fields opened; `limit`: at most that many, in person_key order (keys
        are keyed hashes, so that is a sample across regions and categories)."""
        query = sa.select(persons)
        if region:
            query = query.where(persons.c.region.startswith(region, autoescape=True))
        if limit is not None:
            query = query.order_by(persons.c.person_key).limit(limit)
        with self.engine.connect() as connection:
            return self._opened(connection.execute(query))

    def quarantined(self) -> list[SimpleNamespace]:
        """The persons whose events the fold could not process, with the problem."""
        query = sa.select(persons).where(persons.c.status == QUARANTINED).order_by(persons.c.person_key)
        with self.engine.connect() as connection:
            return self._opened(connection.execute(query))

    def quarantined_count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count()).select_from(persons).where(persons.c.status == QUARANTINED)).scalar_one()

    def person_total(self) -> int:
        """How many persons the read model holds."""
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(persons)).scalar_one()

    def regions(self) -> list[str]:
        """Every region a person is registered in."""
        with self.engine.connect() as connection:
            return sorted(region for (region,) in connection.execute(
                sa.select(persons.c.region).where(persons.c.region.is_not(None)).distinct()))

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row, personal fields opened, in a canonical order: for comparing two read models."""
        dumped = {}
        for table, key in ((persons, ("id_number",)), (obligations, ("id_number", "rule", "triggered_by", "due_us"))):
            with self.engine.connect() as connection:
                rows = self._opened(connection.execute(sa.select(table)))
            records = [{k: v for k, v in vars(row).items() if k not in ("id", "person_key")} for row in rows]
            dumped[table.name] = sorted(records, key=lambda r: tuple(str(r[k]) for k in key))
        return dumped

    def person_counts(self, as_of_us: int, region: str | None = None) -> list[sa.Row]:
        """Per region: received (enrolled by as_of), in register (received, not ended), discharged, terminated."""
        p = persons.c
        received = sa.and_(p.received_us.is_not(None), p.received_us <= as_of_us)
        not_ended = sa.or_(p.ended.is_(None), p.ended.not_in(("discharged", "committed", "deceased")))  # NULL-safe
        query = sa.select(
            p.region,
            sa.func.sum(sa.case((received, 1), else_=0)).label("received"),
            sa.func.sum(sa.case((sa.and_(received, not_ended), 1), else_=0)).label("in_register"),
            sa.func.sum(sa.case((p.ended == "discharged", 1), else_=0)).label("discharged"),
            sa.func.sum(sa.case((p.ended.in_(("committed", "deceased")), 1), else_=0)).label("terminated"),
        ).where(sa.or_(p.status.is_(None), p.status != QUARANTINED)).group_by(p.region)
        if region:
            query = query.where(p.region.startswith(region, autoescape=True))
        with self.engine.connect() as connection:
            return list(connection.execute(query))

    def gaps_of_rules_before(self, rules: Sequence[str], as_of_us: int, region: str | None = None) -> list[sa.Row]:
        """Obligations of these rules that had become gaps by as_of (open or closed late): the lost time."""
        o = obligations.c
        query = sa.select(obligations).where(o.rule.in_(rules), o.gap_us.is_not(None), o.gap_us < as_of_us)
        if region:
            query = query.where(obligations.c.region.startswith(region, autoescape=True))
        with self.engine.connect() as connection:
            return self._opened(connection.execute(query))


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
