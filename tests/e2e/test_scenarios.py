"""End-to-end scenarios: realistic case histories (tests/scenarios/*.jsonl) with the gaps and statuses a careful
reader of domain.md and docs/rules.md expects, written by hand (*.expected.json). The answers are the law's."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from adapters.config import Settings
from services.bootstrap import bootstrap
from services.ingest import Source

SCENARIOS = Path(__file__).parent.parent / "scenarios"
CASES = sorted(path.name.removesuffix(".jsonl") for path in SCENARIOS.glob("*.jsonl"))


def moment(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def comparable(gap: dict) -> tuple:
    kind = gap.get("obligated_kind", gap.get("obligated", {}).get("kind"))
    return (gap["rule"], gap["state"], gap["id_number"], gap["triggered_by"], gap["due_at"], gap["fulfilled_at"],
            kind if gap["rule"].startswith("R") else None)  # anomalies name no obligated agency in the law


def test_there_are_at_least_twenty_scenarios():
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES)
def test_scenario(case, tmp_path):
    expected = json.loads((SCENARIOS / f"{case}.expected.json").read_text())
    lines = (SCENARIOS / f"{case}.jsonl").read_bytes().splitlines()
    services = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/h.sqlite3"))
    try:
        result = services.ingestor.ingest([line for line in lines if line.strip()], Source("scenario", allow_recorded_at=True))
        assert result.rejected == 0, [item.reason for item in result.items if item.status == "rejected"]
        persons = {json.loads(line)["person"]["id_number"] for line in lines if line.strip()}
        for number, check in enumerate(expected["checks"], start=1):
            as_of, known_at = moment(check["as_of"]), moment(check["known_at"])
            gaps = [g for g in services.queries.gaps(as_of=as_of, known_at=known_at, state="all")
                    if g["id_number"] in persons]
            context = f"check {number} (as_of {check['as_of']}, known_at {check['known_at']}): {check.get('why', '')}"
            assert sorted(map(comparable, gaps)) == sorted(map(comparable, check["gaps"])), context
            for id_number, want in check["status"].items():
                status = services.queries.status(id_number, as_of=as_of, known_at=known_at)
                got = {"status": status["status"] if status else None,
                       "responsible_kind": (status["responsible"] or {}).get("kind") if status else None,
                       "responsible_region": (status["responsible"] or {}).get("region") if status else None}
                assert got == want, f"{id_number} {context}"
    finally:
        services.close()
