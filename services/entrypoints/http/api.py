"""The HTTP API (`/v1`): agencies publish as themselves; oversight staff, auditors and administrators read what
their role allows. Every request but /health carries a bearer token (`handoff principal add`).

Errors are JSON `{"error": {"code": ..., "message": ...}}` with a stable code; bad input never yields a 5xx.
"""


import contextlib
import datetime as dt
import json
import logging
import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.spreadsheets import UnreadableFile, read_table
from domain.authorisation import PublisherIdentity
from domain.catalog import CATALOG, AgencyKind
from domain.envelope import DuplicateKey, Envelope, refuse_duplicate_keys
from domain.errors import RejectionCode
from domain.identity import typed_person_key
from domain.leads import ACTIONS, LeadRefused
from domain.messages import bilingual, english
from domain.principals import OutsideScope, Principal, Role
from domain.rosters import RosterError, RosterSource, parse_column_map
from projections.supervision import Unfoldable

from services.entrypoints import timeparse
from services.bootstrap import Services
from services.history import person_history
from services.ingest import Source
from services.leads import LEAD_STATES, SORTS, LeadNotFound, LeadQuery, actor_of
from services.identity import IdentityRefused, keys_of
from services.rosters import RosterNotFound
from services.scorecard import BadMonth

log = logging.getLogger(__name__)
access_log = logging.getLogger("handoff.access")

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_BATCH_ITEMS = 1000
MAX_ROSTER_BYTES = 64 * 1024 * 1024  # a province's register as CSV: about 100 bytes a row
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PAGE_DEFAULT, PAGE_MAX = 100, 1000
SESSION_COOKIE = "handoff_session"  # the dashboard's (services/entrypoints/http/dashboard.py)
# Rejections that mean "you may not", answered 403 when a single event is refused for them.
NOT_ALLOWED = {RejectionCode.NOT_AS_ITSELF, RejectionCode.FORBIDDEN_EVENT_TYPE, RejectionCode.RETRACTION_REFUSED}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}}, headers=headers)


class RateLimit:
    """A request budget per principal over a moving window (the `limits` library, in this process's memory): one
    client cannot starve the others. Several server processes each keep their own budget."""

    def __init__(self, notation: str):
        from limits import parse
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        try:
            self.item = parse(notation)
        except ValueError:
            raise ValueError(f"HANDOFF_RATE_LIMIT {notation!r}: expected e.g. 600/minute") from None
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, principal: Principal) -> None:
        key = str(principal.id)
        if self.limiter.hit(self.item, key):
            return
        reset = self.limiter.get_window_stats(self.item, key).reset_time
        wait = max(1, int(reset - time.time()) + 1)
        raise ApiError(429, "rate_limited",
                       f"请求过于频繁（上限 {self.item}），请 {wait} 秒后重试 / too many requests (limit {self.item}): "
                       f"retry in {wait} s", headers={"Retry-After": str(wait)})


async def read_body(request: Request, limit: int) -> tuple[bytes, bool]:
    """The request body, read while it streams in and never beyond `limit` + 1 bytes: (bytes, whether it was over
    the limit). A declared Content-Length over the limit is refused before anything is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return b"", True
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            return bytes(received[:limit]), True
    return bytes(received), False


# -- request helpers -------------------------------------------------------------------------------------------------


def in_language(request: Request, text: str) -> str:
    """Messages are '中文 / English'; a client that asks for English (Accept-Language: en…) gets the English."""
    return english(text) if request.headers.get("accept-language", "").lower().startswith("en") else text


def bearer_token(request: Request) -> str | None:
    """The token of the Authorization header."""
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def request_principal(services: Services, request: Request) -> Principal | None:
    """The principal of a bearer token; for reads only, else the dashboard session's (a cookie must never publish:
    CSRF)."""
    token = bearer_token(request)
    if token is not None:
        return services.principals.authenticate(token)
    if request.method in ("GET", "HEAD") and services.sessions is not None:
        found = services.sessions.resolve(request.cookies.get(SESSION_COOKIE))
        return found[0] if found else None
    return None


ID_NUMBER_IN_PATH = re.compile(r"\d{17}[\dXx]")


class AccessLogMiddleware:
    """One log line per request with ID numbers masked: names and ID numbers never reach the logs in clear."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {}

        async def capture(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            path = ID_NUMBER_IN_PATH.sub(lambda m: m.group()[:6] + "*" * 12, scope["path"])
            access_log.info("%s %s %s", scope["method"], path, status.get("code", "-"))


def moment(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return timeparse.parse_moment(value)
    except ValueError as problem:
        raise ApiError(422, "invalid_time", f"{name}: {problem}") from None


def checked_id_number(id_number: str) -> str:
    """The person key a path names (an ID number, or another document's key), or 422."""
    key, problem = typed_person_key(id_number)
    if problem:
        raise ApiError(422, "invalid_id_number", problem)
    return key


def json_table(rows: list[Any]) -> tuple[list[str], list[list[Any]]]:
    """JSON rows (objects of our fields or the export's headers) as a header and lines."""
    header: list[str] = []
    for row in rows:
        if not isinstance(row, dict):
            raise RosterError(["rows 的每一项应为对象 / every item of rows must be an object"])
        header += [key for key in row if key not in header]
    return header, [[row.get(key) for key in header] for row in rows]


def _roster_day(value: str | None) -> dt.date:
    if not value:
        raise RosterError(["请给出名单截至日期 as_of（YYYY-MM-DD） / as_of (YYYY-MM-DD) is required"])
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise RosterError([f"as_of {value!r} 不是日期 / as_of {value!r} is not a date (YYYY-MM-DD)"]) from None


def require(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        allowed = ", ".join(str(role) for role in roles)
        raise ApiError(403, "forbidden", f"the {principal.role} role may not do this (allowed: {allowed})")


def scoped_region(principal: Principal, region: str | None) -> str | None:
    """The region filter a principal may use: oversight staff stay inside their prefix."""
    if region is not None and (not region.isdigit() or len(region) > 6):
        raise ApiError(422, "invalid_region", "region must be a region code or its prefix (digits, at most 6)")
    try:
        return principal.region_filter(region)
    except OutsideScope as problem:
        raise ApiError(403, "outside_scope", str(problem)) from None


def page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    """A page of a list fetched with limit + 1 items (the extra one only says whether there is more)."""
    more = len(items) > limit
    return {"items": items[:limit], "limit": limit, "offset": offset, "next_offset": offset + limit if more else None}


Limit = Annotated[int, Query(ge=1, le=PAGE_MAX)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
RegionParam = Annotated[str | None, Query(max_length=6, description="region code or prefix (5202 = the city)")]
TimeParam = Annotated[str | None, Query(max_length=40, description="ISO date (end of that day) or datetime")]
StateParam = Annotated[str, Query(pattern="^(open|late|all)$")]
RuleParam = Annotated[str | None, Query(max_length=40)]
AgencyParam = Annotated[AgencyKind | None, Query(description="only obligations borne by this agency kind")]


LeadStateParam = Annotated[str | None, Query(pattern=f"^({'|'.join(LEAD_STATES)})$")]
SortParam = Annotated[str, Query(pattern=f"^({'|'.join(SORTS)})$")]
# How a refused lead action is answered: the lead's state does not allow it (409), the principal may not (403).
REFUSAL_STATUS = {"invalid_transition": 409, "needs_supervisor": 403, "needs_procuratorate": 403,
                  "invalid_action": 422}


class AddresseeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: AgencyKind
    id: Annotated[str, Field(min_length=1, max_length=100)]


class AgencyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: AgencyKind
    id: Annotated[str, Field(min_length=1, max_length=200)]
    region: Annotated[str, Field(min_length=6, max_length=6)]


class IdentityLinkBody(BaseModel):
    """Two person keys are (no longer) one person: published as `identity_linked` / `identity_unlinked`."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["link", "unlink"]
    person: Annotated[str, Field(max_length=80, description="the key published in error (merged into `other`)")]
    other: Annotated[str, Field(max_length=80, description="the person's key")]
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    agency: Annotated[AgencyBody | None, Field(description=(
        "an admin names the agency that made the error; an officer publishes as their own agency"))] = None


class CandidateLinkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: Annotated[str, Field(max_length=80, description="the member key the others are linked to")]
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    agency: AgencyBody | None = None


class CandidateDismissBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class LeadActionBody(BaseModel):
    """An action on a lead and its fields (which ones each action needs: docs/reference.md)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal[ACTIONS]  # type: ignore[valid-type]
    note: Annotated[str | None, Field(max_length=2000)] = None
    assignee: Annotated[str | None, Field(max_length=64, description="assign: the officer's principal id")] = None
    reason: Annotated[str | None, Field(max_length=2000, description=(
        "dismiss: data_error | fulfilled_unrecorded | legal_exception | duplicate | other; snooze: why"))] = None
    until: Annotated[str | None, Field(max_length=10, description="snooze: YYYY-MM-DD")] = None
    notice_kind: Literal["correction", "suggestion"] | None = None
    document_no: Annotated[str | None, Field(max_length=200, description="issue_notice: 文书编号")] = None
    addressed_to: AddresseeBody | None = None
    reply_within_days: Annotated[int | None, Field(ge=1, le=366)] = None
    finding: Annotated[str | None, Field(max_length=2000)] = None


def create_app(services: Services, dashboard: APIRouter | None = None) -> FastAPI:
    """The API, with the oversight dashboard (`services.entrypoints.http.dashboard`, or the router given). Its
    projector (`services.projector`) runs while the app does: reads never wait for it."""
    projector = services.projector

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        if projector is not None:
            projector.start()
        try:
            yield
        finally:
            if projector is not None:
                projector.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="handoff",
        version="1.0.0",
        # The API documentation is served below from the package's own assets (no CDN) and only to principals.
        docs_url=None, redoc_url=None, openapi_url=None,
        description="社区矫正衔接 — inter-agency handoffs in community corrections. Authenticate with "
                    "`Authorization: Bearer <token>` (tokens from `handoff principal add`).",
    )
    principals = services.principals
    app.add_middleware(AccessLogMiddleware)
    from services.entrypoints.workers.kafka_ingest import http_inbound  # HANDOFF_KAFKA_BOOTSTRAP: POST /v1/events produces to Kafka

    kafka_inbound = http_inbound(services.settings, services.ingestor)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.code, in_language(request, exc.message), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated"}
        return error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {bilingual(e)}" for e in exc.errors()[:5])
        return error(422, "invalid_request", in_language(request, details))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:  # a defect of ours, never the input's fault
        log.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
        return error(500, "internal_error", "the service failed on this request; it has been logged")

    rate_limit = RateLimit(services.settings.rate_limit)

    def authenticated(request: Request) -> Principal:
        principal = request_principal(services, request)
        if principal is None:
            raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token> of an active principal")
        rate_limit.check(principal)
        return principal

    Me = Annotated[Principal, Depends(authenticated)]

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness for load balancers: the only endpoint without authentication."""
        return {"status": "ok", "store": services.settings.database_url.split(":", 1)[0],
                "quarantined_persons": services.read_model.quarantined_count(),
                "freshness": services.queries.freshness()}

    v1 = APIRouter(prefix="/v1")

    @v1.get("/whoami", tags=["service"])
    def whoami(me: Me) -> dict[str, Any]:
        return me.summary()

    # -- publishing -------------------------------------------------------------------------------------------------

    @v1.post("/events", tags=["publish"], openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/Envelope"},
            {"type": "array", "items": {"$ref": "#/components/schemas/Envelope"}, "maxItems": MAX_BATCH_ITEMS},
        ]}}}}})
    async def post_events(request: Request, me: Me) -> JSONResponse:
        """One envelope (a JSON object) or a batch (an array of at most 1000). Results are per item; every refused
        item is kept in the dead-letter store with its reason."""
        require(me, Role.PUBLISHER)
        source = Source(name=f"http:{me.kind}:{me.agency_id}",
                        publisher=PublisherIdentity(kind=AgencyKind(me.kind), id=me.agency_id, region=me.region))
        body, oversized = await read_body(request, MAX_BODY_BYTES)

        async def refuse(status: int, code: RejectionCode, message: str) -> JSONResponse:
            await run_in_threadpool(services.ingestor.refuse, body, code, message, source, "body")
            return error(status, str(code), in_language(request, message))

        if oversized:  # kept with what was read of it (nothing when Content-Length said so up front)
            return await refuse(413, RejectionCode.MALFORMED,
                                f"请求体超过 {MAX_BODY_BYTES} 字节的上限，已拒收（仅保留开头部分） / body over the limit of "
                                f"{MAX_BODY_BYTES} bytes, refused (only its beginning is kept)")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/json", ""):
            return await refuse(415, RejectionCode.MALFORMED, f"content type {content_type!r}: send application/json")
        try:
            # The contract is UTF-8 JSON: json.loads(bytes) would guess UTF-16/32, and a byte-order mark is not
            # UTF-8 JSON either; a key given twice would silently take its last value.
            text = body.decode("utf-8")
            if text.startswith("\ufeff"):
                return await refuse(400, RejectionCode.MALFORMED,
                                    "请求体以字节顺序标记（BOM）开头，请发送不带 BOM 的 UTF-8 JSON / body starts with a "
                                    "byte-order mark: send UTF-8 JSON without one")
            document = json.loads(text, object_pairs_hook=refuse_duplicate_keys)
        except UnicodeDecodeError as problem:
            return await refuse(400, RejectionCode.MALFORMED,
                                f"请求体不是 UTF-8 编码 / body is not UTF-8: {problem.reason} at byte {problem.start}")
        except DuplicateKey as problem:
            return await refuse(400, RejectionCode.MALFORMED, str(problem))
        except (json.JSONDecodeError, RecursionError) as problem:
            return await refuse(400, RejectionCode.MALFORMED, f"请求体不是有效的 JSON / body is not JSON: {problem}")
        except ValueError:  # an integer of more digits than Python converts (4,300): no field takes such a number
            return await refuse(400, RejectionCode.MALFORMED,
                                "请求体含有位数过多的整数 / the body holds an integer with too many digits")
        single = isinstance(document, dict)
        if single:
            items: list[Any] = [document]
        elif isinstance(document, list):
            if not document:
                return await refuse(400, RejectionCode.MALFORMED, "批次中没有事件 / the batch holds no events")
            if len(document) > MAX_BATCH_ITEMS:
                return await refuse(413, RejectionCode.MALFORMED,
                                    f"batch of {len(document)} events, the limit is {MAX_BATCH_ITEMS}")
            items = [item if isinstance(item, dict) else json.dumps(item).encode() for item in document]
        else:
            return await refuse(400, RejectionCode.MALFORMED, "body must be an envelope object or an array of them")

        if kafka_inbound is not None:  # the ingest workers store them; 202 with the event ids (docs/kafka.md)
            status, content = await run_in_threadpool(kafka_inbound.publish, items, me)
            return JSONResponse(status_code=status, content=content)
        result = await run_in_threadpool(services.ingestor.ingest, items, source)
        content = {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected,
                   "results": [item.as_dict() for item in result.items]}
        for item in content["results"]:
            if item.get("reason"):
                item["reason"] = in_language(request, item["reason"])
        status = 200
        if result.rejected == len(result.items):
            codes = {item.code for item in result.items}
            status = 403 if single and codes <= {str(c) for c in NOT_ALLOWED} else 422
        return JSONResponse(status_code=status, content=content)

    # -- reading ----------------------------------------------------------------------------------------------------

    def gap_scope(me: Principal, region: str | None, agency: AgencyKind | None) -> dict[str, Any]:
        """Publishers see the obligations their agency bears; oversight its region; auditors everything."""
        require(me, Role.PUBLISHER, Role.OVERSIGHT, Role.AUDITOR)
        if me.role is Role.PUBLISHER:
            if agency is not None and agency != me.kind:
                raise ApiError(403, "outside_scope", f"a {me.kind} sees only the obligations of its own agency")
            # Its own agency's: named for its id, or addressed to its kind for its region (domain.authorisation.bears).
            return {"region": scoped_region(me, region), "agency": me.kind, "agency_region": me.region,
                    "agency_id": me.agency_id}
        return {"region": scoped_region(me, region), "agency": str(agency) if agency else None,
                "agency_region": None, "agency_id": None}

    @v1.get("/gaps", tags=["read"])
    def gaps(me: Me, as_of: TimeParam = None, known_at: TimeParam = None, region: RegionParam = None,
             rule: RuleParam = None, agency: AgencyParam = None, state: StateParam = "open",
             limit: Limit = PAGE_DEFAULT, offset: Offset = 0) -> dict[str, Any]:
        """Handoff gaps, most overdue first. `as_of` is valid time, `known_at` transaction time (default now)."""
        scope = gap_scope(me, region, agency)
        items = services.queries.gaps(as_of=moment(as_of, "as_of"), known_at=moment(known_at, "known_at"),
                                      rule=rule, state=state, limit=limit + 1, offset=offset, **scope)
        shown = page(items, limit, offset)
        principals.record_access(me, f"GET /v1/gaps region={scope['region']} rule={rule} state={state}",
                                 [gap["id_number"] for gap in shown["items"]])
        return {**shown, "freshness": services.queries.freshness()}

    @v1.get("/upcoming", tags=["read"])
    def upcoming(me: Me, within: Annotated[str, Query(max_length=12)] = "7d", region: RegionParam = None,
                 agency: AgencyParam = None, limit: Limit = PAGE_DEFAULT, offset: Offset = 0) -> dict[str, Any]:
        """Obligations falling due within `within` (e.g. 48h, 7d, 2w): act before a gap opens."""
        try:
            horizon = timeparse.parse_duration(within)
        except ValueError as problem:
            raise ApiError(422, "invalid_duration", str(problem)) from None
        scope = gap_scope(me, region, agency)
        items = services.queries.upcoming(horizon, **scope)
        shown = page(items[offset:offset + limit + 1], limit, offset)
        principals.record_access(me, f"GET /v1/upcoming region={scope['region']}",
                                 [item["id_number"] for item in shown["items"]])
        return {**shown, "freshness": services.queries.freshness()}

    @v1.get("/stats", tags=["read"])
    def stats(me: Me, region: RegionParam = None, as_of: TimeParam = None,
              known_at: TimeParam = None) -> dict[str, Any]:
        """Per region: in register, received, discharged, terminated, open gaps per rule, 脱管漏管率 (‰)."""
        require(me, Role.OVERSIGHT, Role.AUDITOR)
        items = services.queries.stats(region=scoped_region(me, region), as_of=moment(as_of, "as_of"),
                                       known_at=moment(known_at, "known_at"))
        return {"items": items, "freshness": services.queries.freshness()}

    def visible_person(me: Principal, id_number: str, as_of: str | None, known_at: str | None) -> dict[str, Any]:
        require(me, Role.OVERSIGHT, Role.AUDITOR)
        try:
            record = services.queries.status(checked_id_number(id_number), as_of=moment(as_of, "as_of"),
                                             known_at=moment(known_at, "known_at"))
        except Unfoldable as unfoldable:
            if me.role is not Role.AUDITOR:  # the region is unknown, so is whether this person is in scope
                raise ApiError(404, "not_found", "no such person in your scope") from None
            raise ApiError(409, "quarantined", f"此人的事件无法处理，已隔离并告警 / this person's events cannot be "
                                               f"folded; quarantined and alerted: {unfoldable.problem}") from None
        region = record["episode"]["current_region"] if record and record["episode"] else None
        if record is None or not me.sees_region(region or (record["responsible"] or {}).get("region")):
            # 404, not 403: outside one's scope a person's very existence is not disclosed.
            raise ApiError(404, "not_found", "no such person in your scope")
        return record

    @v1.get("/persons/{id_number}", tags=["read"])
    def person(me: Me, id_number: str, as_of: TimeParam = None, known_at: TimeParam = None) -> dict[str, Any]:
        """Status, responsible agency, current episode, open obligations and gaps."""
        id_number = checked_id_number(id_number)
        record = visible_person(me, id_number, as_of, known_at)
        principals.record_access(me, "GET /v1/persons/{id}", id_number)
        return record

    @v1.get("/persons/{id_number}/history", tags=["read"])
    def history(me: Me, id_number: str, as_of: TimeParam = None, known_at: TimeParam = None) -> dict[str, Any]:
        """The person's recorded events in occurred_at order (those occurred by as_of and recorded by known_at)."""
        id_number = checked_id_number(id_number)
        record = visible_person(me, id_number, as_of, known_at)
        events = person_history(services.store, id_number, record["linked_keys"]) or []
        as_of_moment, known_moment = moment(as_of, "as_of"), moment(known_at, "known_at")
        events = [e for e in events
                  if (as_of_moment is None or dt.datetime.fromisoformat(e["occurred_at"]) <= as_of_moment)
                  and (known_moment is None or dt.datetime.fromisoformat(e["recorded_at"]) <= known_moment)]
        principals.record_access(me, "GET /v1/persons/{id}/history", id_number)
        return {"items": events}

    @v1.get("/persons/{id_number}/timeline", tags=["read"])
    def timeline(me: Me, id_number: str, as_of: TimeParam = None, known_at: TimeParam = None) -> dict[str, Any]:
        """One lane per agency: events as marks, obligations as bars from trigger to due time, gaps flagged."""
        id_number = checked_id_number(id_number)
        visible_person(me, id_number, as_of, known_at)
        principals.record_access(me, "GET /v1/persons/{id}/timeline", id_number)
        return services.timelines.timeline(id_number, as_of=moment(as_of, "as_of"),
                                           known_at=moment(known_at, "known_at"))

    # -- the lead register (线索台账) -------------------------------------------------------------------------------

    @v1.get("/leads", tags=["leads"])
    def leads(me: Me, state: LeadStateParam = None, region: RegionParam = None, rule: RuleParam = None,
              agency: AgencyParam = None, assignee: Annotated[str | None, Query(max_length=64)] = None,
              q: Annotated[str | None, Query(max_length=100, description=(
                  "姓名、身份证号或案号 / name, ID number or case number"))] = None,
              as_of: TimeParam = None, known_at: TimeParam = None, sort: SortParam = "due",
              limit: Limit = PAGE_DEFAULT, offset: Offset = 0) -> dict[str, Any]:
        """Leads (every gap and anomaly, open or late) with their state, most overdue first, a page with the total.
        `as_of` / `known_at`: the register as it stood then."""
        require(me, Role.OVERSIGHT, Role.AUDITOR)
        query = LeadQuery(region=region, state=state, rule=rule, agency=str(agency) if agency else None,
                          assignee=assignee, q=q, as_of=moment(as_of, "as_of"),
                          known_at=moment(known_at, "known_at"), limit=limit, offset=offset, order=sort)
        scope = {"region": scoped_region(me, region), "agency": query.agency}
        result = services.leads.page(query, scope)
        principals.record_access(me, f"GET /v1/leads region={scope['region']} state={state} q={'…' if q else None}",
                                 [item["id_number"] for item in result["items"]])
        return {**result, "freshness": services.queries.freshness()}

    @v1.get("/leads/{lead_id}", tags=["leads"])
    def lead(me: Me, lead_id: Annotated[str, Path(max_length=80)], as_of: TimeParam = None,
             known_at: TimeParam = None) -> dict[str, Any]:
        """One lead: its gap, its state, who holds it and every action taken on it (as of a moment)."""
        require(me, Role.OVERSIGHT, Role.AUDITOR)
        try:
            record = services.leads.lead(lead_id, me.sees_region, as_of=moment(as_of, "as_of"),
                                         known_at=moment(known_at, "known_at"), supervisor=me.supervisor)
        except LeadNotFound:
            raise ApiError(404, "not_found", "no such lead in your scope") from None
        principals.record_access(me, "GET /v1/leads/{id}", record["id_number"])
        return record

    @v1.post("/leads/{lead_id}/actions", tags=["leads"])
    def lead_action(request: Request, me: Me, lead_id: Annotated[str, Path(max_length=80)],
                    body: LeadActionBody) -> dict[str, Any]:
        """Act on a lead: assign, start_check, confirm, dismiss, issue_notice, follow_up, close, snooze, escalate;
        a supervisor approves or rejects a long snooze or an escalation. A refused transition is a 409."""
        require(me, Role.OVERSIGHT)
        try:
            record = services.leads.act(lead_id, body.action, body.model_dump(exclude={"action"}, exclude_none=True),
                                        actor_of(me), me.sees_region, principals.active)
        except LeadNotFound:
            raise ApiError(404, "not_found", "no such lead in your scope") from None
        except LeadRefused as refused:
            raise ApiError(REFUSAL_STATUS.get(refused.code, 409), refused.code, refused.message) from None
        principals.record_access(me, f"POST /v1/leads/{{id}}/actions {body.action}", record["id_number"])
        return record

    # -- who is who (identity) ------------------------------------------------------------------------------------

    def identity_refused(refused: IdentityRefused) -> ApiError:
        return ApiError(refused.status, refused.code, refused.message)

    def agency_dict(body: Any) -> dict[str, str] | None:
        return {"kind": str(body.agency.kind), "id": body.agency.id, "region": body.agency.region} \
            if body.agency else None

    @v1.get("/identity/candidates", tags=["identity"])
    def identity_candidates(me: Me) -> dict[str, Any]:
        """Probable matches (疑似同一人): person keys with the same normalised name and birth date that no link joins,
        not dismissed; each group with its members (document, number, name, region)."""
        require(me, Role.OVERSIGHT, Role.AUDITOR)
        items = services.identity.candidates(me.sees_region)
        principals.record_access(me, "GET /v1/identity/candidates", keys_of(items))
        return {"items": items}

    @v1.post("/identity/candidates/{candidate_id}/link", tags=["identity"])
    def identity_candidate_link(me: Me, candidate_id: Annotated[str, Path(max_length=40)],
                                body: CandidateLinkBody) -> dict[str, Any]:
        """Link the group's other keys to `keep` (an identity_linked event each)."""
        require(me, Role.OVERSIGHT, Role.ADMIN)
        visible = me.sees_region if me.role is Role.OVERSIGHT else (lambda region: True)
        try:
            done = services.identity.link_candidate(candidate_id, body.keep, body.reason, actor_of(me), visible,
                                                    agency_dict(body))
        except IdentityRefused as refused:
            raise identity_refused(refused) from None
        principals.record_access(me, "POST /v1/identity/candidates/{id}/link",
                                 [body.keep, *(e["person"] for e in done["events"])])
        return done

    @v1.post("/identity/candidates/{candidate_id}/dismiss", tags=["identity"])
    def identity_candidate_dismiss(me: Me, candidate_id: Annotated[str, Path(max_length=40)],
                                   body: CandidateDismissBody) -> dict[str, Any]:
        """Not one person: the group leaves the queue (kept with the reason and who decided)."""
        require(me, Role.OVERSIGHT)
        try:
            done = services.identity.dismiss(candidate_id, body.reason, actor_of(me), me.sees_region)
        except IdentityRefused as refused:
            raise identity_refused(refused) from None
        principals.record_access(me, "POST /v1/identity/candidates/{id}/dismiss", [])
        return done

    @v1.post("/identity/links", tags=["identity"])
    def identity_link(me: Me, body: IdentityLinkBody) -> dict[str, Any]:
        """Link or unlink two person keys: an officer in the name of their agency, an admin in the name of the
        agency that made the error (`agency`). Agencies may also publish the events themselves (POST /v1/events)."""
        require(me, Role.OVERSIGHT, Role.ADMIN)
        if me.role is Role.ADMIN and body.agency is None:
            raise ApiError(422, "invalid_action", "管理员须写明出错的机关 agency {kind, id, region} / an admin names the "
                                                  "agency that made the error (agency)")
        if me.role is Role.OVERSIGHT:  # an officer links only persons of their region (404 outside, as a read)
            for key in (body.person, body.other):
                visible_person(me, key, None, None)
        try:
            done = services.identity.publish(body.action, body.person, body.other, body.reason,
                                             None if me.role is Role.ADMIN else actor_of(me), agency_dict(body))
        except IdentityRefused as refused:
            raise identity_refused(refused) from None
        principals.record_access(me, f"POST /v1/identity/links {body.action}", [done["person"], done["other"]])
        return done

    # -- rosters (名单碰撞) -------------------------------------------------------------------------------------------

    @v1.post("/rosters", tags=["rosters"], openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "required": ["as_of", "rows"], "properties": {
            "as_of": {"type": "string", "format": "date"}, "source": {"type": "string", "example": "court:FY-632801"},
            "region": {"type": "string"}, "rows": {"type": "array", "items": {"type": "object"}}}}},
        "text/csv": {"schema": {"type": "string"}},
        XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
    async def post_roster(request: Request, me: Me, as_of: TimeParam = None,
                          source: Annotated[str | None, Query(max_length=120, description=(
                              "KIND:AGENCY_ID (oversight and operators); an agency sends its own list"))] = None,
                          region: RegionParam = None,
                          columns: Annotated[str | None, Query(max_length=500, description=(
                              "FIELD=HEADER,... for a file with other headers"))] = None) -> JSONResponse:
        """An agency's roster (CSV, XLSX, or JSON rows) compared with the record as of a day: every difference is a
        finding, an anomaly (A05 court judgments, A06 bureau register, A07 detention admissions) and a lead. An
        agency sends its own list; oversight staff may send one of an agency of their region (`source`)."""
        require(me, Role.PUBLISHER, Role.OVERSIGHT)
        body, oversized = await read_body(request, MAX_ROSTER_BYTES)
        keep_as = Source(name=f"http-roster:{me.kind or me.role}:{me.agency_id or me.name}")

        async def refuse(status: int, code: str, message: str) -> JSONResponse:
            await run_in_threadpool(services.ingestor.refuse, body, RejectionCode.MALFORMED, message, keep_as,
                                    "roster")
            return error(status, code, in_language(request, message))

        if oversized:
            return await refuse(413, "too_large", f"名单超过 {MAX_ROSTER_BYTES} 字节，请分批报送 / roster over "
                                                  f"{MAX_ROSTER_BYTES} bytes: send it in parts")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == "application/json":
                payload = json.loads(body)
                if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
                    raise RosterError(['JSON 名单应为 {"as_of": "YYYY-MM-DD", "rows": [{...}]} / a JSON roster is '
                                       '{"as_of": "YYYY-MM-DD", "rows": [{...}]}'])
                as_of = as_of or payload.get("as_of")
                source = source or payload.get("source")
                region = region or payload.get("region")
                header, lines = json_table(payload["rows"])
            else:
                header, lines = read_table(body, "roster.xlsx" if content_type == XLSX_TYPE else "roster.csv")
            if me.role == Role.PUBLISHER:
                if source and source != f"{me.kind}:{me.agency_id}":
                    raise ApiError(403, "forbidden", "机关只能报送本机关的名单 / an agency sends its own list only")
                roster_source = RosterSource.parse(f"{me.kind}:{me.agency_id}")
                region = region or me.region
            else:
                if not source:
                    raise RosterError(["请以 source=类别:机关代码 指明名单来源 / give source=KIND:AGENCY_ID"])
                roster_source = RosterSource.parse(source)
            day = _roster_day(as_of)
            if me.role == Role.OVERSIGHT:
                known = services.agencies.get(roster_source.agency_id)
                where = region or (known.region if known else None)
                if where is None or not me.sees_region(where):
                    raise ApiError(403, "outside_scope", "该机关不在您的辖区（或未登记其区划：请给出 region） / the agency "
                                                         "is outside your region (or give its region)")
            report = await run_in_threadpool(
                services.rosters.receive, roster_source, header, lines, day, parse_column_map(columns),
                f"http:{content_type or 'unknown'}", f"{me.role}:{me.name}", region)
        except (RosterError, UnreadableFile, ValueError) as problem:
            return await refuse(422, "invalid_roster", str(problem))
        principals.record_access(me, f"POST /v1/rosters {roster_source}",
                                 [f["id_number"] for f in report["findings"]])
        return JSONResponse(report)

    @v1.get("/rosters/{roster_id}", tags=["rosters"])
    def roster(me: Me, roster_id: Annotated[str, Path(max_length=40)]) -> dict[str, Any]:
        """A stored roster compared again as known when it came (`matches_recorded`: the same findings)."""
        require(me, Role.OVERSIGHT, Role.AUDITOR)
        try:
            report = services.rosters.replay(roster_id)
        except RosterNotFound:
            raise ApiError(404, "not_found", "no such roster") from None
        if me.role == Role.OVERSIGHT:
            report["findings"] = [f for f in report["findings"] if me.sees_region(f["region"])]
        principals.record_access(me, "GET /v1/rosters/{id}", [f["id_number"] for f in report["findings"]])
        return report

    @v1.get("/scorecard", tags=["statistics"])
    def scorecard(me: Me, month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")],
                  region: RegionParam = None, current: bool = False) -> dict[str, Any]:
        """The monthly scorecard (月度通报) as known at the month's end: per agency the obligations due and the share
        met on time, the median delay of the late ones, events published, backdated and refused, roster findings;
        per region the 脱管漏管率, its change on the month before and the ranking. `current`: the same month as
        known now beside it."""
        require(me, Role.OVERSIGHT, Role.AUDITOR)
        try:
            return services.scorecards.month(month, scoped_region(me, region), current=current)
        except BadMonth as problem:
            raise ApiError(422, "invalid_month", str(problem)) from None

    @v1.get("/schemas", tags=["service"])
    def schemas(me: Me) -> dict[str, Any]:
        """The JSON Schema of the envelope and of every event type's payload, with who may publish it."""
        return event_schemas()

    @v1.get("/quarantine", tags=["audit"])
    def quarantine(me: Me) -> dict[str, Any]:
        """Persons whose events the fold cannot process (quarantined, out of every figure), with the problem."""
        require(me, Role.AUDITOR)
        items = [{"id_number": row.id_number, "name": row.name, "problem": row.problem}
                 for row in services.queries.quarantined()]
        principals.record_access(me, "GET /v1/quarantine", [item["id_number"] for item in items])
        return {"items": items, "freshness": services.queries.freshness()}

    @v1.get("/access-log", tags=["audit"])
    def access_log(me: Me, subject: Annotated[str | None, Query(max_length=18, description=(
                       "只看读取过此身份证号的记录（x 与 X 等同） / only reads of this ID number (x matches X)"))] = None,
                   limit: Limit = PAGE_DEFAULT, offset: Offset = 0) -> dict[str, Any]:
        """Who read whose personal data, newest first (auditors only)."""
        require(me, Role.AUDITOR)
        return page(principals.access_log(limit + 1, offset, subject), limit, offset)

    @v1.get("/principals", tags=["admin"])
    def list_principals(me: Me) -> dict[str, Any]:
        require(me, Role.ADMIN)
        return {"items": [p.summary() for p in principals.all()]}

    @v1.delete("/principals/{principal_id}", tags=["admin"])
    def revoke_principal(me: Me, principal_id: str) -> dict[str, Any]:
        require(me, Role.ADMIN)
        from services.principals import PrincipalError

        try:
            return principals.revoke(principal_id).summary()
        except PrincipalError as problem:
            raise ApiError(404, "not_found", str(problem)) from None

    app.include_router(v1)
    if dashboard is None:
        from services.entrypoints.http.dashboard import create_router  # server-rendered pages on the same app

        dashboard = create_router(services)
    app.include_router(dashboard)

    def openapi() -> dict[str, Any]:
        """The generated document, plus the Envelope schema that POST /v1/events refers to."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            envelope = Envelope.model_json_schema(ref_template="#/components/schemas/{model}")
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(envelope.pop("$defs", {}))
            components["Envelope"] = envelope
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _serve_docs(app, Me, lambda request: request_principal(services, request))
    return app


DOCS_ASSETS = "/static-offline-docs"


def _serve_docs(app: FastAPI, Me: Any, principal_of: Any) -> None:
    """Swagger UI and ReDoc from fastapi-offline's packaged assets (a government intranet reaches no CDN), and the
    OpenAPI document, to authenticated principals only: a bearer token, or the dashboard's login in a browser."""
    from pathlib import Path

    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import RedirectResponse
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_ASSETS, StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"),
              name="docs-assets")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_document(me: Me) -> JSONResponse:
        return JSONResponse(app.openapi())

    pages = {
        "/docs": lambda: get_swagger_ui_html(
            openapi_url="/openapi.json", title="handoff API 接口文档", swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css", swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png"),
        "/redoc": lambda: get_redoc_html(
            openapi_url="/openapi.json", title="handoff API 接口文档", redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False),
    }
    for path, build in pages.items():
        def page(request: Request, build: Any = build) -> Response:
            """A browser without a login goes to the dashboard's login, and comes back."""
            if principal_of(request) is None:
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            return build()

        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)


def event_schemas() -> dict[str, Any]:
    return {
        "envelope": Envelope.model_json_schema(),
        "event_types": {
            event_type: {"publishers": sorted(spec.publishers), "meaning": spec.meaning,
                         "payload": spec.payload.model_json_schema()}
            for event_type, spec in CATALOG.items()
        },
    }
