"""The lead register (线索台账) over the API, on a real store: every transition, refusals (409), a supervisor's approval,
escalation to the region above, scope (404 outside it, 403 for publishers), a notice that becomes an event R16
watches, its reply, and the register as it stood on a past date. The clock is the test's own."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from adapters.config import Settings
from services.bootstrap import bootstrap
from services.entrypoints.http.api import create_app
from tests.builders import CST, decision, envelope, id_number
from tests.clock import Clock

pytestmark = pytest.mark.filterwarnings("ignore::domain.calendar.ProvisionalCalendarWarning")

START = dt.datetime(2024, 6, 3, 10, 0, tzinfo=CST)  # three months after the decisions of tests.builders


@pytest.fixture
def clock():
    return Clock(START)


@pytest.fixture
def services(database_url, clock):
    services = bootstrap(Settings(database_url=database_url), clock=clock)
    yield services
    services.close()


@pytest.fixture
def app(services):
    with TestClient(create_app(services)) as client:
        yield client


@pytest.fixture
def people(services):
    add = services.principals.add
    tokens = {
        "court": add("publisher", "盘州市人民法院", kind="court", agency_id="FY-520222", region="520222")[1],
        "bureau": add("publisher", "盘州市司法局", kind="bureau", agency_id="SFJ-520222", region="520222")[1],
        "officer": add("oversight", "王检察官", kind="procuratorate", agency_id="JCY-520222", region="520222")[1],
        "section": add("oversight", "社区矫正科 李科员", region="520222")[1],
        "neighbour": add("oversight", "邻县检察官", kind="procuratorate", agency_id="JCY-520221",
                         region="520221")[1],
        "supervisor": add("oversight", "市检察院 赵主任", kind="procuratorate", agency_id="JCY-520200", region="5202",
                          supervisor=True)[1],
        "auditor": add("auditor", "审计员")[1],
    }
    return {who: {"Authorization": f"Bearer {token}"} for who, token in tokens.items()}


@pytest.fixture
def published(app, people):
    """Two persons decided on 2024-03-01 whom nobody received: R01, R02 and R04 gaps and more by START."""
    for n in (1, 2):
        response = app.post("/v1/events", json=decision(id_number(n)), headers=people["court"])
        assert response.status_code == 200 and response.json()["accepted"] == 1


def leads(app, who, **params):
    response = app.get("/v1/leads", params=params, headers=who)
    assert response.status_code == 200, response.text
    return response.json()


def act(app, who, lead, action, status=200, **fields):
    response = app.post(f"/v1/leads/{lead}/actions", json={"action": action, **fields}, headers=who)
    assert response.status_code == status, response.text
    return response.json()


def lead_of(app, who, person: int, rule_code: str) -> str:
    found = leads(app, who, q=id_number(person), limit=100)["items"]
    [lead] = [item["lead_id"] for item in found if item["rule"].startswith(rule_code)]
    return lead


def test_every_gap_is_a_new_lead_with_a_stable_id_and_a_total(app, people, published, services):
    register = leads(app, people["officer"], limit=2)
    assert register["total"] >= 6 and len(register["items"]) == 2 and register["next_offset"] == 2
    gaps = app.get("/v1/gaps", params={"state": "all", "limit": 1000}, headers=people["auditor"]).json()["items"]
    everything = leads(app, people["officer"], limit=1000)
    assert everything["total"] == len(gaps) == len(everything["items"])
    assert {item["state"] for item in everything["items"]} == {"new"}
    assert {(i["rule"], i["id_number"]) for i in everything["items"]} == {(g["rule"], g["id_number"]) for g in gaps}
    lead = everything["items"][0]["lead_id"]
    services.projection.rebuild()
    assert leads(app, people["officer"], limit=1)["items"][0]["lead_id"] == lead  # the same after a rebuild


def test_the_path_from_new_to_closed_with_a_notice_and_its_reply(app, people, published, services, clock):
    officer = people["officer"]
    lead = lead_of(app, officer, 1, "R04")
    assert act(app, officer, lead, "confirm", status=409)["error"]["code"] == "invalid_transition"
    assert act(app, officer, lead, "start_check")["state"] == "checking"
    assert act(app, officer, lead, "confirm", note="电话核实：未报到")["state"] == "confirmed"
    assert act(app, officer, lead, "confirm", status=409)["error"]["code"] == "invalid_transition"
    assert act(app, officer, lead, "follow_up", status=409, note="x")["error"]["code"] == "invalid_transition"
    clock.now += dt.timedelta(hours=2)
    issued = act(app, officer, lead, "issue_notice", notice_kind="suggestion", document_no="盘检建〔2024〕7号",
                 addressed_to={"kind": "bureau", "id": "SFJ-520222"}, finding="社区矫正对象逾期未报到")
    assert issued["state"] == "notice_issued"
    notice_event = issued["notice"]["event_id"]
    # The notice is an event of the person's, published as the officer's procuratorate, and R16 now watches it.
    history = app.get(f"/v1/persons/{id_number(1)}/history", headers=officer).json()["items"]
    [notice] = [e for e in history if e["event_type"] == "procuratorial_notice_issued"]
    assert notice["event_id"] == notice_event and notice["publisher"]["id"] == "JCY-520222"
    status = app.get(f"/v1/persons/{id_number(1)}", headers=officer).json()
    assert [o["rule"] for o in status["open_obligations"] if o["triggered_by"] == notice_event] == \
        ["R16_notice_reply_overdue"]
    assert act(app, officer, lead, "follow_up", status=409, note="x")["error"]["code"] == "invalid_transition"
    # The addressee replies: the lead moves to replied by itself.
    clock.now += dt.timedelta(days=3)
    reply = envelope("notice_replied", {"notice_event_id": notice_event, "adopted": True, "explanation": "已整改"},
                     kind="bureau", person=id_number(1), occurred_at=clock.now)
    assert app.post("/v1/events", json=reply, headers=people["bureau"]).json()["accepted"] == 1
    assert app.get(f"/v1/leads/{lead}", headers=officer).json()["state"] == "replied"
    assert [i["lead_id"] for i in leads(app, officer, state="replied")["items"]] == [lead]
    assert act(app, officer, lead, "follow_up", note="回访：已报到并纳入监管")["state"] == "followed_up"
    closed = act(app, officer, lead, "close")
    assert closed["state"] == "closed"
    assert [h["action"] for h in closed["history"]] == ["start_check", "confirm", "issue_notice", "follow_up",
                                                        "close"]
    assert all(h["by_name"] == "王检察官" for h in closed["history"])
    assert act(app, officer, lead, "assign", status=409, assignee="x")["error"]["code"] == "invalid_transition"


def test_dismissal_needs_a_reason_and_closes(app, people, published):
    officer = people["officer"]
    lead = lead_of(app, officer, 2, "R01")
    assert act(app, officer, lead, "dismiss", status=422)["error"]["code"] == "invalid_action"
    assert act(app, officer, lead, "dismiss", status=422, reason="other")["error"]["code"] == "invalid_action"
    dismissed = act(app, officer, lead, "dismiss", reason="fulfilled_unrecorded", note="法院已送达，未录入")
    assert dismissed["state"] == "dismissed" and dismissed["dismissal"]["reason_label"] == "已履行未录入"
    assert act(app, officer, lead, "close")["state"] == "closed"
    assert leads(app, officer, state="closed")["total"] == 1


def test_a_short_snooze_ends_by_itself_and_a_long_one_needs_a_supervisor(app, people, published, clock):
    officer, supervisor = people["officer"], people["supervisor"]
    lead = lead_of(app, officer, 1, "R02")
    snoozed = act(app, officer, lead, "snooze", until="2024-06-13", reason="等待法院补送文书")
    assert snoozed["state"] == "snoozed" and snoozed["snoozed_until"] == "2024-06-13"
    assert [i["lead_id"] for i in leads(app, officer, state="snoozed")["items"]] == [lead]
    assert lead not in [i["lead_id"] for i in leads(app, officer, state="new", limit=1000)["items"]]
    clock.now = dt.datetime(2024, 6, 13, 9, 0, tzinfo=CST)  # the snooze is over: back to new
    assert app.get(f"/v1/leads/{lead}", headers=officer).json()["state"] == "new"
    assert lead in [i["lead_id"] for i in leads(app, officer, state="new", limit=1000)["items"]]

    long_one = act(app, officer, lead, "snooze", until="2024-08-30", reason="对象住院治疗")
    assert long_one["state"] == "new" and long_one["pending"]["action"] == "snooze"
    assert act(app, officer, lead, "approve", status=403)["error"]["code"] == "needs_supervisor"
    approved = act(app, supervisor, lead, "approve", note="同意")
    assert approved["state"] == "snoozed" and approved["pending"] is None
    assert approved["snoozed_until"] == "2024-08-30"


def test_escalation_goes_to_the_region_above_with_a_supervisors_approval(app, people, published):
    officer, supervisor = people["officer"], people["supervisor"]
    lead = lead_of(app, officer, 1, "R01")
    assert act(app, officer, lead, "escalate", status=422)["error"]["code"] == "invalid_action"  # needs a note
    requested = act(app, officer, lead, "escalate", note="法院长期不送达，提请市院督办")
    assert requested["state"] == "new" and requested["pending"]["action"] == "escalate"
    rejected = act(app, supervisor, lead, "reject", note="先由县院制发检察建议")
    assert rejected["pending"] is None and rejected["state"] == "new"
    act(app, officer, lead, "escalate", note="再次提请")
    escalated = act(app, supervisor, lead, "approve")
    assert escalated["state"] == "escalated" and escalated["escalated_to"] == "5202"
    assert [i["lead_id"] for i in leads(app, supervisor, state="escalated")["items"]] == [lead]
    # The city's oversight takes it up; escalating once more goes to the province.
    assert act(app, supervisor, lead, "start_check")["state"] == "checking"
    again = act(app, supervisor, lead, "escalate", note="报省院")
    assert again["state"] == "escalated" and again["escalated_to"] == "52"


def test_assignment_to_a_named_officer_in_scope(app, people, published, services):
    officer = people["officer"]
    lead = lead_of(app, officer, 2, "R04")
    [section] = [p for p in services.principals.all() if p.name.startswith("社区矫正科")]
    [neighbour] = [p for p in services.principals.all() if p.name == "邻县检察官"]
    refused = act(app, officer, lead, "assign", status=422, assignee=str(neighbour.id))
    assert refused["error"]["code"] == "invalid_action"
    assigned = act(app, officer, lead, "assign", assignee=str(section.id))
    assert assigned["assignee"] == {"id": str(section.id), "name": "社区矫正科 李科员"}
    assert assigned["state"] == "new"
    mine = leads(app, people["section"], assignee=str(section.id))
    assert [i["lead_id"] for i in mine["items"]] == [lead] and mine["items"][0]["assignee"]["id"] == str(section.id)


def test_scope_404_outside_it_403_for_publishers_and_auditors_only_read(app, people, published):
    lead = lead_of(app, people["officer"], 1, "R04")
    assert app.get(f"/v1/leads/{lead}", headers=people["neighbour"]).status_code == 404
    assert act(app, people["neighbour"], lead, "start_check", status=404)["error"]["code"] == "not_found"
    assert leads(app, people["neighbour"])["total"] == 0
    assert app.get("/v1/leads", headers=people["court"]).status_code == 403
    assert app.get(f"/v1/leads/{lead}", headers=people["court"]).status_code == 403
    assert act(app, people["court"], lead, "start_check", status=403)["error"]["code"] == "forbidden"
    assert app.get(f"/v1/leads/{lead}", headers=people["auditor"]).status_code == 200
    assert act(app, people["auditor"], lead, "start_check", status=403)["error"]["code"] == "forbidden"
    assert app.get("/v1/leads/R04-not-a-lead", headers=people["officer"]).status_code == 404
    assert act(app, people["officer"], lead, "fly", status=422)["error"]["code"] == "invalid_request"
    assert act(app, people["officer"], lead, "start_check", status=422, surprise=1)["error"]["code"] == \
        "invalid_request"


def test_a_notice_needs_a_procuratorates_officer(app, people, published):
    section = people["section"]
    lead = lead_of(app, section, 2, "R02")
    act(app, section, lead, "start_check")
    act(app, section, lead, "confirm")
    refused = act(app, section, lead, "issue_notice", status=403, notice_kind="correction", document_no="x")
    assert refused["error"]["code"] == "needs_procuratorate"


def test_a_gap_met_late_is_marked_and_closes_in_one_step(app, people, published, clock):
    officer = people["officer"]
    lead = lead_of(app, officer, 2, "R04")
    reported = envelope("subject_reported", {"region": "520222"}, kind="bureau", person=id_number(2),
                        occurred_at=clock.now - dt.timedelta(days=1))
    assert app.post("/v1/events", json=reported, headers=people["bureau"]).json()["accepted"] == 1
    shown = app.get(f"/v1/leads/{lead}", headers=officer).json()
    assert shown["self_fulfilled"] is True and shown["state"] == "new" and shown["gap"]["state"] == "late"
    closed = act(app, officer, lead, "close", note="已自行报到")
    assert closed["state"] == "closed" and closed["history"][-1]["fields"]["self_fulfilled"] is True


def test_the_register_as_it_stood_on_a_past_date(app, people, published, clock):
    officer = people["officer"]
    lead = lead_of(app, officer, 1, "R04")
    act(app, officer, lead, "start_check")
    clock.now += dt.timedelta(days=2)
    act(app, officer, lead, "start_check", status=409)
    act(app, officer, lead, "confirm")
    clock.now += dt.timedelta(days=2)
    day_one = (START + dt.timedelta(days=1)).date().isoformat()
    then = leads(app, officer, as_of=day_one, q=id_number(1), limit=100)["items"]
    assert [i["state"] for i in then if i["lead_id"] == lead] == ["checking"]
    assert [i["lead_id"] for i in leads(app, officer, as_of=day_one, state="checking")["items"]] == [lead]
    assert leads(app, officer, state="checking")["total"] == 0
    past = app.get(f"/v1/leads/{lead}", params={"as_of": day_one}, headers=officer).json()
    assert past["state"] == "checking" and [h["action"] for h in past["history"]] == ["start_check"]
    before = (START - dt.timedelta(days=1)).date().isoformat()
    assert [i["state"] for i in leads(app, officer, as_of=before, q=id_number(1))["items"] if i["lead_id"] == lead] \
        == ["new"]


def test_search_by_name_and_filters(app, people, published):
    officer = people["officer"]
    named = leads(app, officer, q="张 三")["items"]  # compared without spaces
    assert named and {i["name"] for i in named} == {"张三"}
    assert leads(app, officer, q="李四")["total"] == 0
    # By the decision's number (案号), typed with full-width brackets.
    case_number = f"（2024）黔0222刑初{id_number(1)[-4:]}号"
    assert {i["id_number"] for i in leads(app, officer, q=case_number)["items"]} == {id_number(1)}
    by_rule = leads(app, officer, rule="R04_not_reported")
    assert by_rule["total"] == 2 and {i["rule"] for i in by_rule["items"]} == {"R04_not_reported"}
    assert app.get("/v1/leads", params={"state": "nonsense"}, headers=officer).status_code == 422
    assert app.get("/v1/leads", params={"region": "520221"}, headers=officer).status_code == 403
    ordered = leads(app, officer, sort="-due", limit=1000)["items"]
    assert [i["due_at"] for i in ordered] == sorted((i["due_at"] for i in ordered), reverse=True)


def test_two_officers_acting_at_once_one_is_refused_with_409(app, people, published, services, monkeypatch):
    """The second officer's action was decided on the lead as it stood before the first's was stored: refused with
    a 409 that says to reload, never a 500."""
    officer = people["officer"]
    lead = lead_of(app, officer, 2, "R02")
    act(app, officer, lead, "start_check")
    read = services.store.get_aggregate
    raced = []

    def read_then_another_officer_acts(stream_id):
        found = read(stream_id)
        if not raced and getattr(found, "lead_id", None) == lead:
            raced.append(True)
            other = read(stream_id)
            other.act("dismiss", {"reason": "data_error"}, "x", "另一检察官", clock_now().isoformat(), "done")
            services.store.save(other)
        return found

    def clock_now():
        return services.queries.clock()

    monkeypatch.setattr(services.store, "get_aggregate", read_then_another_officer_acts)
    refused = act(app, officer, lead, "confirm", status=409)
    assert raced and refused["error"]["code"] == "invalid_transition" and "刷新" in refused["error"]["message"]
    monkeypatch.undo()
    assert app.get(f"/v1/leads/{lead}", headers=officer).json()["state"] == "dismissed"
