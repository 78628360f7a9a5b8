"""Moments and durations as users type them (CLI flags, API query parameters)."""

from __future__ import annotations

import datetime as dt

from domain.calendar import SHANGHAI, end_of_day


def parse_moment(text: str) -> dt.datetime:
    """An ISO datetime (no offset: Asia/Shanghai) or a date (meaning the end of that day). ValueError otherwise."""
    try:
        if len(text) == 10:
            return end_of_day(dt.date.fromisoformat(text))
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date or datetime, e.g. 2024-10-01 or 2024-10-01T12:00+08:00") from None
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
