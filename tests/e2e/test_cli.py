"""The `handoff` console script as operators run it: a real process, a real store."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.eventstore import EventStore
from tests.builders import CST, decision, envelope, id_number, mixed_lines
from tests.clock import period_end

HANDOFF = str(Path(sys.executable).parent / "handoff")


def run(database_url: str, *args: str, stdin: bytes | None = None,
        faketime: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`handoff ARGS` on the store; `faketime` (the fixture): with its clock starting at the tests' `now`."""
    env = {**os.environ, **(faketime or {}), "HANDOFF_DATABASE_URL": database_url}
    return subprocess.run([HANDOFF, *args], input=stdin, capture_output=True, env=env, timeout=600)


def count_store(database_url: str) -> tuple[int, int, int]:
    """(accepted events, persons, dead letters) actually in the store, read from its global log."""
    store = EventStore(database_url)
    try:
        events = persons = letters = 0
        start = 1
        while True:
            batch = store.recorder.select_notifications(start, 5000)
            if not batch:
                return events, persons, letters
            for notification in batch:
                events += notification.topic.endswith("Person.EventRecorded")
                persons += notification.topic.endswith("Person.Registered")
                letters += notification.topic.endswith("DeadLetter.Refused")
            start = batch[-1].id + 1
    finally:
        store.close()


def test_ten_thousand_mixed_lines_add_up_and_a_second_run_is_all_duplicates(database_url, tmp_path):
    lines = mixed_lines(10_000, seed=11)
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    first = run(database_url, "publish", str(path))
    assert first.returncode == 0, first.stderr.decode()
    report = json.loads(first.stdout)
    assert report["accepted"] + report["duplicates"] + report["rejected"] == 10_000
    assert report["rejected"] == len(report["rejections"]) > 1000
    assert report["duplicates"] > 100
    assert all(set(r) >= {"line", "event_id", "reason"} and 1 <= r["line"] <= 10_000 for r in report["rejections"])
    events, persons, letters = count_store(database_url)
    assert events == report["accepted"]
    assert letters == report["rejected"]

    second = run(database_url, "publish", str(path))
    assert second.returncode == 0, second.stderr.decode()
    again = json.loads(second.stdout)
    assert again["accepted"] == 0
    assert again["duplicates"] == report["accepted"] + report["duplicates"]
    assert again["rejected"] == report["rejected"]
    assert [r["line"] for r in again["rejections"]] == [r["line"] for r in report["rejections"]]
    assert count_store(database_url)[0] == events


def test_publish_reads_standard_input_and_numbers_lines(database_url):
    good = decision(id_number(1))
    stdin = (json.dumps(good) + "\n\n" + "{oops\n").encode()
    result = run(database_url, "publish", "-", stdin=stdin)
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert (report["accepted"], report["duplicates"], report["rejected"]) == (1, 0, 1)
    assert report["rejections"][0]["line"] == 3
    assert report["rejections"][0]["event_id"] is None


def test_import_allows_recorded_at_and_plain_publish_refuses_it(database_url, tmp_path):
    path = tmp_path / "legacy.jsonl"
    path.write_text(json.dumps(decision(id_number(2), recorded_at="2024-03-02T08:00:00+08:00")) + "\n")
    refused = json.loads(run(database_url, "publish", str(path)).stdout)
    assert refused["rejected"] == 1 and "recorded_at" in refused["rejections"][0]["reason"]
    imported = json.loads(run(database_url, "publish", "--import", str(path)).stdout)
    assert imported["accepted"] == 1
    history = json.loads(run(database_url, "history", id_number(2), "--format", "json").stdout)
    assert history[0]["recorded_at"] == "2024-03-02T08:00:00+08:00"


def test_history_json_in_occurred_at_order(database_url, tmp_path):
    person = id_number(3)
    enrolled = envelope("subject_enrolled", {"region": "520222"}, kind="bureau", person=person,
                        occurred_at=dt.datetime(2024, 3, 9, 10, tzinfo=CST))
    path = tmp_path / "case.jsonl"
    path.write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in [enrolled, decision(person)]) + "\n")
    assert run(database_url, "publish", str(path)).returncode == 0

    result = run(database_url, "history", person, "--format", "json")
    assert result.returncode == 0
    history = json.loads(result.stdout)
    assert [e["event_type"] for e in history] == ["decision_effective", "subject_enrolled"]
    assert set(history[0]) >= {"event_id", "occurred_at", "recorded_at", "publisher", "payload"}
    assert history[0]["publisher"]["kind"] == "court"
    table = run(database_url, "history", person)
    assert table.returncode == 0 and "decision_effective" in table.stdout.decode()


@pytest.mark.parametrize("args, code", [
    (["history", "520222198001011230"], 2),  # wrong check digit
    (["history", "520222198001011236"], 1),  # valid, nobody on record
    (["publish", "/nonexistent/file.jsonl"], 2),
])
def test_errors_exit_non_zero_with_a_message(tmp_path, args, code):
    result = run(f"sqlite:///{tmp_path}/h.sqlite3", *args)
    assert result.returncode == code
    assert result.stderr.decode().startswith("handoff: ")


def test_an_unreachable_store_is_fatal(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(decision(id_number(4))) + "\n")
    result = run("postgresql://nobody@127.0.0.1:1/none", "publish", str(path))
    assert result.returncode == 3
    assert "event store" in result.stderr.decode()


def law_obligations(person: str, decided: dt.date) -> dict[tuple[str, str], dt.datetime]:
    """The due times of a probation decision's obligations (tests.builders.decision: a 12-month term), by CPL 105."""
    term_end = decided + dt.timedelta(days=30 * 12)
    return {("R01_bureau_not_notified", person): period_end(decided, 5),
            ("R02_documents_not_delivered", person): period_end(decided, 10),
            ("R04_not_reported", person): period_end(decided, 10),
            ("R15_not_discharged", person): period_end(term_end, 1)}


@pytest.mark.clock
def test_gaps_status_stats_and_upcoming_from_the_command_line(database_url, tmp_path, now, faketime):
    # Every command runs with its clock at the tests' `now` (libfaketime): "now" and "upcoming" are the test's.
    def handoff(*args: str) -> subprocess.CompletedProcess:
        return run(database_url, *args, faketime=faketime)

    never_reports = id_number(20)
    path = tmp_path / "case.jsonl"
    path.write_text(json.dumps(decision(never_reports, start=dt.date(2025, 3, 3)), ensure_ascii=False) + "\n")
    assert handoff("publish", str(path)).returncode == 0

    gaps = json.loads(handoff("gaps", "--format", "json").stdout)
    r04 = next(g for g in gaps if g["rule"] == "R04_not_reported")
    assert set(r04) >= {"rule", "state", "id_number", "name", "region", "obligated", "triggered_by", "due_at",
                        "fulfilled_at", "rule_set"}
    assert (r04["state"], r04["id_number"], r04["due_at"], r04["fulfilled_at"]) == (
        "open", never_reports, "2025-03-14T00:00:00+08:00", None)
    assert r04["obligated"]["kind"] == "bureau"

    before_due = json.loads(handoff("gaps", "--as-of", "2025-03-10", "--format", "json").stdout)
    assert before_due == []
    assert json.loads(handoff("gaps", "--region", "6328", "--format", "json").stdout) == []
    assert json.loads(handoff("gaps", "--known-at", "2020-01-01", "--format", "json").stdout) == []

    status = json.loads(handoff("status", never_reports, "--format", "json").stdout)
    assert status["status"] == "awaiting_report"
    assert status["responsible"] == {"kind": "bureau", "region": "520222"}
    assert status["episode"]["category"] == "probation"
    assert any(o["rule"] == "R15_not_discharged" for o in status["open_obligations"])

    [stats] = json.loads(handoff("stats", "--format", "json").stdout)
    assert stats["region"] == "520222" and stats["open_gaps"]["R04_not_reported"] == 1
    assert stats["lost_supervision_persons"] == 1 and stats["in_register"] == 0

    yesterday = (now - dt.timedelta(days=1)).date()
    path.write_text(json.dumps(decision(id_number(21), start=yesterday), ensure_ascii=False) + "\n")
    assert handoff("publish", str(path)).returncode == 0
    upcoming = json.loads(handoff("upcoming", "--within", "7d", "--format", "json").stdout)
    # What falls due in the next 7 days, by the law: R01 of yesterday's decision unless a long holiday pushes it
    # further (decided 2026-09-30: due 2026-10-09T00:00, beyond a week from 2026-10-01T10:00); R02 and R04 (10 days)
    # never; nothing of the 2025 decision once its term is over.
    due = {**law_obligations(never_reports, dt.date(2025, 3, 3)), **law_obligations(id_number(21), yesterday)}
    expected = {key: at for key, at in due.items() if now <= at <= now + dt.timedelta(days=7)}
    assert {(u["rule"], u["id_number"]): dt.datetime.fromisoformat(u["due_at"]) for u in upcoming} == expected
    for u in upcoming:  # the subprocess's clock ran on a second or two: hours to the tenth
        hours = (dt.datetime.fromisoformat(u["due_at"]) - now).total_seconds() / 3600
        assert u["state"] == "upcoming" and u["due_in_hours"] == pytest.approx(hours, abs=0.1)
    for command in (["gaps"], ["stats"], ["upcoming"], ["status", never_reports], ["rules"]):
        assert handoff(*command).returncode == 0
    rebuilt = json.loads(handoff("rebuild").stdout)
    assert rebuilt["persons_folded"] == 2
    assert json.loads(handoff("gaps", "--format", "json").stdout) == gaps


def test_bad_time_arguments_are_usage_errors(tmp_path):
    result = run(f"sqlite:///{tmp_path}/h.sqlite3", "gaps", "--as-of", "yesterday")
    assert result.returncode == 2 and b"ISO" in result.stderr


def test_rebuild_compare_passes_on_live_models_and_fails_on_a_difference(database_url, tmp_path):
    import sqlalchemy as sa

    from adapters.config import sqlalchemy_url

    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in mixed_lines_valid(60)) + "\n")
    assert run(database_url, "publish", str(path)).returncode == 0
    same = run(database_url, "rebuild", "--compare")
    assert same.returncode == 0, same.stdout.decode()
    assert json.loads(same.stdout)["identical"] is True

    engine = sa.create_engine(sqlalchemy_url(database_url))
    with engine.begin() as connection:  # a projection defect, simulated: one due time shifted in the live model
        connection.execute(sa.text(
            "UPDATE rm_obligations SET due_at = '2000-01-01T00:00:00+08:00' "
            "WHERE id = (SELECT MIN(id) FROM rm_obligations)"))
    engine.dispose()
    different = run(database_url, "rebuild", "--compare")
    assert different.returncode == 5
    report = json.loads(different.stdout)
    assert report["identical"] is False and report["differences"] == 2
    assert {d["only_in"] for d in report["first_differences"]} == {"live", "rebuilt"}


def mixed_lines_valid(count: int) -> list[dict]:
    import random

    from tests.builders import case_history

    rng = random.Random(3)
    events = [event for n in range(1, 40) for event in case_history(n, rng)]
    return events[:count]


def test_project_runs_as_one_process_per_share(database_url, tmp_path):
    """`handoff project --share K` with HANDOFF_PROJECTOR_SHARES=N: share 0 builds the read model, every share then
    follows the log for its persons, and the answers are current once every share is."""
    path = tmp_path / "county.jsonl"
    path.write_text("\n".join(json.dumps(decision(id_number(n))) for n in range(10, 30)) + "\n")
    assert run(database_url, "publish", str(path)).returncode == 0
    shares = {"HANDOFF_PROJECTOR_SHARES": "2"}

    def project(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, **shares, "HANDOFF_DATABASE_URL": database_url}
        return subprocess.run([HANDOFF, "project", "--once", *args], capture_output=True, env=env, timeout=600)

    waiting = project("--share", "1")
    assert waiting.returncode == 0  # share 0 builds the read model first: nothing is projected yet
    assert json.loads(waiting.stdout)["position"] == 0 and json.loads(waiting.stdout)["events_behind"] > 0
    assert json.loads(project("--share", "0").stdout)["events_behind"] == 0
    more = tmp_path / "more.jsonl"
    more.write_text("\n".join(json.dumps(decision(id_number(n))) for n in range(30, 40)) + "\n")
    assert run(database_url, "publish", str(more)).returncode == 0
    assert json.loads(project("--share", "1").stdout)["events_behind"] > 0  # share 0 stands before the new ones
    assert json.loads(project("--share", "0").stdout)["events_behind"] == 0
    wrong = project("--share", "2")
    assert wrong.returncode == 2 and "编号从 0 到 1" in wrong.stderr.decode()
    gaps = json.loads(run(database_url, "gaps", "--format", "json").stdout)
    assert len({gap["id_number"] for gap in gaps}) == 30
