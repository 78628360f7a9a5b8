"""A person's recorded events, as auditors and clerks read them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from adapters.eventstore import EventStore


def person_history(store: EventStore, id_number: str) -> list[dict[str, Any]] | None:
    """The person's events in occurred_at order (ties: the order recorded), or None when nobody is on record."""
    person = store.person(id_number)
    if person is None:
        return None
    ordered = sorted(
        enumerate(person.events),
        key=lambda item: (dt.datetime.fromisoformat(item[1].occurred_at), item[0]),
    )
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
            "retracted_by": person.retracted.get(event.event_id),
            "source": event.source,
        }
        for _, event in ordered
    ]
