"""The bitemporal rows of a person (domain/bitemporal.py) answer every (as_of, known_at) question exactly as the
fold does: random plausible histories, arriving late and out of order, with retractions, asked at event instants,
between them, at recording moments and long after."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from hypothesis import given, note, settings
from hypothesis import strategies as st

from domain.bitemporal import PERSON, ObligationFacts, PersonFacts, PersonHistory, Version, history, snapshot_facts
from domain.supervision import FoldRun, effective_events, fold, parse_records
from tests.strategies import arrivals, in_time_order, person_histories
from tests.unit.factories import ID_NUMBER
from tests.unit.histories import AGENCIES, CALENDAR, RULES, at, event
from tests.unit.test_arrival_order import arrived


def reference(events: list, as_of: dt.datetime, known_at: dt.datetime | None) -> dict[str, Any] | None:
    """What the fold says at (as_of, known_at), as facts: None when nothing of the person had occurred and been
    recorded by then."""
    return view_facts(fold(events, id_number=ID_NUMBER, rules=RULES, calendar=CALENDAR, as_of=as_of,
                           known_at=known_at), as_of)


def view_facts(view: Any, as_of: dt.datetime) -> dict[str, Any] | None:
    """A fold's view as the facts its rows would hold at `as_of` (None: nothing of the person known yet)."""
    if view.last_occurred_at is None:
        return None
    episode, responsible = view.episode, view.responsible
    person = PersonFacts(view.region, view.status, responsible["kind"] if responsible else None,
                         responsible["region"] if responsible else None, episode.enrolled_at if episode else None,
                         episode.ended if episode else None, episode.ended_at if episode else None,
                         episode.category if episode else None, episode.document_no if episode else None,
                         episode.decision_id if episode else None)
    obligations = Counter(
        ObligationFacts(view.region, o.rule, o.triggered_by, o.obligated_kind, o.obligated_id, o.obligated_region,
                        o.due_at, o.fulfilled_at, o.provisional, o.reason).visible_at(as_of)
        for o in view.obligations if o.due_at is not None)
    return {"person": person, "obligations": obligations}


def from_rows(rows: list[Version], as_of: dt.datetime, known_at: dt.datetime | None) -> dict[str, Any] | None:
    holding = [row for row in rows if row.holds(as_of, known_at)]
    people = [row.facts for row in holding if isinstance(row.facts, PersonFacts)]
    if not people:
        assert not holding, "obligations without their person"
        return None
    assert len(people) == 1, f"{len(people)} person rows hold at once"
    return {"person": people[0], "obligations": Counter(row.facts.visible_at(as_of) for row in holding
                                                        if isinstance(row.facts, ObligationFacts))}


def questions(events: list, extra: list[dt.datetime]) -> list[tuple[dt.datetime, dt.datetime | None]]:
    occurred = sorted({dt.datetime.fromisoformat(e.occurred_at) for e in events})
    recorded = sorted({dt.datetime.fromisoformat(e.recorded_at) for e in events})
    valid = occurred + [t + dt.timedelta(hours=12) for t in occurred] + [occurred[0] - dt.timedelta(days=1),
                                                                        occurred[-1] + dt.timedelta(days=400)] + extra
    known = [None, *recorded, *(t - dt.timedelta(microseconds=1) for t in recorded), *extra]
    return [(t, k) for t in valid for k in known]


@settings(max_examples=150, deadline=None)
@given(history_=person_histories(AGENCIES), data=st.data())
def test_rows_answer_every_as_of_and_known_at_as_the_fold_does(history_, data):
    note(repr(history_))
    arrival = data.draw(st.one_of(st.just(in_time_order(history_)), arrivals(history_)), label="arrival")
    events = arrived(history_, arrival)
    rows = history(parse_records([_record(e) for e in events]), RULES, CALENDAR)
    asked = questions(events, [])
    sample = data.draw(st.lists(st.sampled_from(asked), min_size=1, max_size=40, unique=True), label="asked")
    for as_of, known_at in sample:
        expected, got = reference(events, as_of, known_at), from_rows(rows, as_of, known_at)
        assert got == expected, f"as_of={as_of} known_at={known_at}"


@settings(max_examples=150, deadline=None)
@given(history_=person_histories(AGENCIES), data=st.data())
def test_a_history_kept_and_given_later_recordings_writes_the_rows_of_one_built_at_once(history_, data):
    """What the projector does with a person it folded before: it gives the kept history the events stored since,
    when they were recorded after its last recording, and must end with exactly the rows of a refold."""
    note(repr(history_))
    arrival = data.draw(st.one_of(st.just(in_time_order(history_)), arrivals(history_)), label="arrival")
    parsed = parse_records([_record(e) for e in arrived(history_, arrival)])
    cut = data.draw(st.integers(0, len(parsed)), label="cut")
    kept = PersonHistory(RULES, CALENDAR)
    kept.record_all(parsed[:cut])
    # A store that had every row then, brought up to date by the changes since: rows inserted, rows closed in place.
    store = {row.number: _row(row) for row in kept.rows()}
    written = kept.written()
    kept.forget_closed()  # as the projector does once they are stored
    later = parsed[cut:]
    if not kept.continues(later):
        kept, store, written = PersonHistory(RULES, CALENDAR), {}, (0, 0)
        later = parsed
    kept.record_all(later)
    built = history(parsed, RULES, CALENDAR)
    if kept.complete:
        assert _rows(kept.rows()) == _rows(built)
    new, closed = kept.changes_since(written)
    assert not {row.number for row in new} & set(store)
    store.update({row.number: _row(row) for row in new})
    for row in closed:
        assert store[row.number][4] is None  # current when written
        store[row.number] = _row(row)
    assert sorted(store.values(), key=repr) == sorted(_rows(built), key=repr)


def _row(row: Version) -> tuple:
    return (row.facts, row.valid_from, row.valid_to, row.known_from, row.known_to, row.number)


def _rows(rows: list[Version]) -> list[tuple]:
    return [_row(row) for row in rows]


def _record(event_: Any) -> dict[str, Any]:
    return {"event_id": event_.event_id, "event_type": event_.event_type, "agency": event_.agency,
            "occurred_at": event_.occurred_at, "recorded_at": event_.recorded_at, "payload": event_.payload,
            "person": event_.person}


def test_a_snapshot_is_what_the_fold_as_of_that_instant_says():
    """FoldRun.snapshot leaves the run unchanged: snapshots after each event equal folds as of its instant."""
    steps = [
        event("dec", "decision_effective", "court", "2024-03-06 10:00", {"in_custody": True}),
        event("rel", "prisoner_released", "prison", "2024-03-09 10:00"),
        event("rep", "subject_reported", "bureau", "2024-03-20 09:00", {"region": "520222"}),
    ]
    run = FoldRun(RULES, CALENDAR)
    for step in effective_events(parse_records([_record(e) for e in steps])):
        run.apply(step)
        view = fold(steps, id_number=ID_NUMBER, rules=RULES, calendar=CALENDAR, as_of=step.occurred_at)
        facts = snapshot_facts(run.snapshot())
        assert facts[PERSON].status == view.status
        assert sorted((f.rule, f.due_at) for k, f in facts.items() if k != PERSON) == sorted(
            (o.rule, o.due_at) for o in view.obligations if o.due_at is not None)


def test_a_late_event_is_written_as_a_new_version_and_the_old_answer_stays_known():
    """The decision arrives, a report recorded a week late says the person reported on day 2: known before the
    late record, R04 was open; known after it, it never was."""
    steps = [
        event("dec", "decision_effective", "court", "2024-03-06 10:00"),
        event("rep", "subject_reported", "bureau", "2024-03-08 09:00", {"region": "520222"}, "2024-04-20 09:00"),
    ]
    rows = history(parse_records([_record(e) for e in steps]), RULES, CALENDAR)
    asked = at("2024-04-01 12:00")
    before = from_rows(rows, asked, at("2024-04-19 12:00"))
    after = from_rows(rows, asked, None)
    assert any(f.rule == "R04_not_reported" and f.fulfilled_at is None for f in before["obligations"])
    assert before["person"].status == "awaiting_report" and after["person"].status == "under_supervision"
    assert all(f.rule != "R04_not_reported" or f.fulfilled_at is not None for f in after["obligations"])
