"""Jurisdiction (domain/jurisdiction.py): an act outside it is kept as A10_outside_jurisdiction and changes nothing.

The finding of issue #14: the bureau of 520222 published `discharged` for a person missing in 520221, and the person
left 520221's register. Here the person is supervised in 520222 (the histories' default) and the foreign bureau is
520221's."""

from __future__ import annotations

import pytest

from domain.jurisdiction import JURISDICTION, covers, describe
from domain.supervision import SAME_INSTANT_ORDER
from tests.unit.histories import eid, of_rule, only, retraction, view

DECISION = ("dec", "decision_effective", "court", "2024-03-06 10:00")
ENROLLED = ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00", {"region": "520222"})
MISSING = ("lost", "contact_lost", "bureau", "2024-05-10 10:00")
FOREIGN_DISCHARGE = ("foreign", "discharged", "bureau@520221", "2024-05-20 10:00", {"certificate_no": "JJ-1"})


def test_a_bureau_of_another_region_cannot_discharge_a_missing_person():
    steps = (DECISION, ENROLLED, MISSING, FOREIGN_DISCHARGE)
    person = view(steps, "2024-06-30")
    assert person.status == "missing"
    assert person.episode.ended is None and person.region == "520222"
    assert person.responsible == {"kind": "bureau", "region": "520222"}
    anomaly = only(person, "A10_outside_jurisdiction")
    assert anomaly.triggered_by == eid("foreign") and anomaly.obligated_region == "520221"
    assert "520221" in anomaly.reason and "520222" in anomaly.reason and "Law 44" in anomaly.reason
    assert anomaly.state(person.as_of) == "open"
    # The missing person's 脱管 gap is still open: the foreign discharge closed nothing.
    assert only(person, "R13_missing_unresolved").is_open


def test_the_foreign_act_retracted_by_its_publisher_leaves_no_anomaly():
    steps = (DECISION, ENROLLED, MISSING, FOREIGN_DISCHARGE)
    person = view(steps + (retraction(steps, "foreign", "2024-05-21 10:00"),), "2024-06-30")
    assert of_rule(person, "A10_outside_jurisdiction") == [] and person.status == "missing"


def test_the_supervising_bureau_discharges():
    person = view((DECISION, ENROLLED, ("dis", "discharged", "bureau", "2025-03-06 10:00")), "2025-03-10")
    assert person.status == "discharged" and of_rule(person, "A10_outside_jurisdiction") == []


def test_the_city_bureau_above_the_execution_region_may_act():
    person = view((DECISION, ENROLLED, ("w", "warning_issued", "bureau@520200", "2024-05-20 10:00")), "2024-06-30")
    assert of_rule(person, "A10_outside_jurisdiction") == []


def test_after_a_decided_transfer_the_new_regions_bureau_may_act():
    steps = (DECISION, ENROLLED, ("tr", "transfer_decided", "bureau", "2024-05-01 10:00", {"new_region": "632801"}),
             ("enr2", "subject_enrolled", "bureau@632801", "2024-05-05 10:00", {"region": "632801"}),
             ("lost2", "contact_lost", "bureau@632801", "2024-06-01 10:00"))
    person = view(steps, "2024-06-30")
    assert person.status == "missing" and person.region == "632801"
    assert of_rule(person, "A10_outside_jurisdiction") == []


def test_a_transfer_decided_by_a_foreign_bureau_opens_no_destination():
    steps = (DECISION, ENROLLED,
             ("tr", "transfer_decided", "bureau@520221", "2024-05-01 10:00", {"new_region": "520221"}),
             ("enr2", "subject_enrolled", "bureau@520221", "2024-05-05 10:00", {"region": "520221"}))
    person = view(steps, "2024-06-30")
    assert person.region == "520222" and person.status == "under_supervision"
    assert [o.triggered_by for o in of_rule(person, "A10_outside_jurisdiction")] == [eid("tr")]
    # The enrolment in a region not decided keeps its own anomaly (A02), as before.
    assert only(person, "A02_region_mismatch").triggered_by == eid("enr2")
    assert of_rule(person, "R07_transfer_file_not_sent") == [] and of_rule(person, "R08_transfer_not_received") == []


def test_a_court_neither_deciding_nor_of_the_execution_region_cannot_revoke():
    steps = (DECISION, ENROLLED, ("prop", "revocation_proposed", "bureau", "2024-05-01 10:00"),
             ("rule", "revocation_ruled", "court@520221", "2024-05-10 10:00", {"revoked": True}))
    person = view(steps, "2024-05-12")
    assert person.status == "revocation_pending"
    assert only(person, "A10_outside_jurisdiction").triggered_by == eid("rule")
    assert of_rule(person, "R11_commitment_not_executed") == []


def test_the_intermediate_court_of_the_execution_region_changes_the_term():
    steps = (DECISION, ENROLLED, ("tc", "term_changed", "court@520200", "2024-08-01 10:00",
                                  {"new_term_end": "2024-12-31", "reason": "减刑"}))
    person = view(steps, "2024-08-02")
    assert person.episode.term_end.isoformat() == "2024-12-31"
    assert of_rule(person, "A10_outside_jurisdiction") == []


def test_police_detain_wherever_the_person_is():
    steps = (DECISION, ENROLLED, ("det", "detention_started", "police@632801", "2024-05-01 10:00"))
    person = view(steps, "2024-05-02")
    assert person.status == "detained" and of_rule(person, "A10_outside_jurisdiction") == []


@pytest.mark.parametrize("agency_region, region, expected", [
    ("520222", "520222", True), ("520200", "520222", True), ("520000", "520222", True),
    ("520221", "520222", False), ("520200", "520122", False), ("110000", "520222", False), ("520222", None, False),
])
def test_covers_is_the_same_region_or_a_level_above(agency_region, region, expected):
    assert covers(agency_region, region) is expected


def test_the_table_names_only_catalog_event_types_with_a_legal_basis():
    assert set(JURISDICTION) <= set(SAME_INSTANT_ORDER)
    assert all(row["basis"].startswith("Law ") for row in describe())
