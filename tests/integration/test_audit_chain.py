"""The tamper-evident record: tamper with the database behind the service's back, and `audit verify` finds it.

Every test runs on SQLite and on a real PostgreSQL server. The tampering is raw SQL on eventsourcing's own tables
(SQLite `stored_events`, whose rowid is the notification id; PostgreSQL `public.handoff_events` with its
`notification_id` column) and on the chain's tables, exactly as someone with database access would do it.
"""

from __future__ import annotations

import base64
import datetime as dt
import copy
import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from adapters.chain import DEAD_LETTERS, EVENTS, AuditChain, chain_hash, event_hash
from adapters.config import Settings
from adapters.eventstore import DEAD_LETTER_TOPIC, EventStore
from domain.person import DeadLetter, EventClaim, Person, RecordedEvent
from services.entrypoints.cli import main as cli
from services.audit import Auditor
from services.bootstrap import bootstrap
from services.ingest import Source
from tests.builders import case_history, id_number, mixed_lines

ROOT = Path(__file__).resolve().parents[2]
VERIFY_EXPORT = ROOT / "tools" / "verify_export.py"
PERSON_RECORDED = "domain.person:Person.EventRecorded"


# -- raw access to the database, behind the service's back -------------------------------------------------------

class Raw:
    """Raw SQL on the store's tables; `?` placeholders, `{t}` the events table, `{id}` its notification id."""

    def __init__(self, database_url: str):
        self.sqlite = database_url.startswith("sqlite")
        if self.sqlite:
            self.connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
            self.table, self.id = "stored_events", "rowid"
        else:
            import psycopg

            self.connection = psycopg.connect(database_url, autocommit=True)
            self.table, self.id = "public.handoff_events", "notification_id"

    def run(self, sql: str, params: tuple = ()) -> list[tuple]:
        sql = sql.format(t=self.table, id=self.id)
        if not self.sqlite:
            sql = sql.replace("?", "%s")
        cursor = self.connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        self.connection.close()

    def row(self, position: int) -> tuple[Any, int, str, bytes]:
        [(originator, version, topic, state)] = self.run(
            "SELECT originator_id, originator_version, topic, state FROM {t} WHERE {id} = ?", (position,))
        return originator, version, topic, bytes(state)

    def positions(self, topic: str | None = None) -> list[int]:
        if topic:
            return [r[0] for r in self.run("SELECT {id} FROM {t} WHERE topic = ? ORDER BY {id}", (topic,))]
        return [r[0] for r in self.run("SELECT {id} FROM {t} ORDER BY {id}")]

    def set_state(self, position: int, state: bytes) -> None:
        self.run("UPDATE {t} SET state = ? WHERE {id} = ?", (state, position))

    def delete(self, position: int) -> None:
        self.run("DELETE FROM {t} WHERE {id} = ?", (position,))

    def move(self, old: int, new: int) -> None:
        self.run("UPDATE {t} SET {id} = ? WHERE {id} = ?", (new, old))

    def swap(self, p: int, q: int) -> None:
        self.move(p, -1)
        self.move(q, p)
        self.move(-1, q)

    def forge_after(self, position: int) -> tuple[Any, int]:
        """For a plausible forged event: the stream of the row at `position`, and its next version."""
        originator = self.row(position)[0]
        [(version,)] = self.run("SELECT MAX(originator_version) FROM {t} WHERE originator_id = ?", (originator,))
        return originator, version + 1

    def insert(self, originator, version: int, topic: str, state: bytes, position: int | None = None) -> int:
        if position is None:
            self.run("INSERT INTO {t} (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
                     (originator, version, topic, state))
        else:
            self.run("INSERT INTO {t} ({id}, originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?, ?)",
                     (position, originator, version, topic, state))
        [(top,)] = self.run("SELECT MAX({id}) FROM {t}")
        return position or top

    def shift_up(self, after: int) -> None:
        """Renumber every row after `after` one up (in two steps: the ids are unique at every row)."""
        self.run("UPDATE {t} SET {id} = -{id} - 1 WHERE {id} > ?", (after,))
        self.run("UPDATE {t} SET {id} = -{id} WHERE {id} < 0")


def edited(state: bytes, change) -> bytes:
    """The state with a field changed, re-encoded the way eventsourcing stores it (compact JSON)."""
    document = json.loads(state)
    change(document)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


# -- a store with some history ----------------------------------------------------------------------------------

@pytest.fixture
def services(database_url):
    services = bootstrap(Settings(database_url=database_url))
    lines = mixed_lines(400, seed=5)
    for start in range(0, len(lines), 100):
        services.ingestor.ingest(lines[start:start + 100], Source("test"))
    yield services
    services.close()


@pytest.fixture
def raw(services, database_url):
    raw = Raw(database_url)
    yield raw
    raw.close()


def verify(services, **kwargs) -> dict[str, Any]:
    return Auditor(services.chain).verify(**kwargs)


def finding(result: dict[str, Any], chain: str = EVENTS) -> dict[str, Any]:
    assert result["ok"] is False, result
    [found] = [f for f in result["findings"] if f["chain"] == chain]
    return found


def log_head(services) -> int:
    """The chained head of the log: the last position of either chain."""
    return max(head.position for head in services.chain.heads().values())


def middle(raw: Raw, topic: str = PERSON_RECORDED) -> int:
    positions = raw.positions(topic)
    return positions[len(positions) // 2]


def test_the_chain_covers_every_row_and_an_untouched_store_verifies(services, raw):
    every = raw.positions()
    letters = raw.positions(DEAD_LETTER_TOPIC)
    assert len(letters) > 20 and len(every) > 400
    heads = services.chain.heads()
    assert heads[DEAD_LETTERS].position == letters[-1] and heads[DEAD_LETTERS].links == len(letters)
    assert heads[EVENTS].links == len(every) - len(letters)
    result = verify(services)
    assert result["ok"] is True, result
    assert max(c["head_position"] for c in result["chains"].values()) == every[-1]
    assert result["checked"]["rows"] == result["checked"]["links"] == len(every)
    assert services.chain.extend() == 0  # idempotent: nothing new to link


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_on_sqlite_a_write_is_linked_in_its_own_transaction(database_url, tmp_path):
    """With the follower detached, every write is still linked: the links commit with the events."""
    services = bootstrap(Settings(database_url=database_url))
    try:
        services.store.after_write.clear()
        services.ingestor.ingest(mixed_lines(50, seed=9), Source("test"))
        assert log_head(services) == services.store.recorder.max_notification_id()
        assert verify(services)["ok"] is True
    finally:
        services.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_failure_to_link_in_the_transaction_never_fails_the_write(database_url):
    """The links table gone: the events are stored anyway (the linking is rolled back to a savepoint, the follower
    fails after the commit and says so); once the table is back, the follower links everything and it verifies."""
    services = bootstrap(Settings(database_url=database_url))
    path = database_url.removeprefix("sqlite:///")
    try:
        linked_before = log_head(services)
        with sqlite3.connect(path) as connection:
            connection.execute("ALTER TABLE audit_chain RENAME TO audit_chain_away")
        result = services.ingestor.ingest(mixed_lines(20, seed=3), Source("test"))
        assert result.accepted > 0
        assert log_head(services) == linked_before < services.store.recorder.max_notification_id()
        with sqlite3.connect(path) as connection:
            connection.execute("ALTER TABLE audit_chain_away RENAME TO audit_chain")
        assert services.chain.extend() == services.store.recorder.max_notification_id() - linked_before
        assert verify(services)["ok"] is True
    finally:
        services.close()


def test_edited_payload_is_found_at_its_position(services, raw):
    position = middle(raw)
    originator, version, topic, state = raw.row(position)
    raw.set_state(position, edited(state, lambda d: d["payload"].update(region="520221")))
    found = finding(verify(services))
    assert (found["kind"], found["position"], found["changed"]) == ("edited_event", position, ["state"])


def test_edited_topic_is_found(services, raw):
    position = middle(raw)
    raw.run("UPDATE {t} SET topic = ? WHERE {id} = ?", ("domain.person:Person.Registered", position))
    found = finding(verify(services))
    assert (found["kind"], found["position"], found["changed"]) == ("edited_event", position, ["topic"])


def test_rows_eventsourcing_could_not_read_are_reported_not_crashed_on(services, raw, database_url):
    position, later = middle(raw), raw.positions(PERSON_RECORDED)[-2]
    raw.run("UPDATE {t} SET state = NULL WHERE {id} = ?", (later,))
    if database_url.startswith("sqlite"):  # PostgreSQL's uuid column would refuse it
        raw.run("UPDATE {t} SET originator_id = 'not-a-uuid' WHERE {id} = ?", (position,))
    else:
        raw.run("UPDATE {t} SET originator_version = originator_version + 1000 WHERE {id} = ?", (position,))
    found = finding(verify(services))
    assert (found["kind"], found["position"]) == ("edited_event", position)
    assert found["changed"] == (["originator_id"] if database_url.startswith("sqlite") else ["originator_version"])


def test_deleted_row_is_found(services, raw):
    position = middle(raw)
    raw.delete(position)
    found = finding(verify(services))
    assert (found["kind"], found["position"]) == ("deleted_event", position)
    assert found["chained"]["originator_version"] >= 1


def test_deleted_row_with_later_rows_moved_down_is_found(services, raw):
    position = middle(raw)
    raw.delete(position)
    raw.run("UPDATE {t} SET {id} = -{id} + 1 WHERE {id} > ?", (position,))
    raw.run("UPDATE {t} SET {id} = -{id} WHERE {id} < 0")
    found = finding(verify(services))
    assert (found["kind"], found["position"]) == ("deleted_event", position)


def test_inserted_row_after_the_head_is_found_and_verify_does_not_chain_it(services, raw):
    head = log_head(services)
    originator, version = raw.forge_after(middle(raw))
    _, _, topic, state = raw.row(middle(raw))
    forged = raw.insert(originator, version, topic, state)
    assert forged == head + 1
    for _ in range(2):  # verify leaves the chain as it is: the same finding twice
        found = finding(verify(services))
        assert (found["kind"], found["position"]) == ("unchained_after_head", forged)
        assert "behind the service's back" in found["message"] and "handoff audit seal" in found["message"]
    assert log_head(services) == head


def test_inserted_row_with_later_rows_moved_up_is_found(services, raw):
    position = middle(raw)
    originator, version = raw.forge_after(position)
    _, _, topic, state = raw.row(position)
    raw.shift_up(position)
    raw.insert(originator, version, topic, state, position=position + 1)
    found = finding(verify(services))
    assert (found["kind"], found["position"], found["now_at"]) == ("inserted_event", position + 1, position + 2)


def test_inserted_row_in_a_gap_between_chained_ids_is_found(services, raw, database_url):
    """PostgreSQL leaves gaps in its notification ids (a refused transaction uses up its ids); a row forged into
    one lies between chained positions. (SQLite reuses no id and leaves no gap: there, the test above.)"""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite leaves no gaps in its rowids")
    from eventsourcing.persistence import IntegrityError

    person, _ = a_person(raw, services)
    with pytest.raises(IntegrityError):  # a version already stored: the transaction is refused, its id spent
        services.store.append([Person(person)])
    services.ingestor.ingest([json.dumps(e).encode() for e in case_history(9001, random.Random(1))], Source("test"))
    ids = raw.positions()
    gaps = [p + 1 for p, q in zip(ids, ids[1:]) if q != p + 1]
    assert gaps, "expected a gap in the notification ids"
    gap = gaps[-1]
    originator, version = raw.forge_after(middle(raw))
    _, _, topic, state = raw.row(middle(raw))
    raw.insert(originator, version, topic, state, position=gap)
    found = finding(verify(services))
    assert (found["kind"], found["position"]) == ("inserted_event", gap)


def test_swapped_rows_are_found_as_reordered(services, raw):
    recorded = raw.positions(PERSON_RECORDED)
    p, q = recorded[len(recorded) // 3], recorded[2 * len(recorded) // 3]
    raw.swap(p, q)
    found = finding(verify(services))
    assert (found["kind"], found["position"], found["now_at"], found["chained_at"]) == ("reordered_events", p, q, q)


def test_swapped_payloads_are_found_as_mismatches(services, raw):
    recorded = raw.positions(PERSON_RECORDED)
    p, q = recorded[len(recorded) // 3], recorded[2 * len(recorded) // 3]
    state_p, state_q = raw.row(p)[3], raw.row(q)[3]
    raw.set_state(p, state_q)
    raw.set_state(q, state_p)
    found = finding(verify(services))
    assert (found["kind"], found["position"]) == ("edited_event", p)


@pytest.mark.parametrize("tamper", ["event_hash", "chain_hash", "prev_hash", "deleted_link", "deleted_last_link",
                                    "head_record"])
def test_tampered_chain_table_is_found(services, raw, tamper):
    position = middle(raw)
    last = services.chain.heads()[EVENTS].position
    other = "f" * 64
    if tamper == "deleted_link":
        raw.run("DELETE FROM audit_chain WHERE chain = ? AND position = ?", (EVENTS, position))
    elif tamper == "deleted_last_link":
        raw.run("DELETE FROM audit_chain WHERE chain = ? AND position = ?", (EVENTS, last))
        position = last
    elif tamper == "head_record":
        raw.run("UPDATE audit_heads SET links = links + 1 WHERE chain = ?", (EVENTS,))
        position = last
    else:
        raw.run(f"UPDATE audit_chain SET {tamper} = ? WHERE chain = ? AND position = ?", (other, EVENTS, position))
    found = finding(verify(services))
    assert (found["kind"], found["position"]) == ("chain_tampered", position)


def test_dead_letter_chain_edited_and_deleted(services, raw):
    letters = raw.positions(DEAD_LETTER_TOPIC)
    edit, gone = letters[len(letters) // 3], letters[2 * len(letters) // 3]
    raw.set_state(edit, edited(raw.row(edit)[3], lambda d: d.update(reason="accepted after all")))
    raw.delete(gone)
    result = verify(services)
    found = finding(result, DEAD_LETTERS)
    assert (found["kind"], found["position"]) == ("edited_event", edit)
    assert result["chains"][EVENTS]["ok"] is True  # the other chain is intact
    assert verify(services, chains=[EVENTS])["ok"] is True
    assert finding(verify(services, chains=[DEAD_LETTERS]), DEAD_LETTERS)["position"] == edit


def test_dead_letter_deleted(services, raw):
    letters = raw.positions(DEAD_LETTER_TOPIC)
    gone = letters[len(letters) // 2]
    raw.delete(gone)
    found = finding(verify(services, chains=[DEAD_LETTERS]), DEAD_LETTERS)
    assert (found["kind"], found["position"]) == ("deleted_event", gone)


def rechain(raw: Raw, chain: str, start: int) -> None:
    """What a careful attacker does after editing an event: recompute every link from there, and the head."""
    rows = raw.run("SELECT position, prev_hash FROM audit_chain WHERE chain = ? AND position >= ? ORDER BY position",
                   (chain, start))
    prev = rows[0][1]
    for position, _ in rows:
        originator, version, topic, state = raw.row(position)
        originator = str(originator if isinstance(originator, UUID) else UUID(originator))
        digest = event_hash(topic, originator, version, state)
        new = chain_hash(prev, digest)
        raw.run("UPDATE audit_chain SET event_hash = ?, prev_hash = ?, chain_hash = ? WHERE chain = ? AND position = ?",
                (digest, prev, new, chain, position))
        prev = new
    raw.run("UPDATE audit_heads SET head_hash = ? WHERE chain = ?", (prev, chain))


def test_a_rewritten_chain_is_caught_by_the_anchor_a_third_party_holds(services, raw):
    held = Auditor(services.chain).anchor()
    position = middle(raw)
    raw.set_state(position, edited(raw.row(position)[3], lambda d: d["payload"].update(region="520221")))
    rechain(raw, EVENTS, position)
    found = finding(verify(services))  # the anchors recorded in the database still catch it ...
    assert (found["kind"], found["position"]) == ("anchor_mismatch", held[0]["position"])
    raw.run("DELETE FROM audit_anchors")
    assert verify(services)["ok"] is True  # ... until they are deleted too: the chain alone proves nothing then,
    found = finding(verify(services, anchors=held))  # but the anchor held outside does
    assert (found["kind"], found["position"]) == ("anchor_mismatch", held[0]["position"])
    assert held[0]["head_hash"] in found["message"]


def test_anchor_file_through_the_cli(services, raw, database_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HANDOFF_DATABASE_URL", database_url)
    anchor_file = tmp_path / "anchors.json"
    assert cli.main(["audit", "anchor", "--out", str(anchor_file), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(anchor_file.read_text()) == printed
    assert {a["chain"] for a in printed["anchors"]} == {EVENTS, DEAD_LETTERS}
    assert cli.main(["audit", "verify", "--anchor", str(anchor_file), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["checked"]["anchors"] == 4  # 2 from the file, 2 recorded
    position = middle(raw)
    raw.delete(position)
    assert cli.main(["audit", "verify", "--anchor", str(anchor_file), "--format", "json"]) == 4
    result = json.loads(capsys.readouterr().out)
    assert (result["finding"]["kind"], result["finding"]["position"]) == ("deleted_event", position)
    assert cli.main(["audit", "verify", "--chain", "dead_letters", "--format", "json"]) == 0
    capsys.readouterr()
    assert cli.main(["audit", "verify"]) == 4
    assert f"events position {position}: deleted_event" in capsys.readouterr().out


def test_rows_of_a_process_without_the_chain_are_sealed_by_the_operator(services, raw, database_url, monkeypatch,
                                                                       capsys):
    # A process without the chain (an older version of the service) stored a batch: its rows are in no chain.
    from services.ingest import Ingestor

    unchained_store = EventStore(database_url)
    Ingestor(unchained_store).ingest([json.dumps(e).encode() for e in case_history(7001, random.Random(2))],
                                     Source("older version"))
    unchained_store.close()
    head = log_head(services)
    found = finding(verify(services))
    assert (found["kind"], found["position"]) == ("unchained_after_head", head + 1)
    monkeypatch.setenv("HANDOFF_DATABASE_URL", database_url)
    assert cli.main(["audit", "seal", "--format", "json"]) == 0
    sealed = json.loads(capsys.readouterr().out)
    assert sealed["sealed"] == len(raw.positions()) - head
    assert verify(services)["ok"] is True


def test_concurrent_extenders_do_not_corrupt_the_chain(services, database_url):
    """Several writers ingesting and extending at once (each with its own store and chain, as separate processes
    would), plus idle extenders racing them: every row is linked once, in order, and the chain verifies."""
    from services.ingest import Ingestor

    errors: list[str] = []
    # Opened one after the other: eventsourcing's own start-up (CREATE ... IF NOT EXISTS, CREATE OR REPLACE
    # FUNCTION) is not safe against a PostgreSQL process starting at the same moment.
    writers = [(n, EventStore(database_url)) for n in range(1, 4)]
    extenders = [EventStore(database_url) for _ in range(2)]

    def writer(number: int, store: EventStore) -> None:
        try:
            chain = AuditChain(store)
            store.after_write.append(chain.link_written)
            ingestor = Ingestor(store)
            rng = random.Random(number)
            for batch in range(4):
                lines = [json.dumps(e).encode()
                         for n in range(5) for e in case_history(10_000 * number + 10 * batch + n, rng)]
                ingestor.ingest(lines, Source(f"writer{number}"))
            chain.close()
            store.close()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(traceback.format_exc())

    def extender(store: EventStore) -> None:
        try:
            chain = AuditChain(store, page_size=7)
            for _ in range(30):
                chain.extend()
            chain.close()
            store.close()
        except BaseException as error:  # pragma: no cover
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=writer, args=pair) for pair in writers] + \
              [threading.Thread(target=extender, args=(store,)) for store in extenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, "\n".join(errors)
    services.chain.extend()
    result = verify(services)
    assert result["ok"] is True, result
    raw = Raw(database_url)
    try:
        assert result["checked"]["links"] == result["checked"]["rows"] == len(raw.positions()) > 400
    finally:
        raw.close()


# -- 100,000 events ---------------------------------------------------------------------------------------------

def many_events(store: EventStore, chain: AuditChain, count: int, batch: int = 5000) -> int:
    """`count` stored events, fast: persons with ten recorded events each and a dead letter now and then, appended
    in batches through EventStore.append and chained after each batch (as ingest does)."""
    stored, n = 0, 0
    while stored < count:
        aggregates, claims = [], []
        size = 0
        while size < batch and stored + size < count:
            n += 1
            person = Person(id_number(n))
            for k in range(10):
                claims.append(EventClaim(f"e-{n}-{k}", f"{n}-{k}", person.id, "bureau", "SFJ-520222",
                                         "subject_reported"))
                person.record(RecordedEvent(
                    event_id=f"e-{n}-{k}", event_type="subject_reported", schema_version=1,
                    agency={"kind": "bureau", "id": "SFJ-520222", "region": "520222"},
                    person={"id_number": person.id_number, "name": "张三"},
                    occurred_at="2025-01-01T09:00:00+08:00", recorded_at="2025-01-02T09:00:00+08:00",
                    case_ref=None, payload={"region": "520222", "n": k}, content_hash=f"{n}-{k}", source="bulk",
                    ingested_at="2025-01-02T09:00:00+08:00"))
            aggregates.append(person)
            size += 11
            if n % 20 == 0:
                aggregates.append(DeadLetter(raw="{not json", raw_sha256="0" * 64, raw_bytes=9, code="invalid_json",
                                             reason="not JSON", source="bulk", position=str(n), event_id=None,
                                             received_at="2025-01-02T09:00:00+08:00"))
                size += 1
        store.append(aggregates, claims=claims)
        chain.extend()
        stored += size
    return stored


def test_a_hundred_thousand_events_verify_in_seconds(database_url, tmp_path, capsys, monkeypatch):
    """100,000 events (about 9,000 persons, 450 dead letters), on both backends."""
    count = 100_000
    store = EventStore(database_url)
    chain = AuditChain(store)
    try:
        started = time.perf_counter()
        stored = many_events(store, chain, count)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        result = Auditor(chain).verify()
        took = time.perf_counter() - started
        assert result["ok"] is True, result
        assert result["checked"]["rows"] == stored >= count
        timing = (f"\n{database_url.split(':')[0]}: {stored} events stored and chained in {generated:.1f} s, "
                  f"verified in {took:.1f} s ({stored / took:,.0f} events/s)")
        # The console command on the same store: exit 0, and the head it reports.
        monkeypatch.setenv("HANDOFF_DATABASE_URL", database_url)
        started = time.perf_counter()
        assert cli.main(["audit", "verify", "--format", "json"]) == 0
        took = time.perf_counter() - started
        printed = json.loads(capsys.readouterr().out)
        assert printed["ok"] is True and printed["chains"][EVENTS]["head_position"] == chain.heads()[EVENTS].position
        with capsys.disabled():
            print(f"{timing}; `handoff audit verify` (bootstrap included): {took:.1f} s")
    finally:
        chain.close()
        store.close()


# -- exports and the offline verifier ---------------------------------------------------------------------------

def run_verifier(path: Path, *extra: str) -> subprocess.CompletedProcess:
    # -I -S: no site-packages, no environment: the checker needs the standard library only.
    return subprocess.run([sys.executable, "-I", "-S", str(VERIFY_EXPORT), str(path), *extra], capture_output=True,
                          text=True, timeout=60)


def export_person(database_url: str, person: str, path: Path, monkeypatch, capsys) -> dict[str, Any]:
    monkeypatch.setenv("HANDOFF_DATABASE_URL", database_url)
    assert cli.main(["audit", "export", person, "--out", str(path)]) == 0
    capsys.readouterr()
    return json.loads(path.read_text())


def a_person(raw: Raw, services) -> tuple[str, int]:
    """An ID number with several events, and the position of one of them."""
    position = middle(raw)
    originator = raw.row(position)[0]
    stream = originator if isinstance(originator, UUID) else UUID(originator)
    person = services.store.get_aggregate(stream)
    return person.id_number, position


def test_export_verifies_offline_and_fails_when_tampered(services, raw, database_url, tmp_path, monkeypatch, capsys):
    anchors_file = tmp_path / "anchors.json"
    monkeypatch.setenv("HANDOFF_DATABASE_URL", database_url)
    assert cli.main(["audit", "anchor", "--out", str(anchors_file)]) == 0
    services.ingestor.ingest([json.dumps(e).encode() for e in case_history(5001, random.Random(3))],
                             Source("later"))  # the chain grows past the anchor
    person, position = a_person(raw, services)
    path = tmp_path / "export.json"
    export = export_person(database_url, person, path, monkeypatch, capsys)

    stored = services.store.person(person)
    assert [e["originator_version"] for e in export["events"]] == list(range(1, len(stored.events) + 2))
    assert export["events"][0]["topic"] == "domain.person:Person.Registered"
    assert position in [e["position"] for e in export["events"]]
    assert export["chain"]["head"]["position"] == services.chain.heads()[EVENTS].position
    assert export["anchor"]["position"] < export["chain"]["head"]["position"]

    ok = run_verifier(path)
    assert ok.returncode == 0 and ok.stdout.startswith("OK:"), ok.stdout + ok.stderr
    ok = run_verifier(path, "--anchor", str(anchors_file))
    assert ok.returncode == 0 and "anchored at position" in ok.stdout, ok.stdout + ok.stderr

    def tampered(change, *extra: str) -> str:
        copy_ = copy.deepcopy(export)
        change(copy_)
        target = tmp_path / "tampered.json"
        target.write_text(json.dumps(copy_))
        result = run_verifier(target, *extra)
        assert result.returncode == 1, result.stdout
        assert result.stdout.startswith("FAIL:")
        return result.stdout

    def edit_state(e):
        event = e["events"][1]
        state = json.loads(base64.b64decode(event["state_b64"]))
        state["payload"]["region"] = "110105"
        event["state_b64"] = base64.b64encode(json.dumps(state).encode()).decode()

    assert "edited" in tampered(edit_state)
    assert "version" in tampered(lambda e: e["events"].pop(2))  # an event withheld
    assert "chain holds" in tampered(lambda e: e["events"][1].update(position=e["events"][2]["position"]))
    assert "head" in tampered(lambda e: e["chain"]["head"].update(head_hash="0" * 64))
    assert "proof reaches" in tampered(lambda e: e["chain"]["links"][-1].__setitem__(1, "1" * 64))
    assert "stream" in tampered(lambda e: e.update(id_number=id_number(4242)))
    forged_anchor = tmp_path / "forged-anchor.json"
    anchors = json.loads(anchors_file.read_text())
    for anchor in anchors["anchors"]:
        anchor["head_hash"] = "2" * 64
    forged_anchor.write_text(json.dumps(anchors))
    assert "anchor" in tampered(lambda e: None, "--anchor", str(forged_anchor))

    # Tamper with the database, then export again: the edited event no longer hashes to its link.
    raw.set_state(position, edited(raw.row(position)[3], lambda d: d["payload"].update(region="110105")))
    again = tmp_path / "again.json"
    export_person(database_url, person, again, monkeypatch, capsys)
    failed = run_verifier(again)
    assert failed.returncode == 1 and f"position {position}" in failed.stdout and "edited" in failed.stdout

    # A careful attacker rechains too: the export is then self-consistent, and only the held anchor catches it.
    rechain(raw, EVENTS, position)
    raw.run("DELETE FROM audit_anchors")
    export_person(database_url, person, again, monkeypatch, capsys)
    assert run_verifier(again).returncode == 0  # consistent, but with nothing outside to hold it to
    failed = run_verifier(again, "--anchor", str(anchors_file))
    assert failed.returncode == 1 and "anchor" in failed.stdout, failed.stdout


def test_export_of_an_encrypted_store_proves_integrity_of_the_ciphertext(database_url, tmp_path, monkeypatch, capsys):
    from eventsourcing.cryptography import AESCipher

    key = AESCipher.create_key(32)
    services = bootstrap(Settings(database_url=database_url, cipher_key=key))
    try:
        events = case_history(77, random.Random(7))
        services.ingestor.ingest([json.dumps(e).encode() for e in events], Source("test"))
        person = events[0]["person"]["id_number"]
        monkeypatch.setenv("HANDOFF_CIPHER_KEY", key)
        path = tmp_path / "export.json"
        export = export_person(database_url, person, path, monkeypatch, capsys)
        assert export["state_encrypted"] is True
        assert person.encode() not in base64.b64decode(export["events"][1]["state_b64"])  # ciphertext
        result = run_verifier(path)
        assert result.returncode == 0, result.stdout
        assert verify(services)["ok"] is True
    finally:
        services.close()


def test_export_of_nobody_and_of_a_bad_id(services, database_url, monkeypatch, capsys):
    monkeypatch.setenv("HANDOFF_DATABASE_URL", database_url)
    assert cli.main(["audit", "export", id_number(999_999)]) == 1
    assert cli.main(["audit", "export", "12345"]) == 2


# -- rows and claims the service did not write (issue #14) -------------------------------------------------------

def claims_table(raw: Raw) -> str:
    return "stored_event_claims" if raw.sqlite else "public.handoff_event_claims"


def a_recorded_event(raw: Raw, event_type: str | None = None) -> tuple[int, dict[str, Any]]:
    """The position and state of a person event (of this type)."""
    for position in raw.positions(PERSON_RECORDED):
        state = json.loads(raw.row(position)[3])
        if event_type is None or state["event_type"] == event_type:
            return position, state
    raise AssertionError(f"no {event_type} on record")


def test_a_forged_principal_is_never_laundered_into_the_chain_and_never_authenticates(services, raw, database_url,
                                                                                       monkeypatch, capsys):
    """A Principal.Created row written behind the service's back (here by a process without the chain, which
    encodes it as the service would) was linked by the next ordinary write, verified clean even against an anchor
    taken then, and its token worked."""
    from services.principals import Principals

    head = log_head(services)
    forger = EventStore(database_url)
    try:
        _, token = Principals(forger, lambda: dt.datetime.now(dt.timezone.utc)).add("auditor", "冒充的审计员")
    finally:
        forger.close()
    forged = head + 1
    assert raw.row(forged)[2].endswith("Principal.Created")
    services.ingestor.ingest([json.dumps(e).encode() for e in case_history(8101, random.Random(3))],
                             Source("test"))  # the next ordinary writes
    anchors = Auditor(services.chain).anchor()
    assert log_head(services) > forged
    result = verify(services, anchors=anchors)
    found = finding(result)
    assert (found["kind"], found["position"]) == ("inserted_event", forged)
    assert "handoff audit accept" in found["message"]
    assert services.principals.authenticate(token) is None
    from fastapi.testclient import TestClient

    from services.entrypoints.http.api import create_app

    with TestClient(create_app(services)) as client:
        assert client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # An auditor who finds the row genuine records so; verify then lists it as accepted, and stays clean.
    monkeypatch.setenv("HANDOFF_DATABASE_URL", database_url)
    assert cli.main(["audit", "accept", str(forged), "--reason", "从备份恢复的记录", "--by", "审计员甲",
                     "--format", "json"]) == 0
    capsys.readouterr()
    after = verify(services)
    assert after["ok"] is True, after
    assert [(a["position"], a["by"]) for a in after["accepted"]] == [(forged, "审计员甲")]
    assert services.principals.authenticate(token) is None  # an accepted row is history, not a credential
    assert cli.main(["audit", "accept", str(forged + 1), "--reason", "x", "--by", "y"]) == 2  # chained already


def test_a_deleted_claim_is_reported_at_its_events_position(services, raw):
    """Deleting a claim let the same event be stored twice; neither verify nor rebuild --compare noticed."""
    position, state = a_recorded_event(raw)
    raw.run(f"DELETE FROM {claims_table(raw)} WHERE event_id = ?", (state["event_id"].lower(),))
    found = finding(verify(services), chain="claims")
    assert (found["kind"], found["position"]) == ("claim_missing", position)
    assert verify(services)["chains"][EVENTS]["ok"] is True  # the events themselves are intact


def test_a_claim_given_another_publisher_is_reported_at_its_events_position(services, raw):
    """Changing a claim's publisher let the bureau retract the court's event."""
    position, state = a_recorded_event(raw, "decision_effective")
    raw.run(f"UPDATE {claims_table(raw)} SET publisher_kind = 'bureau', publisher_id = 'SFJ-520222' "
            "WHERE event_id = ?", (state["event_id"].lower(),))
    found = finding(verify(services), chain="claims")
    assert (found["kind"], found["position"]) == ("claim_altered", position)
    assert found["changed"] == ["publisher_kind", "publisher_id"]


def test_an_added_claim_is_reported(services, raw):
    raw.run(f"INSERT INTO {claims_table(raw)} (event_id, content_hash, person_stream, publisher_kind, publisher_id, "
            "event_type, retracts) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("7d0c6a1e-2a4f-4a53-9a43-3c1f0b9e8f11", "0" * 64,
             "8c1f0b9e8f117d0c6a1e2a4f4a539a43" if raw.sqlite else "8c1f0b9e-8f11-7d0c-6a1e-2a4f4a539a43",
             "court", "FY-520222", "decision_effective", None))
    found = finding(verify(services), chain="claims")
    assert found["kind"] == "claim_extra" and found["event_id"] == "7d0c6a1e-2a4f-4a53-9a43-3c1f0b9e8f11"
