"""Legal time limits (CPL 105) in Asia/Shanghai time, on the official PRC working-day calendar.

Every deadline is computed in Shanghai time (docs/rules.md, "Time"). A deadline is returned as an aware datetime:
"24:00 of day D" is written as 00:00 of D + 1, so an act is in time when it happens strictly before the returned
moment. Pure: the standard library and the `chinese_calendar` package only.
"""

from __future__ import annotations

import calendar as _gregorian
import functools
import logging
import warnings
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")

logger = logging.getLogger(__name__)


class CalendarCoverageWarning(UserWarning):
    """A year outside the official calendar's data: Saturdays and Sundays are taken as the only rest days."""


# Uncovered years already warned about in this process: one warning per year, not one per date.
_WARNED_YEARS: set[int] = set()


@functools.lru_cache(maxsize=8192)
def _is_working_day(day: date) -> bool:
    try:
        # Official calendar: public holidays are rest days; 调休 make-up days (often a Saturday or Sunday)
        # are working days.
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        # The package only knows the years the State Council has already published.
        if day.year not in _WARNED_YEARS:
            _WARNED_YEARS.add(day.year)
            message = f"no official PRC holiday calendar for {day.year}: counting only Saturday/Sunday as rest days"
            warnings.warn(message, CalendarCoverageWarning, stacklevel=3)
            logger.warning(message)
        return day.weekday() < 5


class WorkingCalendar:
    """Official PRC working days (holidays and 调休 make-up working days) from chinese_calendar; a year it does not
    cover falls back to Saturday/Sunday rest days, with one warnings.warn / logging warning per uncovered year."""

    def is_working_day(self, day: date) -> bool:
        if isinstance(day, datetime):
            # A datetime has no calendar day until a time zone is chosen: make the caller say which (local_date).
            raise TypeError("is_working_day takes a date; use local_date(moment) for a datetime")
        return _is_working_day(day)

    def next_working_day_on_or_after(self, day: date) -> date:
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day


def local_date(moment: datetime) -> date:
    """The calendar date of an aware moment in Shanghai."""
    _require_aware(moment)
    return moment.astimezone(SHANGHAI).date()


def end_of_day(day: date) -> datetime:
    """24:00 of `day` in Shanghai, i.e. 00:00 of the next day."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=SHANGHAI)


def due_in_days(start: date | datetime, days: int, calendar: WorkingCalendar, extend: bool = True) -> datetime:
    """End of an N-day period (CPL 105).

    The starting day is not counted, so the last day is start + N (in Shanghai) and the period ends at its 24:00.
    If that last day is a rest day or holiday the period runs to 24:00 of the first working day after it; but for
    a person in custody the period "shall expire on the due date and may not be extended for holidays" (extend=False).
    """
    _require_non_negative(days)
    last = _start_date(start) + timedelta(days=days)
    return _end_of_period(last, calendar, extend)


def due_in_working_days(start: date | datetime, days: int, calendar: WorkingCalendar) -> datetime:
    """End of a period of N working days: 24:00 of the N-th working day strictly after the start date (R17)."""
    if days < 1:
        raise ValueError(f"a working-day period needs at least 1 day, got {days}")
    day = _start_date(start)
    for _ in range(days):
        day = calendar.next_working_day_on_or_after(day + timedelta(days=1))
    return end_of_day(day)


def due_in_hours(start: datetime, hours: int | float) -> datetime:
    """Exactly `hours` after `start` (R10, R12, R14): no rounding to the hour and no holiday extension."""
    _require_aware(start)
    _require_non_negative(hours)
    # Aware arithmetic on absolute time; Shanghai has no DST, so this is also wall-clock hours there.
    return (start + timedelta(hours=hours)).astimezone(SHANGHAI)


def due_in_months(start: date | datetime, months: int, calendar: WorkingCalendar, extend: bool = True) -> datetime:
    """End of an N-month period (R19): 24:00 of the same day number N months later, or of that month's last day
    when it has no such day (Jan 31 + 1 month -> Feb 28/29; Civil Code 202), with the CPL 105 holiday extension."""
    _require_non_negative(months)
    first = _start_date(start)
    index = first.month - 1 + months
    year, month = first.year + index // 12, index % 12 + 1
    last = date(year, month, min(first.day, _gregorian.monthrange(year, month)[1]))
    return _end_of_period(last, calendar, extend)


def _end_of_period(last: date, calendar: WorkingCalendar, extend: bool) -> datetime:
    if extend:
        # CPL 105: a period whose last day falls on a holiday ends on the first day after the holiday. A 调休
        # make-up Saturday is a working day, so a period ending on it is not extended.
        last = calendar.next_working_day_on_or_after(last)
    return end_of_day(last)


def _start_date(start: date | datetime) -> date:
    # A moment counts from its Shanghai date (an event at 01:30 Shanghai time is on that Shanghai day, whatever its
    # offset); a bare date is already a Shanghai date.
    return local_date(start) if isinstance(start, datetime) else start


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: a time zone (offset) is required")


def _require_non_negative(amount: int | float) -> None:
    if amount < 0:
        raise ValueError(f"a period cannot be negative, got {amount}")
