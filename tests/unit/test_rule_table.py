"""The rule table drives the fold: which events open a rule (`trigger`), which fulfil it (`fulfilled_by`) and its
period come from domain/rules.py, or from a province's TOML file, and the fold does what the table says.

Three kinds of evidence: editing the table in TOML changes what the fold does; on any generated history every
obligation was opened by an event of its rule's trigger and fulfilled by one of its fulfilling events; and every
(rule, trigger) pair of the table opens that rule in a history built for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings

from domain.rules import TRIGGER_EVENTS, RuleSet, RuleSetError, load_rule_set
from domain.supervision import DERIVED_RULES, PersonView, fold
from tests.strategies import History, person_histories
from tests.unit.factories import ID_NUMBER
from tests.unit.histories import AGENCIES, RULES, at, eid, event, history, of_rule, only

DECISION = ("dec", "decision_effective", "court", "2024-03-06 10:00")
REPORTED = ("rep", "subject_reported", "bureau", "2024-03-07 09:00", {"region": "520222"})
ENROLLED = ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00", {"region": "520222"})
DELIVERED = ("del", "documents_delivered", "court", "2024-03-07 10:00", {"execution_region": "520222"})
NOTIFIED = ("ntf", "bureau_notified", "court", "2024-03-07 10:00", {"execution_region": "520222"})
AS_OF = "2024-12-01 00:00"


def folded(steps, rules: RuleSet = RULES, as_of: str = AS_OF) -> PersonView:
    return fold(history(*steps), id_number=ID_NUMBER, rules=rules, calendar=rules.calendar, as_of=at(as_of))


def rules_from(tmp_path: Path, toml: str) -> RuleSet:
    path = tmp_path / "province.toml"
    path.write_text(toml, encoding="utf-8")
    return load_rule_set(path)


# -- a province edits the table --------------------------------------------------------------------------------------


def test_a_trigger_taken_out_of_the_table_no_longer_opens_the_rule(tmp_path):
    assert only(folded((DECISION, REPORTED)), "R06_not_enrolled").triggered_by == eid("rep")
    province = rules_from(tmp_path, '[rules.R06_not_enrolled]\ntrigger = ["subject_transferred"]\n')
    assert of_rule(folded((DECISION, REPORTED), province), "R06_not_enrolled") == []


def test_a_trigger_added_to_the_table_opens_the_rule(tmp_path):
    assert of_rule(folded((DECISION, NOTIFIED)), "R03_receipt_not_returned") == []
    province = rules_from(tmp_path, '[rules.R03_receipt_not_returned]\n'
                                    'trigger = ["documents_delivered", "bureau_notified"]\n')
    r03 = only(folded((DECISION, NOTIFIED), province), "R03_receipt_not_returned")
    assert (r03.triggered_by, r03.obligated_kind, r03.obligated_region) == (eid("ntf"), "bureau", "520222")
    # 03-07 + 5 days = Tue 03-12, a working day: due at its end.
    assert r03.due_at == at("2024-03-13 00:00")


def test_a_fulfilling_event_taken_out_of_the_table_no_longer_fulfils(tmp_path):
    assert only(folded((DECISION, DELIVERED)), "R01_bureau_not_notified").fulfilled_by == eid("del")
    province = rules_from(tmp_path, '[rules.R01_bureau_not_notified]\nfulfilled_by = ["bureau_notified"]\n')
    r01 = only(folded((DECISION, DELIVERED), province), "R01_bureau_not_notified")
    assert r01.fulfilled_at is None and r01.state(at(AS_OF)) == "open"


def test_a_fulfilling_event_added_to_the_table_fulfils(tmp_path):
    assert only(folded((DECISION, ENROLLED)), "R02_documents_not_delivered").fulfilled_at is None
    province = rules_from(tmp_path, '[rules.R02_documents_not_delivered]\n'
                                    'fulfilled_by = ["documents_delivered", "subject_enrolled"]\n')
    r02 = only(folded((DECISION, ENROLLED), province), "R02_documents_not_delivered")
    assert r02.fulfilled_by == eid("enr")


def test_a_period_edited_in_the_table_moves_the_due_time(tmp_path):
    # Decision Wed 03-06: +10 days = Sat 03-16*, Sun 03-17* -> Mon 03-18; +15 days = Thu 03-21.
    assert only(folded((DECISION,)), "R04_not_reported").due_at == at("2024-03-19 00:00")
    province = rules_from(tmp_path, '[rules.R04_not_reported]\ndeadline = { amount = 15, unit = "days" }\n')
    assert only(folded((DECISION,), province), "R04_not_reported").due_at == at("2024-03-22 00:00")


@pytest.mark.parametrize("toml, problem", [
    ('[rules.R06_not_enrolled]\ntrigger = ["subject_teleported"]\n', "unknown event type subject_teleported"),
    ('[rules.R06_not_enrolled]\ntrigger = []\n', "non-empty list"),
    ('[rules.R06_not_enrolled]\nfulfilled_by = "subject_enrolled"\n', "non-empty list"),
    ('[rules.R06_not_enrolled]\ntrigger = ["term_end"]\n', "unknown event type term_end"),  # R15's, not R06's
])
def test_a_trigger_or_fulfilment_that_is_not_an_event_type_is_refused(tmp_path, toml, problem):
    with pytest.raises(RuleSetError, match=problem):
        rules_from(tmp_path, toml)


# -- table and behaviour agree ---------------------------------------------------------------------------------------

# R15 counts from the term's end: the decision sets it and a term change (减刑) moves it, taking over the trigger.
MOVED_BY = {"R15_not_discharged": {"term_changed"}}


def trigger_events(rule_id: str) -> set[str]:
    rule = RULES[rule_id]
    return {event for trigger in rule.trigger for event in TRIGGER_EVENTS.get(trigger, (trigger,))} | \
        MOVED_BY.get(rule_id, set())


@settings(max_examples=300, deadline=None)
@given(steps=person_histories(AGENCIES))
def test_every_obligation_was_opened_and_fulfilled_by_events_the_table_names(steps: History):
    events = [event(s.name, s.event_type, s.agency, s.occurred_at.isoformat(), s.payload) for s in steps.steps]
    types = {e.event_id: e.event_type for e in events}
    person = fold(events, id_number=ID_NUMBER, rules=RULES, calendar=RULES.calendar, as_of=None)
    for obligation in person.obligations:
        if obligation.rule in DERIVED_RULES:
            continue
        assert types[obligation.triggered_by] in trigger_events(obligation.rule), obligation
        if obligation.fulfilled_by is not None and not obligation.closed_by_end \
                and "(recorded_at)" not in RULES[obligation.rule].fulfilled_by:
            assert types[obligation.fulfilled_by] in RULES[obligation.rule].fulfilled_by, obligation


UNDER_SUPERVISION = (DECISION, REPORTED, ENROLLED)
TEMPORARY_RELEASE = ("dec", "decision_effective", "court", "2024-03-06 10:00", {"category": "temporary_release"})
IN_CUSTODY = ("dec", "decision_effective", "court", "2024-03-06 10:00", {"in_custody": True})
LOST = ("los", "contact_lost", "bureau", "2024-04-01 10:00")
REVOCATION = ("rev", "revocation_proposed", "bureau", "2024-04-02 10:00", {"arrest_requested": True})
# (rule, trigger event) -> a history whose last event is that trigger
OPENED_BY: dict[tuple[str, str], tuple] = {
    ("R01_bureau_not_notified", "decision_effective"): (DECISION,),
    ("R02_documents_not_delivered", "decision_effective"): (DECISION,),
    ("R03_receipt_not_returned", "documents_delivered"): (DECISION, DELIVERED),
    ("R04_not_reported", "decision_effective"): (DECISION,),
    ("R04_not_reported", "prisoner_released"): (
        IN_CUSTODY, ("rel", "prisoner_released", "prison", "2024-03-20 09:00")),
    ("R05_not_transferred", "decision_effective"): (TEMPORARY_RELEASE,),
    ("R06_not_enrolled", "subject_reported"): (DECISION, REPORTED),
    ("R06_not_enrolled", "subject_transferred"): (
        TEMPORARY_RELEASE, ("tra", "subject_transferred", "police", "2024-03-08 10:00")),
    ("R07_transfer_file_not_sent", "transfer_decided"): (
        *UNDER_SUPERVISION, ("trd", "transfer_decided", "bureau", "2024-04-01 10:00", {"new_region": "520221"})),
    ("R08_transfer_not_received", "transfer_decided"): (
        *UNDER_SUPERVISION, ("trd", "transfer_decided", "bureau", "2024-04-01 10:00", {"new_region": "520221"})),
    ("R09_ruling_overdue", "revocation_proposed"): (*UNDER_SUPERVISION, REVOCATION),
    ("R09_ruling_overdue", "commitment_proposed"): (
        TEMPORARY_RELEASE, ("tra", "subject_transferred", "police", "2024-03-08 10:00"),
        ("enr", "subject_enrolled", "bureau", "2024-03-09 10:00", {"region": "520222"}),
        ("cop", "commitment_proposed", "bureau", "2024-04-02 10:00", {"to_kind": "court"})),
    ("R10_arrest_decision_overdue", "revocation_proposed"): (*UNDER_SUPERVISION, REVOCATION),
    ("R11_commitment_not_executed", "revocation_ruled"): (
        *UNDER_SUPERVISION, REVOCATION, ("rul", "revocation_ruled", "court", "2024-04-10 10:00", {"revoked": True})),
    ("R11_commitment_not_executed", "commitment_decided"): (
        TEMPORARY_RELEASE, ("tra", "subject_transferred", "police", "2024-03-08 10:00"),
        ("enr", "subject_enrolled", "bureau", "2024-03-09 10:00", {"region": "520222"}),
        ("cop", "commitment_proposed", "bureau", "2024-04-02 10:00", {"to_kind": "court"}),
        ("cod", "commitment_decided", "court", "2024-04-10 10:00", {"commit": True})),
    ("R12_missing_not_escalated", "contact_lost"): (*UNDER_SUPERVISION, LOST),
    ("R13_missing_unresolved", "contact_lost"): (*UNDER_SUPERVISION, LOST),
    ("R14_detention_notice_late", "detention_started"): (
        *UNDER_SUPERVISION, ("det", "detention_started", "police", "2024-04-01 10:00")),
    ("R15_not_discharged", "decision_effective"): (DECISION,),
    ("R16_notice_reply_overdue", "procuratorial_notice_issued"): (
        *UNDER_SUPERVISION, ("not", "procuratorial_notice_issued", "procuratorate", "2024-04-01 10:00")),
    ("R17_assessment_overdue", "assessment_requested"): (
        ("ass", "assessment_requested", "court", "2024-02-01 10:00"),),
    ("R18_death_notice_late", "death_recorded"): (
        *UNDER_SUPERVISION, ("dth", "death_recorded", "bureau", "2024-07-01 10:00")),
    ("R19_monitoring_overdue", "monitoring_started"): (
        *UNDER_SUPERVISION, ("mon", "monitoring_started", "bureau", "2024-04-01 10:00")),
    ("R19_monitoring_overdue", "monitoring_extended"): (
        *UNDER_SUPERVISION, ("mon", "monitoring_started", "bureau", "2024-04-01 10:00"),
        ("mox", "monitoring_extended", "bureau", "2024-06-25 10:00")),
    ("A05_unpublished_decision", "roster_discrepancy_found"): (
        ("fnd", "roster_discrepancy_found", "court", "2024-04-01 10:00",
         {"rule": "A05_unpublished_decision", "direction": "roster_only",
          "roster_id": "0b6f3f2e-8a3c-4f55-9d0e-2f8c1b7a6e51", "region": "520222", "finding": "名单碰撞"}),),
    ("A06_register_mismatch", "roster_discrepancy_found"): (
        *UNDER_SUPERVISION, ("fnd", "roster_discrepancy_found", "bureau", "2024-04-01 10:00",
                             {"rule": "A06_register_mismatch", "direction": "service_only",
                              "roster_id": "0b6f3f2e-8a3c-4f55-9d0e-2f8c1b7a6e51", "finding": "名单碰撞"})),
    ("A07_unreported_detention", "roster_discrepancy_found"): (
        *UNDER_SUPERVISION, ("fnd", "roster_discrepancy_found", "police", "2024-04-01 10:00",
                             {"rule": "A07_unreported_detention", "direction": "roster_only",
                              "roster_id": "0b6f3f2e-8a3c-4f55-9d0e-2f8c1b7a6e51", "finding": "名单碰撞"})),
    ("A02_region_mismatch", "subject_enrolled"): (
        DECISION, ("enr", "subject_enrolled", "bureau@520221", "2024-03-08 15:00", {"region": "520221"})),
}


def test_every_trigger_of_the_table_has_a_history_here():
    pairs = {(rule, event_type) for event_type, rules in RULES.opened_on.items() for rule in rules
             if rule not in DERIVED_RULES}
    assert pairs == set(OPENED_BY)


@pytest.mark.parametrize("rule, trigger", sorted(OPENED_BY))
def test_each_trigger_of_the_table_opens_its_rule(rule, trigger):
    steps = OPENED_BY[(rule, trigger)]
    person = folded(steps)
    last = steps[-1][0]
    if trigger == "prisoner_released":  # the release restarts the count of the R04 the decision opened
        assert only(person, rule).start == at("2024-03-20 09:00")
        return
    assert eid(last) in {o.triggered_by for o in of_rule(person, rule)}, person.obligations


def test_the_trigger_index_follows_the_table_order():
    assert RULES.opened_on["decision_effective"] == (
        "R01_bureau_not_notified", "R02_documents_not_delivered", "R04_not_reported", "R05_not_transferred",
        "R15_not_discharged")
