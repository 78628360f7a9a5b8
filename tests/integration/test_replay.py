"""Audit replay: answers captured from the service at several moments, while events stream in (late ones, a
retraction, a rule-set change, imported legacy records), are recomputed later from the event store, identically:
from the read model for the rule set it serves (refolding only the persons with imported records), by refolding
everyone for an earlier rule set."""

from __future__ import annotations

import datetime as dt
import json

from adapters.config import Settings
from services.bootstrap import bootstrap
from services.ingest import Source
from tests.builders import CST, decision, envelope, id_number

SOURCE = Source("test", allow_recorded_at=False)
LEGACY = Source("legacy", allow_recorded_at=True)


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hour:02d}:00:00+08:00")


def test_replay_gives_the_answers_the_service_gave(database_url, tmp_path):
    clock = [at("2025-03-01")]
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text('version = "province-2025"\n[rules.R04_not_reported]\ndeadline = { amount = 20, unit = "days" }\n')

    def start(rules: str | None = None):
        return bootstrap(Settings(database_url=database_url, rules_file=rules), clock=lambda: clock[0])

    services = start()
    slow, fast, missing, legacy = id_number(1), id_number(2), id_number(3), id_number(5)
    imported = decision(legacy, start=dt.date(2025, 3, 3))
    imported["recorded_at"] = at("2025-03-04").isoformat()  # recorded then, in the old system; stored on 04-10
    contact_lost = envelope("contact_lost", {}, kind="bureau", person=missing, occurred_at=at("2025-03-20", 9))
    timeline = [
        ("2025-03-01", [decision(slow, start=dt.date(2025, 2, 20)), decision(fast, start=dt.date(2025, 2, 25)),
                        decision(missing, start=dt.date(2025, 1, 6))]),
        ("2025-03-08", [envelope("subject_reported", {"region": "520222"}, kind="bureau", person=fast,
                                 occurred_at=at("2025-03-03", 9)),
                        envelope("subject_reported", {"region": "520222"}, kind="bureau", person=missing,
                                 occurred_at=at("2025-01-10", 9))]),
        ("2025-03-12", [envelope("subject_enrolled", {"region": "520222"}, kind="bureau", person=missing,
                                 occurred_at=at("2025-01-11", 9))]),          # late: it happened two months ago
        ("2025-03-21", [contact_lost]),
        ("2025-03-28", [envelope("event_retracted", {"retracted_event_id": contact_lost["event_id"],
                                                     "reason": "录入错误"}, kind="bureau", person=missing,
                                 occurred_at=at("2025-03-27", 9))]),
        ("rules", []),                                                      # a province's rule set takes effect
        ("2025-04-05", [envelope("subject_reported", {"region": "520222"}, kind="bureau", person=slow,
                                 occurred_at=at("2025-03-30", 9))]),
        ("2025-04-10", [imported]),
    ]
    captured = []
    try:
        for day, events in timeline:
            if day == "rules":
                clock[0] += dt.timedelta(hours=1)
                services.close()
                services = start(str(rules_file))
                continue
            clock[0] = at(day)
            if events:
                result = services.ingestor.ingest(events, LEGACY if events[0] is imported else SOURCE)
                assert result.rejected == 0, [i.reason for i in result.items if i.status == "rejected"]
            clock[0] += dt.timedelta(hours=2)  # the service is asked a while later
            captured.append((clock[0], {
                "gaps": services.queries.gaps(state="all"),
                "stats": services.queries.stats(),
                "status": services.queries.status(missing),
                "rule_set": services.rules.version,
            }))

        clock[0] = at("2025-06-01")  # much later, with more known
        assert len({json.dumps(answers["gaps"], sort_keys=True) for _, answers in captured}) >= 4
        assert captured[-1][1]["rule_set"] == "province-2025" and captured[0][1]["rule_set"] == "2026.2"
        for moment, answers in captured:
            replayed = services.replay.replay(known_at=moment, state="all", id_number=missing)
            assert replayed["rule_set"] == answers["rule_set"], moment
            assert replayed["gaps"] == answers["gaps"], moment
            assert replayed["stats"] == answers["stats"], moment
            assert replayed["status"] == answers["status"], moment
            served = answers["rule_set"] == services.rules.version
            assert replayed["answered_from"] == ("read_model" if served else "refold"), moment
            if served:
                assert replayed["refolded_persons"] == 1, moment  # the person of the imported record
        # The imported person shows only once stored, although recorded earlier.
        shown = [any(g["id_number"] == legacy for g in answers["gaps"]) for _, answers in captured]
        assert shown == [False] * (len(captured) - 1) + [True]
    finally:
        services.close()


def test_another_rule_set_over_all_history(database_url, tmp_path):
    services = bootstrap(Settings(database_url=database_url),
                         clock=lambda: dt.datetime(2025, 4, 1, tzinfo=CST))
    try:
        services.ingestor.ingest([decision(id_number(4), start=dt.date(2025, 3, 3))], SOURCE)
        lenient = tmp_path / "lenient.toml"
        lenient.write_text('version = "lenient"\n[rules.R04_not_reported]\ndeadline = { amount = 60, unit = "days" }\n')
        from domain.rules import load_rule_set

        now = dt.datetime(2025, 4, 1, tzinfo=CST)
        actual = {g["rule"] for g in services.replay.replay(known_at=now)["gaps"]}
        would_have = {g["rule"] for g in services.replay.replay(known_at=now, rules=load_rule_set(lenient))["gaps"]}
        assert "R04_not_reported" in actual and "R04_not_reported" not in would_have
    finally:
        services.close()
