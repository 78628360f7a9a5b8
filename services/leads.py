"""The lead register (线索台账) as oversight staff use it: the list of leads with their states, one lead with its gap and
history, and actions on them (domain/leads.py decides; this module records, publishes and reads).

A lead is a gap or anomaly of the read model (open or late); its state comes from its stream of actions in the event
store, folded into `rm_lead_versions` by `catch_up` (called before every read and after every action, so an officer
sees their own action at once; a crash between the two is caught up by the next read). Issuing a notice publishes a
`procuratorial_notice_issued` event through ingest, as the officer's procuratorate, so R16 watches its reply.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import IntegrityError

from domain.authorisation import PublisherIdentity
from domain.calendar import SHANGHAI, micros
from domain.catalog import AgencyKind
from domain.identity import key_person_document, typed_person_key
from domain.leads import (DISMISS_LABELS, NOTICE_LABELS, NOTICE_REPLY_RULE, STATE_LABELS, Actor, GapSituation, Lead,
                          LeadFilter, LeadRefused, LeadStream, available_actions, decide, lead_id, parse_lead_id,
                          replay, self_fulfilled, stream_id_of)
from domain.leads import apply as apply_action
from domain.rules import RuleSet
from domain.supervision import iso

from services.ingest import Ingestor, Source

LEAD_TOPICS = [f"{LeadStream.__module__}:{LeadStream.__qualname__}.{name}" for name in ("Opened", "Acted")]
LEAD_ACTED_TOPIC = LEAD_TOPICS[1]
NOTICE_NAMESPACE = uuid.UUID("0c9b8a7d-6e5f-5a4b-8c3d-2e1f0a9b8c7d")
LEAD_STATES = tuple(STATE_LABELS)
SORTS = ("due", "-due", "rule", "region")
CATCH_UP_PAGE = 500  # lead events folded at a time


def actor_of(principal: Any) -> Actor:
    """An oversight principal as the lead register's actor."""
    return Actor(id=str(principal.id), name=principal.name, supervisor=principal.supervisor,
                 agency_kind=principal.kind, agency_id=principal.agency_id, region=principal.region)


class LeadNotFound(Exception):
    """No such lead in the caller's scope (its existence outside the scope is not disclosed)."""


@dataclass(frozen=True)
class LeadQuery:
    """What the register is asked for: filters, a page and a moment (None: now, as known now)."""

    region: str | None = None
    state: str | None = None
    rule: str | None = None
    agency: str | None = None
    assignee: str | None = None
    q: str | None = None
    as_of: dt.datetime | None = None
    known_at: dt.datetime | None = None
    limit: int = 50
    offset: int = 0
    order: str = "due"


class LeadRegister:
    def __init__(self, store: Any, read_model: Any, queries: Any, ingestor: Ingestor, rules: RuleSet,
                 clock: Callable[[], dt.datetime]):
        self.store = store
        self.read_model = read_model
        self.queries = queries
        self.ingestor = ingestor
        self.clock = clock
        self.rule_names = {name.split("_", 1)[0]: name for name in rules.rules}

    # -- keeping rm_lead_versions current -------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Fold the lead actions stored since the register's position into its table; returns how many leads. The
        position moves to the log's head even when no lead was acted on, so the next look starts there."""
        written, head = 0, self.store.head()
        while (position := self.read_model.leads_position()) < head:
            page = self.store.originators_after(LEAD_TOPICS, position + 1, limit=CATCH_UP_PAGE, stop=head)
            streams = {stream_id for _, stream_id in page}
            versions = [row for stream_id in streams for row in self._versions(self.store.get_aggregate(stream_id))]
            moved_to = page[-1][0] if len(page) == CATCH_UP_PAGE else head
            if self.read_model.write_leads(position, moved_to, versions):  # else another process wrote it first
                written += len(streams)
        return written

    @staticmethod
    def _versions(stream: LeadStream) -> list[dict[str, Any]]:
        """The lead's state after each of its actions, each valid until the next action."""
        actions = stream.actions()
        rows = []
        lead = Lead()
        for number, action in enumerate(actions):
            lead = apply_action(lead, action)
            following = actions[number + 1].at if number + 1 < len(actions) else None
            rows.append({
                "lead_id": stream.lead_id, "number": number, "person_key": stream.person_key, "rule": stream.rule,
                "triggered_by": stream.triggered_by, "region": stream.region, "from_us": micros(action.at),
                "to_us": micros(following) if following else None, "state": str(lead.state),
                "snoozed_until_us": micros(dt.datetime.combine(lead.snoozed_until, dt.time(), SHANGHAI))
                if lead.snoozed_until else None,
                "assignee": lead.assignee["id"] if lead.assignee else None,
                "assignee_name": lead.assignee["name"] if lead.assignee else None,
                "notice_event": (lead.notice or {}).get("event_id"), "escalated_to": lead.escalated_to,
                "pending": lead.pending.action if lead.pending else None, "updated_by": action.by_name,
            })
        return rows

    # -- reading --------------------------------------------------------------------------------------------------

    def page(self, query: LeadQuery, scope: dict[str, Any]) -> dict[str, Any]:
        """A page of leads with the total; `scope` as the gap queries' (region, agency, agency_region, agency_id)."""
        self.catch_up()
        moment = query.as_of or self.clock()
        at = min(moment, query.known_at) if query.known_at else moment
        person_keys = self._person_keys(query.q)
        leads = LeadFilter(at_us=micros(at), reply_rule=NOTICE_REPLY_RULE, state=query.state,
                           assignee=query.assignee, person_keys=person_keys)
        common = {"region": scope.get("region"), "rule": query.rule, "agency": scope.get("agency"),
                  "agency_region": scope.get("agency_region"), "agency_id": scope.get("agency_id"),
                  "known_at_us": micros(query.known_at) if query.known_at else None,
                  "rule_set": self.queries.projection.serving_rule_set(), "leads": leads}
        if person_keys == []:
            rows, total = [], 0
        else:
            rows = self.read_model.gaps(micros(moment), ("open", "late"), limit=query.limit, offset=query.offset,
                                        order=query.order, **common)
            total = self.read_model.count_gaps(micros(moment), ("open", "late"), **common)
        versions = self.read_model.lead_versions_of([lead_id(r.rule, r.triggered_by) for r in rows],
                                                    None if query.as_of is None and query.known_at is None
                                                    else micros(at))
        items = [self._listed(row, versions.get(lead_id(row.rule, row.triggered_by)), moment, at, query.known_at)
                 for row in rows]
        return {"items": items, "total": total, "limit": query.limit, "offset": query.offset,
                "next_offset": query.offset + query.limit if query.offset + query.limit < total else None}

    def counts(self, region: str | None) -> dict[str, int]:
        """How many leads of the region are in each state now (the register's tabs)."""
        self.catch_up()
        now = self.clock()
        rule_set = self.queries.projection.serving_rule_set()
        acted = self.read_model.lead_counts(micros(now), region, NOTICE_REPLY_RULE, rule_set)
        total = self.read_model.count_gaps(micros(now), ("open", "late"), region=region, rule_set=rule_set)
        counts = {state: 0 for state in LEAD_STATES}
        counts.update(acted)
        counts["new"] = total - sum(v for k, v in acted.items() if k != "new")
        counts["all"] = total
        return counts

    def figures(self, region: str | None) -> list[dict[str, Any]]:
        """Per rule: leads decided (confirmed or dismissed), the share confirmed (the rule's precision: how often a
        raised gap is a real one), and the median whole days from the gap falling due to the lead's closing."""
        self.catch_up()
        by_rule: dict[str, dict[str, Any]] = {}
        for row in self.read_model.lead_outcomes(region, self.queries.projection.serving_rule_set()):
            entry = by_rule.setdefault(row.rule, {"rule": row.rule, "confirmed": 0, "dismissed": 0, "closed_days": []})
            entry["confirmed"] += bool(row.confirmed)
            entry["dismissed"] += bool(row.dismissed) and not row.confirmed
            if row.closed_us is not None and row.due_us is not None:
                entry["closed_days"].append(max(0, (row.closed_us - row.due_us) // 86_400_000_000))
        figures = []
        for rule in sorted(by_rule):
            entry = by_rule[rule]
            decided = entry["confirmed"] + entry["dismissed"]
            days = entry.pop("closed_days")
            figures.append({**entry, "decided": decided,
                            "precision": round(entry["confirmed"] / decided, 3) if decided else None,
                            "closed": len(days), "median_days_to_close": statistics.median_low(days) if days else None})
        return figures

    def _person_keys(self, q: str | None) -> list[str] | None:
        """The persons a search names: an ID number or another document's key (`typed_person_key`), a name or a
        decision's number (案号), compared normalised."""
        if not q or not q.strip():
            return None
        text = q.strip()
        key, problem = typed_person_key(text)
        if problem is None:
            return [self.read_model.sealer.token(key)]
        return self.read_model.person_keys_named(text)

    def _listed(self, row: Any, version: Any, moment: dt.datetime, at: dt.datetime,
                known_at: dt.datetime | None) -> dict[str, Any]:
        gap = self.queries.gap_from_row(row, moment, known_at)
        state = self._shown(version, row, moment, at, known_at)
        return {
            "lead_id": lead_id(row.rule, row.triggered_by), "state": state, "state_label": STATE_LABELS[state],
            "kind": "anomaly" if row.rule.startswith("A") else "gap",
            "rule": row.rule, "region": row.region, "id_number": gap["id_number"], "name": gap["name"],
            "due_at": gap["due_at"], "gap_state": gap["state"],
            "self_fulfilled": gap["state"] == "late" and state not in ("closed", "dismissed"),
            "assignee": {"id": version.assignee, "name": version.assignee_name}
            if version and version.assignee else None,
            "escalated_to": version.escalated_to if version else None,
            "pending": version.pending if version else None,
            "snoozed_until": _day_of(version.snoozed_until_us) if version and state == "snoozed" else None,
            "gap": gap,
        }

    def _shown(self, version: Any, row: Any, moment: dt.datetime, at: dt.datetime,
               known_at: dt.datetime | None) -> str:
        """The state a lead's stored version shows at `at` (domain.leads.Lead.effective_state)."""
        if version is None:
            return "new"
        if version.state != "closed" and (version.snoozed_until_us or 0) > micros(at):
            return "snoozed"
        if version.state == "notice_issued":
            lead = Lead(state=version.state, notice={"event_id": version.notice_event})
            if self._situation(row, lead, moment, known_at).notice_replied_at is not None:
                return "replied"
        return version.state

    def lead(self, lead: str, visible: Callable[[str | None], bool], as_of: dt.datetime | None = None,
             known_at: dt.datetime | None = None, supervisor: bool = False) -> dict[str, Any]:
        """One lead: its gap, its state, every action and the actions open to an officer (a supervisor if so), as
        of a moment. LeadNotFound outside `visible` regions."""
        self.catch_up()
        row, stream = self._find(lead, as_of, known_at)
        if not visible(row.region):
            raise LeadNotFound(lead)
        moment = as_of or self.clock()
        at = min(moment, known_at) if known_at else moment
        actions = stream.actions() if stream is not None else []
        state = replay(actions, until=at)
        situation = self._situation(row, state, moment, known_at)
        gap = self.queries.gap_from_row(row, moment, known_at)
        shown = state.effective_state(at, SHANGHAI, situation)
        return {
            "lead_id": lead, "state": str(shown), "state_label": STATE_LABELS[shown],
            "kind": "anomaly" if row.rule.startswith("A") else "gap",
            "rule": row.rule, "region": row.region, "id_number": gap["id_number"], "name": gap["name"],
            "self_fulfilled": self_fulfilled(state, situation, moment),
            "assignee": {"id": state.assignee["id"], "name": state.assignee["name"]} if state.assignee else None,
            "snoozed_until": state.snoozed_until.isoformat()
            if shown == "snoozed" and state.snoozed_until else None,
            "snooze_reason": state.snooze_reason if shown == "snoozed" else None,
            "dismissal": {**state.dismissal, "reason_label": DISMISS_LABELS[state.dismissal["reason"]]}
            if state.dismissal else None,
            "notice": {**state.notice, "kind_label": NOTICE_LABELS.get(state.notice.get("notice_kind"), "")}
            if state.notice else None,
            "notice_replied_at": iso(situation.notice_replied_at),
            "escalated_to": state.escalated_to,
            "pending": _action_record(state.pending) if state.pending else None,
            "history": [_action_record(a) for a in actions if a.at <= at],
            "available_actions": available_actions(state, at, SHANGHAI, situation, supervisor)
            if as_of is None and known_at is None else [],
            "gap": gap,
        }

    def _find(self, lead: str, as_of: dt.datetime | None, known_at: dt.datetime | None) -> tuple[Any, Any]:
        parsed = parse_lead_id(lead)
        rule = self.rule_names.get(parsed[0]) if parsed else None
        if parsed is None or rule is None:
            raise LeadNotFound(lead)
        moment = as_of or self.clock()
        row = self.read_model.gap_of_lead(parsed[1], rule, micros(moment),
                                          micros(known_at) if known_at else None,
                                          self.queries.projection.serving_rule_set())
        if row is None or row.gap_us is None or row.gap_us >= micros(moment):
            raise LeadNotFound(lead)  # no gap then: not a lead (yet, or any longer)
        return row, self.store.get_aggregate(stream_id_of(lead))

    def _situation(self, row: Any, lead: Lead, moment: dt.datetime, known_at: dt.datetime | None) -> GapSituation:
        fulfilled = dt.datetime.fromisoformat(row.fulfilled_at) if row.fulfilled_at else None
        replied = None
        notice_event = (lead.notice or {}).get("event_id")
        if notice_event:
            reply = self.read_model.gap_of_lead(notice_event, NOTICE_REPLY_RULE, micros(moment),
                                                micros(known_at) if known_at else None,
                                                self.queries.projection.serving_rule_set())
            if reply is not None and reply.fulfilled_at:
                replied = dt.datetime.fromisoformat(reply.fulfilled_at)
        return GapSituation(fulfilled_at=fulfilled if fulfilled and fulfilled <= moment else None,
                            notice_replied_at=replied if replied and replied <= moment else None)

    # -- acting ---------------------------------------------------------------------------------------------------

    def act(self, lead: str, action: str, fields: dict[str, Any], actor: Actor,
            visible: Callable[[str | None], bool], assignee_of: Callable[[str], Any]) -> dict[str, Any]:
        """Take `action` on the lead for `actor`; returns the lead as it stands after. LeadNotFound outside the
        actor's scope; LeadRefused when the lead or the actor may not."""
        self.catch_up()
        row, stream = self._find(lead, None, None)
        if not visible(row.region):
            raise LeadNotFound(lead)
        now = self.clock()
        state = replay(stream.actions()) if stream is not None else Lead()
        situation = self._situation(row, state, now, None)
        fields = dict(fields)
        wrong_assignee = None
        if action == "assign":  # an assignee out of scope is refused, after a lead that takes no action at all
            try:
                fields.update(self._assignee(fields.get("assignee"), row.region, assignee_of))
            except LeadRefused as refused:
                wrong_assignee, fields["assignee_name"] = refused, "?"
        recorded = decide(state, action, fields, actor, now, SHANGHAI, situation, upper_region_of=row.region)
        if wrong_assignee is not None:
            raise wrong_assignee
        if action == "issue_notice":  # published first: a retry after a failure below is the same event again
            recorded = dataclasses.replace(recorded, fields={
                **recorded.fields, **self._issue_notice(lead, row, fields, actor, now)})
        if stream is None:
            stream = LeadStream(lead_id=lead, person_key=row.person_key, rule=row.rule,
                                triggered_by=row.triggered_by, region=row.region)
        stream.act(recorded.action, recorded.fields, recorded.by, recorded.by_name, recorded.at.isoformat(),
                   recorded.outcome)
        try:
            self.store.save(stream)
        except IntegrityError:  # another officer acted on this lead meanwhile: this action was decided on old news
            raise LeadRefused("invalid_transition", "此线索刚被他人办理，请刷新后重试 / the lead was acted on meanwhile: "
                                                    "reload it and try again") from None
        self.catch_up()
        return self.lead(lead, visible, supervisor=actor.supervisor)

    @staticmethod
    def _assignee(assignee: Any, region: str | None, assignee_of: Callable[[str], Any]) -> dict[str, str]:
        principal = assignee_of(assignee) if isinstance(assignee, str) and assignee else None
        if principal is None or str(principal.role) != "oversight" or not principal.sees_region(region):
            raise LeadRefused("invalid_action", "只能指派给本辖区在用的监督人员（assignee 为其 id） / assign to an active "
                                                "oversight principal whose region covers the lead (assignee: its id)")
        return {"assignee": str(principal.id), "assignee_name": principal.name,
                **({"assignee_kind": principal.kind} if principal.kind else {})}

    def _issue_notice(self, lead: str, row: Any, fields: dict[str, Any], actor: Actor,
                      now: dt.datetime) -> dict[str, Any]:
        """Publish the notice as the officer's procuratorate; the recorded action carries its event id."""
        if actor.agency_kind != AgencyKind.PROCURATORATE or not actor.agency_id:
            raise LeadRefused("needs_procuratorate", "只有检察院的监督人员可以制发纠正违法通知书或检察建议 / only an officer "
                                                     "of a procuratorate issues a notice (principal with --kind "
                                                     "procuratorate --id)")
        kind = fields.get("notice_kind")
        if kind not in NOTICE_LABELS:
            raise LeadRefused("invalid_action", "notice_kind 应为 correction（纠正违法通知书）或 suggestion（检察建议） / "
                                                "notice_kind: correction or suggestion")
        document_no = fields.get("document_no")
        if not isinstance(document_no, str) or not document_no.strip() or len(document_no) > 200:
            raise LeadRefused("invalid_action", "缺少文书编号 document_no / document_no is required")
        addressee = fields.get("addressed_to") or {"kind": row.obligated_kind, "id": row.obligated_id}
        if not isinstance(addressee, dict) or not addressee.get("id"):
            raise LeadRefused("invalid_action", "请写明主送单位 addressed_to {kind, id}（该义务未指明具体单位） / "
                                                "addressed_to {kind, id} is required: the obligation names no agency")
        finding = fields.get("finding") or f"线索 {lead}：{row.rule}"
        region = (actor.region or "").ljust(6, "0")
        event_id = str(uuid.uuid5(NOTICE_NAMESPACE, f"{lead}|{document_no.strip()}"))  # a retry is a duplicate
        envelope = {
            "event_id": event_id, "event_type": "procuratorial_notice_issued", "schema_version": 2,
            "agency": {"kind": "procuratorate", "id": actor.agency_id, "region": region},
            "person": {**key_person_document(row.id_number), "name": row.name}, "occurred_at": now.isoformat(),
            "case_ref": document_no.strip(),
            "payload": {"notice_kind": kind, "addressed_to": {"kind": addressee.get("kind"), "id": addressee["id"]},
                        "finding": finding,
                        **({"reply_within_days": fields["reply_within_days"]}
                           if fields.get("reply_within_days") is not None else {})},
        }
        source = Source(name=f"leads:{actor.agency_id}",
                        publisher=PublisherIdentity(kind=AgencyKind.PROCURATORATE, id=actor.agency_id, region=region))
        result = self.ingestor.ingest([envelope], source)
        item = result.items[0]
        if item.status == "rejected":
            raise LeadRefused("invalid_action", f"文书未能发布 / the notice was refused: {item.reason}")
        recorded = {"event_id": event_id, "notice_kind": kind, "document_no": document_no.strip(),
                    "addressed_to": envelope["payload"]["addressed_to"]}
        if fields.get("reply_within_days") is not None:
            recorded["reply_within_days"] = fields["reply_within_days"]
        return recorded


def _day_of(until_us: int) -> str:
    """The day a snooze ends (stored as that day's first instant)."""
    return dt.datetime.fromtimestamp(until_us / 1e6, SHANGHAI).date().isoformat()


def _action_record(action: Any) -> dict[str, Any]:
    return {"action": action.action, "fields": action.fields, "by": action.by, "by_name": action.by_name,
            "at": iso(action.at), "outcome": action.outcome}
