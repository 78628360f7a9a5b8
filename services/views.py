"""How gaps, statuses and obligations are shown: the JSON shapes of the CLI and the API."""

from __future__ import annotations

import datetime as dt
from typing import Any

from domain.supervision import Obligation, PersonView, iso


def gap_record(view: PersonView, obligation: Obligation, as_of: dt.datetime) -> dict[str, Any]:
    return {
        "rule": obligation.rule,
        "state": obligation.state(as_of),
        "id_number": view.id_number,
        "name": view.name,
        "region": view.region,
        "obligated": {"kind": obligation.obligated_kind, "id": obligation.obligated_id,
                      "region": obligation.obligated_region},
        "triggered_by": obligation.triggered_by,
        "due_at": iso(obligation.due_at),
        # The due time depends on a year whose 调休 notice is not published: counted from the statute, it may move.
        "provisional": obligation.provisional,
        "fulfilled_at": iso(obligation.fulfilled_at) if obligation.state(as_of) == "late" else None,
        "rule_set": view.rule_set,
        "reason": obligation.reason,  # A10: whose jurisdiction the act was outside of, and the legal basis
    }


def status_record(view: PersonView, as_of: dt.datetime) -> dict[str, Any]:
    episode = view.episode
    return {
        "id_number": view.id_number,
        "name": view.name,
        "as_of": iso(as_of),
        "known_at": iso(view.known_at),
        "status": view.status,
        "responsible": view.responsible,
        "episode": {
            "category": episode.category, "term_start": episode.term_start.isoformat(),
            "term_end": episode.term_end.isoformat(), "execution_region": episode.execution_region,
            "current_region": episode.current_region, "ended": episode.ended, "ended_at": iso(episode.ended_at),
            "decided_by": {"kind": episode.decision_kind, "id": episode.decision_id,
                           "region": episode.decision_region},
            "document_no": episode.document_no,
        } if episode else None,
        "open_obligations": [
            {"rule": o.rule, "due_at": iso(o.due_at), "provisional": o.provisional, "state": o.state(as_of),
             "triggered_by": o.triggered_by,
             "obligated": {"kind": o.obligated_kind, "id": o.obligated_id, "region": o.obligated_region}}
            for o in view.obligations if o.state(as_of) in ("upcoming", "open", "pending")
        ],
        "gaps": [gap_record(view, o, as_of) for o in view.gaps(as_of)],
        "lost_supervision_days": int(view.lost_days(as_of)),  # whole days, as they are reported
        "rule_set": view.rule_set,
        # The person keys linked into this person (identity_linked), theirs included; [] when there is one key.
        "linked_keys": list(view.keys),
    }
