"""Who is who: the queue of probable matches (疑似同一人) and the links officers publish from it.

Probable matches are person keys with the same normalised name and birth date (adapters/readmodel.py
`probable_matches`) whose persons no link joins now. An officer links a group (each other key `identity_linked` to
the one kept, published in the name of the officer's agency, or by an admin in the name of the agency that made the
error) or dismisses it with a reason (kept as a `CandidateReview`). The links change every view through the
projection (domain/merging.py); the queue is computed when asked, so it is always current.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from domain.candidates import CandidateReview, candidate_id
from domain.catalog import AgencyKind
from domain.identity import (ID_TYPE_LABELS, country, key_birth_date, key_document, key_person_document,
                             typed_person_key)
from domain.leads import Actor
from domain.merging import root_at, roots
from domain.authorisation import PublisherIdentity
from services.ingest import Source

LINK_NAMESPACE = uuid.UUID("9d7f1b2a-6c3e-4a5d-8e9f-0a1b2c3d4e5f")
LINK_ACTIONS = {"link": "identity_linked", "unlink": "identity_unlinked"}


class IdentityRefused(Exception):
    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def described_key(key: str) -> dict[str, Any]:
    """A key as a reader sees it: the document's type in Chinese and English, its number, a nationality's names."""
    id_type, number, nationality = key_document(key)
    chinese, english = ID_TYPE_LABELS[id_type]
    described = {"id_number": key, "id_type": id_type.value, "document": chinese, "document_en": english,
                 "number": number, "nationality": None}
    if nationality:
        names = country(nationality)
        described["nationality"] = {"code": nationality, "name": names[0] if names else nationality,
                                    "name_en": names[1] if names else nationality}
    birth = key_birth_date(key)
    described["birth_date"] = birth.isoformat() if birth else None
    return described


class IdentityReview:
    def __init__(self, store: Any, read_model: Any, ingestor: Any, clock: Callable[[], dt.datetime]):
        self.store = store
        self.read_model = read_model
        self.ingestor = ingestor
        self.clock = clock

    def candidates(self, visible: Callable[[str | None], bool]) -> list[dict[str, Any]]:
        """The groups of probable matches an officer may see (any member in their scope), not linked now and not
        dismissed, most members first."""
        groups = self.read_model.probable_matches()
        pieces = roots(self.read_model.identity_links({m["id_number"] for group in groups for m in group}))
        found = []
        for members in groups:
            by_root: dict[str, list[dict[str, Any]]] = {}
            for member in members:
                by_root.setdefault(root_at(pieces, member["id_number"], None), []).append(member)
            if len(by_root) < 2 or not any(visible(member["region"]) for member in members):
                continue
            candidate = candidate_id(by_root)
            if self.store.get_aggregate(uuid.UUID(candidate)) is not None:
                continue  # dismissed
            shown = [{**described_key(root), "name": group[0]["name"], "region": group[0]["region"],
                      "keys": sorted(m["id_number"] for m in group)} for root, group in sorted(by_root.items())]
            birth = next((m["birth_date"] for m in shown if m["birth_date"]), None)
            found.append({"candidate_id": candidate, "name": shown[0]["name"], "birth_date": birth,
                          "members": shown})
        return sorted(found, key=lambda c: (-len(c["members"]), c["name"], c["candidate_id"]))

    def candidate(self, candidate: str, visible: Callable[[str | None], bool]) -> dict[str, Any]:
        found = next((c for c in self.candidates(visible) if c["candidate_id"] == candidate), None)
        if found is None:
            raise IdentityRefused("not_found", "没有这组疑似同一人（已处理或不在辖区内） / no such probable match "
                                               "(already decided, or outside your scope)", 404)
        return found

    def link_candidate(self, candidate: str, keep: str, reason: str, actor: Actor, visible: Callable,
                       agency: dict[str, str] | None = None) -> dict[str, Any]:
        """Link every other member of the group to `keep` (one event each, published as `publisher`)."""
        found = self.candidate(candidate, visible)
        keys = [member["id_number"] for member in found["members"]]
        if keep not in keys:
            raise IdentityRefused("invalid_action", f"保留的人员键 {keep!r} 不在这组中 / {keep!r} is not one of the "
                                                    f"group's keys")
        names = {member["id_number"]: member["name"] for member in found["members"]}
        published = [self.publish("link", key, keep, reason, actor, agency, names[key]) for key in keys
                     if key != keep]
        return {"candidate_id": candidate, "kept": keep, "events": published}

    def dismiss(self, candidate: str, reason: str, actor: Actor, visible: Callable) -> dict[str, Any]:
        found = self.candidate(candidate, visible)
        if not reason.strip():
            raise IdentityRefused("invalid_action", "请写明不是同一人的理由 / a reason is required")
        review = CandidateReview(candidate=candidate, keys=[m["id_number"] for m in found["members"]],
                                 reason=reason.strip()[:500], by=actor.id, by_name=actor.name,
                                 at=self.clock().isoformat())
        self.store.save(review)
        return {"candidate_id": candidate, "dismissed": True, "reason": review.reason}

    def publish(self, action: str, source: str, target: str, reason: str, actor: Actor | None,
                agency: dict[str, str] | None = None, name: str | None = None) -> dict[str, Any]:
        """Publish `identity_linked` (action link) or `identity_unlinked` (unlink): `source` is (no longer) the
        person `target` names. In the name of the actor's agency, or of `agency` (an admin's, who has none)."""
        if action not in LINK_ACTIONS:
            raise IdentityRefused("invalid_action", "action 应为 link 或 unlink / action: link or unlink")
        keys = []
        for typed in (source, target):
            key, problem = typed_person_key(typed)
            if problem:
                raise IdentityRefused("invalid_id_number", problem)
            keys.append(key)
        source, target = keys
        if not reason or not reason.strip():
            raise IdentityRefused("invalid_action", "请写明理由 / a reason is required")
        publisher = self._publisher(actor, agency)
        if name is None:
            name = self.read_model.identity_names([source]).get(source)
            if name is None:
                raise IdentityRefused("not_found", f"没有人员键 {source} 的记录 / no person on record under {source}",
                                      404)
        now = self.clock()
        event_id = str(uuid.uuid5(LINK_NAMESPACE, f"{action}|{source}|{target}|{now.isoformat()}"))
        envelope = {
            "event_id": event_id, "event_type": LINK_ACTIONS[action], "schema_version": 2,
            "agency": {"kind": str(publisher.kind), "id": publisher.id, "region": publisher.region},
            "person": {**key_person_document(source), "name": name}, "occurred_at": now.isoformat(),
            "payload": {"other": key_person_document(target), "reason": reason.strip()[:4000]},
        }
        result = self.ingestor.ingest([envelope], Source(name=f"identity:{publisher.id}", publisher=publisher))
        item = result.items[0]
        if item.status == "rejected":
            raise IdentityRefused("invalid_action", f"未能发布 / refused: {item.reason}")
        return {"event_id": event_id, "event_type": LINK_ACTIONS[action], "person": source, "other": target}

    @staticmethod
    def _publisher(actor: Actor | None, agency: dict[str, str] | None) -> PublisherIdentity:
        if agency:
            try:
                kind = AgencyKind(agency.get("kind"))
            except ValueError:
                raise IdentityRefused("invalid_action", "agency.kind 无效 / agency.kind is not an agency kind") from None
            if not agency.get("id") or not agency.get("region"):
                raise IdentityRefused("invalid_action", "请写明出错的机关 agency {kind, id, region} / agency {kind, id, "
                                                        "region} is required")
            return PublisherIdentity(kind=kind, id=agency["id"], region=agency["region"])
        if actor is None or not actor.agency_kind or not actor.agency_id:
            raise IdentityRefused("needs_agency", "以本机关名义发布须有机关身份（principal --kind --id），或写明出错的机关 "
                                                  "agency / publishing needs the officer's agency (or an agency named)",
                                  403)
        return PublisherIdentity(kind=AgencyKind(actor.agency_kind), id=actor.agency_id,
                                 region=(actor.region or "").ljust(6, "0"))


def keys_of(candidates: Sequence[dict[str, Any]]) -> list[str]:
    """Every key the candidates show (for the access log)."""
    return [key for c in candidates for member in c["members"] for key in member["keys"]]
