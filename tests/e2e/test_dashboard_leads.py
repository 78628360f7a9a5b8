"""The dashboard as a workplace: the 线索台账 page (counts per state, search, filters, totals, page numbers, sorting),
a lead's page with its action forms (CSRF-protected), the 即将到期 page, precision on the overview, and the exports
(CSV and an Excel workbook read back with openpyxl). A simulated county on a real store; the clock fixed."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import openpyxl
import pytest
from fastapi.testclient import TestClient

from adapters.config import Settings
from services.bootstrap import bootstrap
from services.entrypoints.http import api
from services.leads import LeadQuery
from services.ingest import Source
from tools.simulate import SimulationConfig, run

pytestmark = pytest.mark.filterwarnings("ignore::domain.calendar.ProvisionalCalendarWarning")

CST = dt.timezone(dt.timedelta(hours=8))
UNTIL = dt.datetime(2026, 6, 30, 18, 0, tzinfo=CST)


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    out = io.StringIO()
    run(SimulationConfig(persons=160, counties=("520222", "520221"), seed=5, failure_rate=0.35, until=UNTIL), out)
    lines = [line.encode() for line in out.getvalue().splitlines()]
    services = bootstrap(Settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('leads')}/h.sqlite3"),
                         clock=lambda: UNTIL)
    for start in range(0, len(lines), 500):
        assert services.ingestor.ingest(lines[start:start + 500], Source("sim", allow_recorded_at=True)).rejected == 0
    add = services.principals.add
    tokens = {"officer": add("oversight", "王检察官", kind="procuratorate", agency_id="JCY-520222",
                             region="520222")[1],
              "auditor": add("auditor", "审计员")[1],
              "court": add("publisher", "法院", kind="court", agency_id="FY-520222", region="520222")[1]}
    yield services, tokens
    services.close()


@pytest.fixture
def login(county):
    services, tokens = county
    app = api.create_app(services)
    clients = []

    def client_of(who: str) -> TestClient:
        client = TestClient(app)
        clients.append(client)
        assert client.post("/login", data={"token": tokens[who]}, follow_redirects=False).status_code == 303
        return client

    yield client_of
    for client in clients:
        client.close()


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def lead_rows(html: str) -> list[dict[str, str]]:
    return [dict(zip(("lead", "state", "rule", "id"), row)) for row in re.findall(
        r'class="lead-row" data-lead="([^"]+)" data-state="([^"]+)" data-rule="([^"]+)" data-id="([^"]+)"', html)]


def test_the_register_page_counts_filters_pages_and_sorts(county, login):
    services, _ = county
    officer = login("officer")
    page = officer.get("/leads")
    assert page.status_code == 200
    everything = services.leads.page(LeadQuery(limit=1000), {"region": "520222"})
    assert f"共 {everything['total']:,} 条" in page.text
    assert re.search(rf'data-state="all"[^>]*>全部 <span class="count">{everything["total"]}</span>', page.text)
    rows = lead_rows(page.text)
    assert [r["lead"] for r in rows] == [i["lead_id"] for i in everything["items"][:50]]
    assert {i["region"] for i in everything["items"]} == {"520222"}  # the officer's county only
    if everything["total"] > 50:
        assert 'href="/leads?page=2"' in page.text
        second = lead_rows(officer.get("/leads?page=2").text)
        assert [r["lead"] for r in second] == [i["lead_id"] for i in everything["items"][50:100]]
    by_rule = lead_rows(officer.get("/leads?sort=rule").text)
    assert [r["rule"] for r in by_rule] == sorted(r["rule"] for r in by_rule)
    name = everything["items"][0]["name"]
    found = lead_rows(officer.get("/leads", params={"q": name}).text)
    assert found and all(i["name"] == name for i in everything["items"] if i["lead_id"] in {r["lead"] for r in found})
    english = officer.get("/leads", params={"lang": "en"}).text
    assert "Lead register" in english and f"{everything['total']:,} in all" in english
    assert officer.get("/leads", params={"state": "nonsense"}).status_code == 422
    assert officer.get("/leads", params={"region": "520221"}).status_code == 403
    assert login("court").get("/leads").status_code == 403


def test_a_lead_is_worked_from_its_page_with_forms_that_need_the_csrf_token(county, login):
    services, _ = county
    officer = login("officer")
    lead = lead_rows(officer.get("/leads", params={"state": "new"}).text)[0]["lead"]
    page = officer.get(f"/leads/{lead}")
    assert page.status_code == 200 and 'data-action="start_check"' in page.text and 'id="timeline"' in page.text
    forged = officer.post(f"/leads/{lead}/actions", data={"action": "start_check", "csrf_token": "forged"})
    assert forged.status_code == 403
    token = csrf(page.text)
    done = officer.post(f"/leads/{lead}/actions", data={"action": "start_check", "csrf_token": token},
                        follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/leads/{lead}?done=start_check"
    page = officer.get(done.headers["location"])
    assert 'data-state="checking"' in page.text and "已办理：开始核实。" in page.text
    refused = officer.post(f"/leads/{lead}/actions", data={"action": "follow_up", "note": "x", "csrf_token": token})
    assert refused.status_code == 409 and "未能办理" in refused.text
    officer.post(f"/leads/{lead}/actions", data={"action": "confirm", "csrf_token": token})
    assert services.leads.lead(lead, lambda region: True)["state"] == "confirmed"
    auditor = login("auditor")
    assert auditor.get(f"/leads/{lead}").status_code == 200
    assert 'id="lead-actions"' not in auditor.get(f"/leads/{lead}").text  # auditors read, never act


def test_exports_keep_the_filters_and_the_date(county, login):
    services, _ = county
    officer = login("officer")
    rule = "R04_not_reported"
    expected = services.leads.page(LeadQuery(rule=rule, limit=100_000), {"region": "520222"})
    response = officer.get("/leads/export.xlsx", params={"rule": rule})
    assert response.status_code == 200 and response.headers["content-disposition"].endswith('.xlsx"')
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    values = [row for row in sheet.iter_rows(values_only=True)]
    assert values[0][0] == "线索台账 截至 2026-06-30" and values[1][0] == f"筛选条件：rule={rule}"
    header = values[4]
    table = values[5:]
    assert header[0] == "线索编号 lead_id" and len(table) == expected["total"]
    assert [row[0] for row in table] == [item["lead_id"] for item in expected["items"]]
    text = officer.get("/leads/export.csv", params={"rule": rule}).content.decode("utf-8-sig")
    assert [row[0] for row in csv.reader(io.StringIO(text))][1:] == [item["lead_id"] for item in expected["items"]]


def test_due_soon_and_precision_on_the_overview(county, login):
    services, _ = county
    officer = login("officer")
    due = officer.get("/due", params={"within": "30d"})
    assert due.status_code == 200
    upcoming = services.queries.upcoming(dt.timedelta(days=30), region="520222")
    assert len(re.findall(r'class="due-row"', due.text)) == len(upcoming)
    lead = lead_rows(officer.get("/leads", params={"state": "new", "rule": "R04_not_reported"}).text)[0]["lead"]
    token = csrf(officer.get(f"/leads/{lead}").text)
    officer.post(f"/leads/{lead}/actions", data={"action": "dismiss", "reason": "data_error", "csrf_token": token})
    overview = officer.get("/")
    assert re.search(r'data-rule="R04_not_reported"><td>R04 [^<]*</td><td class="num">(\d+)</td>', overview.text)
