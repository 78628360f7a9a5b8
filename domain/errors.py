"""Why an input was refused: a stable code for machines and a human reason."""

from __future__ import annotations

from enum import StrEnum


class RejectionCode(StrEnum):
    MALFORMED = "malformed"  # not JSON, not an object, not UTF-8, too large
    INVALID_ENVELOPE = "invalid_envelope"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    INVALID_PAYLOAD = "invalid_payload"
    RECORDED_AT_NOT_ALLOWED = "recorded_at_not_allowed"
    NOT_AS_ITSELF = "not_as_itself"  # the envelope's agency is not the authenticated publisher
    FORBIDDEN_EVENT_TYPE = "forbidden_event_type"  # the publisher table refuses this kind/type pair
    CONFLICT = "conflict"  # event_id already used for different content
    RETRACTION_REFUSED = "retraction_refused"
    UNPROCESSABLE = "unprocessable"  # the service failed on this input; kept for the developers to replay


class Rejected(Exception):
    """An input the service refuses; it is kept in the dead-letter store with this code and reason."""

    def __init__(self, code: RejectionCode, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    def __reduce__(self):  # picklable, for checks made in another process (services/ingest.py)
        return Rejected, (self.code, self.reason)
