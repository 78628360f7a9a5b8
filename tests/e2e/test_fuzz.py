"""A property-based run over the OpenAPI document (schemathesis): no request, however odd, gets a 5xx, and every
error is the JSON error shape with a stable code."""

from __future__ import annotations

import atexit
import datetime as dt
import shutil
import tempfile

import schemathesis
from hypothesis import HealthCheck, settings

from adapters.config import Settings
from services.entrypoints.http.api import create_app
from services.bootstrap import bootstrap
from services.ingest import Source
from services.leads import LeadQuery
from tests.builders import decision, id_number

# schemathesis parametrises at import time, so the app (over a throwaway store) is built here.
_workdir = tempfile.mkdtemp(prefix="handoff-fuzz-")
atexit.register(shutil.rmtree, _workdir, True)
_services = bootstrap(Settings(database_url=f"sqlite:///{_workdir}/h.sqlite3"))
_services.ingestor.ingest([decision(id_number(1), start=dt.date(2025, 3, 3))], Source("seed"))
TOKENS = {
    "auditor": _services.principals.add("auditor", "审计")[1],
    "publisher": _services.principals.add("publisher", "法院", kind="court", agency_id="FY-520222",
                                          region="520222")[1],
    "admin": _services.principals.add("admin", "管理员")[1],
    "oversight": _services.principals.add("oversight", "检察官", kind="procuratorate", agency_id="JCY-520222",
                                          region="52", supervisor=True)[1],
}
# A lead that exists, so that random actions and fields reach the lead register's own checks, not only a 404.
_services.projection.catch_up()
REAL_LEAD = _services.leads.page(LeadQuery(limit=1), {"region": None})["items"][0]["lead_id"]
APP = create_app(_services)
# The document is served to principals only.
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, headers={"Authorization": f"Bearer {TOKENS['auditor']}"})


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gets_a_server_error(case):
    role = "publisher" if case.method == "POST" else "admin" if "principals" in case.path else "auditor"
    if "/leads" in case.path:
        role = "oversight"
        if "{lead_id}" in case.path:
            case.path_parameters = {**(case.path_parameters or {}), "lead_id": REAL_LEAD}
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKENS[role]}"}
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        if "results" in body:  # POST /v1/events refused every item: the per-item results say why
            assert all(item["code"] and item["reason"] for item in body["results"] if item["status"] == "rejected")
        else:
            assert body["error"]["code"] and body["error"]["message"], response.text[:300]
