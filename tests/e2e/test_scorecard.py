"""The monthly scorecard (月度通报) of a small history whose figures are computed by hand below, on each backend: per
agency the obligations due in March 2024, on time, late, still open and the median delay; events published,
backdated and refused; per region the 脱管漏管率 and its change. A judgment's documents delivered late (in April,
dated March) leave the March 通报 as known at its end unchanged and show in the current view. Also the CLI, the API
and the dashboard page with its Excel export."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from adapters.config import Settings
from domain.authorisation import PublisherIdentity
from domain.catalog import AgencyKind
from services.bootstrap import bootstrap
from services.entrypoints.http.api import create_app
from services.ingest import Source
from tests.builders import CST, decision, envelope, id_number
from tests.clock import Clock

pytestmark = pytest.mark.filterwarnings("ignore::domain.calendar.ProvisionalCalendarWarning")

HANDOFF = str(Path(sys.executable).parent / "handoff")
P1, P2 = id_number(1), id_number(2)


def at(day: int, hour: int = 10, month: int = 3) -> dt.datetime:
    return dt.datetime(2024, month, day, hour, tzinfo=CST)


def recorded(event: dict, when: dt.datetime) -> dict:
    return {**event, "recorded_at": when.isoformat()}


def march_history() -> list[dict]:
    """Person 1: every step in time (the enrolment recorded three days late). Person 2: the court notifies on
    03-15 (R01 due 03-06 24:00: late), never delivers the documents (R02 due 03-11 24:00: open), the person never
    reports (R04 due 03-11 24:00: open)."""
    region = {"execution_region": "520222"}
    return [
        recorded(decision(P1), at(1, 11)),
        recorded(envelope("bureau_notified", region, person=P1, occurred_at=at(2)), at(2, 11)),
        recorded(envelope("documents_delivered", {**region, "copied_to": ["procuratorate"]}, person=P1,
                          occurred_at=at(4)), at(4, 11)),
        recorded(envelope("documents_receipted", {}, kind="bureau", person=P1, occurred_at=at(6)), at(6, 11)),
        recorded(envelope("subject_reported", {"region": "520222"}, kind="bureau", person=P1, occurred_at=at(5)),
                 at(5, 11)),
        recorded(envelope("subject_enrolled", {"region": "520222"}, kind="bureau", person=P1, occurred_at=at(5, 15)),
                 at(8, 15)),  # 3 days after it occurred: backdated
        recorded(decision(P2), at(1, 12)),
        recorded(envelope("bureau_notified", region, person=P2, occurred_at=at(15)), at(15, 11)),
    ]


@pytest.fixture
def history(database_url):
    clock = Clock(at(20))
    services = bootstrap(Settings(database_url=database_url), clock=clock)
    court = Source("http:court:FY-520222", publisher=PublisherIdentity(AgencyKind.COURT, "FY-520222", "520222"))
    bad = envelope("bureau_notified", {"execution_region": "520222"}, person=P1[:17] + "0", occurred_at=at(19))
    assert services.ingestor.ingest([bad], court).rejected == 1  # refused on 03-20: a March refusal of the court
    clock.now = dt.datetime(2024, 4, 2, 9, tzinfo=CST)
    assert services.ingestor.ingest(march_history(), Source("import", allow_recorded_at=True)).rejected == 0
    yield services, clock
    services.close()


def agency(report: dict, agency_id: str) -> dict:
    return next(a for a in report["agencies"] if a["agency_id"] == agency_id)


def test_the_march_figures_are_the_hand_computed_ones(history):
    services, _ = history
    report = services.scorecards.month("2024-03", "520222")
    assert report["complete"] and report["known_at"].startswith("2024-03-31T23:59:59.999999")
    court = agency(report, "FY-520222")
    # R01 and R02 of both persons: person 1's in time, person 2's R01 met 8 days 10 hours late (03-07 00:00 →
    # 03-15 10:00), R02 still open at the month's end, 20 days after its due time (03-12 00:00 → 04-01 00:00).
    assert (court["due"], court["on_time"], court["late"], court["still_open"]) == (4, 2, 1, 1)
    assert court["on_time_share"] == 50.0
    assert court["median_delay_days"] == round((8 + 10 / 24 + 20) / 2, 1) == 14.2
    assert (court["published"], court["backdated"], court["refused"]) == (5, 0, {"invalid_envelope": 1})
    bureau = agency(report, "SFJ-520222")  # the bureau of 520222: the one bureau publishing there
    # R03 (receipt), R04 and R06 of person 1 in time; person 2's R04 open, 20 days past due at the month's end.
    assert (bureau["due"], bureau["on_time"], bureau["still_open"], bureau["median_delay_days"]) == (4, 3, 1, 20.0)
    assert (bureau["published"], bureau["backdated"], bureau["backdated_share"]) == (3, 1, 33.33)
    [region] = report["regions"]
    # In register at the month's end: person 1; 漏管 (open R04): person 2. February had nobody in register.
    assert (region["region"], region["in_register"], region["lost_supervision_persons"]) == ("520222", 1, 1)
    assert (region["lost_supervision_rate_permille"], region["previous_rate_permille"], region["rank"]) == (
        1000.0, None, 1)


def test_a_late_event_leaves_the_published_month_unchanged(history):
    services, clock = history
    before = services.scorecards.month("2024-03", "520222")
    clock.now = dt.datetime(2024, 4, 10, 9, tzinfo=CST)
    late = envelope("documents_delivered", {"execution_region": "520222", "copied_to": ["police"]}, person=P2,
                    occurred_at=at(20))
    assert services.ingestor.ingest([late], Source("court")).accepted == 1
    after = services.scorecards.month("2024-03", "520222", current=True)
    assert {k: v for k, v in after.items() if k != "current"} == before
    now = next(a for a in after["current"]["agencies"] if a["agency_id"] == "FY-520222")
    # As known now: person 2's R02 met on 03-20 10:00, 8 days 10 hours late; still counted in March as published
    # nowhere (the late event was received in April).
    assert (now["late"], now["still_open"], now["published"]) == (2, 0, 5)
    assert now["median_delay_days"] == round(8 + 10 / 24, 1)
    april = agency(services.scorecards.month("2024-04", "520222"), "FY-520222")
    assert (april["published"], april["backdated"]) == (1, 1)


def test_a_month_not_begun_or_malformed_is_refused(history):
    services, _ = history
    from services.scorecard import BadMonth

    for month in ("2024-13", "2024-3", "March", "2099-01", "0000-01", "9999-12"):
        with pytest.raises(BadMonth):
            services.scorecards.month(month)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_api_dashboard_and_cli(history, tmp_path):
    services, clock = history
    officer = services.principals.add("oversight", "王检察官", region="520222")[1]
    court = services.principals.add("publisher", "法院", kind="court", agency_id="FY-520222", region="520222")[1]
    with TestClient(create_app(services)) as app:
        answer = app.get("/v1/scorecard", params={"month": "2024-03"}, headers={"Authorization": f"Bearer {officer}"})
        assert answer.status_code == 200, answer.text
        assert agency(answer.json(), "FY-520222")["on_time_share"] == 50.0
        assert app.get("/v1/scorecard", params={"month": "2024-03"},
                       headers={"Authorization": f"Bearer {court}"}).status_code == 403
        assert app.get("/v1/scorecard", params={"month": "2024-3"},
                       headers={"Authorization": f"Bearer {officer}"}).status_code == 422
        assert app.post("/login", data={"token": officer}, follow_redirects=False).status_code == 303
        page = app.get("/scorecard", params={"month": "2024-03", "current": "1"})
        assert page.status_code == 200 and "月度通报" in page.text and "FY-520222" in page.text
        assert 'data-region="520222"' in page.text and "50.0%" in page.text
        book = app.get("/scorecard/export.xlsx", params={"month": "2024-03"})
        assert book.status_code == 200
        sheets = load_workbook(io.BytesIO(book.content)).worksheets
        cells = [row for row in sheets[0].iter_rows(values_only=True)]
        assert "2024-03" in cells[0][0] and any(row[2] == "FY-520222" and row[6] == 50.0 for row in cells)
        assert [row for row in sheets[1].iter_rows(values_only=True)][-1][1] == "520222 盘县（已撤销）"
    url = services.settings.database_url
    done = subprocess.run([HANDOFF, "scorecard", "--month", "2024-03", "--region", "520222", "--format", "json"],
                          capture_output=True, text=True, env={"HANDOFF_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert agency(json.loads(done.stdout), "FY-520222")["due"] == 4
    table = subprocess.run([HANDOFF, "scorecard", "--month", "2024-03"], capture_output=True, text=True,
                           env={"HANDOFF_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}, timeout=120)
    assert table.returncode == 0 and "按期率" in table.stdout and "50.0%" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 100


def test_a_running_projector_keeps_the_count_of_publications_current(history):
    from services.projector import Projector

    services, _ = history
    assert services.read_model.publications_position() == 0  # inline, nobody has read a scorecard yet
    runner = Projector(services.projection, "background", interval=0.01, followers=[services.scorecards.catch_up])
    runner.run(on_round=lambda _: runner.stop())
    assert services.read_model.publications_position() == services.store.head()
