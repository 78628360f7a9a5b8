"""Moments and durations as users type them (CLI flags, API query parameters)."""

from __future__ import annotations

import datetime as dt

from domain.calendar import SHANGHAI, end_of_day
from domain.catalog import date_range_problem


def parse_moment(text: str) -> dt.datetime:
    """An ISO datetime (no offset: Asia/Shanghai) or a date (meaning the end of that day), within the dates events
    can carry (domain/catalog.py). ValueError otherwise."""
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = None
        else:
            moment = dt.datetime.fromisoformat(text)
            day = moment.date()
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date or datetime, e.g. 2024-10-01 or 2024-10-01T12:00+08:00 "
                         f"(不是有效的日期或时间)") from None
    problem = date_range_problem(day)
    if problem:
        raise ValueError(problem)
    if moment is None:
        return end_of_day(day)
    return moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)


def parse_duration(text: str) -> dt.timedelta:
    """7d, 48h, 2w. ValueError otherwise."""
    units = {"h": "hours", "d": "days", "w": "weeks"}
    try:
        amount = float(text[:-1])
        if not 0 < amount <= 3660:
            raise ValueError
        return dt.timedelta(**{units[text[-1]]: amount})
    except (KeyError, ValueError, IndexError, OverflowError):
        raise ValueError(f"{text!r}: use a positive number with h, d or w, e.g. 7d") from None
