"""The rule engine against shared/docs/domain.md and docs/rules.md: every rule R01–R19 opened, met, late, open and
retracted; the CPL 105 day count (holidays, 调休, custody); bitemporal late arrivals; anomalies A01–A04; episode
ends; status priority and the responsible agency; lost supervision days.

Every expected `due_at` is worked out by hand from the official 2024 calendar in the comment next to it
("+N" = the starting day is not counted; "*" = rest day or holiday). The relevant stretches of 2024:

    03-06 Wed  03-09 Sat*  03-10 Sun*  03-11 Mon  03-16 Sat*  03-17 Sun*  03-18 Mon
    03-30 Sat* 03-31 Sun*  04-01 Mon
    05-15 Wed  05-16 Thu
    06-10 Mon* (端午)  06-12 Wed  06-13 Thu  06-15 Sat*  06-16 Sun*  06-17 Mon  06-19 Wed  06-22 Sat*  06-23 Sun*
    06-26 Wed  07-12 Fri  07-13 Sat*
    09-24 Tue  09-26 Thu  09-28 Sat*  09-29 Sun (调休 make-up working day)  09-30 Mon
    10-01 … 10-07 (国庆, all rest days)  10-08 Tue
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from tests.unit.histories import RULES, at, eid, gap_rules, of_rule, only, retraction, view

# -- shared history fragments ---------------------------------------------------------------------------------------

DECISION = ("dec", "decision_effective", "court", "2024-03-06 10:00")
REPORTED = ("rep", "subject_reported", "bureau", "2024-03-07 09:00", {"region": "520222"})
ENROLLED = ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00", {"region": "520222"})
UNDER_SUPERVISION = (DECISION, REPORTED, ENROLLED)


@dataclass(frozen=True)
class RuleCase:
    rule: str
    steps: tuple  # the history up to and including the trigger
    trigger: str  # the name of the triggering event (the one a retraction removes)
    fulfil: tuple  # (event_type, agency, payload changes) of the fulfilling event
    due: str  # the expected due_at, worked out by hand
    before: str  # a moment after the trigger and before due
    in_time: str  # when the fulfilling event occurs in the "met" case (before due)
    late: str  # when it occurs in the "late" case (after due); also the as_of of the "open" case

    def fulfilled(self, when: str) -> tuple:
        event_type, agency, changes = self.fulfil
        return (*self.steps, ("ful", event_type, agency, when, changes))

    @property
    def after(self) -> str:
        """A moment after everything (the as_of of the met / late / retracted cases)."""
        return (at(self.late) + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M")


CASES = [
    # R01: decision Wed 03-06 +5 = Mon 03-11, a working day -> ends 24:00 03-11.
    RuleCase("R01_bureau_not_notified", (DECISION,), "dec",
             ("bureau_notified", "court", {"execution_region": "520222"}),
             due="2024-03-12 00:00", before="2024-03-08 10:00", in_time="2024-03-11 16:00", late="2024-03-12 09:00"),
    # R02: 03-06 +10 = Sat 03-16*; Sun 03-17*; next working day Mon 03-18 -> ends 24:00 03-18.
    RuleCase("R02_documents_not_delivered", (DECISION,), "dec",
             ("documents_delivered", "court", {"execution_region": "520222"}),
             due="2024-03-19 00:00", before="2024-03-12 10:00", in_time="2024-03-18 17:00", late="2024-03-19 09:00"),
    # R03: documents delivered Thu 03-07 +5 = Tue 03-12 (working) -> ends 24:00 03-12.
    RuleCase("R03_receipt_not_returned",
             (DECISION, ("docs", "documents_delivered", "court", "2024-03-07 10:00")), "docs",
             ("documents_receipted", "bureau", {}),
             due="2024-03-13 00:00", before="2024-03-09 10:00", in_time="2024-03-12 18:00", late="2024-03-13 08:00"),
    # R04: probation, not in custody, from the decision: 03-06 +10 = Sat 03-16* -> Mon 03-18 -> ends 24:00 03-18.
    RuleCase("R04_not_reported", (DECISION,), "dec",
             ("subject_reported", "bureau", {"region": "520222"}),
             due="2024-03-19 00:00", before="2024-03-12 10:00", in_time="2024-03-18 17:00", late="2024-03-19 09:00"),
    # R05: temporary_release decided by the prison, person in custody until handed over: 03-06 +10 = Sat 03-16*,
    # but the person is still in custody at that end -> no extension -> ends 24:00 03-16.
    RuleCase("R05_not_transferred",
             (("dec", "decision_effective", "prison", "2024-03-06 10:00",
               {"category": "temporary_release", "in_custody": True}),), "dec",
             ("subject_transferred", "prison", {"to_region": "520222"}),
             due="2024-03-17 00:00", before="2024-03-10 10:00", in_time="2024-03-15 10:00", late="2024-03-18 10:00"),
    # R06: reported Fri 03-08 +3 = Mon 03-11 (working) -> ends 24:00 03-11.
    RuleCase("R06_not_enrolled",
             (DECISION, ("rep", "subject_reported", "bureau", "2024-03-08 10:00", {"region": "520222"})), "rep",
             ("subject_enrolled", "bureau", {"region": "520222"}),
             due="2024-03-12 00:00", before="2024-03-09 12:00", in_time="2024-03-11 15:00", late="2024-03-12 10:00"),
    # R07: transfer decided Wed 06-12 +5 = Mon 06-17 (working) -> ends 24:00 06-17.
    RuleCase("R07_transfer_file_not_sent",
             (*UNDER_SUPERVISION, ("td", "transfer_decided", "bureau", "2024-06-12 10:00", {"new_region": "632801"})),
             "td", ("transfer_file_sent", "bureau", {"new_region": "632801"}),
             due="2024-06-18 00:00", before="2024-06-14 10:00", in_time="2024-06-17 10:00", late="2024-06-18 10:00"),
    # R08: 06-12 +7 = Wed 06-19 (working) -> ends 24:00 06-19; fulfilled by an enrolment in the new region.
    RuleCase("R08_transfer_not_received",
             (*UNDER_SUPERVISION, ("td", "transfer_decided", "bureau", "2024-06-12 10:00", {"new_region": "632801"})),
             "td", ("subject_enrolled", "bureau@632801", {"region": "632801"}),
             due="2024-06-20 00:00", before="2024-06-14 10:00", in_time="2024-06-19 10:00", late="2024-06-20 10:00"),
    # R09: revocation proposed Wed 06-12 +30 = Fri 07-12 (working) -> ends 24:00 07-12.
    RuleCase("R09_ruling_overdue",
             (*UNDER_SUPERVISION, ("rp", "revocation_proposed", "bureau", "2024-06-12 10:00",
                                   {"arrest_requested": False})),
             "rp", ("revocation_ruled", "court", {"revoked": False}),
             due="2024-07-13 00:00", before="2024-06-20 10:00", in_time="2024-07-12 10:00", late="2024-07-15 10:00"),
    # R10: 48 hours exactly from 06-12 10:00 -> 06-14 10:00 (no day rounding, no extension).
    RuleCase("R10_arrest_decision_overdue",
             (*UNDER_SUPERVISION, ("rp", "revocation_proposed", "bureau", "2024-06-12 10:00",
                                   {"arrest_requested": True})),
             "rp", ("arrest_decided", "court", {"arrest": True}),
             due="2024-06-14 10:00", before="2024-06-13 10:00", in_time="2024-06-14 09:00", late="2024-06-14 11:00"),
    # R11: revoked Wed 06-12 +1 = Thu 06-13 (working) -> ends 24:00 06-13.
    RuleCase("R11_commitment_not_executed",
             (*UNDER_SUPERVISION, ("rp", "revocation_proposed", "bureau", "2024-06-03 10:00"),
              ("rr", "revocation_ruled", "court", "2024-06-12 10:00", {"revoked": True})),
             "rr", ("committed_to_custody", "police", {}),
             due="2024-06-14 00:00", before="2024-06-13 10:00", in_time="2024-06-13 20:00", late="2024-06-14 10:00"),
    # R12: 24 hours exactly from 06-12 10:00 -> 06-13 10:00.
    RuleCase("R12_missing_not_escalated",
             (*UNDER_SUPERVISION, ("cl", "contact_lost", "bureau", "2024-06-12 10:00")),
             "cl", ("police_assistance_requested", "bureau", {}),
             due="2024-06-13 10:00", before="2024-06-12 20:00", in_time="2024-06-13 09:00", late="2024-06-13 11:00"),
    # R13: 06-12 +30 = Fri 07-12 (working) -> ends 24:00 07-12.
    RuleCase("R13_missing_unresolved",
             (*UNDER_SUPERVISION, ("cl", "contact_lost", "bureau", "2024-06-12 10:00")),
             "cl", ("contact_restored", "bureau", {}),
             due="2024-07-13 00:00", before="2024-06-20 10:00", in_time="2024-07-12 10:00", late="2024-07-15 10:00"),
    # R15: term_end Wed 06-12; 1 day after it: 06-12 +1 = Thu 06-13 (working) -> ends 24:00 06-13. The triggering
    # event is the decision (which carries term_end).
    RuleCase("R15_not_discharged",
             (("dec", "decision_effective", "court", "2024-03-06 10:00", {"term_end": "2024-06-12"}),
              REPORTED, ENROLLED),
             "dec", ("discharged", "bureau", {"certificate_no": "JJ-2024-0001"}),
             due="2024-06-14 00:00", before="2024-06-13 10:00", in_time="2024-06-13 09:00", late="2024-06-17 10:00"),
    # R16: correction notice Wed 06-12 with reply_within_days 30: +30 = Fri 07-12 -> ends 24:00 07-12.
    RuleCase("R16_notice_reply_overdue",
             (("notice", "procuratorial_notice_issued", "procuratorate", "2024-06-12 10:00",
               {"notice_kind": "correction", "reply_within_days": 30,
                "addressed_to": {"kind": "bureau", "id": "SFJ-520222-01"}}),),
             "notice", ("notice_replied", "bureau", {"notice_event_id": eid("notice")}),
             due="2024-07-13 00:00", before="2024-06-20 10:00", in_time="2024-07-12 10:00", late="2024-07-15 10:00"),
    # R17: 10 working days after Wed 06-12: 13 14 | 17 18 19 20 21 | 24 25 26 -> the 10th is Wed 06-26 -> 24:00 06-26.
    RuleCase("R17_assessment_overdue",
             (("ar", "assessment_requested", "court", "2024-06-12 10:00",
               {"bureau_region": "520222", "expedited": False}),),
             "ar", ("assessment_reported", "bureau", {"opinion": "suitable"}),
             due="2024-06-27 00:00", before="2024-06-20 10:00", in_time="2024-06-26 17:00", late="2024-06-27 10:00"),
    # R19: monitoring started Tue 03-12 + 3 months = Wed 06-12 (working) -> ends 24:00 06-12.
    RuleCase("R19_monitoring_overdue",
             (*UNDER_SUPERVISION, ("mon", "monitoring_started", "bureau", "2024-03-12 10:00")),
             "mon", ("monitoring_ended", "bureau", {}),
             due="2024-06-13 00:00", before="2024-06-01 10:00", in_time="2024-06-12 10:00", late="2024-06-13 10:00"),
]
CASE_PARAMS = [pytest.param(case, id=case.rule[:3]) for case in CASES]


def test_the_matrix_covers_every_rule():
    covered = {case.rule for case in CASES} | {case.rule for case in NOTICE_CASES}
    assert sorted(covered) == sorted(rule for rule in RULES.rules if rule.startswith("R"))


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_opened_upcoming_with_due(case: RuleCase):
    person = view(case.steps, as_of=case.before)
    obligation = only(person, case.rule)
    assert obligation.due_at == at(case.due)
    assert obligation.triggered_by == eid(case.trigger)
    assert obligation.state(at(case.before)) == "upcoming"
    assert case.rule not in gap_rules(person, case.before)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_fulfilled_in_time_is_met(case: RuleCase):
    person = view(case.fulfilled(case.in_time), as_of=case.after)
    obligation = only(person, case.rule)
    assert obligation.state(at(case.after)) == "met"
    assert obligation.fulfilled_at == at(case.in_time)
    assert obligation.fulfilled_by == eid("ful")
    assert case.rule not in gap_rules(person, case.after)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_fulfilled_late_is_late_gap(case: RuleCase):
    person = view(case.fulfilled(case.late), as_of=case.after)
    obligation = only(person, case.rule)
    assert obligation.due_at == at(case.due)
    assert obligation.state(at(case.after)) == "late"
    assert obligation.fulfilled_at == at(case.late)
    assert obligation in person.gaps(at(case.after))


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_unfulfilled_after_due_is_open_gap(case: RuleCase):
    person = view(case.steps, as_of=case.late)
    obligation = only(person, case.rule)
    assert obligation.due_at == at(case.due)
    assert obligation.fulfilled_at is None
    assert obligation.state(at(case.late)) == "open"
    assert obligation in person.gaps(at(case.late))


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_retracted_trigger_removes_obligation(case: RuleCase):
    steps = (*case.steps, retraction(case.steps, case.trigger, case.before))
    person = view(steps, as_of=case.after)
    assert of_rule(person, case.rule) == []


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_retraction_not_yet_known_leaves_obligation(case: RuleCase):
    # The retraction is recorded only after known_at: as known then, the trigger still stands.
    retract = (*retraction(case.steps, case.trigger, case.before), case.after)
    steps = (*case.steps, retract)
    person = view(steps, as_of=case.late, known_at=case.late)
    assert only(person, case.rule).state(at(case.late)) == "open"


# -- notice-delay rules: R14 and R18 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeCase:
    rule: str
    name: str
    event_type: str
    agency: str
    occurred: str
    changes: dict
    due: str
    recorded_in_time: str
    recorded_late: str

    def steps(self, recorded: str) -> tuple:
        return (*UNDER_SUPERVISION, (self.name, self.event_type, self.agency, self.occurred, self.changes, recorded))


NOTICE_CASES = [
    # R14: detention at 06-12 10:00 must reach the shared record within 24 hours: due 06-13 10:00 exactly.
    NoticeCase("R14_detention_notice_late", "det", "detention_started", "police", "2024-06-12 10:00",
               {"detention_kind": "administrative"}, due="2024-06-13 10:00",
               recorded_in_time="2024-06-12 18:00", recorded_late="2024-06-14 09:00"),
    # R18: death on 06-12, +5 = Mon 06-17 (working) -> 24:00 06-17.
    NoticeCase("R18_death_notice_late", "death", "death_recorded", "bureau", "2024-06-13 10:00",
               {"date_of_death": "2024-06-12"}, due="2024-06-18 00:00",
               recorded_in_time="2024-06-14 10:00", recorded_late="2024-06-20 10:00"),
]
NOTICE_PARAMS = [pytest.param(case, id=case.rule[:3]) for case in NOTICE_CASES]
LATER = "2024-06-25 10:00"


@pytest.mark.parametrize("case", NOTICE_PARAMS)
def test_notice_recorded_in_time_is_met(case: NoticeCase):
    person = view(case.steps(case.recorded_in_time), as_of=LATER)
    obligation = only(person, case.rule)
    assert obligation.due_at == at(case.due)
    assert obligation.fulfilled_at == at(case.recorded_in_time)  # "fulfilled" when the record arrived
    assert obligation.state(at(LATER)) == "met"
    assert case.rule not in gap_rules(person, LATER)


@pytest.mark.parametrize("case", NOTICE_PARAMS)
def test_notice_recorded_late_is_late_gap(case: NoticeCase):
    person = view(case.steps(case.recorded_late), as_of=LATER)
    obligation = only(person, case.rule)
    assert obligation.due_at == at(case.due)
    assert obligation.fulfilled_at == at(case.recorded_late)
    assert gap_rules(person, LATER)[case.rule] == "late"


@pytest.mark.parametrize("case", NOTICE_PARAMS)
def test_notice_not_yet_known_is_no_gap(case: NoticeCase):
    # Known only up to a moment after the due time but before the late record: the event is not known, so neither
    # is any gap ("only a late gap is possible, and only once the event is known").
    known = (at(case.recorded_late) - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    person = view(case.steps(case.recorded_late), as_of=known, known_at=known)
    assert of_rule(person, case.rule) == []


@pytest.mark.parametrize("case", NOTICE_PARAMS)
def test_notice_delay_looked_back_on_is_open_before_the_record(case: NoticeCase):
    # docs/rules.md, R14/R18: looking back with later knowledge (known_at=None) at a moment between the due time
    # and the late record, the notice was overdue and not yet given: an open gap at that moment.
    between = (at(case.recorded_late) - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    person = view(case.steps(case.recorded_late), as_of=between)
    assert only(person, case.rule).state(at(between)) == "open"


@pytest.mark.parametrize("case", NOTICE_PARAMS)
def test_notice_retracted_removes_obligation(case: NoticeCase):
    steps = case.steps(case.recorded_late)
    steps = (*steps, retraction(steps, case.name, LATER))
    assert of_rule(view(steps, as_of=LATER), case.rule) == []


# -- R15 follows term_changed ----------------------------------------------------------------------------------------

R15_STEPS = (("dec", "decision_effective", "court", "2024-03-06 10:00", {"term_end": "2024-06-12"}),
             REPORTED, ENROLLED,
             ("tc", "term_changed", "court", "2024-04-10 10:00", {"new_term_end": "2024-05-15", "reason": "减刑"}))


def test_r15_term_changed_moves_the_due():
    # New term end Wed 05-15 +1 = Thu 05-16 (working) -> ends 24:00 05-16; triggered by the term change.
    person = view(R15_STEPS, as_of="2024-05-20 10:00")
    obligation = only(person, "R15_not_discharged")
    assert obligation.due_at == at("2024-05-17 00:00")
    assert obligation.triggered_by == eid("tc")
    assert obligation.state(at("2024-05-20 10:00")) == "open"


def test_r15_term_change_retracted_restores_the_original_due():
    steps = (*R15_STEPS, retraction(R15_STEPS, "tc", "2024-04-11 10:00"))
    person = view(steps, as_of="2024-05-20 10:00")
    obligation = only(person, "R15_not_discharged")
    assert obligation.due_at == at("2024-06-14 00:00")
    assert obligation.triggered_by == eid("dec")
    assert obligation.state(at("2024-05-20 10:00")) == "upcoming"


def test_r15_due_extended_over_a_holiday():
    # Term ends Mon 09-30; +1 = Tue 10-01, National Day -> Tue 10-08 -> 24:00 10-08.
    steps = (("dec", "decision_effective", "court", "2024-03-06 10:00", {"term_end": "2024-09-30"}),)
    assert only(view(steps, as_of="2024-09-30 10:00"), "R15_not_discharged").due_at == at("2024-10-09 00:00")


# -- further readings of single rules --------------------------------------------------------------------------------


def test_r16_suggestion_without_reply_days_defaults_to_60_days():
    # 06-12 +60 = Sun 08-11* -> Mon 08-12 -> ends 24:00 08-12.
    steps = (("notice", "procuratorial_notice_issued", "procuratorate", "2024-06-12 10:00",
              {"notice_kind": "suggestion", "reply_within_days": None,
               "addressed_to": {"kind": "bureau", "id": "SFJ-520222-01"}}),)
    assert only(view(steps, as_of="2024-06-13 10:00"), "R16_notice_reply_overdue").due_at == at("2024-08-13 00:00")


def test_r16_reply_by_another_agency_does_not_fulfil():
    steps = (*CASES[[c.rule for c in CASES].index("R16_notice_reply_overdue")].steps,
             ("reply", "notice_replied", "bureau@632801", "2024-07-01 10:00", {"notice_event_id": eid("notice")}))
    person = view(steps, as_of="2024-07-15 10:00")
    assert only(person, "R16_notice_reply_overdue").state(at("2024-07-15 10:00")) == "open"


def test_r17_expedited_is_5_working_days():
    # 5 working days after Wed 06-12: 13 14 | 17 18 19 -> Wed 06-19 -> ends 24:00 06-19.
    steps = (("ar", "assessment_requested", "court", "2024-06-12 10:00",
              {"bureau_region": "520222", "expedited": True}),)
    assert only(view(steps, as_of="2024-06-13 10:00"), "R17_assessment_overdue").due_at == at("2024-06-20 00:00")


def test_r08_enrolment_in_another_region_does_not_fulfil():
    steps = (*UNDER_SUPERVISION, ("td", "transfer_decided", "bureau", "2024-06-12 10:00", {"new_region": "632801"}),
             ("enr2", "subject_enrolled", "bureau", "2024-06-14 10:00", {"region": "520222"}))
    person = view(steps, as_of="2024-06-21 10:00")
    assert only(person, "R08_transfer_not_received").state(at("2024-06-21 10:00")) == "open"


def test_r09_commitment_proposal_obligates_the_proposal_addressee():
    # Commitment proposed Wed 06-12 +30 = Fri 07-12 -> 24:00 07-12; closed by commitment_decided only.
    steps = (("dec", "decision_effective", "prison", "2024-03-06 10:00",
              {"category": "temporary_release", "in_custody": True}),
             ("tr", "subject_transferred", "prison", "2024-03-07 10:00"), ENROLLED,
             ("cp", "commitment_proposed", "bureau", "2024-06-12 10:00", {"to_kind": "prison"}),
             ("rr", "revocation_ruled", "court", "2024-06-20 10:00", {"revoked": False}))
    person = view(steps, as_of="2024-07-15 10:00")
    obligation = only(person, "R09_ruling_overdue")
    assert (obligation.obligated_kind, obligation.obligated_id) == ("prison", "JY-520200-01")
    assert obligation.due_at == at("2024-07-13 00:00")
    assert obligation.state(at("2024-07-15 10:00")) == "open"  # a revocation ruling does not answer it


def test_r11_prison_commitment_decision_obligates_that_prison():
    steps = (("dec", "decision_effective", "prison", "2024-03-06 10:00",
              {"category": "temporary_release", "in_custody": True}),
             ("tr", "subject_transferred", "prison", "2024-03-07 10:00"), ENROLLED,
             ("cp", "commitment_proposed", "bureau", "2024-06-03 10:00", {"to_kind": "prison"}),
             ("cd", "commitment_decided", "prison", "2024-06-12 10:00", {"commit": True}))
    obligation = only(view(steps, as_of="2024-06-12 12:00"), "R11_commitment_not_executed")
    assert (obligation.obligated_kind, obligation.obligated_id) == ("prison", "JY-520200-01")
    assert obligation.due_at == at("2024-06-14 00:00")  # 06-12 +1 = Thu 06-13 -> 24:00 06-13


def test_r13_closed_by_a_revocation_proposal():
    steps = (*UNDER_SUPERVISION, ("cl", "contact_lost", "bureau", "2024-06-12 10:00"),
             ("rp", "revocation_proposed", "bureau", "2024-06-20 10:00"))
    obligation = only(view(steps, as_of="2024-07-20 10:00"), "R13_missing_unresolved")
    assert obligation.fulfilled_at == at("2024-06-20 10:00")
    assert obligation.state(at("2024-07-20 10:00")) == "met"


def test_r06_one_enrolment_closes_every_open_r06():
    steps = (("dec", "decision_effective", "court", "2024-03-06 10:00",
              {"category": "temporary_release", "in_custody": True}),
             ("tr", "subject_transferred", "police", "2024-03-07 10:00"),
             ("rep", "subject_reported", "bureau", "2024-03-08 10:00", {"region": "520222"}),
             ("enr", "subject_enrolled", "bureau", "2024-03-09 10:00", {"region": "520222"}))
    obligations = of_rule(view(steps, as_of="2024-03-20 10:00"), "R06_not_enrolled")
    assert [o.fulfilled_at for o in obligations] == [at("2024-03-09 10:00")] * 2


def test_r19_extension_closes_and_reopens():
    # Started Tue 03-12, extended Mon 06-10 (端午, a holiday: events may happen on one): the first period is met;
    # the new one runs 06-10 + 3 months = Tue 09-10 (working) -> 24:00 09-10.
    steps = (*UNDER_SUPERVISION, ("mon", "monitoring_started", "bureau", "2024-03-12 10:00"),
             ("ext", "monitoring_extended", "bureau", "2024-06-10 10:00"))
    first, second = sorted(of_rule(view(steps, as_of="2024-06-20 10:00"), "R19_monitoring_overdue"),
                           key=lambda o: o.trigger_at)
    assert first.fulfilled_by == eid("ext") and first.state(at("2024-06-20 10:00")) == "met"
    assert second.triggered_by == eid("ext") and second.due_at == at("2024-09-11 00:00")


def test_deadline_counts_from_the_shanghai_date_of_a_utc_timestamp():
    # 2024-03-05T18:30Z is 03-06 02:30 in Shanghai: R01 counts from 03-06 (-> 24:00 03-11), not from 03-05.
    steps = (("dec", "decision_effective", "court", "2024-03-05T18:30:00+00:00"),)
    assert only(view(steps, as_of="2024-03-07 10:00"), "R01_bureau_not_notified").due_at == at("2024-03-12 00:00")


# -- holidays and 调休 (CPL 105) -------------------------------------------------------------------------------------


def test_holiday_extension_over_national_day():
    # R01 from Thu 09-26: +5 = Tue 10-01, National Day; 10-01 … 10-07 are all rest days -> Tue 10-08 -> 24:00 10-08.
    steps = (("dec", "decision_effective", "court", "2024-09-26 10:00"),)
    person = view(steps, as_of="2024-09-27 10:00")
    assert only(person, "R01_bureau_not_notified").due_at == dt.datetime.fromisoformat("2024-10-09T00:00:00+08:00")


def test_period_ending_on_a_make_up_working_day_is_not_extended():
    # R01 from Tue 09-24: +5 = Sun 09-29, a 调休 make-up working day -> ends there, 24:00 09-29 (not 09-30 or later).
    steps = (("dec", "decision_effective", "court", "2024-09-24 10:00"),)
    person = view(steps, as_of="2024-09-25 10:00")
    assert only(person, "R01_bureau_not_notified").due_at == dt.datetime.fromisoformat("2024-09-30T00:00:00+08:00")


@pytest.mark.parametrize("in_custody, due", [
    # R05 from Mon 09-23: +10 = Thu 10-03, a National Day holiday.
    (True, "2024-10-04 00:00"),  # in custody at the period's end: no extension -> 24:00 10-03
    (False, "2024-10-09 00:00"),  # not in custody: extended over 10-03 … 10-07 to Tue 10-08 -> 24:00 10-08
])
def test_in_custody_exception_to_the_holiday_extension(in_custody, due):
    steps = (("dec", "decision_effective", "police", "2024-09-23 10:00",
              {"category": "temporary_release", "in_custody": in_custody}),)
    person = view(steps, as_of="2024-09-24 10:00")
    obligation = only(person, "R05_not_transferred")
    assert obligation.due_at == at(due)
    assert (obligation.obligated_kind, obligation.obligated_id) == ("police", "GA-520222-01")


@pytest.mark.parametrize("detained, due", [
    # R04 from Mon 09-23: +10 = Thu 10-03, a National Day holiday.
    (True, "2024-10-04 00:00"),  # in police detention at the period's end: no extension -> 24:00 10-03
    (False, "2024-10-09 00:00"),  # free: extended to Tue 10-08 -> 24:00 10-08
])
def test_police_detention_counts_as_custody_for_the_extension(detained, due):
    steps = (("dec", "decision_effective", "court", "2024-09-23 10:00"),
             *([("det", "detention_started", "police", "2024-10-02 10:00")] if detained else []))
    assert only(view(steps, as_of="2024-10-02 12:00"), "R04_not_reported").due_at == at(due)


# -- R04 from the release of a parolee -------------------------------------------------------------------------------

PAROLE = ("dec", "decision_effective", "court", "2024-03-06 10:00", {"category": "parole", "in_custody": True})
RELEASE = ("rel", "prisoner_released", "prison", "2024-03-20 10:00", {"to_region": "520222"})


def test_r04_parolee_in_custody_has_no_due_until_released():
    # 14 days after the decision, still in prison: the period has not started, no due, no gap.
    person = view((PAROLE,), as_of="2024-03-20 09:00")
    obligation = only(person, "R04_not_reported")
    assert obligation.due_at is None
    assert obligation.state(at("2024-03-20 09:00")) == "pending"
    assert "R04_not_reported" not in gap_rules(person, "2024-03-20 09:00")


def test_r04_parolee_counts_from_the_release():
    # Released Wed 03-20: +10 = Sat 03-30*; Sun 03-31* -> Mon 04-01 -> 24:00 04-01 (no longer in custody: extended).
    person = view((PAROLE, RELEASE), as_of="2024-03-25 10:00")
    assert only(person, "R04_not_reported").due_at == at("2024-04-02 00:00")
    assert only(person, "R04_not_reported").state(at("2024-03-25 10:00")) == "upcoming"
    person = view((PAROLE, RELEASE), as_of="2024-04-02 10:00")
    assert gap_rules(person, "2024-04-02 10:00")["R04_not_reported"] == "open"


# -- a late-arriving detention overlapping a contact_lost interval (A03, bitemporal) ---------------------------------

A03_STEPS = (*UNDER_SUPERVISION,
             ("cl", "contact_lost", "bureau", "2024-06-12 10:00"),
             ("det", "detention_started", "police", "2024-06-10 22:00", {}, "2024-06-20 10:00"))


def test_a03_not_known_before_the_detention_is_recorded():
    person = view(A03_STEPS, as_of="2024-06-15 10:00", known_at="2024-06-15 10:00")
    assert of_rule(person, "A03_missing_while_detained") == []
    assert person.status == "missing"
    assert person.responsible == {"kind": "bureau", "region": "520222"}


def test_a03_open_once_the_detention_is_known():
    person = view(A03_STEPS, as_of="2024-06-21 10:00", known_at="2024-06-21 10:00")
    anomaly = only(person, "A03_missing_while_detained")
    assert anomaly.due_at == at("2024-06-12 10:00")  # the overlap starts when contact was "lost"
    assert anomaly.state(at("2024-06-21 10:00")) == "open"
    assert person.status == "detained"  # detained > missing
    assert person.responsible == {"kind": "police", "region": "520222"}


def test_a03_nothing_before_the_contact_lost():
    person = view(A03_STEPS, as_of="2024-06-11 10:00", known_at="2024-06-21 10:00")
    assert of_rule(person, "A03_missing_while_detained") == []
    assert person.status == "detained"


def test_a03_closed_when_the_detention_ends():
    steps = (*A03_STEPS, ("dend", "detention_ended", "police", "2024-06-24 10:00"))
    person = view(steps, as_of="2024-06-25 10:00")
    anomaly = only(person, "A03_missing_while_detained")
    assert anomaly.fulfilled_at == at("2024-06-24 10:00")
    assert anomaly.state(at("2024-06-25 10:00")) == "late"


# -- A01, A02, A04 ---------------------------------------------------------------------------------------------------

ORPHAN = (("enr", "subject_enrolled", "bureau", "2024-03-06 10:00", {"region": "520222"}),)


def test_a01_open_10_days_after_a_bureau_event_without_decision():
    # Enrolled Wed 03-06 with no decision on record: 03-06 +10 = Sat 03-16* -> Mon 03-18 -> 24:00 03-18.
    upcoming = view(ORPHAN, as_of="2024-03-10 10:00")
    assert only(upcoming, "A01_no_decision_on_record").state(at("2024-03-10 10:00")) == "upcoming"
    person = view(ORPHAN, as_of="2024-03-20 10:00")
    anomaly = only(person, "A01_no_decision_on_record")
    assert anomaly.due_at == at("2024-03-19 00:00")
    assert anomaly.state(at("2024-03-20 10:00")) == "open"


def test_a01_decision_arriving_later_makes_it_late():
    steps = (*ORPHAN, ("dec", "decision_effective", "court", "2024-03-25 10:00"))
    person = view(steps, as_of="2024-03-26 10:00")
    anomaly = only(person, "A01_no_decision_on_record")
    assert anomaly.fulfilled_at == at("2024-03-25 10:00")
    assert anomaly.state(at("2024-03-26 10:00")) == "late"


def test_a01_decision_that_occurred_earlier_but_was_recorded_late_rewrites_the_past():
    steps = (*ORPHAN, ("dec", "decision_effective", "court", "2024-03-01 10:00", {}, "2024-03-25 10:00"))
    before = view(steps, as_of="2024-03-20 10:00", known_at="2024-03-20 10:00")
    assert only(before, "A01_no_decision_on_record").state(at("2024-03-20 10:00")) == "open"
    after = view(steps, as_of="2024-03-20 10:00", known_at="2024-03-26 10:00")
    assert of_rule(after, "A01_no_decision_on_record") == []


A02_STEPS = (DECISION, ("enr", "subject_enrolled", "bureau@632801", "2024-03-08 10:00", {"region": "632801"}))


def test_a02_enrolled_elsewhere_without_transfer():
    person = view(A02_STEPS, as_of="2024-03-10 10:00")
    anomaly = only(person, "A02_region_mismatch")
    assert anomaly.due_at == at("2024-03-08 10:00")
    assert anomaly.state(at("2024-03-10 10:00")) == "open"


def test_a02_later_transfer_to_that_region_makes_it_late():
    steps = (*A02_STEPS, ("td", "transfer_decided", "bureau", "2024-03-12 10:00", {"new_region": "632801"}))
    person = view(steps, as_of="2024-03-13 10:00")
    anomaly = only(person, "A02_region_mismatch")
    assert anomaly.fulfilled_at == at("2024-03-12 10:00")
    assert anomaly.state(at("2024-03-13 10:00")) == "late"


def test_a02_not_raised_after_a_transfer_to_that_region():
    steps = (*UNDER_SUPERVISION, ("td", "transfer_decided", "bureau", "2024-06-12 10:00", {"new_region": "632801"}),
             ("enr2", "subject_enrolled", "bureau@632801", "2024-06-14 10:00", {"region": "632801"}))
    assert of_rule(view(steps, as_of="2024-06-15 10:00"), "A02_region_mismatch") == []


def test_a04_warning_after_discharge():
    steps = (*UNDER_SUPERVISION, ("dis", "discharged", "bureau", "2024-06-12 10:00"),
             ("warn", "warning_issued", "bureau", "2024-06-20 10:00"))
    person = view(steps, as_of="2024-06-21 10:00")
    anomaly = only(person, "A04_activity_after_end")
    assert anomaly.triggered_by == eid("warn")
    assert anomaly.due_at == at("2024-06-20 10:00")
    assert anomaly.state(at("2024-06-21 10:00")) == "open"
    assert person.status == "discharged"


@pytest.mark.parametrize("retracted", ["warn", "dis"])
def test_a04_removed_when_one_of_its_events_is_retracted(retracted):
    steps = (*UNDER_SUPERVISION, ("dis", "discharged", "bureau", "2024-06-12 10:00"),
             ("warn", "warning_issued", "bureau", "2024-06-20 10:00"))
    steps = (*steps, retraction(steps, retracted, "2024-06-21 10:00"))
    assert of_rule(view(steps, as_of="2024-06-22 10:00"), "A04_activity_after_end") == []


# -- the end of an episode closes its obligations --------------------------------------------------------------------

REPORTED_FRI = ("rep", "subject_reported", "bureau", "2024-03-08 10:00", {"region": "520222"})  # R06 due 03-12 00:00


def test_discharge_before_due_closes_without_gap():
    steps = (DECISION, REPORTED_FRI, ("dis", "discharged", "bureau", "2024-03-10 10:00"))
    person = view(steps, as_of="2024-03-20 10:00")
    obligation = only(person, "R06_not_enrolled")
    assert obligation.closed_by_end and obligation.fulfilled_at == at("2024-03-10 10:00")
    assert obligation.state(at("2024-03-20 10:00")) == "met"
    assert "R06_not_enrolled" not in gap_rules(person, "2024-03-20 10:00")


def test_death_after_due_leaves_late_gap_ending_at_the_death():
    steps = (DECISION, REPORTED_FRI,
             ("death", "death_recorded", "bureau", "2024-03-14 10:00", {"date_of_death": "2024-03-13"}))
    person = view(steps, as_of="2024-03-20 10:00")
    obligation = only(person, "R06_not_enrolled")
    assert obligation.fulfilled_at == at("2024-03-14 10:00")
    assert obligation.state(at("2024-03-20 10:00")) == "late"
    assert person.status == "deceased"
    assert person.responsible is None


def test_new_decision_supersedes_and_closes_the_old_episode():
    steps = (DECISION, ("dec2", "decision_effective", "court", "2024-03-25 10:00",
                        {"document_no": "(2024)黔0222刑更5号"}))
    person = view(steps, as_of="2024-03-26 10:00")
    old, new = sorted(of_rule(person, "R04_not_reported"), key=lambda o: o.trigger_at)
    assert old.fulfilled_at == at("2024-03-25 10:00") and old.state(at("2024-03-26 10:00")) == "late"
    assert new.triggered_by == eid("dec2") and new.state(at("2024-03-26 10:00")) == "upcoming"


# -- status priority and the responsible agency ----------------------------------------------------------------------

S = "2024-06-12 10:00"


def _at(hours: int) -> str:
    return (at(S) + dt.timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M")


STATUS_CASES = [
    ("decided, nothing else", (DECISION,), "awaiting_report", {"kind": "bureau", "region": "520222"}),
    ("temporary release by a prison", (("dec", "decision_effective", "prison", "2024-03-06 10:00",
                                        {"category": "temporary_release", "in_custody": True}),),
     "awaiting_transfer", {"kind": "prison", "region": "520200"}),
    ("temporary release by a court", (("dec", "decision_effective", "court", "2024-03-06 10:00",
                                       {"category": "temporary_release", "in_custody": True}),),
     "awaiting_transfer", {"kind": "police", "region": "520222"}),
    ("assessment only", (("ar", "assessment_requested", "court", "2024-03-01 10:00",
                          {"bureau_region": "632801", "expedited": False}),),
     "assessment", {"kind": "bureau", "region": "632801"}),
    ("reported, not enrolled", (DECISION, REPORTED), "under_supervision", {"kind": "bureau", "region": "520222"}),
    ("enrolled", UNDER_SUPERVISION, "under_supervision", {"kind": "bureau", "region": "520222"}),
    ("transferring", (*UNDER_SUPERVISION, ("td", "transfer_decided", "bureau", S, {"new_region": "632801"})),
     "transferring", {"kind": "bureau", "region": "632801"}),
    ("transferred and enrolled there", (*UNDER_SUPERVISION,
                                        ("td", "transfer_decided", "bureau", S, {"new_region": "632801"}),
                                        ("e2", "subject_enrolled", "bureau@632801", _at(48), {"region": "632801"})),
     "under_supervision", {"kind": "bureau", "region": "632801"}),
    ("missing > transferring", (*UNDER_SUPERVISION, ("td", "transfer_decided", "bureau", S, {"new_region": "632801"}),
                                ("cl", "contact_lost", "bureau", _at(1))),
     "missing", {"kind": "bureau", "region": "520222"}),
    ("detained > missing", (*UNDER_SUPERVISION, ("cl", "contact_lost", "bureau", S),
                            ("det", "detention_started", "police", _at(1))),
     "detained", {"kind": "police", "region": "520222"}),
    ("missing again after the detention ends", (*UNDER_SUPERVISION, ("cl", "contact_lost", "bureau", S),
                                                ("det", "detention_started", "police", _at(1)),
                                                ("dend", "detention_ended", "police", _at(2))),
     "missing", {"kind": "bureau", "region": "520222"}),
    ("revocation_pending > detained > missing", (*UNDER_SUPERVISION, ("cl", "contact_lost", "bureau", S),
                                                 ("det", "detention_started", "police", _at(1)),
                                                 ("rp", "revocation_proposed", "bureau", _at(2))),
     "revocation_pending", {"kind": "court", "region": "520222"}),
    ("commitment proposal to the prison", (("dec", "decision_effective", "prison", "2024-03-06 10:00",
                                            {"category": "temporary_release", "in_custody": True}),
                                           ("tr", "subject_transferred", "prison", "2024-03-07 10:00"),
                                           ENROLLED,
                                           ("cp", "commitment_proposed", "bureau", S, {"to_kind": "prison"})),
     # the organ that must rule is the prison that decided, in its own region
     "revocation_pending", {"kind": "prison", "region": "520200"}),
    ("fugitive > revocation_pending", (*UNDER_SUPERVISION, ("cl", "contact_lost", "bureau", S),
                                       ("rp", "revocation_proposed", "bureau", _at(1)),
                                       ("ps", "pursuit_started", "police", _at(2))),
     "fugitive", {"kind": "police", "region": "520222"}),
    ("awaiting_commitment > fugitive", (*UNDER_SUPERVISION, ("cl", "contact_lost", "bureau", S),
                                        ("rp", "revocation_proposed", "bureau", _at(1)),
                                        ("ps", "pursuit_started", "police", _at(2)),
                                        ("rr", "revocation_ruled", "court", _at(3), {"revoked": True})),
     "awaiting_commitment", {"kind": "police", "region": "520222"}),
    ("prison's commitment decision", (("dec", "decision_effective", "prison", "2024-03-06 10:00",
                                       {"category": "temporary_release", "in_custody": True}),
                                      ("tr", "subject_transferred", "prison", "2024-03-07 10:00"), ENROLLED,
                                      ("cp", "commitment_proposed", "bureau", S, {"to_kind": "prison"}),
                                      ("cd", "commitment_decided", "prison", _at(1), {"commit": True})),
     # the prison that decided takes the person back itself
     "awaiting_commitment", {"kind": "prison", "region": "520200"}),
    ("not revoked: back under supervision", (*UNDER_SUPERVISION, ("rp", "revocation_proposed", "bureau", S),
                                             ("rr", "revocation_ruled", "court", _at(1), {"revoked": False})),
     "under_supervision", {"kind": "bureau", "region": "520222"}),
    ("committed", (*UNDER_SUPERVISION, ("rp", "revocation_proposed", "bureau", S),
                   ("rr", "revocation_ruled", "court", _at(1), {"revoked": True}),
                   ("cc", "committed_to_custody", "police", _at(2))),
     "committed", None),
    ("discharged", (*UNDER_SUPERVISION, ("dis", "discharged", "bureau", S)), "discharged", None),
]


@pytest.mark.parametrize("steps, status, responsible",
                         [pytest.param(steps, status, resp, id=label) for label, steps, status, resp in STATUS_CASES])
def test_status_and_responsible(steps, status, responsible):
    person = view(steps, as_of="2024-06-20 10:00")
    assert person.status == status
    assert person.responsible == responsible


@pytest.mark.parametrize("end", [
    pytest.param((("cc", "committed_to_custody", "police", _at(2)),), id="committed"),
    pytest.param((("dis", "discharged", "bureau", _at(2)),), id="discharged"),
])
def test_status_deceased_outranks_an_earlier_end(end):
    # docs/rules.md: "Latest applicable wins, in this priority: deceased > committed > discharged > …".
    steps = (*UNDER_SUPERVISION, *end,
             ("death", "death_recorded", "police", _at(48), {"date_of_death": "2024-06-14"}))
    assert view(steps, as_of="2024-06-20 10:00").status == "deceased"


# -- lost supervision days -------------------------------------------------------------------------------------------


def test_lost_days_of_an_open_r04_gap():
    # R04 due 2024-03-19 00:00 (see the matrix); open until as_of 03-29 00:00 -> exactly 10 days.
    person = view((DECISION,), as_of="2024-03-29 00:00")
    assert person.lost_days(at("2024-03-29 00:00")) == 10.0


def test_lost_days_of_a_late_r04_gap_stop_at_the_report():
    # Due 03-19 00:00, reported 03-24 12:00 -> 5.5 days; nothing more afterwards.
    steps = (DECISION, ("rep", "subject_reported", "bureau", "2024-03-24 12:00", {"region": "520222"}))
    person = view(steps, as_of="2024-04-10 00:00")
    assert person.lost_days(at("2024-04-10 00:00")) == 5.5
