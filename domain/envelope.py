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
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from .catalog import CATALOG, AgencyKind, Payload, RegionCode, ShortText
from .errors import Rejected, RejectionCode
from .identity import id_number_problem, normalise_id_number
from .upcasting import CURRENT_SCHEMA_VERSION, UnsupportedVersion, upcast

# Larger inputs are refused unread; a real envelope is a few hundred bytes.
MAX_ENVELOPE_BYTES = 64 * 1024


def _check_id_number(value: str) -> str:
    problem = id_number_problem(value)
    if problem:
        raise ValueError(f"not a valid resident ID number (GB 11643): {problem}")
    return normalise_id_number(value)


IdNumber = Annotated[str, AfterValidator(_check_id_number)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Agency(_Strict):
    kind: AgencyKind
    id: ShortText
    region: RegionCode


class PersonRef(_Strict):
    id_number: IdNumber
    name: Annotated[str, Field(min_length=1, max_length=64)]


class Envelope(_Strict):
    event_id: uuid.UUID
    event_type: str
    schema_version: Annotated[int, Field(ge=1)]
    agency: Agency
    person: PersonRef
    occurred_at: AwareDatetime
    case_ref: ShortText | None = None
    payload: dict[str, Any]
    # Set by the service. A producer may carry it only when migrating legacy records (`handoff publish --import`).
    recorded_at: AwareDatetime | None = None


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """A validated, upcast event ready for authorisation and appending."""

    envelope: Envelope
    payload: Payload
    content_hash: str
    event_id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_id", str(self.envelope.event_id))

    @property
    def event_type(self) -> str:
        return self.envelope.event_type


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in error.errors()[:5]:
        location = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        parts.append(f"{location or 'input'}: {item['msg']}")
    more = error.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


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
    envelope = _fast_envelope(raw)
    if envelope is None:
        envelope = _explained_envelope(raw)
    return _complete(envelope, allow_recorded_at)


def _fast_envelope(raw: bytes | str | dict[str, Any]) -> Envelope | None:
    """The common case, a well-formed envelope in UTF-8 bytes, validated straight from its bytes (one parse).

    None for anything else: the slower path then finds the problem and explains it."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) > MAX_ENVELOPE_BYTES:
        return None
    try:
        bytes(raw).decode("utf-8")  # pydantic would also accept other encodings' escapes; the contract is UTF-8
        return Envelope.model_validate_json(raw)
    except (UnicodeDecodeError, ValidationError):
        return None


def _explained_envelope(raw: bytes | str | dict[str, Any]) -> Envelope:
    document = decode(raw)
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


def _complete(envelope: Envelope, allow_recorded_at: bool) -> ParsedEvent:
    """Check the event type and time fields, upcast and validate the payload."""
    spec = CATALOG.get(envelope.event_type)
    if spec is None:
        raise Rejected(RejectionCode.UNKNOWN_EVENT_TYPE, f"unknown event_type {envelope.event_type!r}")
    if envelope.recorded_at is not None and not allow_recorded_at:
        raise Rejected(
            RejectionCode.RECORDED_AT_NOT_ALLOWED,
            "recorded_at is set by the service; it may be carried only when importing legacy records",
        )
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

    # Stored events are always at the current schema version.
    envelope = envelope.model_copy(
        update={"payload": payload.model_dump(mode="json"), "schema_version": CURRENT_SCHEMA_VERSION[envelope.event_type]}
    )
    try:
        digest = content_hash(envelope)
    except OverflowError:
        raise Rejected(RejectionCode.INVALID_ENVELOPE, "occurred_at is out of range") from None
    return ParsedEvent(envelope=envelope, payload=payload, content_hash=digest)


def content_hash(envelope: Envelope) -> str:
    """Hash of what the event says, for telling a harmless duplicate from a conflicting reuse of its event_id.

    The schema version and recorded_at are left out: the same fact resent by an upgraded producer, or imported
    twice, is the same event.
    """
    document = envelope.model_dump(mode="json", exclude={"schema_version", "recorded_at"})
    document["occurred_at"] = envelope.occurred_at.astimezone(dt.timezone.utc).isoformat()
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
