"""The 2027 holiday notice as configuration: before it, due times in 2027 are provisional (statute only); once a
`[calendar."2027"]` table is in the rules file, they follow the notice; and an audit replay as known before the
adoption still shows the dates the service showed then."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from adapters.config import Settings
from services.bootstrap import bootstrap
from services.ingest import Source
from tests.builders import CST, decision, id_number

HANDOFF = str(Path(sys.executable).parent / "handoff")

# A made-up notice (the State Council's 2027 notice is not out): Spring Festival Feb 5-11 off, so a period ending
# on Sat Feb 6 runs to Fri Feb 12 instead of Thu Feb 11 (the statute alone: 除夕 to Feb 8, 补假 Feb 9-10).
NOTICE = """
version = "with-2027-notice"
[calendar."2027"]
holidays = [2027-01-01, 2027-02-05, 2027-02-08, 2027-02-09, 2027-02-10, 2027-02-11]
workdays = ["2027-01-31", "2027-02-20"]
source = "国务院办公厅关于2027年部分节假日安排的通知（测试用）"
"""


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=CST)


def r15(status: dict) -> dict:
    [obligation] = [o for o in status["open_obligations"] if o["rule"] == "R15_not_discharged"]
    return obligation


def test_a_notice_moves_2027_due_times_and_replay_before_it_keeps_the_old_ones(database_url, tmp_path):
    person = id_number(1)
    ends_in_spring_festival = decision(person, start=dt.date(2026, 2, 6))
    ends_in_spring_festival["payload"]["term_end"] = "2027-02-05"
    clock = [at("2026-12-03T10:00")]

    services = bootstrap(Settings(database_url=database_url), clock=lambda: clock[0])
    try:
        assert services.ingestor.ingest([ends_in_spring_festival], Source("test")).accepted == 1
        before = r15(services.queries.status(person))
        assert (before["due_at"], before["provisional"]) == ("2027-02-12T00:00:00+08:00", True)
    finally:
        services.close()

    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(NOTICE, encoding="utf-8")
    clock[0] = at("2026-12-20T09:00")  # the notice is adopted: the service restarts with it
    services = bootstrap(Settings(database_url=database_url, rules_file=str(rules_file)), clock=lambda: clock[0])
    try:
        after = r15(services.queries.status(person))
        assert (after["due_at"], after["provisional"]) == ("2027-02-13T00:00:00+08:00", False)
        assert after["triggered_by"] == before["triggered_by"]
    finally:
        services.close()

    env = {**os.environ, "HANDOFF_DATABASE_URL": database_url, "HANDOFF_RULES_FILE": str(rules_file)}

    def replayed(known_at: str) -> dict:
        completed = subprocess.run([HANDOFF, "audit", "replay", "--known-at", known_at, "--person", person,
                                    "--format", "json"], capture_output=True, env=env, timeout=120)
        assert completed.returncode == 0, completed.stderr.decode()
        return json.loads(completed.stdout)

    as_known_before = replayed("2026-12-10T12:00")
    assert as_known_before["rule_set"] == "2026.2"
    assert (r15(as_known_before["status"])["due_at"], r15(as_known_before["status"])["provisional"]) == \
        ("2027-02-12T00:00:00+08:00", True)
    as_known_after = replayed("2026-12-21T12:00")
    assert as_known_after["rule_set"] == "with-2027-notice"
    assert (r15(as_known_after["status"])["due_at"], r15(as_known_after["status"])["provisional"]) == \
        ("2027-02-13T00:00:00+08:00", False)


def test_a_notice_with_impossible_dates_stops_the_service_with_a_clear_message(tmp_path):
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text('[calendar."2027"]\nholidays = ["2028-01-01"]\nworkdays = []\nsource = "x"\n')
    env = {**os.environ, "HANDOFF_DATABASE_URL": f"sqlite:///{tmp_path}/h.sqlite3",
           "HANDOFF_RULES_FILE": str(rules_file)}
    completed = subprocess.run([HANDOFF, "rules"], capture_output=True, env=env, timeout=120)
    assert completed.returncode != 0
    assert "calendar 2027" in completed.stderr.decode() and "2028-01-01" in completed.stderr.decode()
