"""The oversight overview (监督概览): a region's figures now or as of a date, the register by category and status, and
the 脱管漏管率 at each of the last month ends (the trend), as the dashboard's first page shows them."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.calendar import end_of_day, micros
from domain.principals import AccessRecorded, Principal
from domain.statistics import combined_figures

from services.ports import EventLog, Projection, SupervisionReadModel
from services.queries import Queries

TREND_MONTHS = 12
# Access records and principals do not change any figure: writing them must not invalidate the trend cache.
NEUTRAL_TOPICS = (f"{AccessRecorded.__module__}:{AccessRecorded.__qualname__}.",
                  f"{Principal.__module__}:{Principal.__qualname__}.")


@dataclass(frozen=True)
class OverviewFigures:
    stats: list[dict[str, Any]]  # per region (domain.statistics.regional_figures)
    summary: dict[str, Any]  # the regions together (domain.statistics.combined_figures)
    register: list[tuple[str | None, str | None, bool]]  # (status, category, in the register) of every person
    trend: list[dict[str, Any]]  # the rate at each of the last TREND_MONTHS month ends, then at the date asked


def month_ends_before(day: dt.date, count: int) -> list[dt.date]:
    """The last `count` month ends strictly before `day`, oldest first."""
    ends = []
    current = day.replace(day=1) - dt.timedelta(days=1)
    while len(ends) < count:
        ends.append(current)
        current = current.replace(day=1) - dt.timedelta(days=1)
    return ends[::-1]


class Overview:
    def __init__(self, queries: Queries, projection: Projection, read_model: SupervisionReadModel, store: EventLog):
        self.queries, self.projection, self.read_model = queries, projection, read_model
        self.trends = TrendCache(store, lambda region, moment: queries.stats(region=region, as_of=moment))

    def figures(self, region: str | None, as_of: dt.datetime | None, as_of_date: dt.date) -> OverviewFigures:
        """`as_of` None: now (the read models); `as_of_date` is the day shown (today when now)."""
        stats = self.queries.stats(region=region, as_of=as_of)
        summary = combined_figures(stats)
        points = []
        for month_end in month_ends_before(as_of_date, TREND_MONTHS):
            figures = combined_figures(self.trends.stats(region, month_end))
            points.append({"label": month_end.strftime("%Y-%m"), "date": month_end.isoformat(),
                           "rate": figures["rate"], "lost": figures["lost_persons"],
                           "in_register": figures["in_register"], "current": False})
        points.append({"label": as_of_date.strftime("%m-%d"), "date": as_of_date.isoformat(), "rate": summary["rate"],
                       "lost": summary["lost_persons"], "in_register": summary["in_register"], "current": True})
        return OverviewFigures(stats, summary, self.register(region, as_of), points)

    def register(self, region: str | None, as_of: dt.datetime | None) -> list[tuple[str | None, str | None, bool]]:
        """(status, category, in the register) of every person on record in the region, now or as of a date: from
        the read model's versions that held then."""
        moment = as_of or self.queries.clock()
        people: list[tuple[str | None, str | None, bool]] = []
        for row in self.read_model.register(micros(moment), region=region,
                                            rule_set=self.projection.serving_rule_set()):
            people += [(row.status, row.category, bool(row.in_register))] * int(row.count)
        return people


class TrendCache:
    """Statistics at past month ends, kept in memory keyed by (region, month end, store head).

    The head is the event store's `max_notification_id()`, except that notifications which cannot change any figure
    (access records, principals: every page view writes one) do not move it, so reading does not empty the cache.
    Anything else recorded (a late event changes the past, a rule-set change) moves it and the months are computed
    again from the store."""

    def __init__(self, store: EventLog, stats: Callable[[str | None, dt.datetime], list[dict[str, Any]]],
                 max_entries: int = 2000):
        self.store = store
        self._stats = stats
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._seen = -1  # the store head last looked at
        self._head = -1  # the head that counts (the last relevant change seen)
        self._entries: dict[tuple[str, dt.date, int], list[dict[str, Any]]] = {}
        self.computed = 0  # how many month ends were computed from the store (for tests)

    def head(self) -> int:
        current = self.store.head()
        if current == self._seen:
            return self._head
        relevant = self._seen < 0 or any(not topic.startswith(NEUTRAL_TOPICS)
                                         for topic in self.store.topics_between(self._seen + 1, current))
        if relevant:
            self._head = current
        self._seen = current
        return self._head

    def stats(self, region: str | None, month_end: dt.date) -> list[dict[str, Any]]:
        with self._lock:
            key = (region or "", month_end, self.head())
            cached = self._entries.get(key)
            if cached is None:
                if len(self._entries) >= self.max_entries or any(k[2] != key[2] for k in self._entries):
                    self._entries = {k: v for k, v in self._entries.items() if k[2] == key[2]}
                    if len(self._entries) >= self.max_entries:
                        self._entries.clear()
                cached = self._stats(region, end_of_day(month_end))
                self._entries[key] = cached
                self.computed += 1
            return cached
