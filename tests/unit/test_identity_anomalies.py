"""A08_name_conflict and A09_duplicate_decision (issue #19), in the fold, in every arrival order."""

from __future__ import annotations

import itertools

from tests.unit.histories import at, eid, gap_rules, of_rule, only, retraction, view

DECISION = ("dec", "decision_effective", "court", "2024-03-06 10:00", {"document_no": "(2024)黔0222刑初123号"})
REPORTED = ("rep", "subject_reported", "bureau", "2024-03-07 09:00", {"region": "520222"})
ENROLLED = ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00", {"region": "520222"})


def test_a_name_written_with_another_middle_dot_is_no_conflict():
    steps = (
        ("dec", "decision_effective", "court", "2024-03-06 10:00", {"_name": "阿依古丽·买买提"}),
        ("rep", "subject_reported", "bureau", "2024-03-07 09:00", {"region": "520222", "_name": "阿依古丽•买买提"}),
        ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00", {"region": "520222", "_name": "阿依古丽・买买提"}),
    )
    assert of_rule(view(steps, as_of="2024-04-01"), "A08_name_conflict") == []


def test_another_name_under_the_same_key_is_a_conflict_obligating_its_publisher():
    steps = (DECISION, REPORTED, ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00",
                                  {"region": "520222", "_name": "李四"}))
    person = view(steps, as_of="2024-04-01")
    conflict = only(person, "A08_name_conflict")
    assert conflict.triggered_by == eid("enr") and conflict.obligated_kind == "bureau"
    assert "李四" in conflict.reason and "张三" in conflict.reason
    # An anomaly has no deadline to miss but is a lead from the moment it is seen; it stays until retracted.
    assert "A08_name_conflict" in gap_rules(person, "2024-04-01")
    retracted = (*steps, retraction(steps, "enr", "2024-03-20 10:00"))
    assert of_rule(view(retracted, as_of="2024-04-01"), "A08_name_conflict") == []


def test_a_name_conflict_is_raised_once_per_publisher_and_name():
    steps = (DECISION, ("rep", "subject_reported", "bureau", "2024-03-07 09:00", {"region": "520222", "_name": "李四"}),
             ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00", {"region": "520222", "_name": "李四"}))
    assert len(of_rule(view(steps, as_of="2024-04-01"), "A08_name_conflict")) == 1


def test_the_conflict_is_the_same_in_every_arrival_order():
    # The first name in occurred order is the one on record, whatever arrived first.
    base = [DECISION, REPORTED, ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00",
                                 {"region": "520222", "_name": "李四"})]
    answers = set()
    for order in itertools.permutations(range(3)):
        recorded = [step[:4] + (step[4] if len(step) > 4 else {}, f"2024-03-{10 + position} 10:00")
                    for position, step in zip(order, base)]
        conflict = only(view(recorded, as_of="2024-04-01"), "A08_name_conflict")
        answers.add((conflict.triggered_by, conflict.reason))
    assert len(answers) == 1 and next(iter(answers))[0] == eid("enr")


def test_the_same_decision_published_twice_is_one_decision_flagged():
    again = ("dec-again", "decision_effective", "court", "2024-03-06 11:00",
             {"document_no": "（2024）黔0222刑初123号"})  # full-width brackets: the same number
    person = view((DECISION, again), as_of="2024-04-01")
    flagged = only(person, "A09_duplicate_decision")
    assert flagged.triggered_by == eid("dec-again") and flagged.obligated_kind == "court"
    assert eid("dec") in flagged.reason
    # One decision: one episode, one R01, one R02, one R04 (the resend opened nothing).
    assert person.episode.decision_event == eid("dec") and person.episode.number == 1
    for rule in ("R01_bureau_not_notified", "R02_documents_not_delivered", "R04_not_reported"):
        assert [o.triggered_by for o in of_rule(person, rule)] == [eid("dec")]


def test_a_third_resend_is_flagged_too_and_a_retraction_clears_the_flag():
    resends = [(f"dec-{n}", "decision_effective", "court", f"2024-03-0{6 + n} 10:00",
                {"document_no": "(2024)黔0222刑初123号"}) for n in (1, 2)]
    steps = (DECISION, *resends)
    assert len(of_rule(view(steps, as_of="2024-04-01"), "A09_duplicate_decision")) == 2
    cleared = (*steps, retraction(steps, "dec-1", "2024-03-20 10:00"), retraction(steps, "dec-2", "2024-03-20 10:00"))
    assert of_rule(view(cleared, as_of="2024-04-01"), "A09_duplicate_decision") == []


def test_a_new_decision_with_another_number_is_not_a_duplicate():
    ruling = ("dec2", "decision_effective", "court", "2024-03-25 10:00", {"document_no": "(2024)黔0222刑更5号"})
    person = view((DECISION, ruling), as_of="2024-04-01")
    assert of_rule(person, "A09_duplicate_decision") == [] and person.episode.number == 2


def test_a_duplicate_known_later_changes_the_past_only_as_known_later():
    again = ("dec-again", "decision_effective", "court", "2024-03-06 11:00",
             {"document_no": "(2024)黔0222刑初123号"}, "2024-03-20 10:00")
    steps = (DECISION, again)
    assert of_rule(view(steps, as_of="2024-04-01", known_at="2024-03-19 10:00"), "A09_duplicate_decision") == []
    assert only(view(steps, as_of="2024-04-01"), "A09_duplicate_decision").trigger_at == at("2024-03-06 11:00")
