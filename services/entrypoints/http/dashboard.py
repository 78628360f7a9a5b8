"""The oversight dashboard: server-rendered HTML pages (Jinja2, inline SVG pictures, no JavaScript, nothing loaded
from elsewhere) over the same queries and the same scoping rules as the JSON API (`services/entrypoints/http/api.py`).

Pages: `/login` (paste a token once; the browser then holds only a server-side session's id, in an HttpOnly,
SameSite=Strict cookie `handoff_session`), `/logout` (a POST with the session's CSRF token, as every form), `/` (overview:
people by category and status, open gaps by rule, the 脱管漏管率 and its trend by month), `/gaps` (the gap queue,
most overdue first) and `/persons/{id_number}` (status, obligations and the timeline picture). Every page takes
`?as_of=YYYY-MM-DD` (the end of that day; today or no date: now, the fast read-model path) and `?lang=en|zh`
(remembered in a cookie; Chinese by default).

Who sees what, as in the API: oversight staff their region prefix (a person outside it is a 404: their existence is
not disclosed), auditors everything, a publisher only the gaps its own agency bears (no persons, no statistics),
an administrator no personal data at all. Every page showing personal data writes an access record.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from domain.calendar import SHANGHAI, end_of_day
from domain.catalog import date_range_problem, plausible_dates
from domain.identity import id_number_problem
from domain.principals import OutsideScope, Principal, Role

from services.bootstrap import Services
from services.entrypoints.http.labels import (AGENCY_LABELS, CATEGORY_LABELS, EVENT_LABELS, ROLE_LABELS,
                                              STATE_LABELS, STATUS_LABELS, TEXT)
from services.entrypoints.http.pictures import (bar_rows, fmt_date, fmt_due, fmt_time, timeline_picture,
                                                trend_picture)
from services.overview import TREND_MONTHS, Overview

log = logging.getLogger(__name__)

# The browser holds only a server-side session's id (adapters/sessions.py), never the API token.
SESSION_COOKIE = "handoff_session"
LANG_COOKIE = "handoff_lang"
SESSION_SECONDS = 12 * 3600  # the cookie's life; the session itself ends sooner when idle
PER_PAGE = 50
MAX_LOGIN_BODY = 4096
TEMPLATES = Path(__file__).parent / "templates"
AGENCY_KINDS = ("court", "procuratorate", "police", "prison", "bureau")
STATES = ("open", "late", "all")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # Same-origin, not no-referrer: with no-referrer a browser's form POST says `Origin: null`, and the forms' origin
    # check (Dashboard.same_origin) could not tell this site from any other. Nothing leaves the site either way.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

class DashboardError(Exception):
    def __init__(self, status: int, key: str, **params: Any):
        super().__init__(key)
        self.status, self.key, self.params = status, key, params


# -- the pages --------------------------------------------------------------------------------------------------------


class Dashboard:
    def __init__(self, services: Services):
        self.services = services
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True,
        )
        self.env.filters.update(time=fmt_time, date=fmt_date, due=fmt_due)
        self.overview_figures = Overview(services.queries, services.projection, services.read_model, services.store)
        self.trends = self.overview_figures.trends

    # -- plumbing -------------------------------------------------------------------------------------------------

    def today(self) -> dt.date:
        return self.services.queries.clock().astimezone(SHANGHAI).date()

    @staticmethod
    def language(request: Request) -> str:
        wanted = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
        return wanted if wanted in ("zh", "en") else "zh"

    def render(self, request: Request, template: str, context: dict[str, Any], status: int = 200,
               lang: str | None = None) -> HTMLResponse:
        lang = lang or self.language(request)
        text = TEXT[lang]

        def t(key: str, **params: Any) -> str:
            value = text[key]
            return value.format(**params) if params else value

        query = {k: v for k, v in request.query_params.items() if k != "lang"}

        def lang_href(target: str) -> str:
            return request.url.path + "?" + urllib.parse.urlencode({**query, "lang": target})

        as_of_param = context.get("as_of_param")

        def href(path: str, **params: Any) -> str:
            merged = {"as_of": as_of_param, **params}
            merged = {k: v for k, v in merged.items() if v not in (None, "")}
            return path + ("?" + urllib.parse.urlencode(merged) if merged else "")

        rule_title = self.rule_titles(lang)
        html = self.env.get_template(template).render(
            t=t, lang=lang, href=href, lang_href=lang_href, rule_title=rule_title,
            status_label=lambda s: STATUS_LABELS[lang].get(s, s or "—") if s else "—",
            category_label=lambda c: CATEGORY_LABELS[lang].get(c, c or "—") if c else "—",
            agency_label=lambda k: AGENCY_LABELS[lang].get(k, k or "—") if k else "—",
            state_label=lambda s: STATE_LABELS[lang].get(s, s),
            role_label=lambda r: ROLE_LABELS[lang].get(str(r), str(r)),
            event_label=lambda e: EVENT_LABELS.get(e, e) if lang == "zh" else e,
            provisional_mark=lambda: Markup('<span class="provisional small" title="{}">{}</span>').format(
                t("provisional_help"), t("provisional")),
            path=request.url.path, csrf_token=getattr(request.state, "csrf", None),
            # Pages never wait for the projector: when it is behind, they say so.
            freshness=self.services.queries.freshness() if context.get("principal") else None,
            **{"principal": None, "as_of_param": None, "as_of_date": None,
                                      "notice": None, "hidden": {}, **context},
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if request.query_params.get("lang") in ("zh", "en"):
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/", httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
        return response

    def rule_titles(self, lang: str):
        rules = self.services.rules

        def rule_title(rule: str) -> str:
            if lang != "zh":
                return rule.split("_", 1)[-1].replace("_", " ")
            try:
                return rules[rule].title
            except KeyError:
                return rule
        return rule_title

    def principal(self, request: Request) -> Principal | None:
        """The principal of the request's session (its CSRF token kept on request.state for the forms)."""
        found = self.services.sessions.resolve(request.cookies.get(SESSION_COOKIE))
        if found is None:
            return None
        principal, session = found
        request.state.csrf = session.csrf
        return principal

    @staticmethod
    def same_origin(request: Request) -> bool:
        """A browser's POST says where its page came from (Origin, else Referer): it must be this site."""
        source = request.headers.get("origin") or request.headers.get("referer")
        if not source:
            return True  # not a browser (browsers send Origin with every POST)
        parts = urllib.parse.urlsplit(source)
        return (parts.scheme, parts.netloc) == (request.url.scheme, request.url.netloc)

    def refused_form(self, request: Request) -> Response:
        lang = self.language(request)
        return self.render(request, "error.html", {"message": TEXT[lang]["csrf"], "as_of_date": self.today()},
                           status=403)

    def checked_form(self, request: Request, fields: dict[str, list[str]]) -> Principal | None:
        """The principal of a form POST whose CSRF token matches its session's and that came from this site."""
        principal = self.principal(request)
        sent = (fields.get("csrf_token") or [""])[0]
        expected = getattr(request.state, "csrf", None)
        if principal is None or expected is None or not self.same_origin(request) or \
                not hmac.compare_digest(sent.encode(), expected.encode()):
            return None
        return principal

    @staticmethod
    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse("/login?" + urllib.parse.urlencode({"next": target}), status_code=303)
        response.headers.update(SECURITY_HEADERS)
        return response

    def page(self, request: Request, build) -> Response:
        """Authenticate from the cookie (or go to /login), read as_of, build the page; errors as HTML pages."""
        principal = self.principal(request)
        if principal is None:
            return self.to_login(request)
        context: dict[str, Any] = {"principal": principal}
        try:
            as_of, as_of_date, notice = self.as_of(request.query_params.get("as_of"))
            context.update(as_of_date=as_of_date, notice=notice,
                           as_of_param=as_of_date.isoformat() if as_of is not None else None)
            template, built = build(principal, as_of, as_of_date, self.language(request))
            context.update(built)
            return self.render(request, template, context)
        except DashboardError as problem:
            lang = self.language(request)
            params = {**problem.params}
            if "role" in params:
                params["role"] = ROLE_LABELS[lang].get(params["role"], params["role"])
            context["message"] = TEXT[lang][problem.key].format(**params)
            context.setdefault("as_of_date", self.today())
            return self.render(request, "error.html", context, status=problem.status)

    def as_of(self, text: str | None) -> tuple[dt.datetime | None, dt.date, str | None]:
        """The as-of date: None for now (today or no date; the read models), else the end of that day."""
        today = self.today()
        if not text:
            return None, today, None
        try:
            if len(text) != 10:
                raise ValueError
            day = dt.date.fromisoformat(text)
            if date_range_problem(day):
                raise ValueError
        except ValueError:
            earliest, latest = plausible_dates()
            raise DashboardError(422, "bad_request", detail=f"as_of={text[:40]!r} (YYYY-MM-DD, "
                                 f"{earliest.isoformat()} – {latest.isoformat()})") from None
        if day >= today:
            return None, today, ("future_date" if day > today else None)
        return end_of_day(day), day, None

    @staticmethod
    def require(principal: Principal, *roles: Role) -> None:
        if principal.role not in roles:
            raise DashboardError(403, "forbidden", role=str(principal.role))

    @staticmethod
    def scoped_region(principal: Principal, region: str | None) -> str | None:
        """As the API: oversight staff stay inside their prefix; others filter as they like."""
        if region is not None and (not region.isdigit() or len(region) > 6):
            raise DashboardError(422, "bad_request", detail="region: digits, at most 6")
        try:
            return principal.region_filter(region)
        except OutsideScope:
            raise DashboardError(403, "outside_scope", region=region, scope=principal.region or "") from None

    # -- login ----------------------------------------------------------------------------------------------------

    def login_form(self, request: Request) -> Response:
        info = "logged_out" if request.query_params.get("bye") else None
        return self.render(request, "login.html", {"next": safe_next(request.query_params.get("next")),
                                                   "error": None, "info": info})

    @staticmethod
    async def form_fields(request: Request) -> dict[str, list[str]]:
        body = b""
        async for chunk in request.stream():  # a dashboard form is small: read no more than that
            body += chunk
            if len(body) > MAX_LOGIN_BODY:
                break
        return urllib.parse.parse_qs(body[:MAX_LOGIN_BODY].decode("utf-8", "replace"))

    async def login(self, request: Request) -> Response:
        if not self.same_origin(request):  # login CSRF: a foreign page must not log the browser in as someone
            return self.refused_form(request)
        fields = await self.form_fields(request)
        token = (fields.get("token") or [""])[0].strip()
        target = safe_next((fields.get("next") or [""])[0])
        opened = await run_in_threadpool(self.services.sessions.open, token) if token else None
        if opened is None:
            return self.render(request, "login.html", {"next": target, "error": True, "info": None}, status=401)
        session_id, _, _ = opened
        response = RedirectResponse(target or "/", status_code=303)
        response.headers.update(SECURITY_HEADERS)
        response.set_cookie(SESSION_COOKIE, session_id, max_age=SESSION_SECONDS, path="/", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        fields = await self.form_fields(request)
        if await run_in_threadpool(self.checked_form, request, fields) is None:
            if self.principal(request) is not None:  # a live session, but not this site's form: refused
                return self.refused_form(request)
        else:
            await run_in_threadpool(self.services.sessions.close, request.cookies.get(SESSION_COOKIE) or "")
        response = RedirectResponse("/login?bye=1", status_code=303)
        response.headers.update(SECURITY_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    # -- overview -------------------------------------------------------------------------------------------------

    def overview(self, request: Request) -> Response:
        return self.page(request, self.build_overview)

    def build_overview(self, principal: Principal, as_of: dt.datetime | None, as_of_date: dt.date,
                       lang: str) -> tuple[str, dict[str, Any]]:
        queries = self.services.queries
        if principal.role is Role.ADMIN:
            return "overview.html", {"mode": "admin"}
        if principal.role is Role.PUBLISHER:
            gaps = queries.gaps(as_of=as_of, state="open", agency=principal.kind, agency_region=principal.region)
            by_rule = Counter(g["rule"] for g in gaps)
            return "overview.html", {"mode": "publisher", "by_rule": bar_rows(sorted(by_rule.items())),
                                     "total_gaps": len(gaps)}
        region = principal.region if principal.role is Role.OVERSIGHT else None
        figures = self.overview_figures.figures(region, as_of, as_of_date)
        by_category, by_status = self.register_rows(figures.register)
        return "overview.html", {
            "mode": "figures", "scope": region, "stats": figures.stats, "summary": figures.summary,
            "by_rule": bar_rows(figures.summary["open_gaps"].items()),
            "by_category": by_category, "by_status": by_status,
            "trend": trend_picture(figures.trend), "trend_months": TREND_MONTHS,
        }

    @staticmethod
    def register_rows(register: list[tuple[str | None, str | None, bool]]) -> tuple[list, list]:
        """The register (services/overview.py) counted by category and by status, in the labels' order."""
        categories: dict[str, list[int]] = {c: [0, 0] for c in CATEGORY_LABELS["zh"]}
        statuses: dict[str, list[int]] = {}
        for status, category, in_register in register:
            for table, key in ((categories, category or "—"), (statuses, status or "—")):
                counts = table.setdefault(key, [0, 0])
                counts[0] += in_register
                counts[1] += 1
        order = list(STATUS_LABELS["zh"])
        status_rows = sorted(statuses.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
        by_category = bar_rows([(k, v[0]) for k, v in categories.items()],
                               extra={k: v[1] for k, v in categories.items()})
        by_status = bar_rows([(k, v[1]) for k, v in status_rows], extra={k: v[0] for k, v in status_rows})
        return by_category, by_status

    # -- the gap queue --------------------------------------------------------------------------------------------

    def gaps(self, request: Request) -> Response:
        return self.page(request, lambda p, as_of, day, lang: self.build_gaps(request, p, as_of))

    def build_gaps(self, request: Request, principal: Principal,
                   as_of: dt.datetime | None) -> tuple[str, dict[str, Any]]:
        self.require(principal, Role.PUBLISHER, Role.OVERSIGHT, Role.AUDITOR)
        q = request.query_params
        region = q.get("region") or None
        rule = q.get("rule") or None
        agency = q.get("agency") or None
        state = q.get("state") or "open"
        if rule is not None and rule not in self.services.rules.rules:
            raise DashboardError(422, "bad_request", detail=f"rule={rule[:40]!r}")
        if agency is not None and agency not in AGENCY_KINDS:
            raise DashboardError(422, "bad_request", detail=f"agency={agency[:20]!r}")
        if state not in STATES:
            raise DashboardError(422, "bad_request", detail=f"state={state[:20]!r}")
        try:
            page_no = int(q.get("page") or 1)
            if not 1 <= page_no <= 100_000:
                raise ValueError
        except ValueError:
            raise DashboardError(422, "bad_request", detail="page") from None
        agency_region = None
        if principal.role is Role.PUBLISHER:
            if agency is not None and agency != principal.kind:
                raise DashboardError(403, "forbidden", role=str(principal.role))
            agency, agency_region = principal.kind, principal.region
        scoped = self.scoped_region(principal, region)
        offset = (page_no - 1) * PER_PAGE
        items = self.services.queries.gaps(
            as_of=as_of, region=scoped, rule=rule, state=state, limit=PER_PAGE + 1, offset=offset, agency=agency,
            agency_region=agency_region,
            agency_id=principal.agency_id if principal.role is Role.PUBLISHER else None)  # its own agency's only
        self.services.principals.record_access(
            principal, f"dashboard gaps region={scoped} rule={rule} state={state} agency={agency}",
            [gap["id_number"] for gap in items[:PER_PAGE]])
        moment = as_of or self.services.queries.clock()
        rows = []
        for gap in items[:PER_PAGE]:
            due = dt.datetime.fromisoformat(gap["due_at"]) if gap["due_at"] else None
            end = dt.datetime.fromisoformat(gap["fulfilled_at"]) if gap["fulfilled_at"] else moment
            overdue = (end - due).total_seconds() / 86400 if due else None
            rows.append({**gap, "overdue": overdue})
        filters = {"region": region, "rule": rule, "agency": agency if principal.role is not Role.PUBLISHER else None,
                   "state": state if state != "open" else None}
        return "gaps.html", {
            "rows": rows, "page_no": page_no, "has_next": len(items) > PER_PAGE, "offset": offset,
            "filters": filters, "state": state, "region": region or "", "rule": rule or "", "agency": agency or "",
            "rules": list(self.services.rules.rules), "agencies": AGENCY_KINDS, "states": STATES,
            "publisher": principal.role is Role.PUBLISHER,
            "links_persons": principal.role in (Role.OVERSIGHT, Role.AUDITOR),
            "hidden": {k: v for k, v in filters.items() if v},
        }

    # -- a person -------------------------------------------------------------------------------------------------

    def person(self, request: Request, id_number: str) -> Response:
        return self.page(request, lambda p, as_of, day, lang: self.build_person(p, id_number, as_of, lang))

    def build_person(self, principal: Principal, id_number: str, as_of: dt.datetime | None,
                     lang: str) -> tuple[str, dict[str, Any]]:
        self.require(principal, Role.OVERSIGHT, Role.AUDITOR)
        if id_number_problem(id_number):
            raise DashboardError(404, "not_found")
        record = self.services.queries.status(id_number, as_of=as_of)
        region = record["episode"]["current_region"] if record and record["episode"] else None
        if record is None or not principal.sees_region(region or (record["responsible"] or {}).get("region")):
            # 404, not 403: outside one's scope a person's very existence is not disclosed (as the API).
            raise DashboardError(404, "not_found")
        self.services.principals.record_access(principal, "dashboard person", id_number)
        timeline = self.services.timelines.timeline(id_number, as_of=as_of)
        picture = timeline_picture(timeline, lang, self.rule_titles(lang))
        return "person.html", {"record": record, "timeline": timeline, "region": region, "picture": picture}

    # -- routes ---------------------------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        router.add_api_route("/login", self.login_form, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/login", self.login, methods=["POST"], response_class=HTMLResponse)
        router.add_api_route("/logout", self.logout, methods=["POST"], response_class=HTMLResponse)
        router.add_api_route("/", self.overview, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/gaps", self.gaps, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/persons/{id_number}", self.person, methods=["GET"], response_class=HTMLResponse)
        return router


def safe_next(target: str | None) -> str:
    """Only a local path is a place to go back to after login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\", "/login")):
        return ""
    return target[:500]


def create_router(services: Services) -> APIRouter:
    """The dashboard's routes, to be included in the API app: `app.include_router(create_router(services))`."""
    return Dashboard(services).router()
