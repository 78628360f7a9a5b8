"""The history of rule sets in force: which version the service applied from when, so that an audit replays a past
answer with the rules of its time. Kept in the event store, like everything an auditor relies on."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

from .rules import RuleSet, rule_set_from_description

HISTORY_ID = uuid.UUID("7f3c1b9e-4d2a-5e6f-8a1b-2c3d4e5f6a7b")


class RuleSetHistory(Aggregate):
    @staticmethod
    def create_id() -> uuid.UUID:
        return HISTORY_ID

    @event("Started")
    def __init__(self) -> None:
        self.adoptions: list[dict[str, Any]] = []

    @event("Adopted")
    def adopt(self, version: str, rules: list[dict[str, Any]], adopted_at: str,
              calendar: list[dict[str, Any]] | None = None) -> None:
        # `calendar`: the holiday notices configured with the rule set (absent from adoptions recorded before
        # notices were configuration: those used the package's calendar alone).
        self.adoptions.append({"version": version, "rules": rules, "adopted_at": adopted_at,
                               "calendar": calendar or []})

    @property
    def current_version(self) -> str | None:
        return self.adoptions[-1]["version"] if self.adoptions else None

    def in_force_at(self, moment: dt.datetime) -> RuleSet | None:
        """The rule set the service applied at `moment`: the last one adopted by then."""
        chosen = None
        for adoption in self.adoptions:
            if dt.datetime.fromisoformat(adoption["adopted_at"]) <= moment:
                chosen = adoption
        return _rule_set(chosen) if chosen else None

    def find(self, version: str) -> RuleSet | None:
        for adoption in reversed(self.adoptions):
            if adoption["version"] == version:
                return _rule_set(adoption)
        return None


def _rule_set(adoption: dict[str, Any]) -> RuleSet:
    return rule_set_from_description(adoption["version"], adoption["rules"], adoption.get("calendar"))
