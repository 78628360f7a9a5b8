"""The HTTP API over a real store: authentication, the one ingest path, clear 4xx for bad input, refusals kept."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from fastapi.testclient import TestClient

from adapters.config import Settings
from services.entrypoints.http.api import MAX_BATCH_ITEMS, create_app
from services.bootstrap import bootstrap
from services.ingest import Source
from tests.builders import decision, envelope, id_number


@pytest.fixture
def services(database_url):
    services = bootstrap(Settings(database_url=database_url))
    yield services
    services.close()


@pytest.fixture
def court_token(services):
    return services.principals.add("publisher", "贵州省某县人民法院", kind="court", agency_id="FY-520222",
                                   region="520222")[1]


@pytest.fixture
def client(services, court_token):
    with TestClient(create_app(services), headers={"Authorization": f"Bearer {court_token}"}) as client:
        yield client


def letters(services) -> list:
    return list(services.store.dead_letters(limit=1000))


def test_health_needs_no_token(services):
    with TestClient(create_app(services)) as anonymous:
        assert anonymous.get("/health").json()["status"] == "ok"


def test_everything_else_needs_a_valid_token(services, court_token):
    with TestClient(create_app(services)) as anonymous:
        for method, path in (("get", "/v1/gaps"), ("post", "/v1/events"), ("get", "/v1/schemas"),
                             ("get", f"/v1/persons/{id_number(1)}")):
            response = getattr(anonymous, method)(path, headers={"Authorization": "Bearer wrong"})
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "unauthenticated"


def test_a_revoked_token_stops_working(services, court_token, client):
    assert client.get("/v1/whoami").status_code == 200
    [court] = [p for p in services.principals.all() if p.kind == "court"]
    services.principals.revoke(str(court.id))
    assert client.get("/v1/whoami").status_code == 401


def test_one_event_then_its_duplicate(client, services):
    event = decision(id_number(1))
    first = client.post("/v1/events", json=event)
    assert first.status_code == 200
    assert first.json()["results"] == [{"index": 0, "status": "accepted", "event_id": event["event_id"]}]
    again = client.post("/v1/events", json=event)
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert len(services.store.person(id_number(1)).events) == 1


def test_a_batch_reports_per_item(client, services):
    good = decision(id_number(2))
    bad = decision(id_number(2))
    bad["payload"]["extra"] = 1
    response = client.post("/v1/events", json=[good, bad, 42])
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 2)
    assert body["results"][1]["code"] == "invalid_payload"
    assert body["results"][2]["code"] == "malformed"
    assert len(letters(services)) == 2


def test_publishing_as_another_agency_or_type_is_403_with_a_reason(client, services):
    as_other_court = decision(id_number(3), region="520221")
    response = client.post("/v1/events", json=as_other_court)
    assert response.status_code == 403
    assert response.json()["results"][0]["code"] == "not_as_itself"
    bureau_event = envelope("subject_reported", {"region": "520222"}, kind="bureau", person=id_number(3))
    bureau_event["agency"] = {"kind": "court", "id": "FY-520222", "region": "520222"}
    response = client.post("/v1/events", json=bureau_event)
    assert response.status_code == 403
    assert "may not publish subject_reported" in response.json()["results"][0]["reason"]
    assert len(letters(services)) == 2


def test_all_rejected_is_422(client):
    response = client.post("/v1/events", json=envelope("no_such_event", {}, kind="court"))
    assert response.status_code == 422
    assert response.json()["results"][0]["code"] == "unknown_event_type"


@pytest.mark.parametrize("body, content_type, status, code", [
    (b"{not json", "application/json", 400, "malformed"),
    (b"\"a string\"", "application/json", 400, "malformed"),
    (b"<xml/>", "application/xml", 415, "malformed"),
    (b"[]", "application/json", 400, "malformed"),
    ('{"event_id": "a", "event_id": "b"}'.encode(), "application/json", 400, "malformed"),
    ("\ufeff{}".encode(), "application/json", 400, "malformed"),
    (b'{"schema_version": ' + b"9" * 5000 + b"}", "application/json", 400, "malformed"),  # past 4,300 digits
    (b'[{"schema_version": ' + b"9" * 5000 + b"}]", "application/json", 400, "malformed"),
])
def test_bad_bodies_get_clear_4xx_and_are_kept(client, services, body, content_type, status, code):
    response = client.post("/v1/events", content=body, headers={"content-type": content_type})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert [letter.raw for letter in letters(services)] == [body.decode()]  # every refused body is kept


def test_oversized_batches_are_refused_and_kept(client, services):
    batch = [decision(id_number(3))] * (MAX_BATCH_ITEMS + 1)
    response = client.post("/v1/events", content=json.dumps(batch), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert len(letters(services)) == 1
    assert services.store.person(id_number(3)) is None


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "9999-12-31T23:59:59+14:00", "1900-06-01T00:00"])
def test_extreme_as_of_values_are_refused_with_a_reason_not_a_500(services, client, value):
    auditor = services.principals.add(role="auditor", name="审计员")[1]
    for path in ("/v1/gaps", "/v1/stats"):
        response = client.get(path, params={"as_of": value}, headers={"Authorization": f"Bearer {auditor}"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_time" and "超出合理范围" in response.text


def test_a_utf16_body_is_refused_as_not_utf8_and_kept(client, services):
    body = json.dumps(decision(id_number(4)), ensure_ascii=False).encode("utf-16")
    response = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "UTF-8" in response.json()["error"]["message"]
    [letter] = letters(services)
    assert letter.raw_bytes == len(body) and letter.raw.startswith("base64:")
    assert services.store.person(id_number(4)) is None


# -- transport limits and the documentation (issue #14) -------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_while_it_streams_and_its_beginning_kept(client, services):
    """A 300 MB POST was read whole before the size check (the server grew to 608 MB)."""
    from services.entrypoints.http.api import MAX_BODY_BYTES

    def chunks():  # no Content-Length: the server learns the size only by reading
        piece = b"x" * 65536
        for _ in range(MAX_BODY_BYTES // len(piece) + 8):
            yield piece

    response = client.post("/v1/events", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "上限" in response.json()["error"]["message"]
    [letter] = letters(services)
    assert letter.raw_bytes == MAX_BODY_BYTES and letter.code == "malformed"


def test_a_declared_length_over_the_limit_is_refused_before_reading(client, services):
    from services.entrypoints.http.api import MAX_BODY_BYTES

    response = client.post("/v1/events", content=b"{}", headers={"Content-Length": str(MAX_BODY_BYTES + 1),
                                                                 "Content-Type": "application/json"})
    assert response.status_code == 413
    assert letters(services)[0].raw_bytes == 0


def test_each_principal_has_a_request_budget(database_url):
    services = bootstrap(Settings(database_url=database_url, rate_limit="3/minute"))
    try:
        hurried = services.principals.add("auditor", "审计甲")[1]
        other = services.principals.add("auditor", "审计乙")[1]
        with TestClient(create_app(services)) as client:
            answers = [client.get("/v1/whoami", headers={"Authorization": f"Bearer {hurried}"}) for _ in range(4)]
            assert [a.status_code for a in answers] == [200, 200, 200, 429]
            refused = answers[-1]
            assert refused.json()["error"]["code"] == "rate_limited" and "请求过于频繁" in refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            assert client.get("/v1/whoami", headers={"Authorization": f"Bearer {other}"}).status_code == 200
    finally:
        services.close()


def test_api_docs_come_from_the_package_and_only_to_principals(services, court_token):
    with TestClient(create_app(services)) as anonymous:
        assert anonymous.get("/openapi.json").status_code == 401
        to_login = anonymous.get("/docs", follow_redirects=False)
        assert to_login.status_code == 303 and to_login.headers["location"].startswith("/login")
        headers = {"Authorization": f"Bearer {court_token}"}
        for page in ("/docs", "/redoc"):
            html = anonymous.get(page, headers=headers).text
            assert "/static-offline-docs/" in html and "cdn" not in html.lower() and "googleapis" not in html
        assert anonymous.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
        assert anonymous.get("/openapi.json", headers=headers).json()["info"]["title"] == "handoff"


# -- the clerk's language (issue #14) --------------------------------------------------------------------------------

def has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_validation_errors_are_chinese_first_and_english_on_request(client):
    """pydantic's English ("Input should be a valid date in the format YYYY-MM-DD…") reached Chinese clerks."""
    bad = decision(id_number(61))
    bad["payload"]["term_end"] = "2025/13/01"
    reason = client.post("/v1/events", json=bad).json()["results"][0]["reason"]
    assert "不是有效日期" in reason and "payload.term_end" in reason
    reason_en = client.post("/v1/events", json=bad, headers={"Accept-Language": "en-US,en;q=0.9"}).json()[
        "results"][0]["reason"]
    assert not has_chinese(reason_en) and "valid date" in reason_en and "payload.term_end" in reason_en
    query = client.get("/v1/gaps?limit=many")
    assert query.status_code == 422 and "不是有效整数" in query.json()["error"]["message"]
    query_en = client.get("/v1/gaps?limit=many", headers={"Accept-Language": "en"}).json()["error"]["message"]
    assert not has_chinese(query_en) and "integer" in query_en


def test_a_15_digit_id_number_is_explained_then_accepted_as_a_legacy_number(services, client):
    auditor = {"Authorization": f"Bearer {services.principals.add('auditor', '审计')[1]}"}
    old = decision(id_number(62))
    old["person"]["id_number"] = "520222800101123"
    reason = client.post("/v1/events", json=old).json()["results"][0]["reason"]
    assert "15 位旧身份证号码" in reason and "resident_legacy15" in reason
    assert client.get("/v1/persons/520222800101123", headers=auditor).status_code == 404  # looked up as 18 digits
    legacy = {**old, "schema_version": 2, "person": {**old["person"], "id_type": "resident_legacy15"}}
    assert client.post("/v1/events", json=legacy).json()["results"][0]["status"] == "accepted"
    services.projection.catch_up()
    for typed in ("520222800101123", "520222198001011236"):
        answer = client.get(f"/v1/persons/{typed}", headers=auditor)
        assert answer.status_code == 200 and answer.json()["id_number"] == "520222198001011236"
    stored = client.get("/v1/persons/520222198001011236/history", headers=auditor).json()["items"][0]
    assert stored["person"] == {"id_type": "resident_legacy15", "id_number": "520222800101123", "name": "张三"}


def test_the_published_schema_describes_fields_in_both_languages_with_enums_and_examples(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    envelope_ = schema["Envelope"]["properties"]
    assert "decision_effective" in envelope_["event_type"]["enum"]
    assert has_chinese(envelope_["occurred_at"]["description"]) and " / " in envelope_["occurred_at"]["description"]
    assert envelope_["event_id"]["examples"] and schema["PersonRef"]["properties"]["id_number"]["examples"]
    assert set(schema["AgencyKind"]["enum"]) == {"court", "procuratorate", "police", "prison", "bureau"}


def test_reads_answer_at_once_while_the_projector_is_far_behind_and_say_so(database_url):
    """The projector runs on its own: a read never catches up itself. With thousands of events not yet projected,
    gaps, stats and health answer from the rows there are, and `freshness` says how far behind they are."""
    services = bootstrap(Settings(database_url=database_url), projector="none")
    try:
        auditor = services.principals.add("auditor", "审计员")[1]
        first = decision(id_number(1), start=dt.date(2025, 3, 3))
        services.ingestor.ingest([first], Source("test"))
        services.projection.catch_up()
        backlog = [decision(id_number(n), start=dt.date(2025, 3, 3)) for n in range(2, 2002)]
        for start in range(0, len(backlog), 500):
            services.ingestor.ingest(backlog[start:start + 500], Source("test"))
        with TestClient(create_app(services), headers={"Authorization": f"Bearer {auditor}"}) as client:
            gaps = client.get("/v1/gaps", params={"rule": "R04_not_reported"}).json()
            assert [g["id_number"] for g in gaps["items"]] == [id_number(1)]  # what the projector had folded
            assert gaps["freshness"]["events_behind"] >= 2000 and gaps["freshness"]["seconds_behind"] >= 0
            past = client.get("/v1/gaps", params={"as_of": "2025-06-01", "known_at": "2026-01-01"}).json()
            assert past["freshness"]["events_behind"] >= 2000
            stats = client.get("/v1/stats").json()
            assert stats["freshness"]["events_behind"] >= 2000
            assert services.projection.lag() >= 2000  # nothing read caught up
        with TestClient(create_app(services)) as browser:
            assert browser.post("/login", data={"token": auditor}, follow_redirects=False).status_code == 303
            page = browser.get("/gaps").text
            assert re.search(r'class="behind" role="status">数据更新中：还有 [1-9][0-9]?,[0-9]{3} 条事件未计入', page)
            assert services.projection.lag() >= 2000
        with TestClient(create_app(services), headers={"Authorization": f"Bearer {auditor}"}) as client:
            services.projection.catch_up()
            caught = client.get("/v1/gaps", params={"rule": "R04_not_reported", "limit": 1000}).json()
            assert len(caught["items"]) == 1000 and caught["freshness"]["events_behind"] == 0
            assert 'class="behind"' not in client.get("/gaps").text
    finally:
        services.close()
