"""Routed notifications on a real Kafka-protocol broker (Tansu): the routing table, gap alerts (revealed by an event,
and by the clock), the tracked position, and stable ids that make a re-send after a crash harmless."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import pytest

from adapters.config import Settings
from adapters.kafka import KafkaConfig
from services.bootstrap import bootstrap
from services.ingest import Source
from services.routing import (
    DEADLINE_TRACKING, ROUTE_TRACKING, H_NOTIFICATION_ID, Recipient, Router, event_notification_id,
)
from tests.builders import CST, decision, envelope, id_number
from tests.kafka_broker import (  # noqa: F401  (fixtures)
    body_of, headers_of, kafka, kafka_broker, kafka_cli, kafka_env, read_topic,
)

OPERATOR = Source("test")


@pytest.fixture
def services(database_url):
    services = bootstrap(Settings(database_url=database_url))
    yield services
    services.close()


class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def router(services, config: KafkaConfig, clock=None, cls=Router) -> Router:
    return cls(services.store, services.projection, services.read_model, config,
               clock=clock or services.queries.clock)


def out_messages(config: KafkaConfig) -> list:
    """Every notification on every outbound topic of this test's prefix."""
    admin = config.admin()
    try:
        topics = sorted(t for t in admin.list_topics() if t.startswith(f"{config.prefix}.out."))
    finally:
        admin.close()
    return [record for topic in topics for record in read_topic(config, topic, settle=0.5)]


def ingest(services, *events) -> None:
    result = services.ingestor.ingest(list(events), OPERATOR)
    assert result.accepted == len(events), [item.reason for item in result.items if item.reason]


def days_ago(days: float) -> dt.datetime:
    return (dt.datetime.now(CST) - dt.timedelta(days=days)).replace(microsecond=0)


def test_each_routed_event_reaches_the_agencies_of_the_routing_table_once(services, kafka):
    recent = days_ago(1)
    p1, p2, p3, p4 = id_number(1), id_number(2), id_number(3, "520221"), id_number(4)
    d1 = decision(p1, start=recent.date())
    d1["occurred_at"] = recent.isoformat()
    lost = envelope("contact_lost", {}, kind="bureau", person=p1, occurred_at=recent + dt.timedelta(hours=2))
    revoked = envelope("revocation_ruled", {"revoked": True}, person=p1, occurred_at=recent + dt.timedelta(hours=3))
    d2 = decision(p2, start=recent.date())
    kept = envelope("revocation_ruled", {"revoked": False}, person=p2, occurred_at=recent + dt.timedelta(hours=3))
    d3 = decision(p3, start=recent.date(), region="520221")  # executed in 520221 ...
    d3["agency"] = {"kind": "court", "id": "FY-520222", "region": "520222"}  # ... decided by the court of 520222
    discharged = envelope("discharged", {"certificate_no": "JJ0003"}, kind="bureau", region="520221", person=p3,
                          occurred_at=recent + dt.timedelta(hours=5))
    notice = envelope("procuratorial_notice_issued",
                      {"notice_kind": "correction", "addressed_to": {"kind": "bureau", "id": "SFJ-520222"},
                       "reply_within_days": 15, "finding": "未按期接收"},
                      kind="procuratorate", person=p4, occurred_at=recent)
    ingest(services, d1, lost, revoked, d2, kept, d3, discharged, notice)

    route = router(services, kafka)
    route.run_once()
    events = [r for r in out_messages(kafka) if body_of(r)["type"] == "event"]
    got = sorted((r.topic.removeprefix(f"{kafka.prefix}.out."), body_of(r)["event"]["event_id"]) for r in events)
    expected = sorted([
        ("bureau.520222", d1["event_id"]), ("police.520222", d1["event_id"]), ("procuratorate.520222", d1["event_id"]),
        ("police.520222", lost["event_id"]),
        ("police.520222", revoked["event_id"]),
        ("bureau.520222", d2["event_id"]), ("police.520222", d2["event_id"]), ("procuratorate.520222", d2["event_id"]),
        ("bureau.520221", d3["event_id"]), ("police.520221", d3["event_id"]), ("procuratorate.520221", d3["event_id"]),
        ("court.520222", discharged["event_id"]), ("procuratorate.520221", discharged["event_id"]),
        ("police.520221", discharged["event_id"]),
        ("bureau.520222", notice["event_id"]),
    ])
    assert got == expected
    for record in events:
        body = body_of(record)
        recipient = Recipient(**body["recipient"])
        assert body["notification_id"] == event_notification_id(body["event"]["event_id"], recipient)
        assert headers_of(record)[H_NOTIFICATION_ID] == body["notification_id"]
        assert record.topic == kafka.outbound_topic(recipient.kind, recipient.region)
        assert body["why"]
        # No name or ID number in clear in headers or keys (the key is the person's stream pseudonym).
        exposed = b"".join(v for _, v in record.headers) + (record.key or b"")
        assert not any(p.encode() in exposed for p in (p1, p2, p3, p4)) and "张三".encode() not in exposed
    assert route.position() == services.store.recorder.max_notification_id()

    # Routed once: running again sends nothing new.
    before = len(out_messages(kafka))
    router(services, kafka).run_once()
    assert len(out_messages(kafka)) == before


def test_a_late_decision_reveals_gaps_alerted_to_the_obligated_agency_and_the_procuratorate(services, kafka):
    person = id_number(5)
    late = decision(person, start=days_ago(40).date())  # published 40 days after it took effect
    ingest(services, late)
    router(services, kafka).run_once()
    alerts = [body_of(r) for r in out_messages(kafka) if body_of(r)["type"] == "gap_opened"]
    got = {(a["gap"]["rule"], a["recipient"]["kind"], a["recipient"]["region"]) for a in alerts}
    assert {("R01_bureau_not_notified", "court", "520222"), ("R01_bureau_not_notified", "procuratorate", "520222"),
            ("R02_documents_not_delivered", "court", "520222"), ("R04_not_reported", "bureau", "520222"),
            ("R04_not_reported", "procuratorate", "520222")} <= got
    assert all(a["caused_by"]["event_id"] == late["event_id"] for a in alerts)
    assert len({a["notification_id"] for a in alerts}) == len(alerts)

    # An event that closes nothing new opens nothing new: no further alert for the same gaps.
    ingest(services, envelope("bureau_notified", {"execution_region": "520222"}, person=person,
                              occurred_at=days_ago(1)))
    router(services, kafka).run_once()
    again = [body_of(r) for r in out_messages(kafka) if body_of(r)["type"] == "gap_opened"]
    assert len(again) == len(alerts)


def test_the_clock_opens_a_gap_and_it_is_alerted_once(services, kafka):
    person = id_number(6)
    start = days_ago(3)
    event = decision(person, start=start.date())
    ingest(services, event)
    clock = Clock(dt.datetime.now(dt.timezone.utc))
    route = router(services, kafka, clock)
    route.run_once()  # routes the decision, no gap yet; the first tick sets the watermark
    assert not [r for r in out_messages(kafka) if body_of(r)["type"] == "gap_opened"]
    assert services.store.source_position(DEADLINE_TRACKING) is not None

    clock.now += dt.timedelta(days=4)  # R01 (5 days) falls due; R02/R04 (10 days) not yet
    route.run_once()
    clock.now += dt.timedelta(minutes=1)
    route.run_once()  # nothing new fell due in this minute
    alerts = [body_of(r) for r in out_messages(kafka) if body_of(r)["type"] == "gap_opened"]
    assert sorted((a["gap"]["rule"], a["recipient"]["kind"]) for a in alerts) == [
        ("R01_bureau_not_notified", "court"), ("R01_bureau_not_notified", "procuratorate")]
    assert all("deadline" in a["caused_by"] for a in alerts)


class CrashBeforeSaving(Router):
    """A router that dies after Kafka acknowledged a page and before its position is stored."""

    def _save(self, name: str, position: int) -> bool:
        if name == ROUTE_TRACKING:
            raise SystemExit("crash")
        return super()._save(name, position)


def test_a_crash_between_produce_and_position_resends_with_the_same_ids(services, kafka):
    events = [decision(id_number(n), start=days_ago(1).date()) for n in range(10, 13)]
    ingest(services, *events)
    with pytest.raises(SystemExit):
        router(services, kafka, cls=CrashBeforeSaving).route_page()
    first = out_messages(kafka)
    assert len(first) == 9 and services.store.source_position(ROUTE_TRACKING) is None
    router(services, kafka).run_once()  # the restart sends the page again
    both = out_messages(kafka)
    assert len(both) == 18
    ids = [body_of(r)["notification_id"] for r in both]
    assert sorted(set(ids)) == sorted({body_of(r)["notification_id"] for r in first})  # dedupe by id: 9


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_handoff_route_once_from_the_command_line(services, database_url, kafka):
    ingest(services, decision(id_number(20), start=days_ago(1).date()))
    env = {**os.environ, **kafka_env(kafka), "HANDOFF_DATABASE_URL": database_url}
    completed = subprocess.run([*kafka_cli(), "route", "--once"], env=env, capture_output=True, timeout=120)
    assert completed.returncode == 0, completed.stderr.decode()
    summary = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    assert summary["routed_events"] == 1 and summary["notifications"] == 3
    assert len(out_messages(kafka)) == 3
