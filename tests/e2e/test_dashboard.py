"""The oversight dashboard over a small simulated county (SQLite): login, redirects, who sees what (the API's rules),
the as-of date replaying the past, the language switch, the trend cache, and every page rendering in Chinese."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from fastapi.testclient import TestClient

from adapters.config import Settings
from domain.rules import LOST_SUPERVISION_RULES
from services.entrypoints.http import api
from services.bootstrap import bootstrap
from services.entrypoints.http.dashboard import STATUS_LABELS, Dashboard, create_router, timeline_picture
from services.ingest import Source
from tools.simulate import SimulationConfig, run
from tests.builders import decision, id_number

pytestmark = pytest.mark.filterwarnings("ignore::domain.calendar.ProvisionalCalendarWarning")

CST = dt.timezone(dt.timedelta(hours=8))
UNTIL = dt.datetime(2026, 6, 30, 18, 0, tzinfo=CST)
COUNTIES = ("520222", "520221")


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    """A county of 160 persons with many injected failures, the clock fixed at the simulation's end."""
    out = io.StringIO()
    run(SimulationConfig(persons=160, counties=COUNTIES, seed=5, failure_rate=0.35, until=UNTIL), out)
    lines = [line.encode() for line in out.getvalue().splitlines()]
    services = bootstrap(Settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('dash')}/h.sqlite3"),
                         clock=lambda: UNTIL)
    for start in range(0, len(lines), 500):
        result = services.ingestor.ingest(lines[start:start + 500], Source("sim", allow_recorded_at=True))
        assert result.rejected == 0
    tokens = {
        "city": services.principals.add(role="oversight", name="市局监督员", region="5202")[1],
        "county": services.principals.add(role="oversight", name="县局监督员", region="520221")[1],
        "elsewhere": services.principals.add(role="oversight", name="外地监督员", region="5203")[1],
        "auditor": services.principals.add(role="auditor", name="审计员")[1],
        "admin": services.principals.add(role="admin", name="管理员")[1],
        "court": services.principals.add(role="publisher", name="法院书记员", kind="court", agency_id="FY-520222",
                                         region="520222")[1],
    }
    yield services, tokens
    services.close()


@pytest.fixture(scope="module")
def app(county):
    services, _ = county
    app = api.create_app(services)
    # create_app includes the dashboard
    return app


@pytest.fixture
def browser(app, county):
    """A client that logs in with the token of a role (cookies are per client)."""
    _, tokens = county
    clients = []

    def login(who: str | None = None) -> TestClient:
        client = TestClient(app)
        clients.append(client)
        if who:
            response = client.post("/login", data={"token": tokens[who]}, follow_redirects=False)
            assert response.status_code == 303
        return client

    yield login
    for client in clients:
        client.close()


def open_gaps(services, region_prefix: str = "") -> list[dict]:
    return [g for g in services.queries.gaps() if (g["region"] or "").startswith(region_prefix)]


def number(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert match, element_id
    return match.group(1).strip()


def gap_rows(html: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'data-([a-z]+)="([^"]*)"', row))
            for row in re.findall(r'<tr class="gap-row"([^>]*)>', html)]


# -- login, logout, redirects -----------------------------------------------------------------------------------------


def test_login_flow_sets_a_strict_httponly_cookie_and_logout_clears_it(browser, county):
    _, tokens = county
    client = browser()
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2F"
    form = client.get("/login")
    assert form.status_code == 200 and "访问令牌" in form.text and 'name="token"' in form.text

    wrong = client.post("/login", data={"token": "not-a-token"})
    assert wrong.status_code == 401
    assert "令牌无效或已被撤销" in wrong.text and 'name="token"' in wrong.text
    assert "handoff_session" not in wrong.headers.get("set-cookie", "")

    ok = client.post("/login", data={"token": tokens["city"]}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith("handoff_session=") and "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert tokens["city"] not in cookie  # the browser never holds the API token
    session = client.cookies["handoff_session"]
    overview = client.get("/")
    assert overview.status_code == 200 and "市局监督员" in overview.text

    # Logging out takes the session's CSRF token: a forged form (no token, a wrong one) is refused.
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.post("/logout", data={"csrf_token": "guess"}, follow_redirects=False).status_code == 403
    out = client.post("/logout", data={"csrf_token": csrf_of(overview.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"].startswith("/login")
    assert "handoff_session=" in out.headers["set-cookie"] and "max-age=0" in out.headers["set-cookie"].lower()
    assert client.get("/", follow_redirects=False).status_code == 303
    assert "您已退出" in client.get("/login?bye=1").text
    # The old cookie, replayed, opens nothing: the session is gone on the server.
    replay = browser()
    replay.cookies.set("handoff_session", session)
    assert replay.get("/", follow_redirects=False).status_code == 303
    assert replay.get("/v1/whoami").status_code == 401


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_a_revoked_principals_session_ends_at_once(browser, county):
    services, _ = county
    principal, token = services.principals.add("oversight", "临时监督员", region="5202")
    client = browser()
    client.post("/login", data={"token": token})
    assert client.get("/").status_code == 200
    services.principals.revoke(str(principal.id))
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_login_posted_from_another_site_is_refused(browser, county):
    _, tokens = county
    client = browser()
    forged = client.post("/login", data={"token": tokens["city"]}, headers={"Origin": "https://evil.example"},
                         follow_redirects=False)
    assert forged.status_code == 403 and "handoff_session" not in forged.headers.get("set-cookie", "")


def test_login_returns_to_the_page_asked_for_and_never_elsewhere(browser, county):
    _, tokens = county
    client = browser()
    response = client.get("/gaps?rule=R04_not_reported", follow_redirects=False)
    assert response.headers["location"] == "/login?next=%2Fgaps%3Frule%3DR04_not_reported"
    back = client.post("/login", data={"token": tokens["city"], "next": "/gaps?rule=R04_not_reported"},
                       follow_redirects=False)
    assert back.headers["location"] == "/gaps?rule=R04_not_reported"
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        away = client.post("/login", data={"token": tokens["city"], "next": evil}, follow_redirects=False)
        assert away.headers["location"] == "/"
    for path in ("/gaps", "/persons/520222198001011236"):
        assert browser().get(path, follow_redirects=False).status_code == 303


def test_a_revoked_token_no_longer_opens_the_dashboard(browser, county):
    services, _ = county
    principal, token = services.principals.add(role="oversight", name="离职人员", region="5202")
    client = browser()
    assert client.post("/login", data={"token": token}, follow_redirects=False).status_code == 303
    assert client.get("/").status_code == 200
    services.principals.revoke(str(principal.id))
    assert client.get("/", follow_redirects=False).status_code == 303


# -- the pages, in Chinese --------------------------------------------------------------------------------------------


def test_every_page_renders_with_chinese_labels(browser, county):
    services, _ = county
    client = browser("city")
    overview = client.get("/")
    assert overview.status_code == 200
    for label in ("概览", "衔接缺口", "脱管漏管率", "脱管漏管率月度趋势", "在册", "缓刑", "假释", "暂予监外执行", "在矫",
                  "未履行的衔接缺口（按规则）", "查看日期", "520221", "520222"):
        assert label in overview.text, label
    assert '<svg id="trend-chart"' in overview.text
    assert overview.text.count('class="trend-point"') == 13  # 12 month ends and the as-of date
    assert "<script" not in overview.text
    assert "default-src 'none'" in overview.headers["content-security-policy"]
    stats = services.queries.stats(region="5202")
    assert number(overview.text, "in-register") == str(sum(entry["in_register"] for entry in stats))

    queue = client.get("/gaps")
    assert queue.status_code == 200
    rows = gap_rows(queue.text)
    expected = open_gaps(services, "5202")
    assert rows and len(rows) == min(len(expected), 50)
    assert [(r["id"], r["rule"]) for r in rows] == [(g["id_number"], g["rule"]) for g in expected[:50]]
    dues = [r["due"] for r in rows]
    assert dues == sorted(dues)  # most overdue first
    for label in ("衔接缺口队列", "逾期天数", "责任机关", "逾期未履行", services.rules[rows[0]["rule"]].title):
        assert label in queue.text, label

    gap = next(g for g in expected if g["rule"] in LOST_SUPERVISION_RULES)
    person = client.get(f"/persons/{gap['id_number']}")
    assert person.status_code == 200
    for label in ("状态", "当前责任机关", "矫正情况", "时间线", "法院", "检察院", "公安", "监狱", "司法局", "查看日期",
                  services.rules[gap["rule"]].title, gap["name"]):
        assert label in person.text, label
    assert '<svg id="timeline"' in person.text
    assert f'class="bar bar-open" data-rule="{gap["rule"]}"' in person.text
    assert 'fill="#c62828"' in person.text  # the red gap bar
    assert re.search(r"<title>[^<]*· \d{4}-\d\d-\d\d \d\d:\d\d", person.text)  # event marks carry type and date
    status = services.queries.status(gap["id_number"])
    assert number(person.text, "person-status") == STATUS_LABELS["zh"][status["status"]]
    log = services.principals.access_log(subject=gap["id_number"])
    assert log[0]["action"] == "dashboard person" and log[0]["name"] == "市局监督员"


def test_the_person_page_marks_provisional_due_times_and_shows_the_current_execution_region(browser, county):
    """A term ending in 2027, a year whose 调休 notice is not known, has a provisional R15 due time: 暂定 beside it,
    with the reason. A person moved to another 执行地 shows the new one as 执行地 and the decision's beside it."""
    services, _ = county
    services.projection.catch_up()  # the read model's persons are read directly below, not through a page
    client = browser("auditor")
    provisional = next(
        (status for status in (services.queries.status(p.id_number) for p in services.read_model.persons())
         if status and any(o["provisional"] for o in status["open_obligations"])), None)
    assert provisional is not None, "the simulated county has terms ending after 2026"
    page = client.get(f"/persons/{provisional['id_number']}").text
    assert 'class="provisional small"' in page and "暂定" in page
    assert "按法定节假日推算，调休安排未发布" in page and 'id="provisional-note"' in page

    moved = next((status for status in (services.queries.status(p.id_number) for p in services.read_model.persons())
                  if status and status["episode"]
                  and status["episode"]["current_region"] != status["episode"]["execution_region"]), None)
    assert moved is not None, "the simulated county has changes of 执行地"
    page = client.get(f"/persons/{moved['id_number']}").text
    # The code with its name (GB/T 2260), flagged when the code has been withdrawn since (520221 水城县, 2020).
    assert number(page, "execution-region").split()[0] == moved["episode"]["current_region"]
    assert number(page, "decided-region").split()[0] == moved["episode"]["execution_region"]
    assert "水城县（已撤销）" in page
    assert "原执行地（决定时）" in page


def test_pagination_and_filters(browser, county):
    services, _ = county
    client = browser("auditor")
    everything = services.queries.gaps(state="all")
    assert len(everything) > 50
    first, second = client.get("/gaps?state=all"), client.get("/gaps?state=all&page=2")
    assert 'rel="next"' in first.text and 'href="/gaps?page=2&amp;state=all"' in first.text
    assert [r["id"] for r in gap_rows(second.text)] == [g["id_number"] for g in everything[50:100]]
    assert "逾期履行" in second.text
    by_rule = gap_rows(client.get("/gaps?rule=R16_notice_reply_overdue&state=all").text)
    assert by_rule and {r["rule"] for r in by_rule} == {"R16_notice_reply_overdue"}
    police = gap_rows(client.get("/gaps?agency=police").text)
    assert police and {r["agency"] for r in police} == {"police"}
    county_rows = gap_rows(client.get("/gaps?region=520221").text)
    assert county_rows and {r["region"] for r in county_rows} == {"520221"}
    for bad in ("state=bogus", "rule=R99_none", "agency=army", "page=0", "region=52x"):
        assert client.get(f"/gaps?{bad}").status_code == 422, bad


# -- who sees what ----------------------------------------------------------------------------------------------------


def test_oversight_sees_only_its_region_and_gets_404_outside(browser, county, app):
    services, tokens = county
    client = browser("county")
    inside = open_gaps(services, "520221")[0]
    outside = open_gaps(services, "520222")[0]
    assert client.get(f"/persons/{inside['id_number']}").status_code == 200
    refused = client.get(f"/persons/{outside['id_number']}")
    assert refused.status_code == 404 and outside["name"] not in refused.text and "未找到" in refused.text
    assert client.get("/persons/520222198001011236").status_code == 404  # nobody
    rows = gap_rows(client.get("/gaps?state=all").text)
    assert rows and all(r["region"].startswith("520221") for r in rows)
    assert client.get("/gaps?region=520222").status_code == 403
    overview = client.get("/").text
    assert 'href="/gaps?region=520221"' in overview and 'href="/gaps?region=520222"' not in overview
    # the same gaps as the JSON API gives this principal
    with TestClient(app) as raw:
        listed = raw.get("/v1/gaps", params={"limit": 50},
                         headers={"Authorization": f"Bearer {tokens['county']}"}).json()["items"]
    assert [(r["id"], r["rule"]) for r in gap_rows(client.get("/gaps").text)] == \
        [(g["id_number"], g["rule"]) for g in listed]
    nobody_here = browser("elsewhere")
    assert gap_rows(nobody_here.get("/gaps").text) == []
    assert nobody_here.get(f"/persons/{inside['id_number']}").status_code == 404


def test_a_publisher_sees_only_the_gaps_its_agency_bears(browser, county, app):
    services, tokens = county
    client = browser("court")
    queue = client.get("/gaps?state=all")
    rows = gap_rows(queue.text)
    expected = services.queries.gaps(state="all", agency="court", agency_region="520222")
    assert rows and [(r["id"], r["rule"]) for r in rows] == [(g["id_number"], g["rule"]) for g in expected[:50]]
    assert {r["agency"] for r in rows} == {"court"}
    assert "/persons/" not in queue.text  # no person pages for publishers
    assert client.get("/gaps?agency=bureau").status_code == 403
    assert client.get(f"/persons/{rows[0]['id']}").status_code == 403
    overview = client.get("/")
    assert overview.status_code == 200 and "本机关承担的未履行缺口" in overview.text
    assert number(overview.text, "publisher-gaps") == str(len([g for g in expected if g["state"] == "open"]))
    assert "脱管漏管率" not in overview.text and "trend-chart" not in overview.text
    with TestClient(app) as raw:
        listed = raw.get("/v1/gaps", params={"state": "all", "limit": 50},
                         headers={"Authorization": f"Bearer {tokens['court']}"}).json()["items"]
    assert [(r["id"], r["rule"]) for r in rows] == [(g["id_number"], g["rule"]) for g in listed]


def test_an_administrator_sees_no_personal_data(browser, county):
    services, _ = county
    client = browser("admin")
    overview = client.get("/")
    assert overview.status_code == 200 and "管理员角色不能查看个人数据" in overview.text
    gap = open_gaps(services)[0]
    assert gap["name"] not in overview.text and gap["id_number"] not in overview.text
    assert client.get("/gaps").status_code == 403
    person = client.get(f"/persons/{gap['id_number']}")
    assert person.status_code == 403 and gap["name"] not in person.text


# -- the past, the language, the cache --------------------------------------------------------------------------------


def test_as_of_replays_the_past(browser, county):
    services, _ = county
    client = browser("city")
    now, past = client.get("/").text, client.get("/?as_of=2025-06-30").text
    stats_then = services.queries.stats(region="5202", as_of=dt.datetime(2025, 7, 1, tzinfo=CST))
    assert number(past, "in-register") == str(sum(entry["in_register"] for entry in stats_then))
    assert number(past, "in-register") != number(now, "in-register")
    assert "正在回看过去：截至 2025-06-30 日终的情况" in past and 'value="2025-06-30"' in past
    assert 'href="/gaps?as_of=2025-06-30"' in past  # links keep the date

    gap = next(g for g in open_gaps(services, "5202") if g["rule"] in LOST_SUPERVISION_RULES)
    due = dt.datetime.fromisoformat(gap["due_at"]).astimezone(CST).date()
    before = (due - dt.timedelta(days=2)).isoformat()
    today_rows = gap_rows(client.get(f"/gaps?rule={gap['rule']}").text)
    past_rows = gap_rows(client.get(f"/gaps?rule={gap['rule']}&as_of={before}").text)
    assert gap["id_number"] in {r["id"] for r in today_rows}
    assert gap["id_number"] not in {r["id"] for r in past_rows}
    person_now = client.get(f"/persons/{gap['id_number']}").text
    person_then = client.get(f"/persons/{gap['id_number']}?as_of={before}").text
    assert f'class="bar bar-open" data-rule="{gap["rule"]}"' in person_now
    assert f'class="bar bar-open" data-rule="{gap["rule"]}"' not in person_then
    assert f'class="bar bar-upcoming" data-rule="{gap["rule"]}"' in person_then

    assert client.get("/?as_of=2030-01-01").status_code == 200  # the future: today, with a notice
    assert "不能查看未来日期" in client.get("/?as_of=2030-01-01").text
    assert client.get("/?as_of=yesterday").status_code == 422
    assert client.get(f"/persons/{gap['id_number']}?as_of=2000-01-01").status_code == 404  # not on record yet


def test_the_language_switch_is_remembered(browser, county):
    client = browser("city")
    english = client.get("/?lang=en")
    assert "Lost-supervision rate" in english.text and "Overview" in english.text and 'lang="en"' in english.text
    assert "handoff_lang=en" in english.headers["set-cookie"]
    again = client.get("/gaps")
    assert "Gap queue" in again.text and "Obligated agency" in again.text and "open gap" in again.text
    assert 'href="/gaps?lang=zh"' in again.text
    chinese = client.get("/gaps?lang=zh")
    assert "衔接缺口队列" in chinese.text and 'lang="zh-CN"' in chinese.text
    assert "衔接缺口队列" in client.get("/gaps").text
    assert "Access token" in browser().get("/login?lang=en").text


def test_the_trend_is_cached_until_the_store_changes(county):
    services, tokens = county
    dashboard = Dashboard(services)
    app = api.create_app(services, dashboard=dashboard.router())
    with TestClient(app) as client:
        client.post("/login", data={"token": tokens["auditor"]})
        first = client.get("/")
        assert dashboard.trends.computed == 12
        gap = open_gaps(services)[0]
        client.get(f"/persons/{gap['id_number']}")  # writes an access record: no figure changes
        second = client.get("/")
        assert dashboard.trends.computed == 12
        assert re.findall(r'class="trend-point"[^>]*><title>([^<]*)', first.text) == \
            re.findall(r'class="trend-point"[^>]*><title>([^<]*)', second.text)
        client.get("/?as_of=2026-05-15")  # one more month end (2025-05), the rest from the cache
        assert dashboard.trends.computed == 13
        # Any new event moves the head and the months are computed again (a person far away: the other tests'
        # figures stay as they were).
        result = services.ingestor.ingest([decision(id_number(4242, "630102"), region="630102")], Source("late"))
        assert result.accepted == 1
        client.get("/")
        assert dashboard.trends.computed == 13 + 12


def test_the_timeline_picture_geometry():
    """Open gaps run to the as-of line, met bars end at their fulfilment, the future is cut at the right edge."""
    as_of = "2026-06-30T18:00:00+08:00"
    timeline = {
        "as_of": as_of, "lanes": ["court", "procuratorate", "police", "prison", "bureau"],
        "term": {"start": "2026-06-01", "end": "2028-05-31", "category": "probation"},
        "events": [{"event_type": "decision_effective", "lane": "court", "occurred_at": "2026-06-01T10:00:00+08:00",
                    "agency": {"id": "FY-520222"}, "retracted": False}],
        "obligations": [
            {"rule": "R01_bureau_not_notified", "lane": "court", "from": "2026-06-01T10:00:00+08:00",
             "due_at": "2026-06-07T00:00:00+08:00", "fulfilled_at": "2026-06-03T10:00:00+08:00", "state": "met",
             "triggered_by": "e1"},
            {"rule": "R04_not_reported", "lane": "bureau", "from": "2026-06-01T10:00:00+08:00",
             "due_at": "2026-06-12T00:00:00+08:00", "fulfilled_at": None, "state": "open", "triggered_by": "e1"},
            {"rule": "R15_not_discharged", "lane": "bureau", "from": "2026-06-01T10:00:00+08:00",
             "due_at": "2028-06-02T00:00:00+08:00", "fulfilled_at": None, "state": "upcoming", "triggered_by": "e1"},
        ],
    }
    picture = timeline_picture(timeline, "zh", lambda rule: rule)
    court, bureau = picture["lanes"][0], picture["lanes"][4]
    met = court["bars"][0]
    opened, upcoming = sorted(bureau["bars"], key=lambda b: b["rule"])
    assert [lane["label"] for lane in picture["lanes"]] == ["法院", "检察院", "公安", "监狱", "司法局"]
    assert picture["left"] <= met["x1"] < met["x2"] < met["xd"]  # fulfilled before it was due
    assert opened["x2"] == picture["as_of_x"] and opened["x1"] < opened["xd"] < opened["x2"]
    assert upcoming["clipped"] and upcoming["x2"] == picture["right"]
    assert picture["term"]["clipped"] and picture["as_of_label"] == "2026-06-30"
    assert picture["ticks"] and all(picture["left"] <= tick["x"] <= picture["right"] for tick in picture["ticks"])
    assert court["marks"][0]["label"] == "判决裁定生效"
