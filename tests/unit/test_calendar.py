"""CPL 105 day counting on the official calendar, hand-checked against the published 2024 and 2025 schedules.

2024 National Day: Oct 1-7 off; Sun Sep 29 and Sat Oct 12 were make-up working days.
2025 Spring Festival: Jan 28 - Feb 4 off; Sun Jan 26 and Sat Feb 8 were make-up working days.
"""

from __future__ import annotations

import logging
import warnings
from datetime import date, datetime, timedelta, timezone

import pytest

from domain import calendar as cal
from domain.calendar import (
    SHANGHAI,
    ProvisionalCalendarWarning,
    WorkingCalendar,
    YearNotice,
    add_months,
    due_in_days,
    due_in_hours,
    due_in_months,
    due_in_working_days,
    end_of_day,
    local_date,
)

CAL = WorkingCalendar()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def fresh_warning_state():
    """Forget that this process already warned about a provisional year, so a test sees the first warning."""
    cal._warned = False
    yield
    cal._warned = True


# --- the calendar itself --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "day, working",
    [
        ("2024-03-09", False),  # ordinary Saturday
        ("2024-09-29", True),  # make-up Sunday
        ("2024-10-01", False),
        ("2024-10-07", False),  # holiday falling on a Monday
        ("2024-10-12", True),  # make-up Saturday
        ("2025-01-26", True),  # make-up Sunday
        ("2025-01-28", False),
        ("2025-02-04", False),
        ("2025-02-08", True),  # make-up Saturday
    ],
)
def test_official_working_days(day, working):
    assert CAL.is_working_day(date.fromisoformat(day)) is working


def test_next_working_day_on_or_after():
    assert CAL.next_working_day_on_or_after(date(2024, 10, 8)) == date(2024, 10, 8)
    assert CAL.next_working_day_on_or_after(date(2024, 10, 1)) == date(2024, 10, 8)
    assert CAL.next_working_day_on_or_after(date(2024, 9, 28)) == date(2024, 9, 29)  # Sat -> make-up Sun


def test_is_working_day_refuses_a_datetime():
    with pytest.raises(TypeError):
        CAL.is_working_day(at("2024-10-08T10:00:00+08:00"))


def test_local_date_and_end_of_day():
    assert local_date(at("2024-03-01T17:30:00+00:00")) == date(2024, 3, 2)
    assert local_date(at("2024-03-01T15:59:59+00:00")) == date(2024, 3, 1)
    end = end_of_day(date(2024, 12, 31))
    assert end == at("2025-01-01T00:00:00+08:00")
    assert end.tzinfo == SHANGHAI


# --- days (CPL 105) ---------------------------------------------------------------------------------------------


def test_five_days_from_a_friday():
    # Start day Fri Mar 1 not counted; last day Wed Mar 6, a working day; ends at its 24:00.
    due = due_in_days(date(2024, 3, 1), 5, CAL)
    assert due.isoformat() == "2024-03-07T00:00:00+08:00"
    assert due.tzinfo == SHANGHAI


def test_datetime_and_date_start_agree():
    assert due_in_days(at("2024-03-01T09:15:00+08:00"), 5, CAL) == due_in_days(date(2024, 3, 1), 5, CAL)


def test_last_day_on_a_weekend_moves_to_monday():
    # Mon Mar 4 + 5 = Sat Mar 9 (rest day) -> Mon Mar 11, ends 24:00.
    assert due_in_days(date(2024, 3, 4), 5, CAL) == at("2024-03-12T00:00:00+08:00")


@pytest.mark.parametrize("start", [date(2024, 9, 24), date(2024, 9, 26), date(2024, 9, 30)])
def test_last_day_inside_national_day_2024_moves_to_oct_8(start):
    # last days Oct 1, Oct 3, Oct 7 -> all extended to Tue Oct 8 24:00
    last = start + timedelta(days=7)
    assert date(2024, 10, 1) <= last <= date(2024, 10, 7)
    assert due_in_days(start, 7, CAL) == at("2024-10-09T00:00:00+08:00")


def test_last_day_inside_spring_festival_2025_moves_to_feb_5():
    # Jan 20 + 10 = Thu Jan 30 (holiday Jan 28 - Feb 4) -> Wed Feb 5, ends 24:00.
    assert due_in_days(date(2025, 1, 20), 10, CAL) == at("2025-02-06T00:00:00+08:00")
    # the holiday's last day Tue Feb 4 -> Feb 5 too
    assert due_in_days(date(2025, 1, 25), 10, CAL) == at("2025-02-06T00:00:00+08:00")


@pytest.mark.parametrize(
    "start, days, due",
    [
        (date(2024, 10, 2), 10, "2024-10-13T00:00:00+08:00"),  # ends Sat Oct 12, make-up day
        (date(2024, 9, 19), 10, "2024-09-30T00:00:00+08:00"),  # ends Sun Sep 29, make-up day
        (date(2025, 1, 16), 10, "2025-01-27T00:00:00+08:00"),  # ends Sun Jan 26, make-up day
        (date(2025, 1, 29), 10, "2025-02-09T00:00:00+08:00"),  # ends Sat Feb 8, make-up day
    ],
)
def test_last_day_on_a_make_up_working_day_is_not_extended(start, days, due):
    assert due_in_days(start, days, CAL) == at(due)


def test_custody_keeps_the_holiday_end():
    # Sep 26 + 7 = Oct 3, inside the holiday: no extension while in custody (CPL 105).
    assert due_in_days(date(2024, 9, 26), 7, CAL, extend=False) == at("2024-10-04T00:00:00+08:00")
    assert due_in_days(date(2024, 3, 4), 5, CAL, extend=False) == at("2024-03-10T00:00:00+08:00")  # Saturday


def test_start_counts_from_the_shanghai_date():
    # 17:30 UTC on Mar 1 is 01:30 on Mar 2 in Shanghai: count from Mar 2, last day Thu Mar 7.
    due = due_in_days(at("2024-03-01T17:30:00Z"), 5, CAL)
    assert due.isoformat() == "2024-03-08T00:00:00+08:00"
    # and the other way round: 23:30 on Mar 1 at -05:00 is 12:30 on Mar 2 in Shanghai
    assert due_in_days(at("2024-03-01T23:30:00-05:00"), 5, CAL) == due


def test_zero_days_ends_the_same_day():
    assert due_in_days(date(2024, 3, 6), 0, CAL) == at("2024-03-07T00:00:00+08:00")


def test_negative_period_is_refused():
    with pytest.raises(ValueError):
        due_in_days(date(2024, 3, 1), -1, CAL)


# --- working days (R17) -----------------------------------------------------------------------------------------


def test_ten_working_days_across_national_day_2024():
    # Start Fri Sep 27 (not counted). Working days after it:
    #   Sat Sep 28 rest; Sun Sep 29 make-up = 1; Mon Sep 30 = 2; Oct 1-7 holiday;
    #   Tue Oct 8 = 3, Wed 9 = 4, Thu 10 = 5, Fri 11 = 6, Sat Oct 12 make-up = 7; Sun 13 rest;
    #   Mon Oct 14 = 8, Tue 15 = 9, Wed Oct 16 = 10  -> ends 24:00 of Oct 16.
    assert due_in_working_days(date(2024, 9, 27), 10, CAL) == at("2024-10-17T00:00:00+08:00")


def test_five_working_days_expedited():
    # Fri Mar 1 -> Mon 4, Tue 5, Wed 6, Thu 7, Fri Mar 8 = 5th.
    due = due_in_working_days(at("2024-03-01T16:00:00+08:00"), 5, CAL)
    assert due.isoformat() == "2024-03-09T00:00:00+08:00"


def test_working_days_start_on_a_holiday():
    # Start Oct 3 (holiday): 1st working day after it is Oct 8.
    assert due_in_working_days(date(2024, 10, 3), 1, CAL) == at("2024-10-09T00:00:00+08:00")


def test_working_days_need_at_least_one():
    with pytest.raises(ValueError):
        due_in_working_days(date(2024, 3, 1), 0, CAL)


# --- hours (R10, R12, R14) --------------------------------------------------------------------------------------


def test_hours_are_exact_and_not_extended_across_a_holiday():
    # 48 h from Sep 30 10:00 ends Oct 2 10:00, in the middle of the holiday.
    assert due_in_hours(at("2024-09-30T10:00:00+08:00"), 48) == at("2024-10-02T10:00:00+08:00")


def test_hours_are_returned_in_shanghai_time():
    due = due_in_hours(at("2024-03-01T17:30:00Z"), 24)
    assert due.isoformat() == "2024-03-03T01:30:00+08:00"
    assert due.tzinfo == SHANGHAI
    assert due_in_hours(at("2024-03-01T10:00:00+08:00"), 1.5) == at("2024-03-01T11:30:00+08:00")


# --- months (R19) ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, months, due",
    [
        (date(2024, 1, 31), 1, "2024-03-01T00:00:00+08:00"),  # Jan 31 is a month end -> Feb 29 (leap), Thursday
        (date(2024, 11, 30), 3, "2025-03-01T00:00:00+08:00"),  # Nov 30 is a month end -> Feb 28 2025, Friday
        (date(2024, 3, 15), 12, "2025-03-18T00:00:00+08:00"),  # Sat Mar 15 2025 -> Mon Mar 17
        (date(2023, 2, 28), 12, "2024-03-01T00:00:00+08:00"),  # Feb 28 2023 is a month end -> Thu Feb 29 2024
        (date(2024, 2, 28), 12, "2025-03-01T00:00:00+08:00"),  # Feb 28 2024 is not (leap year) -> Fri Feb 28 2025
        (date(2024, 1, 30), 1, "2024-03-01T00:00:00+08:00"),  # Feb has no 30th -> its last day, Thu Feb 29
    ],
)
def test_months_by_spc_2021_art_202(start, months, due):
    assert due_in_months(start, months, CAL) == at(due)


@pytest.mark.parametrize(
    "first, months, last",
    [
        # "期限起算日为本月最后一日的，至下月最后一日为一个月" (SPC 2021 art. 202)
        (date(2027, 2, 28), 3, date(2027, 5, 31)),
        (date(2025, 4, 30), 1, date(2025, 5, 31)),
        (date(2025, 1, 31), 1, date(2025, 2, 28)),
        (date(2028, 2, 29), 1, date(2028, 3, 31)),
        (date(2025, 5, 30), 1, date(2025, 6, 30)),  # May 30 is not a month end: the same day, June 30
        (date(2025, 5, 15), 0, date(2025, 5, 15)),
    ],
)
def test_add_months_counts_from_a_month_end_to_a_month_end(first, months, last):
    assert add_months(first, months) == last


def test_months_cross_a_year_end():
    # Nov 12 2024 + 2 months = Sun Jan 12 2025 -> Mon Jan 13, ends 24:00.
    assert due_in_months(date(2024, 11, 12), 2, CAL) == at("2025-01-14T00:00:00+08:00")


def test_months_holiday_extension():
    # Sep 1 + 1 month = Oct 1 (National Day) -> Oct 8; in custody it stays Oct 1.
    assert due_in_months(date(2024, 9, 1), 1, CAL) == at("2024-10-09T00:00:00+08:00")
    assert due_in_months(date(2024, 9, 1), 1, CAL, extend=False) == at("2024-10-02T00:00:00+08:00")


def test_months_from_a_datetime_use_the_shanghai_date():
    # 20:00 UTC on Jan 30 is Jan 31 in Shanghai -> Feb 29
    assert due_in_months(at("2024-01-30T20:00:00Z"), 1, CAL) == at("2024-03-01T00:00:00+08:00")


# --- years without a published notice: the statute alone, provisional -------------------------------------------

# 2027 by the 全国年节及纪念日放假办法 (2025 revision) alone: 元旦 Fri Jan 1; 春节 除夕 Fri Feb 5 to Mon Feb 8, with 补假
# for Sat Feb 6 and Sun Feb 7 on Tue Feb 9 and Wed Feb 10; 劳动节 Sat May 1 and Sun May 2 -> 补假 Mon May 3, Tue May 4.


@pytest.mark.parametrize(
    "day, working",
    [
        ("2027-01-01", False),  # 元旦, a Friday
        ("2027-01-04", True),
        ("2027-02-05", False),  # 除夕 (a statutory holiday from 2025)
        ("2027-02-08", False),
        ("2027-02-09", False),  # 补假 for Sat Feb 6
        ("2027-02-10", False),  # 补假 for Sun Feb 7
        ("2027-02-11", True),
        ("2027-02-13", False),  # a Saturday: no 调休 make-up day is known yet
        ("2027-05-03", False),  # 补假 for Sat May 1
        ("2027-05-04", False),  # 补假 for Sun May 2
        ("2027-10-01", False),
    ],
)
def test_a_year_without_a_notice_has_the_statutory_holidays_and_their_substitutes(day, working):
    assert CAL.is_working_day(date.fromisoformat(day)) is working


def test_which_years_are_provisional():
    assert not CAL.is_provisional(2024) and not CAL.is_provisional(2026)
    assert CAL.is_provisional(2027) and CAL.is_provisional(2031)
    assert CAL.provisional_between(date(2026, 12, 2), date(2027, 1, 4))
    assert not CAL.provisional_between(date(2026, 3, 1), date(2026, 12, 31))


def test_r13_from_december_2026_ends_after_new_year_and_a_weekend():
    # contact_lost Wed 2026-12-02 + 30 days = Fri 2027-01-01 (元旦); Sat 2, Sun 3 -> Mon 2027-01-04, ends 24:00.
    assert due_in_days(date(2026, 12, 2), 30, CAL) == at("2027-01-05T00:00:00+08:00")


def test_a_period_ending_in_spring_festival_2027_runs_past_its_substitute_days():
    # term_end Fri 2027-02-05 + 1 day = Sat Feb 6 (春节); Feb 6-10 are rest days -> Thu Feb 11, ends 24:00.
    assert due_in_days(date(2027, 2, 5), 1, CAL) == at("2027-02-12T00:00:00+08:00")


def test_the_provisional_warning_is_given_once_per_process(fresh_warning_state, caplog):
    caplog.set_level(logging.WARNING, logger="domain.calendar")
    with pytest.warns(ProvisionalCalendarWarning, match="2027"):
        assert CAL.provisional_between(date(2027, 1, 1), date(2027, 1, 4))
    assert "2027" in caplog.text
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning, for 2027 or another year, would fail here
        assert CAL.provisional_between(date(2031, 1, 1), date(2031, 1, 4))
        assert CAL.provisional_between(date(2027, 6, 1), date(2027, 6, 4))


def test_a_published_year_does_not_warn(fresh_warning_state):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not CAL.provisional_between(date(2024, 9, 27), date(2024, 10, 17))
        due_in_working_days(date(2024, 9, 27), 10, CAL)


# A made-up 2027 notice (the real one is not out): Jan 1-3 off; Spring Festival Feb 5-11 off with Sun Jan 31 and
# Sat Feb 20 as working days.
NOTICE_2027 = YearNotice(
    2027,
    holidays=frozenset({date(2027, 1, 1), *(date(2027, 2, d) for d in (5, 8, 9, 10, 11))}),
    workdays=frozenset({date(2027, 1, 31), date(2027, 2, 20)}),
    source="国办发明电〔2026〕X号（测试用）",
)


def test_a_configured_notice_replaces_the_statutory_estimate_and_is_not_provisional():
    calendar = WorkingCalendar([NOTICE_2027])
    assert not calendar.is_provisional(2027)
    assert calendar.is_working_day(date(2027, 1, 31)) and calendar.is_working_day(date(2027, 2, 20))
    assert not calendar.is_working_day(date(2027, 2, 11))
    # term_end Feb 5 + 1 = Sat Feb 6 -> the notice's holiday runs to Thu Feb 11 -> Fri Feb 12.
    assert due_in_days(date(2027, 2, 5), 1, calendar) == at("2027-02-13T00:00:00+08:00")
    assert due_in_days(date(2027, 2, 5), 1, CAL) == at("2027-02-12T00:00:00+08:00")  # the default calendar unchanged


@pytest.mark.parametrize(
    "holidays, workdays, problem",
    [
        ({date(2028, 1, 1)}, set(), "not in 2027"),
        ({date(2027, 1, 31)}, {date(2027, 1, 31)}, "both"),
    ],
)
def test_a_notice_with_impossible_dates_is_refused(holidays, workdays, problem):
    with pytest.raises(ValueError, match=problem):
        YearNotice(2027, frozenset(holidays), frozenset(workdays), "x")


# --- naive datetimes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda t: local_date(t),
        lambda t: due_in_days(t, 5, CAL),
        lambda t: due_in_working_days(t, 5, CAL),
        lambda t: due_in_hours(t, 48),
        lambda t: due_in_months(t, 1, CAL),
    ],
    ids=["local_date", "days", "working_days", "hours", "months"],
)
def test_naive_datetime_is_refused(call):
    with pytest.raises(ValueError, match="naive"):
        call(datetime(2024, 3, 1, 12, 0))


def test_other_offsets_are_accepted():
    assert due_in_hours(datetime(2024, 3, 1, 0, 0, tzinfo=timezone.utc), 0) == at("2024-03-01T08:00:00+08:00")
