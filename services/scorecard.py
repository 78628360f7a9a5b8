"""The monthly scorecard (月度通报): how each agency met its handoff duties in a month, and how each region fared.

Per agency: the obligations that fell due in the month and the share met on time, the median delay of the late ones
(met late, or still open at the month's end: counted to it), the events it published, the ones it published more
than 24 hours after they occurred (backdated), its refused inputs by code, and the reconciliation findings against
it (A05–A07). Per region: the 脱管漏管率 at the month's end and its change on the month before, and a ranking.

Every figure is as of the month's end as known then: obligations from the read model's versions (bitemporal),
publications counted by the day the service received them. A published 通报 therefore never changes when a late
event arrives; `current=True` adds the same month as known now beside it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from domain.agencies import KIND_LABELS
from domain.calendar import SHANGHAI, micros
from domain.person import DeadLetter, Person
from domain.regions import region_label, region_name

PERSON_EVENT_TOPIC = f"{Person.__module__}:{Person.__qualname__}.EventRecorded"
DEAD_LETTER_TOPIC = f"{DeadLetter.__module__}:{DeadLetter.__qualname__}.Refused"
CATCH_UP_PAGE = 5_000
BACKDATED = dt.timedelta(hours=24)
ROSTER_RULES = ("A05_unpublished_decision", "A06_register_mismatch", "A07_unreported_detention")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class BadMonth(ValueError):
    pass


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    """[first instant, first instant of the next month) of YYYY-MM in Asia/Shanghai."""
    found = _MONTH.match(month or "")
    if not found or not 1 <= int(found.group(2)) <= 12 or not 1979 <= int(found.group(1)) <= 2100:
        raise BadMonth(f"月份应写作 YYYY-MM（如 2026-11，1979 至 2100 年），收到 {month!r} / the month is YYYY-MM, e.g. "
                       f"2026-11, 1979 to 2100; got {month!r}")
    year, number = int(found.group(1)), int(found.group(2))
    start = dt.datetime(year, number, 1, tzinfo=SHANGHAI)
    end = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


def previous_month(month: str) -> str:
    start, _ = month_bounds(month)
    before = start - dt.timedelta(days=1)
    return f"{before.year:04d}-{before.month:02d}"


def _day(moment: str) -> str:
    return dt.datetime.fromisoformat(moment).astimezone(SHANGHAI).date().isoformat()


def _refused_by(letter: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, agency id, region) a refused input (a dead letter's attributes) came from: the authenticated sender
    (http:KIND:ID), else what the input claimed, else unknown."""
    source = letter.get("source") or "unknown"
    parts = source.split(":")
    claimed: dict[str, Any] = {}
    try:
        raw = json.loads(letter.get("raw") or "")
        if isinstance(raw, dict) and isinstance(raw.get("agency"), dict):
            claimed = raw["agency"]
    except (ValueError, TypeError):
        pass
    region = claimed.get("region") if isinstance(claimed.get("region"), str) and len(claimed["region"]) == 6 else ""
    if len(parts) == 3 and parts[0] == "http" and parts[1] in KIND_LABELS:
        return parts[1], parts[2], region
    kind, agency_id = claimed.get("kind"), claimed.get("id")
    if kind in KIND_LABELS and isinstance(agency_id, str) and 0 < len(agency_id) <= 200:
        return kind, agency_id, region
    return "unknown", source, region


class Scorecards:
    def __init__(self, store: Any, read_model: Any, queries: Any, agencies: Any, rules: Any,
                 clock: Callable[[], dt.datetime]):
        self.store = store
        self.read_model = read_model
        self.queries = queries
        self.agencies = agencies
        self.rules = rules
        self.clock = clock

    # -- keeping rm_publications current --------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Count the events and refusals stored since the position; returns how many were counted."""
        counted, head = 0, self.store.head()
        while (position := self.read_model.publications_position()) < head:
            page = self.store.log_states([PERSON_EVENT_TOPIC, DEAD_LETTER_TOPIC], position + 1, CATCH_UP_PAGE, head)
            counts: Counter[tuple] = Counter()
            for _, topic, event in page:
                if topic == DEAD_LETTER_TOPIC:
                    kind, agency_id, region = _refused_by(event)
                    counts[(_day(event["received_at"]), kind, agency_id, region, f"refused:{event['code']}")] += 1
                    continue
                agency = event["agency"]
                recorded = dt.datetime.fromisoformat(event["recorded_at"])
                key = (recorded.astimezone(SHANGHAI).date().isoformat(), agency["kind"], agency["id"],
                       agency.get("region") or "")
                counts[(*key, "published")] += 1
                if recorded - dt.datetime.fromisoformat(event["occurred_at"]) > BACKDATED:
                    counts[(*key, "backdated")] += 1
            moved_to = page[-1][0] if len(page) == CATCH_UP_PAGE else head
            if self.read_model.add_publications(position, moved_to, counts):
                counted += len(page)
        return counted

    # -- the scorecard --------------------------------------------------------------------------------------------

    def month(self, month: str, region: str | None = None, current: bool = False) -> dict[str, Any]:
        """The 通报 of a month (YYYY-MM) for a region prefix (None: everywhere), as known at the month's end; with
        `current`, the same figures as known now beside them."""
        start, end = month_bounds(month)
        now = self.clock()
        if start > now:
            raise BadMonth(f"{month} 尚未开始 / {month} has not begun")
        self.catch_up()
        closing = min(end, now)  # a month still running is shown as known so far
        known_at = closing - dt.timedelta(microseconds=1)
        report: dict[str, Any] = {
            "month": month, "region": region, "region_label": region_label(region) if region else "全部",
            "as_of": known_at.isoformat(), "known_at": known_at.isoformat(), "complete": end <= now,
            "rule_set": self.queries.projection.serving_rule_set(),
            "agencies": self._agencies(start, closing, known_at, region),
            "regions": self._regions(month, closing, region),
        }
        if current:
            report["current"] = {"known_at": now.isoformat(),
                                 "agencies": self._agencies(start, closing, None, region),
                                 "regions": self._regions(month, closing, region, as_known_now=True)}
        return report

    def _agencies(self, start: dt.datetime, end: dt.datetime, known_at: dt.datetime | None,
                  region: str | None) -> list[dict[str, Any]]:
        entries: dict[tuple[str, str], dict[str, Any]] = {}
        publishers: dict[tuple[str, str], set[str]] = defaultdict(set)  # (kind, region) -> agency ids

        def entry(kind: str, agency_id: str, agency_region: str | None) -> dict[str, Any]:
            key = (kind, agency_id)
            if key not in entries:
                entries[key] = {"kind": kind, "kind_label": KIND_LABELS.get(kind, kind), "agency_id": agency_id,
                                "region": agency_region, "due": 0, "on_time": 0, "late": 0, "still_open": 0,
                                "delays": [], "published": 0, "backdated": 0, "refused": {}, "findings": {},
                                "anomalies": 0}
            return entries[key]

        last_day = (end - dt.timedelta(microseconds=1)).astimezone(SHANGHAI).date().isoformat()
        for row in self.read_model.publication_counts(start.date().isoformat(), last_day, region):
            e = entry(row.agency_kind, row.agency_id, row.region or None)
            if row.measure in ("published", "backdated"):
                e[row.measure] += int(row.count)
                publishers[(row.agency_kind, row.region)].add(row.agency_id)
            elif row.measure.startswith("refused:"):
                code = row.measure.split(":", 1)[1]
                e["refused"][code] = e["refused"].get(code, 0) + int(row.count)
        directory: dict[tuple[str, str], list[str]] = defaultdict(list)
        for known in (self.agencies.list() if self.agencies is not None else []):
            directory[(known.kind, known.region)].append(known.id)
        end_us = micros(end)
        rows = self.read_model.obligations_due(micros(start), end_us, micros(known_at) if known_at else None,
                                               self.queries.projection.serving_rule_set(), region)
        for row in rows:
            agency_id = row.obligated_id or self._agency_of(row.obligated_kind, row.obligated_region, publishers,
                                                            directory)
            e = entry(row.obligated_kind, agency_id, row.obligated_region)
            if row.rule in ROSTER_RULES:
                e["findings"][row.rule] = e["findings"].get(row.rule, 0) + 1
            elif row.rule.startswith("A"):
                e["anomalies"] += 1
            else:
                e["due"] += 1
                if not row.gap:
                    e["on_time"] += 1
                else:
                    met = row.fulfilled_us is not None and row.fulfilled_us < end_us
                    e["late" if met else "still_open"] += 1
                    e["delays"].append(((row.fulfilled_us if met else end_us) - row.due_us) / 86_400e6)
        result = []
        for e in entries.values():
            delays = e.pop("delays")
            e["on_time_share"] = round(100 * e["on_time"] / e["due"], 2) if e["due"] else None
            e["median_delay_days"] = round(statistics.median(delays), 1) if delays else None
            e["backdated_share"] = round(100 * e["backdated"] / e["published"], 2) if e["published"] else None
            e["refused_total"] = sum(e["refused"].values())
            e["findings_total"] = sum(e["findings"].values())
            e["name"] = self._name(e["kind"], e["agency_id"], e["region"])
            result.append(e)
        return sorted(result, key=lambda e: (e["kind"], e["region"] or "", e["agency_id"]))

    @staticmethod
    def _agency_of(kind: str, region: str | None, publishers: dict[tuple[str, str], set[str]],
                   directory: dict[tuple[str, str], list[str]]) -> str:
        """An obligation of "the bureau of a region" (no agency id): that region's agency of the kind in the
        directory, else the one agency of that kind publishing there, else kind@region."""
        known = directory.get((kind, region or ""), [])
        if len(known) == 1:
            return known[0]
        seen = publishers.get((kind, region or ""), set())
        if len(seen) == 1:
            return next(iter(seen))
        return f"{kind}@{region or '?'}"

    def _name(self, kind: str, agency_id: str, region: str | None) -> str:
        name = self.agencies.name_of(agency_id) if self.agencies is not None else None
        if name:
            return name
        place = region_name(region) if region else None
        return f"{place.name}{KIND_LABELS[kind]}" if place is not None and kind in KIND_LABELS else agency_id

    def _regions(self, month: str, end: dt.datetime, region: str | None,
                 as_known_now: bool = False) -> list[dict[str, Any]]:
        """Each region's 脱管漏管率 at the month's end and at the end of the month before (each as known then, or
        both as known now), its change, and the ranking (1 = the lowest rate)."""
        _, before_end = month_bounds(previous_month(month))
        at = end - dt.timedelta(microseconds=1)
        before = before_end - dt.timedelta(microseconds=1)
        now_figures = {f["region"]: f for f in self.queries.stats(region, as_of=at,
                                                                   known_at=None if as_known_now else at)}
        before_figures = {f["region"]: f for f in self.queries.stats(region, as_of=before,
                                                                      known_at=None if as_known_now else before)}
        regions = []
        for code, figures in now_figures.items():
            if not code:
                continue
            rate = figures["lost_supervision_rate_permille"]
            earlier = before_figures.get(code, {}).get("lost_supervision_rate_permille")
            regions.append({
                "region": code, "region_label": region_label(code), "in_register": figures["in_register"],
                "lost_supervision_persons": figures["lost_supervision_persons"],
                "lost_supervision_rate_permille": rate, "previous_rate_permille": earlier,
                "change_permille": round(rate - earlier, 2) if rate is not None and earlier is not None else None,
                "open_gaps": sum(figures["open_gaps"].values()),
            })
        ranked = sorted(regions, key=lambda r: (r["lost_supervision_rate_permille"] is None,
                                                r["lost_supervision_rate_permille"] or 0, r["region"]))
        for rank, entry in enumerate(ranked, 1):
            entry["rank"] = rank
        return ranked
