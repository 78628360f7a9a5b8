"""Reliability under load: the real server (`handoff serve`, its own process, SQLite) and 12 concurrent clients of
150 mixed requests each: valid and invalid publishes, reads, extreme `as_of` values. No answer may be a 5xx, no
connection may fail, and every refused body or item must be in the dead-letter store afterwards.

The store already holds a poison person (an event its fold cannot process, as a store written before the date
checks would), and the clients publish the poison of issue #14 again (a term_end of 9999-12-31, which is refused):
the service must go on for everyone else. This is a bound on failures, not a speed test: the figures of speed are
`handoff bench`'s."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from adapters.config import Settings
from services.bootstrap import bootstrap
from services.ingest import Source
from tests.builders import decision, envelope, id_number
from tests.e2e.test_browser import free_port
from tests.integration.test_quarantine import store_poison

CLIENTS, REQUESTS = 12, 150
HANDOFF = str(Path(sys.executable).with_name("handoff"))
POISONED = id_number(999, "520222")
# Rate limits are per principal; this test measures failures under concurrency, not the limiter (its own tests).
NO_RATE_LIMIT = {"HANDOFF_RATE_LIMIT": "1000000/minute"}


def principal(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([HANDOFF, "principal", "add", *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["token"]


@pytest.fixture
def served(tmp_path):
    database_url = f"sqlite:///{tmp_path}/handoff.sqlite3"
    env = {**os.environ, "HANDOFF_DATABASE_URL": database_url, "PYTHONWARNINGS": "ignore", **NO_RATE_LIMIT}
    env.pop("HANDOFF_CIPHER_KEY", None)
    services = bootstrap(Settings(database_url=database_url))
    try:
        assert services.ingestor.ingest([decision(POISONED)], Source("legacy")).accepted == 1
        store_poison(services, POISONED)
    finally:
        services.close()
    tokens = {
        "court": principal(env, "--role", "publisher", "--kind", "court", "--id", "FY-520222",
                           "--region", "520222", "--name", "某县人民法院"),
        "bureau": principal(env, "--role", "publisher", "--kind", "bureau", "--id", "SFJ-520222",
                            "--region", "520222", "--name", "某县司法局"),
        "oversight": principal(env, "--role", "oversight", "--region", "5202", "--name", "市检察院"),
        "auditor": principal(env, "--role", "auditor", "--name", "审计员"),
    }
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([HANDOFF, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
        time.sleep(0.1)
    yield {"base": base, "tokens": tokens, "database_url": database_url, "log": tmp_path / "server.log"}
    server.terminate()
    server.wait(20)
    log.close()


def requests_of(client_number: int, rng: random.Random) -> list[tuple[str, str, str, bytes | None, str]]:
    """(token key, method, path, body, kind) of one client's requests: kind is 'valid', 'refused' or 'read'."""
    person = lambda n: id_number(client_number * 1000 + n, "520222")  # noqa: E731 - each client its own persons
    at = lambda day: dt.datetime(2025, 3, 1, 10, tzinfo=dt.timezone.utc) + dt.timedelta(days=day)  # noqa: E731
    refused_bodies = [
        b'{"event_id": ',  # not JSON
        b"[]",  # an empty batch
        "\ufeff{}".encode(),  # a byte-order mark
        json.dumps(decision(person(900))).replace('"event_type"', '"event_type": "x", "event_type"', 1).encode(),
        json.dumps({**decision(person(901)), "payload": {**decision(person(901))["payload"],
                                                         "term_end": "9999-12-31"}}).encode(),  # the poison
        json.dumps({**decision(person(902)), "person": {"id_number": person(902), "name": "\u202e三张"}}).encode(),
        json.dumps(decision(person(903))).replace('"schema_version": 1', '"schema_version": 1' + "0" * 5000).encode(),
        b'{"schema_version": ' + b"9" * 5000 + b"}",  # an integer past Python's 4,300-digit limit
        json.dumps({"payload": {}}).encode(),
    ]
    reads = ["/v1/gaps", "/v1/stats", "/v1/upcoming?within=30d", "/v1/gaps?as_of=2025-06-01",
             "/v1/gaps?as_of=9999-12-31", "/v1/stats?as_of=0001-01-01", "/v1/gaps?known_at=2025-04-01",
             f"/v1/persons/{POISONED}", f"/v1/persons/{person(1)}", "/v1/gaps?as_of=" + "9" * 5000, "/health"]
    out = []
    for n in range(REQUESTS):
        roll = rng.random()
        if roll < 0.35:
            body = json.dumps(decision(person(n), start=at(n % 200).date())).encode()
            out.append(("court", "POST", "/v1/events", body, "valid"))
        elif roll < 0.45:
            body = json.dumps(envelope("subject_enrolled", {"region": "520222"}, kind="bureau", person=person(n),
                                       occurred_at=at(n % 200 + 3))).encode()
            out.append(("bureau", "POST", "/v1/events", body, "valid"))
        elif roll < 0.65:
            out.append(("court", "POST", "/v1/events", rng.choice(refused_bodies), "refused"))
        else:
            out.append(("auditor" if roll > 0.95 else "oversight", "GET", rng.choice(reads), None, "read"))
    return out


def test_concurrent_mixed_load_gives_no_5xx_and_keeps_every_refusal(served):
    statuses: Counter = Counter()
    failures: list[str] = []
    refused_items = Counter()
    lock = threading.Lock()

    def client(number: int) -> None:
        rng = random.Random(number)
        with httpx.Client(base_url=served["base"], timeout=120) as http:
            for key, method, path, body, kind in requests_of(number, rng):
                headers = {"Authorization": f"Bearer {served['tokens'][key]}", "Content-Type": "application/json"}
                try:
                    response = http.request(method, path, content=body, headers=headers)
                except httpx.TransportError as error:
                    with lock:
                        failures.append(f"{method} {path}: {type(error).__name__}")
                    continue
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code >= 500:
                        failures.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
                    if method == "POST":
                        answer = response.json()
                        # A body refused whole is one dead letter; a batch refused item by item, one per item.
                        refused_items["dead letters"] += answer.get("rejected", 1 if "error" in answer else 0)
                        if kind == "valid" and response.status_code != 200:
                            failures.append(f"valid publish answered {response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(number,)) for number in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not failures, failures[:10]
    assert sum(statuses.values()) == CLIENTS * REQUESTS
    assert 429 not in statuses, statuses  # the limit was set out of reach: any refusal here would be a defect
    assert "database is locked" not in served["log"].read_text()
    services = bootstrap(Settings(database_url=served["database_url"]))
    try:
        kept = sum(1 for letter in services.store.dead_letters(limit=1_000_000) if letter.source.startswith("http"))
        assert kept == refused_items["dead letters"] > CLIENTS * REQUESTS * 0.1
        services.projection.catch_up()
        assert [row.id_number for row in services.read_model.quarantined()] == [POISONED]
        assert services.queries.stats()  # everyone else is projected
    finally:
        services.close()
