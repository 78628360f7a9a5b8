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
    CalendarCoverageWarning,
    WorkingCalendar,
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
def fresh_coverage_state():
    """Forget cached lookups and already-warned years, so a test sees the first lookup of a year."""
    cal._is_working_day.cache_clear()
    cal._WARNED_YEARS.clear()
    yield
    cal._is_working_day.cache_clear()
    cal._WARNED_YEARS.clear()


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
        (date(2024, 1, 31), 1, "2024-03-01T00:00:00+08:00"),  # Feb 29 (leap year), Thursday
        (date(2024, 11, 30), 3, "2025-03-01T00:00:00+08:00"),  # Feb 28 2025, Friday
        (date(2024, 3, 15), 12, "2025-03-18T00:00:00+08:00"),  # Sat Mar 15 2025 -> Mon Mar 17
        (date(2023, 2, 28), 12, "2024-02-29T00:00:00+08:00"),  # Feb 28 stays Feb 28, not month end
    ],
)
def test_months_same_day_number_clamped_to_month_end(start, months, due):
    assert due_in_months(start, months, CAL) == at(due)


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


# --- uncovered years ---------------------------------------------------------------------------------------------


def test_uncovered_year_falls_back_to_weekends_and_warns_once(fresh_coverage_state, caplog):
    caplog.set_level(logging.WARNING, logger="domain.calendar")
    with pytest.warns(CalendarCoverageWarning, match="2031"):
        assert CAL.is_working_day(date(2031, 1, 1)) is True  # a Wednesday: the fallback knows no holidays
    assert "2031" in caplog.text
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning for 2031 would fail here
        assert CAL.is_working_day(date(2031, 1, 4)) is False  # Saturday
        assert CAL.is_working_day(date(2031, 1, 5)) is False  # Sunday
        assert CAL.is_working_day(date(2031, 1, 6)) is True  # Monday
        # Thu Jan 2 + 2 = Sat Jan 4 -> Mon Jan 6
        assert due_in_days(date(2031, 1, 2), 2, CAL) == at("2031-01-07T00:00:00+08:00")
    with pytest.warns(CalendarCoverageWarning, match="2032"):
        CAL.is_working_day(date(2032, 6, 1))


def test_period_running_into_an_uncovered_year_warns(fresh_coverage_state):
    # last covered year is 2026 (package 1.11.0); Dec 28 2026 + 7 = Mon Jan 4 2027, past the data
    with pytest.warns(CalendarCoverageWarning, match="2027"):
        assert due_in_days(date(2026, 12, 28), 7, CAL) == at("2027-01-05T00:00:00+08:00")


def test_covered_year_does_not_warn(fresh_coverage_state):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        due_in_working_days(date(2024, 9, 27), 10, CAL)


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
