"""A person's recorded events, as auditors and clerks read them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from domain.supervision import fold_order

from services.ports import PersonStore


def person_history(store: PersonStore, id_number: str) -> list[dict[str, Any]] | None:
    """The person's events in the order the fold takes them (occurred_at, then the causal order of their types), or
    None when nobody is on record."""
    person = store.person(id_number)
    if person is None:
        return None
    ordered = sorted(person.events, key=lambda event: fold_order(
        dt.datetime.fromisoformat(event.occurred_at), event.event_type, event.event_id))
    retracted = person.retracted
    return [
        {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "occurred_at": event.occurred_at,
            "recorded_at": event.recorded_at,
            "publisher": event.agency,
            "person": event.person,
            "case_ref": event.case_ref,
            "payload": event.payload,
            "schema_version": event.schema_version,
            "retracted_by": retracted.get(event.event_id),
            "source": event.source,
        }
        for event in ordered
    ]
