"""Principals and their tokens, authentication, and the access log of personal-data reads."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from domain.catalog import AgencyKind
from domain.identity import normalise_id_number, region_problem
from domain.principals import AccessRecorded, Principal, Role, token_hash

from services.ports import AggregateStore, Session, SessionStore

log = logging.getLogger(__name__)
PRINCIPAL_TOPIC = f"{Principal.__module__}:{Principal.__qualname__}.Created"
ACCESS_TOPIC = f"{AccessRecorded.__module__}:{AccessRecorded.__qualname__}.Recorded"
SUBJECT_SEPARATOR = ","
PAGE = 500  # principals read from the log at a time


def normalised_subject(id_number: str) -> str:
    """An ID number as the access log keeps and searches it: the check character X in upper case, so a lower-case
    x typed by a reader or an auditor matches."""
    return normalise_id_number(id_number.strip())


def subjects_field(subjects: str | Iterable[str] | None) -> str | None:
    if subjects is None:
        return None
    if isinstance(subjects, str):
        subjects = [subjects]
    unique = list(dict.fromkeys(normalised_subject(s) for s in subjects))
    return SUBJECT_SEPARATOR.join(unique) if unique else None


class PrincipalError(ValueError):
    pass


class Principals:
    def __init__(self, store: AggregateStore, clock: Callable[[], dt.datetime],
                 chained: Callable[[Any], bool] | None = None):
        """`chained(stream_id)`: whether the stream's rows are in the audit chain. A principal whose rows are not (a
        row inserted into the events table behind the service's back) does not authenticate."""
        self.store = store
        self.clock = clock
        self.chained = chained
        self._chained_versions: set[tuple[Any, int]] = set()  # linked rows stay linked: checked once per version
        self._ids: list[Any] = []  # the principals' stream ids found in the log up to position `_scanned`
        self._scanned = 0

    def add(self, role: str, name: str, kind: str | None = None, agency_id: str | None = None,
            region: str | None = None, supervisor: bool = False) -> tuple[Principal, str]:
        """Create a principal; returns it and its token (shown once, stored only hashed)."""
        try:
            role = Role(role)
        except ValueError:
            raise PrincipalError(f"unknown role {role!r}; one of {', '.join(Role)}") from None
        if not name.strip():
            raise PrincipalError("a principal needs a --name")
        if role is Role.PUBLISHER:
            if not (kind and agency_id and region):
                raise PrincipalError("a publisher needs --kind, --id and --region (the agency it publishes as)")
            if kind not in set(AgencyKind):
                raise PrincipalError(f"unknown agency kind {kind!r}; one of {', '.join(AgencyKind)}")
            if region_problem(region):
                raise PrincipalError(f"--region {region}: {region_problem(region)}")
        elif role is Role.OVERSIGHT:
            if not region or not region.isdigit() or not 2 <= len(region) <= 6:
                raise PrincipalError("oversight needs --region: a region code or its prefix (52, 5202, 520222)")
            # The officer's own agency (a procuratorate issues notices as itself), when given.
            if kind not in (None, "procuratorate", "bureau"):
                raise PrincipalError("oversight --kind: procuratorate or bureau (the officer's own agency)")
            if (kind is None) != (agency_id is None):
                raise PrincipalError("oversight: give --kind and --id together (the officer's own agency)")
        else:
            kind = agency_id = region = None
        token = secrets.token_urlsafe(32)
        if supervisor and role is not Role.OVERSIGHT:
            raise PrincipalError("--supervisor is a variant of the oversight role")
        principal = Principal(token_hash(token), str(role), name.strip(), kind, agency_id, region,
                              self.clock().isoformat(), supervisor=supervisor)
        self.store.save(principal)
        return principal, token

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        return self.trusted(self.store.get_aggregate(Principal.create_id(token_hash(token))))

    def trusted(self, principal: Any) -> Principal | None:
        """The principal if it is one, active, and its rows are in the audit chain; else None."""
        if not isinstance(principal, Principal) or not principal.active:
            return None
        if self.chained is not None and (principal.id, principal.version) not in self._chained_versions:
            if not self.chained(principal.id):
                log.error("ALERT a principal not in the audit chain tried to authenticate: %s (see `handoff audit "
                          "verify`)", principal.id)
                return None
            self._chained_versions.add((principal.id, principal.version))
        return principal

    def active(self, principal_id: str) -> Principal | None:
        """The principal of this id while it may act (a dashboard session's)."""
        return self.trusted(self.get(principal_id))

    def get(self, principal_id: str) -> Principal | None:
        import uuid

        try:
            return self.store.get_aggregate(uuid.UUID(principal_id))
        except ValueError:
            return None

    def revoke(self, principal_id: str, reason: str = "revoked") -> Principal:
        principal = self.get(principal_id)
        if principal is None or not isinstance(principal, Principal):
            raise PrincipalError(f"no principal {principal_id}")
        if principal.active:
            principal.revoke(reason, self.clock().isoformat())
            self.store.save(principal)
        return principal

    def all(self) -> list[Principal]:
        """Every principal, in the order they were made. The log is read once, then only beyond where it was read
        (the log holds every event; principals are a handful of them)."""
        head = self.store.head()
        while self._scanned < head:
            page = self.store.originators_after([PRINCIPAL_TOPIC], self._scanned + 1, stop=head)
            self._ids.extend(stream_id for _, stream_id in page)
            self._scanned = page[-1][0] if len(page) == PAGE else head
        return [self.store.get_aggregate(stream_id) for stream_id in self._ids]

    # -- the access log -----------------------------------------------------------------------------------------

    def record_access(self, principal: Principal, action: str, subjects: str | Iterable[str] | None) -> None:
        """One record per read: `subjects` is the ID number read, or those a list showed (a page of gaps)."""
        self.store.save(AccessRecorded(str(principal.id), str(principal.role), principal.name, action,
                                       subjects_field(subjects), self.clock().isoformat()))

    def access_log(self, limit: int = 100, offset: int = 0, subject: str | None = None) -> list[dict[str, Any]]:
        records = []
        for access in self.store.events_of_topic(ACCESS_TOPIC):
            subjects = access.subject.split(SUBJECT_SEPARATOR) if access.subject else []
            if subject is None or normalised_subject(subject) in map(normalised_subject, subjects):
                records.append({"principal": access.principal, "role": access.role, "name": access.name,
                                "action": access.action, "subject": subjects[0] if len(subjects) == 1 else None,
                                "subjects": subjects, "at": access.at})
        records.reverse()  # newest first
        return records[offset:offset + limit]


class DashboardSessions:
    """Dashboard logins: a token checked once, then a server-side session (adapters/sessions.py) whose id is the
    only thing in the browser. A session ends at logout, after its idle or absolute timeout, or as soon as its
    principal is revoked."""

    def __init__(self, store: SessionStore, principals: Principals, clock: Callable[[], dt.datetime]):
        self.store, self.principals, self.clock = store, principals, clock

    def _now(self) -> int:
        return int(self.clock().timestamp())

    def open(self, token: str) -> tuple[str, Principal, Session] | None:
        principal = self.principals.authenticate(token)
        if principal is None:
            return None
        session_id, session = self.store.open(str(principal.id), self._now())
        return session_id, principal, session

    def resolve(self, session_id: str | None) -> tuple[Principal, Session] | None:
        session = self.store.get(session_id, self._now())
        if session is None:
            return None
        principal = self.principals.active(session.principal_id)
        if principal is None:  # revoked meanwhile: the session dies with it
            self.store.close_session(session_id or "")
            return None
        return principal, session

    def close(self, session_id: str) -> None:
        self.store.close_session(session_id)
