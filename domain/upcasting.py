"""Schema versions of event envelopes and payloads, and the path that lifts an old version to the current one.

When a payload's shape changes, bump its entry in CURRENT_SCHEMA_VERSION and register an upcaster from the previous
version; old producers keep working, stored events are always current.

Version 2 (every type) changed the envelope, not the payloads: the person is named by an identity document
(`id_type`, absent meaning a resident ID; `nationality`, `birth_date`). A version-1 envelope is lifted by
`upcast_envelope`: its person is a resident ID, its payload is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .catalog import EVENT_TYPES

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

ENVELOPE_VERSION = 2

CURRENT_SCHEMA_VERSION: dict[str, int] = {event_type: ENVELOPE_VERSION for event_type in EVENT_TYPES}

# (event_type, from_version) -> function returning the payload at from_version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def _same_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 1 to 2 changed the envelope's person only."""
    return payload


for _event_type in EVENT_TYPES:
    UPCASTERS[(_event_type, 1)] = _same_payload


def payload_unchanged(event_type: str, version: int) -> bool:
    """Whether a payload of `version` is already the current payload (only the envelope changed since)."""
    current = CURRENT_SCHEMA_VERSION.get(event_type)
    if current is None or not 1 <= version <= current:
        return False
    for step in range(version, current):
        if UPCASTERS.get((event_type, step)) is not _same_payload:
            return False
    return True


def upcast_envelope(document: dict[str, Any]) -> dict[str, Any]:
    """A version-1 envelope (as a JSON object) at version 2: its person's resident ID said so, payload lifted.
    Other versions are returned as they are (a version-1 person naming another document is refused by validation)."""
    version = document.get("schema_version")
    if type(version) is not int or version != 1 or not isinstance(document.get("person"), dict):
        return document
    person = document["person"]
    if "id_type" in person or "nationality" in person or "birth_date" in person:
        return document
    lifted = dict(document, schema_version=2, person={**person, "id_type": "resident"})
    event_type = document.get("event_type")
    if isinstance(event_type, str) and event_type in CURRENT_SCHEMA_VERSION and isinstance(document.get("payload"), dict):
        lifted["payload"] = UPCASTERS[(event_type, 1)](document["payload"])
    return lifted


def register_upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def decorate(function: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = function
        return function

    return decorate


class UnsupportedVersion(ValueError):
    pass


def upcast(event_type: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload lifted from `version` to the current version of `event_type`."""
    current = CURRENT_SCHEMA_VERSION[event_type]
    if version > current:
        raise UnsupportedVersion(f"{event_type} schema_version {version} is newer than this service's {current}")
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise UnsupportedVersion(f"no upcaster for {event_type} from schema_version {version}")
        payload = step(payload)
        version += 1
    return payload
