"""The event catalog and the envelope parser: what is accepted, what is refused and with which code."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from domain import upcasting
from domain.catalog import CATALOG
from domain.envelope import MAX_ENVELOPE_BYTES, parse_event
from domain.errors import Rejected, RejectionCode

from .factories import AGENCIES, CATALOG_TYPES, VALID_PAYLOADS, envelope, payload, rejection

# Payload fields of every event type, by what they hold (domain.md's "payload" column). Types not listed have an
# empty payload.
FIELDS: dict[str, dict[str, str]] = {
    "assessment_requested": {"bureau_region": "region", "expedited": "bool"},
    "assessment_reported": {"opinion": "enum"},
    "decision_effective": {
        "category": "enum",
        "term_start": "date",
        "term_end": "date",
        "execution_region": "region",
        "document_no": "text",
        "in_custody": "bool",
    },
    "bureau_notified": {"execution_region": "region"},
    "documents_delivered": {"execution_region": "region", "copied_to": "kinds"},
    "prisoner_released": {"to_region": "region"},
    "subject_transferred": {"to_region": "region"},
    "subject_reported": {"region": "region"},
    "subject_enrolled": {"region": "region"},
    "warning_issued": {"reason": "text"},
    "detention_started": {"detention_kind": "enum"},
    "revocation_proposed": {"arrest_requested": "bool"},
    "commitment_proposed": {"to_kind": "enum"},
    "arrest_decided": {"arrest": "bool"},
    "revocation_ruled": {"revoked": "bool"},
    "commitment_decided": {"commit": "bool"},
    "committed_to_custody": {"facility": "text"},
    "transfer_decided": {"new_region": "region"},
    "transfer_file_sent": {"new_region": "region"},
    "term_changed": {"new_term_end": "date", "reason": "text"},
    "discharged": {"certificate_no": "text"},
    "death_recorded": {"date_of_death": "date"},
    "procuratorial_notice_issued": {
        "notice_kind": "enum",
        "addressed_to": "agency_ref",
        "reply_within_days": "days",
        "finding": "text",
    },
    "notice_replied": {"notice_event_id": "uuid", "adopted": "bool", "explanation": "text"},
    "supervision_review_recorded": {"outcome": "enum", "finding": "text"},
    "event_retracted": {"retracted_event_id": "uuid", "reason": "text"},
    "roster_discrepancy_found": {"rule": "enum", "direction": "enum", "roster_id": "uuid", "region": "region",
                                 "row": "object", "evidence": "object", "finding": "text"},
    "identity_linked": {"other": "document", "reason": "text"},
    "identity_unlinked": {"other": "document", "reason": "text"},
}
EMPTY_TYPES = [event_type for event_type in CATALOG_TYPES if event_type not in FIELDS]

OPTIONAL_FIELDS = {("procuratorial_notice_issued", "reply_within_days"), ("roster_discrepancy_found", "region"),
                   ("roster_discrepancy_found", "row"), ("roster_discrepancy_found", "evidence")}  # absent: the rule set's default applies

BAD_VALUES: dict[str, list] = {
    "region": ["12345", "1234567", "99xxxx", "990000", "", 520222, None],
    "date": ["2024-02-30", "2023-02-29", "2024-13-01", "2024-03-01T00:00:00", "2024/03/01", "", 20240301, 1709251200, None],
    "bool": ["true", "false", "yes", 1, 0, None],
    "text": [42, "", ["x"], None],
    "uuid": ["not-a-uuid", "", 12345, None],
    "object": ["row 3", 3, ["x"], True],
    "document": ["520222198001011236", {"id_number": "520222198001011235"}, {"id_type": "passport",
                 "id_number": "E12345678"}, {"id_number": "520222198001011236", "name": "张三"}, None],
    "days": ["30", 30.5, True, 0, 367],
    "kinds": ["procuratorate", ["judge"], [1], "", {"kind": "police"}],
    "agency_ref": [
        "bureau",
        {"kind": "judge", "id": "X-1"},
        {"kind": "bureau"},
        {"id": "SFJ-520222-01"},
        {"kind": "bureau", "id": ""},
        {"kind": "bureau", "id": "SFJ-520222-01", "region": "520222"},
    ],
}
BAD_ENUMS: dict[tuple[str, str], list] = {
    ("assessment_reported", "opinion"): ["Suitable", "maybe", "", True, None],
    ("decision_effective", "category"): ["Probation", "community_service", "suspended", "", 1, None],
    ("detention_started", "detention_kind"): ["Administrative", "house_arrest", "", 0, None],
    ("commitment_proposed", "to_kind"): ["bureau", "procuratorate", "Court", "", None],
    ("procuratorial_notice_issued", "notice_kind"): ["warning", "Correction", "", None],
    ("supervision_review_recorded", "outcome"): ["ok", "Compliant", "", False, None],
    ("roster_discrepancy_found", "rule"): ["A01_no_decision_on_record", "A05", "", None],
    ("roster_discrepancy_found", "direction"): ["both", "", None],
}


def _invalid_cases():
    for event_type, fields in FIELDS.items():
        for field, kind in fields.items():
            values = BAD_ENUMS[(event_type, field)] if kind == "enum" else BAD_VALUES[kind]
            for value in values:
                if value is None and (event_type, field) in OPTIONAL_FIELDS:
                    continue  # null means absent for an optional field
                yield pytest.param(event_type, field, value, id=f"{event_type}.{field}={value!r}")


def _missing_cases():
    for event_type, fields in FIELDS.items():
        for field in fields:
            if (event_type, field) not in OPTIONAL_FIELDS:
                yield pytest.param(event_type, field, id=f"{event_type}-{field}")


# --- the catalog -----------------------------------------------------------------------------------------------


def test_catalog_holds_exactly_the_types_of_domain_md():
    # domain.md's 36 with identity_linked / identity_unlinked as two, and roster_discrepancy_found
    assert len(CATALOG_TYPES) == len(set(CATALOG_TYPES)) == 39
    assert sorted(CATALOG) == sorted(CATALOG_TYPES)


def test_valid_payloads_cover_every_catalog_type():
    assert set(VALID_PAYLOADS) == set(CATALOG)


def test_field_table_matches_valid_payloads():
    for event_type in CATALOG_TYPES:
        assert set(VALID_PAYLOADS[event_type]) == set(FIELDS.get(event_type, {})), event_type


@pytest.mark.parametrize("event_type", CATALOG_TYPES)
def test_valid_payload_is_accepted(event_type):
    parsed = parse_event(envelope(event_type))
    assert parsed.event_type == event_type
    assert parsed.envelope.payload == VALID_PAYLOADS[event_type]
    assert type(parsed.payload) is CATALOG[event_type].payload


@pytest.mark.parametrize("event_type", CATALOG_TYPES)
def test_valid_envelope_is_accepted_as_bytes(event_type):
    raw = json.dumps(envelope(event_type), ensure_ascii=False).encode("utf-8")
    assert parse_event(raw).event_type == event_type


@pytest.mark.parametrize("category", ["control", "probation", "parole", "temporary_release"])
def test_every_category_is_accepted(category):
    parsed = parse_event(envelope("decision_effective", payload("decision_effective", category=category)))
    assert parsed.payload.category == category


def test_reply_within_days_is_optional():
    body = payload("procuratorial_notice_issued")
    del body["reply_within_days"]
    assert parse_event(envelope("procuratorial_notice_issued", body)).payload.reply_within_days is None


def test_term_of_one_day_is_accepted():
    body = payload("decision_effective", term_start="2024-03-01", term_end="2024-03-01")
    parse_event(envelope("decision_effective", body))


# --- invalid payloads ------------------------------------------------------------------------------------------


def assert_invalid_payload(event_type, body):
    error = rejection(envelope(event_type, body))
    assert error.code == RejectionCode.INVALID_PAYLOAD, error.reason
    return error


@pytest.mark.parametrize(("event_type", "field", "value"), [
    ("decision_effective", "term_end", "9999-12-31"),  # "indefinite"
    ("decision_effective", "term_start", "0001-01-01"),  # "unknown"
    ("decision_effective", "term_end", "2101-01-01"),  # past the holiday calendar's lunar tables
    ("term_changed", "new_term_end", "9999-12-31"),
    ("death_recorded", "date_of_death", "1900-01-01"),
])
def test_implausible_dates_are_refused_with_a_chinese_reason(event_type, field, value):
    body = payload(event_type, **{field: value})
    if field == "term_start":
        body["term_end"] = "2024-03-01"
    error = assert_invalid_payload(event_type, body)
    assert "超出合理范围" in error.reason and value in error.reason


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "1970-01-01T00:00:00Z"])
def test_implausible_occurred_at_is_refused(moment):
    raw = envelope()
    raw["occurred_at"] = moment
    error = rejection(raw)
    assert error.code == RejectionCode.INVALID_ENVELOPE and "超出合理范围" in error.reason


@pytest.mark.parametrize("name", ["   ", "张\x00三", "\u202e三张", "张三\u2066", "李\x1b[31m四"])
def test_blank_names_and_invisible_control_characters_are_refused(name):
    raw = envelope()
    raw["person"]["name"] = name
    error = rejection(raw)
    assert error.code == RejectionCode.INVALID_ENVELOPE
    assert "空白" in error.reason or "控制字符" in error.reason


def test_a_nul_in_an_agency_id_is_refused_before_it_reaches_the_store():
    raw = envelope()
    raw["agency"]["id"] = "SFJ\x00-520222"
    assert "U+0000" in rejection(raw).reason


def test_free_text_keeps_its_line_breaks_but_not_other_controls():
    parse_event(envelope("warning_issued", payload("warning_issued", reason="第一行\n第二行\t备注")))
    assert_invalid_payload("warning_issued", payload("warning_issued", reason="原因\x07"))


def test_names_with_a_middle_dot_are_accepted():
    raw = envelope()
    raw["person"]["name"] = "阿依古丽·买买提"
    parse_event(raw)


def test_the_plausible_range_includes_its_ends():
    body = payload("decision_effective", term_start="1979-01-01", term_end="2100-12-31")
    parse_event(envelope("decision_effective", body))


@pytest.mark.parametrize(("event_type", "field"), list(_missing_cases()))
def test_missing_field_is_refused(event_type, field):
    body = payload(event_type)
    del body[field]
    error = assert_invalid_payload(event_type, body)
    assert field in error.reason


@pytest.mark.parametrize("event_type", CATALOG_TYPES)
def test_unknown_payload_field_is_refused(event_type):
    error = assert_invalid_payload(event_type, payload(event_type, remark="多余字段"))
    assert "remark" in error.reason


@pytest.mark.parametrize("event_type", EMPTY_TYPES)
def test_empty_payload_types_refuse_any_field(event_type):
    assert VALID_PAYLOADS[event_type] == {}
    assert_invalid_payload(event_type, {"reason": "x"})


@pytest.mark.parametrize(("event_type", "field", "value"), list(_invalid_cases()))
def test_bad_value_is_refused(event_type, field, value):
    error = assert_invalid_payload(event_type, payload(event_type, **{field: value}))
    assert f"payload.{field}" in error.reason


@pytest.mark.parametrize(
    ("event_type", "field", "limit"),
    [
        ("warning_issued", "reason", 4000),
        ("discharged", "certificate_no", 200),
        ("decision_effective", "document_no", 200),
        ("committed_to_custody", "facility", 200),
    ],
)
def test_over_long_text_is_refused(event_type, field, limit):
    parse_event(envelope(event_type, payload(event_type, **{field: "字" * limit})))
    assert_invalid_payload(event_type, payload(event_type, **{field: "字" * (limit + 1)}))


def test_payload_must_be_an_object():
    for body in (None, [], "warning", 1):
        error = rejection({**envelope(), "payload": body})
        assert error.code == RejectionCode.INVALID_ENVELOPE


def test_term_end_before_term_start_is_refused():
    body = payload("decision_effective", term_start="2024-03-01", term_end="2024-02-29")
    error = assert_invalid_payload("decision_effective", body)
    assert "term_end" in error.reason


@pytest.mark.parametrize("category", ["deprivation_of_political_rights", "剥夺政治权利"])
def test_deprivation_of_political_rights_is_refused_with_a_clear_reason(category):
    error = assert_invalid_payload("decision_effective", payload("decision_effective", category=category))
    assert "剥夺政治权利" in error.reason
    assert "not community correction" in error.reason


def test_unknown_category_reason_lists_the_four():
    error = assert_invalid_payload("decision_effective", payload("decision_effective", category="fine"))
    for category in ("control", "probation", "parole", "temporary_release"):
        assert category in error.reason


# --- invalid envelopes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["event_id", "event_type", "schema_version", "agency", "person", "occurred_at", "payload"]
)
def test_missing_envelope_field_is_refused(field):
    document = envelope()
    del document[field]
    error = rejection(document)
    assert error.code == RejectionCode.INVALID_ENVELOPE
    assert field in error.reason


def test_case_ref_is_optional():
    document = envelope()
    del document["case_ref"]
    assert parse_event(document).envelope.case_ref is None


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"unexpected": 1}, "unexpected"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_id": 12345}, "event_id"),
        ({"occurred_at": "2024-03-01T10:00:00"}, "occurred_at"),  # naive: no offset
        ({"occurred_at": "2024-03-01"}, "occurred_at"),
        ({"occurred_at": 1709258400}, "occurred_at"),
        ({"occurred_at": "2024-13-01T10:00:00+08:00"}, "occurred_at"),
        ({"schema_version": "1"}, "schema_version"),
        ({"schema_version": 1.5}, "schema_version"),
        ({"schema_version": True}, "schema_version"),
        ({"event_type": 7}, "event_type"),
        ({"case_ref": ""}, "case_ref"),
        ({"agency": {**AGENCIES["bureau"], "kind": "Bureau"}}, "agency.kind"),
        ({"agency": {**AGENCIES["bureau"], "kind": "oversight"}}, "agency.kind"),
        ({"agency": {**AGENCIES["bureau"], "region": "52022"}}, "agency.region"),
        ({"agency": {**AGENCIES["bureau"], "region": "99xxxx"}}, "agency.region"),
        ({"agency": {**AGENCIES["bureau"], "id": ""}}, "agency.id"),
        ({"agency": {**AGENCIES["bureau"], "name": "司法局"}}, "agency.name"),
        ({"agency": {"kind": "bureau", "id": "SFJ-1"}}, "agency.region"),
        ({"person": {"id_number": "520222198001011235", "name": "张三"}}, "person.id_number"),  # check digit
        ({"person": {"id_number": 520222198001011236, "name": "张三"}}, "person.id_number"),
        ({"person": {"id_number": "520222198001011236", "name": ""}}, "person.name"),
        ({"person": {"id_number": "520222198001011236"}}, "person.name"),
        ({"person": {"id_number": "520222198001011236", "name": "张三", "gender": "m"}}, "person.gender"),
        ({"recorded_at": "2024-03-02T10:00:00"}, "recorded_at"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_invalid_envelope(changes, where):
    error = rejection({**envelope(), **changes}, allow_recorded_at=True)
    assert error.code == RejectionCode.INVALID_ENVELOPE
    assert where in error.reason


def test_schema_version_zero_is_refused():
    # Every event type starts at version 1, so 0 is refused by the envelope itself (not by the upcaster).
    error = rejection(envelope(schema_version=0))
    assert error.code == RejectionCode.INVALID_ENVELOPE
    assert "schema_version" in error.reason


def test_future_schema_version_is_unsupported():
    error = rejection(envelope(schema_version=3))
    assert error.code == RejectionCode.UNSUPPORTED_SCHEMA_VERSION


@pytest.mark.parametrize("event_type", ["sentence_commuted", "Decision_Effective", "", "decision_effective "])
def test_unknown_event_type(event_type):
    assert rejection({**envelope(), "event_type": event_type}).code == RejectionCode.UNKNOWN_EVENT_TYPE


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"\xff\xfe\x00",
        b'{"a": "\xff"}',  # not UTF-8
        b"[]",
        json.dumps([envelope(event_id="7d0c6a1e-2a4f-4a53-9a43-3c1f0b9e8f11")]).encode(),
        b'"envelope"',
        b"42",
        b"null",
        "[1, 2]",
        b"[" * 5000 + b"]" * 5000,
        None,
        42,
        ["x"],
    ],
    ids=lambda raw: repr(raw)[:40],
)
def test_malformed_input(raw):
    assert rejection(raw).code == RejectionCode.MALFORMED


def test_over_size_input_is_malformed():
    raw = json.dumps(envelope(payload={"reason": "x" * MAX_ENVELOPE_BYTES})).encode()
    error = rejection(raw)
    assert error.code == RejectionCode.MALFORMED
    assert str(MAX_ENVELOPE_BYTES) in error.reason


def test_input_just_under_the_limit_is_read():
    document = envelope(payload={"reason": ""})
    room = MAX_ENVELOPE_BYTES - len(json.dumps(document).encode())
    document["payload"]["reason"] = "x" * min(room, 4000)
    assert parse_event(json.dumps(document).encode()).event_type == "warning_issued"


def test_utf16_input_is_malformed():
    raw = json.dumps(envelope(), ensure_ascii=False).encode("utf-16")
    assert rejection(raw).code == RejectionCode.MALFORMED


@pytest.mark.parametrize("occurred_at", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00"])
def test_extreme_occurred_at_is_rejected_not_crashing(occurred_at):
    # parse_event promises to raise nothing but Rejected; content_hash's astimezone(utc) overflows here.
    with pytest.raises(Rejected):
        parse_event(envelope(occurred_at=occurred_at))


def test_recorded_at_is_refused_unless_allowed():
    document = envelope(recorded_at="2024-03-02T09:00:00+08:00")
    assert rejection(document).code == RejectionCode.RECORDED_AT_NOT_ALLOWED
    parsed = parse_event(document, allow_recorded_at=True)
    assert parsed.envelope.recorded_at.isoformat() == "2024-03-02T09:00:00+08:00"


def test_recorded_at_null_is_the_same_as_absent():
    assert parse_event(envelope(recorded_at=None)).envelope.recorded_at is None


# --- content hash ----------------------------------------------------------------------------------------------


def test_dict_bytes_and_text_give_the_same_content_hash():
    document = envelope("decision_effective")
    text = json.dumps(document, ensure_ascii=False)
    hashes = {
        parse_event(document).content_hash,
        parse_event(text).content_hash,
        parse_event(text.encode("utf-8")).content_hash,
        parse_event(json.dumps(document, ensure_ascii=True, indent=2).encode()).content_hash,
    }
    assert len(hashes) == 1


def test_key_order_does_not_change_the_content_hash():
    document = envelope("procuratorial_notice_issued")
    reordered = dict(reversed(list(document.items())))
    reordered["payload"] = dict(reversed(list(document["payload"].items())))
    assert parse_event(document).content_hash == parse_event(reordered).content_hash


@pytest.mark.parametrize(
    "same_instant", ["2024-03-01T02:00:00Z", "2024-03-01T02:00:00+00:00", "2024-02-29T21:00:00-05:00"]
)
def test_same_instant_in_another_offset_gives_the_same_content_hash(same_instant):
    document = envelope(occurred_at="2024-03-01T10:00:00+08:00")
    other = {**document, "occurred_at": same_instant}
    assert parse_event(document).content_hash == parse_event(other).content_hash


def test_event_id_spelling_does_not_change_the_content_hash():
    document = envelope()
    other = {**document, "event_id": document["event_id"].upper()}
    assert parse_event(document).content_hash == parse_event(other).content_hash


def test_recorded_at_is_not_part_of_the_content_hash():
    document = envelope()
    imported = {**document, "recorded_at": "2024-03-05T00:00:00+08:00"}
    assert parse_event(document).content_hash == parse_event(imported, allow_recorded_at=True).content_hash


@pytest.mark.parametrize(
    "changes",
    [
        {"payload": {"reason": "另一个理由"}},
        {"occurred_at": "2024-03-01T10:00:01+08:00"},
        {"occurred_at": "2024-03-01T10:00:00+09:00"},  # same wall-clock time, other instant
        {"case_ref": "(2024)黔0222刑初124号"},
        {"agency": {**AGENCIES["bureau"], "id": "SFJ-520222-02"}},
        {"person": {"id_number": "11010519491231002X", "name": "张三"}},
        {"person": {"id_number": "520222198001011236", "name": "李四"}},
    ],
)
def test_changed_content_gives_a_different_content_hash(changes):
    document = envelope()
    assert parse_event(document).content_hash != parse_event({**document, **changes}).content_hash


def test_changed_event_id_gives_a_different_content_hash():
    document = envelope()
    other = {**document, "event_id": str(uuid.uuid4())}
    assert parse_event(document).content_hash != parse_event(other).content_hash


# --- upcasting -------------------------------------------------------------------------------------------------


@pytest.fixture
def warning_v3(monkeypatch):
    """A hypothetical version 3 of warning_issued: v1 and v2 call the field `text`, v3 calls it `reason` (version 2
    changed the envelope only, so a v1 payload is lifted twice)."""

    def v2_to_v3(body):
        return {("reason" if key == "text" else key): value for key, value in body.items()}

    monkeypatch.setitem(upcasting.CURRENT_SCHEMA_VERSION, "warning_issued", 3)
    monkeypatch.setitem(upcasting.UPCASTERS, ("warning_issued", 2), v2_to_v3)
    return v2_to_v3


def test_old_payloads_are_upcast_and_validated(warning_v3):
    for version in (1, 2):
        parsed = parse_event(envelope(schema_version=version, payload={"text": "未按规定报告"}))
        assert parsed.payload.reason == "未按规定报告"
        assert parsed.envelope.payload == {"reason": "未按规定报告"}


def test_current_version_payload_is_not_upcast(warning_v3):
    parsed = parse_event(envelope(schema_version=3, payload={"reason": "未按规定报告"}))
    assert parsed.payload.reason == "未按规定报告"


def test_v3_shape_sent_as_v3_and_v2_shape_sent_as_v2_are_the_same_event(warning_v3):
    document = envelope(schema_version=3, payload={"reason": "未按规定报告"})
    old = {**document, "schema_version": 2, "payload": {"text": "未按规定报告"}}
    assert parse_event(document).content_hash == parse_event(old).content_hash


def test_upcast_payload_is_validated_against_the_current_model(warning_v3):
    error = rejection(envelope(schema_version=2, payload={"text": ""}))
    assert error.code == RejectionCode.INVALID_PAYLOAD
    error = rejection(envelope(schema_version=3, payload={"text": "旧字段"}))
    assert error.code == RejectionCode.INVALID_PAYLOAD


def test_version_newer_than_current_is_unsupported(warning_v3):
    error = rejection(envelope(schema_version=4, payload={"reason": "x"}))
    assert error.code == RejectionCode.UNSUPPORTED_SCHEMA_VERSION


def test_missing_upcaster_on_the_path_is_unsupported(monkeypatch, warning_v3):
    monkeypatch.setitem(upcasting.CURRENT_SCHEMA_VERSION, "warning_issued", 4)  # no upcaster from 3 to 4
    for version in (1, 2, 3):
        error = rejection(envelope(schema_version=version, payload={"text": "x"}))
        assert error.code == RejectionCode.UNSUPPORTED_SCHEMA_VERSION
        assert "no upcaster" in error.reason
    assert parse_event(envelope(schema_version=4, payload={"reason": "x"})).payload.reason == "x"


def test_other_types_are_not_affected_by_an_upcaster(warning_v3):
    assert rejection(envelope("discharged", schema_version=3)).code == RejectionCode.UNSUPPORTED_SCHEMA_VERSION


def test_upcast_event_carries_the_current_schema_version(warning_v3):
    # Stored events are always current (upcasting.py), so the stored schema_version must describe the stored payload.
    parsed = parse_event(envelope(schema_version=2, payload={"text": "未按规定报告"}))
    assert parsed.envelope.schema_version == 3


def test_upcaster_failure_is_a_rejection(monkeypatch):
    def v2_to_v3(body):
        body = dict(body)
        body["reason"] = body.pop("text")  # KeyError on a v1 payload without `text`
        return body

    monkeypatch.setitem(upcasting.CURRENT_SCHEMA_VERSION, "warning_issued", 3)
    monkeypatch.setitem(upcasting.UPCASTERS, ("warning_issued", 2), v2_to_v3)
    with pytest.raises(Rejected):
        parse_event(envelope(schema_version=2, payload={"reason": "x"}))


@pytest.mark.parametrize("text", [
    '{"event_type": "warning_issued", "event_type": "decision_effective"}',
    '{"payload": {"term_end": "2025-01-01", "term_end": "2099-01-01"}}',
    '{"event_id": "a", "event\\u005fid": "b"}',  # the same key spelled with an escape
])
def test_a_key_given_twice_is_refused_on_every_path_not_silently_overwritten(text):
    """Issue #14: duplicate JSON keys silently took the last value (Kafka and file paths as well as HTTP)."""
    base = json.dumps(envelope(), ensure_ascii=False)
    raw = base[:-1] + ", " + text[1:-1] + "}"
    for form in (raw, raw.encode()):
        error = rejection(form)
        assert error.code == RejectionCode.MALFORMED and "出现了两次" in error.reason


def test_a_key_in_two_different_objects_is_not_a_duplicate():
    parse_event(json.dumps(envelope("subject_enrolled", payload("subject_enrolled"), agency="bureau")).encode())


def test_the_plausible_range_is_configurable_within_its_bounds(monkeypatch):
    from domain import catalog

    monkeypatch.setattr(catalog, "_plausible", catalog.plausible_dates())
    catalog.configure_plausible_dates(dt.date(2000, 1, 1), dt.date(2080, 12, 31))
    body = payload("decision_effective", term_start="1999-12-31", term_end="2001-01-01")
    assert "2000-01-01" in rejection(envelope("decision_effective", body)).reason
    with pytest.raises(ValueError):
        catalog.configure_plausible_dates(dt.date(1900, 1, 1), dt.date(2080, 12, 31))


def test_a_bad_plausible_range_setting_is_a_configuration_error():
    from adapters.config import ConfigError, Settings
    from services.bootstrap import bootstrap

    for text in ("1990-01-01", "2100-01-01..1990-01-01"):
        with pytest.raises(ConfigError):
            bootstrap(Settings(database_url="sqlite:///:memory:", plausible_dates=text))


def test_pydantic_problems_are_worded_in_chinese_before_the_english():
    raw = envelope()
    raw["surprise"] = 1
    del raw["occurred_at"]
    reason = rejection(raw).reason
    assert "缺少必填字段 / Field required" in reason and "不允许的字段" in reason
