"""The same events give the same answer whatever order they arrive in (shared/docs/domain.md, "Same instant").

The fold orders events by `occurred_at` (valid time), never by arrival: events at the same instant by the causal
order of their types (decision before notification before hand-over before enrolment; ruling before commitment;
supervision activity before the episode's end; ...), then by event_id, and a fulfilling event at its trigger's
instant fulfils it. A retraction applies whenever it arrived, before or after its target, and only if its publisher
(agency kind and id) published the target.

Arrival shows in two places, both varied here: the order of the events given to the fold (a store's stream order)
and their `recorded_at`. The one thing arrival legitimately changes is the fulfilment of the two notice-delay rules,
R14 and R18, which is by definition the moment the event was recorded: their `fulfilled_at` (and so their state) is
left out of the comparison, their presence is not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from domain.person import RecordedEvent
from domain.supervision import Obligation, PersonView, fold, iso
from tests.strategies import Arrival, History, arrivals, in_time_order, moments, person_histories
from tests.unit.factories import ID_NUMBER
from tests.unit.histories import AGENCIES, CALENDAR, RULES, at, eid, event, of_rule, only, retraction

NOTICE_DELAY_RULES = frozenset({"R14_detention_notice_late", "R18_death_notice_late"})


# -- the answer compared ------------------------------------------------------------------------------------------


def obligation_facts(obligation: Obligation, moment: dt.datetime) -> tuple:
    """What an obligation says, at `moment`: who owes what by when, and whether and by what it was met."""
    delay = obligation.rule in NOTICE_DELAY_RULES
    return (
        obligation.rule, obligation.triggered_by,
        obligation.obligated_kind, obligation.obligated_id, obligation.obligated_region,
        iso(obligation.due_at),
        None if delay else iso(obligation.fulfilled_at), obligation.fulfilled_by,
        None if delay else obligation.state(moment),
    )


def answer(person: PersonView, moment: dt.datetime) -> dict[str, Any]:
    """Status, responsible agency, episode and obligations (as a multiset) of a fold, their states at `moment`."""
    return {
        "status": person.status,
        "responsible": person.responsible,
        "episode": person.episode.as_dict() if person.episode else None,
        "obligations": sorted((obligation_facts(o, moment) for o in person.obligations), key=repr),
    }


def arrived(history: History, arrival: Arrival) -> list[RecordedEvent]:
    """The history's events as a store holds them after `arrival`: in arrival order, with arrival's recorded_at."""
    return [
        event(step.name, step.event_type, step.agency, step.occurred_at.isoformat(), step.payload,
              arrival.recorded_at[index].isoformat())
        for index in arrival.order
        for step in (history.steps[index],)
    ]


def fold_at(events: Sequence[RecordedEvent], as_of: dt.datetime | None = None) -> PersonView:
    return fold(events, id_number=ID_NUMBER, rules=RULES, calendar=CALENDAR, as_of=as_of)


def answers(events: Sequence[RecordedEvent], asked: Sequence[dt.datetime]) -> dict[str, Any]:
    """The answers of the whole fold (states at the last moment asked) and of the folds as of each moment."""
    return {
        "all events": answer(fold_at(events), asked[-1]),
        **{f"as of {iso(moment)}": answer(fold_at(events, moment), moment) for moment in asked},
    }


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Readable lines naming what differs between two `answers` (empty when they agree)."""
    lines = []
    for fold_name, want in expected.items():
        got = actual[fold_name]
        for key in ("status", "responsible", "episode"):
            if want[key] != got[key]:
                lines.append(f"{fold_name}: {key} {want[key]!r} != {got[key]!r}")
        if want["obligations"] != got["obligations"]:
            only_want = [o for o in want["obligations"] if o not in got["obligations"]]
            only_got = [o for o in got["obligations"] if o not in want["obligations"]]
            lines.append(f"{fold_name}: obligations only in time order {only_want}, only in this arrival {only_got}")
    return lines


# -- the property -------------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(history=person_histories(AGENCIES), data=st.data())
def test_any_arrival_order_gives_the_answer_of_time_order(history: History, data: st.DataObject):
    """For a random plausible history, two random arrivals (list order and recorded_at) give the same status,
    responsible agency, episode and obligations as the events arriving in time order, each recorded when it
    occurred — for the whole fold and as of moments that include event instants."""
    note(repr(history))
    asked = data.draw(moments(history), label="as of")
    expected = answers(arrived(history, in_time_order(history)), asked)
    for _ in range(2):
        arrival = data.draw(arrivals(history), label="arrival")
        found = differences(expected, answers(arrived(history, arrival), asked))
        assert not found, "\n".join([repr(arrival), *found])


# -- the cases of domain.md, worked out by hand ---------------------------------------------------------------------
# Each history is a tuple of (name, type, agency, occurred, changes) steps; `in_arrival` gives it in an order of
# arrival with each event's recorded_at. Every case is checked in both orders of arrival of the same-instant pair.

Arrived = tuple[tuple, str]  # (step, recorded_at)


def in_arrival(*arriving: Arrived) -> list[RecordedEvent]:
    """The events in this order of arrival, each recorded at the given moment."""
    return [event(*step, recorded) if len(step) == 5 else event(*step, {}, recorded) for step, recorded in arriving]


TEMPORARY_RELEASE = ("dec", "decision_effective", "court", "2024-03-06 10:00",
                     {"category": "temporary_release", "in_custody": True})
TRANSFERRED = ("trf", "subject_transferred", "police", "2024-03-08 10:00", {"to_region": "520222"})
ENROLLED_AT_TRANSFER = ("enr", "subject_enrolled", "bureau", "2024-03-08 10:00", {"region": "520222"})


@pytest.mark.parametrize("police_late", [True, False], ids=["police-publishes-a-day-later", "police-first"])
def test_enrolment_at_the_minute_of_the_transfer_meets_r06(police_late: bool):
    """Law 21-22: the police hand a 暂予监外执行 subject over and the bureau enrols them in the same minute. The
    hand-over comes before the enrolment at the same instant, so the enrolment fulfils the R06 the transfer opens
    (and the transfer itself R05): no gap, whichever agency published first."""
    decision = (TEMPORARY_RELEASE, "2024-03-06 10:00")
    transfer = (TRANSFERRED, "2024-03-09 10:00" if police_late else "2024-03-08 10:00")
    enrolment = (ENROLLED_AT_TRANSFER, "2024-03-08 10:05" if police_late else "2024-03-09 10:00")
    arriving = (decision, enrolment, transfer) if police_late else (decision, transfer, enrolment)
    person = fold_at(in_arrival(*arriving))

    r06 = only(person, "R06_not_enrolled")
    assert (r06.triggered_by, r06.fulfilled_by, r06.fulfilled_at) == (eid("trf"), eid("enr"), at("2024-03-08 10:00"))
    assert r06.state(at("2024-04-01")) == "met"
    r05 = only(person, "R05_not_transferred")
    assert (r05.fulfilled_by, r05.state(at("2024-04-01"))) == (eid("trf"), "met")
    assert person.status == "under_supervision"
    assert person.episode.enrolled_at == at("2024-03-08 10:00")


REVOCATION = (
    ("dec", "decision_effective", "court", "2024-03-06 10:00"),
    ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00", {"region": "520222"}),
    ("prop", "revocation_proposed", "bureau", "2024-05-06 10:00", {"arrest_requested": False}),
)
RULED = ("rul", "revocation_ruled", "court", "2024-05-20 10:00", {"revoked": True})
COMMITTED = ("com", "committed_to_custody", "police", "2024-05-20 10:00", {"facility": "贵州省第一监狱"})


@pytest.mark.parametrize("ruling_first", [True, False], ids=["ruling-arrives-first", "commitment-arrives-first"])
def test_commitment_at_the_minute_of_the_ruling_meets_r11(ruling_first: bool):
    """Law 48: the court revokes probation and the police take the person into custody the same minute. The ruling
    comes before the commitment at the same instant: the commitment executes it (R11 met), the episode ends
    committed and nobody is responsible any more."""
    before = [(step, step[3]) for step in REVOCATION]
    pair = [(RULED, "2024-05-20 10:00"), (COMMITTED, "2024-05-20 10:00")]
    if not ruling_first:
        pair = [(COMMITTED, "2024-05-20 10:00"), (RULED, "2024-05-20 11:00")]
    person = fold_at(in_arrival(*before, *pair))

    r11 = only(person, "R11_commitment_not_executed")
    assert (r11.triggered_by, r11.fulfilled_by, r11.fulfilled_at) == (eid("rul"), eid("com"), at("2024-05-20 10:00"))
    assert r11.state(at("2024-07-01")) == "met"
    assert only(person, "R09_ruling_overdue").state(at("2024-07-01")) == "met"
    assert (person.status, person.responsible) == ("committed", None)
    assert (person.episode.ended, person.episode.ended_at) == ("committed", at("2024-05-20 10:00"))


MONITORED = (
    ("dec", "decision_effective", "court", "2024-03-06 10:00"),
    ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00", {"region": "520222"}),
    ("mon", "monitoring_started", "bureau", "2025-01-06 10:00"),
)
DISCHARGED = ("dis", "discharged", "bureau", "2025-03-05 10:00", {"certificate_no": "JJ-2025-0001"})
MONITORING_ENDED = ("moe", "monitoring_ended", "bureau", "2025-03-05 10:00")


@pytest.mark.parametrize("discharge_first", [True, False], ids=["discharge-arrives-first", "monitoring-end-first"])
def test_monitoring_ended_at_the_minute_of_discharge_is_not_activity_after_the_end(discharge_first: bool):
    """Law 29, 44: the bureau takes off the electronic tag and discharges the person the same minute. Supervision
    activity comes before the episode's end at the same instant: no A04_activity_after_end, and it is the end of
    monitoring (not the end of the episode) that meets R19."""
    before = [(step, step[3]) for step in MONITORED]
    pair = [(DISCHARGED, "2025-03-05 10:00"), (MONITORING_ENDED, "2025-03-05 10:00")]
    if not discharge_first:
        pair.reverse()
    person = fold_at(in_arrival(*before, *pair))

    assert of_rule(person, "A04_activity_after_end") == []
    r19 = only(person, "R19_monitoring_overdue")
    assert (r19.fulfilled_by, r19.fulfilled_at, r19.closed_by_end) == (eid("moe"), at("2025-03-05 10:00"), False)
    assert (person.status, person.episode.ended) == ("discharged", "discharged")
    assert r19.state(at("2025-06-01")) == "met"


UNDER_SUPERVISION = (
    ("dec", "decision_effective", "court", "2024-03-06 10:00"),
    ("rep", "subject_reported", "bureau", "2024-03-07 09:00", {"region": "520222"}),
    ("enr", "subject_enrolled", "bureau", "2024-03-08 15:00", {"region": "520222"}),
)
SAME_INSTANT_PAIRS = {
    "detention-started-and-ended": (("a", "detention_started", "police", "2024-06-12 10:00"),
                                    ("b", "detention_ended", "police", "2024-06-12 10:00")),
    "contact-lost-and-restored": (("a", "contact_lost", "bureau", "2024-06-12 10:00"),
                                  ("b", "contact_restored", "bureau", "2024-06-12 10:00")),
    "monitoring-started-and-ended": (("a", "monitoring_started", "bureau", "2024-06-12 10:00"),
                                     ("b", "monitoring_ended", "bureau", "2024-06-12 10:00")),
    "transfer-decided-and-enrolled-there": (
        ("a", "transfer_decided", "bureau", "2024-06-12 10:00", {"new_region": "632801"}),
        ("b", "subject_enrolled", "bureau@632801", "2024-06-12 10:00", {"region": "632801"})),
    "revocation-proposed-and-ruled": (("a", "revocation_proposed", "bureau", "2024-06-12 10:00"),
                                      ("b", "revocation_ruled", "court", "2024-06-12 10:00")),
}


@pytest.mark.parametrize("pair", list(SAME_INSTANT_PAIRS.values()), ids=list(SAME_INSTANT_PAIRS))
def test_events_at_the_same_instant_recorded_together_give_one_answer_in_either_list_order(pair: tuple):
    """Two events with the same occurred_at and the same recorded_at (one batch): nothing but the list order tells
    them apart, and it must not matter — the causal order of their types, then their event ids, decide."""
    first, second = ((step, "2024-06-12 18:00") for step in pair)
    before = [(step, step[3]) for step in UNDER_SUPERVISION]
    forward = in_arrival(*before, first, second)
    backward = in_arrival(*before, second, first)
    for moment in (at("2024-06-12 10:00"), at("2024-06-13 10:00"), at("2025-06-01")):
        assert answer(fold_at(forward, moment), moment) == answer(fold_at(backward, moment), moment)
    assert answer(fold_at(forward), at("2025-06-01")) == answer(fold_at(backward), at("2025-06-01"))


# A probation decision with its documents delivered on Mon 2024-06-17: R03 (the bureau's receipt, 5 days) ends on
# Sat 06-22, a rest day: 24:00 Mon 06-24 (due 2024-06-25 00:00), or 24:00 06-22 (due 2024-06-23 00:00) if the
# person is in custody then (CPL 105). The police detain the person on Tue 06-18 and publish it only on 06-20.
DETAINED = (
    ("dec", "decision_effective", "court", "2024-06-17 09:00",
     {"term_start": "2024-06-17", "term_end": "2025-06-16"}),
    ("del", "documents_delivered", "court", "2024-06-17 10:00", {"execution_region": "520222"}),
    ("rep", "subject_reported", "bureau", "2024-06-18 09:00", {"region": "520222"}),
    ("enr", "subject_enrolled", "bureau", "2024-06-18 15:00", {"region": "520222"}),
    ("det", "detention_started", "police", "2024-06-18 22:00", {"detention_kind": "administrative"}),
)
DETENTION_RECORDED = "2024-06-20 10:00"
RETRACTED_AT = "2024-06-19 09:00"


def detention_history(retractor: str, retraction_first: bool) -> list[RecordedEvent]:
    """DETAINED with a retraction of the detention by `retractor`, arriving before or after the detention."""
    *before, detention = DETAINED
    retract = retraction(DETAINED, "det", RETRACTED_AT)
    retract = (retract[0], retract[1], retractor, *retract[3:])
    arriving = [(step, step[3]) for step in before]
    if retraction_first:
        arriving += [(retract, RETRACTED_AT), (detention, DETENTION_RECORDED)]
    else:
        arriving += [(detention, DETENTION_RECORDED), (retract, "2024-06-21 09:00")]
    return in_arrival(*arriving)


@pytest.mark.parametrize("retraction_first", [True, False], ids=["retraction-arrives-first", "detention-first"])
def test_a_retraction_by_the_publisher_voids_the_detention_whenever_it_arrives(retraction_first: bool):
    """The police retract a wrongful detention; their retraction reaches the service before the detention itself.
    It waits for its target and voids it: the person was never detained, no R14 notice delay, and no custody (R03
    ends after the rest days, as for anyone at liberty)."""
    events = detention_history("police", retraction_first)
    for moment in ("2024-06-19 12:00", "2024-06-21 12:00"):
        assert fold_at(events, at(moment)).status == "under_supervision"
    person = fold_at(events)
    assert of_rule(person, "R14_detention_notice_late") == []
    assert of_rule(person, "A03_missing_while_detained") == []
    assert only(person, "R03_receipt_not_returned").due_at == at("2024-06-25 00:00")
    assert person.responsible == {"kind": "bureau", "region": "520222"}


@pytest.mark.parametrize("retraction_first", [True, False], ids=["retraction-arrives-first", "detention-first"])
def test_a_retraction_by_another_agency_leaves_the_detention_standing(retraction_first: bool):
    """Only the original publisher may retract: the bureau cannot retract the police's detention, whenever its
    retraction arrives. The person is detained (police responsible), R14 stands, and the custody cuts R03's
    extension over the rest days."""
    events = detention_history("bureau", retraction_first)
    assert fold_at(events, at("2024-06-19 12:00")).status == "detained"
    person = fold_at(events)
    assert person.status == "detained"
    assert person.responsible == {"kind": "police", "region": "520222"}
    r14 = only(person, "R14_detention_notice_late")
    assert (r14.triggered_by, r14.due_at) == (eid("det"), at("2024-06-19 22:00"))
    assert only(person, "R03_receipt_not_returned").due_at == at("2024-06-23 00:00")
