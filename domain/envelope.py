"""The envelope every event travels in, and the parser that turns raw input into a validated event.

Parsing is strict and total: any input (bytes, text, dict, garbage) yields either a `ParsedEvent` or a `Rejected`
with a stable code and a reason a producer can act on. It never raises anything else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import (AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError,
                      ValidationInfo, create_model, field_validator)

from .catalog import (CATALOG, AgencyKind, IdentityDocument, IdentityLink, Payload, RegionCode, ShortText,
                      date_range_problem, refusing, text_problem)
from .errors import Rejected, RejectionCode
from .identity import NUMBER_WITHOUT_BIRTH_DATE, IdType
from .messages import bilingual
from .upcasting import CURRENT_SCHEMA_VERSION, UnsupportedVersion, payload_unchanged, upcast, upcast_envelope

# Larger inputs are refused unread; a real envelope is a few hundred bytes.
MAX_ENVELOPE_BYTES = 64 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _described(chinese: str, english: str, *examples: Any, **extra: Any) -> Any:
    """Field metadata for the published JSON Schema: description in Chinese and English, examples."""
    return Field(description=f"{chinese} / {english}", examples=list(examples) or None,
                 json_schema_extra=extra or None)


class Agency(_Strict):
    """发布机关 / the publishing agency."""

    kind: Annotated[AgencyKind, _described(
        "机关类别：court 人民法院、procuratorate 人民检察院、police 公安机关、prison 监狱、bureau 社区矫正机构",
        "agency kind", "court")]
    id: Annotated[ShortText, _described("机关代码（本机关自己的编码）", "the agency's own code", "FY-520222-01")]
    region: Annotated[RegionCode, _described("机关所在行政区划代码（GB/T 2260，6 位）",
                                             "the agency's region (GB/T 2260, 6 digits)", "520222")]


class PersonRef(IdentityDocument):
    """社区矫正对象 / the person under community correction, by an identity document (envelope version 2)."""

    name: Annotated[str, Field(min_length=1, max_length=64, description="姓名 / name", examples=["张三"]),
                    AfterValidator(refusing(text_problem))]
    birth_date: Annotated[dt.date | None, _described(
        "出生日期（号码中不含出生日期的证件可填：护照、通行证），用于疑似同一人的核对",
        "birth date, for documents whose number has none (passport, permits): probable matches are found by it",
        "1985-06-01")] = None

    @field_validator("birth_date")  # runs only when a birth date is given
    @classmethod
    def _birth_date_only_where_the_number_has_none(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        id_type = info.data.get("id_type") or IdType.RESIDENT
        if value is not None and id_type not in NUMBER_WITHOUT_BIRTH_DATE and not (
                id_type is IdType.FOREIGN_PERMANENT_RESIDENT and len(info.data.get("id_number", "")) != 18):
            raise ValueError("出生日期已含在证件号码中，请勿另填 / the birth date is part of this document's number")
        return value

    def document(self) -> dict[str, Any]:
        """As stored and hashed: a resident ID as version 1 wrote it (so a version-1 event resent is the same event),
        any other document with its type and what goes with it."""
        if self.id_type in (None, IdType.RESIDENT):
            return {"id_number": self.id_number, "name": self.name}
        document: dict[str, Any] = {"id_type": self.id_type.value, "id_number": self.id_number, "name": self.name}
        if self.nationality is not None:
            document["nationality"] = self.nationality
        if self.birth_date is not None:
            document["birth_date"] = self.birth_date.isoformat()
        return document


def _moment_problem(value: dt.datetime) -> str | None:
    # The Shanghai date: a moment near a year's edge is on another date in UTC.
    try:
        return date_range_problem((value + (dt.timedelta(hours=8) - value.utcoffset())).date())
    except OverflowError:
        return date_range_problem(dt.date.max if value.year > 2000 else dt.date.min)


PlausibleMoment = Annotated[AwareDatetime, AfterValidator(refusing(_moment_problem))]


class Envelope(_Strict):
    """事件信封：每个事件（Kafka 与 HTTP 相同） / the envelope of every event, on Kafka and over HTTP."""

    event_id: Annotated[uuid.UUID, _described("发布方生成的事件 UUID，用于幂等去重",
                                              "producer-assigned UUID, the idempotency key",
                                              "7d0c6a1e-2a4f-4a53-9a43-3c1f0b9e8f11")]
    # Validated as a string, so that an unknown type gets its own refusal code (unknown_event_type).
    event_type: Annotated[str, _described("事件类型（见 GET /v1/schemas）", "event type (see GET /v1/schemas)",
                                          "decision_effective", enum=sorted(CATALOG))]
    schema_version: Annotated[int, Field(ge=1, description="信封版本（当前为 2；1 仍可报送） / envelope schema version "
                                                           "(2 now; 1 is still accepted)", examples=[2])]
    agency: Agency
    person: PersonRef
    occurred_at: Annotated[PlausibleMoment, _described(
        "事件在现实中发生的时间（有效时间），须带时区", "when it happened in the world (valid time), with its offset",
        "2024-03-01T10:00:00+08:00")]
    case_ref: Annotated[ShortText | None, _described("案号", "case reference", "(2024)黔0222刑初123号")] = None
    payload: Annotated[dict[str, Any], _described("按事件类型的内容（见 GET /v1/schemas）",
                                                  "the event type's payload (see GET /v1/schemas)")]
    # Set by the service. A producer may carry it only when migrating legacy records (`handoff publish --import`).
    recorded_at: Annotated[PlausibleMoment | None, _described(
        "服务登记时间，由服务设定；仅迁移历史记录时可携带", "set by the service; carried only when importing legacy "
        "records")] = None



@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """A validated, upcast event ready for authorisation and appending.

    `document` is the event's canonical JSON form (what `content_hash` hashes; the store keeps its parts as they
    are), `payload` the validated payload at the current schema version, `validated` the envelope as received."""

    validated: Envelope
    payload: Payload
    content_hash: str
    document: dict[str, Any]
    event_id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_id", self.document["event_id"])

    @property
    def event_type(self) -> str:
        return self.validated.event_type

    @property
    def agency(self) -> Agency:
        return self.validated.agency

    @property
    def person(self) -> PersonRef:
        return self.validated.person

    @property
    def person_key(self) -> str:
        return self.validated.person.key

    @property
    def occurred_at(self) -> dt.datetime:
        return self.validated.occurred_at

    @property
    def recorded_at(self) -> dt.datetime | None:
        return self.validated.recorded_at

    @property
    def schema_version(self) -> int:
        """Stored events are always at the current schema version."""
        return CURRENT_SCHEMA_VERSION[self.event_type]

    @property
    def envelope(self) -> Envelope:
        """The envelope at the current schema version, its payload as a JSON document."""
        validated = self.validated
        return Envelope.model_construct(
            event_id=validated.event_id, event_type=validated.event_type, schema_version=self.schema_version,
            agency=validated.agency, person=validated.person, occurred_at=validated.occurred_at,
            case_ref=validated.case_ref, payload=self.document["payload"], recorded_at=validated.recorded_at)


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """The first problems of a validation error, each '位置: 中文 / English' (domain/messages.py)."""
    parts = []
    for item in error.errors()[:5]:
        location = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        parts.append(f"{location or 'input'}: {bilingual(item)}")
    more = error.error_count() - len(parts)
    if more > 0:
        parts.append(f"另有 {more} 处 / and {more} more")
    return "; ".join(parts)


class DuplicateKey(ValueError):
    """A JSON object names a key twice: JSON parsers keep the last value silently, so the text is refused."""

    def __init__(self, key: str):
        super().__init__(f"JSON 对象中的键 {key!r} 出现了两次 / key {key!r} appears twice in one JSON object")
        self.key = key


def refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for json.loads: the object, or DuplicateKey."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        raise DuplicateKey(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return document


def duplicate_key_problem(raw: bytes | bytearray | str) -> str | None:
    """Why a JSON text must be refused for a key given twice in one object, or None (also when it is not JSON at
    all: the parse that follows explains that). The parsers that validate envelopes keep the last value silently;
    this exact parse costs about 8 µs an envelope."""
    try:
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
        json.loads(text, object_pairs_hook=refuse_duplicate_keys)
    except DuplicateKey as duplicate:
        return str(duplicate)
    except (ValueError, RecursionError):
        return None
    return None


def decode(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Raw input as a JSON object, or Rejected(malformed)."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogatepass")
    if not isinstance(raw, (bytes, bytearray)):
        raise Rejected(RejectionCode.MALFORMED, f"expected a JSON object, got {type(raw).__name__}")
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise Rejected(RejectionCode.MALFORMED, f"envelope is {len(raw)} bytes, the limit is {MAX_ENVELOPE_BYTES}")
    try:
        # Decoded strictly as UTF-8 first: json.loads(bytes) would guess UTF-16/32 and accept them.
        value = json.loads(bytes(raw).decode("utf-8"))
    except UnicodeDecodeError as error:
        raise Rejected(RejectionCode.MALFORMED, f"not UTF-8: {error.reason} at byte {error.start}") from None
    except json.JSONDecodeError as error:
        raise Rejected(RejectionCode.MALFORMED, f"not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except ValueError:  # an integer of more than 4,300 digits: no field takes such a number
        raise Rejected(RejectionCode.MALFORMED, "含有位数过多的整数 / holds an integer with too many digits") from None
    except RecursionError:
        raise Rejected(RejectionCode.MALFORMED, "not JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise Rejected(RejectionCode.MALFORMED, f"expected a JSON object, got {type(value).__name__}")
    return value


def best_effort_event_id(raw: Any) -> str | None:
    """The event_id of an input that may be invalid, for reporting a rejection; None when there is none."""
    try:
        value = raw if isinstance(raw, dict) else json.loads(raw)
        event_id = value.get("event_id") if isinstance(value, dict) else None
        return event_id if isinstance(event_id, str) and len(event_id) <= 64 else None
    except Exception:
        return None


def parse_event(raw: bytes | str | dict[str, Any], *, allow_recorded_at: bool = False) -> ParsedEvent:
    """Decode, validate and upcast one raw envelope. Raises Rejected with the first problem found."""
    if isinstance(raw, (bytes, bytearray, str)):
        duplicate = duplicate_key_problem(raw)
        if duplicate:
            raise Rejected(RejectionCode.MALFORMED, duplicate)
    typed = _typed_envelope(raw)
    if typed is not None and (typed.schema_version == CURRENT_SCHEMA_VERSION[typed.event_type]
                              or payload_unchanged(typed.event_type, typed.schema_version)):
        _check_recorded_at_allowed(typed, allow_recorded_at)
        return _parsed(typed, typed.payload)
    envelope = _fast_envelope(raw)
    if envelope is None:
        envelope = _explained_envelope(raw)
    return _complete(envelope, allow_recorded_at)


def _typed(event_type: str, payload: type[Payload]) -> type[Envelope]:
    return create_model(f"{payload.__name__}Envelope", __base__=Envelope,
                        event_type=(Literal[event_type], ...), payload=(payload, ...))


# Every event type's envelope with its payload model, told apart by event_type: the common case (well-formed UTF-8
# bytes at the current schema version) is validated, envelope and payload, in one pass over the bytes.
_TYPED_ENVELOPE: TypeAdapter[Any] = TypeAdapter(Annotated[
    Union[tuple(_typed(event_type, spec.payload) for event_type, spec in CATALOG.items())],  # noqa: UP007
    Field(discriminator="event_type"),
])


def _typed_envelope(raw: bytes | str | dict[str, Any]) -> Any | None:
    """A well-formed envelope in UTF-8 bytes of a known type, validated with its payload; None for anything else:
    the slower paths then upcast an older payload, or find the problem and explain it."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) > MAX_ENVELOPE_BYTES:
        return None
    try:
        bytes(raw).decode("utf-8")  # pydantic would also accept other encodings' escapes; the contract is UTF-8
        return _TYPED_ENVELOPE.validate_json(raw)
    except (UnicodeDecodeError, ValidationError):
        return None


def _fast_envelope(raw: bytes | str | dict[str, Any]) -> Envelope | None:
    """A well-formed envelope in UTF-8 bytes, validated straight from its bytes (one parse), payload unchecked.

    None for anything else: the slower path then finds the problem and explains it."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) > MAX_ENVELOPE_BYTES:
        return None
    try:
        bytes(raw).decode("utf-8")
        return Envelope.model_validate_json(raw)
    except (UnicodeDecodeError, ValidationError):
        return None


def _explained_envelope(raw: bytes | str | dict[str, Any]) -> Envelope:
    document = upcast_envelope(decode(raw))
    try:
        text = json.dumps(document, ensure_ascii=False)
        if len(text.encode("utf-8", errors="surrogatepass")) > MAX_ENVELOPE_BYTES:
            raise Rejected(RejectionCode.MALFORMED, f"envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
        envelope = Envelope.model_validate_json(text)
    except ValidationError as error:
        raise Rejected(RejectionCode.INVALID_ENVELOPE, describe_validation_error(error)) from None
    except (ValueError, RecursionError) as error:  # e.g. lone surrogates in a dict handed over by Python code
        raise Rejected(RejectionCode.MALFORMED, f"not encodable as JSON: {error}") from None
    return envelope


def _check_recorded_at_allowed(envelope: Envelope, allow_recorded_at: bool) -> None:
    if envelope.recorded_at is not None and not allow_recorded_at:
        raise Rejected(
            RejectionCode.RECORDED_AT_NOT_ALLOWED,
            "recorded_at is set by the service; it may be carried only when importing legacy records",
        )


def _complete(envelope: Envelope, allow_recorded_at: bool) -> ParsedEvent:
    """Check the event type and time fields, upcast and validate the payload."""
    spec = CATALOG.get(envelope.event_type)
    if spec is None:
        raise Rejected(RejectionCode.UNKNOWN_EVENT_TYPE, f"unknown event_type {envelope.event_type!r}")
    _check_recorded_at_allowed(envelope, allow_recorded_at)
    try:
        payload_document = upcast(envelope.event_type, envelope.schema_version, dict(envelope.payload))
    except UnsupportedVersion as error:
        raise Rejected(RejectionCode.UNSUPPORTED_SCHEMA_VERSION, str(error)) from None
    except Exception as error:  # an upcaster that cannot lift this old payload: its shape is wrong
        raise Rejected(
            RejectionCode.INVALID_PAYLOAD,
            f"cannot lift {envelope.event_type} schema_version {envelope.schema_version} to the current version: "
            f"{type(error).__name__}: {error}",
        ) from None
    try:
        payload = spec.payload.model_validate_json(json.dumps(payload_document, ensure_ascii=False))
    except ValidationError as error:
        raise Rejected(RejectionCode.INVALID_PAYLOAD, describe_validation_error(error, "payload")) from None
    return _parsed(envelope, payload)


def _parsed(envelope: Envelope, payload: Payload) -> ParsedEvent:
    """The parsed event of a valid envelope and its validated payload: stored at the current schema version."""
    person = envelope.person
    if envelope.schema_version < 2 and (person.id_type is not None or person.nationality is not None
                                        or person.birth_date is not None):
        raise Rejected(RejectionCode.INVALID_ENVELOPE, "person: id_type、nationality、birth_date 自 schema_version 2 "
                                                       "起才可报送 / id_type, nationality and birth_date need "
                                                       "schema_version 2")
    if isinstance(payload, IdentityLink) and payload.other.key == person.key:
        raise Rejected(RejectionCode.INVALID_PAYLOAD, "payload.other: 与 person 是同一证件，无须关联 / names the "
                                                      "person's own document: nothing to link")
    payload_document = payload.model_dump(mode="json")
    try:
        document = canonical_document(envelope, payload_document)
    except OverflowError:
        raise Rejected(RejectionCode.INVALID_ENVELOPE, "occurred_at is out of range") from None
    return ParsedEvent(validated=envelope, payload=payload, content_hash=_hash(document), document=document)


def canonical_document(envelope: Envelope, payload_document: dict[str, Any]) -> dict[str, Any]:
    """What an event says, as JSON values: the envelope without schema_version and recorded_at (the same fact
    resent by an upgraded producer, or imported twice, is the same event), occurred_at in UTC."""
    agency, person = envelope.agency, envelope.person
    return {
        "event_id": str(envelope.event_id),
        "event_type": envelope.event_type,
        "agency": {"kind": agency.kind.value, "id": agency.id, "region": agency.region},
        "person": person.document(),
        "occurred_at": envelope.occurred_at.astimezone(dt.timezone.utc).isoformat(),
        "case_ref": envelope.case_ref,
        "payload": payload_document,
    }


def canonical_json(document: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8 (not ASCII escapes). orjson writes exactly what json.dumps writes for the
    values an event holds (strings, integers, booleans, null; there are no floats) at a tenth of the cost; anything
    it refuses (an integer beyond 64 bits) goes to json.dumps."""
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document)).hexdigest()


def content_hash(envelope: Envelope) -> str:
    """Hash of what the event says, for telling a harmless duplicate from a conflicting reuse of its event_id."""
    return _hash(canonical_document(envelope, envelope.payload))
