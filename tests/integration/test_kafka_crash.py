"""Exactly once through crashes and rebalances: the ingest worker as a real process, killed with SIGKILL at random
moments, restarted, joined by a second member of its group; the store ends with exactly the published events and
the same gaps as the embedded (no Kafka) run of the same data.

The data ends a month before the tests' `now`, and every `handoff` process (the embedded import, the workers, the
gap listings compared) runs with its clock at `now` through libfaketime (tests/clock.py): the machine's date
changes neither the data nor the gaps.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.eventstore import EventStore
from adapters.kafka import KafkaConfig, tracking_name
from services.entrypoints.workers.kafka_ingest import publish_file
from tests.kafka_broker import kafka, kafka_broker, kafka_cli, kafka_env, stored_event_ids  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.clock]

HANDOFF = str(Path(sys.executable).parent / "handoff")
EVENTS = 20_000
KILLS = 10


def handoff(database_url: str, faketime: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **faketime, "HANDOFF_DATABASE_URL": database_url}
    completed = subprocess.run([HANDOFF, *args], capture_output=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr.decode()
    return completed


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, now, faketime):
    """20,000 simulated envelopes (two counties, injected failures, late events), and the embedded run's store."""
    work = tmp_path_factory.mktemp("kafka-crash")
    until = (now - dt.timedelta(days=30)).isoformat()
    full = work / "simulated.jsonl"
    handoff(f"sqlite:///{work}/unused.sqlite3", faketime, "simulate", "--persons", "1400", "--seed", "11",
            "--counties", "520222,520221", "--until", until, "--out", str(full))
    lines = [line for line in full.read_bytes().splitlines() if line.strip()][:EVENTS]
    assert len(lines) == EVENTS
    path = work / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    embedded = f"sqlite:///{work}/embedded.sqlite3"
    report = json.loads(handoff(embedded, faketime, "publish", "--import", str(path)).stdout)
    assert report["accepted"] == EVENTS, report["rejections"][:3]
    event_ids = sorted(json.loads(line)["event_id"] for line in lines)
    assert len(set(event_ids)) == EVENTS
    return {"path": path, "event_ids": event_ids, "embedded": embedded}


def gaps(database_url: str, faketime: dict[str, str]) -> list:
    """Every gap `handoff gaps` lists, each process starting its clock at `now`: two stores compared at one moment."""
    return json.loads(handoff(database_url, faketime, "gaps", "--state", "all", "--format", "json").stdout)


def positions_total(store: EventStore, config: KafkaConfig) -> int:
    """How far the partitions are on record, summed (progress, whoever made it)."""
    total = 0
    for topic in config.inbound_topics():
        for partition in range(config.partitions):
            total += (store.source_position(tracking_name(topic, partition)) or -1) + 1
    return total


def worker(config: KafkaConfig, database_url: str, faketime: dict[str, str], *extra: str,
           **env_extra: str) -> subprocess.Popen:
    env = {**os.environ, **kafka_env(config), **faketime, "HANDOFF_DATABASE_URL": database_url, **env_extra}
    return subprocess.Popen([*kafka_cli(), "ingest", "--import", *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_exactly_the_published_events(database_url: str, dataset, faketime: dict[str, str]) -> None:
    store = EventStore(database_url)
    try:
        stored = stored_event_ids(store)
        letters = list(store.dead_letters(limit=100))
    finally:
        store.close()
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert sorted(stored) == dataset["event_ids"], "the store differs from the published set"
    assert letters == []
    assert gaps(database_url, faketime) == gaps(dataset["embedded"], faketime)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(database_url, kafka, dataset, faketime):
    assert len(publish_file(kafka, dataset["path"])) == EVENTS
    rng = random.Random(int(os.environ.get("HANDOFF_CRASH_SEED", "20250101")))
    store = EventStore(database_url)
    kills: list[int] = []
    started = time.monotonic()
    try:
        while len(kills) < KILLS:
            before = positions_total(store, kafka)
            assert before < EVENTS, f"all ingested after only {len(kills)} kills: kill sooner"
            # Polls of 200 messages: many transactions per life, so that ten lives do not finish the work (a worker
            # that fetches in one process while it stores in another gets through 2,000-message polls too fast).
            process = worker(kafka, database_url, faketime, HANDOFF_KAFKA_MAX_POLL_RECORDS="200")
            # Kill while it works: once it has stored something, after a random moment (mid-batch, mid-commit...).
            wait_for(lambda: positions_total(store, kafka) > before or process.poll() is not None, 60,
                     "the restarted worker to make progress")
            time.sleep(rng.uniform(0, 0.1))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            kills.append(positions_total(store, kafka))
            print(f"kill {len(kills)} at {time.monotonic() - started:.1f}s: {kills[-1]} of {EVENTS} on record")
        # The last restart runs until every event is on record (however long the group join takes on a loaded
        # machine), then is stopped gracefully.
        final = worker(kafka, database_url, faketime)
        try:
            wait_for(lambda: positions_total(store, kafka) >= EVENTS or final.poll() is not None, 300,
                     "every event on record after the last restart")
            final.send_signal(signal.SIGTERM)
            out, err = final.communicate(timeout=60)
        finally:
            if final.poll() is None:
                final.kill()
        assert final.returncode == 0, err.decode()
    finally:
        store.close()
    assert len(kills) >= KILLS and kills[-1] < EVENTS, kills  # every kill hit a worker with work left
    assert_exactly_the_published_events(database_url, dataset, faketime)


def test_two_workers_and_a_rebalance_in_the_middle(database_url, kafka, dataset, faketime):
    assert len(publish_file(kafka, dataset["path"])) == EVENTS
    store = EventStore(database_url)
    # Tiny polls make the run long enough for the group to change while it works: the second worker must join
    # before the first has stored all of what it keeps, or killing the first moves nothing.
    slow = {"HANDOFF_KAFKA_MAX_POLL_RECORDS": "5"}
    first = worker(kafka, database_url, faketime, **slow)
    second = None
    try:
        wait_for(lambda: positions_total(store, kafka) > 0, 60, "the first worker to make progress")
        second = worker(kafka, database_url, faketime, **slow)  # joins: the group rebalances (partitions split)
        wait_for(lambda: positions_total(store, kafka) > EVENTS // 2, 120, "half the events")
        first.send_signal(signal.SIGKILL)  # leaves without a word: its partitions move after the session timeout
        first.wait(timeout=30)
        wait_for(lambda: positions_total(store, kafka) >= EVENTS, 180, "every event on record")
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err.decode()
        stats = json.loads(out.decode().strip().splitlines()[-1])
        assert stats["assignments"] >= 2  # it got partitions at least twice: a rebalance happened under it
        assert 0 < stats["accepted"] < EVENTS  # both workers stored part of the events
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
        store.close()
    assert_exactly_the_published_events(database_url, dataset, faketime)
