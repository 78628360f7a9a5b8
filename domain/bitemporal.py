"""A person's supervision history in two times, as rows a database can answer any `(as_of, known_at)` question from.

Valid time is when things happened (`occurred_at`): what `fold(as_of=T)` says holds from the instant of the last
event it applied until the next event's instant. Transaction time is when the service knew it (`recorded_at`): what
`fold(known_at=K)` says holds from the moment the events it uses were recorded until the next recording changes it.
Each row carries both intervals, as SQL:2011 system-versioned tables do, so that

    fold(events, as_of=T, known_at=K)  ==  the rows with valid_from <= T < valid_to and known_from <= K < known_to

(open ends are None), and an obligation's fulfilment later than T reads as not fulfilled at T (`visible_at`). The
rows are written the way a system-versioned table changes: each recording closes the rows it changes (known_to)
and opens their successors; an event recorded in occurred order only extends the history, a late one replaces it
from its instant on. One FoldRun pass covers a person recorded in order; a late or retracted event starts one more
pass, so the cost stays close to a single fold's.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .rules import RuleSet
from .supervision import FoldRun, Snapshot, effective_events, fold_order


class PersonFacts(NamedTuple):
    """What is true of the person over a valid interval: where they belong, their status and who answers for them."""

    region: str | None
    status: str | None
    responsible_kind: str | None
    responsible_region: str | None
    enrolled_at: dt.datetime | None
    ended: str | None
    ended_at: dt.datetime | None
    category: str | None
    case_ref: str | None = None  # the decision's number (案号): oversight searches by it
    decided_by: str | None = None  # the decision organ's id: a court's list is compared with its decisions


class ObligationFacts(NamedTuple):
    """One obligation over a valid interval. `fulfilled_at` may lie beyond the interval's start: it is read as not
    fulfilled before it (`visible_at`)."""

    region: str | None  # the person's region, by which oversight filters
    rule: str
    triggered_by: str
    obligated_kind: str
    obligated_id: str | None
    obligated_region: str | None
    due_at: dt.datetime
    fulfilled_at: dt.datetime | None
    provisional: bool
    reason: str | None

    def visible_at(self, as_of: dt.datetime) -> ObligationFacts:
        if self.fulfilled_at is not None and self.fulfilled_at > as_of:
            return self._replace(fulfilled_at=None)
        return self


@dataclass(slots=True)  # many thousands alive in a projector's kept histories
class Version:
    """A row: facts (PersonFacts or ObligationFacts) true over [valid_from, valid_to) as known over
    [known_from, known_to); None is an open end."""

    facts: Any
    valid_from: dt.datetime
    valid_to: dt.datetime | None
    known_from: dt.datetime
    known_to: dt.datetime | None = None
    # The row's number among the person's rows, in the order they were opened: a store that has the row finds it
    # by this number to close it in place.
    number: int = 0

    def holds(self, as_of: dt.datetime, known_at: dt.datetime | None) -> bool:
        """Whether the row answers for `(as_of, known_at)`; known_at None: as known now."""
        if not (self.valid_from <= as_of and (self.valid_to is None or as_of < self.valid_to)):
            return False
        if known_at is None:
            return self.known_to is None
        return self.known_from <= known_at and (self.known_to is None or known_at < self.known_to)


PERSON = "person"  # the identity of the person's own row (obligations are identified by their place in the run)


def snapshot_facts(snapshot: Snapshot) -> dict[Hashable, Any]:
    """The facts of one snapshot by identity: the person, and each obligation that has a due time."""
    episode, responsible, region = snapshot.episode, snapshot.responsible, snapshot.region
    facts: dict[Hashable, Any] = {PERSON: PersonFacts(
        region, snapshot.status,
        responsible["kind"] if responsible else None, responsible["region"] if responsible else None,
        episode.enrolled_at if episode else None, episode.ended if episode else None,
        episode.ended_at if episode else None, episode.category if episode else None,
        episode.document_no if episode else None, episode.decision_id if episode else None,
    )}
    for index, (o, due_at, provisional) in enumerate(snapshot.obligations):
        if due_at is not None:
            facts[index] = ObligationFacts(region, o.rule, o.triggered_by, o.obligated_kind, o.obligated_id,
                                           o.obligated_region, due_at, o.fulfilled_at, provisional, o.reason)
    return facts


def _extends(older: Any, newer: Any, at: dt.datetime) -> bool:
    """Whether `newer`, from `at` on, may stand for `older` before `at` too: the same obligation, only fulfilled at
    or after `at` (so read as not fulfilled before)."""
    return (isinstance(older, ObligationFacts) and older.fulfilled_at is None and newer.fulfilled_at is not None
            and newer.fulfilled_at >= at and older == newer._replace(fulfilled_at=None))


class _Table:
    """The rows of one person, changed as a system-versioned table changes: rows are closed (known_to) and opened,
    never edited; a row closed in the same recording that opened it was never visible and is dropped."""

    def __init__(self) -> None:
        self.opened = 0  # rows opened so far (the number of the last)
        self.forgotten = 0  # closed rows dropped from memory once stored (PersonHistory.forget_closed)
        self.closed: list[Version] = []
        # known_to None; by id(row), in the order opened (a dict: closing a row is then O(1), not a list's remove)
        self.current: dict[int, Version] = {}
        self.open_ended: dict[Hashable, Version] = {}  # current rows with valid_to None, by identity

    def _close(self, row: Version, known: dt.datetime) -> None:
        del self.current[id(row)]
        if row.known_from < known:
            row.known_to = known
            self.closed.append(row)

    def _open(self, facts: Any, valid_from: dt.datetime, valid_to: dt.datetime | None, known: dt.datetime,
              identity: Hashable | None = None) -> None:
        self.opened += 1
        row = Version(facts, valid_from, valid_to, known, number=self.opened)
        self.current[id(row)] = row
        if valid_to is None:
            self.open_ended[identity] = row

    def truncate(self, at: dt.datetime, known: dt.datetime) -> None:
        """From `known` on, the history from valid instant `at` is to be written again: rows reaching it end there."""
        for row in [r for r in self.current.values() if r.valid_to is None or r.valid_to > at]:
            self._close(row, known)
            if row.valid_from < at:
                self._open(row.facts, row.valid_from, at, known)
        self.open_ended = {}

    def step(self, at: dt.datetime, facts: dict[Hashable, Any], known: dt.datetime) -> None:
        """From `known` on, `facts` hold from valid instant `at` (the latest instant written so far) on."""
        # In the order of the dicts, not of a set: the rows are then written in the same order in every process.
        for identity in [*self.open_ended, *(i for i in facts if i not in self.open_ended)]:
            row, new = self.open_ended.get(identity), facts.get(identity)
            if row is not None and row.facts == new:
                continue
            if row is not None:
                del self.open_ended[identity]
                self._close(row, known)
                if new is not None and row.valid_from < at and _extends(row.facts, new, at):
                    self._open(new, row.valid_from, None, known, identity)
                    continue
                if row.valid_from < at:
                    self._open(row.facts, row.valid_from, at, known)
            if new is not None:
                self._open(new, at, None, known, identity)

    def rows(self) -> list[Version]:
        return self.closed + list(self.current.values())


def _event_key(event: Any) -> str:
    return event.event_id.lower()


def _fold_key(event: Any) -> tuple:
    return fold_order(event.occurred_at, event.event_type, event.event_id)


RETRACTION = "event_retracted"


class PersonHistory:
    """A person's rows, built recording by recording in transaction time. `record` takes the events of the next
    recording; a projector that keeps this object can give it a person's later recordings without refolding what
    it already wrote (`continues`)."""

    def __init__(self, rules: RuleSet, calendar: Any = None):
        self.rules, self.calendar = rules, calendar
        self.table = _Table()
        self.applied: list[Any] = []  # the effective events of the last recording, in fold order
        self.run: FoldRun | None = None
        self.known_events: list[Any] = []
        self.retractions_known = False
        self.merged = False  # events of other keys are folded in over some stretches (domain/merging.py)
        self.known: dt.datetime | None = None  # the last recording's instant

    def continues(self, parsed: Sequence[Any]) -> bool:
        """Whether these further events were all recorded after the last recording (else: build it again)."""
        return self.known is None or all(e.known_from > self.known for e in parsed)

    def record_all(self, parsed: Sequence[Any], moments: Iterable[dt.datetime] = ()) -> None:
        """Every recording of these events; `moments`: further instants at which what is known changes with no
        event recorded then (a merged key parted again: domain/merging.py)."""
        groups = {known: list(group) for known, group in itertools.groupby(
            sorted(parsed, key=lambda e: e.known_from), key=lambda e: e.known_from)}
        for moment in moments:
            groups.setdefault(moment, [])
        for known in sorted(groups):
            self.record(known, groups[known])

    def record(self, known: dt.datetime, group: list[Any]) -> None:
        """The events recorded at instant `known` (after every earlier recording)."""
        self.known = known
        self.known_events.extend(group)
        self.retractions_known = self.retractions_known or any(e.event_type == RETRACTION for e in group)
        self.merged = self.merged or any(e.known for e in group)
        applied, run = self.applied, self.run
        arrived = sorted(group, key=_fold_key)
        if run is not None and applied and group and not (self.retractions_known or self.merged) and _fold_key(
                arrived[0]) > _fold_key(applied[-1]):
            # The common case, recorded in fold order with nothing retracted: the new events follow the applied
            # ones, and the run goes on without sorting everything known again.
            effective, same = applied + arrived, len(applied)
        else:
            # Merged keys' events are known over stretches: what is known at this recording, not all recorded so far.
            effective = effective_events(self.known_events, known if self.merged else None)
            same = 0
            for before, after in zip(applied, effective):
                if _event_key(before) != _event_key(after):
                    break
                same += 1
        if same == len(applied) == len(effective):
            return  # nothing the fold uses changed (a retraction still waiting for its event)
        if same == len(applied) and run is not None:
            new = effective[same:]  # recorded in order: the run goes on
        else:
            changed = [lst[same] for lst in (applied, effective) if same < len(lst)]
            changed_at = min(fold_order(e.occurred_at, e.event_type, e.event_id) for e in changed)[0]
            # Written again from the last instant before the change: what held then holds until the next instant
            # of the new history (or for good, if a retraction removed every later event).
            earlier = [e.occurred_at for e in effective if e.occurred_at < changed_at]
            at = earlier[-1] if earlier else changed_at
            self.table.truncate(at, known)
            run = self.run = FoldRun(self.rules, self.calendar)
            new = []
            for event in effective:
                if event.occurred_at < at:
                    run.apply(event)
                else:
                    new.append(event)
        for instant, events in itertools.groupby(new, key=lambda e: e.occurred_at):
            for event in events:
                run.apply(event)
            self.table.step(instant, snapshot_facts(run.snapshot()), known)
        self.applied = effective

    def rows(self) -> list[Version]:
        return self.table.rows()

    def written(self) -> tuple[int, int]:
        """Where the rows stand, for `changes_since`: how many rows are closed, and how many were ever opened."""
        return self.table.forgotten + len(self.table.closed), self.table.opened

    def forget_closed(self) -> None:
        """Drop the closed rows from memory (a store has them, and they never change): a kept history then holds
        only what a later recording can change. `rows()` is no longer whole (`complete` says so)."""
        self.table.forgotten += len(self.table.closed)
        self.table.closed = []

    @property
    def complete(self) -> bool:
        return self.table.forgotten == 0

    def changes_since(self, written: tuple[int, int]) -> tuple[list[Version], list[Version]]:
        """What changed since the rows stood at `written` (`written()` then): the rows opened since (closed or not),
        and the rows that were current then and are closed now. Rows, once closed, never change, so a store that
        had every row then is brought up to date by inserting the first and closing the second."""
        closed, opened = written
        if closed < self.table.forgotten:
            raise ValueError("changes since a moment before the closed rows were forgotten")
        since = self.table.closed[closed - self.table.forgotten:]
        new = [row for row in since if row.number > opened]
        new.extend(row for row in self.table.current.values() if row.number > opened)
        return new, [row for row in since if row.number <= opened]


def history(parsed: Sequence[Any], rules: RuleSet, calendar: Any = None) -> list[Version]:
    """Every row of a person's history from their events (as `parse_records` gives them), in both times."""
    person = PersonHistory(rules, calendar)
    person.record_all(parsed)
    return person.rows()


def latest_name(parsed: Iterable[Any]) -> str:
    """The name the person was last published under (in fold order), as the fold names them."""
    name = ""
    for event in effective_events(list(parsed)):
        if event.name:
            name = event.name
    return name
