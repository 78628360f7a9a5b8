"""The authorisation matrix over HTTP: every role × endpoint, and every agency kind × event type."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from adapters.config import Settings
from services.entrypoints.http.api import create_app
from services.bootstrap import bootstrap
from services.ingest import Source
from tests.builders import decision, envelope, id_number
from tests.unit.factories import AGENCIES, CATALOG_TYPES
from tests.unit.factories import envelope as catalog_envelope
from tests.unit.test_authorisation import PUBLISHERS

GUIZHOU, QINGHAI = id_number(1, "520222"), id_number(2, "632801")
ROLES = ("publisher", "oversight", "oversight_elsewhere", "auditor", "admin")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with one person in 520222 and one in 632801, both with open gaps, and a principal of every role."""
    path = tmp_path_factory.mktemp("authz") / "h.sqlite3"
    services = bootstrap(Settings(database_url=f"sqlite:///{path}"))
    services.ingestor.ingest([decision(GUIZHOU, start=dt.date(2025, 3, 3)),
                              decision(QINGHAI, region="632801", start=dt.date(2025, 3, 3))], Source("seed"))
    tokens = {
        "publisher": services.principals.add("publisher", "法院", kind="court", agency_id="FY-520222",
                                             region="520222")[1],
        "oversight": services.principals.add("oversight", "遵义市检察监督", region="5202")[1],
        "oversight_elsewhere": services.principals.add("oversight", "青海", region="6328")[1],
        "auditor": services.principals.add("auditor", "审计")[1],
        "admin": services.principals.add("admin", "管理员")[1],
    }
    victim, _ = services.principals.add("auditor", "to be revoked by the admin test")
    with TestClient(create_app(services)) as client:
        yield services, client, tokens, str(victim.id)
    services.close()


def call(client, token, method, path, **kwargs):
    return client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)


P, O, E, A, D = ROLES  # publisher, oversight (5202), oversight elsewhere (6328), auditor, admin
MATRIX = [
    # (method, path, {role: expected status})
    ("GET", "/v1/whoami", {P: 200, O: 200, E: 200, A: 200, D: 200}),
    ("GET", "/v1/schemas", {P: 200, O: 200, E: 200, A: 200, D: 200}),
    ("GET", "/v1/gaps", {P: 200, O: 200, E: 200, A: 200, D: 403}),
    ("GET", "/v1/upcoming?within=400d", {P: 200, O: 200, E: 200, A: 200, D: 403}),
    ("GET", "/v1/stats", {P: 403, O: 200, E: 200, A: 200, D: 403}),
    ("GET", f"/v1/persons/{GUIZHOU}", {P: 403, O: 200, E: 404, A: 200, D: 403}),
    ("GET", f"/v1/persons/{GUIZHOU}/history", {P: 403, O: 200, E: 404, A: 200, D: 403}),
    ("GET", f"/v1/persons/{GUIZHOU}/timeline", {P: 403, O: 200, E: 404, A: 200, D: 403}),
    ("GET", f"/v1/persons/{QINGHAI}", {P: 403, O: 404, E: 200, A: 200, D: 403}),
    ("GET", "/v1/access-log", {P: 403, O: 403, E: 403, A: 200, D: 403}),
    ("GET", "/v1/principals", {P: 403, O: 403, E: 403, A: 403, D: 200}),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method, path, expected", MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX])
def test_role_by_endpoint(world, role, method, path, expected):
    _, client, tokens, _ = world
    response = call(client, tokens[role], method, path)
    assert response.status_code == expected[role], response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message"}


@pytest.mark.parametrize("role", ROLES)
def test_only_publishers_publish(world, role):
    _, client, tokens, _ = world
    event = decision(id_number(30))
    response = call(client, tokens[role], "POST", "/v1/events", json=event)
    assert response.status_code == (200 if role == "publisher" else 403), response.text


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_revoke(world, role):
    services, client, tokens, victim = world
    response = call(client, tokens[role], "DELETE", f"/v1/principals/{victim}")
    assert response.status_code == (200 if role == "admin" else 403)


def test_reads_are_scoped_to_the_principal(world):
    _, client, tokens, _ = world
    oversight = call(client, tokens["oversight"], "GET", "/v1/gaps").json()["items"]
    assert oversight and all(g["region"].startswith("5202") for g in oversight)
    assert call(client, tokens["oversight"], "GET", "/v1/gaps?region=6328").status_code == 403
    court = call(client, tokens["publisher"], "GET", "/v1/gaps").json()["items"]
    assert court and all(g["obligated"]["kind"] == "court" and g["obligated"]["region"] == "520222" for g in court)
    assert call(client, tokens["publisher"], "GET", "/v1/gaps?agency=bureau").status_code == 403
    stats = call(client, tokens["oversight_elsewhere"], "GET", "/v1/stats").json()["items"]
    assert [s["region"] for s in stats] == ["632801"]


def test_a_publisher_sees_only_its_own_agencys_obligations(world):
    """Issue #14: a publisher saw the obligations of every agency of its kind and region, not only its own id."""
    services, client, tokens, _ = world
    other_court = services.principals.add("publisher", "同县另一法院", kind="court", agency_id="FY-520222-02",
                                          region="520222")[1]
    assert call(client, tokens["publisher"], "GET", "/v1/gaps?state=all").json()["items"]
    assert call(client, other_court, "GET", "/v1/gaps?state=all").json()["items"] == []
    assert call(client, other_court, "GET", "/v1/upcoming?within=400d").json()["items"] == []
    # Obligations addressed to "the bureau of 520222" (R04, no agency named) are that county's bureau's.
    bureau = services.principals.add("publisher", "县司法局", kind="bureau", agency_id="SFJ-520222",
                                     region="520222")[1]
    borne = call(client, bureau, "GET", "/v1/gaps?state=all").json()["items"]
    assert borne and {(g["obligated"]["kind"], g["obligated"]["region"]) for g in borne} == {("bureau", "520222")}
    elsewhere = services.principals.add("publisher", "邻县司法局", kind="bureau", agency_id="SFJ-520221",
                                        region="520221")[1]
    assert call(client, elsewhere, "GET", "/v1/gaps?state=all").json()["items"] == []


def test_list_reads_record_their_subjects_and_a_lower_case_x_finds_them(world):
    """Issue #14: the access log kept the ID number as typed (a lower-case x escaped a search) and recorded no
    subjects for list reads."""
    services, client, tokens, _ = world
    x_person = id_number(3, "520222")
    while not x_person.endswith("X"):
        x_person = id_number(int(x_person[14:17]) + 1, "520222")
    services.ingestor.ingest([decision(x_person, start=dt.date(2025, 3, 3))], Source("seed"))
    assert call(client, tokens["oversight"], "GET", f"/v1/persons/{x_person[:-1]}x").status_code == 200
    shown = call(client, tokens["oversight"], "GET", "/v1/gaps?limit=1000").json()["items"]
    assert x_person in {g["id_number"] for g in shown}
    log = call(client, tokens["auditor"], "GET", f"/v1/access-log?subject={x_person[:-1]}x").json()["items"]
    assert [entry["action"].split(" ")[1] for entry in log][:2] == ["/v1/gaps", "/v1/persons/{id}"]
    assert all(x_person in entry["subjects"] for entry in log)


def test_reads_of_personal_data_are_in_the_access_log(world):
    _, client, tokens, _ = world
    call(client, tokens["oversight"], "GET", f"/v1/persons/{GUIZHOU}")
    log = call(client, tokens["auditor"], "GET", f"/v1/access-log?subject={GUIZHOU}").json()["items"]
    assert log and log[0]["name"] == "遵义市检察监督" and log[0]["action"] == "GET /v1/persons/{id}"


# -- every agency kind × event type -----------------------------------------------------------------------------------


def retraction_target(services, kind: str) -> str:
    """An event of this agency on record, for its retraction to refer to."""
    event = catalog_envelope("warning_issued" if kind == "bureau" else "supervision_review_recorded"
                             if kind == "procuratorate" else "detention_started" if kind == "police"
                             else "committed_to_custody" if kind == "prison" else "term_changed", agency=kind)
    result = services.ingestor.ingest([event], Source("seed"))
    assert result.accepted == 1, result.items
    return event["event_id"]


@pytest.mark.parametrize("kind", list(AGENCIES))
@pytest.mark.parametrize("event_type", CATALOG_TYPES)
def test_agency_kind_by_event_type_over_http(world, kind, event_type):
    services, client, _, _ = world
    agency = AGENCIES[kind]
    token = services.principals.add("publisher", f"{kind} publisher", kind=kind, agency_id=agency["id"],
                                    region=agency["region"])[1]
    event = catalog_envelope(event_type, agency=kind)
    if event_type == "event_retracted":
        event["payload"]["retracted_event_id"] = retraction_target(services, kind)
    response = call(client, token, "POST", "/v1/events", json=event)
    allowed = kind in PUBLISHERS[event_type] and not (event_type == "decision_effective" and kind in ("police", "prison"))
    assert response.status_code == (200 if allowed else 403), response.text
    if not allowed:
        assert response.json()["results"][0]["code"] == "forbidden_event_type"


@pytest.mark.parametrize("kind", ["police", "prison"])
def test_custodians_decide_only_temporary_release(world, kind):
    services, client, _, _ = world
    agency = AGENCIES[kind]
    token = services.principals.add("publisher", kind, kind=kind, agency_id=agency["id"], region=agency["region"])[1]
    event = catalog_envelope("decision_effective", agency=kind, id_number=id_number(40 + len(kind)))
    event["payload"]["category"] = "temporary_release"
    assert call(client, token, "POST", "/v1/events", json=event).status_code == 200
