"""Who may do what: agencies that publish, oversight staff scoped to a region, auditors, administrators.

A principal is identified by a bearer token that is shown once and kept only as its SHA-256 hash; the principal's
stream id is derived from that hash, so a request finds its principal with one read. Revocation is an event too.
"""

from __future__ import annotations

import hashlib
import uuid
from enum import StrEnum

from eventsourcing.domain import Aggregate, event

PRINCIPAL_NAMESPACE = uuid.UUID("3d1e5b7a-9c2f-5a4e-b6d8-0f1e2d3c4b5a")


class OutsideScope(Exception):
    """A read asked for a region outside the principal's scope."""


class Role(StrEnum):
    PUBLISHER = "publisher"  # one agency: publishes as itself; reads the obligations it bears
    OVERSIGHT = "oversight"  # reads status, gaps and statistics of persons in a region prefix
    AUDITOR = "auditor"  # reads everything, replays the past, reads the access log
    ADMIN = "admin"  # manages principals; no access to personal data


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Principal(Aggregate):
    @staticmethod
    def create_id(hashed_token: str) -> uuid.UUID:
        return uuid.uuid5(PRINCIPAL_NAMESPACE, hashed_token)

    @event("Created")
    def __init__(self, hashed_token: str, role: str, name: str, kind: str | None, agency_id: str | None,
                 region: str | None, created_at: str, supervisor: bool = False):
        self.hashed_token = hashed_token
        # Oversight only: a supervisor approves long snoozes and escalations of leads (domain/leads.py).
        self.supervisor = supervisor
        self.role = Role(role)
        self.name = name
        self.kind = kind
        self.agency_id = agency_id
        self.region = region
        self.created_at = created_at
        self.revoked_at: str | None = None

    @event("Revoked")
    def revoke(self, reason: str, revoked_at: str) -> None:
        self.revoked_at = revoked_at

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def sees_region(self, region: str | None) -> bool:
        """Whether this principal may read personal data of a person belonging to `region`."""
        if self.role is Role.AUDITOR:
            return True
        if self.role is Role.OVERSIGHT:
            return region is not None and region.startswith(self.region or "")
        return False

    def region_filter(self, region: str | None) -> str | None:
        """The region filter this principal may use: oversight staff stay inside their prefix (a broader or absent
        filter narrows to it); other roles filter as they ask. Raises OutsideScope for a region outside it."""
        if self.role is not Role.OVERSIGHT:
            return region
        scope = self.region or ""
        if region is None or scope.startswith(region):
            return scope
        if region.startswith(scope):
            return region
        raise OutsideScope(f"region {region} is outside your scope {scope}")

    def summary(self) -> dict[str, str | None]:
        return {"id": str(self.id), "role": str(self.role), "name": self.name, "kind": self.kind,
                "agency_id": self.agency_id, "region": self.region, "supervisor": self.supervisor,
                "created_at": self.created_at, "revoked_at": self.revoked_at}


class AccessRecorded(Aggregate):
    """A read of personal data: who read what, when. One short stream per read, kept in the event store so the
    access log is covered by the same tamper-evident chain as everything else."""

    @event("Recorded")
    def __init__(self, principal: str, role: str, name: str, action: str, subject: str | None, at: str):
        self.principal = principal
        self.role = role
        self.name = name
        self.action = action
        self.subject = subject
        self.at = at


class AuditDecision(Aggregate):
    """An auditor's decision on a row of the events table that the audit chain does not cover (written behind the
    service's back, or by a process without the chain): accepted as genuine, with who decided and why. Kept in the
    event store, so the decision is itself in the chain; `audit verify` then lists the row as accepted."""

    @event("Recorded")
    def __init__(self, position: int, event_hash: str, decision: str, reason: str, by: str, at: str):
        self.position = position
        self.event_hash = event_hash
        self.decision = decision
        self.reason = reason
        self.by = by
        self.at = at
