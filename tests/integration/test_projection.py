"""The supervision projection against a real store: live catch-up equals a rebuild, and the read-model fast path
equals the exact fold."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from adapters.config import Settings
from services.bootstrap import bootstrap
from services.ingest import Source
from tests.builders import case_history, decision, envelope, id_number

NOW = dt.datetime(2026, 11, 21, 12, tzinfo=dt.timezone.utc)


def snapshot(services) -> str:
    queries = services.queries
    answers = {
        "gaps_all": queries.gaps(state="all"),
        "gaps_open_5202": queries.gaps(region="5202"),
        "gaps_r04": queries.gaps(rule="R04_not_reported", state="all"),
        "stats": queries.stats(),
        "upcoming": queries.upcoming(dt.timedelta(days=400)),
    }
    return json.dumps(answers, ensure_ascii=False, sort_keys=True)


@pytest.fixture
def services(database_url):
    services = bootstrap(Settings(database_url=database_url), clock=lambda: NOW)
    yield services
    services.close()


def realistic_events(persons: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for n in range(1, persons + 1):
        history = case_history(n, rng)
        if rng.random() < 0.15:  # a handoff that went wrong: drop one routine event
            history.pop(rng.randrange(1, len(history)))
        events.extend(history)
    rng.shuffle(events)  # late and out-of-order arrival
    return events


def test_live_projection_equals_rebuild_and_the_exact_fold(services, database_url):
    persons = 2000 if database_url.startswith("sqlite") else 600
    events = realistic_events(persons, seed=5)
    for start in range(0, len(events), 700):  # live: catch up after every batch, as the service does
        result = services.ingestor.ingest(events[start:start + 700], Source("test"))
        assert result.rejected == 0, [item for item in result.items if item.status == "rejected"][:3]
        services.projection.catch_up()
    live = snapshot(services)
    assert len(json.loads(live)["gaps_all"]) > 100

    services.projection.rebuild()
    assert snapshot(services) == live  # byte-identical

    exact = services.queries.gaps(as_of=NOW, state="all")
    assert exact == json.loads(live)["gaps_all"]
    assert services.queries.stats(as_of=NOW) == json.loads(live)["stats"]


def test_a_late_event_refolds_its_person(services):
    person = id_number(77)
    services.ingestor.ingest([decision(person, start=dt.date(2025, 3, 3))], Source("test"))
    assert {g["rule"] for g in services.queries.gaps()} >= {"R04_not_reported"}
    reported = envelope("subject_reported", {"region": "520222"}, kind="bureau", person=person,
                        occurred_at=dt.datetime(2025, 3, 5, 9, tzinfo=dt.timezone(dt.timedelta(hours=8))))
    services.ingestor.ingest([reported], Source("test"))
    assert "R04_not_reported" not in {g["rule"] for g in services.queries.gaps()}
    assert services.projection.lag() == 0


def test_a_changed_rule_set_rebuilds_and_labels_its_gaps(services, database_url, tmp_path):
    """A new rule set is built beside the one served, which answers until the new one is complete."""
    person = id_number(78)
    services.ingestor.ingest([decision(person, start=dt.date(2025, 3, 3))], Source("test"))
    [default_gap] = services.queries.gaps(rule="R04_not_reported")
    assert default_gap["due_at"] == "2025-03-14T00:00:00+08:00" and default_gap["rule_set"] == "2026.2"

    rules = tmp_path / "rules.toml"
    rules.write_text('version = "test-15d"\n[rules.R04_not_reported]\ndeadline = { amount = 15, unit = "days" }\n')
    other = bootstrap(Settings(database_url=database_url, rules_file=str(rules)), clock=lambda: NOW,
                      projector="none")
    try:
        [served] = other.queries.gaps(rule="R04_not_reported")
        assert served["rule_set"] == "2026.2" and served["due_at"] == "2025-03-14T00:00:00+08:00"
        assert other.queries.freshness()["building"] == "test-15d"
        other.projection.catch_up()
        [gap] = other.queries.gaps(rule="R04_not_reported")
        assert gap["due_at"] == "2025-03-19T00:00:00+08:00"
        assert gap["rule_set"] == "test-15d"
        assert other.queries.freshness()["building"] is None
        assert {row["rule_set"] for row in other.read_model.dump()["rm_obligations"]} == {"test-15d"}
    finally:
        other.close()


def test_an_act_outside_jurisdiction_changes_no_register_figure_and_shows_as_a10(services):
    """Issue #14's finding: the bureau of 520222 discharged a person missing in 520221, who left 520221's register."""
    person = id_number(7, "520221")
    events = [
        decision(person, region="520221", start=dt.date(2025, 3, 3), months=24),
        envelope("subject_enrolled", {"region": "520221"}, kind="bureau", person=person, region="520221",
                 occurred_at=dt.datetime(2025, 3, 5, 10, tzinfo=dt.timezone.utc)),
        envelope("contact_lost", {}, kind="bureau", person=person, region="520221",
                 occurred_at=dt.datetime(2025, 6, 1, 10, tzinfo=dt.timezone.utc)),
    ]
    foreign = envelope("discharged", {"certificate_no": "(2025)黔0222解矫字第1号"}, kind="bureau", person=person,
                       region="520222", occurred_at=dt.datetime(2025, 7, 1, 10, tzinfo=dt.timezone.utc))
    assert services.ingestor.ingest(events + [foreign], Source("test")).accepted == 4  # kept, never dropped
    [county] = services.queries.stats(region="520221")
    assert county["in_register"] == 1 and county["discharged"] == 0
    assert services.queries.stats(region="520222") == []
    status = services.queries.status(person)
    assert status["status"] == "missing" and status["episode"]["current_region"] == "520221"
    [anomaly] = services.queries.gaps(rule="A10_outside_jurisdiction", state="all")
    assert anomaly["triggered_by"] == foreign["event_id"] and anomaly["obligated"]["region"] == "520222"
    assert "Law 44" in anomaly["reason"]
    # The read model's answer is the exact fold's.
    assert services.queries.gaps(rule="A10_outside_jurisdiction", state="all", as_of=NOW) == [anomaly]
