"""Identifiers that join records across agencies: resident ID numbers and region codes."""

from __future__ import annotations

import datetime as dt
import functools
import unicodedata
import uuid

# GB 11643-1999: weights for the first 17 digits and the check character for each remainder mod 11.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"

# GB/T 2260 province-level prefixes (the first two digits of every region code).
PROVINCE_PREFIXES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82".split()
)

# Stable namespace for person stream ids: uuid5(PERSON_NAMESPACE, id_number). Never change it:
# every stored stream is keyed by it.
PERSON_NAMESPACE = uuid.UUID("5a0f6d64-2f43-5b8e-9a1c-6e8f1d3c7b21")


def id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits of a resident ID number."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _ID_WEIGHTS))
    return _ID_CHECK_CHARS[total % 11]


def id_number_refusal(problem: str) -> str:
    """The refusal of an ID number for `problem` (an `id_number_problem`), in Chinese then English."""
    chinese, _, english = problem.partition(" / ")
    return f"身份证号码无效：{chinese} / not a valid resident ID number (GB 11643): {english or chinese}"


def id_number_problem(value: str) -> str | None:
    """Why `value` is not a valid 18-character resident ID number ('中文 / English'), or None when it is."""
    if len(value) == 15 and value.isascii() and value.isdigit():
        return ("这是 1999 年以前的 15 位旧身份证号码，请换算为 18 位号码后再报送（出生年份补“19”并按 GB 11643 计算校验码） / "
                "a 15-digit ID number from before 1999: convert it to the 18-digit number (the year of birth gains "
                "'19', the check character follows GB 11643)")
    if len(value) != 18:
        return f"身份证号码应为 18 位，实为 {len(value)} 位 / must have 18 characters, has {len(value)}"
    return _problem_of_18_characters(value)


# A person's ID number arrives with every one of their events; checking it is a good part of parsing one. The
# cache holds only 18-character keys, so hostile input cannot make it large.
@functools.lru_cache(maxsize=65536)
def _problem_of_18_characters(value: str) -> str | None:
    if not value[:17].isascii() or not value[:17].isdigit():
        return "前 17 位应为数字 / the first 17 characters must be digits"
    check = value[17].upper()
    if not (check.isdigit() or check == "X"):
        return "第 18 位应为数字或 X / the 18th character must be a digit or X"
    if value[:2] not in PROVINCE_PREFIXES:
        return f"未知的省级代码 {value[:2]} / unknown province code {value[:2]}"
    try:
        birth = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return f"出生日期 {value[6:14]} 无效 / invalid birth date {value[6:14]}"
    if birth.year < 1900:
        return f"出生日期 {value[6:14]} 不合理 / implausible birth date {value[6:14]}"
    expected = id_check_char(value[:17])
    if check != expected:
        return f"校验码为 {check}，按 GB 11643 应为 {expected} / check digit is {check}, GB 11643 requires {expected}"
    return None


def normalise_id_number(value: str) -> str:
    """Upper-case the check character (a lower-case x is common in hand-typed records)."""
    return value[:17] + value[17:].upper()


@functools.lru_cache(maxsize=65536)  # called several times per event on the ingest path
def person_stream_id(id_number: str) -> uuid.UUID:
    """The id of a person's event stream, derived from (and stable for) the ID number."""
    return uuid.uuid5(PERSON_NAMESPACE, normalise_id_number(id_number))


@functools.lru_cache(maxsize=4096)  # a handful of regions recur in every event; short keys only (see below)
def _region_problem(value: str) -> str | None:
    if not value.isascii() or not value.isdigit():
        return "must be a 6-digit administrative division code (GB/T 2260)"
    if value[:2] not in PROVINCE_PREFIXES:
        return f"unknown province code {value[:2]}"
    return None


def region_problem(value: str) -> str | None:
    """Why `value` is not a 6-digit GB/T 2260 region code, or None when it is."""
    if len(value) != 6:
        return "must be a 6-digit administrative division code (GB/T 2260)"
    return _region_problem(value)


# The separators of names of several parts (阿依古丽·买买提) as typed on different systems: the middle dot of GB 18030,
# the bullet, the katakana middle dot, the hyphenation point, a full stop between parts.
_NAME_SEPARATORS = str.maketrans({"•": "·", "・": "·", "‧": "·", "∙": "·", "⋅": "·", ".": "·"})


def normalised_name(name: str) -> str:
    """A name as compared (never as shown): full-width letters and digits made half-width, the middle dots made
    one, spaces dropped, Latin letters upper-cased."""
    folded = unicodedata.normalize("NFKC", name).translate(_NAME_SEPARATORS)
    return "".join(folded.split()).upper()


def normalised_case_ref(case_ref: str) -> str:
    """A case number (案号) as compared: full-width brackets and digits made half-width, spaces dropped; 〔2026〕 and
    (2026) stay as written, since courts and prisons write them differently and both are kept as published."""
    return "".join(unicodedata.normalize("NFKC", case_ref).split())
