"""Configuration from the environment, in one place."""

from __future__ import annotations

import base64
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

DEFAULT_DATABASE_URL = "sqlite:///var/handoff.sqlite3"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    database_url: str
    rules_file: str | None = None  # TOML overrides of the default rule set
    cipher_key: str | None = None  # base64 AES key: event payloads and personal read-model fields encrypted at rest
    # Kafka (adapters/kafka.py reads the rest of HANDOFF_KAFKA_*): with a bootstrap server, POST /v1/events produces
    # to the inbound topics and `handoff ingest` workers store the events.
    kafka_bootstrap: str | None = None
    kafka_prefix: str = "handoff"
    # The dates events and questions may name, "YYYY-MM-DD..YYYY-MM-DD" (default 1979-01-01..2100-12-31; see
    # domain/catalog.py for the bounds it may lie within).
    plausible_dates: str | None = None
    # Requests per principal (the `limits` notation: "600/minute", "20/second"), over a moving window.
    rate_limit: str = "600/minute"
    # Who keeps the read model current in this process (services/projector.py): "inline" after
    # each write, "background" (a thread), or "none" (another process: `handoff project`). None: the entrypoint's
    # default (inline for a process built in code, background for `handoff serve`, none for other commands).
    projector: str | None = None
    # How many processes share the projection, each folding the persons whose stream id falls in its share
    # (`handoff project --share K`); every process of a deployment must agree on it.
    projector_shares: int = 1
    # The directory of agencies' names (services/agencies.py): HANDOFF_AGENCIES_FILE, else agencies.toml here.
    agencies_file: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        return cls(
            database_url=environ.get("HANDOFF_DATABASE_URL") or DEFAULT_DATABASE_URL,
            rules_file=environ.get("HANDOFF_RULES_FILE") or None,
            agencies_file=environ.get("HANDOFF_AGENCIES_FILE") or None,
            cipher_key=environ.get("HANDOFF_CIPHER_KEY") or None,
            kafka_bootstrap=environ.get("HANDOFF_KAFKA_BOOTSTRAP") or None,
            kafka_prefix=environ.get("HANDOFF_KAFKA_PREFIX") or "handoff",
            plausible_dates=environ.get("HANDOFF_PLAUSIBLE_DATES") or None,
            rate_limit=environ.get("HANDOFF_RATE_LIMIT") or "600/minute",
            projector=environ.get("HANDOFF_PROJECTOR") or None,
            projector_shares=_positive("HANDOFF_PROJECTOR_SHARES", environ.get("HANDOFF_PROJECTOR_SHARES") or "1"),
        )


def _positive(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} {text!r}: expected a whole number from 1 up")
    return value


def plausible_range(text: str) -> tuple[dt.date, dt.date]:
    """HANDOFF_PLAUSIBLE_DATES ("1990-01-01..2080-12-31") as two dates."""
    try:
        earliest, latest = (dt.date.fromisoformat(part.strip()) for part in text.split(".."))
    except ValueError:
        raise ConfigError(f"HANDOFF_PLAUSIBLE_DATES {text!r}: expected YYYY-MM-DD..YYYY-MM-DD") from None
    return earliest, latest


def cipher_env(cipher_key: str | None) -> dict[str, str]:
    """eventsourcing's AES-GCM cipher (the `cryptography` package) for stored event state, when a key is set."""
    if not cipher_key:
        return {}
    try:
        size = len(base64.b64decode(cipher_key, validate=True))
    except ValueError:
        raise ConfigError("HANDOFF_CIPHER_KEY is not base64 (make one with `handoff keygen`)") from None
    if size not in (16, 24, 32):
        raise ConfigError(f"HANDOFF_CIPHER_KEY decodes to {size} bytes; AES needs 16, 24 or 32")
    return {"CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher", "CIPHER_KEY": cipher_key}


# The stored format stays eventsourcing's JSON; orjson writes and reads it where it gives the same (transcoder.py).
TRANSCODER_TOPIC = "adapters.transcoder:OrjsonTranscoder"


def persistence_env(database_url: str) -> dict[str, str]:
    """The eventsourcing environment variables for a `sqlite:///path` or `postgresql://...` URL."""
    parts = urlsplit(database_url)
    if parts.scheme == "memory":  # the service tests' store: eventsourcing's in-memory recorders, read models in memory
        return {"PERSISTENCE_MODULE": "adapters.claims:POPOClaimingFactory", "TRANSCODER_TOPIC": TRANSCODER_TOPIC}
    if parts.scheme == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, as in SQLAlchemy.
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path:
            raise ConfigError(f"no file in {database_url!r}; expected sqlite:///path/to/file.sqlite3")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            # eventsourcing's recorder plus the event claims table (adapters/claims.py)
            "PROCESS_RECORDER_TOPIC": "adapters.claims:SQLiteClaimingRecorder",
            "TRANSCODER_TOPIC": TRANSCODER_TOPIC,
        }
    if parts.scheme in ("postgresql", "postgres"):
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise ConfigError(f"no database name in {database_url!r}")
        query = parse_qs(parts.query)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parts.hostname or "localhost",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_POOL_SIZE": query.get("pool_size", ["5"])[0],
            "POSTGRES_CONNECT_TIMEOUT": query.get("connect_timeout", ["5"])[0],
            "PROCESS_RECORDER_TOPIC": "adapters.claims:PostgresClaimingRecorder",
            "TRANSCODER_TOPIC": TRANSCODER_TOPIC,
        }
        if "schema" in query:
            env["POSTGRES_SCHEMA"] = query["schema"][0]
        return env
    raise ConfigError(f"unsupported HANDOFF_DATABASE_URL scheme {parts.scheme!r}; use sqlite:/// or postgresql:// "
                      "(or memory: for tests)")


def sqlalchemy_url(database_url: str) -> str:
    """The same database as a SQLAlchemy URL (psycopg 3 driver for PostgreSQL)."""
    scheme, rest = database_url.split(":", 1)
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg:" + rest.split("?", 1)[0]
    if scheme == "sqlite":
        persistence_env(database_url)  # creates the directory
        return database_url
    if scheme == "memory":
        return "sqlite://"
    raise ConfigError(f"unsupported database URL scheme {scheme!r}")


def create_engine(database_url: str) -> sa.Engine:
    """A SQLAlchemy engine on the same database (read models, sessions, the audit chain's tables). A `memory:` store's
    tables live in one in-memory SQLite connection shared by every thread."""
    if database_url.split(":", 1)[0] == "memory":
        return sa.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    return sa.create_engine(sqlalchemy_url(database_url), future=True)
