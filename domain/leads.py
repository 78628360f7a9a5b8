"""The lead register (线索台账): what oversight staff do with a gap or an anomaly, step by step (domain.md "Leads").

Every gap and anomaly, open or late, is a lead of the oversight of its person's region. A lead nobody has touched is
`new` and has no stream; the first action opens its `Lead` stream, and every action after is one more event of it,
so the register replays by date and sits under the audit chain like everything else.

    new 待核实 → checking 核实中 → confirmed 属实 → notice_issued 已制发 → replied 已回复 → followed_up 已回访 → closed 结案
                               ↘ dismissed 不属实 (with a reason) → closed

Beside the path: `snoozed` 暂缓 until a date with a reason (the lead returns to where it was when the date has
passed; longer than 30 days only with a supervisor's approval), `escalated` 督办 to the oversight of the region above
(approved by a supervisor), and assignment to a named officer. `replied` is not an action of oversight: the
addressee's `notice_replied` (which fulfils R16) moves the lead there. A lead whose gap was fulfilled late, after
it was raised, is marked 已自行履行 and can be closed in one step.

`decide` checks an action against the lead as it stands and returns what to record (or raises LeadRefused with a
reason in Chinese and English); `apply` folds a recorded action into the lead without checking again, so replaying
a stream never depends on today's rules or clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from collections.abc import Sequence
from typing import Any, NamedTuple

from eventsourcing.domain import Aggregate, event

LEAD_NAMESPACE = uuid.UUID("5b0e7c2a-3f41-5d6e-9a8b-7c6d5e4f3a2b")

# Recidiviz's workflows let an officer snooze an opportunity for at most 30 days on their own; longer needs a
# supervisor (domain.md "Leads").
SNOOZE_DAYS_WITHOUT_APPROVAL = 30
SNOOZE_DAYS_MAX = 366


class LeadState(StrEnum):
    NEW = "new"
    CHECKING = "checking"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    NOTICE_ISSUED = "notice_issued"
    REPLIED = "replied"
    FOLLOWED_UP = "followed_up"
    CLOSED = "closed"
    SNOOZED = "snoozed"
    ESCALATED = "escalated"


STATE_LABELS = {
    "new": "待核实", "checking": "核实中", "confirmed": "属实", "dismissed": "不属实", "notice_issued": "已制发",
    "replied": "已回复", "followed_up": "已回访", "closed": "结案", "snoozed": "暂缓", "escalated": "督办",
}


class DismissReason(StrEnum):
    DATA_ERROR = "data_error"
    FULFILLED_UNRECORDED = "fulfilled_unrecorded"
    LEGAL_EXCEPTION = "legal_exception"
    DUPLICATE = "duplicate"
    OTHER = "other"


DISMISS_LABELS = {"data_error": "数据错误", "fulfilled_unrecorded": "已履行未录入", "legal_exception": "依法例外",
                  "duplicate": "重复", "other": "其他"}

# The written forms of a procuratorate's notice (catalog: procuratorial_notice_issued.notice_kind).
NOTICE_LABELS = {"correction": "纠正违法通知书", "suggestion": "检察建议"}

ACTIONS = ("assign", "start_check", "confirm", "dismiss", "issue_notice", "follow_up", "close", "snooze", "escalate",
           "approve", "reject")
ACTION_LABELS = {"assign": "指派", "start_check": "开始核实", "confirm": "确认属实", "dismiss": "认定不属实",
                 "issue_notice": "制发文书", "follow_up": "回访", "close": "结案", "snooze": "暂缓",
                 "escalate": "提请督办", "approve": "批准", "reject": "驳回"}
# Actions that wait for a supervisor when an officer asks for them (a long snooze; an escalation).
NEEDS_APPROVAL = ("snooze", "escalate")
# The rule a reply to a procuratorate's notice fulfils (R16 watches the reply): its fulfilment moves a lead from
# notice_issued to replied.
NOTICE_REPLY_RULE = "R16_notice_reply_overdue"


class LeadRefused(Exception):
    """An action the lead cannot take now. `code`: invalid_transition (the lead's state does not allow it),
    needs_supervisor (only a supervisor may), invalid_action (the action or its fields are wrong)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class LeadFilter(NamedTuple):
    """Which gaps' leads a register query keeps: `state` as shown at `at_us` (microseconds; "new": never acted on
    or still new), assigned to `assignee`, of the persons `person_keys`; `reply_rule` is the rule a notice's reply
    fulfils."""

    at_us: int
    reply_rule: str
    state: str | None = None
    assignee: str | None = None
    person_keys: Sequence[str] | None = None


def lead_id(rule: str, triggered_by: str) -> str:
    """The stable id of the lead of an obligation: its rule's code and the id of the event that triggered it
    ("R04-7d0c6a1e-…"). Event ids are unique across persons, so the same gap is the same lead in every rebuild, and
    the id says which gap it is without a lookup table."""
    return f"{rule.split('_', 1)[0]}-{triggered_by}"


def parse_lead_id(value: str) -> tuple[str, str] | None:
    """(rule code, triggering event id) of a lead id, or None when it is not one."""
    code, _, trigger = value.partition("-")
    try:
        uuid.UUID(trigger)
    except ValueError:
        return None
    if not (len(code) == 3 and code[0] in "RA" and code[1:].isdigit()):
        return None
    return code, trigger


def region_above(region: str) -> str | None:
    """The region prefix of the oversight one level up: a county's city (520222 → 5202), a city's province (5202 →
    52); None above a province."""
    digits = region.rstrip("0") if len(region) == 6 and region.endswith("00") else region
    if len(digits) > 4:
        return digits[:4]
    if len(digits) > 2:
        return digits[:2]
    return None


@dataclass(frozen=True)
class Actor:
    """Who acts: an oversight principal (or an auditor reading, who never acts)."""

    id: str
    name: str
    supervisor: bool = False
    agency_kind: str | None = None  # procuratorate or bureau: the officer's own agency, when known
    agency_id: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class GapSituation:
    """What the read model says of the lead's gap now: fulfilled late (its fulfilment time), and whether the notice
    issued from it was replied (R16 fulfilled)."""

    fulfilled_at: dt.datetime | None = None
    notice_replied_at: dt.datetime | None = None


@dataclass(frozen=True)
class RecordedAction:
    """One action as kept in the lead's stream."""

    action: str
    fields: dict[str, Any]
    by: str
    by_name: str
    at: dt.datetime
    # "done", or "requested" (waits for a supervisor's approve/reject) for a long snooze or an escalation.
    outcome: str = "done"


@dataclass(frozen=True)
class Lead:
    """A lead as its actions left it. `state` is where it rests; a snooze lies over it until `snoozed_until`."""

    state: str = LeadState.NEW
    assignee: dict[str, str] | None = None
    snoozed_until: dt.date | None = None
    snooze_reason: str | None = None
    dismissal: dict[str, str] | None = None
    notice: dict[str, Any] | None = None
    escalated_to: str | None = None
    pending: RecordedAction | None = None
    closed_self_fulfilled: bool = False
    actions: tuple[RecordedAction, ...] = field(default_factory=tuple)

    def snoozed_at(self, moment: dt.datetime, zone: dt.tzinfo) -> bool:
        return self.snoozed_until is not None and moment.astimezone(zone).date() < self.snoozed_until

    def effective_state(self, moment: dt.datetime, zone: dt.tzinfo, situation: GapSituation) -> str:
        """The state shown at `moment`: snoozed while the snooze lasts, replied once the notice is."""
        if self.state == LeadState.CLOSED:
            return LeadState.CLOSED
        if self.snoozed_at(moment, zone):
            return LeadState.SNOOZED
        if self.state == LeadState.NOTICE_ISSUED and situation.notice_replied_at is not None \
                and situation.notice_replied_at <= moment:
            return LeadState.REPLIED
        return self.state


def self_fulfilled(lead: Lead, situation: GapSituation, moment: dt.datetime) -> bool:
    """已自行履行: the obligation was met late, after the gap was raised, and the lead is still open."""
    return (situation.fulfilled_at is not None and situation.fulfilled_at <= moment
            and lead.state not in (LeadState.CLOSED, LeadState.DISMISSED))


# From which states (as shown) each action may be taken.
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "assign": ("new", "checking", "confirmed", "notice_issued", "replied", "followed_up", "snoozed", "escalated",
               "dismissed"),
    "start_check": ("new", "escalated"),
    "confirm": ("checking",),
    "dismiss": ("new", "checking", "escalated"),
    "issue_notice": ("confirmed",),
    "follow_up": ("replied",),
    "close": ("followed_up", "dismissed"),
    "snooze": ("new", "checking", "confirmed", "escalated", "snoozed"),  # snoozed: a new end date
    "escalate": ("new", "checking", "confirmed"),
}
# A lead whose gap was met late (已自行履行) closes in one step from any of these.
SELF_FULFILLED_CLOSABLE = ("new", "checking", "confirmed", "snoozed", "escalated")


def available_actions(lead: Lead, moment: dt.datetime, zone: dt.tzinfo, situation: GapSituation,
                      supervisor: bool) -> list[str]:
    """The actions an officer (a supervisor, if so) can take on the lead now, in the order of the path."""
    shown = lead.effective_state(moment, zone, situation)
    if shown == LeadState.CLOSED:
        return []
    actions = [action for action, states in ALLOWED_FROM.items() if shown in states]
    if "close" not in actions and self_fulfilled(lead, situation, moment) and shown in SELF_FULFILLED_CLOSABLE:
        actions.append("close")
    if supervisor and lead.pending is not None:
        actions += ["approve", "reject"]
    return actions


def _refuse_transition(action: str, shown: str) -> LeadRefused:
    allowed = "、".join(STATE_LABELS[s] for s in ALLOWED_FROM[action])
    return LeadRefused(
        "invalid_transition",
        f"线索当前状态为“{STATE_LABELS[shown]}”，不能“{ACTION_LABELS[action]}”（仅限：{allowed}） / the lead is {shown}: "
        f"{action} is allowed only from {', '.join(ALLOWED_FROM[action])}")


def _text(fields: dict[str, Any], name: str, required: bool, limit: int = 2000) -> str | None:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise LeadRefused("invalid_action", f"缺少 {name} / {name} is required")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise LeadRefused("invalid_action", f"{name} 应为不超过 {limit} 字的文字 / {name}: text of at most {limit} "
                                            "characters")
    return value.strip()


def decide(lead: Lead, action: str, fields: dict[str, Any], actor: Actor, now: dt.datetime, zone: dt.tzinfo,
           situation: GapSituation, upper_region_of: str | None = None) -> RecordedAction:
    """What to record for `action` asked by `actor` at `now`, or LeadRefused. `upper_region_of`: the lead's
    region, whose oversight one level up an escalation goes to. The fields of an assignment (`assignee`,
    `assignee_name`) and of a notice (`event_id`) are filled in by the service, which checks the assignee and
    publishes the notice."""
    if action not in ACTIONS:
        raise LeadRefused("invalid_action", f"未知操作 {action!r}（可用：{', '.join(ACTIONS)}） / unknown action "
                                            f"{action!r}: one of {', '.join(ACTIONS)}")
    shown = lead.effective_state(now, zone, situation)
    done = RecordedAction(action, {}, actor.id, actor.name, now)
    if action in ("approve", "reject"):
        if not actor.supervisor:
            raise LeadRefused("needs_supervisor", "只有主管可以批准或驳回 / only a supervisor approves or rejects")
        if lead.pending is None:
            raise LeadRefused("invalid_transition", "没有待批准的申请 / nothing awaits approval")
        note = _text(fields, "note", required=action == "reject")
        return dataclasses.replace(done, fields={"note": note} if note else {})
    if shown == LeadState.CLOSED:
        raise LeadRefused("invalid_transition", "线索已结案 / the lead is closed")
    note = _text(fields, "note", required=False)
    if action == "close" and self_fulfilled(lead, situation, now) and shown in SELF_FULFILLED_CLOSABLE:
        return dataclasses.replace(done, fields={"self_fulfilled": True, **({"note": note} if note else {})})
    if shown not in ALLOWED_FROM[action]:
        raise _refuse_transition(action, shown)
    recorded: dict[str, Any] = {"note": note} if note else {}
    if action == "assign":
        recorded.update(assignee=_text(fields, "assignee", required=True, limit=64),
                        assignee_name=_text(fields, "assignee_name", required=True, limit=200))
        if fields.get("assignee_kind"):  # the assignee's own agency: who is told of the assignment
            recorded["assignee_kind"] = fields["assignee_kind"]
    elif action == "dismiss":
        reason = fields.get("reason")
        if reason not in set(DismissReason):
            raise LeadRefused("invalid_action", f"不属实须注明理由 reason（{', '.join(DismissReason)}） / a dismissal "
                                                f"needs a reason: one of {', '.join(DismissReason)}")
        recorded.update(reason=reason, note=_text(fields, "note", required=reason == DismissReason.OTHER))
    elif action == "issue_notice":
        recorded.update({k: fields[k] for k in ("event_id", "notice_kind", "document_no", "addressed_to",
                                                "reply_within_days") if fields.get(k) is not None})
    elif action == "follow_up":
        recorded["note"] = _text(fields, "note", required=True)
    elif action == "snooze":
        recorded.update(_snooze_fields(fields, now, zone))
    elif action == "escalate":
        upper = region_above(lead.escalated_to or upper_region_of or "")
        if upper is None:
            raise LeadRefused("invalid_transition", "已是省级，无法再提请督办 / already at the province: no region "
                                                    "above to escalate to")
        recorded["to_region"] = upper
        recorded["note"] = _text(fields, "note", required=True)
    outcome = "done"
    if action in NEEDS_APPROVAL and not actor.supervisor and \
            (action == "escalate" or recorded["days"] > SNOOZE_DAYS_WITHOUT_APPROVAL):
        outcome = "requested"
    return dataclasses.replace(done, fields=recorded, outcome=outcome)


def _snooze_fields(fields: dict[str, Any], now: dt.datetime, zone: dt.tzinfo) -> dict[str, Any]:
    try:
        until = dt.date.fromisoformat(str(fields.get("until", "")))
    except ValueError:
        raise LeadRefused("invalid_action", "暂缓须给出截止日期 until（YYYY-MM-DD） / a snooze needs `until` "
                                            "(YYYY-MM-DD)") from None
    today = now.astimezone(zone).date()
    days = (until - today).days
    if not 1 <= days <= SNOOZE_DAYS_MAX:
        raise LeadRefused("invalid_action", f"暂缓截止日期须在今天之后、{SNOOZE_DAYS_MAX} 天以内 / `until` must be "
                                            f"after today and within {SNOOZE_DAYS_MAX} days")
    return {"until": until.isoformat(), "days": days, "reason": _text(fields, "reason", required=True)}


def apply(lead: Lead, recorded: RecordedAction) -> Lead:
    """The lead after a recorded action (never refused: it was decided when it was taken)."""
    actions = (*lead.actions, recorded)
    if recorded.outcome == "requested":
        return dataclasses.replace(lead, pending=recorded, actions=actions)
    action, f = recorded.action, recorded.fields
    if action == "approve" and lead.pending is not None:
        approved = dataclasses.replace(lead.pending, outcome="done")
        return dataclasses.replace(apply(dataclasses.replace(lead, pending=None), approved), actions=actions)
    if action == "reject":
        return dataclasses.replace(lead, pending=None, actions=actions)
    changes: dict[str, Any] = {"actions": actions}
    if action != "assign" and action != "snooze":
        changes["snoozed_until"] = None  # acting on a snoozed lead ends its snooze
    if action == "assign":
        changes["assignee"] = {"id": f["assignee"], "name": f["assignee_name"],
                               **({"kind": f["assignee_kind"]} if f.get("assignee_kind") else {})}
    elif action == "start_check":
        changes["state"] = LeadState.CHECKING
    elif action == "confirm":
        changes["state"] = LeadState.CONFIRMED
    elif action == "dismiss":
        changes.update(state=LeadState.DISMISSED, dismissal={"reason": f["reason"], "note": f.get("note")})
    elif action == "issue_notice":
        changes.update(state=LeadState.NOTICE_ISSUED, notice=dict(f))
    elif action == "follow_up":
        changes["state"] = LeadState.FOLLOWED_UP
    elif action == "close":
        changes.update(state=LeadState.CLOSED, closed_self_fulfilled=bool(f.get("self_fulfilled")), pending=None)
    elif action == "snooze":
        changes.update(snoozed_until=dt.date.fromisoformat(f["until"]), snooze_reason=f["reason"])
    elif action == "escalate":
        changes.update(state=LeadState.ESCALATED, escalated_to=f["to_region"])
    return dataclasses.replace(lead, **changes)


def replay(actions: list[RecordedAction], until: dt.datetime | None = None) -> Lead:
    """The lead after its actions taken up to `until` (None: all of them)."""
    lead = Lead()
    for recorded in actions:
        if until is not None and recorded.at > until:
            break
        lead = apply(lead, recorded)
    return lead


def stream_id_of(lead: str) -> uuid.UUID:
    return uuid.uuid5(LEAD_NAMESPACE, lead)


class LeadStream(Aggregate):
    """A lead's actions, in the event store: who did what, when. Opened by the first action."""

    @staticmethod
    def create_id(lead_id: str, **_: Any) -> uuid.UUID:
        return stream_id_of(lead_id)

    @event("Opened")
    def __init__(self, lead_id: str, person_key: str, rule: str, triggered_by: str, region: str | None):
        self.lead_id = lead_id
        self.person_key = person_key
        self.rule = rule
        self.triggered_by = triggered_by
        self.region = region
        self.recorded: list[dict[str, Any]] = []

    @event("Acted")
    def act(self, action: str, fields: dict[str, Any], by: str, by_name: str, at: str, outcome: str) -> None:
        self.recorded.append({"action": action, "fields": fields, "by": by, "by_name": by_name, "at": at,
                              "outcome": outcome})

    def actions(self) -> list[RecordedAction]:
        return [RecordedAction(r["action"], dict(r["fields"]), r["by"], r["by_name"],
                               dt.datetime.fromisoformat(r["at"]), r["outcome"]) for r in self.recorded]
