"""Who must be told: the routing table of accepted events and opened gaps (Law 20, 30, 44, 48, 62).

Recipients are an agency kind and a region (the router publishes to `handoff.out.<kind>.<region>`):

| event | recipients |
|---|---|
| `decision_effective` | bureau, police and procuratorate of `payload.execution_region` |
| `contact_lost` | police of the person's current region |
| `revocation_ruled` with `revoked: true` | police of the person's current region |
| `discharged` | the decision organ (the court, at its region), procuratorate and police of the current region |
| `procuratorial_notice_issued` | its addressee (`payload.addressed_to.kind`) at the issuing procuratorate's region |
| a gap opens | the obligated agency (kind, region) and the procuratorate of that region |
| a lead is assigned | the assignee's agency (its kind, else the procuratorate) of the lead's region |
| a lead is escalated (督办) | the procuratorate of the region above (a city's code ends in 00, a province's in 0000) |
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .leads import Lead
from .supervision import Obligation, PersonView


@dataclass(frozen=True)
class Recipient:
    kind: str
    region: str



def _unique(pairs: Iterable[tuple[Recipient | None, str]]) -> list[tuple[Recipient, str]]:
    seen: dict[Recipient, str] = {}
    for recipient, why in pairs:
        if recipient is not None and recipient.region and recipient not in seen:
            seen[recipient] = why
    return list(seen.items())


def event_recipients(event: Any, view: PersonView) -> list[tuple[Recipient, str]]:
    """Who must learn of this accepted event (the routing table), each with why. `view` is the person folded up to
    and including the event."""
    kind, payload = event.event_type, event.payload
    region = view.region or event.agency["region"]
    if kind == "decision_effective":
        where = payload["execution_region"]
        return _unique([
            (Recipient("bureau", where), "a decision takes effect: the execution region's bureau receives the person"),
            (Recipient("police", where), "a decision takes effect in the police's region"),
            (Recipient("procuratorate", where), "a decision takes effect: legal supervision of its execution"),
        ])
    if kind == "contact_lost":
        return _unique([(Recipient("police", region), "the bureau lost contact: police help to search (Law 30)")])
    if kind == "revocation_ruled" and payload.get("revoked"):
        return _unique([(Recipient("police", region), "revoked: police commit the person to custody (Law 48)")])
    if kind == "discharged":
        episode = view.episode
        return _unique([
            (Recipient(episode.decision_kind, episode.decision_region) if episode else None,
             "discharged: the decision organ is told (Law 44)"),
            (Recipient("procuratorate", region), "discharged: the procuratorate is told (Law 44)"),
            (Recipient("police", region), "discharged: the police are told (Law 44)"),
        ])
    if kind == "procuratorial_notice_issued":
        addressee = payload["addressed_to"]
        return _unique([(Recipient(addressee["kind"], event.agency["region"]),
                         f"a procuratorial {payload['notice_kind']} notice addressed to {addressee['id']}")])
    return []


def gap_recipients(obligated_kind: str, obligated_region: str | None,
                   person_region: str | None) -> list[tuple[Recipient, str]]:
    region = obligated_region or person_region or ""
    return _unique([
        (Recipient(obligated_kind, region), "a handoff gap opened: your agency is obligated"),
        (Recipient("procuratorate", region), "a handoff gap opened: legal supervision"),
    ])


def opened_gaps(before: PersonView | None, after: PersonView, now: dt.datetime) -> list[Obligation]:
    """Open gaps of `after` that were not open in `before` (both folded at `now`)."""
    was = {(o.rule, o.triggered_by) for o in before.gaps(now, ("open",))} if before is not None else set()
    return [o for o in after.gaps(now, ("open",)) if (o.rule, o.triggered_by) not in was]


def lead_recipients(before: Lead, after: Lead, region: str | None) -> list[tuple[Recipient, str, str]]:
    """Who must learn of a lead's action (the lead before and after it): (recipient, why, notification type)."""
    out: list[tuple[Recipient | None, str, str]] = []
    if after.assignee and after.assignee != before.assignee and region:
        kind = after.assignee.get("kind") or "procuratorate"
        out.append((Recipient(kind, region), f"lead assigned to {after.assignee['name']}", "lead_assigned"))
    if after.escalated_to and after.escalated_to != before.escalated_to:
        out.append((Recipient("procuratorate", after.escalated_to.ljust(6, "0")),
                    f"lead escalated (督办) to the oversight of {after.escalated_to}", "lead_escalated"))
    return [(recipient, why, kind) for recipient, why, kind in out if recipient is not None]
