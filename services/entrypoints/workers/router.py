"""`handoff route`: routed notifications out to the agencies that must know, on `handoff.out.<kind>.<region>`.

The router follows the event store's global log from a position it keeps in the store itself (an eventsourcing
`Tracking` named `route:log`). For every page of accepted events it works out the notifications (the routing table
of domain/routing.py), produces them (idempotent producer, acks=all), waits for the acknowledgements, and only then stores the
new position. A crash between the acknowledgement and the position store re-sends that page: delivery is
**at-least-once**, and every notification carries a stable id (`notification_id`, also the `handoff-notification-id`
header) derived from the event id (or the gap) and the recipient, so consumers dedupe on it. True exactly-once
would need the position inside a Kafka transaction instead of the store (docs/kafka.md says why we did not).

Who must be told of an event or a gap is the domain's routing table (domain/routing.py).

A gap "opens" when an obligation becomes an open gap. Two ways, both with the same notification id per gap and
recipient (so the second is a duplicate a consumer drops):
- *revealed by an event*: the person's open gaps folded at routing time just before and just after the event; those
  open after and not before (a decision published ten days late opens R01/R02/R04 gaps at once);
- *by the clock*: every tick, the obligations whose due time passed since the last tick and that are still not
  fulfilled (read models, kept current by this same worker), with the tick's watermark tracked as `route:deadlines`.
The router also keeps the supervision read models current (it is the projection worker of docker-compose.yml).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking

from adapters.eventstore import EventStore
from adapters.kafka import KafkaConfig
from adapters.readmodel import ReadModel
from domain.calendar import micros
from domain.leads import replay
from domain.routing import Recipient, event_recipients, gap_recipients, lead_recipients, opened_gaps
from domain.supervision import Obligation, PersonView
from projections.supervision import PERSON_TOPIC, SupervisionProjection, Unfoldable, quarantining

from services.ingest import utc_now
from services.leads import LEAD_ACTED_TOPIC
from services.views import gap_record

log = logging.getLogger("handoff.kafka")

ROUTE_TRACKING = "route:log"
DEADLINE_TRACKING = "route:deadlines"
NOTIFICATION_NAMESPACE = uuid.UUID("9d3c1f0e-6a2b-5f4c-8e7d-1b2a3c4d5e6f")

H_NOTIFICATION_ID = "handoff-notification-id"
H_TYPE = "handoff-notification-type"
H_EVENT_TYPE = "handoff-event-type"
H_RULE = "handoff-rule"


@dataclass(frozen=True)
class Notification:
    id: str
    recipient: Recipient
    key: bytes  # the person's stream id (a pseudonym): per-person order on each topic
    body: dict[str, Any]
    headers: list[tuple[str, bytes]]


def event_notification_id(event_id: str, recipient: Recipient) -> str:
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"event|{event_id}|{recipient.kind}|{recipient.region}"))


def gap_notification_id(rule: str, triggered_by: str, due_at: str | None, recipient: Recipient) -> str:
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE,
                          f"gap|{rule}|{triggered_by}|{due_at}|{recipient.kind}|{recipient.region}"))


def _event_body(event: Any) -> dict[str, Any]:
    return {"event_id": event.event_id, "event_type": event.event_type, "agency": event.agency,
            "occurred_at": event.occurred_at, "recorded_at": event.recorded_at, "case_ref": event.case_ref,
            "payload": event.payload}


class Router:
    def __init__(self, store: EventStore, projection: SupervisionProjection, read_model: ReadModel,
                 config: KafkaConfig, *, clock: Callable[[], dt.datetime] = utc_now, page_size: int = 500,
                 deadlines: bool = True, create_topics: bool = True, producer=None):
        self.store = store
        self.projection = projection
        self.read_model = read_model
        self.config = config
        self.clock = clock
        self.page_size = page_size
        self.deadlines = deadlines
        self.create_topics = create_topics
        self.producer = producer
        self._own_producer = producer is None
        self._topics: set[str] = set()
        self._stop = threading.Event()
        self.sent = 0
        self.routed_events = 0

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        if self.producer is not None and self._own_producer:
            self.producer.close(timeout=10)
            self.producer = None

    # -- positions ----------------------------------------------------------------------------------------------

    def position(self) -> int:
        return self.store.source_position(ROUTE_TRACKING) or 0

    def _save(self, name: str, position: int) -> bool:
        try:
            self.store.append([], tracking=Tracking(application_name=name, notification_id=position))
            return True
        except IntegrityError:  # another router stored this position or a later one: follow it
            log.warning("route: position %s of %s was already stored by another router", position, name)
            return False

    def start_at_head(self) -> None:
        """Route only what is appended from now on (a first start on a store with history)."""
        if self.store.source_position(ROUTE_TRACKING) is None:
            head = self.store.recorder.max_notification_id() or 0
            if head:
                self._save(ROUTE_TRACKING, head)

    # -- the log ------------------------------------------------------------------------------------------------

    def route_page(self) -> int:
        """Route the next page of the log; the number of events routed (0: up to date)."""
        position = self.position()
        head = self.store.recorder.max_notification_id() or 0
        if head <= position:
            return 0
        notifications_ = self.store.recorder.select_notifications(position + 1, self.page_size, stop=head,
                                                                  topics=[PERSON_TOPIC, LEAD_ACTED_TOPIC])
        if not notifications_:
            self._save(ROUTE_TRACKING, head)  # only receipts, dead letters and the like remained
            return 0
        now = self.clock()
        streams = self.store.select_streams(dict.fromkeys(n.originator_id for n in notifications_))
        events: dict[UUID, list[Any]] = {}
        views: dict[tuple[UUID, int], PersonView] = {}
        out: list[Notification] = []
        for note in notifications_:
            stream_id, version = note.originator_id, note.originator_version
            if note.topic == LEAD_ACTED_TOPIC:
                out += self._lead_notifications(stream_id, version, note.id)
                continue
            if stream_id not in events:
                events[stream_id] = [self.store.mapper.to_domain_event(item) for item in streams[stream_id]]
            stream = events[stream_id]
            id_number = stream[0].id_number
            event = stream[version - 1]  # version 1 is Registered; version v is stream[v - 1]
            before = views.get((stream_id, version - 1))
            try:
                with quarantining(stream_id):
                    if before is None and version > 2:
                        before = self._fold(stream[1:version - 1], id_number)
                    after = self._fold(stream[1:version], id_number)
            except Unfoldable:  # quarantined and alerted (handoff audit quarantined): nothing routed for it
                continue
            views[(stream_id, version)] = after
            out += self._event_notifications(stream_id, event, after, note.id)
            out += self._gap_notifications(stream_id, after, opened_gaps(before, after, now), now,
                                           cause={"event_id": event.event_id, "log_position": note.id})
        self._send(out)
        self._save(ROUTE_TRACKING, notifications_[-1].id)
        self.routed_events += len(notifications_)
        return len(notifications_)

    def _fold(self, recorded: list[Any], id_number: str) -> PersonView:
        from domain.supervision import fold

        return fold(recorded, id_number=id_number, rules=self.projection.rules, calendar=self.projection.calendar)

    def _event_notifications(self, stream_id: UUID, event: Any, view: PersonView, position: int) -> list[Notification]:
        return [
            Notification(
                id=(nid := event_notification_id(event.event_id, recipient)), recipient=recipient,
                key=str(stream_id).encode(),
                body={"notification_id": nid, "type": "event", "recipient": vars(recipient), "why": why,
                      "person": dict(event.person), "event": _event_body(event), "log_position": position},
                headers=[(H_NOTIFICATION_ID, nid.encode()), (H_TYPE, b"event"),
                         (H_EVENT_TYPE, event.event_type.encode())])
            for recipient, why in event_recipients(event, view)
        ]

    def _gap_notifications(self, stream_id: UUID, view: PersonView, gaps: list[Obligation], now: dt.datetime,
                           cause: dict[str, Any]) -> list[Notification]:
        out = []
        for obligation in gaps:
            record = gap_record(view, obligation, now)
            out += self._gap_messages(stream_id, record, cause)
        return out

    def _gap_messages(self, stream_id: UUID | str, record: dict[str, Any], cause: dict[str, Any]) -> list[Notification]:
        obligated = record["obligated"]
        gap = {key: record[key]
               for key in ("rule", "region", "obligated", "triggered_by", "due_at", "provisional", "rule_set", "reason")}
        return [
            Notification(
                id=(nid := gap_notification_id(record["rule"], record["triggered_by"], record["due_at"], recipient)),
                recipient=recipient, key=str(stream_id).encode(),
                body={"notification_id": nid, "type": "gap_opened", "recipient": vars(recipient), "why": why,
                      "person": {"id_number": record["id_number"], "name": record["name"]}, "gap": gap,
                      "caused_by": cause},
                headers=[(H_NOTIFICATION_ID, nid.encode()), (H_TYPE, b"gap_opened"), (H_RULE, record["rule"].encode())])
            for recipient, why in gap_recipients(obligated["kind"], obligated["region"], record["region"])
        ]

    def _lead_notifications(self, stream_id: UUID, version: int, position: int) -> list[Notification]:
        """An action on a lead that assigned or escalated it (version 1 opened the stream; each later one is an
        action)."""
        stream = self.store.get_aggregate(stream_id)
        actions = stream.actions()
        done = actions[version - 2]
        before, after = replay(actions[:version - 2]), replay(actions[:version - 1])
        lead = {"lead_id": stream.lead_id, "rule": stream.rule, "region": stream.region,
                "state": str(after.state), "assignee": after.assignee, "escalated_to": after.escalated_to}
        return [
            Notification(
                id=(nid := str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"lead|{stream.lead_id}|{version}|{recipient.kind}|"
                                                                  f"{recipient.region}"))),
                recipient=recipient, key=str(stream_id).encode(),
                body={"notification_id": nid, "type": kind, "recipient": vars(recipient), "why": why, "lead": lead,
                      "by": done.by_name, "at": done.at.isoformat(), "log_position": position},
                headers=[(H_NOTIFICATION_ID, nid.encode()), (H_TYPE, kind.encode()), (H_RULE, stream.rule.encode())])
            for recipient, why, kind in lead_recipients(before, after, stream.region)
        ]

    # -- the clock ----------------------------------------------------------------------------------------------

    def check_deadlines(self) -> int:
        """Alert the gaps opened by the clock since the last tick; the number of notifications sent."""
        now = self.clock()
        now_us = micros(now)
        mark = self.store.source_position(DEADLINE_TRACKING)
        if mark is None:  # first tick: gaps of the past are not news
            self._save(DEADLINE_TRACKING, now_us)
            return 0
        if now_us <= mark:
            return 0
        self.projection.catch_up()
        from domain.person import Person

        out: list[Notification] = []
        for row in self.read_model.upcoming(mark + 1, now_us):
            record = {"rule": row.rule, "region": row.region, "id_number": row.id_number, "name": row.name,
                      "obligated": {"kind": row.obligated_kind, "id": row.obligated_id, "region": row.obligated_region},
                      "triggered_by": row.triggered_by, "due_at": row.due_at, "provisional": bool(row.provisional),
                      "rule_set": row.rule_set, "reason": row.reason}
            out += self._gap_messages(Person.create_id(row.id_number), record, {"deadline": row.due_at})
        self._send(out)
        self._save(DEADLINE_TRACKING, now_us)
        return len(out)

    # -- producing ----------------------------------------------------------------------------------------------

    def _send(self, notifications_: list[Notification]) -> None:
        if not notifications_:
            return
        if self.producer is None:
            self.producer = self.config.producer(role="route")
        topics = {self.config.outbound_topic(n.recipient.kind, n.recipient.region) for n in notifications_}
        if self.create_topics and topics - self._topics:
            self.config.ensure_topics(topics - self._topics)
        self._topics |= topics
        futures = [
            self.producer.send(self.config.outbound_topic(n.recipient.kind, n.recipient.region), key=n.key,
                               value=json.dumps(n.body, ensure_ascii=False).encode(), headers=n.headers)
            for n in notifications_
        ]
        self.producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)  # any failure: the position is not stored, the page is routed again
        self.sent += len(notifications_)

    # -- the worker ---------------------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Route the whole log up to its head, tick the clock, bring the read models up to date."""
        routed = 0
        while not self._stop.is_set():
            count = self.route_page()
            routed += count
            if not count:
                break
        if self.deadlines:
            self.check_deadlines()
        self.projection.catch_up()
        return routed

    def run(self, interval: float = 1.0, until: Callable[["Router"], bool] | None = None,
            on_poll: Callable[[], Any] | None = None) -> None:
        last_report = time.monotonic()
        try:
            while not self._stop.is_set():
                routed = self.run_once()
                if on_poll is not None:
                    on_poll()
                if until is not None and until(self):
                    break
                if time.monotonic() - last_report > 10:
                    last_report = time.monotonic()
                    log.info("route: position %s, %s events routed, %s notifications sent", self.position(),
                             self.routed_events, self.sent)
                if not routed:
                    self._stop.wait(interval)
        finally:
            self.close()
