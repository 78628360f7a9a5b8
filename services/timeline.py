"""A person's timeline as data for the picture: one lane per agency, events as marks, obligations as bars from
trigger to due time (gaps flagged), the episode's term as a band."""

from __future__ import annotations

import datetime as dt
from typing import Any

from domain.supervision import iso

from services.history import person_history
from services.queries import Queries

LANES = ("court", "procuratorate", "police", "prison", "bureau")


class Timelines:
    def __init__(self, queries: Queries):
        self.queries = queries

    def timeline(self, id_number: str, as_of: dt.datetime | None = None,
                 known_at: dt.datetime | None = None) -> dict[str, Any] | None:
        moment = as_of or self.queries.clock()
        view = self.queries.view(id_number, moment, known_at)
        if view is None or view.last_occurred_at is None:
            return None
        history = person_history(self.queries.store, id_number, view.keys) or []
        events = [
            {"event_id": e["event_id"], "event_type": e["event_type"], "lane": e["publisher"]["kind"],
             "agency": e["publisher"], "occurred_at": e["occurred_at"], "recorded_at": e["recorded_at"],
             "retracted": e["retracted_by"] is not None, "payload": e["payload"]}
            for e in history
            if dt.datetime.fromisoformat(e["occurred_at"]) <= moment
            and (known_at is None or dt.datetime.fromisoformat(e["recorded_at"]) <= known_at)
        ]
        bars = []
        for o in view.obligations:
            state = o.state(moment)
            if state == "pending" or o.due_at is None:
                continue
            bars.append({
                "rule": o.rule, "lane": o.obligated_kind if o.obligated_kind in LANES else "bureau",
                "obligated": {"kind": o.obligated_kind, "id": o.obligated_id, "region": o.obligated_region},
                "from": iso(o.trigger_at), "due_at": iso(o.due_at),
                "fulfilled_at": iso(o.fulfilled_at) if o.fulfilled_at and o.fulfilled_at <= moment else None,
                "state": state, "gap": state in ("open", "late"), "triggered_by": o.triggered_by,
            })
        episode = view.episode
        times = [dt.datetime.fromisoformat(e["occurred_at"]) for e in events]
        times += [dt.datetime.fromisoformat(b["due_at"]) for b in bars]
        return {
            "id_number": id_number, "name": view.name, "as_of": iso(moment), "known_at": iso(known_at),
            "status": view.status, "responsible": view.responsible, "lanes": list(LANES),
            "term": {"start": episode.term_start.isoformat(), "end": episode.term_end.isoformat(),
                     "category": episode.category} if episode else None,
            "span": {"start": iso(min(times)) if times else None, "end": iso(max([*times, moment]))},
            "events": events, "obligations": bars,
        }
