"""The dashboard end to end in a real browser: Debian's Chromium, headless, driven by Playwright, against the real app
served by uvicorn on a loopback port over a store loaded with `handoff simulate` and `handoff publish --import`.

Screenshots of every step go to test-artifacts/browser/. No browser is ever downloaded (`playwright install` is not
used): install Debian's package (`apt-get install -y chromium`). Without it the test fails, unless
HANDOFF_SKIP_BROWSER=1.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adapters.config import Settings

pytestmark = pytest.mark.filterwarnings("ignore::domain.calendar.ProvisionalCalendarWarning")

CHROMIUM = os.environ.get("HANDOFF_CHROMIUM", "/usr/bin/chromium")  # Debian's package
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HANDOFF = str(Path(sys.executable).parent / "handoff")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CST = dt.timezone(dt.timedelta(hours=8))
# The county is simulated up to this moment and the app's clock stands there (as in test_dashboard.py): what the
# walk meets (the gaps, the dates it goes back to) is the same whatever the machine's date.
UNTIL = dt.datetime(2026, 6, 30, 18, 0, tzinfo=CST)
# Rules counted in days (the day before the due date is after the trigger) that the simulator leaves open.
DAY_RULES = ("R04_not_reported", "R05_not_transferred", "R08_transfer_not_received", "R13_missing_unresolved",
             "R01_bureau_not_notified", "R02_documents_not_delivered", "R03_receipt_not_returned",
             "R07_transfer_file_not_sent", "R16_notice_reply_overdue", "R15_not_discharged")


def chromium_or_fail() -> str:
    if os.environ.get("HANDOFF_SKIP_BROWSER") == "1":
        pytest.skip("HANDOFF_SKIP_BROWSER=1")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; CI installs it), "
                    "or set HANDOFF_SKIP_BROWSER=1 to skip the browser test locally")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[dev]' (never `playwright install`: "
                    "the test drives Debian's chromium)")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def handoff(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([HANDOFF, *args], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real app on a free loopback port, over a simulated county loaded by the CLI."""
    import uvicorn

    from services.entrypoints.http.api import create_app
    from services.bootstrap import bootstrap
    from services.entrypoints.http.dashboard import create_router

    work = tmp_path_factory.mktemp("browser")
    env = {**os.environ, "HANDOFF_DATABASE_URL": f"sqlite:///{work}/handoff.sqlite3", "PYTHONWARNINGS": "ignore"}
    env.pop("HANDOFF_CIPHER_KEY", None)
    handoff("simulate", "--persons", "300", "--counties", "520222,520221", "--seed", "11", "--failure-rate", "0.25",
            "--until", UNTIL.isoformat(), "--out", str(work / "county.jsonl"), env=env)
    published = json.loads(handoff("publish", "--import", str(work / "county.jsonl"), env=env))
    assert published["accepted"] > 1000 and published["rejected"] == 0
    assert json.loads(handoff("project", "--once", env=env))["events_behind"] == 0  # as `handoff serve` would
    token = json.loads(handoff("principal", "add", "--role", "oversight", "--name", "市局监督员", "--region", "5202",
                               env=env))["token"]

    services = bootstrap(Settings(database_url=env["HANDOFF_DATABASE_URL"]), clock=lambda: UNTIL)
    app = create_app(services)
    # create_app includes the dashboard
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield {"base": f"http://127.0.0.1:{port}", "token": token, "services": services}
    uv.should_exit = True
    thread.join(10)
    services.close()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def logged_in(browser, base: str, path: str, token: str):
    """A new browser context (a Chinese desk in Shanghai) and its page, logged in with `token` on the way to `path`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai")
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(base + path)
    page.fill("#token", token)
    page.click("button[type=submit] >> text=登录")
    page.wait_for_url(lambda url: path in url)
    return context, page


def test_oversight_walks_from_the_overview_to_a_gap_and_back_in_time(request):
    chromium_or_fail()  # in the test itself: a missing browser is a failed test, not a setup error
    server, browser = request.getfixturevalue("server"), request.getfixturevalue("browser")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    base = server["base"]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai")
    page = context.new_page()
    page.set_default_timeout(20_000)

    def shot(name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    # 1. Not logged in: the login form. A wrong token is refused with a clear message, the right one logs in.
    page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    page.fill("#token", "not-a-token")
    page.click("button[type=submit] >> text=登录")
    assert "令牌无效或已被撤销" in page.inner_text("#login-error")
    shot("01-login-refused")
    page.fill("#token", server["token"])
    page.click("button[type=submit] >> text=登录")
    page.wait_for_url(base + "/")
    cookie = next(c for c in context.cookies() if c["name"] == "handoff_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != server["token"]

    # 2. The overview: the figures and the trend chart.
    assert page.locator("#trend-chart").is_visible()
    assert page.locator("#trend-chart .trend-point").count() >= 12
    assert "‰" in page.inner_text("#rate")
    assert "脱管漏管率月度趋势" in page.inner_text("main")
    shot("02-overview")

    # 3. The gap queue, most overdue first.
    page.click("nav >> text=衔接缺口")
    page.wait_for_url(base + "/gaps")
    rows = page.locator("tr.gap-row")
    assert rows.count() > 5
    dues = [rows.nth(i).get_attribute("data-due") for i in range(rows.count())]
    assert dues == sorted(dues)
    shot("03-gap-queue")

    # 4. A gap's person: the timeline with its red gap bar.
    row = next(rows.nth(i) for i in range(rows.count()) if rows.nth(i).get_attribute("data-rule") in DAY_RULES)
    rule, id_number, due_at = (row.get_attribute(f"data-{name}") for name in ("rule", "id", "due"))
    row.locator("a.person-link").click()
    page.wait_for_url(f"{base}/persons/{id_number}")
    assert page.locator("svg#timeline").is_visible()
    red = page.locator(f'svg#timeline g.bar-open[data-rule="{rule}"] rect.overdue')
    assert red.count() >= 1 and red.first.get_attribute("fill") == "#c62828"
    assert red.first.bounding_box()["width"] > 2
    status_now = page.inner_text("#person-status")
    assert page.locator(f'#person-gaps tr.person-gap[data-rule="{rule}"][data-state="open"]').count() >= 1
    shot("04-person-timeline")

    # 5. Back in time: two days before the due date the obligation was not yet overdue.
    before = (dt.datetime.fromisoformat(due_at).astimezone(CST).date() - dt.timedelta(days=2)).isoformat()
    page.fill("#as_of", before)
    page.click(".asof button[type=submit]")
    page.wait_for_url(f"{base}/persons/{id_number}?as_of={before}")
    assert page.locator(f'svg#timeline g.bar-open[data-rule="{rule}"]').count() == 0
    assert page.locator(f'svg#timeline g.bar-upcoming[data-rule="{rule}"]').count() >= 1
    assert page.locator(f'#person-gaps tr.person-gap[data-rule="{rule}"][data-state="open"]').count() == 0
    assert before in page.inner_text(".asof")
    print(f"{rule} of {id_number}: status now {status_now}, on {before} {page.inner_text('#person-status')}")
    shot("05-person-in-the-past")

    # 6. The gap queue on that date (the link keeps the date): that gap is not there yet.
    page.click("nav >> text=衔接缺口")
    page.wait_for_url(f"{base}/gaps?as_of={before}")
    assert page.locator(f'tr.gap-row[data-id="{id_number}"][data-rule="{rule}"]').count() == 0
    shot("06-gap-queue-in-the-past")

    # 7. In English, remembered.
    page.click("text=English")
    assert "Gap queue" in page.inner_text("main h1")
    page.click("nav >> text=Overview")
    assert "Lost-supervision rate by month" in page.inner_text("main")
    shot("07-overview-in-english-in-the-past")

    page.click("header >> text=Log out")
    page.wait_for_url(f"{base}/login?bye=1")
    page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    context.close()
    assert len(list(ARTIFACTS.glob("*.png"))) == 7


def test_an_officer_works_a_lead_from_search_to_a_suggestion_and_exports_the_register(request):
    """线索台账: an officer logs in, finds a lead by the person's name, checks it, confirms it, issues a 检察建议, and
    the lead shows so in the exported Excel workbook (read back with openpyxl)."""
    import io

    import openpyxl

    from services.leads import LeadQuery

    chromium_or_fail()
    server, browser = request.getfixturevalue("server"), request.getfixturevalue("browser")
    shots = ARTIFACTS / "leads"  # beside the walk's screenshots, which that test counts
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    services, base = server["services"], server["base"]
    _, token = services.principals.add("oversight", "王检察官", kind="procuratorate", agency_id="JCY-520222",
                                       region="520222")
    [target] = services.leads.page(LeadQuery(state="new", rule="R04_not_reported", limit=1),
                                   {"region": "520222"})["items"]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    page.goto(base + "/leads")
    page.fill("#token", token)
    page.click("button[type=submit] >> text=登录")
    page.wait_for_url(base + "/leads")
    assert "线索台账" in page.inner_text("main h1")
    assert page.locator('.tabs a[data-state="new"] .count').inner_text().strip() != "0"
    shot("11-lead-register")

    # Found by the name of the 社区矫正对象.
    page.fill("#lead-search", target["name"])
    page.click("#lead-search-button")
    page.wait_for_url(lambda url: "q=" in url)
    row = page.locator(f'tr.lead-row[data-lead="{target["lead_id"]}"]')
    assert row.count() == 1 and row.get_attribute("data-state") == "new"
    assert all(r == target["id_number"] for r in page.locator("tr.lead-row").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"))
    shot("12-lead-found-by-name")
    row.locator("a.lead-link").click()
    page.wait_for_url(f"{base}/leads/{target['lead_id']}")
    assert page.locator("svg#timeline").is_visible()

    def act(action: str, **fields: str) -> None:
        form = page.locator(f'form.action-form[data-action="{action}"]')
        for name, value in fields.items():
            field = form.locator(f'[name="{name}"]')
            if field.evaluate("e => e.tagName") == "SELECT":
                field.select_option(value)
            else:
                field.fill(value)
        form.locator("button[type=submit]").click()
        page.wait_for_url(f"{base}/leads/{target['lead_id']}?done={action}")

    act("start_check")
    assert page.locator("#lead-state").get_attribute("data-state") == "checking"
    act("confirm", note="电话核实：未按时报到")
    assert page.locator("#lead-state").get_attribute("data-state") == "confirmed"
    shot("13-lead-confirmed")
    act("issue_notice", notice_kind="suggestion", document_no="盘检刑执建〔2026〕3号", addressee_id="SFJ-520222",
        finding="社区矫正对象逾期未报到，司法局未及时查找")
    assert page.locator("#lead-state").get_attribute("data-state") == "notice_issued"
    assert "检察建议" in page.inner_text("#lead-notice")
    assert [page.locator("#lead-history tbody tr").nth(i).get_attribute("data-action")
            for i in range(page.locator("#lead-history tbody tr").count())] == \
        ["start_check", "confirm", "issue_notice"]
    shot("14-suggestion-issued")

    page.click("nav >> text=线索台账")
    page.wait_for_url(base + "/leads")
    with page.expect_download() as download:
        page.click("#export-xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(open(download.value.path(), "rb").read())).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0].startswith("线索台账 截至 ")
    [exported] = [r for r in rows if r[0] == target["lead_id"]]
    assert exported[1] == "已制发" and exported[4] == target["name"]
    shot("15-register-after")
    context.close()
    assert len(list(shots.glob("*.png"))) == 5


def test_the_monthly_scorecard_reads_and_prints(request):
    """月度通报: an officer picks a month, reads each agency's on-time share and each region's rank, and the printed
    page keeps the title and the tables without the form."""
    chromium_or_fail()
    server, browser = request.getfixturevalue("server"), request.getfixturevalue("browser")
    shots = ARTIFACTS / "scorecard"
    shots.mkdir(parents=True, exist_ok=True)
    services, base = server["services"], server["base"]
    _, token = services.principals.add("oversight", "市检察院 刘检察官", region="5202")
    month = f"{UNTIL.year:04d}-{UNTIL.month - 1:02d}" if UNTIL.month > 1 else f"{UNTIL.year - 1:04d}-12"
    expected = services.scorecards.month(month, "5202")
    context, page = logged_in(browser, base, "/scorecard", token)
    page.select_option("select[name=month]", month)
    page.click("form.filters button.primary")
    page.wait_for_url(lambda url: f"month={month}" in url)
    assert "月度通报" in page.inner_text("main h1") and month in page.inner_text("main h1")
    busiest = max(expected["agencies"], key=lambda a: a["due"])
    row = page.locator(f'#scorecard-agencies tr.agency-row[data-agency="{busiest["agency_id"]}"]')
    assert row.count() == 1 and f'{busiest["on_time_share"]:.1f}%' in row.inner_text()
    first = expected["regions"][0]
    assert page.locator("#scorecard-regions tr.region-row").first.get_attribute("data-region") == first["region"]
    page.screenshot(path=str(shots / "21-scorecard.png"), full_page=True)
    page.emulate_media(media="print")
    assert not page.locator("form.filters").is_visible() and page.locator("#scorecard-regions").is_visible()
    assert page.locator("p.print-only").is_visible()
    page.screenshot(path=str(shots / "22-scorecard-printed.png"), full_page=True)
    context.close()


def test_an_officer_links_a_probable_match_in_the_identity_queue(request):
    """疑似同一人: a person of the county is published again by another court under a passport with the same name
    and birth date; the officer finds the pair, keeps the resident ID and links them, and the queue empties."""
    chromium_or_fail()
    server, browser = request.getfixturevalue("server"), request.getfixturevalue("browser")
    shots = ARTIFACTS / "identity"
    shots.mkdir(parents=True, exist_ok=True)
    services, base = server["services"], server["base"]
    from services.ingest import Source

    gap = services.queries.gaps(as_of=UNTIL, region="520222", limit=1)[0]
    someone = type("Someone", (), {"id_number": gap["id_number"], "name": gap["name"]})
    birth = f"{someone.id_number[6:10]}-{someone.id_number[10:12]}-{someone.id_number[12:14]}"
    foreign = {"event_id": "2f7b2c1e-9a3d-4c5e-8f10-7a6b5c4d3e21", "event_type": "subject_reported",
               "schema_version": 2, "agency": {"kind": "bureau", "id": "SFJ-520221", "region": "520221"},
               "person": {"id_type": "passport", "id_number": "M12345678", "nationality": "KOR",
                          "name": someone.name, "birth_date": birth},
               "occurred_at": (UNTIL - dt.timedelta(days=3)).isoformat(), "payload": {"region": "520221"}}
    assert services.ingestor.ingest([foreign], Source("test")).rejected == 0
    services.projection.catch_up()
    _, token = services.principals.add("oversight", "市检察院 王检察官", region="5202", kind="procuratorate",
                                       agency_id="JCY-520200")
    context, page = logged_in(browser, base, "/identity", token)
    group = page.locator("section.candidate").filter(has_text="M12345678")
    assert group.count() == 1 and "护照" in group.inner_text() and "大韩民国" in group.inner_text()
    assert someone.id_number in group.inner_text()
    page.screenshot(path=str(shots / "31-identity-queue.png"), full_page=True)
    link = group.locator('form[data-action="link"]')
    link.locator("select[name=keep]").select_option(someone.id_number)
    link.locator("input[name=reason]").fill("出生日期与姓名一致，经向法院核实为同一人")
    link.locator("button.primary").click()
    page.wait_for_selector("#identity-message")
    assert "已关联" in page.inner_text("#identity-message")
    assert page.locator("section.candidate").filter(has_text="M12345678").count() == 0
    page.screenshot(path=str(shots / "32-identity-linked.png"), full_page=True)
    services.projection.catch_up()
    status = services.queries.status(someone.id_number, as_of=UNTIL)
    assert "passport:KOR:M12345678" in status["linked_keys"]
    page.goto(base + "/persons/passport:KOR:M12345678")  # the passport's key opens the one person
    assert someone.id_number in page.inner_text("main h1") and "M12345678" in page.inner_text("#linked-keys")
    page.screenshot(path=str(shots / "33-person-linked.png"), full_page=True)
    context.close()
