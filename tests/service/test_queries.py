"""Queries, replay and principals, the use cases, on the in-memory store: the read models the projection keeps and
the exact fold from the events give the same answers; what was known at a moment stays what it was."""

from __future__ import annotations

import datetime as dt

import pytest

from services.ingest import Source
from tests.builders import CST, decision, envelope, id_number

OPERATOR = Source("test")
pytestmark = pytest.mark.clock  # the events are dated from the tests' "now"


def days_ago(now: dt.datetime, days: int) -> dt.date:
    return (now.astimezone(CST) - dt.timedelta(days=days)).date()


def test_a_decision_never_reported_is_a_lost_supervision_gap_for_the_execution_bureau(services, now):
    person = id_number(1)
    services.ingestor.ingest([decision(person, start=days_ago(now, 40))], OPERATOR)

    gaps = services.queries.gaps()
    assert {(g["rule"], g["id_number"]) for g in gaps} >= {("R04_not_reported", person)}
    r04 = next(g for g in gaps if g["rule"] == "R04_not_reported")
    assert (r04["obligated"]["kind"], r04["obligated"]["region"]) == ("bureau", "520222")
    assert services.queries.status(person)["status"] == "awaiting_report"
    [figures] = services.queries.stats(region="520222")
    assert figures["open_gaps"]["R04_not_reported"] == 1
    assert figures["lost_supervision_persons"] == 1


def test_the_read_model_and_the_exact_fold_agree(services, now):
    for n in range(1, 6):
        person = id_number(n)
        events = [decision(person, start=days_ago(now, 30 + n))]
        if n % 2:
            events.append(envelope("subject_reported", {"region": "520222"}, kind="bureau", person=person,
                                   occurred_at=dt.datetime.combine(days_ago(now, 28), dt.time(9), CST)))
        services.ingestor.ingest(events, OPERATOR)
    live = services.queries.gaps()  # the read model
    exact = services.queries.gaps(as_of=now, known_at=now)  # refolded from the events
    assert live == exact
    assert services.queries.stats() == services.queries.stats(as_of=now, known_at=now)
    assert {g["id_number"] for g in live if g["rule"] == "R04_not_reported"} == {id_number(2), id_number(4)}


def test_what_was_known_before_an_event_arrived_stays_as_it_was(services, clock, now):
    person = id_number(7)
    services.ingestor.ingest([decision(person, start=days_ago(now, 40))], OPERATOR)
    before_report = clock()
    clock.now += dt.timedelta(hours=1)
    services.ingestor.ingest([envelope("subject_enrolled", {"region": "520222"}, kind="bureau", person=person,
                                       occurred_at=dt.datetime.combine(days_ago(now, 35), dt.time(9), CST))],
                             OPERATOR)
    assert not [g for g in services.queries.gaps() if g["rule"] == "R04_not_reported"]
    then = services.queries.gaps(as_of=clock(), known_at=before_report)
    assert [g["rule"] for g in then if g["rule"] == "R04_not_reported"] == ["R04_not_reported"]


def test_a_principal_authenticates_until_revoked(services):
    principal, token = services.principals.add("oversight", "监督员", region="5202")
    assert services.principals.authenticate(token).id == principal.id
    assert services.principals.authenticate(token + "x") is None
    services.principals.revoke(str(principal.id))
    assert services.principals.authenticate(token) is None


def test_the_overview_has_the_figures_the_register_and_a_point_per_month_end(services, now):
    from services.overview import TREND_MONTHS, Overview

    for n in range(1, 4):
        services.ingestor.ingest([decision(id_number(n), start=days_ago(now, 400)),
                                  envelope("subject_enrolled", {"region": "520222"}, kind="bureau",
                                           person=id_number(n),
                                           occurred_at=dt.datetime.combine(days_ago(now, 395), dt.time(9), CST))],
                                 OPERATOR)
    overview = Overview(services.queries, services.projection, services.read_model, services.store)
    figures = overview.figures("5202", None, now.date())
    assert figures.summary["in_register"] == 3 and figures.stats == services.queries.stats(region="5202")
    assert sorted(figures.register) == [("under_supervision", "probation", True)] * 3
    assert len(figures.trend) == TREND_MONTHS + 1 and figures.trend[-1]["current"]
    assert [point["in_register"] for point in figures.trend[:-1]] == [3] * TREND_MONTHS  # enrolled 13 months ago
    assert overview.trends.computed == TREND_MONTHS
    overview.figures("5202", None, now.date())
    assert overview.trends.computed == TREND_MONTHS  # the month ends come from the cache while the store is unchanged
