"""Kafka (kafka-python 3): configuration from the environment, topic names, and client factories.

Every client the service makes goes through `KafkaConfig`, so TLS and SASL settings given in the environment reach
all of them (producers, consumers, the admin client) alike. Nothing here logs a secret: `describe()` is the
configuration as it may be printed.

Topics (prefix `HANDOFF_KAFKA_PREFIX`, default `handoff`):
- `handoff.in.<kind>`: inbound envelopes, one topic per agency kind, keyed by the person's ID number;
- `handoff.rejected`: inbound messages the ingest path refused, with the reason in headers;
- `handoff.out.<kind>.<region>`: notifications routed to the agencies of a kind in a region.
See docs/kafka.md.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

log = logging.getLogger(__name__)

AGENCY_KINDS = ("court", "procuratorate", "police", "prison", "bureau")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
TOPIC_PART = re.compile(r"^[A-Za-z0-9._-]+$")


class KafkaConfigError(ValueError):
    pass


def tracking_name(topic: str, partition: int) -> str:
    """The eventsourcing tracking name of one inbound topic partition: its stored position is the last offset
    whose message is on record (accepted, duplicate or dead-lettered)."""
    return f"kafka:{topic}:{partition}"


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: tuple[str, ...]
    prefix: str = "handoff"
    group: str = "handoff-ingest"
    client_id: str = "handoff"
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    # Group membership: a dead worker's partitions move to the others after the session timeout.
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 2_000
    max_poll_interval_ms: int = 300_000
    max_poll_records: int = 2000  # split by partition into transactions: larger polls, fewer and fuller transactions
    # Topics this service creates when they are missing (ingest: inbound + rejected; route: outbound).
    partitions: int = 6
    replication_factor: int = 1
    # The largest message produced (the broker's message.max.bytes must allow it): rejected copies are cut to it.
    max_message_bytes: int = 1_048_576

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, bootstrap: str | None = None,
                 prefix: str | None = None) -> "KafkaConfig | None":
        """The configuration from HANDOFF_KAFKA_* variables; None when no bootstrap server is configured."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        def number(name: str, default: int) -> int:
            value = text(name)
            if value is None:
                return default
            try:
                result = int(value)
            except ValueError:
                raise KafkaConfigError(f"{name} must be an integer, not {value!r}") from None
            if result <= 0:
                raise KafkaConfigError(f"{name} must be positive")
            return result

        servers = bootstrap or text("HANDOFF_KAFKA_BOOTSTRAP")
        if not servers:
            return None
        config = cls(
            bootstrap=tuple(s.strip() for s in servers.split(",") if s.strip()),
            prefix=prefix or text("HANDOFF_KAFKA_PREFIX") or "handoff",
            group=text("HANDOFF_KAFKA_GROUP") or "handoff-ingest",
            client_id=text("HANDOFF_KAFKA_CLIENT_ID") or "handoff",
            security_protocol=(text("HANDOFF_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            ssl_cafile=text("HANDOFF_KAFKA_SSL_CAFILE"),
            ssl_certfile=text("HANDOFF_KAFKA_SSL_CERTFILE"),
            ssl_keyfile=text("HANDOFF_KAFKA_SSL_KEYFILE"),
            ssl_password=text("HANDOFF_KAFKA_SSL_PASSWORD"),
            ssl_check_hostname=(text("HANDOFF_KAFKA_SSL_CHECK_HOSTNAME") or "true").lower() not in ("0", "false", "no"),
            sasl_mechanism=(text("HANDOFF_KAFKA_SASL_MECHANISM") or "").upper() or None,
            sasl_username=text("HANDOFF_KAFKA_SASL_USERNAME"),
            sasl_password=text("HANDOFF_KAFKA_SASL_PASSWORD"),
            session_timeout_ms=number("HANDOFF_KAFKA_SESSION_TIMEOUT_MS", 10_000),
            heartbeat_interval_ms=number("HANDOFF_KAFKA_HEARTBEAT_INTERVAL_MS", 2_000),
            max_poll_interval_ms=number("HANDOFF_KAFKA_MAX_POLL_INTERVAL_MS", 300_000),
            max_poll_records=number("HANDOFF_KAFKA_MAX_POLL_RECORDS", 2000),
            partitions=number("HANDOFF_KAFKA_PARTITIONS", 6),
            replication_factor=number("HANDOFF_KAFKA_REPLICATION_FACTOR", 1),
            max_message_bytes=number("HANDOFF_KAFKA_MAX_MESSAGE_BYTES", 1_048_576),
        )
        config.validate()
        return config

    def with_(self, **changes: Any) -> "KafkaConfig":
        return replace(self, **changes)

    def validate(self) -> None:
        if not self.bootstrap:
            raise KafkaConfigError("HANDOFF_KAFKA_BOOTSTRAP names no server (host:port[,host:port...])")
        if not TOPIC_PART.match(self.prefix) or len(self.prefix) > 100:
            raise KafkaConfigError(f"HANDOFF_KAFKA_PREFIX {self.prefix!r}: use letters, digits, '.', '_' or '-'")
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise KafkaConfigError(f"HANDOFF_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise KafkaConfigError(f"HANDOFF_KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}")
            if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not (
                    self.sasl_username and self.sasl_password):
                raise KafkaConfigError("SASL PLAIN/SCRAM needs HANDOFF_KAFKA_SASL_USERNAME and _PASSWORD")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise KafkaConfigError("the heartbeat interval must be shorter than the session timeout")

    def describe(self) -> dict[str, Any]:
        """The configuration as it may be logged: no password, no key file contents."""
        return {"bootstrap": list(self.bootstrap), "prefix": self.prefix, "group": self.group,
                "security_protocol": self.security_protocol, "sasl_mechanism": self.sasl_mechanism,
                "tls_ca": bool(self.ssl_cafile), "tls_client_cert": bool(self.ssl_certfile)}

    # -- topics -------------------------------------------------------------------------------------------------

    def inbound_topic(self, kind: str) -> str:
        if kind not in AGENCY_KINDS:
            raise KafkaConfigError(f"no inbound topic for agency kind {kind!r}")
        return f"{self.prefix}.in.{kind}"

    def inbound_topics(self, kinds: Iterable[str] = AGENCY_KINDS) -> list[str]:
        return [self.inbound_topic(kind) for kind in kinds]

    def kind_of(self, topic: str) -> str:
        """The agency kind an inbound topic stands for (the topic fixes the publisher's kind)."""
        head = f"{self.prefix}.in."
        kind = topic[len(head):] if topic.startswith(head) else None
        if kind not in AGENCY_KINDS:
            raise KafkaConfigError(f"{topic!r} is not an inbound topic of prefix {self.prefix!r}")
        return kind

    @property
    def rejected_topic(self) -> str:
        return f"{self.prefix}.rejected"

    def outbound_topic(self, kind: str, region: str) -> str:
        if kind not in AGENCY_KINDS:
            raise KafkaConfigError(f"no outbound topic for agency kind {kind!r}")
        if not TOPIC_PART.match(region):
            raise KafkaConfigError(f"region {region!r} cannot be part of a topic name")
        return f"{self.prefix}.out.{kind}.{region}"

    # -- clients ------------------------------------------------------------------------------------------------

    def client_settings(self) -> dict[str, Any]:
        """Connection and security settings common to every kafka-python client."""
        settings: dict[str, Any] = {"bootstrap_servers": list(self.bootstrap),
                                    "security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            settings.update(ssl_cafile=self.ssl_cafile, ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile,
                            ssl_password=self.ssl_password, ssl_check_hostname=self.ssl_check_hostname)
        if self.security_protocol.startswith("SASL"):
            settings.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                            sasl_plain_password=self.sasl_password)
        return settings

    def producer(self, role: str = "producer", **overrides: Any):
        """An idempotent producer waiting for all in-sync replicas (acks=all): no loss, no broker-side duplicates
        on retries, per-partition order kept."""
        from kafka import KafkaProducer

        settings = {**self.client_settings(), "client_id": f"{self.client_id}-{role}", "acks": "all",
                    "enable_idempotence": True, "linger_ms": 5, "max_request_size": self.max_message_bytes + 65_536,
                    **overrides}
        return KafkaProducer(**settings)

    def consumer(self, group: str | None = None, role: str = "consumer", **overrides: Any):
        """A consumer without auto-commit: positions live in the event store (the Kafka offsets are informative)."""
        from kafka import KafkaConsumer

        settings = {**self.client_settings(), "client_id": f"{self.client_id}-{role}", "group_id": group,
                    "enable_auto_commit": False, "auto_offset_reset": "earliest",
                    "session_timeout_ms": self.session_timeout_ms, "heartbeat_interval_ms": self.heartbeat_interval_ms,
                    "max_poll_interval_ms": self.max_poll_interval_ms, "max_poll_records": self.max_poll_records,
                    "max_partition_fetch_bytes": max(1_048_576, self.max_message_bytes + 65_536), **overrides}
        return KafkaConsumer(**settings)

    def admin(self):
        from kafka import KafkaAdminClient

        return KafkaAdminClient(**self.client_settings(), client_id=f"{self.client_id}-admin")

    def ensure_topics(self, names: Iterable[str], partitions: int | None = None) -> list[str]:
        """Create the topics that do not exist yet; returns those created. Where the service may not create topics
        (a Kafka ACL), a warning is logged and they must be created by the operator (docs/kafka.md)."""
        from kafka.admin import NewTopic
        from kafka.errors import KafkaError, TopicAlreadyExistsError

        wanted = list(dict.fromkeys(names))
        admin = self.admin()
        try:
            existing = set(admin.list_topics())
            missing = [name for name in wanted if name not in existing]
            if not missing:
                return []
            try:
                admin.create_topics([NewTopic(name, partitions or self.partitions, self.replication_factor)
                                     for name in missing])
            except TopicAlreadyExistsError:
                pass  # another worker created them meanwhile
            except KafkaError as error:
                log.warning("could not create topics %s (%s); create them with the partitions you want",
                            ", ".join(missing), type(error).__name__)
                return []
            return missing
        finally:
            admin.close()


def quiet_client_diagnostics() -> None:
    """kafka-python 3 warns when its network thread waited for the GIL ("blocking the event loop"): while a worker
    folds and stores a batch, it does. Harmless for us; keep real warnings (connections, errors)."""
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)


def producer_errors(futures: Iterable[Any], timeout: float = 60) -> list[BaseException]:
    """Wait for every send; the errors of those that failed."""
    errors = []
    for future in futures:
        try:
            future.get(timeout=timeout)
        except Exception as error:  # KafkaError, or a timeout: the caller decides (retry the batch, answer 503)
            errors.append(error)
    return errors
