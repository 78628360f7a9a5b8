"""Identifiers that join records across agencies: identity documents (the person key), region codes, names."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
import unicodedata
import uuid

import pycountry

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
        return ("这是 1999 年以前的 15 位旧身份证号码：请按 schema_version 2 报送 id_type \"resident_legacy15\"（服务换算为 "
                "18 位并保留原号码），或换算为 18 位后报送 / a 15-digit ID number from before 1999: send it with "
                "schema_version 2 and id_type \"resident_legacy15\" (the service converts it to 18 digits and keeps "
                "the original), or convert it yourself")
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
def person_stream_id(key: str) -> uuid.UUID:
    """The id of a person's event stream, derived from (and stable for) their person key (`person_key`): for a
    resident ID number the number itself, so the streams stored before other documents existed keep their ids."""
    return uuid.uuid5(PERSON_NAMESPACE, normalise_id_number(key) if len(key) == 18 else key)


# -- identity documents -----------------------------------------------------------------------------------------

class IdType(str, enum.Enum):
    """The identity documents a person under community correction is published under (envelope version 2)."""

    RESIDENT = "resident"  # 居民身份证 (also the 港澳居民居住证, whose numbers 810000…/820000… follow GB 11643)
    RESIDENT_LEGACY15 = "resident_legacy15"  # 15-digit 身份证 number issued before 1999
    FOREIGN_PERMANENT_RESIDENT = "foreign_permanent_resident"  # 外国人永久居留身份证
    PASSPORT = "passport"  # a foreign passport, with its nationality
    HK_MACAU_PERMIT = "hk_macau_permit"  # 港澳居民来往内地通行证
    TAIWAN_PERMIT = "taiwan_permit"  # 台湾居民来往大陆通行证


ID_TYPE_LABELS = {
    IdType.RESIDENT: ("居民身份证", "resident ID card"),
    IdType.RESIDENT_LEGACY15: ("15 位旧居民身份证", "15-digit resident ID (before 1999)"),
    IdType.FOREIGN_PERMANENT_RESIDENT: ("外国人永久居留身份证", "foreign permanent resident ID card"),
    IdType.PASSPORT: ("护照", "passport"),
    IdType.HK_MACAU_PERMIT: ("港澳居民来往内地通行证", "Mainland travel permit for Hong Kong and Macao residents"),
    IdType.TAIWAN_PERMIT: ("台湾居民来往大陆通行证", "Mainland travel permit for Taiwan residents"),
}

# Documents whose number has no birth date in it: a probable match needs the birth date published beside them.
NUMBER_WITHOUT_BIRTH_DATE = frozenset({IdType.PASSPORT, IdType.HK_MACAU_PERMIT, IdType.TAIWAN_PERMIT})

_PASSPORT_NUMBER = re.compile(r"[A-Z0-9]{5,20}")
# 回乡证: H (Hong Kong) or M (Macao) and 8 digits since 2013, 10 digits before.
_HK_MACAU_PERMIT = re.compile(r"[HM](\d{8}|\d{10})")
# 台胞证: 8 digits since 2015; 10 digits (and a letter for a reissue) before.
_TAIWAN_PERMIT = re.compile(r"\d{8}|\d{10}[A-Z]?")
# 外国人永久居留身份证 of 2017: the nationality (ISO 3166 alpha-3) and 12 digits.
_FOREIGN_PERMANENT_2017 = re.compile(r"([A-Z]{3})\d{12}")


@functools.lru_cache(maxsize=512)
def country(code: str) -> tuple[str, str] | None:
    """The Chinese and English names of an ISO 3166-1 alpha-3 country code (upper case), or None if it is none."""
    found = pycountry.countries.get(alpha_3=code) if len(code) == 3 and code.isascii() and code.isalpha() else None
    if found is None:
        return None
    return _chinese_country_names().gettext(found.name), found.name


@functools.lru_cache(maxsize=1)
def _chinese_country_names():
    import gettext
    return gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["zh_CN"], fallback=True)


def nationality_problem(code: str) -> str | None:
    if country(code) is None:
        return (f"国籍 {code!r} 不是 ISO 3166-1 三字母国家代码（如 USA、KOR、VNM） / nationality {code!r} is not an "
                f"ISO 3166-1 alpha-3 country code (e.g. USA, KOR, VNM)")
    return None


def legacy15_to_18(number: str) -> str:
    """A 15-digit ID number (before 1999) as its 18-digit number: '19' before the two-digit birth year, and the
    GB 11643 check character."""
    first17 = number[:6] + "19" + number[6:]
    return first17 + id_check_char(first17)


def document_problem(id_type: IdType, number: str, nationality: str | None = None) -> str | None:
    """Why `number` is not a valid number of `id_type` ('中文 / English'), or None. `number` as normalised
    (`normalised_document_number`)."""
    label, english = ID_TYPE_LABELS[id_type]
    if id_type is IdType.RESIDENT:
        return id_number_problem(number)
    if id_type is IdType.RESIDENT_LEGACY15:
        if len(number) != 15 or not number.isascii() or not number.isdigit():
            return f"{label}号码应为 15 位数字 / a {english} number has 15 digits"
        return _problem_of_18_characters(legacy15_to_18(number))
    if id_type is IdType.FOREIGN_PERMANENT_RESIDENT:
        old = _FOREIGN_PERMANENT_2017.fullmatch(number)
        if old:
            return nationality_problem(old.group(1))
        if len(number) != 18 or not number.startswith("9"):
            return (f"{label}号码应为以 9 开头的 18 位（2023 年版）或 3 个字母加 12 位数字（2017 年版） / a {english} "
                    f"number has 18 characters starting with 9 (2023) or 3 letters and 12 digits (2017)")
        if not number[:17].isascii() or not number[:17].isdigit():
            return "前 17 位应为数字 / the first 17 characters must be digits"
        if number[1:3] not in PROVINCE_PREFIXES:
            return f"受理地省级代码 {number[1:3]} 未知 / unknown province code {number[1:3]}"
        if pycountry.countries.get(numeric=number[3:6]) is None:
            return f"国籍代码 {number[3:6]} 不是 ISO 3166-1 数字代码 / nationality code {number[3:6]} is not ISO 3166-1"
        if birth_date_of(IdType.FOREIGN_PERMANENT_RESIDENT, number) is None:
            return f"出生日期 {number[6:14]} 无效 / invalid birth date {number[6:14]}"
        expected = id_check_char(number[:17])
        if number[17] != expected:
            return f"校验码为 {number[17]}，按 GB 11643 应为 {expected} / check digit is {number[17]}, GB 11643 requires {expected}"
        return None
    if id_type is IdType.PASSPORT:
        if not nationality:
            return "护照须同时报送国籍（nationality，ISO 3166-1 三字母代码） / a passport needs its nationality"
        if not _PASSPORT_NUMBER.fullmatch(number):
            return f"护照号码应为 5 至 20 位字母或数字 / a passport number has 5 to 20 letters or digits"
        return nationality_problem(nationality)
    pattern = _HK_MACAU_PERMIT if id_type is IdType.HK_MACAU_PERMIT else _TAIWAN_PERMIT
    if not pattern.fullmatch(number):
        shape = "H 或 M 加 8 位（或 10 位）数字" if id_type is IdType.HK_MACAU_PERMIT else "8 位数字（或旧版 10 位）"
        shape_en = ("H or M and 8 (or 10) digits" if id_type is IdType.HK_MACAU_PERMIT
                    else "8 digits (or 10 for an old permit)")
        return f"{label}号码应为{shape} / a {english} number is {shape_en}"
    return None


def normalised_document_number(number: str) -> str:
    """A document number as compared and keyed: half-width, spaces dropped, letters upper case."""
    return "".join(unicodedata.normalize("NFKC", number).split()).upper()


def person_key(id_type: IdType, number: str, nationality: str | None = None) -> str:
    """The key that joins a person's records (a valid, normalised document): the 18-digit number for a resident ID
    (a 15-digit one converted) and for the foreign permanent resident card of 2023, which shares its number space
    (starting with 9, which no province code does) and never collides; otherwise the document type and number (a
    passport's with its nationality, since two countries may issue the same number)."""
    if id_type is IdType.RESIDENT:
        return normalise_id_number(number)
    if id_type is IdType.RESIDENT_LEGACY15:
        return legacy15_to_18(number)
    if id_type is IdType.FOREIGN_PERMANENT_RESIDENT:
        return number
    if id_type is IdType.PASSPORT:
        return f"passport:{nationality}:{number}"
    return f"{id_type.value}:{number}"


def key_document(key: str) -> tuple[IdType, str, str | None]:
    """The document (type, number, nationality) a person key stands for (the inverse of `person_key`, a 15-digit
    number given as its 18-digit one)."""
    kind, _, rest = key.partition(":")
    if not rest:
        return (IdType.FOREIGN_PERMANENT_RESIDENT if key.startswith("9") or key[:1].isalpha()
                else IdType.RESIDENT), key, None
    if kind == IdType.PASSPORT.value:
        nationality, _, number = rest.partition(":")
        return IdType.PASSPORT, number, nationality
    return IdType(kind), rest, None


def typed_person_key(text: str) -> tuple[str | None, str | None]:
    """What a reader typed to name a person, as their person key: (key, None), or (None, why it names nobody) in
    Chinese then English. Takes an 18-digit ID number (a lower-case x too), a 15-digit one (converted), and the keys
    of other documents as the service shows them (`passport:USA:E12345678`, `hk_macau_permit:H12345678`)."""
    text = normalised_document_number(text)
    kind, _, number = text.partition(":")
    nationality = None
    if number:
        try:
            id_type = IdType(kind.lower())
        except ValueError:
            return None, f"未知的证件类型 {kind[:30]!r} / unknown document type {kind[:30]!r}"
        if id_type is IdType.PASSPORT:
            nationality, _, number = number.partition(":")
    else:
        number = text
        if len(text) == 15 and text.isdigit():
            id_type = IdType.RESIDENT_LEGACY15
        elif text.startswith("9") or _FOREIGN_PERMANENT_2017.fullmatch(text):
            id_type = IdType.FOREIGN_PERMANENT_RESIDENT
        else:
            id_type = IdType.RESIDENT
    problem = document_problem(id_type, number, nationality)
    if problem:
        return None, id_number_refusal(problem) if id_type is IdType.RESIDENT and ":" not in text else problem
    return person_key(id_type, number, nationality), None


def birth_date_of(id_type: IdType, number: str) -> dt.date | None:
    """The birth date a document number carries (GB 11643 numbers: digits 7 to 14), or None."""
    if id_type is IdType.RESIDENT_LEGACY15:
        number = legacy15_to_18(number)
    elif id_type not in (IdType.RESIDENT, IdType.FOREIGN_PERMANENT_RESIDENT) or len(number) != 18:
        return None
    try:
        return dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None


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


def key_birth_date(key: str) -> dt.date | None:
    """The birth date a person key's document number carries, or None (passports and permits)."""
    try:
        id_type, number, _ = key_document(key)
    except ValueError:
        return None
    return birth_date_of(id_type, number)


def key_person_document(key: str) -> dict[str, str]:
    """The identity document (envelope version 2, without the name) a person key stands for: what an event the
    service publishes about that person names them by."""
    id_type, number, nationality = key_document(key)
    document = {"id_type": id_type.value, "id_number": number}
    if nationality:
        document["nationality"] = nationality
    return document
