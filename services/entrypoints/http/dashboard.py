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
from domain.identity import typed_person_key
from domain.messages import english
from domain.regions import region_label
from domain.principals import OutsideScope, Principal, Role

from services.bootstrap import Services
from services.identity import IdentityRefused, keys_of
from domain.leads import DismissReason, LeadRefused

from services.entrypoints import timeparse
from services.entrypoints.exports import (EXPORT_COLUMNS, SCORECARD_AGENCY_COLUMNS, SCORECARD_REGION_COLUMNS,
                                          csv_text, export_row, scorecard_agency_row, scorecard_heading,
                                          scorecard_region_row, scorecard_xlsx, xlsx_bytes)
from services.entrypoints.http.labels import (ACTION_LABELS, AGENCY_LABELS, CATEGORY_LABELS, DISMISS_LABELS,
                                              EVENT_LABELS, LEAD_STATE_LABELS, NOTICE_KIND_LABELS, ROLE_LABELS,
                                              STATE_LABELS, STATUS_LABELS, TEXT)
from services.leads import LEAD_STATES, SORTS, LeadNotFound, LeadQuery, actor_of
from services.entrypoints.http.pictures import (bar_rows, fmt_date, fmt_due, fmt_time, timeline_picture,
                                                trend_picture)
from services.overview import TREND_MONTHS, Overview
from services.scorecard import BadMonth

log = logging.getLogger(__name__)

# The browser holds only a server-side session's id (adapters/sessions.py), never the API token.
SESSION_COOKIE = "handoff_session"
LANG_COOKIE = "handoff_lang"
SESSION_SECONDS = 12 * 3600  # the cookie's life; the session itself ends sooner when idle
PER_PAGE = 50
EXPORT_LIMIT = 100_000  # rows of an export: a province's register fits
DUE_WINDOWS = ("48h", "7d", "14d", "30d")
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
            lead_state_label=lambda s: LEAD_STATE_LABELS[lang].get(s, s),
            action_label=lambda a: ACTION_LABELS[lang].get(a, a),
            dismiss_label=lambda r: DISMISS_LABELS[lang].get(r, r),
            notice_label=lambda k: NOTICE_KIND_LABELS[lang].get(k, k),
            region_label=lambda code: region_label(code) if code else "—",
            agency_name=lambda agency_id: self.services.agencies.label(agency_id) if agency_id else "",
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
            # The register's precision is a figure of now: the past register is read on the register's page.
            "lead_figures": self.services.leads.figures(region) if as_of is None else None,
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
        region = request.query_params.get("region") or None
        rule = self.choice(request, "rule", self.services.rules.rules)
        agency = self.choice(request, "agency", AGENCY_KINDS)
        state = self.choice(request, "state", STATES) or "open"
        page_no = self.page_number(request)
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
        id_number, problem = typed_person_key(id_number)
        if problem:
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

    # -- the lead register ---------------------------------------------------------------------------------------

    def leads(self, request: Request) -> Response:
        return self.page(request, lambda p, as_of, day, lang: self.build_leads(request, p, as_of, day, lang))

    def _lead_query(self, request: Request, principal: Principal, as_of: dt.datetime | None,
                    limit: int, offset: int) -> tuple[LeadQuery, dict[str, Any]]:
        """The register's filters from the query string, checked; and the filters to keep in links."""
        self.require(principal, Role.OVERSIGHT, Role.AUDITOR)
        q = request.query_params
        state = self.choice(request, "state", LEAD_STATES)
        rule = self.choice(request, "rule", self.services.rules.rules)
        agency = self.choice(request, "agency", AGENCY_KINDS)
        sort = self.choice(request, "sort", SORTS) or "due"
        search = (q.get("q") or "").strip()[:100] or None
        assignee = (q.get("assignee") or "")[:64] or None
        region = q.get("region") or None
        query = LeadQuery(region=self.scoped_region(principal, region), state=state, rule=rule, agency=agency,
                          assignee=assignee, q=search, as_of=as_of, limit=limit, offset=offset, order=sort)
        filters = {"state": state, "rule": rule, "agency": agency, "q": search, "assignee": assignee,
                   "region": region, "sort": sort if sort != "due" else None}
        return query, {k: v for k, v in filters.items() if v}

    def build_leads(self, request: Request, principal: Principal, as_of: dt.datetime | None, as_of_date: dt.date,
                    lang: str) -> tuple[str, dict[str, Any]]:
        page_no = self.page_number(request)
        query, filters = self._lead_query(request, principal, as_of, PER_PAGE, (page_no - 1) * PER_PAGE)
        register = self.services.leads
        result = register.page(query, {"region": query.region, "agency": query.agency})
        self.services.principals.record_access(principal, f"dashboard leads region={query.region} "
                                               f"state={query.state}", [i["id_number"] for i in result["items"]])
        counts = register.counts(query.region) if as_of is None else None
        tabs = [("all", counts["all"] if counts else "")] + \
            [(s, counts[s] if counts else "") for s in LEAD_STATES]
        pages = max(1, -(-result["total"] // PER_PAGE))
        labels = {"state": TEXT[lang]["state"], "rule": TEXT[lang]["rule"], "agency": TEXT[lang]["agency"],
                  "q": TEXT[lang]["search"], "assignee": TEXT[lang]["assignee"], "region": TEXT[lang]["region"],
                  "sort": TEXT[lang]["sort_by"]}
        return "leads.html", {
            "rows": [{**item, "overdue_days": self.overdue_days(item["gap"], as_of)} for item in result["items"]],
            "total": result["total"], "counts": tabs, "page_no": page_no, "offset": query.offset,
            "has_next": result["next_offset"] is not None, "page_numbers": page_numbers(page_no, pages),
            "filters": filters, "shown_filters": [(labels[k], v) for k, v in filters.items()],
            "state": query.state, "rule": query.rule or "", "agency": query.agency or "", "q": query.q or "",
            "assignee": query.assignee, "region": request.query_params.get("region") or "", "sort": query.order,
            "rules": list(self.services.rules.rules), "agencies": AGENCY_KINDS,
            "hidden": {k: v for k, v in filters.items()},
        }

    def overdue_days(self, gap: dict[str, Any], as_of: dt.datetime | None) -> int | None:
        """Whole days a gap has been (or was) overdue: to its late fulfilment, else to the moment shown."""
        if not gap["due_at"]:
            return None
        end = dt.datetime.fromisoformat(gap["fulfilled_at"]) if gap["fulfilled_at"] else \
            (as_of or self.services.queries.clock())
        return max(0, (end - dt.datetime.fromisoformat(gap["due_at"])).days)

    @staticmethod
    def choice(request: Request, name: str, allowed: Any) -> str | None:
        """A query parameter that must be one of `allowed` (None when absent or empty)."""
        value = request.query_params.get(name) or None
        if value is not None and value not in allowed:
            raise DashboardError(422, "bad_request", detail=f"{name}={value[:40]!r}")
        return value

    @staticmethod
    def page_number(request: Request) -> int:
        try:
            page_no = int(request.query_params.get("page") or 1)
            if not 1 <= page_no <= 100_000:
                raise ValueError
        except ValueError:
            raise DashboardError(422, "bad_request", detail="page") from None
        return page_no

    def export_leads(self, request: Request, kind: str) -> Response:
        """The register with the page's filters, every page of it, as CSV or an Excel workbook."""
        principal = self.principal(request)
        if principal is None:
            return self.to_login(request)
        if kind not in ("csv", "xlsx"):
            return self.render(request, "error.html", {"principal": principal, "as_of_date": self.today(),
                                                       "message": TEXT[self.language(request)]["not_found"]}, 404)
        lang = self.language(request)
        try:
            as_of, as_of_date, _ = self.as_of(request.query_params.get("as_of"))
            query, filters = self._lead_query(request, principal, as_of, EXPORT_LIMIT, 0)
        except DashboardError as problem:
            return self.render(request, "error.html", {"principal": principal, "as_of_date": self.today(),
                                                       "message": TEXT[lang][problem.key].format(**problem.params)},
                               problem.status)
        result = self.services.leads.page(query, {"region": query.region, "agency": query.agency})
        self.services.principals.record_access(principal, f"dashboard leads export {kind} region={query.region}",
                                               [i["id_number"] for i in result["items"]])
        rows = [export_row(item, self.rule_titles("zh")) for item in result["items"]]
        heading = [f"{TEXT['zh']['leads']} 截至 {as_of_date.isoformat()}",
                   "筛选条件：" + ("；".join(f"{k}={v}" for k, v in filters.items()) or "无"),
                   f"共 {result['total']} 条" + (f"（导出前 {len(rows)} 条）" if result["total"] > len(rows) else "")]
        name = f"leads-{as_of_date.isoformat()}.{kind}"
        headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
        if kind == "csv":
            body = csv_text(EXPORT_COLUMNS, rows, bom=True)
            return Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8", headers=headers)
        return Response(xlsx_bytes(TEXT["zh"]["leads"], heading, EXPORT_COLUMNS, rows), headers=headers,
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")

    def lead(self, request: Request, lead_id: str) -> Response:
        return self.page(request, lambda p, as_of, day, lang: self.build_lead(request, p, lead_id, as_of, lang))

    def build_lead(self, request: Request, principal: Principal, lead_id: str, as_of: dt.datetime | None,
                   lang: str, message: str | None = None, message_kind: str = "info") -> tuple[str, dict[str, Any]]:
        self.require(principal, Role.OVERSIGHT, Role.AUDITOR)
        try:
            record = self.services.leads.lead(lead_id, principal.sees_region, as_of=as_of,
                                              supervisor=principal.supervisor)
        except LeadNotFound:
            raise DashboardError(404, "not_found") from None
        self.services.principals.record_access(principal, "dashboard lead", record["id_number"])
        timeline = self.services.timelines.timeline(record["id_number"], as_of=as_of)
        assignees = [p for p in self.services.principals.all()
                     if p.active and p.role is Role.OVERSIGHT and p.sees_region(record["region"])]
        done = request.query_params.get("done")
        if message is None and done in ACTION_LABELS[lang]:
            message = TEXT[lang]["done"].format(action=ACTION_LABELS[lang][done])
        return "lead.html", {
            "lead": record, "overdue_days": self.overdue_days(record["gap"], as_of),
            "picture": timeline_picture(timeline, lang, self.rule_titles(lang)), "timeline": timeline,
            "can_act": principal.role is Role.OVERSIGHT and as_of is None, "assignees": assignees,
            "dismiss_reasons": list(DismissReason), "agencies": AGENCY_KINDS,
            "message": message, "message_kind": message_kind,
        }

    async def lead_action(self, request: Request, lead_id: str) -> Response:
        """An action form of the lead page (CSRF-checked), then back to the lead page, with what happened."""
        fields = await self.form_fields(request)
        principal = await run_in_threadpool(self.checked_form, request, fields)
        if principal is None:
            if self.principal(request) is None:
                return self.to_login(request)
            return self.refused_form(request)
        lang = self.language(request)
        form = {name: values[0].strip() for name, values in fields.items() if values and values[0].strip()}
        action = form.pop("action", "")
        form.pop("csrf_token", None)
        if "addressee_id" in form:
            form["addressed_to"] = {"kind": form.pop("addressee_kind", ""), "id": form.pop("addressee_id")}
        if "reply_within_days" in form:
            try:
                form["reply_within_days"] = int(form["reply_within_days"])
            except ValueError:
                form.pop("reply_within_days")
        try:
            self.require(principal, Role.OVERSIGHT)
            await run_in_threadpool(self.services.leads.act, lead_id, action, form, actor_of(principal),
                                    principal.sees_region, self.services.principals.active)
        except LeadNotFound:
            return self.render(request, "error.html", {"principal": principal, "as_of_date": self.today(),
                                                       "message": TEXT[lang]["not_found"]}, 404)
        except (LeadRefused, DashboardError) as problem:
            message = problem.message if isinstance(problem, LeadRefused) else \
                TEXT[lang][problem.key].format(**{**problem.params, "role": str(principal.role)})
            status = 409 if isinstance(problem, LeadRefused) and problem.code == "invalid_transition" else 422
            if isinstance(problem, DashboardError) or (isinstance(problem, LeadRefused)
                                                        and problem.code.startswith("needs_")):
                status = 403
            text = message if lang == "zh" else english(message)
            try:
                template, built = self.build_lead(request, principal, lead_id, None, lang,
                                                  TEXT[lang]["refused"].format(message=text), "error")
            except DashboardError:
                return self.refused_form(request)
            return self.render(request, template, {"principal": principal, "as_of_date": self.today(), **built},
                               status=status)
        self.services.principals.record_access(principal, f"dashboard lead action {action}", None)
        response = RedirectResponse(f"/leads/{urllib.parse.quote(lead_id)}?done={action}", status_code=303)
        response.headers.update(SECURITY_HEADERS)
        return response

    # -- due soon -------------------------------------------------------------------------------------------------

    def due(self, request: Request) -> Response:
        return self.page(request, lambda p, as_of, day, lang: self.build_due(request, p, lang))

    def build_due(self, request: Request, principal: Principal, lang: str) -> tuple[str, dict[str, Any]]:
        self.require(principal, Role.PUBLISHER, Role.OVERSIGHT, Role.AUDITOR)
        within = request.query_params.get("within") or "7d"
        withins = [(w, w.replace("h", " " + TEXT[lang]["hours"]).replace("d", " " + TEXT[lang]["days"]))
                   for w in DUE_WINDOWS]
        if within not in DUE_WINDOWS:
            raise DashboardError(422, "bad_request", detail=f"within={within[:10]!r}")
        region = request.query_params.get("region") or None
        scope: dict[str, Any] = {"region": self.scoped_region(principal, region)}
        if principal.role is Role.PUBLISHER:
            scope.update(agency=principal.kind, agency_region=principal.region, agency_id=principal.agency_id)
        rows = self.services.queries.upcoming(timeparse.parse_duration(within), **scope)
        self.services.principals.record_access(principal, f"dashboard due within={within}",
                                               [row["id_number"] for row in rows])
        return "due.html", {"rows": rows, "within": within, "withins": withins, "region": region or "",
                            "within_label": dict(withins)[within],
                            "links_persons": principal.role in (Role.OVERSIGHT, Role.AUDITOR)}

    # -- the monthly scorecard (月度通报) -------------------------------------------------------------------------

    def scorecard(self, request: Request) -> Response:
        return self.page(request, lambda p, as_of, day, lang: self.build_scorecard(request, p, lang))

    def _scorecard_report(self, request: Request, principal: Principal) -> dict[str, Any]:
        self.require(principal, Role.OVERSIGHT, Role.AUDITOR)
        month = request.query_params.get("month") or last_month(self.today())
        region = self.scoped_region(principal, request.query_params.get("region") or None)
        try:
            return self.services.scorecards.month(month, region, current=request.query_params.get("current") == "1")
        except BadMonth as problem:
            raise DashboardError(422, "bad_request", detail=str(problem)) from None

    def build_scorecard(self, request: Request, principal: Principal, lang: str) -> tuple[str, dict[str, Any]]:
        report = self._scorecard_report(request, principal)
        current = report.get("current")
        now_by_agency = {(a["kind"], a["agency_id"]): a for a in current["agencies"]} if current else {}
        now_by_region = {r["region"]: r for r in current["regions"]} if current else {}
        self.services.principals.record_access(principal, f"dashboard scorecard {report['month']}", [])
        return "scorecard.html", {"report": report, "now_by_agency": now_by_agency, "now_by_region": now_by_region,
                                  "region": request.query_params.get("region") or "",
                                  "months": recent_months(self.today(), 13)}

    def export_scorecard(self, request: Request, kind: str) -> Response:
        principal = self.principal(request)
        if principal is None:
            return self.to_login(request)
        try:
            if kind not in ("csv", "xlsx"):
                raise DashboardError(404, "not_found")
            report = self._scorecard_report(request, principal)
        except DashboardError as problem:
            lang = self.language(request)
            return self.render(request, "error.html", {"principal": principal, "as_of_date": self.today(),
                                                       "message": TEXT[lang][problem.key].format(**problem.params)},
                               problem.status)
        name = f"scorecard-{report['month']}{'-' + report['region'] if report['region'] else ''}.{kind}"
        headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
        if kind == "csv":
            body = "\n".join(scorecard_heading(report)) + "\n\n" + csv_text(
                SCORECARD_AGENCY_COLUMNS, [scorecard_agency_row(a) for a in report["agencies"]]) + "\n" + csv_text(
                SCORECARD_REGION_COLUMNS, [scorecard_region_row(r) for r in report["regions"]])
            return Response(("\ufeff" + body).encode("utf-8"), media_type="text/csv; charset=utf-8", headers=headers)
        return Response(scorecard_xlsx(report), headers=headers,
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")

    # -- who is who: probable matches (疑似同一人) -------------------------------------------------------------------

    def identity(self, request: Request) -> Response:
        return self.page(request, lambda p, as_of, day, lang: self.build_identity(p, lang))

    def build_identity(self, principal: Principal, lang: str, message: str | None = None,
                       message_kind: str = "ok") -> tuple[str, dict[str, Any]]:
        self.require(principal, Role.OVERSIGHT, Role.AUDITOR)
        items = self.services.identity.candidates(principal.sees_region)
        self.services.principals.record_access(principal, "dashboard identity", keys_of(items))
        return "identity.html", {"items": items, "message": message, "message_kind": message_kind,
                                 "can_act": principal.role is Role.OVERSIGHT}

    async def identity_action(self, request: Request, candidate: str) -> Response:
        """Link or dismiss a group of probable matches (CSRF-checked), then the queue again with what happened."""
        fields = await self.form_fields(request)
        principal = await run_in_threadpool(self.checked_form, request, fields)
        if principal is None:
            return self.to_login(request) if self.principal(request) is None else self.refused_form(request)
        lang = self.language(request)
        form = {name: values[0].strip() for name, values in fields.items() if values and values[0].strip()}
        status, kind = 200, "ok"
        try:
            self.require(principal, Role.OVERSIGHT)
            if form.get("action") == "link":
                await run_in_threadpool(self.services.identity.link_candidate, candidate, form.get("keep", ""),
                                        form.get("reason", ""), actor_of(principal), principal.sees_region)
                message = TEXT[lang]["id_linked"]
            else:
                await run_in_threadpool(self.services.identity.dismiss, candidate, form.get("reason", ""),
                                        actor_of(principal), principal.sees_region)
                message = TEXT[lang]["id_dismissed"]
        except IdentityRefused as refused:
            message = TEXT[lang]["refused"].format(message=refused.message if lang == "zh" else english(
                refused.message))
            status, kind = refused.status, "error"
        except DashboardError as problem:
            message = TEXT[lang][problem.key].format(**{**problem.params, "role": str(principal.role)})
            status, kind = 403, "error"
        try:
            template, built = await run_in_threadpool(self.build_identity, principal, lang, message, kind)
        except DashboardError:
            return self.refused_form(request)
        return self.render(request, template, {"principal": principal, "as_of_date": self.today(), **built},
                           status=status)

    # -- routes ---------------------------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        router.add_api_route("/login", self.login_form, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/login", self.login, methods=["POST"], response_class=HTMLResponse)
        router.add_api_route("/logout", self.logout, methods=["POST"], response_class=HTMLResponse)
        router.add_api_route("/", self.overview, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/gaps", self.gaps, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/persons/{id_number}", self.person, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/leads", self.leads, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/leads/export.{kind}", self.export_leads, methods=["GET"])
        router.add_api_route("/leads/{lead_id}", self.lead, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/leads/{lead_id}/actions", self.lead_action, methods=["POST"],
                             response_class=HTMLResponse)
        router.add_api_route("/due", self.due, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/scorecard", self.scorecard, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/scorecard/export.{kind}", self.export_scorecard, methods=["GET"])
        router.add_api_route("/identity", self.identity, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/identity/{candidate}/actions", self.identity_action, methods=["POST"],
                             response_class=HTMLResponse)
        return router


def last_month(today: dt.date) -> str:
    """The last complete month (a 通报 is of a month that has ended)."""
    before = today.replace(day=1) - dt.timedelta(days=1)
    return f"{before.year:04d}-{before.month:02d}"


def recent_months(today: dt.date, count: int) -> list[str]:
    months, day = [], today.replace(day=1)
    for _ in range(count):
        months.append(f"{day.year:04d}-{day.month:02d}")
        day = (day - dt.timedelta(days=1)).replace(day=1)
    return months


def page_numbers(current: int, pages: int) -> list[int | None]:
    """The page links of a pager: the first, the last and two around the current one; None where pages are left
    out (shown as …)."""
    wanted = sorted({1, pages, *range(max(1, current - 2), min(pages, current + 2) + 1)})
    numbers: list[int | None] = []
    for number in wanted:
        if numbers and number - (numbers[-1] or 0) > 1:
            numbers.append(None)
        numbers.append(number)
    return numbers


def safe_next(target: str | None) -> str:
    """Only a local path is a place to go back to after login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\", "/login")):
        return ""
    return target[:500]


def create_router(services: Services) -> APIRouter:
    """The dashboard's routes, to be included in the API app: `app.include_router(create_router(services))`."""
    return Dashboard(services).router()
