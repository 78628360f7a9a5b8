"""`handoff bench --kafka`: the ingest worker's rate beside a raw kafka-python consumer of the same messages, measured
in the same run on a real Kafka-protocol broker (the session's Tansu; without HANDOFF_KAFKA_BOOTSTRAP the bench
starts one of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.kafka_broker import kafka_broker  # noqa: F401

HANDOFF = str(Path(sys.executable).parent / "handoff")


def test_bench_kafka_measures_the_worker_beside_raw_consume(kafka_broker):
    env = {**os.environ, "HANDOFF_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "HANDOFF_KAFKA_SESSION_TIMEOUT_MS": "3000",
           "HANDOFF_KAFKA_HEARTBEAT_INTERVAL_MS": "500"}
    result = subprocess.run([HANDOFF, "bench", "--quick", "--persons", "200", "--kafka", "--format", "json"],
                            capture_output=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    report = json.loads(result.stdout)
    kafka = report["kafka"]
    events = report["data"]["events"]
    assert kafka["available"] and kafka["messages"] == events
    assert kafka["raw_consume"]["events"] == events
    assert kafka["ingest_worker"]["events"] == kafka["ingest_worker"]["accepted"] == events
    assert kafka["raw_consume"]["events_per_s"] > 0 and kafka["ingest_worker"]["events_per_s"] > 0
    assert report["ratios"]["ingest_over_raw_consume"] == round(
        kafka["ingest_worker"]["events_per_s"] / kafka["raw_consume"]["events_per_s"], 3)
