"""Two keys that are one person, in both times (domain/merging.py): the roots over transaction time, and the
merged history's rows answering (as_of, known_at) exactly as a fold of the merged events does."""

from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import given, note, settings
from hypothesis import strategies as st

from domain.bitemporal import PersonFacts, PersonHistory
from domain.merging import Link, Piece, boundaries, merged_events, root_at, roots
from domain.supervision import fold_parsed, parse_events, parse_records
from tests.strategies import arrivals, in_time_order, person_histories
from tests.unit.histories import AGENCIES, CALENDAR, RULES, at, history
from tests.unit.test_arrival_order import arrived
from tests.unit.test_bitemporal import _record, from_rows, questions, view_facts

A, B, C = "520222198001011236", "520222198001011244", "520222198001011252"


def link(event_id: str, source: str, target: str, when: str, linked: bool = True) -> Link:
    return Link(event_id, linked, source, target, at(when))


def test_a_link_merges_the_source_into_the_target_from_its_recording_on():
    pieces = roots([link("l1", B, A, "2024-04-01 10:00")])
    assert pieces[B] == [Piece(None, at("2024-04-01 10:00"), B), Piece(at("2024-04-01 10:00"), None, A)]
    assert pieces[A] == [Piece(None, None, A)]
    assert root_at(pieces, B, at("2024-03-31 10:00")) == B and root_at(pieces, B, None) == A


def test_an_unlink_parts_them_again_from_its_recording_on():
    pieces = roots([link("l1", B, A, "2024-04-01 10:00"), link("u1", B, A, "2024-05-01 10:00", linked=False)])
    assert [p.root for p in pieces[B]] == [B, A, B]
    assert root_at(pieces, B, at("2024-04-15 10:00")) == A and root_at(pieces, B, None) == B
    assert boundaries(pieces) == [at("2024-04-01 10:00"), at("2024-05-01 10:00")]


def test_roots_are_the_same_in_every_arrival_order_and_chains_reach_one_root():
    links = [link("l1", C, B, "2024-04-01 10:00"), link("l2", B, A, "2024-04-02 10:00")]
    for order in itertools.permutations(links):
        pieces = roots(order)
        assert root_at(pieces, C, None) == root_at(pieces, B, None) == A
        assert root_at(pieces, C, at("2024-04-01 12:00")) == B


def test_a_cycle_chooses_the_smallest_key():
    pieces = roots([link("l1", A, B, "2024-04-01 10:00"), link("l2", B, A, "2024-04-01 10:00")])
    assert root_at(pieces, A, None) == root_at(pieces, B, None) == A


def _streams():
    decision = history(("dec", "decision_effective", "court", "2024-03-06 10:00", {"_name": "张三"}))
    # The bureau enrolled the person under a mistyped key (B): A shows a 漏管 gap, B activity with no decision.
    enrolled = history(("rep", "subject_reported", "bureau", "2024-03-07 09:00", {"region": "520222"}),
                       ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00", {"region": "520222"}))
    return {A: parse_events(decision), B: parse_events(enrolled)}


def _rows_hold(pieces, streams, key, as_of, known_at):
    person = PersonHistory(RULES, CALENDAR)
    person.record_all(merged_events(key, streams, pieces), boundaries(pieces))
    facts = [row.facts for row in person.rows() if row.holds(at(as_of), at(known_at) if known_at else None)]
    exact = fold_parsed(merged_events(key, streams, pieces), id_number=key, rules=RULES, calendar=CALENDAR,
                        as_of=at(as_of), known_at=at(known_at) if known_at else None)
    status = next((f.status for f in facts if isinstance(f, PersonFacts)), None)
    assert status == (exact.status if exact.last_occurred_at else None)
    rules = sorted(f.rule for f in facts if not isinstance(f, PersonFacts) and (
        f.fulfilled_at is None or f.fulfilled_at > at(as_of)) and f.due_at <= at(as_of))
    return status, rules


def test_the_merged_history_follows_the_link_and_the_unlink_in_both_times():
    streams = _streams()
    pieces = roots([link("l1", B, A, "2024-04-01 10:00"), link("u1", B, A, "2024-05-01 10:00", linked=False)])
    # Before the link was known: A awaits a report that never came (R04 open), B is supervised with no decision.
    assert _rows_hold(pieces, streams, A, "2024-03-25 10:00", "2024-03-31 10:00") == (
        "awaiting_report", ["R01_bureau_not_notified", "R02_documents_not_delivered", "R04_not_reported"])
    assert _rows_hold(pieces, streams, B, "2024-03-25 10:00", "2024-03-31 10:00")[0] == "under_supervision"
    # Known linked: one person, under supervision, the report met R04 in time; B's own history is empty.
    assert _rows_hold(pieces, streams, A, "2024-03-25 10:00", "2024-04-15 10:00") == (
        "under_supervision", ["R01_bureau_not_notified", "R02_documents_not_delivered"])
    assert _rows_hold(pieces, streams, B, "2024-03-25 10:00", "2024-04-15 10:00") == (None, [])
    # The same valid time as known after the unlink: both restored.
    assert _rows_hold(pieces, streams, A, "2024-03-25 10:00", "2024-05-02 10:00")[1][-1] == "R04_not_reported"
    assert _rows_hold(pieces, streams, B, "2024-03-25 10:00", "2024-05-02 10:00")[0] == "under_supervision"
    assert _rows_hold(pieces, streams, A, "2024-03-25 10:00", None) == _rows_hold(
        pieces, streams, A, "2024-03-25 10:00", "2024-05-02 10:00")


# -- a property: merged rows answer every (as_of, known_at) as the fold of the merged events does ------------------


def _reference(events, key, as_of, known_at):
    return view_facts(fold_parsed(events, id_number=key, rules=RULES, calendar=CALENDAR, as_of=as_of,
                                  known_at=known_at), as_of)


def _stream(history_, arrival, prefix):
    records = [_record(e) for e in arrived(history_, arrival)]
    for record in records:  # two persons' streams: distinct event ids
        record["event_id"] = prefix + record["event_id"][len(prefix):]
    return parse_records(records)


@settings(max_examples=60, deadline=None)
@given(first=person_histories(AGENCIES), second=person_histories(AGENCIES), data=st.data())
def test_merged_rows_answer_every_question_as_the_fold_of_the_merged_events(first, second, data):
    note(repr((first, second)))
    streams = {A: _stream(first, data.draw(st.one_of(st.just(in_time_order(first)), arrivals(first))), "a"),
               B: _stream(second, data.draw(st.one_of(st.just(in_time_order(second)), arrivals(second))), "b")}
    recorded = sorted({e.recorded_at for events in streams.values() for e in events})
    span = (recorded[0] - dt.timedelta(days=2), recorded[-1] + dt.timedelta(days=2))
    moments = data.draw(st.lists(st.datetimes(min_value=span[0].replace(tzinfo=None),
                                              max_value=span[1].replace(tzinfo=None)), min_size=1, max_size=3,
                                 unique=True), label="words")
    links = [Link(f"w{n}", n % 2 == 0, B, A, moment.replace(tzinfo=span[0].tzinfo))
             for n, moment in enumerate(sorted(moments))]
    pieces = roots(links)
    assert roots(reversed(links)) == pieces  # in any order given
    asked = questions([_Recorded(e) for events in streams.values() for e in events],
                      [link.recorded_at for link in links])
    sample = data.draw(st.lists(st.sampled_from(asked), min_size=1, max_size=30, unique=True), label="asked")
    for key in (A, B):
        events = merged_events(key, streams, pieces)
        person = PersonHistory(RULES, CALENDAR)
        person.record_all(events, boundaries(pieces))
        rows = person.rows()
        for as_of, known_at in sample:
            assert from_rows(rows, as_of, known_at) == _reference(events, key, as_of, known_at), \
                f"{key} as_of={as_of} known_at={known_at}"


class _Recorded:
    """A parsed event as `questions` reads it (ISO strings)."""

    def __init__(self, event):
        self.occurred_at, self.recorded_at = event.occurred_at.isoformat(), event.recorded_at.isoformat()
