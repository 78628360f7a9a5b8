"""Server-side dashboard sessions (SQLite or PostgreSQL via SQLAlchemy Core): the browser holds only a random
session id; the table holds its SHA-256, the principal, a CSRF token and the times that end it. Logging out deletes
the row, so the old cookie opens nothing anywhere (several server processes share the table)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from .config import create_engine

metadata = sa.MetaData()

sessions = sa.Table(
    "dashboard_sessions", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("principal_id", sa.String(36), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_s", sa.BigInteger, nullable=False),
    sa.Column("seen_s", sa.BigInteger, nullable=False),
)


@dataclass(frozen=True)
class Session:
    principal_id: str
    csrf: str


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore:
    def __init__(self, database_url: str, idle_seconds: int = 8 * 3600, absolute_seconds: int = 12 * 3600):
        self.idle_seconds, self.absolute_seconds = idle_seconds, absolute_seconds
        self.engine = create_engine(database_url)
        if self.engine.dialect.name == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(connection, _record):  # wait for the event store's writer instead of failing at once
                connection.execute("PRAGMA busy_timeout = 30000")
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def open(self, principal_id: str, now_s: int) -> tuple[str, Session]:
        """A new session: (the id for the cookie, the session)."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.engine.begin() as connection:
            # Expired sessions of anyone go with each login: the table stays as small as the logged-in users.
            connection.execute(sessions.delete().where(sa.or_(sessions.c.seen_s < now_s - self.idle_seconds,
                                                              sessions.c.created_s < now_s - self.absolute_seconds)))
            connection.execute(sessions.insert().values(id_hash=_hash(session_id), principal_id=principal_id,
                                                        csrf=csrf, created_s=now_s, seen_s=now_s))
        return session_id, Session(principal_id, csrf)

    def get(self, session_id: str | None, now_s: int) -> Session | None:
        """The live session of this id (idle for less than `idle_seconds`, younger than `absolute_seconds`)."""
        if not session_id or len(session_id) > 128:
            return None
        key = _hash(session_id)
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(sessions).where(sessions.c.id_hash == key)).first()
        if row is None:
            return None
        if row.seen_s < now_s - self.idle_seconds or row.created_s < now_s - self.absolute_seconds:
            self.close_session(session_id)
            return None
        if now_s - row.seen_s > 60:  # the idle clock, moved at most once a minute (reads stay reads)
            with self.engine.begin() as connection:
                connection.execute(sessions.update().where(sessions.c.id_hash == key).values(seen_s=now_s))
        return Session(row.principal_id, row.csrf)

    def close_session(self, session_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sessions.delete().where(sessions.c.id_hash == _hash(session_id)))

    def close_all(self, principal_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sessions.delete().where(sessions.c.principal_id == principal_id))
