"""Two keys that are one person, in both times (domain/merging.py): the roots over transaction time, and the
merged history's rows answering (as_of, known_at) exactly as a fold of the merged events does."""

from __future__ import annotations

import datetime as dt
import itertools

from domain.bitemporal import PersonFacts, PersonHistory
from domain.merging import Link, Piece, boundaries, merged_events, root_at, roots
from domain.supervision import fold_parsed, parse_events
from tests.unit.histories import CALENDAR, RULES, at, history

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
