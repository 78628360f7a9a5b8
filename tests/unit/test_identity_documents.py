"""Identity documents (issue #19): every document type valid and invalid, the 15-digit conversion, the person key,
name normalisation, and version-1 envelopes ingesting unchanged."""

from __future__ import annotations

import datetime as dt

import pytest

from domain.envelope import parse_event
from domain.errors import RejectionCode
from domain.identity import (IdType, birth_date_of, country, id_check_char, legacy15_to_18, normalised_name,
                             person_stream_id, typed_person_key)
from domain.upcasting import upcast_envelope
from tests.unit.factories import envelope, rejection

RESIDENT = "520222198001011236"


def fpr_2023(province: str = "31", nationality: str = "840", birth: str = "19900101", serial: str = "002") -> str:
    first17 = f"9{province}{nationality}{birth}{serial}"
    return first17 + id_check_char(first17)


def person(id_type: str | None, id_number: str, **more) -> dict:
    return {**({"id_type": id_type} if id_type else {}), "id_number": id_number, "name": "张三", **more}


def v2(person_: dict, **changes) -> dict:
    return envelope(schema_version=2, person=person_, **changes)


VALID = [
    (person("resident", RESIDENT), RESIDENT),
    (person("resident", "11010519491231002x"), "11010519491231002X"),  # lower-case check character
    (person("resident", "810000199001010019"), "810000199001010019"),  # 港澳居民居住证: a GB 11643 number
    (person("resident_legacy15", "520222800101123"), RESIDENT),
    (person("foreign_permanent_resident", fpr_2023()), fpr_2023()),
    (person("foreign_permanent_resident", "USA310850101001"), "USA310850101001"),  # 2017 card
    (person("foreign_permanent_resident", fpr_2023(), nationality="USA"), fpr_2023()),
    (person("passport", "E12345678", nationality="USA"), "passport:USA:E12345678"),
    (person("passport", "m 1234 5678", nationality="kor", birth_date="1985-06-01"), "passport:KOR:M12345678"),
    (person("hk_macau_permit", "H12345678"), "hk_macau_permit:H12345678"),
    (person("hk_macau_permit", "M1234567890"), "hk_macau_permit:M1234567890"),
    (person("taiwan_permit", "12345678"), "taiwan_permit:12345678"),
    (person("taiwan_permit", "1234567890B"), "taiwan_permit:1234567890B"),
]


@pytest.mark.parametrize(("person_", "key"), VALID, ids=lambda v: v["id_type"] if isinstance(v, dict) else None)
def test_every_document_type_is_accepted_by_its_format_and_keyed(person_, key):
    parsed = parse_event(v2(person_))
    assert parsed.person_key == key
    assert parsed.envelope.schema_version == 2
    # The key names the person everywhere a reader types it.
    assert typed_person_key(key) == (key, None)


INVALID = [
    (person("resident", "520222198001011235"), "校验码"),
    (person("resident", "520222800101123"), "resident_legacy15"),
    (person("resident_legacy15", "52022280010112"), "15 位"),
    (person("resident_legacy15", "520222801301123"), "出生日期"),  # month 13
    (person("resident_legacy15", "990222800101123"), "省级代码"),
    (person("foreign_permanent_resident", fpr_2023()[:-1] + ("0" if fpr_2023()[-1] != "0" else "1")), "校验码"),
    (person("foreign_permanent_resident", fpr_2023(nationality="999")), "国籍代码"),
    (person("foreign_permanent_resident", "820000199001010013"), "以 9 开头"),
    (person("foreign_permanent_resident", "XXX310850101001"), "ISO 3166"),
    (person("passport", "E12345678"), "nationality"),
    (person("passport", "E12345678", nationality="XYZ"), "ISO 3166"),
    (person("passport", "E1-2345678", nationality="USA"), "5 至 20 位"),
    (person("hk_macau_permit", "K12345678"), "H 或 M"),
    (person("hk_macau_permit", "H1234567"), "H 或 M"),
    (person("taiwan_permit", "1234567"), "8 位数字"),
    (person("passport_of_mars", "E12345678"), "person.id_type"),
    (person("resident", RESIDENT, nationality="CHN"), "nationality"),
    (person("resident", RESIDENT, birth_date="1980-01-01"), "出生日期已含在证件号码中"),
]


@pytest.mark.parametrize(("person_", "says"), INVALID, ids=lambda v: v["id_type"] if isinstance(v, dict) else None)
def test_every_document_type_refuses_what_its_format_does_not_allow(person_, says):
    error = rejection(v2(person_))
    assert error.code == RejectionCode.INVALID_ENVELOPE
    assert says in error.reason and " / " in error.reason  # Chinese, then English


def test_the_15_digit_number_becomes_its_18_digit_number_and_the_original_is_kept():
    assert legacy15_to_18("520222800101123") == RESIDENT
    parsed = parse_event(v2(person("resident_legacy15", "520222800101123")))
    assert parsed.person_key == RESIDENT
    assert parsed.document["person"] == {"id_type": "resident_legacy15", "id_number": "520222800101123",
                                         "name": "张三"}
    # The same person as their 18-digit records: one stream.
    assert person_stream_id(parsed.person_key) == person_stream_id(RESIDENT)
    assert typed_person_key("520222800101123") == (RESIDENT, None)
    assert birth_date_of(IdType.RESIDENT_LEGACY15, "520222800101123") == dt.date(1980, 1, 1)


def test_keys_of_different_documents_never_share_a_stream():
    keys = [key for _, key in VALID]
    streams = {key: person_stream_id(key) for key in keys}
    assert len(set(streams.values())) == len(set(keys))
    # A passport's number is its country's: the same number of two countries is two persons.
    assert parse_event(v2(person("passport", "E12345678", nationality="USA"))).person_key != parse_event(
        v2(person("passport", "E12345678", nationality="CAN"))).person_key


def test_the_foreign_permanent_resident_card_carries_its_birth_date():
    assert birth_date_of(IdType.FOREIGN_PERMANENT_RESIDENT, fpr_2023(birth="19770312")) == dt.date(1977, 3, 12)
    assert birth_date_of(IdType.PASSPORT, "E12345678") is None


def test_nationality_codes_have_chinese_names():
    assert country("KOR") == ("大韩民国", "Korea, Republic of")
    assert country("XYZ") is None


@pytest.mark.parametrize("written", ["阿依古丽·买买提", "阿依古丽•买买提", "阿依古丽・买买提", "阿依古丽 · 买买提",
                                     "阿依古丽‧买买提", "阿依古丽.买买提"])
def test_names_of_several_parts_compare_equal_however_the_dot_is_typed(written):
    assert normalised_name(written) == normalised_name("阿依古丽·买买提")


def test_full_width_letters_and_spaces_do_not_make_another_name():
    assert normalised_name("ＪＯＨＮ　Ｓｍｉｔｈ") == normalised_name("John Smith") == "JOHNSMITH"
    assert normalised_name("张三") != normalised_name("张 四")


def test_names_are_kept_as_published():
    parsed = parse_event(v2(person("resident", RESIDENT) | {"name": "阿依古丽•买买提"}))
    assert parsed.document["person"]["name"] == "阿依古丽•买买提"


def test_a_version_1_envelope_ingests_unchanged():
    old = envelope(schema_version=1)
    parsed_old = parse_event(old)
    for new in ({**old, "schema_version": 2},
                {**old, "schema_version": 2, "person": {**old["person"], "id_type": "resident"}}):
        parsed_new = parse_event(new)
        # The same event: the same content hash (a resend is a duplicate, not a conflict), the same stored person.
        assert parsed_new.content_hash == parsed_old.content_hash
        assert parsed_new.document == parsed_old.document
    assert parsed_old.document["person"] == old["person"]
    assert parsed_old.person_key == old["person"]["id_number"]


def test_the_envelope_upcaster_lifts_version_1_to_version_2():
    old = envelope(schema_version=1)
    lifted = upcast_envelope(old)
    assert lifted["schema_version"] == 2 and lifted["person"]["id_type"] == "resident"
    assert lifted["payload"] == old["payload"]
    assert upcast_envelope(lifted) is lifted
    # Given as a dict (the slow path lifts it first) or as bytes (validated at once): the same event.
    import json
    assert parse_event(old).content_hash == parse_event(json.dumps(old, ensure_ascii=False).encode()).content_hash


def test_a_version_1_envelope_cannot_name_another_document():
    old = envelope(schema_version=1, person=person("passport", "E12345678", nationality="USA"))
    error = rejection(old)
    assert error.code == RejectionCode.INVALID_ENVELOPE and "schema_version 2" in error.reason
