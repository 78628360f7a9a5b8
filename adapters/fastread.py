"""Reading person streams for the supervision fold without eventsourcing's per-event machinery.

The fold needs, of each stored person event, only the fields a `RecordedEvent` carries, as plain values. Going
through eventsourcing (a `StoredEvent` and a `UUID` per row, the mapper, the JSON transcoder's object hook on every
dict, a domain-event object) is most of a rebuild's reading time. Here streams are read as raw rows and each state
is decoded with orjson into the same dict the mapper's transcoder would give — after the same cipher and compressor
the store's mapper is configured with. A state the fast path cannot vouch for (any value stored as a custom type
other than the event's timestamp, or JSON orjson reads differently: NaN, lone surrogates, integers beyond 64 bits)
goes through the mapper's own transcoder.

Worker processes read streams over connections of their own: `StreamReader.source()` describes the store so that
another process can open it (`StreamSource.open()`), and `StateDecoder` is picklable when the store's cipher and
compressor are (eventsourcing's AES cipher and zlib compressor are).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder

# How eventsourcing's JSON transcoder marks a value it encoded as a custom type ({"_type_": ..., "_data_": ...}).
_CUSTOM_TYPE_MARK = b'"_type_"'
# orjson reads an integer beyond 64 bits as a float, where json keeps it exact; such an integer has at least 19
# digits. A run of 19 digits anywhere (even inside a string) sends the state to the transcoder.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19
# Streams per statement: well inside SQLite's and PostgreSQL's parameter limits.
CHUNK = 500


class StateDecoder:
    """Stored event state (bytes) -> the event's attributes as a dict, as the store's mapper would decode them."""

    def __init__(self, mapper: Any):
        self.cipher = getattr(mapper, "cipher", None)
        self.compressor = getattr(mapper, "compressor", None)
        self.transcoder = mapper.transcoder

    def __getstate__(self) -> dict[str, Any]:
        # eventsourcing's JSONTranscoder holds a json.JSONDecoder, which cannot be pickled: send its registered
        # transcodings instead and register them on a new one (__setstate__).
        state = dict(self.__dict__)
        if isinstance(self.transcoder, JSONTranscoder):
            state["transcoder"] = (type(self.transcoder), list(self.transcoder.names.values()))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["transcoder"], tuple):
            transcoder_class, transcodings = state["transcoder"]
            state["transcoder"] = transcoder = transcoder_class()
            for transcoding in transcodings:
                transcoder.register(transcoding)
        self.__dict__.update(state)

    def decode(self, state: bytes) -> dict[str, Any]:
        if self.cipher is not None:
            state = self.cipher.decrypt(state)
        if self.compressor is not None:
            state = self.compressor.decompress(state)
        # Every event carries one custom-typed value, its timestamp (a datetime), which the fold never reads and
        # which is left in its encoded form here. Any other custom-typed value needs the transcoder to decode it.
        if state.count(_CUSTOM_TYPE_MARK) == 1 and _LONG_NUMBER not in state.translate(_DIGITS_AS_ZERO):
            try:
                decoded = orjson.loads(state)
            except orjson.JSONDecodeError:  # e.g. NaN or a lone surrogate, which Python's json module accepts
                pass
            else:
                if type(decoded) is dict and type(decoded.get("timestamp")) is dict:
                    return decoded
        return self.transcoder.decode(state)


class StreamReader:
    """Raw person streams from the event store's table: for each stream, its states in version order.

    Streams are named by `key(stream_id)`, the id as the database returns it (SQLite: hex text; PostgreSQL: uuid).
    """

    def __init__(self, sqlite: bool, table: str, schema: str | None,
                 cursor: Callable[[], contextlib.AbstractContextManager[Any]]):
        self.sqlite = sqlite
        self.table = table
        self.schema = schema
        self._cursor = cursor

    @classmethod
    def of_store(cls, store: Any) -> StreamReader | RecordedStreamReader:
        """A reader over the store's own connections (the recorder's own reads for an in-memory store)."""
        recorder = store.recorder
        if recorder.dialect == "memory":
            return RecordedStreamReader(recorder)
        sqlite = recorder.dialect == "sqlite"
        return cls(sqlite, recorder.events_table_name, None if sqlite else recorder.datastore.schema,
                   lambda: recorder.datastore.transaction(commit=False))

    def key(self, stream_id: UUID) -> Any:
        return stream_id.hex if self.sqlite else stream_id

    def states(self, keys: Iterable[Any]) -> dict[Any, list[bytes]]:
        """The stored states of many streams; streams that do not exist are absent."""
        keys = list(dict.fromkeys(keys))
        streams: dict[Any, list[bytes]] = {}
        for start in range(0, len(keys), CHUNK):
            rows = self._rows(keys[start:start + CHUNK])
            # Rows come ordered by stream and version, so each stream is one run.
            for key, run in groupby(rows, key=itemgetter(0)):
                streams[key] = [bytes(row[1]) for row in run]
        return streams

    def _rows(self, keys: Sequence[Any]) -> list[tuple[Any, bytes]]:
        if self.sqlite:
            statement = (f"SELECT originator_id, state FROM {self.table} "
                         f"WHERE originator_id IN ({','.join('?' * len(keys))}) "
                         "ORDER BY originator_id, originator_version")
            with self._cursor() as cursor:
                cursor.row_factory = None  # plain tuples, not the eventsourcing connection's sqlite3.Row
                cursor.execute(statement, list(keys))
                return cursor.fetchall()
        from psycopg.rows import tuple_row
        from psycopg.sql import SQL, Identifier

        statement = SQL(
            "SELECT originator_id, state FROM {schema}.{table} WHERE originator_id = ANY(%s) "
            "ORDER BY originator_id, originator_version"
        ).format(schema=Identifier(self.schema), table=Identifier(self.table))
        with self._cursor() as cursor:
            cursor.row_factory = tuple_row
            # Binary results: the state arrives as the stored bytes, not as bytea text to unescape.
            cursor.execute(statement, [list(keys)], binary=True)
            return cursor.fetchall()

    @staticmethod
    def source(store: Any) -> StreamSource | None:
        """How another process opens this store's streams; None when it cannot (an in-memory SQLite database)."""
        recorder = store.recorder
        if recorder.dialect == "memory":
            return None
        datastore = recorder.datastore
        if recorder.dialect == "sqlite":
            db_name = datastore.pool.db_name
            if datastore.pool.is_sqlite_memory_mode:
                return None
            return StreamSource(True, recorder.events_table_name, None, {"database": db_name, "uri": True})
        pool = datastore.pool
        kwargs = pool.kwargs() if callable(pool.kwargs) else pool.kwargs
        connect = {"conninfo": pool.conninfo, **{key: value for key, value in (kwargs or {}).items()
                                                 if key != "row_factory"}}
        return StreamSource(False, recorder.events_table_name, datastore.schema, connect)


class RecordedStreamReader:
    """StreamReader's interface over a recorder's `select_streams` (the in-memory store of the service tests)."""

    def __init__(self, recorder: Any):
        self.recorder = recorder

    @staticmethod
    def key(stream_id: UUID) -> UUID:
        return stream_id

    def states(self, keys: Iterable[UUID]) -> dict[UUID, list[bytes]]:
        return {key: [event.state for event in stored]
                for key, stored in self.recorder.select_streams(list(dict.fromkeys(keys))).items()}


@dataclass(frozen=True)
class StreamSource:
    """Where a store's streams are, for a process of its own to read them over its own connection."""

    sqlite: bool
    table: str
    schema: str | None
    connect: dict[str, Any]

    def open(self) -> tuple[StreamReader, Callable[[], None]]:
        """A reader on a new connection (autocommit: each read sees the latest committed events), and its close."""
        if self.sqlite:
            import sqlite3

            connection = sqlite3.connect(**self.connect, isolation_level=None, check_same_thread=False, timeout=30)

            @contextlib.contextmanager
            def cursor() -> Iterator[Any]:
                with contextlib.closing(connection.cursor()) as sqlite_cursor:
                    yield sqlite_cursor
        else:
            import psycopg

            connection = psycopg.connect(**self.connect, autocommit=True)

            def cursor() -> contextlib.AbstractContextManager[Any]:
                return connection.cursor()
        return StreamReader(self.sqlite, self.table, self.schema, cursor), connection.close
