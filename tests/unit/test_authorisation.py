"""Who may publish what (domain.md "Event catalog", publishers column), and only as itself."""

from __future__ import annotations

import pytest

from domain.authorisation import PublisherIdentity, authorise
from domain.catalog import AgencyKind
from domain.envelope import parse_event
from domain.errors import Rejected, RejectionCode

from .factories import AGENCIES, AGENCY_KINDS, CATALOG_TYPES, envelope, payload

C, J, G, P, B = "court", "procuratorate", "police", "prison", "bureau"
DECISION_ORGAN = {C, P, G}  # court; prison and police for 暂予监外执行

# Written from domain.md's table, row by row.
PUBLISHERS: dict[str, set[str]] = {
    "assessment_requested": {C, J, P, G},
    "assessment_reported": {B},
    "decision_effective": {C, P, G},  # prison and police only for temporary_release: see below
    "bureau_notified": DECISION_ORGAN,
    "documents_delivered": DECISION_ORGAN,
    "documents_receipted": {B},
    "prisoner_released": {P, G},
    "subject_transferred": {G, P},
    "subject_reported": {B},
    "subject_enrolled": {B},
    "contact_lost": {B},
    "police_assistance_requested": {B},
    "contact_restored": {B},
    "warning_issued": {B},
    "detention_started": {G},
    "detention_ended": {G},
    "revocation_proposed": {B},
    "commitment_proposed": {B},
    "arrest_decided": {C},
    "revocation_ruled": {C},
    "commitment_decided": {C, P, G},
    "committed_to_custody": {G, P},
    "pursuit_started": {G},
    "fugitive_captured": {G},
    "transfer_decided": {B},
    "transfer_file_sent": {B},
    "term_changed": {C},
    "monitoring_started": {B},
    "monitoring_extended": {B},
    "monitoring_ended": {B},
    "discharged": {B},
    "death_recorded": {B, G},
    "procuratorial_notice_issued": {J},
    "notice_replied": {C, G, P, B},
    "supervision_review_recorded": {J},
    "event_retracted": {C, J, G, P, B},
    "identity_linked": {C, J, G, P, B},
    "identity_unlinked": {C, J, G, P, B},
    "roster_discrepancy_found": {C, G, B},  # the agency whose list it is  # the original publisher: checked against the stream (test_person.py)
}

TRUSTED = PublisherIdentity.trusted_operator()


def parsed(event_type, kind, body=None, agency=None):
    if body is None and event_type == "decision_effective":
        body = payload("decision_effective", category="temporary_release")
    return parse_event(envelope(event_type, body, agency=agency or kind))


def test_table_covers_every_type_and_kind():
    assert sorted(PUBLISHERS) == sorted(CATALOG_TYPES)
    assert set(AGENCY_KINDS) == set(AgencyKind)


@pytest.mark.parametrize(
    ("event_type", "kind", "allowed"),
    [
        pytest.param(event_type, kind, kind in kinds, id=f"{kind}-{event_type}-{'ok' if kind in kinds else 'no'}")
        for event_type, kinds in PUBLISHERS.items()
        for kind in AGENCY_KINDS
    ],
)
def test_publisher_table(event_type, kind, allowed):
    event = parsed(event_type, kind)
    if allowed:
        authorise(event, TRUSTED)
        authorise(event, PublisherIdentity(kind=AgencyKind(kind)))
        authorise(event, PublisherIdentity(**AGENCIES[kind]))
    else:
        with pytest.raises(Rejected) as info:
            authorise(event, TRUSTED)
        assert info.value.code == RejectionCode.FORBIDDEN_EVENT_TYPE
        assert event_type in info.value.reason


@pytest.mark.parametrize(
    ("kind", "category", "allowed"),
    [
        (C, "control", True),
        (C, "probation", True),
        (C, "parole", True),
        (C, "temporary_release", True),
        (P, "control", False),
        (P, "probation", False),
        (P, "parole", False),
        (P, "temporary_release", True),
        (G, "control", False),
        (G, "probation", False),
        (G, "parole", False),
        (G, "temporary_release", True),
        (J, "temporary_release", False),
        (B, "temporary_release", False),
        (J, "probation", False),
        (B, "probation", False),
    ],
)
def test_decision_effective_by_category(kind, category, allowed):
    event = parsed("decision_effective", kind, payload("decision_effective", category=category))
    if allowed:
        authorise(event, TRUSTED)
    else:
        with pytest.raises(Rejected) as info:
            authorise(event, TRUSTED)
        assert info.value.code == RejectionCode.FORBIDDEN_EVENT_TYPE


# --- only as itself --------------------------------------------------------------------------------------------

COURT = AGENCIES["court"]  # {"kind": "court", "id": "FY-520222-01", "region": "520222"}


@pytest.mark.parametrize(
    "identity",
    [
        PublisherIdentity(kind=AgencyKind.BUREAU, id=COURT["id"], region=COURT["region"]),
        PublisherIdentity(kind=AgencyKind.COURT, id="FY-520222-02", region=COURT["region"]),
        PublisherIdentity(kind=AgencyKind.COURT, id=COURT["id"], region="520221"),
        PublisherIdentity(kind=AgencyKind.PROCURATORATE),
        PublisherIdentity(id="FY-520222-02"),
        PublisherIdentity(region="632801"),
    ],
    ids=["other-kind", "other-id", "other-region", "only-kind-differs", "only-id-differs", "only-region-differs"],
)
def test_publishing_as_another_agency_is_refused(identity):
    event = parsed("arrest_decided", C)
    with pytest.raises(Rejected) as info:
        authorise(event, identity)
    assert info.value.code == RejectionCode.NOT_AS_ITSELF


def test_not_as_itself_comes_before_the_publisher_table():
    # A bureau pretending to be a court publishing a court-only type is refused as not itself.
    with pytest.raises(Rejected) as info:
        authorise(parsed("arrest_decided", C), PublisherIdentity(kind=AgencyKind.BUREAU))
    assert info.value.code == RejectionCode.NOT_AS_ITSELF


def test_full_identity_of_the_envelope_agency_is_accepted():
    authorise(parsed("arrest_decided", C), PublisherIdentity(kind=AgencyKind.COURT, id=COURT["id"], region="520222"))


@pytest.mark.parametrize(
    "agency",
    [
        COURT,
        {"kind": "court", "id": "FY-632801-07", "region": "632801"},
        {"kind": "court", "id": "FY-110105-01", "region": "110105"},
    ],
)
def test_identity_with_only_the_kind_accepts_any_agency_of_that_kind(agency):
    authorise(parsed("arrest_decided", C, agency=agency), PublisherIdentity(kind=AgencyKind.COURT))


def test_identity_kind_may_be_a_plain_string():
    authorise(parsed("arrest_decided", C), PublisherIdentity(kind="court"))  # type: ignore[arg-type]


def test_trusted_operator_pins_nothing():
    assert PublisherIdentity.trusted_operator() == PublisherIdentity(kind=None, id=None, region=None)
    for agency in ({"kind": "court", "id": "ANY", "region": "632801"}, COURT):
        authorise(parsed("arrest_decided", C, agency=agency), TRUSTED)


def test_authenticated_agency_is_still_bound_by_the_table():
    bureau = PublisherIdentity(**AGENCIES["bureau"])
    with pytest.raises(Rejected) as info:
        authorise(parsed("arrest_decided", B), bureau)
    assert info.value.code == RejectionCode.FORBIDDEN_EVENT_TYPE
