"""The same events give the same answer whatever order they arrive in, through the real ingest path and store.

One drawn history (tests/strategies.py) is published in random orders, cut into batches of random sizes, each order
into a fresh store (SQLite, and PostgreSQL); every store must then answer the same about the person: status as of
several moments and now, gaps as of those moments (the exact fold) and now (the read models), and the regional
statistics. What the store does with each event must not depend on arrival either: everything is accepted, except
a retraction by an agency that did not publish its target, which may be refused and has no effect in any case. In
particular a retraction that arrives before its target is kept and voids the target when it arrives.

The ingestor's clock is fixed at FIXED_NOW, after every event of the histories (2024-2025): every event is recorded
at the same moment, so the two notice-delay rules (R14, R18, fulfilled when recorded) agree between stores too, and
only the order of the stored stream differs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from adapters.config import Settings
from services.bootstrap import Services, bootstrap
from services.ingest import ItemResult, Source
from tests.builders import CST, agency, envelope, id_number
from tests.strategies import History, arrivals, chunks, moments, person_histories
from tests.unit.histories import AGENCIES as HISTORY_AGENCIES

FIXED_NOW = dt.datetime(2026, 12, 3, 10, tzinfo=CST)
PERSON = id_number(1)
SOURCE = Source("test")
# The agencies of tests/unit/histories.py under the same keys, as tests/builders.py names them.
AGENCIES = {key: agency(a["kind"], a["region"]) for key, a in HISTORY_AGENCIES.items()}


@contextlib.contextmanager
def fresh_services(database_url: str, request: pytest.FixtureRequest) -> Iterator[Services]:
    """The services over a new, empty store on the backend of `database_url`."""
    with contextlib.ExitStack() as stack:
        if database_url.startswith("sqlite"):
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="handoff-arrival-"))
            url = f"sqlite:///{directory}/handoff.sqlite3"
        else:
            url = stack.enter_context(request.getfixturevalue("postgres_server").database())
        services = bootstrap(Settings(database_url=url), clock=lambda: FIXED_NOW)
        stack.callback(services.close)
        yield services


def envelopes(history: History) -> list[dict[str, Any]]:
    """The history's events as their publishers send them."""
    return [
        envelope(step.event_type, step.payload, kind=AGENCIES[step.agency]["kind"],
                 region=AGENCIES[step.agency]["region"], person=PERSON, occurred_at=step.occurred_at,
                 event_id=step.event_id)
        for step in history.steps
    ]


def publish(services: Services, batches: Sequence[Sequence[dict[str, Any]]]) -> dict[str, ItemResult]:
    """Ingest the batches in order (the projection catching up after each, as the service does); each event's
    status by event id."""
    statuses: dict[str, ItemResult] = {}
    for batch in batches:
        result = services.ingestor.ingest(list(batch), SOURCE)
        statuses.update({sent["event_id"]: item for sent, item in zip(batch, result.items)})
        services.projection.catch_up()
    return statuses


def snapshot(services: Services, asked: Sequence[dt.datetime]) -> dict[str, Any]:
    """What the service answers about the person and the region, now and as of each moment asked."""
    queries = services.queries
    return {
        "status now": queries.status(PERSON),
        "gaps now (read models)": queries.gaps(state="all"),
        "stats now (read models)": queries.stats(),
        **{f"status as of {moment.isoformat()}": queries.status(PERSON, as_of=moment) for moment in asked},
        **{f"gaps as of {moment.isoformat()}": queries.gaps(as_of=moment, state="all") for moment in asked},
    }


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    return [f"{key}:\n  after arrival 1: {expected[key]}\n  after arrival 2: {actual[key]}"
            for key in expected if expected[key] != actual[key]]


def refused_wrongly(history: History, statuses: dict[str, ItemResult]) -> list[str]:
    """The events refused although they must be accepted (all but retractions by another agency than the
    target's publisher, which may be refused)."""
    wrongful = history.wrongful_retractions()
    return [f"{event_id}: {item.code} {item.reason}" for event_id, item in statuses.items()
            if item.status != "accepted" and event_id not in wrongful]


def test_any_arrival_order_gives_the_same_answers_through_ingest(database_url: str, request: pytest.FixtureRequest):
    """A random history published in two random orders (in random batches) into two fresh stores: each event is
    accepted in both (bar wrongful retractions), and the two stores give identical status, gaps (exact and read
    model) and statistics, now and as of moments that include event instants."""
    sqlite = database_url.startswith("sqlite")
    # A database per store makes PostgreSQL examples slow: fewer of them, and a failure is reported unshrunk (the
    # same property shrinks on SQLite).
    phases = tuple(Phase) if sqlite else tuple(phase for phase in Phase if phase is not Phase.shrink)

    @settings(max_examples=15 if sqlite else 6, deadline=None, phases=phases, report_multiple_bugs=False,
              suppress_health_check=[HealthCheck.too_slow])
    @given(history=person_histories(AGENCIES), data=st.data())
    def check(history: History, data: st.DataObject) -> None:
        note(repr(history))
        sent = envelopes(history)
        asked = data.draw(moments(history), label="as of")
        answers = []
        for number in (1, 2):
            arrival = data.draw(arrivals(history), label=f"arrival {number}")
            batches = chunks(data.draw, [sent[index] for index in arrival.order])
            note(f"arrival {number}: batches of {[len(batch) for batch in batches]}")
            with fresh_services(database_url, request) as services:
                refused = refused_wrongly(history, publish(services, batches))
                assert not refused, f"arrival {number} {arrival!r}: refused {refused}"
                answers.append(snapshot(services, asked))
        found = differences(*answers)
        assert not found, "\n".join(found)

    check()


# -- a retraction before its target, worked out by hand ----------------------------------------------------------------


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=CST)


def detention_case(retractor: str) -> dict[str, dict[str, Any]]:
    """A probation case under supervision from June 2024, a police detention on 06-18 (published late) and its
    retraction on 06-19 by `retractor`."""
    events = {
        "decision": envelope("decision_effective", {
            "category": "probation", "term_start": "2024-06-17", "term_end": "2025-06-16", "execution_region": "520222",
            "document_no": "(2024)黔0222刑初123号", "in_custody": False}, kind="court", person=PERSON,
            occurred_at=at("2024-06-17T09:00")),
        "reported": envelope("subject_reported", {"region": "520222"}, kind="bureau", person=PERSON,
                             occurred_at=at("2024-06-18T09:00")),
        "enrolled": envelope("subject_enrolled", {"region": "520222"}, kind="bureau", person=PERSON,
                             occurred_at=at("2024-06-18T15:00")),
        "detention": envelope("detention_started", {"detention_kind": "administrative"}, kind="police", person=PERSON,
                              occurred_at=at("2024-06-18T22:00")),
    }
    events["retraction"] = envelope(
        "event_retracted", {"retracted_event_id": events["detention"]["event_id"], "reason": "录入错误"},
        kind=retractor, person=PERSON, occurred_at=at("2024-06-19T09:00"))
    return events


def statuses_in_order(services: Services, events: dict[str, dict[str, Any]], order: Sequence[str]) -> list[str]:
    """Publish the named events one batch each, in this order; the status of each."""
    result = []
    for name in order:
        [item] = services.ingestor.ingest([events[name]], SOURCE).items
        result.append(item.status)
    return result


BEFORE = ("decision", "reported", "enrolled")


@pytest.mark.parametrize("retraction_first", [True, False], ids=["retraction-arrives-first", "detention-first"])
def test_a_retraction_by_the_publisher_arriving_before_its_target_is_kept_and_voids_it(
        database_url: str, retraction_first: bool):
    """The police retract a wrongful detention, and the retraction reaches the service before the detention: it is
    accepted (not refused as retracting nothing), waits, and voids the detention when it arrives. The person is under
    supervision, never detained, with no R14 notice delay — as when the detention arrives first."""
    events = detention_case("police")
    pair = ("retraction", "detention") if retraction_first else ("detention", "retraction")
    services = bootstrap(Settings(database_url=database_url), clock=lambda: FIXED_NOW)
    try:
        assert statuses_in_order(services, events, (*BEFORE, *pair)) == ["accepted"] * 5
        for moment in (at("2024-06-19T12:00"), FIXED_NOW):
            status = services.queries.status(PERSON, as_of=moment)
            assert status["status"] == "under_supervision"
            assert status["responsible"] == {"kind": "bureau", "region": "520222"}
        rules = {gap["rule"] for gap in services.queries.gaps(state="all")}
        assert "R14_detention_notice_late" not in rules
        assert services.queries.status(PERSON)["status"] == "under_supervision"
    finally:
        services.close()


@pytest.mark.parametrize("retraction_first", [True, False], ids=["retraction-arrives-first", "detention-first"])
def test_a_retraction_by_another_agency_leaves_the_detention_standing_whenever_it_arrives(
        database_url: str, retraction_first: bool):
    """The bureau cannot retract the police's detention: whether its retraction arrives before the detention (kept
    or refused) or after it, the detention stands — the person is detained and the late notice is an R14 gap."""
    events = detention_case("bureau")
    pair = ("retraction", "detention") if retraction_first else ("detention", "retraction")
    services = bootstrap(Settings(database_url=database_url), clock=lambda: FIXED_NOW)
    try:
        statuses = statuses_in_order(services, events, (*BEFORE, *pair))
        assert statuses[:3] == ["accepted"] * 3
        assert statuses[3 + pair.index("detention")] == "accepted"
        for moment in (at("2024-06-19T12:00"), FIXED_NOW):
            status = services.queries.status(PERSON, as_of=moment)
            assert status["status"] == "detained"
            assert status["responsible"] == {"kind": "police", "region": "520222"}
        gaps = [gap for gap in services.queries.gaps(state="all") if gap["rule"] == "R14_detention_notice_late"]
        assert [gap["triggered_by"] for gap in gaps] == [events["detention"]["event_id"]]
    finally:
        services.close()


@pytest.mark.parametrize("order", [
    ("detention", "bureau's retraction", "police's retraction"),
    ("bureau's retraction", "detention", "police's retraction"),
    ("bureau's retraction", "police's retraction", "detention"),
    ("police's retraction", "bureau's retraction", "detention"),
], ids=["target-first", "wrong-retraction-first", "both-retractions-first", "right-retraction-first"])
def test_a_retraction_by_another_agency_does_not_block_the_publishers_own(database_url: str, order: tuple[str, ...]):
    """A retraction by an agency that did not publish the target has no effect, whenever it arrives: in particular,
    waiting for its target, it must not count as the target's retraction and so refuse the publisher's own. The
    police's retraction is accepted and the detention void in every order."""
    events = detention_case("police")
    events["police's retraction"] = events.pop("retraction")
    events["bureau's retraction"] = detention_case("bureau")["retraction"]
    events["bureau's retraction"]["payload"]["retracted_event_id"] = events["detention"]["event_id"]
    services = bootstrap(Settings(database_url=database_url), clock=lambda: FIXED_NOW)
    try:
        statuses = dict(zip(order, statuses_in_order(services, events, (*BEFORE, *order))[3:]))
        assert (statuses["detention"], statuses["police's retraction"]) == ("accepted", "accepted")
        assert services.queries.status(PERSON, as_of=at("2024-06-19T12:00"))["status"] == "under_supervision"
        assert "R14_detention_notice_late" not in {gap["rule"] for gap in services.queries.gaps(state="all")}
    finally:
        services.close()
