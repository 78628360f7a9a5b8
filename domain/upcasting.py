"""Schema versions of event payloads and the path that lifts an old version to the current one.

Every event type starts at version 1. When a payload's shape changes, bump its entry in CURRENT_SCHEMA_VERSION and
register an upcaster from the previous version; old producers keep working, stored events are always current.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .catalog import EVENT_TYPES

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

CURRENT_SCHEMA_VERSION: dict[str, int] = {event_type: 1 for event_type in EVENT_TYPES}

# (event_type, from_version) -> function returning the payload at from_version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


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
