"""Compact event histories for the rule-engine tests (tests/unit/test_rules_matrix.py).

A history is written as tuples, one per event:

    ("dec", "decision_effective", "court", "2024-03-06 10:00")
    ("rep", "subject_reported", "bureau", "2024-03-07 09:00", {"region": "520222"})
    ("det", "detention_started", "police", "2024-06-10 22:00", {}, "2024-06-20 10:00")   # recorded later

i.e. (name, event_type, agency, occurred_at[, payload changes[, recorded_at]]); a change `_name` is the person's
name as that event publishes it (张三 otherwise). The name becomes a stable UUID
(`eid(name)`), the payload is the valid payload of the type (tests/unit/factories.py) with `DEFAULTS` and the given
changes applied, and `recorded_at` defaults to `occurred_at` (the event reached the service at once). Times are
Shanghai wall-clock ("YYYY-MM-DD HH:MM" or a date) unless given as a full ISO string with its own offset.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from domain.calendar import WorkingCalendar
from domain.person import RecordedEvent
from domain.rules import default_rule_set
from domain.supervision import Obligation, PersonView, fold
from tests.unit.factories import ID_NUMBER
from tests.unit.factories import payload as valid_payload

CST = dt.timezone(dt.timedelta(hours=8))
RULES = default_rule_set()
CALENDAR = WorkingCalendar()
_NAMESPACE = uuid.UUID("6f1f3c1e-2b7a-4c55-9d0e-5a1b2c3d4e5f")

AGENCIES: dict[str, dict[str, str]] = {
    "court": {"kind": "court", "id": "FY-520222-01", "region": "520222"},
    "procuratorate": {"kind": "procuratorate", "id": "JCY-520222-01", "region": "520222"},
    "police": {"kind": "police", "id": "GA-520222-01", "region": "520222"},
    "prison": {"kind": "prison", "id": "JY-520200-01", "region": "520200"},
    "bureau": {"kind": "bureau", "id": "SFJ-520222-01", "region": "520222"},
    "bureau@632801": {"kind": "bureau", "id": "SFJ-632801-01", "region": "632801"},
    "bureau@520221": {"kind": "bureau", "id": "SFJ-520221-01", "region": "520221"},
    "bureau@520200": {"kind": "bureau", "id": "SFJ-520200-01", "region": "520200"},
    "court@520221": {"kind": "court", "id": "FY-520221-01", "region": "520221"},
    "court@520200": {"kind": "court", "id": "FY-520200-01", "region": "520200"},
    "police@632801": {"kind": "police", "id": "GA-632801-01", "region": "632801"},
}

# Payload defaults of these histories (on top of factories.VALID_PAYLOADS): a probation term starting with the
# decision of 2024-03-06 and ending a year later, executed in 520222, handovers to 520222.
DEFAULTS: dict[str, dict[str, Any]] = {
    "decision_effective": {"category": "probation", "term_start": "2024-03-06", "term_end": "2025-03-05",
                           "execution_region": "520222", "in_custody": False},
    "prisoner_released": {"to_region": "520222"},
    "subject_transferred": {"to_region": "520222"},
    "revocation_proposed": {"arrest_requested": False},
}

Step = tuple  # (name, event_type, agency, occurred[, payload changes[, recorded]])


def eid(name: str) -> str:
    """The event id of the history event called `name`."""
    return str(uuid.uuid5(_NAMESPACE, name))


def at(text: str) -> dt.datetime:
    """A moment: 'YYYY-MM-DD HH:MM' or 'YYYY-MM-DD' in Shanghai time, or a full ISO 8601 string."""
    if "T" in text:
        return dt.datetime.fromisoformat(text)
    if len(text) == 10:
        text += " 00:00"
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CST)


def event(name: str, event_type: str, agency: str, occurred: str, changes: dict[str, Any] | None = None,
          recorded: str | None = None) -> RecordedEvent:
    changes = dict(changes or {})
    name_published = changes.pop("_name", "张三")  # the person's name as this event publishes it (A08)
    body = valid_payload(event_type, **{**DEFAULTS.get(event_type, {}), **(changes or {})})
    occurred_at = at(occurred).isoformat()
    recorded_at = at(recorded).isoformat() if recorded else occurred_at
    content = json.dumps([event_type, agency, occurred_at, body], ensure_ascii=False, sort_keys=True)
    return RecordedEvent(
        event_id=eid(name), event_type=event_type, schema_version=1, agency=dict(AGENCIES[agency]),
        person={"id_number": ID_NUMBER, "name": name_published}, occurred_at=occurred_at, recorded_at=recorded_at,
        case_ref="(2024)黔0222刑初123号", payload=body, content_hash=hashlib.sha256(content.encode()).hexdigest(),
        source="test",
    )


def history(*steps: Step) -> list[RecordedEvent]:
    return [event(*step) for step in steps]


def retraction(steps: tuple[Step, ...] | list[Step], name: str, when: str) -> Step:
    """An `event_retracted` of the event called `name`, published by that event's own publisher at `when`."""
    target = next(step for step in steps if step[0] == name)
    return (f"retract-{name}", "event_retracted", target[2], when,
            {"retracted_event_id": eid(name), "reason": "录入错误"})


def view(steps: tuple[Step, ...] | list[Step], as_of: str, known_at: str | None = None) -> PersonView:
    """The fold of the history as of `as_of` (valid time), as known at `known_at` (default: everything)."""
    return fold(history(*steps), id_number=ID_NUMBER, rules=RULES, calendar=CALENDAR, as_of=at(as_of),
                known_at=at(known_at) if known_at else None)


def of_rule(person: PersonView, rule: str) -> list[Obligation]:
    return [o for o in person.obligations if o.rule == rule]


def only(person: PersonView, rule: str) -> Obligation:
    """The one obligation of `rule` (fails if there are none or several)."""
    found = of_rule(person, rule)
    assert len(found) == 1, f"expected exactly one {rule}, got {found}"
    return found[0]


def gap_rules(person: PersonView, as_of: str) -> dict[str, str]:
    """rule -> state of the gaps at `as_of` (for readable assertions)."""
    return {o.rule: o.state(at(as_of)) for o in person.gaps(at(as_of))}
