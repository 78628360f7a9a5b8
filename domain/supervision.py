"""The fold: one person's events → episodes, status, responsible agency, obligations, gaps and anomalies.

Pure and bitemporal: `fold(events, as_of=T, known_at=K)` uses only events recorded by K (and retractions recorded
by K), ordered by occurred_at, that occurred by T. With `as_of=None` it uses every known event; the obligations it
returns then carry their due and fulfilment times, and `Obligation.state(as_of)` tells what they were at any moment
not earlier than the person's last event (the read models rely on this). See docs/rules.md for every reading.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .calendar import (SHANGHAI, WorkingCalendar, due_in_days, due_in_hours, due_in_months, due_in_working_days,
                       local_date)
from .jurisdiction import Supervision, outside_jurisdiction
from .identity import normalised_case_ref, normalised_name
from .rules import LOST_SUPERVISION_RULES, RuleSet, Unit

# Obligations that belong to an episode and are closed when it ends (discharge, commitment, death, superseded).
EPISODE_BOUND = {
    "R01_bureau_not_notified", "R02_documents_not_delivered", "R03_receipt_not_returned", "R04_not_reported",
    "R05_not_transferred", "R06_not_enrolled", "R07_transfer_file_not_sent", "R08_transfer_not_received",
    "R09_ruling_overdue", "R10_arrest_decision_overdue", "R11_commitment_not_executed", "R12_missing_not_escalated",
    "R13_missing_unresolved", "R15_not_discharged", "R19_monitoring_overdue",
}
# Bureau/police events that presuppose a decision on record (A01) — not assessments, which come before one.
PRESUPPOSE_DECISION = {
    "documents_receipted", "prisoner_released", "subject_transferred", "subject_reported", "subject_enrolled",
    "contact_lost", "police_assistance_requested", "contact_restored", "warning_issued", "revocation_proposed",
    "commitment_proposed", "transfer_decided", "transfer_file_sent", "monitoring_started", "monitoring_extended",
    "monitoring_ended", "discharged",
}
# Supervision activity that cannot follow the end of an episode (A04).
SUPERVISION_ACTIVITY = {
    "subject_reported", "subject_enrolled", "contact_lost", "police_assistance_requested", "contact_restored",
    "warning_issued", "revocation_proposed", "commitment_proposed", "transfer_decided", "transfer_file_sent",
    "monitoring_started", "monitoring_extended", "monitoring_ended",
}

GAP_STATES = ("open", "late")

# Events at the same instant are folded in this causal order of their types, then by event_id: never by arrival,
# so the same events give the same answer in every arrival order (domain.md, "Same instant"). Each trigger comes
# before what fulfils it (a fulfilling event at the trigger's instant fulfils it), and an episode's end comes after
# whatever else happened at that instant (a tag removed at the minute of discharge is not activity after the end).
SAME_INSTANT_ORDER: tuple[str, ...] = (
    # An assessment comes before the decision it informs (Law 18).
    "assessment_requested", "assessment_reported",
    # The decision, then what its organ does with it (Law 20).
    "decision_effective", "term_changed", "bureau_notified", "documents_delivered", "documents_receipted",
    # Release and hand-over, then reporting (Law 21).
    "prisoner_released", "subject_transferred", "subject_reported",
    # A change of 执行地 is decided before the new bureau enrols the person (Law 27); enrolment (Law 22).
    "transfer_decided", "transfer_file_sent", "subject_enrolled",
    # Supervision: each start before its end.
    "monitoring_started", "monitoring_extended", "monitoring_ended", "warning_issued",
    "contact_lost", "police_assistance_requested", "contact_restored",
    "detention_started", "detention_ended", "pursuit_started", "fugitive_captured",
    # Revocation and commitment (Law 46-49): proposal, arrest decision, ruling.
    "revocation_proposed", "commitment_proposed", "arrest_decided", "revocation_ruled", "commitment_decided",
    # Oversight (Law 62): a notice before its reply.
    "procuratorial_notice_issued", "notice_replied", "supervision_review_recorded", "roster_discrepancy_found",
    # The episode's ends, after everything else at that instant.
    "committed_to_custody", "discharged", "death_recorded",
    "event_retracted",
)
_RANK = {event_type: rank for rank, event_type in enumerate(SAME_INSTANT_ORDER)}


def fold_order(occurred_at: dt.datetime, event_type: str, event_id: str) -> tuple[dt.datetime, int, str]:
    """The position of an event in a person's history: valid time, then the causal order, then the event id."""
    return occurred_at, _RANK.get(event_type, len(_RANK)), event_id.lower()


class EventLike(Protocol):
    event_id: str
    event_type: str
    agency: dict[str, str]
    person: dict[str, str]
    occurred_at: str
    recorded_at: str
    payload: dict[str, Any]


def iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(SHANGHAI).isoformat() if moment is not None else None


_MICROSECOND = dt.timedelta(microseconds=1)


@functools.lru_cache(maxsize=65536)
def _period_end(unit: Unit, start: dt.date, amount: int, extend: bool, calendar: WorkingCalendar) -> dt.datetime:
    """The end of a period from a Shanghai date: the calendar's functions, cached. They are pure in these arguments,
    and the calendar's identity is part of the key, so another calendar never sees these results. (N-day periods
    go through `_days_end`, except a negative N, which `due_in_days` refuses.)"""
    if unit is Unit.WORKING_DAYS:
        return due_in_working_days(start, amount, calendar)
    return (due_in_days if unit is Unit.DAYS else due_in_months)(start, amount, calendar, extend=extend)


@functools.lru_cache(maxsize=65536)
def _days_end(last: dt.date, extend: bool, calendar: WorkingCalendar) -> dt.datetime:
    """The end of an N-day period whose last day (the start + N) is `last`. `due_in_days` counts no further than
    the last day, so it is looked up by that day, of which there are far fewer than (start, N) pairs."""
    return due_in_days(last, 0, calendar, extend=extend)


@dataclass
class Obligation:
    rule: str
    triggered_by: str
    trigger_at: dt.datetime
    obligated_kind: str
    obligated_id: str | None
    obligated_region: str | None
    start: dt.datetime | dt.date | None = None  # where the period counts from; None: not started (pending)
    amount: int | None = None  # when the deadline depends on the event (R16, R17)
    due_at: dt.datetime | None = None
    fulfilled_at: dt.datetime | None = None
    fulfilled_by: str | None = None
    closed_by_end: bool = False
    episode: int | None = None
    match: str | None = None  # what a fulfilling event must refer to (R08 region, R16 notice id)
    # The due time counted over a year whose 调休 notice is not known (statutory holidays only): it may move.
    provisional: bool = False
    reason: str | None = None  # why an anomaly was raised, when the rule alone does not say (A10)

    def state(self, as_of: dt.datetime) -> str:
        """pending (period not started), upcoming, met, open or late at `as_of`."""
        if self.due_at is None:
            return "pending"
        if self.fulfilled_at is not None and self.fulfilled_at <= as_of:
            return "late" if self.fulfilled_at > self.due_at else "met"
        return "open" if as_of > self.due_at else "upcoming"

    @property
    def is_open(self) -> bool:
        return self.fulfilled_at is None

    def fulfil(self, event_id: str, at: dt.datetime, by_end: bool = False) -> None:
        self.fulfilled_at, self.fulfilled_by, self.closed_by_end = at, event_id, by_end


@dataclass
class Episode:
    number: int
    decision_event: str
    started_at: dt.datetime
    category: str
    term_start: dt.date
    term_end: dt.date
    execution_region: str
    decision_kind: str
    decision_id: str
    decision_region: str
    in_custody: bool
    current_region: str
    allowed_regions: set[str] = field(default_factory=set)
    document_no: str | None = None  # the judgment's or ruling's number (案号), as the decision organ gave it
    reported: bool = False
    transferred: bool = False
    enrolled_at: dt.datetime | None = None
    transferring_to: str | None = None
    missing: bool = False
    fugitive: bool = False
    detained: bool = False
    revocation_pending: str | None = None  # who must rule: "court" or the commitment proposal's to_kind
    awaiting_commitment: str | None = None  # who must execute: "police" or "prison"
    ended: str | None = None  # discharged, committed, deceased, superseded
    ended_at: dt.datetime | None = None

    @property
    def supervision(self) -> Supervision:
        return Supervision(self.decision_kind, self.decision_id, self.decision_region, self.execution_region,
                           self.current_region, self.allowed_regions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "category": self.category, "term_start": self.term_start.isoformat(), "term_end": self.term_end.isoformat(),
            "execution_region": self.execution_region, "current_region": self.current_region,
            "decided_by": {"kind": self.decision_kind, "id": self.decision_id, "region": self.decision_region},
            "decision_event": self.decision_event, "enrolled_at": iso(self.enrolled_at),
            "ended": self.ended, "ended_at": iso(self.ended_at),
        }


@dataclass
class PersonView:
    id_number: str
    name: str
    as_of: dt.datetime | None
    known_at: dt.datetime | None
    rule_set: str
    status: str | None
    responsible: dict[str, str | None] | None
    episode: Episode | None
    obligations: list[Obligation]
    last_occurred_at: dt.datetime | None
    keys: tuple[str, ...] = ()  # the person keys whose events this view holds, when linked (domain/merging.py)

    @property
    def region(self) -> str | None:
        """The region the person belongs to for oversight: the current region of the episode."""
        if self.episode:
            return self.episode.current_region
        regions = [o.obligated_region for o in self.obligations if o.obligated_region]
        return regions[0] if regions else None

    def gaps(self, as_of: dt.datetime, states: Iterable[str] = GAP_STATES) -> list[Obligation]:
        wanted = set(states)
        return [o for o in self.obligations if o.state(as_of) in wanted]

    def lost_days(self, as_of: dt.datetime) -> float:
        """Days during which an R04/R05/R08/R13 gap was open (their union), up to as_of."""
        intervals = sorted(
            (o.due_at, min(o.fulfilled_at or as_of, as_of))
            for o in self.obligations
            if o.rule in LOST_SUPERVISION_RULES and o.due_at is not None and o.due_at < as_of
            and (o.fulfilled_at is None or o.fulfilled_at > o.due_at)
        )
        total = dt.timedelta()
        current_start = current_end = None
        for start, end in intervals:
            if end <= start:
                continue
            if current_end is None or start > current_end:
                if current_end is not None:
                    total += current_end - current_start
                current_start, current_end = start, end
            else:
                current_end = max(current_end, end)
        if current_end is not None:
            total += current_end - current_start
        return total.total_seconds() / 86400


@dataclass
class _Event:
    event_id: str
    event_type: str
    kind: str
    agency_id: str
    region: str
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    payload: dict[str, Any]
    name: str
    # The stretches of transaction time [from, to) the event is known in, when that is not simply from its
    # recording on: an event of another key merged into this person's history (domain/merging.py).
    known: tuple[tuple[dt.datetime, dt.datetime | None], ...] | None = None

    @property
    def publisher(self) -> tuple[str, str]:
        return self.kind, self.agency_id

    @property
    def known_from(self) -> dt.datetime:
        return self.known[0][0] if self.known else self.recorded_at

    def known_at(self, moment: dt.datetime | None) -> bool:
        """Whether the event is known at `moment` (None: now)."""
        if self.known is None:
            return moment is None or self.recorded_at <= moment
        if moment is None:
            return self.known[-1][1] is None
        return any(start <= moment and (end is None or moment < end) for start, end in self.known)


def _parse(events: Sequence[EventLike]) -> list[_Event]:
    return [
        _Event(e.event_id, e.event_type, e.agency["kind"], e.agency["id"], e.agency["region"],
               dt.datetime.fromisoformat(e.occurred_at), dt.datetime.fromisoformat(e.recorded_at), e.payload,
               e.person.get("name", ""))
        for e in events
    ]


def _parse_records(records: Sequence[Mapping[str, Any]]) -> list[_Event]:
    fromisoformat = dt.datetime.fromisoformat
    return [
        _Event(r["event_id"], r["event_type"], (agency := r["agency"])["kind"], agency["id"], agency["region"],
               fromisoformat(r["occurred_at"]), fromisoformat(r["recorded_at"]), r["payload"],
               r["person"].get("name", ""))
        for r in records
    ]


def fold(
    events: Sequence[EventLike],
    *,
    id_number: str,
    rules: RuleSet,
    calendar: WorkingCalendar | None = None,
    as_of: dt.datetime | None = None,
    known_at: dt.datetime | None = None,
) -> PersonView:
    """One person's view. `calendar`: the rule set's own (with its holiday notices) unless another is given."""
    return _fold(_parse(events), id_number, rules, calendar or rules.calendar, as_of, known_at)


def fold_parsed(
    parsed: Sequence[Any],
    *,
    id_number: str,
    rules: RuleSet,
    calendar: WorkingCalendar | None = None,
    as_of: dt.datetime | None = None,
    known_at: dt.datetime | None = None,
) -> PersonView:
    """`fold` over events already parsed (`parse_events`, `parse_records`), such as a person's merged with the
    events of the keys linked to theirs (domain/merging.py)."""
    return _fold(list(parsed), id_number, rules, calendar or rules.calendar, as_of, known_at)


def fold_records(
    records: Sequence[Mapping[str, Any]],
    *,
    id_number: str,
    rules: RuleSet,
    calendar: WorkingCalendar | None = None,
    as_of: dt.datetime | None = None,
    known_at: dt.datetime | None = None,
) -> PersonView:
    """`fold` over events given as mappings of the same fields (decoded stored state), not objects."""
    return _fold(_parse_records(records), id_number, rules, calendar or rules.calendar, as_of, known_at)


def effective_retractions(events: Iterable[Any]) -> dict[str, str]:
    """Retracted event id (lower case) -> the retraction's event id, for the retractions that take effect.

    A retraction takes effect once its target is among `events`, whatever the order they arrived in, and only if
    the target's own publisher (same kind and id) sent it and the target is not itself a retraction. A retraction
    whose target is not (yet) here waits; one by another agency never takes effect. `events` have `event_id`,
    `event_type`, `payload` and `publisher` (RecordedEvent, or the fold's parsed events)."""
    events = list(events)
    targets = {e.event_id.lower(): e for e in events if e.event_type != "event_retracted"}
    effective: dict[str, str] = {}
    for retraction in sorted((e for e in events if e.event_type == "event_retracted"),
                             key=lambda e: e.event_id.lower()):
        target_id = str(retraction.payload["retracted_event_id"]).lower()
        target = targets.get(target_id)
        if target is not None and target_id not in effective and target.publisher == retraction.publisher:
            effective[target_id] = retraction.event_id
    return effective


def parse_events(events: Sequence[EventLike]) -> list[Any]:
    """Events (RecordedEvent or alike), in the form `effective_events` and `FoldRun` take."""
    return _parse(events)


def parse_records(records: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Events given as mappings (decoded stored state), in the form `effective_events` and `FoldRun` take."""
    return _parse_records(records)


def effective_events(parsed: Sequence[Any], known_at: dt.datetime | None = None) -> list[Any]:
    """The events (from `parse_records`) the fold applies, in its order: those recorded by `known_at` (all when
    None), less retractions and the events they retract."""
    if known_at is not None or any(e.known for e in parsed):
        parsed = [e for e in parsed if e.known_at(known_at)]
    retracted = effective_retractions(parsed)
    parsed = [e for e in parsed if e.event_type != "event_retracted" and e.event_id.lower() not in retracted]
    parsed.sort(key=lambda e: fold_order(e.occurred_at, e.event_type, e.event_id))
    return parsed


@dataclass(frozen=True)
class Snapshot:
    """What `fold(as_of=T)` says of a person, T being the instant of the last event a FoldRun applied: the
    obligations as (obligation, due time, provisional) with the due time counted as the fold's end would count it."""

    status: str | None
    responsible: dict[str, str | None] | None
    episode: Episode | None
    region: str | None
    obligations: list[tuple[Obligation, dt.datetime | None, bool]]


class FoldRun:
    """The fold applied one event at a time, in `effective_events` order, with `snapshot()` after any of them: the
    valid-time history of a person in one pass, instead of a fold per instant (projections/bitemporal.py).

    A snapshot leaves the run unchanged: the due times the fold's end would set (they depend on custody, which
    later events change) and the A03 anomalies are computed beside the obligations, not into them."""

    def __init__(self, rules: RuleSet, calendar: WorkingCalendar | None = None):
        self.rules = rules
        self._folder = _Folder(rules, calendar or rules.calendar)
        self._dues: dict[tuple, tuple[dt.datetime, bool]] = {}

    def apply(self, event: Any) -> None:
        self._folder.apply(event)

    def snapshot(self) -> Snapshot:
        folder, rules = self._folder, self.rules
        custody = tuple(map(tuple, folder.custody))
        obligations = []
        for obligation in folder.obligations + folder.missing_while_detained():
            if not rules.enabled(obligation.rule):
                continue
            if obligation.due_at is not None or obligation.start is None:
                obligations.append((obligation, obligation.due_at, obligation.provisional))
                continue
            key = (obligation.rule, obligation.start, obligation.amount, custody)
            due = self._dues.get(key)
            if due is None:
                due = self._dues[key] = folder._due(obligation)
            obligations.append((obligation, *due))
        episode = folder.episode
        if episode is not None:
            region = episode.current_region
        else:
            region = next((o.obligated_region for o, _, _ in obligations if o.obligated_region), None)
        return Snapshot(folder.status(), folder.responsible(), episode, region, obligations)


def _fold(parsed: list[_Event], id_number: str, rules: RuleSet, calendar: WorkingCalendar,
          as_of: dt.datetime | None, known_at: dt.datetime | None) -> PersonView:
    parsed = effective_events(parsed, known_at)
    if as_of is not None:
        parsed = [e for e in parsed if e.occurred_at <= as_of]
    folder = _Folder(rules, calendar)
    for event in parsed:
        folder.apply(event)
    folder.finish()
    name = next((e.name for e in reversed(parsed) if e.name), "")
    return PersonView(
        id_number=id_number, name=name, as_of=as_of, known_at=known_at, rule_set=rules.version,
        status=folder.status(), responsible=folder.responsible(), episode=folder.episode,
        obligations=[o for o in folder.obligations if rules.enabled(o.rule)],
        last_occurred_at=parsed[-1].occurred_at if parsed else None,
    )


class _Folder:
    def __init__(self, rules: RuleSet, calendar: WorkingCalendar):
        self.rules = rules
        self.calendar = calendar
        self.episode: Episode | None = None
        self.episodes = 0
        self.obligations: list[Obligation] = []
        self.custody: list[list[dt.datetime | None]] = []  # [start, end or None]
        self.contact_lost: list[list[Any]] = []  # [start, end or None, event_id]
        self.detentions: list[list[Any]] = []  # [start, end or None, event_id, region]
        self.orphan: Obligation | None = None  # A01
        self.decided = False
        self.assessment_region: str | None = None  # an assessment was requested (status `assessment` until a decision)
        self.deceased = False
        # A bureau supervising someone whose decision is not on record (A01): supervised there all the same.
        self.unlinked_region: str | None = None
        self.name: tuple[str, str] | None = None  # the first name in fold order: (as published, normalised) (A08)
        self.name_conflicts: set[tuple[str, str, str]] = set()  # (publisher kind, id, normalised name) raised
        self.decisions: dict[str, _Event] = {}  # normalised document_no -> the decision that took effect (A09)

    # -- helpers ----------------------------------------------------------------------------------------------

    def open(self, rule: str, event: _Event, kind: str, agency_id: str | None, region: str | None, **fields) -> Obligation:
        obligation = Obligation(
            rule=rule, triggered_by=event.event_id, trigger_at=event.occurred_at, obligated_kind=kind,
            obligated_id=agency_id, obligated_region=region,
            episode=self.episode.number if self.episode and rule in EPISODE_BOUND else None,
            **{"start": event.occurred_at, **fields},
        )
        self.obligations.append(obligation)
        return obligation

    def fulfil_matching(self, rules: Collection[str], event: _Event) -> None:
        """Fulfil the open obligations of these rules that this event meets: all of them, or for a rule whose
        obligations name what must answer them (`_MATCHES`), those that name what this event refers to."""
        for obligation in self.obligations:
            if obligation.fulfilled_at is None and obligation.rule in rules:
                matches = _MATCHES.get(obligation.rule)
                key = matches(event) if matches is not None else None
                if key is None or obligation.match == key:
                    obligation.fulfil(event.event_id, event.occurred_at)

    def _in_custody(self, moment: dt.datetime) -> bool:
        for start, end in self.custody:
            if start <= moment and (end is None or moment < end):
                return True
        return False

    def _end_custody(self, at: dt.datetime) -> None:
        for interval in self.custody:
            if interval[1] is None:
                interval[1] = at

    def end_episode(self, how: str, event: _Event) -> None:
        episode = self.episode
        if episode is None or episode.ended:
            return
        episode.ended, episode.ended_at = how, event.occurred_at
        for obligation in self.obligations:
            if obligation.episode == episode.number and obligation.is_open:
                obligation.fulfil(event.event_id, event.occurred_at, by_end=True)

    @property
    def active(self) -> Episode | None:
        return self.episode if self.episode and not self.episode.ended else None

    # -- events -----------------------------------------------------------------------------------------------

    def apply(self, e: _Event) -> None:
        p = e.payload
        episode = self.active
        if e.name:
            self._compare_name(e)
        if e.event_type == "decision_effective" and p.get("document_no"):
            first = self.decisions.setdefault(normalised_case_ref(p["document_no"]), e)
            if first is not e:  # one decision, published twice: flagged, and it opens nothing again
                self.open("A09_duplicate_decision", e, e.kind, e.agency_id, e.region, due_at=e.occurred_at,
                          reason=f"文书号 {p['document_no']} 已于 {first.occurred_at.isoformat()} 由 {first.agency_id} "
                                 f"生效（事件 {first.event_id}） / document {p['document_no']} already took effect "
                                 f"(event {first.event_id})")
                return
        if self.episode is not None:
            reason = outside_jurisdiction(e.event_type, e.kind, e.agency_id, e.region, self.episode.supervision)
            if reason is not None:  # kept and shown, but it changes nothing (domain/jurisdiction.py)
                self.open("A10_outside_jurisdiction", e, e.kind, e.agency_id, e.region, due_at=e.occurred_at,
                          reason=reason)
                return
        if e.event_type in PRESUPPOSE_DECISION and not self.decided and self.orphan is None and e.kind in ("bureau", "police"):
            self.orphan = self.open("A01_no_decision_on_record", e, "court", None, e.region)
        if e.event_type in SUPERVISION_ACTIVITY and self.episode is not None and self.episode.ended in (
            "discharged", "committed", "deceased"
        ):
            self.open("A04_activity_after_end", e, e.kind, e.agency_id, e.region, due_at=e.occurred_at)

        fulfilled = self.rules.fulfilled_on.get(e.event_type)
        if fulfilled:
            self.fulfil_matching(fulfilled, e)
        handler = _HANDLERS.get(e.event_type)
        if handler is not None:
            handler(self, e, p, episode)
        for rule in self.rules.opened_on.get(e.event_type, ()):
            opening = _OPENERS.get(rule, _at_the_bureau)(self, e, p, episode)
            if opening is not None:
                kind, agency_id, region, fields = opening
                obligation = self.open(rule, e, kind, agency_id, region, **fields)
                if "(recorded_at)" in self.rules[rule].fulfilled_by:  # met when the record reaches the service
                    obligation.fulfil(e.event_id, e.recorded_at)

    def _compare_name(self, e: _Event) -> None:
        """A08: the person key published under a name other than the first (compared normalised), once per
        publisher and name."""
        if self.name is not None and e.name == self.name[0]:
            return  # the same name as written first: most events
        normalised = normalised_name(e.name)
        if self.name is None:
            self.name = (e.name, normalised)
            return
        key = (e.kind, e.agency_id, normalised)
        if normalised != self.name[1] and key not in self.name_conflicts:
            self.name_conflicts.add(key)
            self.open("A08_name_conflict", e, e.kind, e.agency_id, e.region, due_at=e.occurred_at,
                      reason=f"以“{e.name}”报送，记录中为“{self.name[0]}” / published as {e.name!r}, on record as "
                             f"{self.name[0]!r}")

    def on_assessment_requested(self, e, p, episode):
        self.assessment_region = p["bureau_region"]

    def on_decision_effective(self, e, p, episode):
        if episode is not None:
            self.end_episode("superseded", e)
        self.decided = True
        self.episodes += 1
        self.episode = Episode(
            number=self.episodes, decision_event=e.event_id, started_at=e.occurred_at, category=p["category"],
            term_start=dt.date.fromisoformat(p["term_start"]), term_end=dt.date.fromisoformat(p["term_end"]),
            execution_region=p["execution_region"], decision_kind=e.kind, decision_id=e.agency_id,
            decision_region=e.region, in_custody=p["in_custody"], current_region=p["execution_region"],
            allowed_regions={p["execution_region"]}, document_no=p.get("document_no"),
        )
        if p["in_custody"]:
            self.custody.append([e.occurred_at, None])

    def on_prisoner_released(self, e, p, episode):
        self._end_custody(e.occurred_at)
        for obligation in self.obligations:
            if obligation.rule == "R04_not_reported" and obligation.is_open and (
                obligation.start is None or obligation.start < e.occurred_at
            ):
                obligation.start = e.occurred_at  # the later of the effective date and the release

    def on_subject_transferred(self, e, p, episode):
        self._end_custody(e.occurred_at)
        if episode:
            episode.transferred = True

    def on_subject_reported(self, e, p, episode):
        if episode is None and self.episode is None:
            self.unlinked_region = p["region"]
        if episode:
            episode.reported = True

    def on_subject_enrolled(self, e, p, episode):
        if episode is None:
            if self.episode is None:
                self.unlinked_region = p["region"]
            return
        episode.enrolled_at = episode.enrolled_at or e.occurred_at
        if p["region"] in episode.allowed_regions:  # an enrolment elsewhere without a transfer is A02, not a move
            episode.current_region = p["region"]
            # The bureau that supervises the person at term end discharges them (Law 44): after a change of 执行地,
            # the new one.
            for obligation in self.obligations:
                if obligation.rule == "R15_not_discharged" and obligation.is_open and obligation.episode == episode.number:
                    obligation.obligated_region = p["region"]
        if episode.transferring_to == p["region"]:
            episode.transferring_to = None

    def on_contact_lost(self, e, p, episode):
        if not any(interval[1] is None for interval in self.contact_lost):
            self.contact_lost.append([e.occurred_at, None, e.event_id])
        if episode:
            episode.missing = True

    def on_contact_restored(self, e, p, episode):
        for interval in self.contact_lost:
            if interval[1] is None:
                interval[1] = e.occurred_at
        if episode:
            episode.missing = False

    def on_detention_started(self, e, p, episode):
        self.custody.append([e.occurred_at, None])
        self.detentions.append([e.occurred_at, None, e.event_id, e.region])
        if episode:
            episode.detained = True

    def on_detention_ended(self, e, p, episode):
        for interval in self.detentions:
            if interval[1] is None:
                interval[1] = e.occurred_at
        for interval in self.custody:  # the detention's custody interval (the latest open one)
            if interval[1] is None:
                interval[1] = e.occurred_at
        if episode:
            episode.detained = False

    def on_revocation_proposed(self, e, p, episode):
        if episode:
            episode.revocation_pending = "court"

    def on_commitment_proposed(self, e, p, episode):
        if episode:
            episode.revocation_pending = p["to_kind"]

    def on_revocation_ruled(self, e, p, episode):
        if episode:
            episode.revocation_pending = None
            if p["revoked"]:
                episode.awaiting_commitment = "police"

    def on_commitment_decided(self, e, p, episode):
        if episode:
            episode.revocation_pending = None
            if p["commit"]:
                episode.awaiting_commitment = "prison" if e.kind == "prison" else "police"

    def on_committed_to_custody(self, e, p, episode):
        self.custody.append([e.occurred_at, None])
        self.end_episode("committed", e)

    def on_pursuit_started(self, e, p, episode):
        if episode:
            episode.fugitive = True

    def on_fugitive_captured(self, e, p, episode):
        if episode:
            episode.fugitive = False

    def on_transfer_decided(self, e, p, episode):
        if episode:
            episode.allowed_regions.add(p["new_region"])
            episode.transferring_to = p["new_region"]

    def on_term_changed(self, e, p, episode):
        if episode is None:
            return
        episode.term_end = dt.date.fromisoformat(p["new_term_end"])
        for obligation in self.obligations:
            if obligation.rule == "R15_not_discharged" and obligation.is_open and obligation.episode == episode.number:
                obligation.start, obligation.triggered_by, obligation.trigger_at = episode.term_end, e.event_id, e.occurred_at

    def on_discharged(self, e, p, episode):
        self.end_episode("discharged", e)

    def on_death_recorded(self, e, p, episode):
        self.deceased = True  # even after an earlier end (a death in prison after commitment): the person is dead
        self.end_episode("deceased", e)

    # -- at the end -------------------------------------------------------------------------------------------

    def finish(self) -> None:
        self.obligations.extend(self.missing_while_detained())
        for obligation in self.obligations:
            if obligation.due_at is None and obligation.start is not None:
                obligation.due_at, obligation.provisional = self._due(obligation)

    def missing_while_detained(self) -> list[Obligation]:
        """A03: the times the person was reported missing while held in detention (new obligations, not added)."""
        found = []
        for lost_start, lost_end, lost_event in self.contact_lost:
            for det_start, det_end, det_event, region in self.detentions:
                start = max(lost_start, det_start)
                if lost_end is None or det_end is None:
                    end = lost_end if det_end is None else det_end
                else:
                    end = min(lost_end, det_end)
                if end is not None and end <= start:
                    continue
                trigger = det_event if det_start >= lost_start else lost_event
                obligation = Obligation(
                    rule="A03_missing_while_detained", triggered_by=trigger, trigger_at=start,
                    obligated_kind="police", obligated_id=None, obligated_region=region, start=start, due_at=start,
                )
                if end is not None:
                    obligation.fulfil(trigger, end)
                found.append(obligation)
        return found

    def _due(self, obligation: Obligation) -> tuple[dt.datetime, bool]:
        """The due time, and whether it depends on a year whose holiday notice is not known (provisional)."""
        rule = self.rules[obligation.rule]
        deadline = rule.deadline
        amount = obligation.amount or (deadline.amount if deadline else None)
        unit = deadline.unit if deadline else Unit.DAYS
        start = obligation.start
        if unit is Unit.HOURS:
            return due_in_hours(start, amount), False
        # The other periods count from the start's Shanghai date: cached functions of it (_days_end, _period_end).
        day = local_date(start) if isinstance(start, dt.datetime) else start
        if unit is Unit.WORKING_DAYS:
            due = _period_end(Unit.WORKING_DAYS, day, amount, True, self.calendar)
        else:
            if unit is Unit.DAYS and amount >= 0:
                last = day + dt.timedelta(days=amount)
                plain = _days_end(last, False, self.calendar)
            else:
                plain = _period_end(unit, day, amount, False, self.calendar)
            # CPL 105: no extension over rest days while the person is in custody at the period's end; then no
            # holiday decides the due time.
            if self.custody and self._in_custody(plain - _MICROSECOND):
                return plain, False
            if unit is Unit.DAYS and amount >= 0:
                due = _days_end(last, True, self.calendar)
            else:
                due = _period_end(unit, day, amount, True, self.calendar)
        return due, self.calendar.provisional_between(day, local_date(due - _MICROSECOND))

    # -- status -----------------------------------------------------------------------------------------------

    def status(self) -> str | None:
        episode = self.episode
        if self.deceased:
            return "deceased"
        if episode is None:
            if self.unlinked_region:
                return "under_supervision"
            return "assessment" if self.assessment_region else None
        if episode.ended in ("deceased", "committed", "discharged"):
            return episode.ended
        for flag, status in (
            (episode.awaiting_commitment, "awaiting_commitment"), (episode.fugitive, "fugitive"),
            (episode.revocation_pending, "revocation_pending"), (episode.detained, "detained"),
            (episode.missing, "missing"), (episode.transferring_to, "transferring"),
            (episode.enrolled_at or episode.reported or episode.transferred, "under_supervision"),
        ):
            if flag:
                return status
        return "awaiting_transfer" if episode.category == "temporary_release" else "awaiting_report"

    def responsible(self) -> dict[str, str | None] | None:
        status = self.status()
        episode = self.episode
        if status is None or status in ("deceased", "committed", "discharged"):
            return None
        if status == "assessment":
            return {"kind": "bureau", "region": self.assessment_region}
        if episode is None:
            return {"kind": "bureau", "region": self.unlinked_region}
        if status in ("awaiting_report", "under_supervision", "missing"):
            return {"kind": "bureau", "region": episode.current_region}
        if status == "transferring":
            return {"kind": "bureau", "region": episode.transferring_to}
        if status == "awaiting_transfer":
            r05 = next((o for o in reversed(self.obligations) if o.rule == "R05_not_transferred"), None)
            return {"kind": r05.obligated_kind if r05 else "police", "region": r05.obligated_region if r05 else None}
        if status == "awaiting_commitment":  # who must execute: the open R11's obligated agency
            r11 = next((o for o in reversed(self.obligations) if o.rule == "R11_commitment_not_executed" and o.is_open), None)
            if r11 is not None:
                return {"kind": r11.obligated_kind, "region": r11.obligated_region}
            return {"kind": episode.awaiting_commitment, "region": episode.current_region}
        if status in ("detained", "fugitive"):
            return {"kind": "police", "region": episode.current_region}
        if status == "revocation_pending":  # the organ that must rule: the open R09's obligated agency
            r09 = next((o for o in reversed(self.obligations) if o.rule == "R09_ruling_overdue" and o.is_open), None)
            if r09 is not None:
                return {"kind": r09.obligated_kind, "region": r09.obligated_region}
            return {"kind": episode.revocation_pending, "region": episode.current_region}
        return None


# The handler of each event type (`_Folder.on_<event_type>`), looked up once instead of by name for every event.
_HANDLERS = {name[len("on_"):]: handler for name, handler in vars(_Folder).items() if name.startswith("on_")}


# -- which agency each rule obligates -----------------------------------------------------------------------------------
# The rule table (domain/rules.py) says which events open a rule (`trigger`), which fulfil it (`fulfilled_by`) and its
# period; the fold reads them. What the table cannot say is worked out here, per rule, from the event that opens it:
# the agency obligated (kind, id, region), where the period starts, what a fulfilling event must refer to, or that
# the rule does not apply to this event after all (R04 and R05 split decisions by category). An event a rule's
# opener does not know (a province added it to the trigger) obligates the bureau where the person is supervised.
# A01, A03, A04 and A10 are derived from the history as a whole (`_Folder.apply`, `finish`), not opened here.

Opening = tuple[str, str | None, str | None, dict[str, Any]] | None  # kind, agency id, region, Obligation fields


def _where(folder: _Folder, e: _Event) -> str | None:
    episode = folder.episode
    return episode.current_region if episode is not None else (folder.unlinked_region or e.region)


def _at_the_bureau(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    return "bureau", None, _where(folder, e), {}


def _by_the_actor(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    return "bureau", e.agency_id, e.region, {}


def _decision_organ(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    if e.event_type == "decision_effective":
        return e.kind, e.agency_id, e.region, {}
    return _at_the_bureau(folder, e, p, episode)


def _not_reported(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    if e.event_type == "prisoner_released":
        return None  # the release moves the start of the open R04 (`on_prisoner_released`)
    if e.event_type == "decision_effective":
        if p["category"] == "temporary_release":
            return None  # R05 instead
        # Counted from the release when the person is in custody (and not before that release is on record).
        return "bureau", None, p["execution_region"], {"start": None if p["in_custody"] else e.occurred_at}
    return _at_the_bureau(folder, e, p, episode)


def _not_transferred(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    if e.event_type == "decision_effective":
        if p["category"] != "temporary_release":
            return None  # R04 instead
        if e.kind in ("police", "prison"):
            return e.kind, e.agency_id, e.region, {}
        return "police", None, p["execution_region"], {}
    return _at_the_bureau(folder, e, p, episode)


def _receipt(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    return "bureau", None, p.get("execution_region") or _where(folder, e), {}


def _not_enrolled(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    if e.event_type == "subject_transferred":
        return "bureau", None, p["to_region"], {}
    if e.event_type == "subject_reported":
        return "bureau", e.agency_id, p["region"], {}
    return _at_the_bureau(folder, e, p, episode)


def _transfer_received(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    if e.event_type == "transfer_decided":
        return "bureau", None, p["new_region"], {"match": p["new_region"]}
    return _at_the_bureau(folder, e, p, episode)


def _court(episode: Episode | None) -> tuple[str, str | None, str | None]:
    if episode and episode.decision_kind == "court":
        return "court", episode.decision_id, episode.decision_region
    return "court", None, episode.execution_region if episode else None


def _ruling(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    if e.event_type == "commitment_proposed":
        if episode and episode.decision_kind == p["to_kind"]:
            return episode.decision_kind, episode.decision_id, episode.decision_region, {"match": "commitment"}
        return p["to_kind"], None, e.region, {"match": "commitment"}
    return (*_court(episode), {"match": "revocation"})


def _arrest(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    if e.event_type == "revocation_proposed" and not p["arrest_requested"]:
        return None
    return (*_court(episode), {})


def _commitment(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    region = episode.current_region if episode else e.region
    if e.event_type == "revocation_ruled":
        return ("police", None, region, {}) if p["revoked"] else None
    if e.event_type == "commitment_decided":
        if not p["commit"]:
            return None
        # A prison that decided takes the person back itself; otherwise the police where the person is.
        return ("prison", e.agency_id, e.region, {}) if e.kind == "prison" else ("police", None, region, {})
    return "police", None, _where(folder, e), {}


def _police_told(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    return "police", e.agency_id, e.region, {}


def _term_end(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    if e.event_type == "decision_effective":
        return "bureau", None, p["execution_region"], {"start": folder.episode.term_end}
    return _at_the_bureau(folder, e, p, episode)


def _notice_reply(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    if e.event_type != "procuratorial_notice_issued":
        return _at_the_bureau(folder, e, p, episode)
    params = folder.rules["R16_notice_reply_overdue"].params
    days = p.get("reply_within_days") or params[f"{p['notice_kind']}_default_days"]
    addressee = p["addressed_to"]
    return addressee["kind"], addressee["id"], e.region, {
        "amount": days, "match": f"{e.event_id}|{addressee['kind']}|{addressee['id']}"}


def _assessment(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    if e.event_type != "assessment_requested":
        return _at_the_bureau(folder, e, p, episode)
    days = folder.rules["R17_assessment_overdue"].params["expedited_days"] if p["expedited"] else None
    return "bureau", None, p["bureau_region"], {"amount": days}


def _death_notice(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    fields = {"start": dt.date.fromisoformat(p["date_of_death"])} if "date_of_death" in p else {}
    return e.kind, e.agency_id, e.region, fields


def _region_mismatch(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    region = p.get("region")
    if episode is None or region is None or region in episode.allowed_regions:
        return None
    return "bureau", e.agency_id, region, {"due_at": e.occurred_at, "match": region}


def _derived(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
    return None


def _roster_finding(rule: str) -> Callable[[_Folder, _Event, Mapping[str, Any], Episode | None], Opening]:
    """A05–A07: a difference an agency's list shows (domain/rosters.py), at once a gap of the agency whose list it
    is; the person's region is the record's, else the one the finding names."""
    def opening(folder: _Folder, e: _Event, p: Mapping[str, Any], episode: Episode | None) -> Opening:
        if e.event_type != "roster_discrepancy_found" or p.get("rule") != rule:
            return None
        region = folder.episode.current_region if folder.episode is not None else p.get("region") or e.region
        return e.kind, e.agency_id, region, {"due_at": e.occurred_at, "reason": p.get("finding")}
    return opening


_OPENERS: dict[str, Callable[[_Folder, _Event, Mapping[str, Any], Episode | None], Opening]] = {
    "R01_bureau_not_notified": _decision_organ, "R02_documents_not_delivered": _decision_organ,
    "R03_receipt_not_returned": _receipt, "R04_not_reported": _not_reported, "R05_not_transferred": _not_transferred,
    "R06_not_enrolled": _not_enrolled, "R07_transfer_file_not_sent": _by_the_actor,
    "R08_transfer_not_received": _transfer_received, "R09_ruling_overdue": _ruling,
    "R10_arrest_decision_overdue": _arrest, "R11_commitment_not_executed": _commitment,
    "R12_missing_not_escalated": _by_the_actor, "R13_missing_unresolved": _by_the_actor,
    "R14_detention_notice_late": _police_told, "R15_not_discharged": _term_end,
    "R16_notice_reply_overdue": _notice_reply,
    "R17_assessment_overdue": _assessment, "R18_death_notice_late": _death_notice,
    "R19_monitoring_overdue": _by_the_actor, "A02_region_mismatch": _region_mismatch,
    "A05_unpublished_decision": _roster_finding("A05_unpublished_decision"),
    "A06_register_mismatch": _roster_finding("A06_register_mismatch"),
    "A07_unreported_detention": _roster_finding("A07_unreported_detention"),
    "A01_no_decision_on_record": _derived, "A03_missing_while_detained": _derived,
    "A04_activity_after_end": _derived, "A10_outside_jurisdiction": _derived,
    "A08_name_conflict": _derived, "A09_duplicate_decision": _derived,
}
# Rules whose obligations say what must answer them (`Obligation.match`): what a fulfilling event refers to.
_MATCHES: dict[str, Callable[[_Event], str | None]] = {
    "R08_transfer_not_received": lambda e: e.payload.get("region") if e.event_type == "subject_enrolled" else None,
    "R09_ruling_overdue": lambda e: {"revocation_ruled": "revocation", "commitment_decided": "commitment"}.get(
        e.event_type),
    "R16_notice_reply_overdue": lambda e: f"{e.payload['notice_event_id']}|{e.kind}|{e.agency_id}"
    if e.event_type == "notice_replied" else None,
    "A02_region_mismatch": lambda e: e.payload.get("new_region") if e.event_type == "transfer_decided" else None,
}
# Rules the fold derives from the whole history rather than opening them at a trigger (see above).
DERIVED_RULES = frozenset(rule for rule, opener in _OPENERS.items() if opener is _derived)
