"""Routed notifications on a real Kafka-protocol broker (Tansu): the routing table, gap alerts (revealed by an event,
and by the clock), the tracked position, and stable ids that make a re-send after a crash harmless.

Every date here is counted from the tests' `now` (tests/clock.py), which the services and the router are given as
their clock, and the `handoff route` subprocess through libfaketime: never from the machine's clock."""

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
from services.entrypoints.workers.router import (
    DEADLINE_TRACKING, ROUTE_TRACKING, H_NOTIFICATION_ID, Router, event_notification_id,
)
from domain.routing import Recipient
from tests.builders import CST, decision, envelope, id_number
from tests.clock import period_end
from tests.kafka_broker import (  # noqa: F401  (fixtures)
    body_of, headers_of, kafka, kafka_broker, kafka_cli, kafka_env, read_topic,
)

# The events are dated from "now": on another date the routing and the alerts differ as the law says.
pytestmark = pytest.mark.clock

OPERATOR = Source("test")


@pytest.fixture
def services(database_url, clock):
    services = bootstrap(Settings(database_url=database_url), clock=clock)
    yield services
    services.close()


def router(services, config: KafkaConfig, cls=Router) -> Router:
    """A router on the services' clock (the test's `clock`): routing, the store and the queries agree on the time."""
    return cls(services.store, services.projection, services.read_model, config, clock=services.queries.clock)


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


def gap_alerts(config: KafkaConfig) -> list[dict]:
    return [body for body in map(body_of, out_messages(config)) if body["type"] == "gap_opened"]


def test_each_routed_event_reaches_the_agencies_of_the_routing_table_once(services, kafka, now):
    recent = now - dt.timedelta(days=1)
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


def test_a_late_decision_reveals_gaps_alerted_to_the_obligated_agency_and_the_procuratorate(services, kafka, now):
    person = id_number(5)
    # Published 40 days after it took effect: R01, R02 and R04 are past due even if extended over the longest holiday.
    late = decision(person, start=(now - dt.timedelta(days=40)).date())
    ingest(services, late)
    router(services, kafka).run_once()
    alerts = gap_alerts(kafka)
    got = {(a["gap"]["rule"], a["recipient"]["kind"], a["recipient"]["region"]) for a in alerts}
    assert {("R01_bureau_not_notified", "court", "520222"), ("R01_bureau_not_notified", "procuratorate", "520222"),
            ("R02_documents_not_delivered", "court", "520222"), ("R04_not_reported", "bureau", "520222"),
            ("R04_not_reported", "procuratorate", "520222")} <= got
    assert all(a["caused_by"]["event_id"] == late["event_id"] for a in alerts)
    assert len({a["notification_id"] for a in alerts}) == len(alerts)

    # An event that closes nothing new opens nothing new: no further alert for the same gaps.
    ingest(services, envelope("bureau_notified", {"execution_region": "520222"}, person=person,
                              occurred_at=now - dt.timedelta(days=1)))
    router(services, kafka).run_once()
    assert len(gap_alerts(kafka)) == len(alerts)


# Who is alerted of each gap of a decision (the obligated organ or bureau, and the procuratorate that oversees it).
DECISION_GAP_RECIPIENTS = {"R01_bureau_not_notified": ("court", "procuratorate"),
                           "R02_documents_not_delivered": ("court", "procuratorate"),
                           "R04_not_reported": ("bureau", "procuratorate")}
DECISION_GAP_DAYS = {"R01_bureau_not_notified": 5, "R02_documents_not_delivered": 10, "R04_not_reported": 10}


def test_the_clock_opens_a_gap_and_it_is_alerted_once(services, clock, kafka):
    """No alert a minute before a due time, the alert in the tick after it, and once only. The due times are the
    law's, counted here from the decision's date (CPL 105): R01 after 5 days, R02 and R04 after 10, each extended to
    the next working day when its last day is a rest day. So which gaps fall due with R01 depends on the date: R01
    alone on most days, all three when a long holiday pushes R01 as far as R02 and R04 (decided 2026-09-28: all
    due at 24:00 on 2026-10-08)."""
    person = id_number(6)
    decided = (clock.now - dt.timedelta(days=3)).astimezone(CST).date()
    ingest(services, decision(person, start=decided))
    due = {rule: period_end(decided, days) for rule, days in DECISION_GAP_DAYS.items()}
    r01 = due["R01_bureau_not_notified"]
    assert r01 > clock.now  # 3 days after the decision nothing is due yet, whatever the date

    route = router(services, kafka)
    route.run_once()  # routes the decision, no gap yet; the first tick sets the watermark
    assert not gap_alerts(kafka)
    assert services.store.source_position(DEADLINE_TRACKING) is not None

    clock.now = r01 - dt.timedelta(minutes=1)  # the last minute of the (possibly extended) period: still in time
    route.run_once()
    assert not gap_alerts(kafka)

    clock.now = r01 + dt.timedelta(minutes=1)
    route.run_once()
    clock.now += dt.timedelta(minutes=1)
    route.run_once()  # nothing new fell due in this minute
    alerts = gap_alerts(kafka)
    fell_due = [rule for rule, at in due.items() if at <= r01]
    assert sorted((a["gap"]["rule"], a["recipient"]["kind"]) for a in alerts) == sorted(
        (rule, kind) for rule in fell_due for kind in DECISION_GAP_RECIPIENTS[rule])
    assert all(dt.datetime.fromisoformat(a["gap"]["due_at"]) == due[a["gap"]["rule"]] for a in alerts)
    assert all("deadline" in a["caused_by"] for a in alerts)


class CrashBeforeSaving(Router):
    """A router that dies after Kafka acknowledged a page and before its position is stored."""

    def _save(self, name: str, position: int) -> bool:
        if name == ROUTE_TRACKING:
            raise SystemExit("crash")
        return super()._save(name, position)


def test_a_crash_between_produce_and_position_resends_with_the_same_ids(services, kafka, now):
    events = [decision(id_number(n), start=(now - dt.timedelta(days=1)).date()) for n in range(10, 13)]
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
def test_handoff_route_once_from_the_command_line(services, database_url, kafka, now, faketime):
    ingest(services, decision(id_number(20), start=(now - dt.timedelta(days=1)).date()))
    # The subprocess's clock starts at `now` too: the decision is a day old for it, nothing is due yet.
    env = {**os.environ, **kafka_env(kafka), **faketime, "HANDOFF_DATABASE_URL": database_url}
    completed = subprocess.run([*kafka_cli(), "route", "--once"], env=env, capture_output=True, timeout=120)
    assert completed.returncode == 0, completed.stderr.decode()
    summary = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    assert summary["routed_events"] == 1 and summary["notifications"] == 3
    assert len(out_messages(kafka)) == 3


def test_a_lead_assigned_and_escalated_is_told_to_the_assignees_agency_and_the_region_above(services, kafka, now):
    from domain.leads import Actor
    from services.leads import LeadQuery, actor_of

    ingest(services, decision(id_number(7), start=(now - dt.timedelta(days=60)).date()))
    services.projection.catch_up()
    lead = services.leads.page(LeadQuery(rule="R04_not_reported"), {"region": "520222"})["items"][0]["lead_id"]
    officer, _ = services.principals.add("oversight", "王检察官", kind="procuratorate", agency_id="JCY-520222",
                                         region="520222")
    section, _ = services.principals.add("oversight", "李科员", kind="bureau", agency_id="SFJ-520222",
                                         region="520222")
    chief = Actor(id="chief", name="市院 赵主任", supervisor=True, agency_kind="procuratorate", region="5202")
    route = router(services, kafka)
    act = services.leads.act
    act(lead, "assign", {"assignee": str(section.id)}, actor_of(officer), officer.sees_region,
        services.principals.active)
    act(lead, "start_check", {}, actor_of(officer), officer.sees_region, services.principals.active)
    act(lead, "escalate", {"note": "提请市院督办"}, chief, lambda region: True, services.principals.active)
    route.run_once()
    sent = [body_of(r) | {"topic": r.topic} for r in out_messages(kafka) if body_of(r)["type"].startswith("lead_")]
    assert sorted((b["type"], b["topic"].removeprefix(f"{kafka.prefix}.out.")) for b in sent) == [
        ("lead_assigned", "bureau.520222"), ("lead_escalated", "procuratorate.520200")]
    [assigned] = [b for b in sent if b["type"] == "lead_assigned"]
    assert assigned["lead"]["lead_id"] == lead and assigned["lead"]["assignee"]["name"] == "李科员"
    assert assigned["by"] == "王检察官"
    router(services, kafka).run_once()
    assert len([r for r in out_messages(kafka) if body_of(r)["type"].startswith("lead_")]) == 2  # routed once
