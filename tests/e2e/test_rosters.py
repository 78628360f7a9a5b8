"""Roster reconciliation (名单碰撞) on a real store: the simulated county withholds decisions, enrolments and detentions
on purpose; each agency's roster (built from everything that happened) compared with the record finds every withheld
one and nothing else. CSV and XLSX inputs, a malformed roster's errors per row (nothing lost), replay, leads, and
POST /v1/rosters."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook

from adapters.config import Settings
from adapters.spreadsheets import read_table
from domain.rosters import RosterError, RosterSource
from domain.rules import default_rule_set
from services.bootstrap import bootstrap
from services.entrypoints.http.api import create_app
from services.ingest import Source
from tests.builders import CST, decision, envelope, id_number
from tests.clock import Clock
from tools.rosters import ROSTER_COLUMNS, everything, rosters
from tools.simulate import SimulationConfig, run

pytestmark = pytest.mark.filterwarnings("ignore::domain.calendar.ProvisionalCalendarWarning")

UNTIL = dt.datetime(2026, 10, 30, 18, 0, tzinfo=CST)
AS_OF = UNTIL.date()
WITHHOLD = {"decision": 0.03, "enrolment": 0.03, "detention": 0.05}


def csv_bytes(rows: list[dict], columns=ROSTER_COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def xlsx_bytes(header: list[str], lines: list[list]) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(header)
    for line in lines:
        sheet.append(line)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def simulated_county(services, seed: int, persons: int = 300) -> tuple[list[dict], dict[str, list[dict]]]:
    """Publish a simulated county with withheld events; returns the truth and every agency's roster."""
    out, truth_text = io.StringIO(), io.StringIO()
    run(SimulationConfig(persons=persons, seed=seed, until=UNTIL, counties=("632801", "632802"), withhold=WITHHOLD),
        out, truth_text)
    published = [json.loads(line) for line in out.getvalue().splitlines()]
    for start in range(0, len(published), 500):
        result = services.ingestor.ingest(published[start:start + 500], Source("sim", allow_recorded_at=True))
        assert result.rejected == 0
    truth = json.loads(truth_text.getvalue())
    return truth, rosters(everything(published, truth), UNTIL, default_rule_set())


def reconcile(services, source: str, content: bytes, name: str = "roster.csv", **kw) -> dict:
    header, lines = read_table(content, name)
    return services.rosters.receive(RosterSource.parse(source), header, lines, AS_OF, file_name=name, **kw)


@pytest.fixture
def county_clock():
    return Clock(UNTIL + dt.timedelta(hours=2))


@pytest.fixture
def county_services(tmp_path, county_clock):
    services = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/county.db"), clock=county_clock)
    yield services
    services.close()


@pytest.mark.parametrize("seed", [3, 11])
def test_every_withheld_event_is_found_and_nothing_else(county_services, seed):
    truth, found_rosters = simulated_county(county_services, seed)
    withheld = {kind: {t["id_number"] for t in truth if t["failure"] == f"withheld_{kind}"}
                for kind in ("decision", "enrolment", "detention")}
    assert all(withheld.values()), withheld  # the seed withholds some of each
    on_registers = {row["id_number"] for source, rows in found_rosters.items() if source.startswith("bureau:")
                    for row in rows}
    expected = {
        ("A05", "roster_only"): withheld["decision"],
        # A decision never published leaves the record without the episode, so without the register the bureau
        # keeps: a withheld decision shows on the bureau's list too, for those the bureau enrolled.
        ("A06", "roster_only"): withheld["enrolment"] | (withheld["decision"] & on_registers),
        ("A07", "roster_only"): withheld["detention"],
    }
    found: dict[tuple[str, str], set[str]] = {}
    for source, rows in sorted(found_rosters.items()):
        region = source.rsplit("-", 1)[1]
        report = reconcile(county_services, source, csv_bytes(rows), region=region)
        assert report["rejected_rows"] == [] and report["roster"]["rows"] == len(rows)
        for f in report["findings"]:
            found.setdefault((f["rule"][:3], f["direction"]), set()).add(f["id_number"])
            assert f["evidence"] is not None and f["explanation"]
    assert found == {key: ids for key, ids in expected.items() if ids}


def test_findings_are_leads_and_a_stored_roster_replays_to_the_same(county_services, county_clock):
    truth, found_rosters = simulated_county(county_services, 3)
    court = "court:FY-632801"
    report = reconcile(county_services, court, csv_bytes(found_rosters[court]))
    assert report["findings"] and all(f["recorded"] for f in report["findings"])
    county_clock.now += dt.timedelta(minutes=1)  # a finding is a gap from the moment it was found
    for finding in report["findings"]:
        lead = county_services.leads.lead(finding["lead_id"], lambda region: True)
        assert lead["rule"] == "A05_unpublished_decision" and lead["state"] == "new"
        assert (lead["gap"]["obligated"]["kind"], lead["gap"]["obligated"]["id"]) == ("court", "FY-632801")
        assert lead["gap"]["reason"] == finding["explanation"]
    # The court publishes one of the withheld judgments late: the replay, as known then, finds the same.
    first = report["findings"][0]
    withheld = next(t for t in truth if t["id_number"] == first["id_number"])["withheld"]
    county_clock.now += dt.timedelta(days=2)
    late = [{key: value for key, value in e.items() if key != "recorded_at"} for e in withheld]
    assert county_services.ingestor.ingest(late, Source("late")).rejected == 0
    replayed = county_services.rosters.replay(report["roster"]["id"])
    assert replayed["roster"]["matches_recorded"] is True
    assert [f["event_id"] for f in replayed["findings"]] == [f["event_id"] for f in report["findings"]]
    # Compared as known now (a list as of today), the judgment published late is no longer a finding.
    header, lines = read_table(csv_bytes(found_rosters[court]), "today.csv")
    today = county_services.rosters.receive(RosterSource.parse(court), header, lines, county_clock.now.date())
    assert {f["id_number"] for f in today["findings"]} == {f["id_number"] for f in report["findings"]} - {
        first["id_number"]}
    # Sent again, the same list records nothing twice.
    again = reconcile(county_services, court, csv_bytes(found_rosters[court]))
    assert again["roster"]["id"] == report["roster"]["id"]
    assert county_services.ingestor.ingest([], Source("none")).accepted == 0


def test_an_xlsx_export_with_chinese_headers_finds_what_the_csv_finds(county_services):
    truth, found_rosters = simulated_county(county_services, 3)
    rows = found_rosters["police:GA-632801"]
    from_csv = reconcile(county_services, "police:GA-632801", csv_bytes(rows))
    header = ["序号", "公民身份号码", "姓名", "收押日期", "出所日期", "备注"]
    lines = [[n, r["id_number"], r["name"], dt.date.fromisoformat(r["date"]), r["end_date"] or None, ""]
             for n, r in enumerate(rows, 1)]
    content = xlsx_bytes(header, lines)
    from_xlsx = reconcile(county_services, "police:GA-632801", content, "收押名单.xlsx")
    assert from_xlsx["roster"]["id"] != from_csv["roster"]["id"]  # another file, kept on its own
    assert {f["id_number"] for f in from_xlsx["findings"]} == {f["id_number"] for f in from_csv["findings"]}
    assert from_xlsx["findings"]


def test_a_mapping_names_the_columns_of_another_export(county_services):
    services = county_services
    assert services.ingestor.ingest([decision(id_number(1))], Source("court")).rejected == 0
    content = "身份证,犯罪人姓名,判决书号,生效\n" + f"{id_number(2)},李四,(2024)黔0222刑初9号,2024-03-01\n"
    header, lines = read_table(content.encode(), "x.csv")
    with pytest.raises(RosterError) as refused:
        services.rosters.receive(RosterSource.parse("court:FY-520222"), header, lines, AS_OF)
    assert "id_number（身份证号码）" in str(refused.value) and "--columns" in str(refused.value)
    header, lines = read_table(content.encode(), "x.csv")
    report = services.rosters.receive(
        RosterSource.parse("court:FY-520222"), header, lines, AS_OF,
        columns={"id_number": "身份证", "name": "犯罪人姓名", "case_ref": "判决书号", "date": "生效"})
    assert {(f["id_number"], f["direction"]) for f in report["findings"]} == {
        (id_number(2), "roster_only"), (id_number(1), "service_only")}  # the court's own decision is not listed
    [on_record] = [f for f in report["findings"] if f["direction"] == "service_only"]
    assert [e["event_type"] for e in on_record["evidence"]["events"]] == ["decision_effective"]


@pytest.mark.clock
def test_a_malformed_roster_gives_errors_per_row_and_loses_nothing(tmp_path, now):
    services = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/m.db"), clock=Clock(now))
    try:
        published = decision(id_number(1))
        assert services.ingestor.ingest([published], Source("court")).rejected == 0
        bad = id_number(2)[:17] + ("0" if id_number(2)[17] != "0" else "1")
        case = published["payload"]["document_no"]
        text = ("id_number,name,case_ref,category,date,region\n"
                f"{id_number(1)},张一,{case},缓刑,2024-03-01,520222\n"
                f"{bad},错号,(2024)黔0222刑初2号,probation,2024-03-01,520222\n"
                f"{id_number(3)},王三,(2024)黔0222刑初3号,死缓,2024/3/1,5202\n"
                f"{id_number(4)},赵四,(2024)黔0222刑初4号,probation,2024-02-30,520222\n"
                f"{id_number(1)},张一,{case},缓刑,2024-03-01,520222\n"
                f"{id_number(5)},,(2024)黔0222刑初5号,control,2024年3月1日,520222\n"
                f"{id_number(6)},钱六,(2024)黔0222刑初6号,管制,20240301,520222\n")
        header, lines = read_table(text.encode(), "bad.csv")
        report = services.rosters.receive(RosterSource.parse("court:FY-520222"), header, lines,
                                          now.astimezone(CST).date())
        problems = {r["row"]: " ".join(r["problems"]) for r in report["rejected_rows"]}
        assert set(problems) == {3, 4, 5, 6, 7}
        assert "校验码" in problems[3]
        assert "矫正类别" in problems[4] and "区划代码" in problems[4]
        assert "日期" in problems[5]
        assert "与第 2 行重复" in problems[6]
        assert "缺少姓名" in problems[7]
        assert report["roster"]["rows"] == 7 and report["roster"]["rows_compared"] == 2
        # Row 8 (a valid 管制 judgment, date written 20240301) is the only difference.
        assert [(f["row"]["row"], f["direction"]) for f in report["findings"]] == [(8, "roster_only")]
        stored = services.store.get_aggregate(__import__("uuid").UUID(report["roster"]["id"]))
        assert len(stored.rows) == 7 and stored.rows[1]["id_number"] == bad and stored.rows[1]["problems"]
        assert services.rosters.replay(report["roster"]["id"])["rejected_rows"] == report["rejected_rows"]
    finally:
        services.close()


@pytest.mark.clock
def test_post_rosters_for_an_agency_and_for_oversight(tmp_path, now):
    clock = Clock(now)
    services = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/api.db"), clock=clock)
    add = services.principals.add
    court = {"Authorization": "Bearer " + add("publisher", "盘州市人民法院", kind="court", agency_id="FY-520222",
                                                region="520222")[1]}
    officer = {"Authorization": "Bearer " + add("oversight", "王检察官", kind="procuratorate",
                                                  agency_id="JCY-520222", region="520222")[1]}
    neighbour = {"Authorization": "Bearer " + add("oversight", "邻县检察官", region="520221")[1]}
    day = now.astimezone(CST).date().isoformat()
    try:
        with TestClient(create_app(services)) as app:
            assert app.post("/v1/events", json=decision(id_number(1)), headers=court).json()["accepted"] == 1
            rows = [{"身份证号码": id_number(2), "姓名": "李四", "案号": "(2024)黔0222刑初7号", "日期": "2024-03-01"}]
            response = app.post("/v1/rosters", json={"as_of": day, "rows": rows}, headers=court)
            assert response.status_code == 200, response.text
            report = response.json()
            assert report["roster"]["source"] == "court:FY-520222"
            kinds = {(f["direction"], f["id_number"]) for f in report["findings"]}
            assert kinds == {("roster_only", id_number(2)), ("service_only", id_number(1))}
            lead = next(f["lead_id"] for f in report["findings"] if f["id_number"] == id_number(2))
            clock.now += dt.timedelta(minutes=1)
            shown = app.get(f"/v1/leads/{lead}", headers=officer)
            assert shown.status_code == 200 and shown.json()["rule"] == "A05_unpublished_decision"
            # An agency sends its own list only; a CSV body works as JSON does.
            other = app.post(f"/v1/rosters?as_of={day}&source=court:FY-520221", content=csv_bytes([]),
                             headers={**court, "Content-Type": "text/csv"})
            assert other.status_code == 403
            missing = app.post(f"/v1/rosters?as_of={day}", content="姓名\n张三\n".encode(),
                               headers={**court, "Content-Type": "text/csv"})
            assert missing.status_code == 422 and "id_number" in missing.json()["error"]["message"]
            assert any("id_number" in d.reason for d in services.store.dead_letters())  # kept with its reason
            # Oversight sends a list of an agency of its region, not of another.
            assert app.post(f"/v1/rosters?as_of={day}&source=court:FY-520222&region=520222",
                            content=csv_bytes([]), headers={**officer, "Content-Type": "text/csv"}).status_code == 422
            assert app.post(f"/v1/rosters?as_of={day}&source=court:FY-520222&region=520222",
                            json={"rows": rows, "as_of": day}, headers=neighbour).status_code == 403
            replayed = app.get(f"/v1/rosters/{report['roster']['id']}", headers=officer).json()
            assert replayed["roster"]["matches_recorded"] is True
    finally:
        services.close()


def test_envelope_of_a_finding_is_an_event_like_any_other():
    """A finding published by hand (an agency's own system) is checked like every event."""
    from domain.envelope import parse_event

    event = envelope("roster_discrepancy_found", {
        "rule": "A06_register_mismatch", "direction": "service_only", "roster_id": "0b6f3f2e-8a3c-4f55-9d0e-2f8c1b7a6e51",
        "finding": "在册名单中没有"}, kind="bureau", person=id_number(1))
    assert parse_event(event).event_type == "roster_discrepancy_found"


def test_the_commands_simulate_rosters_and_reconcile_them(tmp_path):
    """`handoff simulate --withhold … --rosters DIR`, `handoff publish --import`, `handoff reconcile` (table, JSON,
    CSV) and `--replay`, as an operator types them."""
    import subprocess
    import sys
    from pathlib import Path

    handoff = str(Path(sys.executable).parent / "handoff")
    env = {"HANDOFF_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db", "PATH": "/usr/bin:/bin"}

    def run_cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([handoff, *args], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    run_cli("simulate", "--persons", "200", "--seed", "5", "--until", "2026-10-30T18:00:00+08:00",
            "--withhold", "decision=0.05", "--out", str(tmp_path / "ev.jsonl"), "--truth", str(tmp_path / "t.json"),
            "--rosters", str(tmp_path / "rosters"))
    truth = json.loads((tmp_path / "t.json").read_text())
    run_cli("publish", "--import", str(tmp_path / "ev.jsonl"))
    court = "FY-632801"
    withheld = {t["id_number"] for t in truth if t["failure"] == "withheld_decision"
                and t["withheld"][0]["agency"]["id"] == court}
    roster = str(tmp_path / "rosters" / f"court_{court}.csv")
    report = json.loads(run_cli("reconcile", "--source", f"court:{court}", roster, "--as-of", "2026-10-30",
                                "--format", "json").stdout)
    assert {f["id_number"] for f in report["findings"]} == withheld and withheld
    shown = run_cli("reconcile", "--replay", report["roster"]["id"]).stdout
    assert "重放结果与当时记录一致" in shown and max(len(line) for line in shown.splitlines()) <= 100
    rows = run_cli("reconcile", "--replay", report["roster"]["id"], "--format", "csv").stdout.splitlines()
    assert rows[0].startswith("rule,direction,id_number") and len(rows) == len(withheld) + 1
    wrong = subprocess.run([handoff, "reconcile", "--source", "judge:X", roster, "--as-of", "2026-10-30"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert wrong.returncode == 2 and "court、bureau 或 police" in wrong.stderr


def test_an_id_number_excel_kept_as_a_number_says_so(county_services):
    """Excel turns an 18-digit ID number typed into a general cell into a float, which keeps 15 digits: the row is
    refused with the reason and the remedy, not only "wrong check digit"."""
    content = xlsx_bytes(["身份证号码", "姓名", "收押日期"], [[float(id_number(1)[:17] + "0"), "张三", "2026-10-01"],
                                                      [id_number(2), "李四", "2026-10-02"]])
    report = reconcile(county_services, "police:GA-520222", content, "收押.xlsx")
    [refused] = report["rejected_rows"]
    assert refused["row"] == 2 and any("设为文本" in problem for problem in refused["problems"])
