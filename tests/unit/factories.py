"""Builders of valid envelopes for the unit tests of `domain`.

Everything here is written from shared/docs/domain.md, not derived from `domain.catalog`, so that a test comparing
the two can fail.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from domain.identity import id_check_char


def valid_id_number(first17: str = "52022219800101123") -> str:
    """`first17` completed with its GB 11643 check character."""
    return first17 + id_check_char(first17)


ID_NUMBER = valid_id_number()  # 520222198001011236

AGENCY_KINDS = ("court", "procuratorate", "police", "prison", "bureau")

AGENCIES: dict[str, dict[str, str]] = {
    "court": {"kind": "court", "id": "FY-520222-01", "region": "520222"},
    "procuratorate": {"kind": "procuratorate", "id": "JCY-520222-01", "region": "520222"},
    "police": {"kind": "police", "id": "GA-520222-01", "region": "520222"},
    "prison": {"kind": "prison", "id": "JY-520200-01", "region": "520200"},
    "bureau": {"kind": "bureau", "id": "SFJ-520222-01", "region": "520222"},
}

# The event types of domain.md's "Event catalog" table (pursuit_started / fugitive_captured and the three
# monitoring_* types share rows there).
CATALOG_TYPES = [
    "assessment_requested",
    "assessment_reported",
    "decision_effective",
    "bureau_notified",
    "documents_delivered",
    "documents_receipted",
    "prisoner_released",
    "subject_transferred",
    "subject_reported",
    "subject_enrolled",
    "contact_lost",
    "police_assistance_requested",
    "contact_restored",
    "warning_issued",
    "detention_started",
    "detention_ended",
    "revocation_proposed",
    "commitment_proposed",
    "arrest_decided",
    "revocation_ruled",
    "commitment_decided",
    "committed_to_custody",
    "pursuit_started",
    "fugitive_captured",
    "transfer_decided",
    "transfer_file_sent",
    "term_changed",
    "monitoring_started",
    "monitoring_extended",
    "monitoring_ended",
    "discharged",
    "death_recorded",
    "procuratorial_notice_issued",
    "notice_replied",
    "supervision_review_recorded",
    "event_retracted",
    "identity_linked",
    "identity_unlinked",
    # The service's own: an agency's roster differs from the record (名单碰撞, A05–A07 of domain.md).
    "roster_discrepancy_found",
]

# One valid payload per event type of domain.md's event catalog.
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "assessment_requested": {"bureau_region": "520222", "expedited": False},
    "assessment_reported": {"opinion": "suitable"},
    "decision_effective": {
        "category": "probation",
        "term_start": "2024-03-01",
        "term_end": "2025-02-28",
        "execution_region": "520222",
        "document_no": "(2024)黔0222刑初123号",
        "in_custody": False,
    },
    "bureau_notified": {"execution_region": "520222"},
    "documents_delivered": {"execution_region": "520222", "copied_to": ["procuratorate", "police"]},
    "documents_receipted": {},
    "prisoner_released": {"to_region": "632801"},
    "subject_transferred": {"to_region": "632801"},
    "subject_reported": {"region": "520222"},
    "subject_enrolled": {"region": "520222"},
    "contact_lost": {},
    "police_assistance_requested": {},
    "contact_restored": {},
    "warning_issued": {"reason": "未按规定报告"},
    "detention_started": {"detention_kind": "administrative"},
    "detention_ended": {},
    "revocation_proposed": {"arrest_requested": True},
    "commitment_proposed": {"to_kind": "court"},
    "arrest_decided": {"arrest": True},
    "revocation_ruled": {"revoked": True},
    "commitment_decided": {"commit": True},
    "committed_to_custody": {"facility": "贵州省第一监狱"},
    "pursuit_started": {},
    "fugitive_captured": {},
    "transfer_decided": {"new_region": "632801"},
    "transfer_file_sent": {"new_region": "632801"},
    "term_changed": {"new_term_end": "2024-12-31", "reason": "减刑"},
    "monitoring_started": {},
    "monitoring_extended": {},
    "monitoring_ended": {},
    "discharged": {"certificate_no": "JJ-2025-0001"},
    "death_recorded": {"date_of_death": "2024-06-30"},
    "procuratorial_notice_issued": {
        "notice_kind": "correction",
        "addressed_to": {"kind": "bureau", "id": "SFJ-520222-01"},
        "reply_within_days": 30,
        "finding": "未按期报到未通知",
    },
    "notice_replied": {
        "notice_event_id": "3f1d2c4b-5a69-4788-9a0b-1c2d3e4f5a6b",
        "adopted": True,
        "explanation": "已纠正",
    },
    "supervision_review_recorded": {"outcome": "compliant", "finding": "依法监管"},
    "event_retracted": {"retracted_event_id": "9b2e7c1a-0d3f-4e5a-8b6c-7d8e9f0a1b2c", "reason": "录入错误"},
    "identity_linked": {"other": {"id_number": "11010519491231002X"}, "reason": "身份证号码录入错误"},
    "identity_unlinked": {"other": {"id_number": "11010519491231002X"}, "reason": "经核实不是同一人"},
    "roster_discrepancy_found": {"rule": "A05_unpublished_decision", "direction": "roster_only",
                                 "roster_id": "0b6f3f2e-8a3c-4f55-9d0e-2f8c1b7a6e51", "region": "520222",
                                 "row": {"row": 2, "id_number": "520222199001011234", "case_ref": "(2026)黔0222刑初1号"},
                                 "evidence": {"decisions_on_record": []}, "finding": "法院名单载有生效判决，本系统无记录"},
}


def payload(event_type: str, **changes: Any) -> dict[str, Any]:
    """A fresh copy of the valid payload of `event_type`, with some fields replaced."""
    return {**copy.deepcopy(VALID_PAYLOADS[event_type]), **changes}


def envelope(
    event_type: str = "warning_issued",
    payload: dict[str, Any] | None = None,
    *,
    agency: str | dict[str, str] = "bureau",
    id_number: str = ID_NUMBER,
    event_id: str | None = None,
    occurred_at: str = "2024-03-01T10:00:00+08:00",
    **fields: Any,
) -> dict[str, Any]:
    """A valid envelope dict (with `fields` added or replacing top-level fields)."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": 1,
        "agency": dict(AGENCIES[agency]) if isinstance(agency, str) else dict(agency),
        "person": {"id_number": id_number, "name": "张三"},
        "occurred_at": occurred_at,
        "case_ref": "(2024)黔0222刑初123号",
        "payload": copy.deepcopy(VALID_PAYLOADS[event_type]) if payload is None else payload,
        **fields,
    }


def rejection(raw: Any, **options: Any):
    """The Rejected that parse_event raises for `raw` (fails the test when it accepts it)."""
    import pytest

    from domain.envelope import parse_event
    from domain.errors import Rejected

    with pytest.raises(Rejected) as info:
        parse_event(raw, **options)
    return info.value
