"""Jurisdiction (管辖): which agency may act on a person under community correction, and on what legal basis.

An event by an agency outside this table is kept (nothing is ever dropped) but changes no status, obligation or
register figure: the fold records it as the anomaly `A10_outside_jurisdiction` with the reason. It is decided in
the fold, from the person's episode as it stands at the event's valid time, so arrival order cannot change it.

Events not in the table are not restricted: a decision opens its own episode (any court may decide); police detain,
pursue and record deaths wherever the person is (Law 32, 50, 51); custodians (prisons, detention centres) release,
transfer and take into custody wherever they are; the procuratorate's notices and reviews change no status, and
reports and enrolments keep their own check (`A02_region_mismatch`: an enrolment by the bureau of another region
without a transfer).

Regions are 6-digit codes (GB/T 2260). An agency of a higher level covers the regions below it: a city's
(`520200`) covers `5202xx`, a province's (`520000`) covers `52xxxx`; the agency's own region is what it publishes in
its envelope.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Competence:
    """Who may publish an event type for a person with an episode on record."""

    title: str  # Chinese label for users
    who: str  # SUPERVISING_BUREAU or DECISION_ORGAN
    basis: str  # the legal basis


# The bureau of the region where the person is supervised: the execution region, the current one after a change of
# 执行地, the destination of a decided transfer, or a bureau above one of them.
SUPERVISING_BUREAU = "supervising_bureau"
# The organ that made the decision (same kind and id), or an organ of its kind for the decision's region, the
# execution region or the current one, or above them.
DECISION_ORGAN = "decision_organ"
# A court: the deciding one or one for those regions, whoever made the decision (the 执行地中级人民法院 rules on a
# reduction of a prison-approved 暂予监外执行, Law 33).
COURT = "court"

_BUREAU_ACTS = {
    "documents_receipted": "Law 20",
    "contact_lost": "Law 30",
    "police_assistance_requested": "Law 30",
    "contact_restored": "Law 30",
    "warning_issued": "Law 28",
    "revocation_proposed": "Law 46, 47",
    "commitment_proposed": "Law 49",
    "transfer_decided": "Law 27",
    "transfer_file_sent": "Law 27",
    "monitoring_started": "Law 29",
    "monitoring_extended": "Law 29",
    "monitoring_ended": "Law 29",
    "discharged": "Law 44",
}
_ORGAN_ACTS = {
    "bureau_notified": "Law 20",
    "documents_delivered": "Law 20",
    "commitment_decided": "Law 49",
}
_COURT_ACTS = {
    "term_changed": "Law 33",
    "arrest_decided": "Law 47",
    "revocation_ruled": "Law 46, 48",
}

JURISDICTION: dict[str, Competence] = {
    **{event_type: Competence("执行地社区矫正机构", SUPERVISING_BUREAU, basis)
       for event_type, basis in _BUREAU_ACTS.items()},
    **{event_type: Competence("决定机关", DECISION_ORGAN, basis) for event_type, basis in _ORGAN_ACTS.items()},
    **{event_type: Competence("原判或执行地人民法院", COURT, basis) for event_type, basis in _COURT_ACTS.items()},
}
# A death recorded by a bureau ends supervision: the supervising bureau's (police record deaths anywhere).
_BUREAU_ONLY = {"death_recorded": Competence("执行地社区矫正机构", SUPERVISING_BUREAU, "Law 51")}


def covers(agency_region: str, region: str | None) -> bool:
    """Whether an agency of `agency_region` is competent for `region`: the same, or a city/province above it."""
    if region is None:
        return False
    if agency_region == region:
        return True
    if agency_region.endswith("0000"):
        return region.startswith(agency_region[:2])
    if agency_region.endswith("00"):
        return region.startswith(agency_region[:4])
    return False


@dataclass(frozen=True)
class Supervision:
    """What of a person's episode decides jurisdiction (a view the fold builds; nothing here reads events)."""

    decision_kind: str
    decision_id: str
    decision_region: str
    execution_region: str
    current_region: str
    supervising_regions: Iterable[str]  # the execution region, the current one and decided transfers' destinations


def outside_jurisdiction(event_type: str, kind: str, agency_id: str, region: str,
                         supervision: Supervision) -> str | None:
    """The reason an act is outside the agency's jurisdiction (Chinese / English), or None when it may act."""
    competence = JURISDICTION.get(event_type) or (_BUREAU_ONLY.get(event_type) if kind == "bureau" else None)
    if competence is None:
        return None
    if competence.who == SUPERVISING_BUREAU:
        regions = sorted(set(supervision.supervising_regions))
        if kind == "bureau" and any(covers(region, r) for r in regions):
            return None
        return (f"{region} 的{_KIND_LABELS.get(kind, kind)}对执行地为 {'/'.join(regions)} 的社区矫正对象无管辖权"
                f"（{competence.basis}） / a {kind} of {region} has no jurisdiction over a person supervised in "
                f"{'/'.join(regions)} ({competence.basis})")
    organ_regions = {supervision.decision_region, supervision.execution_region, supervision.current_region}
    organ_kind = "court" if competence.who == COURT else supervision.decision_kind
    if kind == organ_kind and (
        (kind == supervision.decision_kind and agency_id == supervision.decision_id)
        or any(covers(region, r) for r in organ_regions)
    ):
        return None
    if competence.who == COURT:
        return (f"{region} 的{_KIND_LABELS.get(kind, kind)} {agency_id} 不是原判人民法院，也不是执行地人民法院"
                f"（{competence.basis}） / {kind} {agency_id} of {region} is neither the deciding court nor a court "
                f"for the execution region ({competence.basis})")
    return (f"{region} 的{_KIND_LABELS.get(kind, kind)} {agency_id} 不是决定机关（{supervision.decision_kind} "
            f"{supervision.decision_id}）或执行地同级机关（{competence.basis}） / {kind} {agency_id} of {region} is "
            f"not the decision organ ({supervision.decision_kind} {supervision.decision_id}) nor one of its kind for "
            f"the execution region ({competence.basis})")


_KIND_LABELS = {"court": "人民法院", "procuratorate": "人民检察院", "police": "公安机关", "prison": "监狱",
                "bureau": "社区矫正机构"}


def describe() -> list[dict[str, str]]:
    """The table, for `handoff rules` and docs/rules.md."""
    table = [{"event_type": event_type, "who": c.who, "title": c.title, "basis": c.basis}
             for event_type, c in JURISDICTION.items()]
    table += [{"event_type": event_type, "who": c.who, "title": c.title + "（公安机关不限）", "basis": c.basis}
              for event_type, c in _BUREAU_ONLY.items()]
    return table
