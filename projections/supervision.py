"""The supervision projection: folds each person touched by new events into the read models.

It follows the event store's global log from its stored position. A page of notifications is turned into the
persons it touches; each is folded from its whole stream (late and out-of-order events included) and its rows
replaced, together with the new position, in one read-model transaction — so each event is applied exactly once
in effect, and `rebuild` from position 0 ends in the same rows as the live projection.

Reading is the fast path of adapters/fastread.py (raw rows, orjson) unless `fast_read=False`, which reads through
eventsourcing's mapper; both give the fold the same values. A large rebuild reads and folds in worker processes
(the fold is pure) while this process writes the rows.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import functools
import logging
import multiprocessing
import multiprocessing.util
import os
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from adapters.eventstore import EventStore
from adapters.fastread import StateDecoder, StreamReader, StreamSource
from adapters.readmodel import QUARANTINED, PersonRows, PositionMoved, ReadModel
from domain.calendar import WorkingCalendar, micros
from domain.person import Person
from domain.rules import RuleSet
from domain.bitemporal import PersonFacts, PersonHistory, Version, history, latest_name
from domain.identity import key_birth_date, person_stream_id
from domain.merging import Link, boundaries, links_in, merged_events, root_at, roots
from domain.supervision import PersonView, fold, fold_parsed, iso, parse_events, parse_records

PERSON_TOPIC = f"{Person.__module__}:{Person.__qualname__}.EventRecorded"
REGISTERED_TOPIC = f"{Person.__module__}:{Person.__qualname__}.Registered"
NAME = "supervision"

log = logging.getLogger(__name__)

# A rebuild of at least this many logged events folds in worker processes: below it, starting the workers costs
# more than they save (and tests stay in one process).
PARALLEL_FROM_EVENTS = 20_000
# At most this many workers, each with a connection of its own to the event store, however many CPUs there are.
MAX_WORKERS = 8
# Persons per task sent to a worker: large enough that pickling and scheduling are small beside the fold, small
# enough that the workers start early and the last task does not leave a core idle for long.
PERSONS_PER_TASK = 200
# Persons whose histories a projector keeps between catch-ups (SupervisionProjection.fold_streams): a person's new
# events then cost a fold of those events, not of their whole history. Bounded, so memory does not grow with the
# log (about half a GiB resident at this bound: docs/performance.md).
HISTORIES_KEPT = 10_000
# Persons a catch-up folds and writes in one transaction: the events of a backlog are gathered until this many
# persons are touched, so that each is folded once for all of their events in it.
PERSONS_PER_CATCH_UP = 5_000
# Pages of persons handed to the workers beyond the one being written: the workers never wait for the writes, and
# memory stays bounded (rows of at most this many pages) whatever the store's size.
PAGES_AHEAD = 2


def history_rows(id_number: str, parsed: Sequence[Any], rules: RuleSet, calendar: WorkingCalendar,
                 imported: bool = False) -> PersonRows:
    """The read-model rows of one person: every version of their facts in valid and transaction time
    (domain/bitemporal.py), as values of every column after the personal ones (person_key, id_number, name), in
    the read model's column order (adapters/readmodel.py, PERSON_COLUMNS and OBLIGATION_COLUMNS)."""
    return version_rows(id_number, latest_name(parsed), history(parsed, rules, calendar), rules.version, imported)


def version_rows(id_number: str, name: str, versions: Sequence[Version], rule_set: str,
                 imported: bool) -> PersonRows:
    """`history_rows` from the versions already built (domain.bitemporal.PersonHistory.rows)."""
    person_versions, obligation_versions = [], []
    for version in versions:
        times = (micros(version.valid_from), _micros(version.valid_to), micros(version.known_from),
                 _micros(version.known_to))
        f = version.facts
        if isinstance(f, PersonFacts):
            person_versions.append((
                f.region, f.status, f.responsible_kind, f.responsible_region, _micros(f.enrolled_at), f.ended,
                _micros(f.ended_at), f.category, f.case_ref, f.decided_by, rule_set, None, imported, version.number, *times))
            continue
        due_at, fulfilled_at = f.due_at, f.fulfilled_at
        due_iso, due_us = _iso_and_micros(due_at)
        fulfilled_iso, fulfilled_us = _iso_and_micros(fulfilled_at) if fulfilled_at is not None else (None, None)
        # gap_us: NULL when this row is a gap at no moment: met in time, or no longer holding by its due time.
        never_a_gap = ((fulfilled_at is not None and fulfilled_at <= due_at)
                       or (version.valid_to is not None and version.valid_to <= due_at))
        obligation_versions.append((
            f.region, f.rule, f.triggered_by, f.obligated_kind, f.obligated_id, f.obligated_region,
            due_iso, due_us, fulfilled_iso, fulfilled_us, None if never_a_gap else due_us,
            rule_set, f.provisional, f.reason, imported, version.number, *times))
    return PersonRows(id_number, name, person_versions, obligation_versions)


def stored_later_than_recorded(ingested_at: str | None, recorded_at: str) -> bool:
    """Stored at another moment than its recorded_at (a legacy record imported with its original time)."""
    return ingested_at is not None and dt.datetime.fromisoformat(ingested_at) != dt.datetime.fromisoformat(
        recorded_at)


def any_imported(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any of these decoded events was stored later than recorded (`stored_later_than_recorded`)."""
    return any(stored_later_than_recorded(r.get("ingested_at"), r["recorded_at"]) for r in records)


def _micros(moment: dt.datetime | None) -> int | None:
    return None if moment is None else micros(moment)


@functools.lru_cache(maxsize=1 << 16)
def _iso_and_micros(moment: dt.datetime) -> tuple[str, int]:
    """A moment as the read model stores it. Due times fall on comparatively few moments (24:00 of a day), and both
    values depend only on the instant (equal datetimes are the same instant), so they are cached."""
    return iso(moment), micros(moment)


class Unfoldable(Exception):
    """The fold could not process a person's events (a defect, or an event stored before a check refused its
    kind): the person is quarantined, everyone else goes on."""

    def __init__(self, stream: Any, problem: str):
        super().__init__(f"person {stream} quarantined: {problem}")
        self.stream, self.problem = stream, problem


def _problem(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


_alerted: set[tuple[Any, str]] = set()


@contextlib.contextmanager
def quarantining(stream: Any) -> Iterator[None]:
    """Turn any failure of the fold into Unfoldable, logged as an error: operators' alerting watches those. The log
    names the stream id, never the ID number."""
    try:
        yield
    except Unfoldable:
        raise
    except Exception as error:  # whatever the events make the fold raise: it must not stop the projection
        problem = _problem(error)
        # Alerted once per person and problem in a process: every read of the person folds again.
        if (stream, problem) not in _alerted:
            _alerted.add((stream, problem))
            log.error("ALERT person %s quarantined: the fold cannot process their events (%s)", stream, problem)
        raise Unfoldable(stream, problem) from error


def quarantine_rows(id_number: str, name: str, rule_set: str, problem: str) -> PersonRows:
    """A quarantined person's rows: in no region, no status figure and no obligation until the cause is mended."""
    return PersonRows(id_number, name, [(None, QUARANTINED, None, None, None, None, None, None, None, None, rule_set,
                                         problem, False, 0, 0, None, 0, None)], [])


class _Kept(NamedTuple):
    """A person's history as a projector keeps it between catch-ups."""

    states: int  # how many stored states of the stream it has folded (Registered included)
    id_number: str
    name: str
    history: PersonHistory
    parsed: list[Any]
    imported: bool
    written: tuple[int, int]  # where its rows stood when the read model last had them all (PersonHistory.written)
    birth_date: str | None = None

    def rows(self, rule_set: str, versions: Sequence[Version] | None = None) -> PersonRows:
        """All its rows, or those `versions` of them."""
        return version_rows(self.id_number, self.name, self.history.rows() if versions is None else versions,
                            rule_set, self.imported)._replace(links=tuple(links_in(self.parsed, self.id_number)),
                                                              birth_date=self.birth_date)


def built_history(states: Sequence[bytes], decoder: StateDecoder, rules: RuleSet, calendar: WorkingCalendar,
                  stream: Any = None) -> _Kept | PersonRows:
    """The history of one person from the raw stored states of their stream (Registered first), or their
    quarantine rows when their events cannot be folded."""
    registered = decoder.decode(states[0])
    try:
        with quarantining(stream):
            events = [decoder.decode(state) for state in states[1:]]
            parsed = parse_records(events)
            person = PersonHistory(rules, calendar)
            person.record_all(parsed)
    except Unfoldable as unfoldable:
        return quarantine_rows(registered["id_number"], registered.get("name") or "", rules.version,
                               unfoldable.problem)
    return _Kept(len(states), registered["id_number"], latest_name(parsed), person, parsed, any_imported(events),
                 person.written(), birth_date_of_person(registered["id_number"], (e["person"] for e in events)))


def birth_date_of_person(key: str, persons: Iterable[Mapping[str, Any]]) -> str | None:
    """The birth date of the person a key names: from the document number, else as published beside it."""
    from_number = key_birth_date(key)
    if from_number is not None:
        return from_number.isoformat()
    return next((person["birth_date"] for person in persons if person.get("birth_date")), None)


def fold_states(states: Sequence[bytes], decoder: StateDecoder, rules: RuleSet,
                calendar: WorkingCalendar, stream: Any = None) -> PersonRows:
    """The rows of one person from the raw stored states of their stream (Registered first)."""
    built = built_history(states, decoder, rules, calendar, stream)
    return built if isinstance(built, PersonRows) else built.rows(rules.version)


# -- worker processes -------------------------------------------------------------------------------------------
# Each worker reads its persons' streams over a connection of its own, decodes and folds them, and returns the rows:
# this process only hands out stream ids and writes rows, so it is not the bottleneck.

_worker: tuple[StreamSource, StateDecoder, RuleSet, WorkingCalendar] | None = None
_worker_reader: StreamReader | None = None


def _start_worker(source: StreamSource, decoder: StateDecoder, rules: RuleSet, calendar: WorkingCalendar) -> None:
    global _worker, _worker_reader
    _worker, _worker_reader = (source, decoder, rules, calendar), None


def _fold_task(keys: list[Any]) -> list[PersonRows]:
    global _worker_reader
    source, decoder, rules, calendar = _worker
    if _worker_reader is None:
        _worker_reader, close = source.open()
        multiprocessing.util.Finalize(_worker_reader, close, exitpriority=10)  # closed when the worker exits
    states = _worker_reader.states(keys)
    return [fold_states(states[key], decoder, rules, calendar, key) for key in keys]


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _process_context() -> multiprocessing.context.BaseContext:
    """Fork when this process runs a single thread: the workers start in milliseconds and inherit everything
    imported. With other threads alive (e.g. the PostgreSQL connection pool's) a fork may copy a lock some thread
    holds, so the workers come from a fork server instead (slower to start the first time; and, as in any program
    using multiprocessing this way, a script that rebuilds must guard its main module with __name__ == "__main__")."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", __name__])
        return context
    return multiprocessing.get_context("spawn")


# Persons refolded (at the head) after which the read model's statistics are gathered again.
STATISTICS_AFTER_PERSONS = 5_000


def share_of(stream_id: Any, shares: int) -> int:
    """Which of `shares` projector processes folds a person: their stream id's 128 bits modulo the number of
    shares (as a Kafka partition owns the keys that hash to it), the same in every process and on every run."""
    return stream_id.int % shares


def share_name(share: int, shares: int) -> str:
    """The name a share's position is stored under (`supervision/K:N`; the unshared projection's is `supervision`)."""
    return NAME if shares == 1 else f"{NAME}/{share}:{shares}"


class SupervisionProjection:
    """`shares`, `owned`: the projector runs as `shares` processes, each folding the persons of its share (`owned`:
    the shares this one folds; all of them by default). Each share follows the log from a position of its own,
    stored with the rows it writes; the answers stand where the furthest-behind share stands."""

    def __init__(self, store: EventStore, read_model: ReadModel, rules: RuleSet,
                 calendar: WorkingCalendar | None = None, page_size: int = 1000, fast_read: bool = True,
                 clock: Callable[[], dt.datetime] | None = None, shares: int = 1,
                 owned: Sequence[int] | None = None):
        if shares < 1 or any(not 0 <= share < shares for share in owned or ()):
            raise ValueError(f"projector shares: {list(owned or [])} of {shares}")
        self.store = store
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.read_model = read_model
        self.rules = rules
        self.calendar = calendar or rules.calendar  # the rule set's own, with its holiday notices
        self.page_size = page_size
        self.fast_read = fast_read
        self.shares = shares
        self.owned = list(owned) if owned is not None else list(range(shares))
        self.reader = StreamReader.of_store(store)
        self.decoder = StateDecoder(store.mapper)
        self._kept: collections.OrderedDict[Any, _Kept] = collections.OrderedDict()
        self._written_at: dict[int, int] = {}  # per share, the position this projector last wrote
        self._refolded_since_statistics = 0

    def head(self) -> int:
        return self.store.recorder.max_notification_id() or 0

    def lag(self) -> int:
        """How many notifications of the log lie beyond the position of the rows served (0: up to date)."""
        return self.freshness()["events_behind"]

    def freshness(self) -> dict[str, Any]:
        """How current the rows that answer are: the rule set they were folded by, their position in the event log,
        how many notifications lie beyond it, and since when they have been behind (seconds; 0 when current).
        `building`: a new rule set's rows being built beside the ones served, else None."""
        rule_set, position, caught_up_us = self.read_model.serving(NAME)
        head = self.head()
        # Counted from the first person event not yet projected: other notifications (access records, receipts)
        # change no answer, and every read writes an access record.
        pending = self.store.recorder.select_notifications(position + 1, 1, topics=[PERSON_TOPIC])
        behind = head - pending[0].id + 1 if pending else 0
        seconds = 0.0
        if behind:
            seconds = None if caught_up_us is None else round(max(0.0, (micros(self.clock()) - caught_up_us) / 1e6), 1)
        return {"rule_set": rule_set, "position": position, "head": head, "events_behind": behind,
                "seconds_behind": seconds, "building": self.rules.version if rule_set != self.rules.version else None}

    def serving_rule_set(self) -> str | None:
        """The rule set whose rows answer queries (None before any row was written)."""
        return self.read_model.serving(NAME)[0]

    def _names(self) -> list[str]:
        return [share_name(share, self.shares) for share in range(self.shares)]

    def catch_up(self, progress: Callable[[int, int], Any] | None = None) -> int:
        """Apply every notification beyond the stored positions of the shares this projector folds; returns how
        many persons were refolded.

        The first time a rule set runs, its rows are built in one pass over every person (`rebuild`, by the
        projector that folds share 0; the others wait for it), beside the rows of the rule set served until then,
        which keep answering until the new ones are complete. Run as another number of shares than before, the
        projection takes over the old shares' positions (`ReadModel.adopt`)."""
        version = self.rules.version
        refolded = 0
        if all(self.read_model.position(name, version) == (0, False) for name in self._names()):
            if self.read_model.adopt(NAME, version, self._names()):
                self._kept.clear()
            elif 0 not in self.owned:
                return 0  # share 0's projector builds the rule set's rows
            else:
                serving, _, _ = self.read_model.serving(NAME)
                refolded = self.rebuild(progress, beside=serving is not None and serving != version)
        for share in self.owned:
            refolded += self._catch_up_share(share, progress)
        return refolded

    def _catch_up_share(self, share: int, progress: Callable[[int, int], Any] | None) -> int:
        version, name = self.rules.version, share_name(share, self.shares)
        position, complete = self.read_model.position(name, version)
        if position != self._written_at.get(share):
            # Another projector wrote since this one did: the kept histories no longer say which rows are stored.
            self._kept.clear()
        head = self.head()
        refolded = 0
        while True:
            stream_ids, new_position = self._touched(position, head, share)
            if not stream_ids and new_position == position:
                # At the head (other topics, such as receipts and access records, change no row).
                if not self._apply(name, position, head, [], caught_up_us=micros(self.clock())):
                    return refolded
                self._written_at[share] = head
                if not complete:
                    self.read_model.complete(name, version)
                self._refresh_statistics_if_grown(refolded)
                return refolded
            rows = self._with_merges(self.fold_streams(stream_ids, keep=True))  # one read for the batch's persons
            if not self._apply(name, position, new_position, rows):
                return refolded
            refolded += len(rows)
            position = self._written_at[share] = new_position
            if progress:
                progress(position, head)

    def _refresh_statistics_if_grown(self, refolded: int) -> None:
        """The database plans its queries from statistics of the tables (which index serves a region's gaps):
        they are gathered again once many persons were written since, as the tables have changed shape."""
        self._refolded_since_statistics += refolded
        if self._refolded_since_statistics >= STATISTICS_AFTER_PERSONS:
            self.read_model.refresh_statistics()
            self._refolded_since_statistics = 0

    def _touched(self, position: int, head: int, share: int = 0) -> tuple[list[Any], int]:
        """The persons of `share` with events beyond `position` (up to `head`), at most PERSONS_PER_CATCH_UP of
        them, and the position that folding them reaches: a backlog folds each person once per batch, not once per
        event."""
        touched: dict[Any, None] = {}
        while len(touched) < PERSONS_PER_CATCH_UP:
            notifications = self.store.recorder.select_notifications(
                position + 1, self.page_size, stop=head, topics=[PERSON_TOPIC])
            if not notifications:
                break
            streams = (n.originator_id for n in notifications)
            if self.shares > 1:
                streams = (stream for stream in streams if share_of(stream, self.shares) == share)
            touched.update(dict.fromkeys(streams))
            position = notifications[-1].id
        return list(touched), position

    def _apply(self, name: str, position: int, new_position: int, rows: list[PersonRows],
               caught_up_us: int | None = None) -> bool:
        """Write the rows and move the position; False when another projector moved it first. When nothing was
        written, the kept histories no longer say which rows the read model has: they are forgotten."""
        written = False
        try:
            self.read_model.apply(name, self.rules.version, position, new_position, rows, caught_up_us=caught_up_us)
            written = True
        except PositionMoved:
            pass  # another projector got there first with the same result
        finally:
            if not written:
                self._kept.clear()
        return written

    # -- persons of several keys (domain/merging.py) ------------------------------------------------------------

    def _with_merges(self, rows: list[PersonRows]) -> list[PersonRows]:
        """The rows, those of every key linked (now or ever) to one of these persons folded together with the keys
        they are linked to: a person's rows then hold the history of all their keys, in both times."""
        new = [link for r in rows for link in r.links]
        keys = {r.id_number for r in rows} | {key for link in new for key in (link.source, link.target)}
        links = set(self.read_model.identity_links(keys)) | set(new)
        if not links:
            return rows
        merged = {r.id_number: r for r in self.merged_rows(links)}
        for key in merged:
            self._kept.pop(person_stream_id(key), None)  # folded alone there; these rows replace its own
        return [r for r in rows if r.id_number not in merged] + list(merged.values())

    def _parsed_keys(self, keys: Sequence[str]) -> dict[str, tuple[list[Any], bool, str | None]]:
        """The parsed events of each key's stream (those with one), whether any was imported, the birth date."""
        stream_ids = {key: person_stream_id(key) for key in keys}
        stored_streams = self.store.select_streams(stream_ids.values())  # one read for the group
        found = {}
        for key, stream_id in stream_ids.items():
            stored = stored_streams.get(stream_id)
            if not stored:
                continue
            with quarantining(stream_id):
                recorded = [self.store.mapper.to_domain_event(item) for item in stored[1:]]
                found[key] = (parse_events(recorded), any(stored_later_than_recorded(e.ingested_at, e.recorded_at)
                                                          for e in recorded),
                              birth_date_of_person(key, (e.person for e in recorded)))
        return found

    def merged_rows(self, links: Iterable[Link]) -> list[PersonRows]:
        """The rows of every key these links join, each key's history holding the events of the keys merged into it
        while they were (and none of its own while it was merged into another)."""
        pieces = roots(links)
        moments = boundaries(pieces)
        try:
            streams = self._parsed_keys(sorted(pieces))
        except Unfoldable as unfoldable:
            return [quarantine_rows(key, "", self.rules.version, unfoldable.problem) for key in sorted(pieces)]
        parsed = {key: events for key, (events, _, _) in streams.items()}
        births = {key: birth for key, (_, _, birth) in streams.items()}
        rows = []
        for key, (own, imported, _) in streams.items():
            events = merged_events(key, parsed, pieces)
            person = PersonHistory(self.rules, self.calendar)
            try:
                with quarantining(person_stream_id(key)):
                    person.record_all(events, moments)
            except Unfoldable as unfoldable:
                rows.append(quarantine_rows(key, latest_name(own), self.rules.version, unfoldable.problem))
                continue
            # Imported if any key whose events this history holds was (the flag every row of a person carries).
            imported = imported or any(streams[other][1] for other in streams
                                       if any(piece.root == key for piece in pieces.get(other, ())))
            rows.append(version_rows(key, latest_name(own), person.rows(), self.rules.version, imported)._replace(
                links=tuple(links_in(own, key)), birth_date=births[key]))
        return rows

    def view_of(self, key: str, as_of: dt.datetime, known_at: dt.datetime | None = None) -> PersonView | None:
        """The exact fold of the person `key` names, as of / as known at: with every key linked to theirs then (a
        key merged into another at `known_at` answers with that person's view, which lists it in `keys`)."""
        links = self.read_model.identity_links([key])
        if not links:
            person = self.store.person(key)
            return None if person is None else self.fold(person, as_of=as_of, known_at=known_at)
        pieces = roots(links)
        root = root_at(pieces, key, known_at)
        streams = self._parsed_keys(sorted(pieces))
        if root not in streams and key not in streams:
            return None
        events = merged_events(root, {k: events for k, (events, _, _) in streams.items()}, pieces)
        with quarantining(person_stream_id(root)):
            view = fold_parsed(events, id_number=root, rules=self.rules, calendar=self.calendar, as_of=as_of,
                               known_at=known_at)
        keys = tuple(sorted(k for k in pieces if root_at(pieces, k, known_at) == root))
        view.keys = keys if len(keys) > 1 else ()
        return view

    def fold_streams(self, stream_ids: Sequence[Any], keep: bool = False) -> list[PersonRows]:
        """The rows of these persons (existing streams), folded here from one batched read. With `keep`, each
        person's history is kept (the HISTORIES_KEPT most recently folded), and the next fold of that person gives
        it only the events stored since, when they were recorded after the ones it has."""
        if not self.fast_read:
            streams = self.store.select_streams(stream_ids)
            return [self._stored_rows(stream_id, streams[stream_id]) for stream_id in stream_ids]
        keys = [self.reader.key(stream_id) for stream_id in stream_ids]
        states = self.reader.states(keys)
        if keep:
            return [self._fold_kept(states[key], stream_id) for key, stream_id in zip(keys, stream_ids)]
        return [fold_states(states[key], self.decoder, self.rules, self.calendar, stream_id)
                for key, stream_id in zip(keys, stream_ids)]

    def _fold_kept(self, states: Sequence[bytes], stream_id: Any) -> PersonRows:
        kept = self._kept.pop(stream_id, None)
        if kept is None or len(states) < kept.states:
            return self._fold_and_keep(states, stream_id)
        try:
            with quarantining(stream_id):
                events = [self.decoder.decode(state) for state in states[kept.states:]]
                parsed = parse_records(events)
                if not kept.history.continues(parsed):  # recorded before what it has: built again
                    return self._fold_and_keep(states, stream_id)
                kept.history.record_all(parsed)
        except Unfoldable:
            return self._fold_and_keep(states, stream_id)  # quarantined there, as a fold from scratch would be
        written, carried = kept.written, (kept.name, kept.imported)
        every = kept.parsed + parsed
        kept = kept._replace(states=len(states), name=latest_name(every), parsed=every,
                             imported=kept.imported or any_imported(events), written=kept.history.written())
        if (kept.name, kept.imported) != carried:
            # A name or flag every row carries changed: all rows again, and the closed ones were forgotten.
            return self._fold_and_keep(states, stream_id)
        new, closed = kept.history.changes_since(written)
        person_closures = [(micros(row.known_to), row.number) for row in closed if isinstance(row.facts, PersonFacts)]
        obligation_closures = [(micros(row.known_to), row.number) for row in closed
                               if not isinstance(row.facts, PersonFacts)]
        rows = kept.rows(self.rules.version, new)._replace(
            changes_only=True, person_closures=person_closures, obligation_closures=obligation_closures)
        self._keep(stream_id, kept)
        return rows

    def _fold_and_keep(self, states: Sequence[bytes], stream_id: Any) -> PersonRows:
        built = built_history(states, self.decoder, self.rules, self.calendar, stream_id)
        if isinstance(built, PersonRows):
            return built  # quarantined: nothing kept
        rows = built.rows(self.rules.version)
        self._keep(stream_id, built)
        return rows

    def _keep(self, stream_id: Any, kept: _Kept) -> None:
        """Keep a history whose rows are being written: what is closed is stored by then, and forgotten here."""
        kept.history.forget_closed()
        self._kept[stream_id] = kept
        if len(self._kept) > HISTORIES_KEPT:
            self._kept.popitem(last=False)  # the least recently folded

    def _stored_rows(self, stream_id: Any, stored: list) -> PersonRows:
        try:
            with quarantining(stream_id):
                domain_events = [self.store.mapper.to_domain_event(item) for item in stored]
                registered, recorded = domain_events[0], domain_events[1:]
                parsed = parse_events(recorded)
                return history_rows(registered.id_number, parsed, self.rules, self.calendar,
                                    imported=any(stored_later_than_recorded(e.ingested_at, e.recorded_at)
                                                 for e in recorded))._replace(
                    links=tuple(links_in(parsed, registered.id_number)),
                    birth_date=birth_date_of_person(registered.id_number, (e.person for e in recorded)))
        except Unfoldable as unfoldable:
            registered = self.store.mapper.to_domain_event(stored[0])
            return quarantine_rows(registered.id_number, "", self.rules.version, unfoldable.problem)

    def rebuild(self, progress: Callable[[int, int], Any] | None = None, workers: int | None = None,
                beside: bool = False) -> int:
        """Fold every person once, from the whole log, into the rows of the current rule set; with `beside`, next to
        the rows of another rule set, which keep serving until these are complete, else into dropped tables.

        Catching up page by page from position 0 would refold a person for every page holding one of their events;
        folding each person once gives the same rows. Events appended meanwhile are beyond `head` and are applied
        by the next catch-up (refolding a person twice is harmless).

        `workers`: processes to fold in; 0 folds here; None chooses: one per CPU (at most MAX_WORKERS) for a log of
        at least PARALLEL_FROM_EVENTS events (and the fast read path), else 0. The rows, and the order they are
        written in, are the same either way."""
        version = self.rules.version
        self._kept.clear()  # every person's rows are written again, in full
        if not beside:
            self.read_model.drop()
        head = self.head()
        if workers is None:
            cpus = available_cpus()
            workers = min(cpus, MAX_WORKERS) if cpus > 1 and head >= PARALLEL_FROM_EVENTS and self.fast_read else 0
        if workers and not self.fast_read:
            raise ValueError("folding in worker processes needs the fast read path (raw states)")
        source = self.reader.source(self.store) if workers else None
        context = _process_context() if source is not None else None
        if source is None or not self._can_start_workers(context, source):
            workers = 0
        refolded = 0
        if workers:
            pages = self._fold_pages_in_workers(head, workers, source, context)
        else:
            pages = ((page[-1].id, self.fold_streams([n.originator_id for n in page]))
                     for page in self._registered(head))
        # Beside rows that serve, the indexes stay (and a person is replaced, should another builder be at work).
        loading = contextlib.nullcontext() if beside else self.read_model.bulk_load()
        # closing: a failed write stops the workers at once, not when the generator is collected.
        names = self._names()
        with loading, contextlib.closing(pages):
            for last_id, rows in pages:
                self.read_model.apply(names[0], version, 0, 0, rows, replace=beside)
                refolded += len(rows)
                if progress:
                    progress(last_id, head)
        links = self.read_model.identity_links(None)
        if links:  # persons of several keys, folded alone in the pages: written again together
            self.read_model.apply(names[0], version, 0, 0, self.merged_rows(links), replace=True)
        # Every share starts at the head: the rows of all their persons are written.
        caught_up_us = micros(self.clock())
        for name in names:
            if self._apply(name, 0, head, [], caught_up_us=caught_up_us):
                self.read_model.complete(name, version)
        self.read_model.refresh_statistics()
        self._refolded_since_statistics = 0
        return refolded

    def _can_start_workers(self, context: multiprocessing.context.BaseContext, source: StreamSource) -> bool:
        """Forked workers inherit what they need; others are sent it, pickled: a cipher or transcoder that cannot
        be pickled keeps the fold in this process (and says so in the log)."""
        if context.get_start_method() == "fork":
            return True
        try:
            pickle.dumps((source, self.decoder, self.rules, self.calendar))
            return True
        except Exception:  # whatever a third-party object's pickling raises
            log.warning("rebuild folds in one process: the event store's decoder cannot be sent to workers",
                        exc_info=True)
            return False

    def _registered(self, head: int) -> Iterator[Sequence[Any]]:
        """Every person's Registered notification up to `head`, in pages of the log's order."""
        start = 1
        while True:
            page = self.store.recorder.select_notifications(start, self.page_size, stop=head, topics=[REGISTERED_TOPIC])
            if not page:
                return
            yield page
            start = page[-1].id + 1

    def _fold_pages_in_workers(self, head: int, workers: int, source: StreamSource,
                               context: multiprocessing.context.BaseContext) -> Iterator[tuple[int, list[PersonRows]]]:
        """(last notification id, rows) per page of persons, in the log's order, folded by `workers` processes.

        Each page is split into tasks of PERSONS_PER_TASK persons; the workers fold the next pages while this
        process writes the rows of the current one. At most PAGES_AHEAD pages wait, whatever the store's size."""
        pool = context.Pool(workers, initializer=_start_worker,
                            initargs=(source, self.decoder, self.rules, self.calendar))
        try:
            pending: collections.deque = collections.deque()
            key = self.reader.key
            for page in self._registered(head):
                keys = [key(n.originator_id) for n in page]
                tasks = [pool.apply_async(_fold_task, (keys[start:start + PERSONS_PER_TASK],))
                         for start in range(0, len(keys), PERSONS_PER_TASK)]
                pending.append((page[-1].id, tasks))
                if len(pending) > PAGES_AHEAD:
                    yield self._page_rows(*pending.popleft())
            while pending:
                yield self._page_rows(*pending.popleft())
            pool.close()  # the workers finish and close their connections
            pool.join()
        finally:
            pool.terminate()

    @staticmethod
    def _page_rows(last_id: int, tasks: list) -> tuple[int, list[PersonRows]]:
        return last_id, [rows for task in tasks for rows in task.get()]

    def fold(self, person: Person, **bitemporal: Any) -> PersonView:
        """The exact fold of one person; Unfoldable if their events cannot be processed."""
        with quarantining(person.id):
            return fold(person.events, id_number=person.id_number, rules=self.rules, calendar=self.calendar,
                        **bitemporal)

    def fold_stored(self, stored: list, stream_id: Any = None) -> PersonView:
        """Fold a person's stored events through eventsourcing's mapper, without rebuilding the aggregate: the
        recorded events carry all the fold reads. (The fast path, `fold_states`, gives the same view.)"""
        with quarantining(stream_id):
            domain_events = [self.store.mapper.to_domain_event(item) for item in stored]
            registered, recorded = domain_events[0], domain_events[1:]
            return fold(recorded, id_number=registered.id_number, rules=self.rules, calendar=self.calendar)
