"""Legal time limits (CPL 105) in Asia/Shanghai time, on the PRC working-day calendar.

Every deadline is computed in Shanghai time (docs/rules.md, "Time"). A deadline is returned as an aware datetime:
"24:00 of day D" is written as 00:00 of D + 1, so an act is in time when it happens strictly before the returned
moment.

Which days are rest days is law in two layers. The statutory holidays are fixed by the 全国年节及纪念日放假办法 (from
2025: 元旦 1 day, 春节 4 incl. 除夕, 清明 1, 劳动节 2, 端午 1, 中秋 1, 国庆 3; a holiday falling on a Saturday or Sunday is
补假 on the next working day). The State Council's yearly notice (国务院办公厅关于部分节假日安排的通知, usually in
November) then arranges the 调休: extra days off, and Saturdays or Sundays made working days. For each year the
calendar takes, in this order: a notice given as configuration (`YearNotice`, from the rules file), the notices
the `holidays` package has recorded (it keeps the published years), or, for a year whose notice is not known, the
statute alone. Such a year is **provisional**: a due time that depends on it may move when the notice comes.
"""

from __future__ import annotations

import calendar as _gregorian
import functools
import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
from holidays.countries.china import ChinaStaticHolidays

SHANGHAI = ZoneInfo("Asia/Shanghai")

logger = logging.getLogger(__name__)


class ProvisionalCalendarWarning(UserWarning):
    """A due time was computed in a year whose 调休 arrangement is not known: statutory holidays and 补假 only."""


# Once per process, not once per command line or per year: the operator needs to know, not to be flooded.
_warned = False


def _warn_provisional(year: int) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    message = (f"{year}年调休安排未发布：按法定节假日和补假推算，涉及的期限标为 provisional "
               f"(no official 调休 schedule for {year} or later: statutory holidays and 补假 only; the due times it "
               "affects are marked provisional until the State Council's notice is configured)")
    warnings.warn(message, ProvisionalCalendarWarning, stacklevel=4)
    logger.warning(message)


@dataclass(frozen=True)
class YearNotice:
    """One year's holiday arrangement as the State Council published it (configuration, `[calendar."YYYY"]`)."""

    year: int
    holidays: frozenset[date]  # every day off that is not a Saturday or Sunday (holidays, 补假, 调休 days off)
    workdays: frozenset[date]  # Saturdays and Sundays made working days (调休上班)
    source: str  # the notice, e.g. 国办发明电〔2026〕7号

    def __post_init__(self) -> None:
        for day in self.holidays | self.workdays:
            if day.year != self.year:
                raise ValueError(f"{day.isoformat()} is not in {self.year}")
        if self.holidays & self.workdays:
            both = ", ".join(sorted(d.isoformat() for d in self.holidays & self.workdays))
            raise ValueError(f"{both}: both a holiday and a working day")
        if not self.source.strip():
            raise ValueError("source: name the notice the dates come from")

    def describe(self) -> dict[str, object]:
        return {"year": self.year, "holidays": sorted(d.isoformat() for d in self.holidays),
                "workdays": sorted(d.isoformat() for d in self.workdays), "source": self.source}

    @staticmethod
    def from_description(item: dict) -> YearNotice:
        return YearNotice(int(item["year"]), frozenset(date.fromisoformat(d) for d in item["holidays"]),
                          frozenset(date.fromisoformat(d) for d in item["workdays"]), str(item["source"]))


# The years whose State Council notice the `holidays` package records (its 调休 data).
_PUBLISHED_IN_PACKAGE = frozenset(ChinaStaticHolidays.special_public_holidays)


@functools.lru_cache(maxsize=256)
def _package_year(year: int) -> tuple[frozenset[date], frozenset[date]]:
    """Rest days and make-up working days of a year from the `holidays` package: the published arrangement, or the
    statutory holidays with 补假 for a year it has no notice of."""
    try:
        china = holidays.China(years=year)
    except (ValueError, OverflowError, NotImplementedError):  # beyond the lunar tables: no holidays known
        return frozenset(), frozenset()
    rest = frozenset(china)
    workdays = frozenset(day for day in china.weekend_workdays if day.year == year)
    return rest, workdays


class WorkingCalendar:
    """PRC working days: configured notices first, then the `holidays` package (published notices, else the statute).

    Hashable by identity: cached period ends are keyed by the calendar, so two calendars never share results."""

    def __init__(self, notices: Iterable[YearNotice] = ()):
        self.notices: dict[int, YearNotice] = {}
        for notice in notices:
            if notice.year in self.notices:
                raise ValueError(f"two notices for {notice.year}")
            self.notices[notice.year] = notice
        self._years: dict[int, tuple[frozenset[date], frozenset[date]]] = {}

    def _year(self, year: int) -> tuple[frozenset[date], frozenset[date]]:
        found = self._years.get(year)
        if found is None:
            notice = self.notices.get(year)
            found = (notice.holidays, notice.workdays) if notice else _package_year(year)
            self._years[year] = found
        return found

    def is_provisional(self, year: int) -> bool:
        """True when the year's 调休 arrangement is not known (neither configured nor in the package)."""
        return year not in self.notices and year not in _PUBLISHED_IN_PACKAGE

    def provisional_between(self, first: date, last: date) -> bool:
        """Whether a due time counted over these days depends on a provisional year (and warn once if so)."""
        for year in range(first.year, last.year + 1):
            if self.is_provisional(year):
                _warn_provisional(year)
                return True
        return False

    def is_working_day(self, day: date) -> bool:
        if isinstance(day, datetime):
            # A datetime has no calendar day until a time zone is chosen: make the caller say which (local_date).
            raise TypeError("is_working_day takes a date; use local_date(moment) for a datetime")
        rest, workdays = self._year(day.year)
        if day in workdays:
            return True
        return day.weekday() < 5 and day not in rest

    def next_working_day_on_or_after(self, day: date) -> date:
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def describe(self) -> list[dict[str, object]]:
        return [self.notices[year].describe() for year in sorted(self.notices)]

    def coverage(self) -> dict[str, object]:
        """Where each year's holidays come from: the configured notices, the package's published years, and the
        first year after them that is provisional."""
        known = set(self.notices) | _PUBLISHED_IN_PACKAGE
        first_provisional = max(known) + 1
        while first_provisional in known:
            first_provisional += 1
        return {"notices": self.describe(), "package": f"holidays {holidays.__version__}",
                "package_years": [min(_PUBLISHED_IN_PACKAGE), max(_PUBLISHED_IN_PACKAGE)],
                "provisional_from": first_provisional}


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


def add_months(first: date, months: int) -> date:
    """The last day of an N-month period from `first` (SPC interpretation of the CPL, 2021, art. 202): the same day
    of the month N months later; counted from the last day of a month, the last day of that later month; and where
    the later month has no such day, its last day. Feb 28 2027 + 3 months = May 31 2027."""
    _require_non_negative(months)
    index = first.month - 1 + months
    year, month = first.year + index // 12, index % 12 + 1
    month_end = _gregorian.monthrange(year, month)[1]
    from_month_end = first.day == _gregorian.monthrange(first.year, first.month)[1]
    return date(year, month, month_end if from_month_end else min(first.day, month_end))


def due_in_months(start: date | datetime, months: int, calendar: WorkingCalendar, extend: bool = True) -> datetime:
    """End of an N-month period (R19): 24:00 of its last day (`add_months`), with the CPL 105 holiday extension."""
    return _end_of_period(add_months(_start_date(start), months), calendar, extend)


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


_EPOCH = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
_ONE_MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime | None) -> int | None:
    """A moment as integer microseconds since the epoch: how the read models store and compare instants (the same
    order in SQLite and PostgreSQL, whatever the offset a moment was written with)."""
    if moment is None:
        return None
    return (moment - _EPOCH) // _ONE_MICROSECOND  # exact: timedelta floor division is integer arithmetic


def moment_of_micros(value: int) -> datetime:
    """The moment (UTC) `micros` gave `value` for."""
    return _EPOCH + value * _ONE_MICROSECOND
