"""Who is who (issue #19) on a real store: a decision published under a mistyped ID number, linked to the real
person and unlinked again, in every view (status, gaps, statistics) as of and as known at each moment; persons
under other identity documents; A08 and A09 as leads."""

from __future__ import annotations

import datetime as dt

import pytest

from adapters.config import Settings
from services.bootstrap import bootstrap
from services.history import person_history
from services.ingest import Source
from services.leads import LeadQuery
from tests.builders import CST, decision, envelope, id_number
from tests.clock import Clock

pytestmark = pytest.mark.filterwarnings("ignore::domain.calendar.ProvisionalCalendarWarning")

REAL, MISTYPED = id_number(7), id_number(8)
DECIDED = dt.datetime(2024, 3, 1, 10, tzinfo=CST)
LINKED = dt.datetime(2024, 4, 10, 9, tzinfo=CST)
UNLINKED = dt.datetime(2024, 5, 10, 9, tzinfo=CST)
NOW = dt.datetime(2024, 6, 1, 9, tzinfo=CST)


@pytest.fixture
def clock():
    return Clock(DECIDED)


@pytest.fixture
def services(database_url, clock):
    services = bootstrap(Settings(database_url=database_url), clock=clock)
    yield services
    services.close()


def publish(services, clock, at: dt.datetime, *envelopes) -> None:
    clock.now = at
    result = services.ingestor.ingest(list(envelopes), Source("test"))
    assert result.rejected == 0, [item.reason for item in result.items]
    services.projection.catch_up()


def link(event_type: str, source: str, target: str, at: dt.datetime, kind: str = "court") -> dict:
    return envelope(event_type, {"other": {"id_number": target}, "reason": "身份证号码录入错误，应为另一号码"},
                    kind=kind, person=source, occurred_at=at)


def gap_keys(services, as_of, known_at=None) -> set[tuple[str, str]]:
    return {(g["id_number"], g["rule"]) for g in services.queries.gaps(as_of=as_of, known_at=known_at)}


def in_register(services, as_of, known_at=None) -> int:
    return sum(item["in_register"] for item in services.queries.stats(as_of=as_of, known_at=known_at))


def mistyped_history(services, clock) -> None:
    """The court decided under a mistyped number; the bureau received and enrolled the real person."""
    publish(services, clock, DECIDED, decision(MISTYPED))
    publish(services, clock, DECIDED + dt.timedelta(days=6),
            envelope("bureau_notified", {"execution_region": "520222"}, person=MISTYPED,
                     occurred_at=DECIDED + dt.timedelta(days=3)),
            envelope("documents_delivered", {"execution_region": "520222", "copied_to": ["procuratorate"]},
                     person=MISTYPED, occurred_at=DECIDED + dt.timedelta(days=3)),
            envelope("subject_reported", {"region": "520222"}, kind="bureau", person=REAL,
                     occurred_at=DECIDED + dt.timedelta(days=4)),
            envelope("subject_enrolled", {"region": "520222"}, kind="bureau", person=REAL,
                     occurred_at=DECIDED + dt.timedelta(days=5)),
            envelope("documents_receipted", {}, kind="bureau", person=MISTYPED,
                     occurred_at=DECIDED + dt.timedelta(days=5)))


def test_a_link_merges_the_mistyped_person_into_the_real_one_and_an_unlink_restores_both(services, clock):
    mistyped_history(services, clock)
    before = LINKED - dt.timedelta(days=1)
    # Two persons: a 漏管 gap for one who does not exist, and a supervised person with no decision on record.
    assert (MISTYPED, "R04_not_reported") in gap_keys(services, before)
    assert (REAL, "A01_no_decision_on_record") in gap_keys(services, before)
    assert services.queries.status(MISTYPED, as_of=before)["status"] == "awaiting_report"

    publish(services, clock, LINKED, link("identity_linked", MISTYPED, REAL, LINKED))
    after = LINKED + dt.timedelta(days=1)
    assert gap_keys(services, after) == set()  # one person, received in time: nothing missed
    real = services.queries.status(REAL, as_of=after)
    assert real["status"] == "under_supervision" and real["linked_keys"] == sorted([REAL, MISTYPED])
    assert real["episode"]["decided_by"]["kind"] == "court"
    # The mistyped key names the same person now.
    assert services.queries.status(MISTYPED, as_of=after)["id_number"] == REAL
    assert in_register(services, after) == 1
    # The person's history and timeline hold the events of both keys, each saying which it was published under.
    history = person_history(services.store, REAL, real["linked_keys"])
    assert {e["person_key"] for e in history} == {REAL, MISTYPED}
    timeline = services.timelines.timeline(REAL, as_of=after)
    assert {"decision_effective", "subject_enrolled"} <= {e["event_type"] for e in timeline["events"]}
    # The past as known then is unchanged: the gap was there, and is still there as known before the link.
    assert (MISTYPED, "R04_not_reported") in gap_keys(services, before, known_at=before)
    assert (MISTYPED, "R04_not_reported") not in gap_keys(services, before)  # as known now: it never was
    assert services.queries.status(MISTYPED, as_of=before, known_at=before)["id_number"] == MISTYPED

    publish(services, clock, UNLINKED, link("identity_unlinked", MISTYPED, REAL, UNLINKED))
    later = UNLINKED + dt.timedelta(days=1)
    assert (MISTYPED, "R04_not_reported") in gap_keys(services, later)
    assert services.queries.status(REAL, as_of=later)["linked_keys"] == []
    # Each moment as known then: linked between the two recordings, parted before and after.
    assert gap_keys(services, after, known_at=after) == set()
    assert (MISTYPED, "R04_not_reported") in gap_keys(services, after, known_at=later)
    assert in_register(services, after, known_at=after) == 1


def test_the_rebuilt_rows_equal_the_caught_up_ones(services, clock):
    mistyped_history(services, clock)
    publish(services, clock, LINKED, link("identity_linked", MISTYPED, REAL, LINKED))
    publish(services, clock, UNLINKED, envelope("warning_issued", {"reason": "未按规定报告"}, kind="bureau",
                                                person=MISTYPED, occurred_at=UNLINKED))
    moments = [(m, k) for m in (LINKED - dt.timedelta(days=1), NOW) for k in (None, LINKED - dt.timedelta(hours=1))]
    caught_up = [(gap_keys(services, m, k), in_register(services, m, k)) for m, k in moments]
    services.projection.rebuild()
    assert [(gap_keys(services, m, k), in_register(services, m, k)) for m, k in moments] == caught_up
    # The warning, published under the mistyped key after the link, is the real person's.
    assert services.queries.status(REAL, as_of=NOW)["linked_keys"] == sorted([REAL, MISTYPED])


def test_a_link_to_oneself_is_refused(services, clock):
    clock.now = DECIDED
    result = services.ingestor.ingest([link("identity_linked", REAL, REAL, DECIDED)], Source("test"))
    assert result.items[0].status == "rejected" and "同一证件" in result.items[0].reason


def test_a_passport_holder_is_a_person_like_any_other(services, clock):
    foreign = decision(REAL)
    foreign["schema_version"] = 2
    foreign["person"] = {"id_type": "passport", "id_number": "E12345678", "nationality": "USA",
                         "name": "John SMITH", "birth_date": "1985-06-01"}
    publish(services, clock, DECIDED, foreign)
    key = "passport:USA:E12345678"
    assert services.queries.status(key, as_of=NOW)["status"] == "awaiting_report"
    assert (key, "R04_not_reported") in gap_keys(services, NOW)


def test_name_conflicts_and_duplicate_decisions_are_leads(services, clock):
    first = decision(REAL)
    resent = decision(REAL)  # the same judgment sent again under a new event id
    renamed = envelope("subject_reported", {"region": "520222"}, kind="bureau", person=REAL, name="李四",
                       occurred_at=DECIDED + dt.timedelta(days=2))
    publish(services, clock, DECIDED + dt.timedelta(days=2), first, resent, renamed)
    clock.now = NOW
    rules = {g["rule"]: g for g in services.queries.gaps(as_of=NOW)}
    assert "A09_duplicate_decision" in rules and "A08_name_conflict" in rules
    assert rules["A08_name_conflict"]["obligated"]["kind"] == "bureau"
    leads = services.leads.page(LeadQuery(as_of=NOW), {})
    assert {"A08_name_conflict", "A09_duplicate_decision"} <= {item["rule"] for item in leads["items"]}


def test_the_candidates_queue_links_or_dismisses_probable_matches_through_the_api(services, clock):
    from fastapi.testclient import TestClient

    from services.entrypoints.http.api import create_app

    # The same person under a resident ID and, from another court, under a passport with the birth date beside it;
    # and a namesake born on another day (not a match).
    passport = decision(id_number(20))
    passport["schema_version"] = 2
    passport["person"] = {"id_type": "passport", "id_number": "E7654321", "nationality": "KOR", "name": "金 哲洙",
                          "birth_date": "1980-01-01"}
    publish(services, clock, DECIDED, decision(REAL, name="金哲洙"), passport,
            decision(id_number(3000), name="金哲洙"))
    clock.now = NOW
    client = TestClient(create_app(services))
    officer = {"Authorization": "Bearer " + services.principals.add(
        "oversight", "检察官", region="520222", kind="procuratorate", agency_id="JCY-520222")[1]}
    publisher = {"Authorization": "Bearer " + services.principals.add(
        "publisher", "法院", kind="court", agency_id="FY-520222", region="520222")[1]}
    assert client.get("/v1/identity/candidates", headers=publisher).status_code == 403
    items = client.get("/v1/identity/candidates", headers=officer).json()["items"]
    assert len(items) == 1
    group = items[0]
    assert group["birth_date"] == "1980-01-01"
    keys = {member["id_number"] for member in group["members"]}
    assert keys == {REAL, "passport:KOR:E7654321"}
    passport_member = next(m for m in group["members"] if m["id_type"] == "passport")
    assert passport_member["document"] == "护照" and passport_member["nationality"]["name"] == "大韩民国"

    linked = client.post(f"/v1/identity/candidates/{group['candidate_id']}/link", headers=officer,
                         json={"keep": REAL, "reason": "同一人：出生日期与姓名一致，经核实"})
    assert linked.status_code == 200, linked.text
    assert [e["person"] for e in linked.json()["events"]] == ["passport:KOR:E7654321"]
    services.projection.catch_up()
    assert client.get("/v1/identity/candidates", headers=officer).json()["items"] == []
    assert services.queries.status(REAL, as_of=NOW)["linked_keys"] == sorted([REAL, "passport:KOR:E7654321"])
    # The passport's 漏管 gap is now the resident's person's: no gap stands under the passport any more.
    assert {key for key, rule in gap_keys(services, NOW) if rule == "R04_not_reported"} == {REAL, id_number(3000)}

    # Unlinked (by an admin, in the name of the agency that made the error), the group comes back; dismissed, it goes.
    admin = {"Authorization": "Bearer " + services.principals.add("admin", "管理员")[1]}
    assert client.post("/v1/identity/links", headers=admin, json={
        "action": "unlink", "person": "passport:KOR:E7654321", "other": REAL, "reason": "x"}).status_code == 422
    unlinked = client.post("/v1/identity/links", headers=admin, json={
        "action": "unlink", "person": "passport:KOR:E7654321", "other": REAL, "reason": "经核实不是同一人",
        "agency": {"kind": "procuratorate", "id": "JCY-520222", "region": "520222"}})
    assert unlinked.status_code == 200, unlinked.text
    services.projection.catch_up()
    again = client.get("/v1/identity/candidates", headers=officer).json()["items"]
    assert [g["candidate_id"] for g in again] == [group["candidate_id"]]
    dismissed = client.post(f"/v1/identity/candidates/{group['candidate_id']}/dismiss", headers=officer,
                            json={"reason": "两人出生地不同，不是同一人"})
    assert dismissed.status_code == 200 and dismissed.json()["dismissed"] is True
    assert client.get("/v1/identity/candidates", headers=officer).json()["items"] == []
    assert client.post(f"/v1/identity/candidates/{group['candidate_id']}/dismiss", headers=officer,
                       json={"reason": "again"}).status_code == 404
    # An officer of another region links nobody of this one (404, as a read would be).
    elsewhere = {"Authorization": "Bearer " + services.principals.add(
        "oversight", "他市检察官", region="6328", kind="procuratorate", agency_id="JCY-632800")[1]}
    assert client.post("/v1/identity/links", headers=elsewhere, json={
        "action": "link", "person": "passport:KOR:E7654321", "other": REAL, "reason": "x"}).status_code == 404


def test_the_dashboard_page_lists_probable_matches_and_an_officer_links_them(services, clock):
    import re

    from fastapi.testclient import TestClient

    from services.entrypoints.http.api import create_app

    variant = decision(id_number(20), name="阿依古丽•买买提")  # another dot: the same name compared
    variant["person"]["id_number"] = id_number(21, birth=dt.date(1980, 1, 1))
    publish(services, clock, DECIDED, decision(id_number(1), name="阿依古丽·买买提"), variant)
    clock.now = NOW
    token = services.principals.add("oversight", "检察官", region="520222", kind="procuratorate",
                                    agency_id="JCY-520222")[1]
    with TestClient(create_app(services)) as client:
        assert client.post("/login", data={"token": token}, follow_redirects=False).status_code == 303
        page = client.get("/identity")
        assert page.status_code == 200 and "疑似同一人" in page.text and "居民身份证" in page.text
        assert page.text.count('class="candidate-member"') == 2
        candidate = re.search(r'data-candidate="([^"]+)"', page.text).group(1)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        assert client.post(f"/identity/{candidate}/actions", data={
            "action": "link", "keep": id_number(1), "reason": "同一人", "csrf_token": "guess"}).status_code == 403
        done = client.post(f"/identity/{candidate}/actions", data={
            "action": "link", "keep": id_number(1), "reason": "核实为同一人", "csrf_token": csrf})
        assert done.status_code == 200 and "已关联" in done.text
        services.projection.catch_up()
        assert "没有待核实的疑似同一人" in client.get("/identity").text
        english = client.get("/identity?lang=en")
        assert "No probable matches" in english.text


IDENTITY_RATES = {"mistyped_id": 0.03, "name_variant": 0.03, "name_conflict": 0.03, "duplicate_decision": 0.03,
                  "foreign": 0.03}


@pytest.mark.parametrize("seed", [5, 17])
def test_the_detector_finds_every_simulated_identity_error_and_nothing_else(tmp_path, seed):
    import io
    import json

    from tools.simulate import SimulationConfig, run

    until = dt.datetime(2026, 10, 30, 18, 0, tzinfo=CST)
    services = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/identity.db"),
                         clock=Clock(until + dt.timedelta(hours=1)))
    try:
        out, truth_text = io.StringIO(), io.StringIO()
        run(SimulationConfig(persons=400, seed=seed, until=until, counties=("632801", "632802"),
                             identity=IDENTITY_RATES), out, truth_text)
        published = [json.loads(line) for line in out.getvalue().splitlines()]
        for start in range(0, len(published), 500):
            result = services.ingestor.ingest(published[start:start + 500], Source("sim", allow_recorded_at=True))
            assert result.rejected == 0, [i.reason for i in result.items if i.status == "rejected"][:3]
        services.projection.catch_up()
        truth = [t for t in json.loads(truth_text.getvalue()) if t["failure"].startswith("identity_")]
        injected = {t["failure"] for t in truth}
        assert injected == {f"identity_{kind}" for kind in IDENTITY_RATES}, injected  # the seed has each kind

        found_candidates = {tuple(sorted(key for m in c["members"] for key in m["keys"]))
                            for c in services.identity.candidates(lambda region: True)}
        expected_candidates = {tuple(t["candidate"]) for t in truth if "candidate" in t}
        assert found_candidates == expected_candidates
        anomalies = {(g["rule"], g["triggered_by"]) for rule in ("A08_name_conflict", "A09_duplicate_decision")
                     for g in services.queries.gaps(as_of=until, rule=rule, state="all")}
        assert anomalies == {(x["rule"], x["triggered_by"]) for t in truth for x in t["expected"]}
        # A foreign national is a person like any other, under the passport's key.
        for t in truth:
            if t["failure"] == "identity_foreign":
                status = services.queries.status(t["id_number"], as_of=until)
                assert status is not None and status["id_number"].startswith("passport:")
    finally:
        services.close()


def test_version_1_events_stored_before_keep_ingesting_as_duplicates_after_the_upgrade(services, clock):
    """A producer still on version 1 resends what it sent before; another sends the same fact as version 2: neither
    is a conflict, nothing is stored twice, the person is the same."""
    old = decision(REAL)
    publish(services, clock, DECIDED, old)
    clock.now = NOW
    as_v2 = {**old, "schema_version": 2, "person": {**old["person"], "id_type": "resident"}}
    for again in (old, as_v2, {**old, "schema_version": 2}):
        item = services.ingestor.ingest([again], Source("test")).items[0]
        assert item.status == "duplicate", item.reason
    stored = services.store.person(REAL).events
    assert len(stored) == 1 and stored[0].person == {"id_number": REAL, "name": "张三"}
