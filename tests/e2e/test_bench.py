"""`handoff bench` runs end to end and reports every figure (speed itself is shown by the command, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HANDOFF = str(Path(sys.executable).parent / "handoff")


def test_bench_reports_every_figure_beside_its_baseline():
    result = subprocess.run([HANDOFF, "bench", "--quick", "--persons", "200", "--projector-shares", "2",
                             "--format", "json"],
                            capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    report = json.loads(result.stdout)
    assert report["data"]["persons"] == 200 and report["data"]["events"] > 1000
    assert report["ingest"]["accepted"] == report["ingest"]["events"] == report["data"]["events"]
    assert report["ingest"]["events_per_s_by_tenth"] and min(report["ingest"]["events_per_s_by_tenth"]) > 0
    for section in ("ingest", "naive", "rebuild"):
        assert report[section]["events_per_s"] > 0
    assert report["rebuild"]["events"] == report["ingest"]["accepted"]
    for query in ("gaps_page", "gaps_page_by_rule", "status", "stats_region"):
        figures = report["queries"][query]
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert report["ratios"]["ingest_over_naive"] > 0
    # The like-for-like pair: the same events on both sides, in alternating rounds, the median of each reported.
    for side in ("naive", "ingest_same_events"):
        rounds = report[side]["rounds_events_per_s"]
        assert len(rounds) == 3 and report[side]["events_per_s"] == sorted(rounds)[1]
    assert report["naive"]["events"] == report["ingest_same_events"]["events"] == min(report["data"]["events"], 20_000)
    assert report["peak_rss_mib"] > 0
    for query in ("gaps_page_as_of", "gaps_page_known_at", "stats_region_as_of", "overview_cold", "register_page",
                  "register_page_new", "register_page_checking", "lead_page"):
        figures = report["queries"][query]
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    for live, shares in ((report["live_projector"], 1), (report["live_projector_shares"], 2)):
        assert live["shares"] == shares and live["events"] == report["data"]["events"]
        assert live["projector_events_per_s"] > 0 and live["projector_peak_rss_mib"] > 0
        assert live["max_events_behind"] >= 0 and live["seconds_to_head_after_ingest"] >= 0
    assert set(report["targets"]) == {"ingest_at_least_10x_naive", "rebuild_at_least_50000_events_per_s",
                                      "gap_query_p99_under_50ms", "gap_query_measured_at_100000_persons",
                                      "past_gap_page_p99_under_100ms", "past_stats_p99_under_200ms",
                                      "overview_cold_under_1s", "projector_at_least_as_fast_as_ingest",
                                      "register_and_lead_pages_p99_under_300ms",
                                      "reconcile_roster_of_the_persons_under_60s"}
    # The roster: the persons' judgments and 1% the record lacks, each of those a finding; the replay agrees.
    reconcile = report["reconcile"]
    assert reconcile["rows"] == reconcile["of_record"] + reconcile["not_of_record"]
    assert reconcile["of_record"] > 150 and reconcile["not_of_record"] == reconcile["findings"] == 2
    assert reconcile["replay_matches"] is True and reconcile["receive_s"] >= 0
    assert reconcile["baseline_sample"] > 0 and reconcile["baseline_fold_per_row_ms"] > 0
    identity = report["identity"]  # the simulated mistyped ID numbers make probable matches; one group is linked
    assert identity["groups"] > 0 and 0 < identity["queue"]["p50_ms"] <= identity["queue"]["p99_ms"]
    assert identity["baseline_read_every_person_s"] >= 0 and identity["link_catch_up_s"] >= 0
    assert identity["status_linked"]["p50_ms"] > 0 and identity["status_single"]["p50_ms"] > 0
    scorecard = report["scorecard"]
    assert scorecard["log_events_counted"] >= report["data"]["events"]
    assert 0 < scorecard["city"]["p50_ms"] <= scorecard["city"]["p99_ms"]
