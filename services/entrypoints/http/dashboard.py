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
import math
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from domain.calendar import SHANGHAI, add_months, end_of_day
from domain.catalog import date_range_problem, plausible_dates
from domain.identity import id_number_problem
from domain.principals import OutsideScope, Principal, Role

from services.bootstrap import Services
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

# -- labels -----------------------------------------------------------------------------------------------------------

STATUS_LABELS = {
    "zh": {"assessment": "调查评估中", "awaiting_report": "待报到", "awaiting_transfer": "待移送",
           "under_supervision": "在矫", "transferring": "变更执行地中", "missing": "脱管", "detained": "被羁押",
           "revocation_pending": "撤销/收监审理中", "awaiting_commitment": "已裁定未收监", "fugitive": "在逃",
           "committed": "已收监", "discharged": "解矫", "deceased": "死亡"},
    "en": {"assessment": "assessment", "awaiting_report": "awaiting report", "awaiting_transfer": "awaiting transfer",
           "under_supervision": "under supervision", "transferring": "transferring", "missing": "missing",
           "detained": "detained", "revocation_pending": "revocation pending",
           "awaiting_commitment": "awaiting commitment", "fugitive": "fugitive", "committed": "committed",
           "discharged": "discharged", "deceased": "deceased"},
}
CATEGORY_LABELS = {
    "zh": {"control": "管制", "probation": "缓刑", "parole": "假释", "temporary_release": "暂予监外执行"},
    "en": {"control": "control", "probation": "probation", "parole": "parole",
           "temporary_release": "temporary release"},
}
AGENCY_LABELS = {
    "zh": {"court": "法院", "procuratorate": "检察院", "police": "公安", "prison": "监狱", "bureau": "司法局"},
    "en": {"court": "court", "procuratorate": "procuratorate", "police": "police", "prison": "prison",
           "bureau": "bureau"},
}
STATE_LABELS = {
    "zh": {"open": "逾期未履行", "late": "逾期履行", "all": "全部", "met": "按时履行", "upcoming": "未到期",
           "pending": "未开始"},
    "en": {"open": "open gap", "late": "late", "all": "all", "met": "met", "upcoming": "upcoming",
           "pending": "not started"},
}
ROLE_LABELS = {
    "zh": {"publisher": "发布机关", "oversight": "监督人员", "auditor": "审计人员", "admin": "管理员"},
    "en": {"publisher": "publisher", "oversight": "oversight", "auditor": "auditor", "admin": "administrator"},
}
EVENT_LABELS = {
    "assessment_requested": "委托调查评估", "assessment_reported": "调查评估意见", "decision_effective": "判决裁定生效",
    "bureau_notified": "通知社区矫正机构", "documents_delivered": "送达法律文书", "documents_receipted": "文书回执",
    "prisoner_released": "出监", "subject_transferred": "移送", "subject_reported": "报到",
    "subject_enrolled": "接收登记", "contact_lost": "失去联系", "police_assistance_requested": "通报公安协查",
    "contact_restored": "恢复联系", "warning_issued": "警告", "detention_started": "羁押", "detention_ended": "解除羁押",
    "revocation_proposed": "提请撤销", "commitment_proposed": "提请收监", "arrest_decided": "逮捕决定",
    "revocation_ruled": "撤销裁定", "commitment_decided": "收监决定", "committed_to_custody": "收监执行",
    "pursuit_started": "追捕", "fugitive_captured": "抓获", "transfer_decided": "决定变更执行地",
    "transfer_file_sent": "移交档案", "term_changed": "刑期变更", "monitoring_started": "电子定位开始",
    "monitoring_extended": "电子定位延长", "monitoring_ended": "电子定位解除", "discharged": "解除矫正",
    "death_recorded": "死亡登记", "procuratorial_notice_issued": "检察意见/建议", "notice_replied": "回复检察意见",
    "supervision_review_recorded": "检察监督记录", "event_retracted": "撤回事件",
}

TEXT = {
    "zh": {
        "app": "社区矫正衔接监督", "overview": "概览", "gaps": "衔接缺口", "logout": "退出", "login": "登录",
        "login_title": "登录监督平台", "token": "访问令牌", "token_help": "粘贴 `handoff principal add` 打印的令牌。",
        "bad_token": "令牌无效或已被撤销，请重新输入。", "logged_out": "您已退出。",
        "as_of": "查看日期", "show": "查看", "today": "今天", "as_of_past": "正在回看过去：截至 {date} 日终的情况。",
        "future_date": "不能查看未来日期，已显示今天的情况。", "skip": "跳到正文",
        "scope": "范围", "all_regions": "全部地区", "region": "地区", "regions": "各地区",
        "register_by_category": "在册人员（按矫正类别）", "register_by_status": "在案人员（按监管状态）",
        "category": "类别", "status": "状态", "in_register": "在册", "on_record": "在案", "received": "已接收",
        "discharged_n": "已解矫", "terminated_n": "已终止", "count": "人数",
        "open_gaps_by_rule": "未履行的衔接缺口（按规则）", "rule": "规则", "open_gaps": "缺口数",
        "rate": "脱管漏管率", "rate_short": "脱管漏管率", "rate_help": "在册人员中存在未履行的 R04/R05/R08/R13 缺口者的比例（‰）。",
        "lost_persons": "脱管漏管人数", "lost_days": "脱管漏管人日", "trend": "脱管漏管率月度趋势",
        "trend_help": "过去 {n} 个月末的比率，最后一点为查看日期。", "month_end": "月末", "target": "目标 5‰",
        "no_data": "无数据", "none": "无",
        "gap_queue": "衔接缺口队列", "gap_queue_help": "按逾期时间排序，逾期最久的在前。",
        "filter": "筛选", "state": "状态", "agency": "责任机关", "any": "全部", "apply": "应用",
        "person": "人员", "id_number": "身份证号", "due": "期限", "overdue_days": "逾期天数", "fulfilled": "履行时间",
        "obligated": "责任机关", "prev": "上一页", "next": "下一页", "page": "第 {n} 页", "no_gaps": "没有符合条件的缺口。",
        "days": "天", "hours": "小时",
        "responsible": "当前责任机关", "nobody": "无（已结束）", "episode": "矫正情况", "term": "矫正期限",
        "execution_region": "执行地", "decided_region": "原执行地（决定时）", "ended": "结束", "decided_by": "决定机关",
        "provisional": "暂定", "provisional_help": "按法定节假日推算，调休安排未发布",
        "open_obligations": "未完成的衔接义务", "gap_list": "衔接缺口", "lost_supervision_days": "脱管漏管天数",
        "timeline": "时间线", "timeline_desc": "每个机关一条泳道：圆点为事件，横条为从触发到期限的衔接义务。",
        "legend_met": "按时履行", "legend_upcoming": "未到期", "legend_open": "缺口（逾期未履行，延伸至查看日期）",
        "legend_late": "缺口（逾期履行）", "legend_term": "矫正期限", "legend_asof": "查看日期",
        "events": "事件列表", "event": "事件", "occurred": "发生时间", "recorded": "记录时间", "retracted": "已撤回",
        "publisher_overview": "本机关承担的未履行缺口", "admin_note": "管理员角色不能查看个人数据和统计数据。",
        "until": "至", "term_to": "期满",
        "error": "出错了", "not_found": "未找到：此人不在您的查看范围内，或在所选日期尚无记录。",
        "forbidden": "无权访问：您的角色（{role}）不能查看此页面。", "outside_scope": "地区 {region} 不在您的范围 {scope} 内。",
        "csrf": "表单已过期或并非来自本站，请刷新页面后重试。", "bad_request": "请求无效：{detail}", "back": "返回概览", "signed_in_as": "当前用户",
    },
    "en": {
        "app": "Community corrections handoffs", "overview": "Overview", "gaps": "Gaps", "logout": "Log out",
        "login": "Log in", "login_title": "Log in to the oversight dashboard", "token": "Access token",
        "token_help": "Paste the token printed by `handoff principal add`.",
        "bad_token": "That token is not valid or has been revoked. Please try again.",
        "logged_out": "You have logged out.",
        "as_of": "As of", "show": "Show", "today": "Today",
        "as_of_past": "Looking back: the state at the end of {date}.",
        "future_date": "Future dates cannot be shown; showing today.", "skip": "Skip to content",
        "scope": "Scope", "all_regions": "all regions", "region": "Region", "regions": "By region",
        "register_by_category": "In register, by category", "register_by_status": "On record, by status",
        "category": "Category", "status": "Status", "in_register": "In register", "on_record": "On record",
        "received": "Received", "discharged_n": "Discharged", "terminated_n": "Terminated", "count": "Persons",
        "open_gaps_by_rule": "Open gaps by rule", "rule": "Rule", "open_gaps": "Open gaps",
        "rate": "Lost-supervision rate (脱管漏管率)", "rate_short": "Rate",
        "rate_help": "Share of persons in register with an open R04/R05/R08/R13 gap, per mille.",
        "lost_persons": "Persons lost", "lost_days": "Lost person-days", "trend": "Lost-supervision rate by month",
        "trend_help": "The rate at the last {n} month ends; the last point is the as-of date.",
        "month_end": "Month end", "target": "target 5‰", "no_data": "no data", "none": "none",
        "gap_queue": "Gap queue", "gap_queue_help": "Most overdue first.",
        "filter": "Filter", "state": "State", "agency": "Obligated agency", "any": "any", "apply": "Apply",
        "person": "Person", "id_number": "ID number", "due": "Due", "overdue_days": "Overdue",
        "fulfilled": "Fulfilled", "obligated": "Obligated", "prev": "Previous", "next": "Next", "page": "Page {n}",
        "no_gaps": "No gaps match.", "days": "days", "hours": "hours",
        "responsible": "Responsible agency", "nobody": "nobody (ended)", "episode": "Episode", "term": "Term",
        "execution_region": "Execution region", "decided_region": "Execution region at decision", "ended": "Ended",
        "provisional": "provisional",
        "provisional_help": "counted from the statutory holidays; the year's 调休 arrangement is not published yet",
        "decided_by": "Decided by", "open_obligations": "Open obligations", "gap_list": "Gaps",
        "lost_supervision_days": "Lost supervision days", "timeline": "Timeline",
        "timeline_desc": "One lane per agency: dots are events, bars are obligations from trigger to due time.",
        "legend_met": "met", "legend_upcoming": "upcoming", "legend_open": "gap (open, extends to the as-of date)",
        "legend_late": "gap (fulfilled late)", "legend_term": "term", "legend_asof": "as of",
        "events": "Events", "event": "Event", "occurred": "Occurred", "recorded": "Recorded", "retracted": "retracted",
        "publisher_overview": "Open gaps borne by your agency",
        "admin_note": "The administrator role has no access to personal data or statistics.",
        "until": "until", "term_to": "term ends",
        "error": "Error", "not_found": "Not found: no such person in your scope, or not on record at that date.",
        "forbidden": "Forbidden: your role ({role}) may not see this page.",
        "outside_scope": "Region {region} is outside your scope {scope}.", "bad_request": "Bad request: {detail}",
        "csrf": "The form has expired or did not come from this site: reload the page and try again.",
        "back": "Back to the overview", "signed_in_as": "Signed in as",
    },
}


class DashboardError(Exception):
    def __init__(self, status: int, key: str, **params: Any):
        super().__init__(key)
        self.status, self.key, self.params = status, key, params


# -- formatting -------------------------------------------------------------------------------------------------------


def local(moment: dt.datetime | str | None) -> dt.datetime | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment.astimezone(SHANGHAI)


def fmt_time(moment: dt.datetime | str | None) -> str:
    moment = local(moment)
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "—"


def fmt_date(moment: dt.datetime | str | None) -> str:
    moment = local(moment)
    return moment.strftime("%Y-%m-%d") if moment else "—"


def fmt_due(moment: dt.datetime | str | None) -> str:
    """A due time as the law counts it: 00:00 of a day is 24:00 of the day before."""
    moment = local(moment)
    if moment is None:
        return "—"
    if moment.time() == dt.time(0):
        return f"{(moment.date() - dt.timedelta(days=1)).isoformat()} 24:00"
    return moment.strftime("%Y-%m-%d %H:%M")


# -- the timeline picture ---------------------------------------------------------------------------------------------

SVG_WIDTH, SVG_LEFT, SVG_RIGHT = 1000, 92, 18
AXIS_Y, TERM_Y, LANES_Y = 40, 50, 78
EVENT_ROW, TRACK, LANE_GAP = 24, 12, 8


def _ticks(t0: dt.datetime, t1: dt.datetime) -> tuple[list[dt.datetime], int]:
    """Axis ticks at month starts (every 1, 2, 3, 6... months, at most about 10); weekly for a short span. The step
    in months comes back too (0: weekly)."""
    if t1 - t0 < dt.timedelta(days=70):
        day = t0.astimezone(SHANGHAI).date() + dt.timedelta(days=1)
        ticks = []
        while (moment := dt.datetime.combine(day, dt.time(0), tzinfo=SHANGHAI)) <= t1:
            ticks.append(moment)
            day += dt.timedelta(days=7)
        return ticks, 0
    months = max(1, (t1.year - t0.year) * 12 + t1.month - t0.month)
    step = next(s for s in (1, 2, 3, 6, 12, 24, 60, 120) if months / s <= 10)
    first = dt.date(t0.year, t0.month, 1)
    if step >= 12:
        first = dt.date(t0.year, 1, 1)
    elif step > 1:
        first = dt.date(t0.year, (t0.month - 1) // step * step + 1, 1)
    ticks, day = [], first
    while True:
        moment = dt.datetime.combine(day, dt.time(0), tzinfo=SHANGHAI)
        if moment > t1:
            return ticks, step
        if moment >= t0:
            ticks.append(moment)
        day = add_months(day, step)


def timeline_picture(timeline: dict[str, Any], lang: str, rule_title) -> dict[str, Any]:
    """Coordinates for the SVG: lanes, event marks, obligation bars on tracks, the term band, the as-of line."""
    moment = local(timeline["as_of"])
    events = [{**e, "at": local(e["occurred_at"])} for e in timeline["events"]]
    bars = [{**b, "start": local(b["from"]) or local(b["due_at"]), "due": local(b["due_at"]),
             "done": local(b["fulfilled_at"])} for b in timeline["obligations"]]
    term = timeline["term"]
    term_start = term_end = None
    if term:
        term_start = dt.datetime.combine(dt.date.fromisoformat(term["start"]), dt.time(0), tzinfo=SHANGHAI)
        term_end = end_of_day(dt.date.fromisoformat(term["end"]))
    # The picture spans the history up to as_of; obligations and the term running on into the future are cut at
    # the right edge (with an arrow), or a term of years would squash the history into a corner.
    times = [e["at"] for e in events] + [b["start"] for b in bars] + [moment]
    times += [b["due"] for b in bars if b["state"] != "upcoming"] + [b["done"] for b in bars if b["done"]]
    t0 = min(times + ([term_start] if term_start else []))
    t1 = max(times)
    span = max(t1 - t0, dt.timedelta(days=7))
    t0, t1 = t0 - span * 0.03, t1 + span * 0.1
    plot = SVG_WIDTH - SVG_LEFT - SVG_RIGHT

    def x(t: dt.datetime) -> float:
        t = min(max(t, t0), t1)
        return round(SVG_LEFT + (t - t0) / (t1 - t0) * plot, 1)

    lanes, y = [], LANES_Y
    for kind in timeline["lanes"]:
        lane_bars = sorted((b for b in bars if b["lane"] == kind), key=lambda b: b["start"])
        track_ends: list[float] = []
        drawn = []
        for bar in lane_bars:
            x1 = x(bar["start"])
            if bar["state"] == "open":
                end = moment
            elif bar["state"] in ("met", "late"):
                end = bar["done"] or bar["due"]
            else:
                end = bar["due"]
            x2 = max(x(end), x1 + 3)
            xd = x(bar["due"])
            track = next((i for i, e in enumerate(track_ends) if e + 2 < x1), None)
            if track is None:
                track = len(track_ends)
                track_ends.append(x2)
            else:
                track_ends[track] = x2
            drawn.append({**bar, "x1": x1, "x2": x2, "xd": xd, "track": track, "clipped": end > t1,
                          "overdue_x": min(max(xd, x1), x2), "title": rule_title(bar["rule"])})
        height = EVENT_ROW + max(1, len(track_ends)) * TRACK + LANE_GAP
        for bar in drawn:
            bar["y"] = y + EVENT_ROW + bar["track"] * TRACK
        marks = [{**e, "x": x(e["at"]), "y": y + EVENT_ROW / 2,
                  "label": EVENT_LABELS.get(e["event_type"], e["event_type"]) if lang == "zh" else e["event_type"]}
                 for e in events if e["lane"] == kind]
        lanes.append({"kind": kind, "label": AGENCY_LABELS[lang].get(kind, kind), "y": y, "height": height,
                      "marks": marks, "bars": drawn})
        y += height
    ticks, step = _ticks(t0, t1)
    return {
        "width": SVG_WIDTH, "height": y + 8, "left": SVG_LEFT, "right": SVG_WIDTH - SVG_RIGHT,
        "axis_y": AXIS_Y, "term_y": TERM_Y, "lanes_y": LANES_Y, "bottom": y,
        "ticks": [{"x": x(t), "label": t.strftime("%Y" if step >= 12 else "%Y-%m" if step else "%m-%d")}
                  for t in ticks],
        "term": {"x1": x(term_start), "x2": x(term_end), "clipped": term_end > t1,
                 "start": term["start"], "end": term["end"], "category": term["category"]} if term else None,
        "as_of_x": x(moment), "as_of_label": fmt_date(moment - dt.timedelta(microseconds=1)),
        "as_of_anchor": "start" if x(moment) < SVG_LEFT + 160 else "end",
        "lanes": lanes,
    }


def trend_picture(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Coordinates of the monthly trend chart (a line with points; missing months leave a break)."""
    width, height, left, right, top, bottom = 800, 250, 56, 64, 18, 44
    values = [p["rate"] for p in points if p["rate"] is not None]
    top_value = max([*values, 5.0])
    magnitude = 10 ** math.floor(math.log10(top_value))
    step = next(s * magnitude for s in (0.5, 1, 2, 2.5, 5, 10) if top_value / (s * magnitude) <= 5)
    y_max = step * math.ceil(top_value / step)
    plot_w, plot_h = width - left - right, height - top - bottom

    def y(value: float) -> float:
        return round(top + plot_h - value / y_max * plot_h, 1)

    n = len(points)
    drawn = []
    for i, point in enumerate(points):
        px = round(left + (plot_w * (i + 0.5) / n), 1)
        drawn.append({**point, "x": px, "y": y(point["rate"]) if point["rate"] is not None else None})
    segments, current = [], []
    for point in drawn:
        if point["y"] is None:
            if len(current) > 1:
                segments.append(current)
            current = []
        else:
            current.append(f"{point['x']},{point['y']}")
    if len(current) > 1:
        segments.append(current)
    ticks = []
    value = 0.0
    while value <= y_max + 1e-9:
        ticks.append({"y": y(value), "label": f"{value:g}"})
        value += step
    return {"width": width, "height": height, "left": left, "right": width - right, "top": top,
            "base": top + plot_h, "points": drawn, "lines": [" ".join(s) for s in segments], "ticks": ticks,
            "target_y": y(5.0), "bar_w": round(plot_w / n * 0.5, 1)}


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


def bar_rows(items, extra: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Rows of (key, count) with the bar width (percent of the largest)."""
    items = list(items)
    top = max([count for _, count in items] + [1])
    return [{"key": key, "count": count, "extra": (extra or {}).get(key), "pct": round(100 * count / top, 1)}
            for key, count in items]


def safe_next(target: str | None) -> str:
    """Only a local path is a place to go back to after login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\", "/login")):
        return ""
    return target[:500]


def create_router(services: Services) -> APIRouter:
    """The dashboard's routes, to be included in the API app: `app.include_router(create_router(services))`."""
    return Dashboard(services).router()
