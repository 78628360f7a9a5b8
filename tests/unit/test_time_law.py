"""Time in the fold, from the law: months by SPC 2021 art. 202, R15 after a change of 执行地, and due times in 2027,
a year whose 调休 notice is not published yet (provisional), before and after a notice is configured.

The 2027 dates are worked out from the 全国年节及纪念日放假办法 (2025 revision): 元旦 Fri 2027-01-01; 春节 除夕 Fri 02-05
to Mon 02-08, Sat 02-06 and Sun 02-07 made good (补假) on Tue 02-09 and Wed 02-10.
"""

from __future__ import annotations

import datetime as dt

from domain.calendar import YearNotice
from domain.rules import RuleSet, default_rule_set
from domain.supervision import fold
from tests.unit.histories import ID_NUMBER, at, history, only, view

ENROLLED_2026 = (
    ("dec", "decision_effective", "court", "2026-01-05 10:00",
     {"term_start": "2026-01-05", "term_end": "2027-01-04"}),
    ("enr", "subject_enrolled", "bureau", "2026-01-08 10:00", {"region": "520222"}),
)


def test_r19_from_the_last_day_of_february_ends_on_the_last_day_of_may_then_the_holiday_extension():
    # Sat 2026-02-28 is February's last day: + 3 months = May's last day, Sun 2026-05-31 (not May 28), a rest day
    # -> Mon 2026-06-01, ends at its 24:00. 2026's notice is published: not provisional.
    steps = (*ENROLLED_2026, ("mon", "monitoring_extended", "bureau", "2026-02-28 10:00"))
    r19 = only(view(steps, as_of="2026-05-30 10:00"), "R19_monitoring_overdue")
    assert r19.due_at == at("2026-06-02 00:00")
    assert r19.provisional is False


def test_r19_from_a_day_that_is_not_a_month_end_keeps_its_day_number():
    # Fri 2026-01-30 + 1 month: February has no 30th -> its last day, Sat 2026-02-28 (a 调休 working day in 2026).
    steps = (*ENROLLED_2026, ("mon", "monitoring_started", "bureau", "2026-01-30 10:00"))
    person = fold(history(*steps), id_number=ID_NUMBER, rules=_one_month_monitoring(), as_of=at("2026-02-01 10:00"))
    assert only(person, "R19_monitoring_overdue").due_at == at("2026-03-01 00:00")


def _one_month_monitoring() -> RuleSet:
    from dataclasses import replace

    from domain.rules import Deadline, Unit

    base = default_rule_set()
    rules = dict(base.rules)
    rules["R19_monitoring_overdue"] = replace(rules["R19_monitoring_overdue"], deadline=Deadline(1, Unit.MONTHS))
    return RuleSet("test-r19-1-month", rules)


TRANSFERRED = (
    ("dec", "decision_effective", "court", "2024-03-06 10:00", {"term_end": "2024-06-12"}),
    ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00", {"region": "520222"}),
    ("td", "transfer_decided", "bureau", "2024-04-01 10:00", {"new_region": "632801"}),
    ("tf", "transfer_file_sent", "bureau", "2024-04-02 10:00", {"new_region": "632801"}),
    ("enr2", "subject_enrolled", "bureau@632801", "2024-04-05 10:00", {"region": "632801"}),
)


def test_r15_after_a_change_of_execution_region_is_the_new_bureaus():
    """Law 27: after the change the new bureau supervises; Law 44: the bureau supervising at term end discharges."""
    person = view(TRANSFERRED, as_of="2024-06-20 10:00")
    r15 = only(person, "R15_not_discharged")
    assert (r15.obligated_kind, r15.obligated_region) == ("bureau", "632801")
    assert r15.state(at("2024-06-20 10:00")) == "open"  # term_end Wed 06-12 + 1 = Thu 06-13, ends 24:00
    assert person.episode.current_region == "632801" and person.episode.execution_region == "520222"
    assert person.responsible == {"kind": "bureau", "region": "632801"}


def test_r15_stays_with_the_old_bureau_until_the_new_one_has_received_the_person():
    person = view(TRANSFERRED[:4], as_of="2024-04-03 10:00")
    assert only(person, "R15_not_discharged").obligated_region == "520222"


def test_an_r13_opened_in_december_2026_is_due_after_new_year_2027_provisionally():
    # contact_lost Wed 2026-12-02 + 30 = Fri 2027-01-01 (元旦), Sat 01-02, Sun 01-03 -> Mon 2027-01-04, ends 24:00.
    steps = (*ENROLLED_2026, ("lost", "contact_lost", "bureau", "2026-12-02 09:00"))
    r13 = only(view(steps, as_of="2026-12-03 10:00"), "R13_missing_unresolved")
    assert r13.due_at == at("2027-01-05 00:00")
    assert r13.provisional is True
    assert only(view(steps, as_of="2026-12-03 10:00"), "R12_missing_not_escalated").provisional is False  # hours


def test_an_r15_ending_in_spring_festival_2027_is_due_after_its_substitute_days_provisionally():
    # term_end Fri 2027-02-05 + 1 = Sat 02-06; rest days to Wed 02-10 -> Thu 2027-02-11, ends 24:00.
    steps = (("dec", "decision_effective", "court", "2026-02-06 10:00",
              {"term_start": "2026-02-06", "term_end": "2027-02-05"}),
             ("enr", "subject_enrolled", "bureau", "2026-02-09 10:00", {"region": "520222"}))
    r15 = only(view(steps, as_of="2026-12-03 10:00"), "R15_not_discharged")
    assert r15.due_at == at("2027-02-12 00:00")
    assert r15.provisional is True
    assert only(view(steps, as_of="2026-12-03 10:00"), "R02_documents_not_delivered").provisional is False


# A made-up notice for 2027 (the real one is not out yet): Jan 1-3 off; Spring Festival Feb 5-11 off; Sun Jan 31
# and Sat Feb 20 working days.
NOTICE_2027 = YearNotice(
    2027, holidays=frozenset({dt.date(2027, 1, 1), *(dt.date(2027, 2, d) for d in (5, 8, 9, 10, 11))}),
    workdays=frozenset({dt.date(2027, 1, 31), dt.date(2027, 2, 20)}), source="测试通知")


def test_once_a_notice_for_2027_is_configured_due_times_follow_it_and_are_no_longer_provisional():
    rules = RuleSet("with-2027", default_rule_set().rules, (NOTICE_2027,))
    steps = (("dec", "decision_effective", "court", "2026-02-06 10:00",
              {"term_start": "2026-02-06", "term_end": "2027-02-05"}),)
    person = fold(history(*steps), id_number=ID_NUMBER, rules=rules, as_of=at("2026-12-03 10:00"))
    r15 = only(person, "R15_not_discharged")
    assert r15.due_at == at("2027-02-12 00:00") + dt.timedelta(days=1)  # the notice's holiday runs to Thu 02-11
    assert r15.provisional is False
