"""Roster reconciliation (名单碰撞) as a use case: keep the roster, compare it with the record, publish what differs.

A roster arrives as a file (CLI) or a request body (HTTP). Its rows are read and checked (domain/rosters.py), kept
in the event store as a dated snapshot (hash, row count, source, every row with its problems), then compared with
what the service knew at the roster's as-of moment: the read model answers for any moment as known at any moment,
so the comparison is an indexed query per kind, not a refold. Each difference is published through ingest as a
`roster_discrepancy_found` event in the name of the agency whose list it was, so it becomes an anomaly (A05–A07),
a gap and a lead like any other, routed and chained. The event ids derive from the roster and the finding: sending
the same list again, or retrying after a failure, records nothing twice. A stored roster is replayed by comparing
its rows again as known at the same moment (`replay`), which gives the same findings.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from eventsourcing.persistence import IntegrityError

from domain.authorisation import PublisherIdentity
from domain.calendar import SHANGHAI, micros
from domain.catalog import AgencyKind
from domain.identity import person_stream_id
from domain.leads import lead_id
from domain.rosters import (KIND_LABELS, KIND_RULES, Finding, KnownDecision, KnownSpan, Roster, RosterError,
                            RosterRow, RosterSource, checked_rows, compare_bureau, compare_court, compare_police,
                            content_hash, read_rows, roster_id)

from services.ingest import Ingestor, Source

FINDING_NAMESPACE = uuid.UUID("0c1f3e0a-6a57-4b7e-8f0e-3c7d2f9b6a44")
# The events shown as evidence of a finding, by the roster's kind.
EVIDENCE_TYPES = {"court": ("decision_effective",),
                  "bureau": ("subject_enrolled", "transfer_decided", "discharged", "committed_to_custody",
                             "death_recorded"),
                  "police": ("detention_started", "detention_ended", "contact_lost", "contact_restored")}


class RosterNotFound(Exception):
    pass


def day_end(day: dt.date) -> dt.datetime:
    """The last instant of a day in Asia/Shanghai: a roster "as of" a day lists that whole day."""
    return dt.datetime.combine(day, dt.time.max, SHANGHAI)


def region_prefix(region: str) -> str:
    """The prefix of the regions an agency covers: a county its own code, a city (xxxx00) its four digits, a province
    (xx0000) its two."""
    if region.endswith("0000"):
        return region[:2]
    if region.endswith("00"):
        return region[:4]
    return region


def _us_to_date(value: int) -> dt.date:
    return dt.datetime.fromtimestamp(value / 1e6, SHANGHAI).date()


def _us_to_moment(value: int | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value / 1e6, SHANGHAI)


class Reconciliation:
    def __init__(self, store: Any, read_model: Any, queries: Any, ingestor: Ingestor, agencies: Any,
                 clock: Callable[[], dt.datetime]):
        self.store = store
        self.read_model = read_model
        self.queries = queries
        self.ingestor = ingestor
        self.agencies = agencies
        self.clock = clock

    # -- receiving a roster ---------------------------------------------------------------------------------------

    def receive(self, source: RosterSource, header: list[Any], lines: Any, as_of: dt.date,
                columns: Mapping[str, str] | None = None, file_name: str = "", received_by: str = "operator",
                region: str | None = None) -> dict[str, Any]:
        """Read, keep, compare and publish; returns the report (the roster, its findings with their leads, the
        rows refused with why). RosterError when the roster cannot be compared at all (a missing column)."""
        now = self.clock()
        if as_of > now.astimezone(SHANGHAI).date():
            raise RosterError([f"核对日期 {as_of} 晚于今天 / the as-of date {as_of} is in the future"])
        rows = read_rows(source.kind, header, lines, columns or {}, as_of)
        if not rows:
            raise RosterError(["名单没有数据行 / the roster has no data rows"])
        digest = content_hash(rows)
        agency = self.agencies.get(source.agency_id) if self.agencies is not None else None
        region = region or (agency.region if agency is not None else None)
        if source.kind == "bureau" and not region:
            raise RosterError([f"不知道 {source.agency_id} 所在的行政区划：请先 handoff agency add，或以 --region 指明 / "
                               f"the region of {source.agency_id} is unknown: add the agency to the directory "
                               f"(handoff agency add) or give --region"])
        key = roster_id(source, as_of, digest)
        roster = self.store.get_aggregate(key)
        if roster is None:
            roster = Roster(source=str(source), as_of=as_of.isoformat(), digest=digest, row_count=len(rows),
                            rows=[row.as_dict() for row in rows], file_name=file_name, received_by=received_by,
                            received_at=now.isoformat(), region=region)
            try:
                self.store.save(roster)
            except IntegrityError:  # the same list sent twice at once: the first one stands
                roster = self.store.get_aggregate(key)
        # Sent before: compared again as known then, which finds the same; publishing again records nothing twice.
        report = self._compare(roster, rows)
        self._publish(roster, report["findings"])
        if roster.findings is None:
            roster.compared([f["event_id"] for f in report["findings"] if f.get("recorded", True)])
            try:
                self.store.save(roster)
            except IntegrityError:  # compared by the other sender meanwhile: the same findings
                pass
        return report

    def replay(self, roster_key: str) -> dict[str, Any]:
        """A stored roster compared again as known at the moment it was first compared; `matches_recorded` says
        whether every finding is the one recorded then, and nothing else was."""
        roster = self._roster(roster_key)
        source = RosterSource.parse(roster.source)
        rows = checked_rows(source.kind, [(r["row"], {k: v for k, v in r.items() if k not in ("row", "problems")})
                                          for r in roster.rows], dt.date.fromisoformat(roster.as_of))
        report = self._compare(roster, rows)
        found = {finding["event_id"] for finding in report["findings"]}
        report["roster"]["replayed"] = True
        report["roster"]["matches_recorded"] = roster.findings is not None and found == set(roster.findings)
        return report

    def _roster(self, roster_key: str) -> Any:
        try:
            key = uuid.UUID(str(roster_key))
        except ValueError:
            raise RosterNotFound(roster_key) from None
        roster = self.store.get_aggregate(key)
        if not isinstance(roster, Roster):
            raise RosterNotFound(roster_key)
        return roster

    # -- comparing ----------------------------------------------------------------------------------------------

    def _moments(self, roster: Any) -> tuple[dt.datetime, dt.datetime]:
        """(as of, known at): the end of the as-of day, as known then, but never later than the roster's arrival
        (a list compared today as of today is compared with what was known when it came)."""
        received = dt.datetime.fromisoformat(roster.received_at)
        moment = min(day_end(dt.date.fromisoformat(roster.as_of)), received)
        return moment, moment

    def _compare(self, roster: Any, rows: list[RosterRow]) -> dict[str, Any]:
        source = RosterSource.parse(roster.source)
        as_of, known_at = self._moments(roster)
        region = roster.region
        rule_set = self.queries.projection.serving_rule_set()
        usable = [row for row in rows if row.ok]
        token = self.read_model.sealer.token
        as_of_us, known_us = micros(as_of), micros(known_at)
        if source.kind == "court":
            findings = self._court(source, usable, as_of_us, known_us, rule_set, region)
        elif source.kind == "bureau":
            register = {r.id_number: _span(r) for r in self.read_model.shown_at(
                as_of_us, known_us, rule_set, region=region_prefix(region), in_register=True)}
            others = [token(row.id_number) for row in usable if row.id_number not in register]
            shown = {r.id_number: _span(r) for r in self.read_model.shown_at(as_of_us, known_us, rule_set,
                                                                               person_keys=others)}
            findings = compare_bureau(source, usable, register, shown, region)
        else:
            spans: dict[str, list[KnownSpan]] = defaultdict(list)
            if usable:
                first = min(row.date for row in usable if row.date)
                last = max((row.end_date or row.date) for row in usable if row.date)
                window_from = dt.datetime.combine(first, dt.time(0), SHANGHAI)
                window_to = dt.datetime.combine(last, dt.time(0), SHANGHAI) + dt.timedelta(days=3)
                for r in self.read_model.spans(micros(window_from), micros(window_to), known_us, rule_set,
                                               [token(row.id_number) for row in usable]):
                    spans[r.id_number].append(_span(r))
            findings = compare_police(source, usable, spans, region)
        self._add_events(findings, source.kind, known_at)
        return self._report(roster, source, rows, findings, as_of, known_at)

    def _court(self, source: RosterSource, usable: list[RosterRow], as_of_us: int, known_us: int,
               rule_set: str | None, region: str | None) -> list[Finding]:
        case_key = self.read_model.sealer.case_token
        token = self.read_model.sealer.token
        of_court = [_decision(r) for r in self.read_model.decisions(as_of_us, known_us, rule_set,
                                                                      decided_by=source.agency_id)]
        matched = {(d.id_number, d.case_key) for d in of_court}
        unmatched = [token(row.id_number) for row in usable
                     if (row.id_number, case_key(row.case_ref or "")) not in matched]
        others = [_decision(r) for r in self.read_model.decisions(as_of_us, known_us, rule_set,
                                                                    person_keys=unmatched)] if unmatched else []
        dated = [row.date for row in usable if row.date]
        period_start = min(dated) if dated else None
        in_period = [d for d in of_court if period_start is not None and d.effective >= period_start]
        by_key = {(d.id_number, d.case_key, d.decided_by): d for d in [*of_court, *others]}
        return compare_court(source, usable, list(by_key.values()), in_period, region, case_key)

    def _add_events(self, findings: list[Finding], kind: str, known_at: dt.datetime) -> None:
        """Each finding's evidence gains the events on record (as known then) that bear on it."""
        wanted = EVIDENCE_TYPES[kind]
        persons = self.store.aggregates({person_stream_id(f.id_number) for f in findings})
        for finding in findings:
            person = persons.get(person_stream_id(finding.id_number))
            events = [] if person is None else [
                {"event_id": e.event_id, "event_type": e.event_type, "agency": e.agency["id"],
                 "occurred_at": e.occurred_at, "recorded_at": e.recorded_at,
                 **({"case_ref": e.case_ref} if e.case_ref else {})}
                for e in person.events
                if e.event_type in wanted and dt.datetime.fromisoformat(e.recorded_at) <= known_at]
            finding.evidence["events"] = events

    def _report(self, roster: Any, source: RosterSource, rows: list[RosterRow], findings: list[Finding],
                as_of: dt.datetime, known_at: dt.datetime) -> dict[str, Any]:
        agency_name = self.agencies.name_of(source.agency_id) if self.agencies is not None else None
        items = []
        for finding in findings:
            event_id = str(uuid.uuid5(FINDING_NAMESPACE, f"{roster.id}|{finding.key}"))
            items.append({**finding.as_dict(), "event_id": event_id, "lead_id": lead_id(finding.rule, event_id)})
        rejected = [row.as_dict() for row in rows if not row.ok]
        return {
            "roster": {"id": str(roster.id), "source": str(source), "kind": source.kind,
                       "kind_label": KIND_LABELS[source.kind], "agency_id": source.agency_id,
                       "agency_name": agency_name, "as_of": roster.as_of, "compared_as_of": as_of.isoformat(),
                       "known_at": known_at.isoformat(), "hash": roster.digest, "rows": roster.row_count,
                       "rows_compared": len(rows) - len(rejected), "rows_rejected": len(rejected),
                       "file_name": roster.file_name, "received_by": roster.received_by,
                       "received_at": roster.received_at, "region": roster.region,
                       "rule": KIND_RULES[source.kind]},
            "summary": {"findings": len(items), "roster_only": sum(f["direction"] == "roster_only" for f in items),
                        "service_only": sum(f["direction"] == "service_only" for f in items),
                        "rows_rejected": len(rejected),
                        "problems": dict(Counter(p.split(" / ")[0].split("：")[0] for r in rejected
                                                 for p in r["problems"]))},
            "findings": items,
            "rejected_rows": rejected,
        }

    # -- publishing -----------------------------------------------------------------------------------------------

    def _publish(self, roster: Any, findings: list[dict[str, Any]]) -> None:
        if not findings:
            return
        source, region = RosterSource.parse(roster.source), roster.region
        as_of, _ = self._moments(roster)
        envelopes = []
        for f in findings:
            case_ref = (f["row"] or {}).get("case_ref") or None
            envelopes.append({
                "event_id": f["event_id"], "event_type": "roster_discrepancy_found", "schema_version": 1,
                "agency": {"kind": source.kind, "id": source.agency_id,
                           "region": region or f["region"] or "000000"},
                "person": {"id_number": f["id_number"], "name": f["name"] or "（名单未载姓名）"},
                "occurred_at": as_of.isoformat(), **({"case_ref": case_ref} if case_ref else {}),
                "payload": {"rule": f["rule"], "direction": f["direction"], "roster_id": str(roster.id),
                            **({"region": f["region"]} if f["region"] else {}),
                            **({"row": f["row"]} if f["row"] else {}), "evidence": f["evidence"],
                            "finding": f["explanation"][:4000]},
            })
        publisher = PublisherIdentity(kind=AgencyKind(source.kind), id=source.agency_id)
        result = self.ingestor.ingest(envelopes, Source(name=f"roster:{roster.id}", publisher=publisher))
        for item, finding in zip(result.items, findings):
            finding["recorded"] = item.status != "rejected"
            if item.status == "rejected":
                finding["refused"] = item.reason


def _span(r: Any) -> KnownSpan:
    return KnownSpan(r.id_number, r.name, r.status, bool(r.in_register), r.region,
                     _us_to_moment(r.valid_from_us), _us_to_moment(r.valid_to_us))  # type: ignore[arg-type]


def _decision(r: Any) -> KnownDecision:
    return KnownDecision(r.id_number, r.name, r.decided_by, r.case_key, _us_to_date(r.effective_us), r.region)
