"""Probable matches (疑似同一人): person keys with the same normalised name and birth date that no link joins. An
officer links them (an `identity_linked` event, domain/merging.py) or dismisses them; a dismissal is kept as an
event, for that group of keys: a further key with the same name and birth date makes a new group, shown again."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from eventsourcing.domain import Aggregate, event

CANDIDATE_NAMESPACE = uuid.UUID("3c5e0a52-5d57-4f0e-9f1c-2f7c4a8d6b13")


def candidate_id(keys: Iterable[str]) -> str:
    """The id of a group of probable matches: the same for the same keys, whatever their order."""
    return str(uuid.uuid5(CANDIDATE_NAMESPACE, "|".join(sorted(keys))))


class CandidateReview(Aggregate):
    """An officer's decision that a group of keys are not one person (a link is published as an event instead)."""

    @staticmethod
    def create_id(candidate: str, **_: Any) -> uuid.UUID:
        return uuid.UUID(candidate)

    @event("Dismissed")
    def __init__(self, candidate: str, keys: list[str], reason: str, by: str, by_name: str, at: str):
        self.candidate = candidate
        self.keys = keys
        self.reason = reason
        self.by = by
        self.by_name = by_name
        self.at = at
