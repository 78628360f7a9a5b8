"""A person's recorded events, as auditors and clerks read them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from domain.supervision import fold_order

from services.ports import PersonStore


def person_history(store: PersonStore, id_number: str, linked: Sequence[str] = ()) -> list[dict[str, Any]] | None:
    """The person's events in the order the fold takes them (occurred_at, then the causal order of their types), or
    None when nobody is on record. `linked`: the keys linked as this one person (a status's `linked_keys`), whose
    events are theirs too; each event says which key it was published under (`person_key`)."""
    persons = [person for key in dict.fromkeys([id_number, *linked]) if (person := store.person(key)) is not None]
    if not persons:
        return None
    ordered = sorted(((person, event) for person in persons for event in person.events), key=lambda pair: fold_order(
        dt.datetime.fromisoformat(pair[1].occurred_at), pair[1].event_type, pair[1].event_id))
    retracted = {event_id: by for person in persons for event_id, by in person.retracted.items()}
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
            "retracted_by": retracted.get(event.event_id.lower()),
            "source": event.source,
            "person_key": person.id_number,
        }
        for person, event in ordered
    ]
