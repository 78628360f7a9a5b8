"""The county simulator against the detector: every injected failure found exactly (recall and precision 100%),
clean histories without a single gap, deterministic output, realistic proportions, and the `simulate` command."""

from __future__ import annotations

import collections
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.config import Settings
from domain.identity import id_number_problem
from services.bootstrap import bootstrap
from services.ingest import Source
from tools.simulate import (
    CATEGORY_WEIGHTS,
    KINDS,
    SimulationConfig,
    SimulationError,
    kind_rates,
    run,
)

pytestmark = pytest.mark.filterwarnings("ignore::domain.calendar.ProvisionalCalendarWarning")

HANDOFF = str(Path(sys.executable).parent / "handoff")
CST = dt.timezone(dt.timedelta(hours=8))
UNTIL = dt.datetime(2026, 6, 30, 18, 0, tzinfo=CST)
COUNTIES = ("520222", "520221")
SEEDS = (1, 2, 3)
RATES = (0.0, 0.05, 0.3)
PERSONS = 300


def config(seed: int, rate: float, persons: int = PERSONS, **kw) -> SimulationConfig:
    return SimulationConfig(persons=persons, seed=seed, failure_rate=rate, until=UNTIL, counties=COUNTIES, **kw)


def simulated(cfg: SimulationConfig, **kw) -> tuple[str, list[dict], dict]:
    out, truth = io.StringIO(), io.StringIO()
    summary = run(cfg, out, truth, **kw)
    return out.getvalue(), json.loads(truth.getvalue()), summary


def expected_gaps(truth: list[dict]) -> set[tuple[str, str, str, str]]:
    return {(e["rule"], f["id_number"], e["triggered_by"], e["state"]) for f in truth for e in f["expected"]}


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("seed", SEEDS)
def test_the_detector_finds_exactly_the_injected_failures(seed, rate, tmp_path):
    text, truth, summary = simulated(config(seed, rate))
    lines = [line.encode() for line in text.splitlines()]
    assert summary["events"] == len(lines) and summary["persons"] == PERSONS
    services = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/h.sqlite3"), clock=lambda: UNTIL)
    try:
        for start in range(0, len(lines), 500):
            result = services.ingestor.ingest(lines[start:start + 500], Source("sim", allow_recorded_at=True))
            assert result.rejected == 0, [item.reason for item in result.items if item.status == "rejected"]
            assert result.duplicates == 0
        gaps = services.queries.gaps(as_of=UNTIL, state="all")
    finally:
        services.close()
    found = {(g["rule"], g["id_number"], g["triggered_by"], g["state"]) for g in gaps}
    expected = expected_gaps(truth)
    failure_of = {f["id_number"]: f["failure"] for f in truth}
    missed = sorted((failure_of.get(gap[1]), *gap) for gap in expected - found)
    spurious = sorted((failure_of.get(gap[1], "clean history"), *gap) for gap in found - expected)
    assert not missed, f"injected but not detected: {missed}"
    assert not spurious, f"detected but not injected: {spurious}"
    assert len(found) == len(gaps)  # no gap reported twice
    if rate == 0.0:
        assert gaps == [] and truth == []
    else:
        assert truth, "a failure rate above zero injects failures"


def test_every_failure_kind_is_injected_by_the_detector_runs():
    """The runs of the test above (same configurations) inject every kind at least once."""
    injected: collections.Counter[str] = collections.Counter()
    for seed in SEEDS:
        for rate in RATES:
            _, truth, summary = simulated(config(seed, rate))
            injected.update(f["failure"] for f in truth)
            assert summary["failures_injected"] == len(truth)
            assert "failures_not_placeable" not in summary
    assert set(injected) == {kind.name for kind in KINDS}, sorted({kind.name for kind in KINDS} - set(injected))


def test_same_seed_same_bytes_other_seed_other_history():
    first = simulated(config(5, 0.1, persons=150))
    again = simulated(config(5, 0.1, persons=150))
    other = simulated(config(6, 0.1, persons=150))
    assert first[0] == again[0] and first[1] == again[1] and first[2] == again[2]
    assert first[0] != other[0]


def test_the_bounded_memory_sort_writes_the_same_bytes():
    in_memory, truth, _ = simulated(config(7, 0.1, persons=120))
    spilled, spilled_truth, _ = simulated(config(7, 0.1, persons=120), chunk_events=97)
    assert spilled == in_memory and spilled_truth == truth


def test_envelopes_are_well_formed_ordered_by_recorded_at_and_end_by_until():
    text, _, _ = simulated(config(8, 0.2, persons=400))
    events = [json.loads(line) for line in text.splitlines()]
    recorded = [dt.datetime.fromisoformat(e["recorded_at"]) for e in events]
    assert recorded == sorted(recorded)
    assert len({e["event_id"] for e in events}) == len(events)
    out_of_order = 0
    last_occurred: dict[str, dt.datetime] = {}
    ids = {"court": "FY", "procuratorate": "JCY", "police": "GA", "prison": "JY", "bureau": "SFJ"}
    for event, recorded_at in zip(events, recorded):
        occurred = dt.datetime.fromisoformat(event["occurred_at"])
        assert occurred <= recorded_at <= UNTIL
        id_number = event["person"]["id_number"]
        assert id_number_problem(id_number) is None
        assert id_number[:6] in COUNTIES
        assert 1950 <= int(id_number[6:10]) <= 2005
        agency = event["agency"]
        assert agency["id"] == f"{ids[agency['kind']]}-{agency['region']}"
        if occurred < last_occurred.get(id_number, occurred):
            out_of_order += 1
        last_occurred[id_number] = max(occurred, last_occurred.get(id_number, occurred))
    assert out_of_order > 0, "some events arrive after later ones (late publication)"
    # Persons of both counties, transfers between them, and the organs of each case.
    types = collections.Counter(e["event_type"] for e in events)
    for event_type in ("decision_effective", "bureau_notified", "documents_delivered", "documents_receipted",
                       "prisoner_released", "subject_transferred", "subject_reported", "subject_enrolled",
                       "assessment_requested", "assessment_reported", "warning_issued", "transfer_decided",
                       "transfer_file_sent", "detention_started", "detention_ended", "contact_lost",
                       "police_assistance_requested", "contact_restored", "revocation_proposed", "revocation_ruled",
                       "committed_to_custody", "monitoring_started", "monitoring_ended", "discharged",
                       "supervision_review_recorded", "procuratorial_notice_issued", "notice_replied"):
        assert types[event_type] > 0, event_type
    decided_by = {e["agency"]["kind"] for e in events if e["event_type"] == "decision_effective"}
    assert decided_by == {"court", "prison", "police"}


def test_categories_follow_the_county_figures():
    """671 缓刑, 294 假释, 3 管制, 98 暂予监外执行 of one county (剥夺政治权利 is not community correction)."""
    _, _, summary = simulated(config(9, 0.0, persons=4000))
    counts = summary["categories"]
    total = sum(CATEGORY_WEIGHTS.values())
    for category, weight in CATEGORY_WEIGHTS.items():
        assert abs(counts.get(category, 0) / 4000 - weight / total) < 0.025, (category, counts)
    assert counts.get("control", 0) < 40


def test_failure_rates_and_overrides():
    rates = kind_rates(SimulationConfig(failure_rate=0.31, rates={"R04_not_reported": 0.02, "A03": 0.05}))
    assert rates["R04_not_reported"] == 0.02
    assert rates["A03_missing_while_detained"] == 0.05
    assert rates["R05_not_transferred"] == pytest.approx(0.01)
    both = kind_rates(SimulationConfig(failure_rate=0.0, rates={"R09": 0.1}))
    assert both["R09_ruling_overdue"] == both["R09_ruled_late"] == 0.1
    with pytest.raises(SimulationError, match="unknown failure kind"):
        kind_rates(SimulationConfig(rates={"R99_nothing": 0.1}))
    with pytest.raises(SimulationError, match="more than 1"):
        kind_rates(SimulationConfig(failure_rate=0.5, rates={"R04": 0.6}))
    # An override alone: that kind and nothing else.
    _, truth, _ = simulated(config(10, 0.0, persons=200, rates={"R13_missing_unresolved": 0.2}))
    assert truth and {f["failure"] for f in truth} == {"R13_missing_unresolved"}


def test_the_simulate_command_writes_events_truth_and_a_summary_then_publish_imports_it(tmp_path):
    env = {**os.environ, "HANDOFF_DATABASE_URL": f"sqlite:///{tmp_path}/h.sqlite3"}
    out, truth = tmp_path / "county.jsonl", tmp_path / "truth.json"
    args = [HANDOFF, "simulate", "--persons", "60", "--years", "2", "--counties", "520222,520221", "--seed", "4",
            "--failure-rate", "0.2", "--rate", "R04_not_reported=0.1", "--until", "2026-06-30T18:00:00+08:00",
            "--out", str(out), "--truth", str(truth)]
    done = subprocess.run(args, capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stderr.decode().strip().splitlines()[-1])
    assert summary["persons"] == 60 and summary["events"] == len(out.read_text().splitlines())
    failures = json.loads(truth.read_text())
    assert summary["failures"] == dict(collections.Counter(f["failure"] for f in failures))
    assert summary["failures"].get("R04_not_reported", 0) > 0
    to_stdout = subprocess.run(args[:-4], capture_output=True, env=env, timeout=300)
    assert to_stdout.returncode == 0 and to_stdout.stdout.decode() == out.read_text()

    published = subprocess.run([HANDOFF, "publish", "--import", str(out)], capture_output=True, env=env, timeout=300)
    assert published.returncode == 0, published.stderr.decode()
    report = json.loads(published.stdout)
    assert report["accepted"] == summary["events"] and report["rejected"] == 0

    bad = subprocess.run([HANDOFF, "simulate", "--rate", "R99=0.1"], capture_output=True, env=env, timeout=60)
    assert bad.returncode == 2 and b"unknown failure kind" in bad.stderr
