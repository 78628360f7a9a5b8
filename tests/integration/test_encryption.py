"""Personal data at rest: with HANDOFF_CIPHER_KEY set, no ID number or name is in the raw store, and all works."""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
from pathlib import Path

import pytest
from eventsourcing.cryptography import AESCipher

from adapters.config import Settings
from domain.identity import id_check_char
from services.bootstrap import bootstrap
from services.history import person_history
from domain.rosters import RosterSource
from services.ingest import Source
from tests.builders import decision, envelope

NOW = dt.datetime(2026, 11, 21, tzinfo=dt.timezone.utc)


def secret_person(rng: random.Random) -> tuple[str, str]:
    """An ID number and name that no other test uses, so finding them in the store can only mean a leak."""
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 20000))
    first17 = f"520222{birth:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + id_check_char(first17), "甄" + rng.choice("秘隐密藏") + rng.choice("名姓讳字")


def raw_bytes(database_url: str, services, postgres_server=None) -> bytes:
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CHECKPOINT")
    files = subprocess.run(["find", str(postgres_server.datadir), "-type", "f"], capture_output=True, text=True)
    return b"".join(Path(name).read_bytes() for name in files.stdout.split())


def leaks(blob: bytes, *secrets: str) -> list[str]:
    found = []
    for secret in secrets:
        forms = {secret.encode("utf-8"), json.dumps(secret).strip('"').encode("ascii")}  # raw and \\uXXXX-escaped
        if any(form in blob for form in forms):
            found.append(secret)
    return found


def test_encrypted_store_holds_no_id_number_or_name_in_clear(database_url, request):
    rng = random.Random()
    (person, name), (other, other_name), (listed, listed_name) = (secret_person(rng), secret_person(rng),
                                                                  secret_person(rng))
    key = AESCipher.create_key(32)
    services = bootstrap(Settings(database_url=database_url, cipher_key=key), clock=lambda: NOW)
    try:
        events = [decision(person, name=name, start=dt.date(2025, 3, 3)),
                  envelope("subject_reported", {"region": "520222"}, kind="bureau", person=person, name=name,
                           occurred_at=dt.datetime(2025, 3, 20, 9, tzinfo=dt.timezone.utc)),
                  decision(other, name=other_name, start=dt.date(2025, 5, 5))]
        bad = json.dumps(envelope("subject_reported", {"region": "52"}, kind="bureau", person=other, name=other_name),
                         ensure_ascii=False)
        result = services.ingestor.ingest([*events, bad.encode()], Source("test"))
        assert [i.status for i in result.items] == ["accepted", "accepted", "accepted", "rejected"]

        gaps = services.queries.gaps(state="all")
        assert {(g["id_number"], g["name"]) for g in gaps} == {(person, name), (other, other_name)}
        assert services.queries.status(person)["name"] == name
        assert person_history(services.store, person)[0]["person"]["name"] == name
        assert other_name in list(services.store.dead_letters())[0].raw
        assert services.replay.replay(known_at=NOW, state="all")["gaps"] == gaps
        # A court's roster naming a person the record lacks: the roster kept and its finding (an event, a lead).
        header = ["id_number", "name", "case_ref", "date"]
        lines = [[person, name, f"(2025)黔0222刑初{person[-4:]}号", "2025-03-03"],
                 [listed, listed_name, "(2025)黔0222刑初1号", "2025-04-01"]]
        report = services.rosters.receive(RosterSource.parse("court:FY-520222"), header, lines, dt.date(2026, 11, 21))
        assert [(f["id_number"], f["name"]) for f in report["findings"] if f["direction"] == "roster_only"] == [
            (listed, listed_name)]

        postgres = request.getfixturevalue("postgres_server") if database_url.startswith("postgres") else None
        blob = raw_bytes(database_url, services, postgres)
        assert len(blob) > 10_000
        assert leaks(blob, person, name, other, other_name, listed, listed_name) == []
    finally:
        services.close()


def test_without_encryption_the_same_check_finds_them(tmp_path):
    """The grep above can fail: unencrypted, the ID number and name are there to be found."""
    person, name = secret_person(random.Random())
    url = f"sqlite:///{tmp_path}/plain.sqlite3"
    services = bootstrap(Settings(database_url=url), clock=lambda: NOW)
    try:
        services.ingestor.ingest([decision(person, name=name, start=dt.date(2025, 3, 3))], Source("test"))
        services.queries.gaps()
        assert set(leaks(raw_bytes(url, services), person, name)) == {person, name}
    finally:
        services.close()


def test_a_bad_key_is_a_clear_error(tmp_path):
    from adapters.config import ConfigError

    with pytest.raises(ConfigError, match="base64|bytes"):
        bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/x.sqlite3", cipher_key="not a key!"))
