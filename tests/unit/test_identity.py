"""Resident ID numbers (GB 11643) and region codes (GB/T 2260)."""

from __future__ import annotations

import uuid

import pytest

from domain.envelope import parse_event
from domain.errors import RejectionCode
from domain.identity import (
    PERSON_NAMESPACE,
    id_check_char,
    id_number_problem,
    normalise_id_number,
    person_stream_id,
    region_problem,
)

from .factories import envelope, rejection


def reference_check_char(first17: str) -> str:
    """GB 11643 written independently: weight of position i is 2^(17-i) mod 11, check = (12 - sum mod 11) mod 11."""
    total = sum(int(digit) * (2 ** (17 - i) % 11) for i, digit in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


@pytest.mark.parametrize(
    ("first17", "check"),
    [
        ("11010519491231002", "X"),  # the common textbook example
        ("44052418800101001", "4"),  # the example of the GB 11643-1999 standard itself
        ("52022219800101123", "6"),
        ("63280119900215004", "6"),
        ("32010619851120231", "2"),
        ("51010719770707777", "6"),
        ("52022220240229001", "X"),
    ],
)
def test_check_char_of_known_numbers(first17, check):
    assert id_check_char(first17) == check
    assert reference_check_char(first17) == check


@pytest.mark.parametrize("n", range(0, 1000, 37))
def test_check_char_agrees_with_reference(n):
    first17 = f"52022219800101{n:03d}"
    assert id_check_char(first17) == reference_check_char(first17)


@pytest.mark.parametrize(
    "id_number",
    [
        "11010519491231002X",
        "520222198001011236",
        "632801199002150046",
        "320106198511202312",
        "52022220240229001X",  # 29 February of a leap year
    ],
)
def test_valid_numbers(id_number):
    assert id_number_problem(id_number) is None


def test_lower_case_x_is_valid_and_normalised():
    assert id_number_problem("11010519491231002x") is None
    assert normalise_id_number("11010519491231002x") == "11010519491231002X"
    assert normalise_id_number("520222198001011236") == "520222198001011236"


def test_lower_case_x_is_normalised_in_a_parsed_envelope():
    parsed = parse_event(envelope(id_number="11010519491231002x"))
    assert parsed.envelope.person.id_number == "11010519491231002X"


@pytest.mark.parametrize(
    ("id_number", "problem"),
    [
        ("520222198001011235", "check digit"),  # 6 expected
        ("520222198001011230", "check digit"),
        ("11010519491231002" + "1", "check digit"),  # X expected
        ("52022219800101123X", "check digit"),
        ("52022219800101123", "18 characters"),
        ("5202221980010112366", "18 characters"),
        ("", "18 characters"),
        ("52022219800101123Y", "digit or X"),
        ("5202221980A1011236", "digits"),
        ("52022219800101 236", "digits"),
        ("５２０２２２198001011236", "digits"),  # full-width digits
        ("-52022219800101123", "digits"),
    ],
)
def test_invalid_numbers(id_number, problem):
    found = id_number_problem(id_number)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize(
    "first17",
    [
        "52022219801301001",  # month 13
        "52022219800230001",  # 30 February
        "52022220230229001",  # 29 February of a common year
        "52022219800100001",  # day 00
        "52022219800001001",  # month 00
    ],
)
def test_invalid_birth_date(first17):
    # The check digit is right, so only the date can be wrong.
    found = id_number_problem(first17 + id_check_char(first17))
    assert found is not None and "birth date" in found


@pytest.mark.parametrize("province", ["00", "10", "19", "99", "80", "72"])
def test_unknown_province(province):
    first17 = province + "0222198001011230"[:15]
    found = id_number_problem(first17 + id_check_char(first17))
    assert found is not None and "province" in found


def test_bad_id_number_in_envelope_is_invalid_envelope():
    assert rejection(envelope(id_number="520222198001011235")).code == RejectionCode.INVALID_ENVELOPE


def test_person_stream_id_is_stable():
    # Stored streams are keyed by this id: it must never change.
    assert person_stream_id("11010519491231002X") == uuid.UUID("545d5b42-5930-50dd-adc3-b5a75ce6d754")
    assert person_stream_id("520222198001011236") == uuid.uuid5(PERSON_NAMESPACE, "520222198001011236")
    assert person_stream_id("520222198001011236") == person_stream_id("520222198001011236")


def test_person_stream_id_ignores_case_of_x():
    assert person_stream_id("11010519491231002x") == person_stream_id("11010519491231002X")


def test_person_stream_ids_differ_between_people():
    assert person_stream_id("520222198001011236") != person_stream_id("11010519491231002X")


@pytest.mark.parametrize("region", ["632801", "520222", "110000", "110105", "820000"])
def test_valid_regions(region):
    assert region_problem(region) is None


@pytest.mark.parametrize(
    "region",
    ["12345", "1234567", "", "52022a", "99xxxx", "520 22", "５２０２２２", "990000", "000000", "720000"],
)
def test_invalid_regions(region):
    assert region_problem(region) is not None


def test_every_id_number_problem_is_chinese_then_english():
    from domain.identity import id_number_problem

    for value in ("520222800101123", "52022219800101123", "5202221980010112X3", "99022219800101123X",
                  "520222198013011234"):
        chinese, _, english = id_number_problem(value).partition(" / ")
        assert chinese and english and english.isascii(), value
