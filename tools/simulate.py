"""The county simulator: realistic, deterministic event histories of community corrections, with handoff failures
injected at known rates and the exact gaps each injection must produce (the ground truth).

One person is one life: an optional pre-sentence assessment, the decision taking effect, the decision organ
notifying the bureau and delivering the documents, release or hand-over, reporting and enrolment, then a sequence
of supervision "blocks" (warnings, procuratorial reviews and notices, electronic monitoring, contact lost and
restored, police detentions, a transfer to another county, a sentence reduction), and an end: discharge exactly at
the term's end, revocation or commitment to custody, or death. Blocks never overlap, so every obligation a block
opens is settled before the next block begins; a clean life therefore produces no gap and no anomaly at `until`.

Timings are chosen so that neither public holidays nor the day-counting details of docs/rules.md can flip the
truth: a clean fulfilment comes well inside its period (1–3 days for a 5-day rule, hours for a 24-hour rule), an
injected late one comes far outside it (20+ days late, past any holiday extension). Everything that would
happen after `until` is not emitted: an obligation whose clean fulfilment falls after `until` is then due after
`until` too, so it is upcoming, not a gap.

Each injected failure (one per person at most) is placed where it cannot interact with the rest of the life: the
person's decision date and term are drawn so that the failure is due (with a wide margin) before `until`, and an
"open" failure of an episode-bound rule requires the episode to be still running at `until` (otherwise its end
would close the obligation as a late gap instead).

Determinism: one `random.Random` per person, seeded from (seed, county, person number); event ids are UUIDs drawn
from that generator. Output is ordered by `recorded_at` with a bounded-memory external sort.

The ground truth is a JSON list, one entry per injected failure:
`{"failure": kind, "id_number": ..., "expected": [{"rule", "state": "open"|"late", "triggered_by": event_id}]}` —
exactly the gaps and anomalies `Queries.gaps(as_of=until, state="all")` must report for that person, and a person
without an entry must have none. `KINDS` lists the kinds; `handoff simulate --help` the options:

    handoff simulate --persons 100000 --counties 632801,632802 --seed 7 --failure-rate 0.05 \
        --rate R04_not_reported=0.02 --until 2026-06-30 --out county.jsonl --truth truth.json
    handoff publish --import county.jsonl
"""

from __future__ import annotations

import calendar
import datetime as dt
import heapq
import json
import os
import random
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from domain.identity import id_check_char, normalised_name, region_problem

CST = dt.timezone(dt.timedelta(hours=8))  # Asia/Shanghai (no daylight saving since 1991)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)

# One county received 1,297 persons: 671 缓刑, 294 假释, 3 管制, 98 暂予监外执行 (and 231 剥夺政治权利, which is
# not community correction and is executed by the police). The simulator uses the four categories' proportions.
CATEGORY_WEIGHTS: dict[str, int] = {"probation": 671, "parole": 294, "control": 3, "temporary_release": 98}
# The same county: 768 pre-sentence assessments (调查评估) for 1,297 persons received.
ASSESSMENT_SHARE = 0.6
# Who decides 暂予监外执行: a prison (保外就医 of a prisoner), a detention centre (看守所, police), or the court at
# judgment.
TEMPORARY_RELEASE_ORGANS = {"prison": 5, "police": 3, "court": 2}

DEFAULT_FAILURE_RATE = 0.05
DEFAULT_LATE_SHARE = 0.05
DEFAULT_CHUNK_EVENTS = 100_000

PROVINCE_ABBR = {
    "11": "京", "12": "津", "13": "冀", "14": "晋", "15": "蒙", "21": "辽", "22": "吉", "23": "黑", "31": "沪",
    "32": "苏", "33": "浙", "34": "皖", "35": "闽", "36": "赣", "37": "鲁", "41": "豫", "42": "鄂", "43": "湘",
    "44": "粤", "45": "桂", "46": "琼", "50": "渝", "51": "川", "52": "黔", "53": "滇", "54": "藏", "61": "陕",
    "62": "甘", "63": "青", "64": "宁", "65": "新", "71": "台", "81": "港", "82": "澳",
}

# Surnames roughly by frequency, with the Miao/Dong/Buyi surnames common in Guizhou weighted up.
SURNAMES = (
    "王" * 8 + "李" * 8 + "张" * 7 + "刘" * 6 + "陈" * 5 + "杨" * 6 + "黄" * 3 + "赵" * 3 + "吴" * 5 + "周" * 3
    + "徐" * 2 + "孙" * 2 + "马" * 2 + "朱" * 2 + "胡" * 2 + "郭" * 2 + "何" * 2 + "高" * 2 + "林" * 2 + "罗" * 4
    + "龙" * 3 + "石" * 3 + "潘" * 2 + "韦" * 2 + "蒙" + "田" * 2 + "冉" + "安" + "敖" + "邓" * 2 + "宋" + "谢"
    + "唐" + "许" + "韩" + "冯" + "曹" + "彭" + "曾" + "肖" + "董" + "袁" + "蒋" + "蔡" + "余" + "杜" + "叶" + "程"
    + "苏" + "魏" + "吕" + "丁" + "任" + "沈" + "姚" + "卢" + "钟" + "谭" + "陆" + "汪" + "范" + "金" + "廖" + "贾"
    + "夏" + "付" + "方" + "邹" + "熊" + "秦" + "江" + "雷" + "侯" + "陶" + "黎" + "贺" + "顾" + "毛" + "郝" + "龚"
)
GIVEN_MALE = "伟强磊军洋勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆旭宁龙林阳建国志文海成东兵峰亮云福贵金才学德永祥荣发江"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀英玲桂兰梅琴燕萍红玉婷雪慧莉颖洁琳倩媛凤春菊"
MALE_SHARE = 0.88

WARNING_REASONS = (
    "未按规定时间报到", "未经批准离开所居住的市、县", "未按规定参加教育学习", "违反人民法院禁止令",
    "未按时提交书面报告", "无正当理由不参加公益活动", "未按规定接受电子定位管理",
)
REVIEW_FINDINGS = ("交付执行、监督管理符合规定", "矫正档案材料齐全、规范", "分类管理、个别教育落实到位")
NOTICE_FINDINGS = (
    "未按规定开展走访核查", "法律文书送达不及时", "对违反监督管理规定的行为未及时处置", "未及时核查失联情况",
    "电子定位使用期限审批手续不全", "调查评估意见书内容不完整",
)
REPLY_EXPLANATIONS = ("已整改，完善相关工作制度", "已组织专项检查并落实整改", "已责令相关人员改正并加强培训")


# -- failure kinds ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A handoff failure the simulator can inject, and the gaps it produces.

    stage: where in the life it happens — "intake" (decision to enrolment), "assessment" (before the decision),
    "block" (a supervision block placed in the term), "end" (at or after the term's end), "life" (the whole life).
    lead: days needed after the failure point (intake: the decision; block: the block's start; end: the term's
    end) for the failure to be fully on record and due, with a margin no holiday extension can eat.
    active: the episode must still run at `until` (term_end after it, no discharge, revocation or death), because
    the failure leaves an episode-bound obligation open that an end would close.
    truncate: nothing happens to the person after the failure (lost, never handed over, never ruled...).
    expected: (rule, state, label) — label names the event of the life that triggers the gap.
    """

    name: str
    stage: str
    lead: int
    expected: tuple[tuple[str, str, str], ...]
    active: bool = False
    truncate: bool = False
    no_end: bool = False
    span: int = 0
    categories: tuple[str, ...] = tuple(CATEGORY_WEIGHTS)
    description: str = ""


NOT_TEMPORARY = ("probation", "parole", "control")

KINDS: tuple[Kind, ...] = (
    Kind("R01_court_never_notified", "intake", 40, (("R01_bureau_not_notified", "open", "decision"),
                                                    ("R02_documents_not_delivered", "open", "decision")),
         active=True, description="the decision organ never notifies the bureau nor delivers the documents"),
    Kind("R01_court_notified_late", "intake", 50, (("R01_bureau_not_notified", "late", "decision"),
                                                   ("R02_documents_not_delivered", "late", "decision")),
         description="no notice; the documents arrive 25-40 days after the decision"),
    Kind("R02_documents_late", "intake", 50, (("R02_documents_not_delivered", "late", "decision"),),
         description="notified in time; the documents arrive 25-40 days after the decision"),
    Kind("R03_receipt_not_returned", "intake", 40, (("R03_receipt_not_returned", "open", "delivered"),),
         active=True, description="the bureau never returns the receipt for the documents"),
    Kind("R04_not_reported", "intake", 40, (("R04_not_reported", "open", "decision"),), active=True, truncate=True,
         categories=NOT_TEMPORARY, description="漏管: the person never reports"),
    Kind("R04_reported_late", "intake", 55, (("R04_not_reported", "late", "decision"),), categories=NOT_TEMPORARY,
         description="reports 25-40 days after the decision (parole: after the release)"),
    Kind("R05_not_transferred", "intake", 40, (("R05_not_transferred", "open", "decision"),), active=True,
         truncate=True, categories=("temporary_release",),
         description="漏管: the custodian never hands the 暂予监外执行 subject over"),
    Kind("R05_transferred_late", "intake", 50, (("R05_not_transferred", "late", "decision"),),
         categories=("temporary_release",),
         description="handed over 25-40 days after the decision"),
    Kind("R06_enrolled_late", "intake", 45, (("R06_not_enrolled", "late", "handover"),),
         description="reported (or handed over) in time, enrolled 15-25 days later"),
    Kind("R07_transfer_file_not_sent", "block", 30, (("R07_transfer_file_not_sent", "open", "transfer"),),
         active=True, span=8, description="变更执行地: the old bureau never sends the file"),
    Kind("R08_transfer_not_received", "block", 30, (("R08_transfer_not_received", "open", "transfer"),),
         active=True, truncate=True, span=8, description="脱管: the person never arrives in the new county"),
    Kind("R09_ruling_overdue", "block", 80, (("R09_ruling_overdue", "open", "proposal"),), active=True,
         truncate=True, span=30, description="a revocation (or commitment) proposal never ruled on"),
    Kind("R09_ruled_late", "block", 105, (("R09_ruling_overdue", "late", "proposal"),), span=100,
         description="ruled 45-70 days after the proposal"),
    Kind("R10_arrest_decision_late", "block", 45, (("R10_arrest_decision_overdue", "late", "proposal"),),
         span=60, categories=NOT_TEMPORARY, description="arrest requested, decided 4-10 days later (48 h rule)"),
    Kind("R11_commitment_not_executed", "block", 70, (("R11_commitment_not_executed", "open", "ruling"),),
         active=True, truncate=True, span=55, description="revoked (or commitment decided), never taken into custody"),
    Kind("R11_executed_late", "block", 95, (("R11_commitment_not_executed", "late", "ruling"),), span=90,
         description="taken into custody 20-30 days after the ruling"),
    Kind("R12_missing_not_escalated", "block", 25, (("R12_missing_not_escalated", "late", "lost"),), span=12,
         description="contact lost, police never asked; found again 3-10 days later"),
    Kind("R13_missing_unresolved", "block", 50, (("R13_missing_unresolved", "open", "lost"),), active=True,
         truncate=True, span=1, description="脱管: contact lost, police asked, never found nor proposed for revocation"),
    Kind("R13_restored_late", "block", 70, (("R13_missing_unresolved", "late", "lost"),), span=62,
         description="contact lost, police asked, found again 45-60 days later"),
    Kind("R14_detention_notice_late", "block", 35, (("R14_detention_notice_late", "late", "detention"),), span=16,
         description="a police detention reaches the shared record 3-30 days late"),
    Kind("R15_not_discharged", "end", 20, (("R15_not_discharged", "open", "term"),), no_end=True,
         description="the term ended, the person was never discharged"),
    Kind("R16_notice_reply_overdue", "block", 90, (("R16_notice_reply_overdue", "open", "notice"),), span=0,
         description="a procuratorial notice never answered"),
    Kind("R16_notice_replied_late", "block", 110, (("R16_notice_reply_overdue", "late", "notice"),), span=105,
         description="a procuratorial notice answered 20-40 days after its period"),
    Kind("R17_assessment_late", "assessment", 5, (("R17_assessment_overdue", "late", "assessment"),),
         description="the assessment report comes 35-50 days after the request"),
    Kind("R18_death_notice_late", "block", 45, (("R18_death_notice_late", "late", "death"),), span=3,
         description="a death reaches the shared record 25-40 days after it"),
    Kind("R19_monitoring_overdue", "block", 120, (("R19_monitoring_overdue", "open", "monitoring"),), active=True,
         truncate=True, span=1, description="electronic monitoring neither ended nor extended"),
    Kind("R19_monitoring_ended_late", "block", 170, (("R19_monitoring_overdue", "late", "monitoring"),), span=165,
         description="electronic monitoring ended 130-160 days after it started"),
    Kind("A01_no_decision_on_record", "life", 40, (("A01_no_decision_on_record", "open", "handover"),),
         categories=NOT_TEMPORARY, description="the court's decision and documents never reach the shared record"),
    Kind("A02_enrolled_wrong_region", "intake", 20, (("A02_region_mismatch", "open", "enrolled"),),
         description="enrolled by the bureau of another county, no transfer decided"),
    Kind("A03_missing_while_detained", "block", 35, (("A03_missing_while_detained", "late", "lost"),
                                                     ("R14_detention_notice_late", "late", "detention")),
         span=16, description="detained; the detention published 20-30 days late, the bureau lists the person as lost"),
    Kind("A04_activity_after_end", "end", 30, (("A04_activity_after_end", "open", "activity"),), no_end=True,
         description="a warning recorded 3-20 days after the discharge"),
)
# What an agency does and never publishes (`--withhold decision=0.01`): the event stays in the agency's own list
# (its roster), not on the record. The ground truth names each such person with the events withheld (`withheld`),
# which a reconciliation of that agency's roster must find (A05, A06, A07), and the gaps the absence produces.
WITHHELD_KINDS: tuple[Kind, ...] = (
    Kind("withheld_decision", "life", 40, (("A01_no_decision_on_record", "open", "handover"),),
         categories=NOT_TEMPORARY, description="the court never publishes its judgment (nor its notices)"),
    Kind("withheld_enrolment", "intake", 40, (("R06_not_enrolled", "open", "handover"),), active=True,
         truncate=True, description="the bureau enrols the person and never publishes the enrolment"),
    Kind("withheld_detention", "block", 35, (), span=16,
         description="the police detain a person under supervision and never publish the detention"),
)
WITHHOLDABLE = {"decision": "withheld_decision", "enrolment": "withheld_enrolment",
                "detention": "withheld_detention"}
# The events each withheld kind keeps off the record.
WITHHELD_TYPES = {
    "withheld_decision": ("decision_effective", "bureau_notified", "documents_delivered", "documents_receipted",
                          "term_changed"),
    "withheld_enrolment": ("subject_enrolled",),
    "withheld_detention": ("detention_started", "detention_ended"),
}
KIND_BY_NAME = {kind.name: kind for kind in (*KINDS, *WITHHELD_KINDS)}

# Errors of identity (`--identity-error mistyped_id=0.02`), drawn for persons with no other failure. Each is in the
# ground truth as `identity_<kind>` with what the service must find: the probable match (`candidate`: the keys of
# one person), the anomalies (`expected`: A08, A09), or nothing (a name typed with another dot or width, a foreign
# national under a passport).
IDENTITY_ERRORS = {
    "mistyped_id": "the decision organ publishes under an ID number with a mistyped serial digit (same birth date)",
    "name_variant": "a two-part name written with another middle dot (·, •, ・) or a full-width space by one agency",
    "name_conflict": "one bureau event publishes the person under another name",
    "duplicate_decision": "the decision is published twice under two event ids (the same document_no)",
    "foreign": "a foreign national, published under a passport with nationality and birth date",
}
DOTTED_NAMES = ("阿依古丽·买买提", "艾尔肯·吐尔逊", "古丽娜尔·阿不都", "买买提·艾力", "热依拉·托合提", "迪丽努尔·阿吉")
DOT_VARIANTS = ("•", "・", " · ")
FOREIGN_NATIONALS = (("KOR", "KIM MINJUN"), ("VNM", "NGUYEN VAN AN"), ("MMR", "AUNG KYAW"), ("RUS", "IVAN PETROV"),
                     ("USA", "JOHN SMITH"), ("MNG", "BAT-ERDENE"))


# -- configuration ------------------------------------------------------------------------------------------------


class SimulationError(ValueError):
    pass


@dataclass(frozen=True)
class SimulationConfig:
    persons: int = 1000
    years: float = 3.0
    counties: tuple[str, ...] = ("632801",)  # 格尔木市 of 海西州, as in the seed reports
    seed: int = 1
    failure_rate: float = DEFAULT_FAILURE_RATE
    rates: Mapping[str, float] = field(default_factory=dict)  # kind name (or a prefix such as "R04") -> rate
    until: dt.datetime | None = None  # default: now, Asia/Shanghai
    late_share: float = DEFAULT_LATE_SHARE  # share of events published days late (never a deadline-bearing one)
    withhold: Mapping[str, float] = field(default_factory=dict)  # decision, enrolment, detention -> rate
    identity: Mapping[str, float] = field(default_factory=dict)  # an IDENTITY_ERRORS kind -> rate

    def resolved_until(self) -> dt.datetime:
        until = self.until or dt.datetime.now(CST)
        if until.tzinfo is None:
            until = until.replace(tzinfo=CST)
        return until.astimezone(CST).replace(microsecond=0)


def kind_rates(config: SimulationConfig) -> dict[str, float]:
    """The per-person rate of each failure kind: the overall rate shared equally, then the overrides."""
    if not 0 <= config.failure_rate <= 1:
        raise SimulationError(f"--failure-rate must be between 0 and 1, not {config.failure_rate}")
    rates = {kind.name: config.failure_rate / len(KINDS) for kind in KINDS}
    for key, value in config.rates.items():
        if not 0 <= value <= 1:
            raise SimulationError(f"rate of {key} must be between 0 and 1, not {value}")
        matching = [name for name in rates if name == key] or [
            name for name in rates if name.startswith(key + "_") or name.split("_")[0] == key]
        if not matching:
            raise SimulationError(f"unknown failure kind {key!r}; known: {', '.join(rates)}")
        for name in matching:
            rates[name] = value
    for what, value in config.withhold.items():
        if what not in WITHHOLDABLE:
            raise SimulationError(f"--withhold {what!r}: one of {', '.join(WITHHOLDABLE)}")
        if not 0 <= value <= 1:
            raise SimulationError(f"--withhold {what} must be between 0 and 1, not {value}")
        rates[WITHHOLDABLE[what]] = value
    if sum(rates.values()) > 1 + 1e-9:
        raise SimulationError(f"the failure rates add up to {sum(rates.values()):.3f} per person, more than 1")
    for what, value in config.identity.items():
        if what not in IDENTITY_ERRORS:
            raise SimulationError(f"--identity-error {what!r}: one of {', '.join(IDENTITY_ERRORS)}")
        if not 0 <= value <= 1:
            raise SimulationError(f"--identity-error {what} must be between 0 and 1, not {value}")
    if sum(config.identity.values()) > 1 + 1e-9:
        raise SimulationError("the identity error rates add up to more than 1 per person")
    return rates


def parse_rate(text: str) -> tuple[str, float]:
    """The CLI's --rate KIND=RATE, e.g. R04_not_reported=0.02 (a rule prefix such as R04 sets every kind of it)."""
    import argparse

    kind, _, value = text.partition("=")
    try:
        return kind.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use KIND=RATE, e.g. R04_not_reported=0.02") from None


def check_counties(counties: Iterable[str]) -> tuple[str, ...]:
    result = tuple(dict.fromkeys(c.strip() for c in counties if c.strip()))
    if not result:
        raise SimulationError("at least one county is needed")
    for county in result:
        problem = region_problem(county)
        if problem:
            raise SimulationError(f"county {county!r}: {problem}")
        if county.endswith("00"):
            raise SimulationError(f"county {county!r}: a county-level code does not end in 00")
    return result


# -- small helpers ------------------------------------------------------------------------------------------------


def add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(CST).isoformat()


def agency(kind: str, region: str) -> dict[str, str]:
    prefix = {"court": "FY", "procuratorate": "JCY", "police": "GA", "prison": "JY", "bureau": "SFJ"}[kind]
    return {"kind": kind, "id": f"{prefix}-{region}", "region": region}


def prefecture(region: str) -> str:
    return region[:4] + "00"


@dataclass
class Event:
    event_type: str
    agency: dict[str, str]
    occurred_at: dt.datetime
    payload: dict[str, Any]
    event_id: str
    recorded_at: dt.datetime | None = None  # fixed by the life (deadline-bearing notices); else drawn
    sequence: int = 0


@dataclass
class PersonResult:
    id_number: str
    name: str
    county: str
    category: str | None  # None when the decision never reached the record
    events: list[dict[str, Any]]
    failure: dict[str, Any] | None
    skipped_failure: str | None = None  # a kind drawn for this person that could not be placed in the window


# -- one person's life --------------------------------------------------------------------------------------------


class _Truncated(Exception):
    """Nothing more happens to this person (lost, never handed over...)."""


class _Ended(Exception):
    """The episode ended (revocation, commitment, death)."""


class Life:
    def __init__(self, rng: random.Random, county: str, counties: tuple[str, ...], until: dt.datetime,
                 years: float, kind: Kind | None, late_share: float, used_ids: set[str]):
        self.rng = rng
        self.county = county
        self.region = county  # current region: changes with a transfer
        self.counties = counties
        self.until = until
        self.years = years
        self.kind = kind
        self.late_share = late_share
        self.used_ids = used_ids
        self.events: list[Event] = []
        self.marks: dict[str, str] = {}
        self.transfers = 0
        self.term_changed = False
        self.pending = kind is not None and kind.stage == "block"
        # Marks name the events a failure's gaps are triggered by; the ordinary blocks of the life set none.
        self.marking = True
        self.abbr = PROVINCE_ABBR[county[:2]]
        self.person: dict[str, Any] = {}  # how the events name the person (`identify`)
        self.published_as: dict[str, dict[str, Any]] = {}  # event id -> another naming (identity errors)

    # -- time ------------------------------------------------------------------------------------------------------

    def office(self, day: dt.date) -> dt.datetime:
        """A moment in office hours (08:30–17:30) of `day`."""
        minutes = self.rng.randint(8 * 60 + 30, 17 * 60 + 29)
        return dt.datetime.combine(day, dt.time(minutes // 60, minutes % 60, self.rng.randint(0, 59)), CST)

    def after(self, moment: dt.datetime, days: int | tuple[int, int]) -> dt.datetime:
        """`days` (or a random number of days in a range) after `moment`: the same day a little later, or office
        hours of a later day."""
        if isinstance(days, tuple):
            days = self.rng.randint(*days)
        if days == 0:
            return moment + dt.timedelta(minutes=self.rng.randint(20, 180), seconds=self.rng.randint(0, 59))
        return self.office(moment.date() + dt.timedelta(days=days))

    def hours_after(self, moment: dt.datetime, low: float, high: float) -> dt.datetime:
        return moment + dt.timedelta(seconds=int(self.rng.uniform(low, high) * 3600))

    # -- events ----------------------------------------------------------------------------------------------------

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def emit(self, event_type: str, agency_: dict[str, str], occurred_at: dt.datetime, payload: dict[str, Any],
             mark: str | None = None, recorded_at: dt.datetime | None = None) -> Event:
        event = Event(event_type, agency_, occurred_at, payload, self.new_id(), recorded_at)
        self.events.append(event)
        if mark and self.marking:
            self.marks[mark] = event.event_id
        return event

    def bureau(self, region: str | None = None) -> dict[str, str]:
        return agency("bureau", region or self.region)

    def police(self, region: str | None = None) -> dict[str, str]:
        return agency("police", region or self.region)

    def procuratorate(self) -> dict[str, str]:
        return agency("procuratorate", self.region)

    # -- plan: category, decision date, term -----------------------------------------------------------------------

    def plan(self) -> bool:
        """Draw the category, decision organ, decision moment and term; with a failure kind, within the window
        that makes the failure certain by `until`. False: the kind could not be placed (the person lives clean)."""
        kind = self.kind
        rng = self.rng
        until = self.until
        for _ in range(80):
            if kind is not None and kind.categories != tuple(CATEGORY_WEIGHTS):
                weights = {c: w for c, w in CATEGORY_WEIGHTS.items() if c in kind.categories}
            else:
                weights = CATEGORY_WEIGHTS
            category = rng.choices(list(weights), weights=list(weights.values()))[0]
            organs = TEMPORARY_RELEASE_ORGANS
            organ = rng.choices(list(organs), weights=list(organs.values()))[0] \
                if category == "temporary_release" else "court"
            months = self.term_months(category)
            lo = until - dt.timedelta(days=365.25 * self.years)
            hi = until - 3 * HOUR
            if kind is not None:
                lead = dt.timedelta(days=kind.lead)
                if kind.stage in ("intake", "assessment", "life"):
                    hi = min(hi, until - lead)
                elif kind.stage == "block":
                    hi = min(hi, until - lead - dt.timedelta(days=30))
                    if not kind.active and months * 28 < 30 + kind.span + 10:
                        continue
                elif kind.stage == "end":
                    hi = min(hi, until - lead - dt.timedelta(days=31 * months + 4))
                if kind.active:
                    lo = max(lo, until + dt.timedelta(days=12 - 28 * months))
            if lo >= hi:
                continue
            decided = lo + (hi - lo) * rng.random()
            decided = self.office(decided.date())
            if decided > hi:
                decided = hi - dt.timedelta(minutes=rng.randint(0, 60))
            release_days = rng.randint(0, 3) if category == "parole" else 0
            term_start = decided.date() + dt.timedelta(days=release_days)
            term_end = add_months(term_start, months) - DAY
            if kind is not None:
                if kind.active and term_end <= until.date() + dt.timedelta(days=10):
                    continue
                if kind.stage == "end" and term_end + dt.timedelta(days=kind.lead + 3) > until.date():
                    continue
            self.category, self.organ, self.decided, self.months = category, organ, decided, months
            self.release_days, self.term_start, self.term_end = release_days, term_start, term_end
            return True
        return False

    def term_months(self, category: str) -> int:
        rng = self.rng
        if category == "probation":  # 缓刑考验期: 2 months–1 year (拘役), 1–5 years (有期徒刑); here 6–60 months
            return rng.choices([6, 8, 10, 12, 18, 24, 30, 36, 48, 60], weights=[6, 4, 5, 20, 12, 20, 6, 15, 7, 5])[0]
        if category == "parole":  # the rest of the sentence: mostly months, sometimes years
            return max(3, min(60, int(rng.triangular(3, 60, 8))))
        return rng.randint(3, 24)  # 管制 3 months–2 years; 暂予监外执行 here 3–24 months

    # -- identity ----------------------------------------------------------------------------------------------------

    def identify(self) -> None:
        rng = self.rng
        male = rng.random() < MALE_SHARE
        while True:
            age = max(18.0, min(75.0, rng.gauss(38, 11)))
            birth = self.decided.date() - dt.timedelta(days=int(age * 365.25) + rng.randint(0, 364))
            birth = max(dt.date(1950, 1, 1), min(dt.date(2005, 12, 31), birth))
            sequence = rng.randint(0, 99) * 10 + rng.choice((1, 3, 5, 7, 9) if male else (0, 2, 4, 6, 8))
            first17 = f"{self.county}{birth:%Y%m%d}{sequence:03d}"
            id_number = first17 + id_check_char(first17)
            if id_number not in self.used_ids:
                self.used_ids.add(id_number)
                break
        given = GIVEN_MALE if male else GIVEN_FEMALE
        name = rng.choice(SURNAMES) + rng.choice(given) + (rng.choice(given) if rng.random() < 0.75 else "")
        self.id_number, self.name = id_number, name
        self.person = {"id_number": id_number, "name": name}

    # -- the organs of this case -------------------------------------------------------------------------------------

    def organs(self) -> None:
        county, pref, year = self.county, prefecture(self.county), self.decided.year
        number = self.rng.randint(1, 999)
        if self.category == "parole":
            self.decision_agency = agency("court", pref)  # 假释 is ruled by the intermediate court of the prison
            self.document_no = f"({year}){self.abbr}{county[2:4]}刑更{number}号"
        elif self.category == "temporary_release" and self.organ == "prison":
            self.decision_agency = agency("prison", pref)
            self.document_no = f"{self.abbr}狱暂字〔{year}〕{number}号"
        elif self.category == "temporary_release" and self.organ == "police":
            self.decision_agency = agency("police", county)  # the 看守所's public security organ
            self.document_no = f"{self.abbr}公监外字〔{year}〕{number}号"
        else:
            self.decision_agency = agency("court", county)
            self.document_no = f"({year}){self.abbr}{county[2:]}刑初{number}号"
        # The court that rules on a revocation: the one that decided (Law 46).
        self.ruling_court = self.decision_agency if self.decision_agency["kind"] == "court" else agency("court", county)
        # Law 21: a 暂予监外执行 subject is handed over by the prison or detention centre that holds them or, when
        # the court decided, by the detention centre (in custody) or the police supervising their bail.
        self.custodian = None
        if self.category == "temporary_release":
            self.custodian = self.decision_agency if self.organ in ("prison", "police") else agency("police", county)
        self.in_custody = self.category == "parole" or (self.category == "temporary_release" and (
            self.organ in ("prison", "police") or self.rng.random() < 0.5))

    def other_region(self) -> str:
        others = [c for c in self.counties if c != self.region]
        if others:
            return self.rng.choice(others)
        # One county simulated: a neighbouring county of the same prefecture.
        base = int(self.region[4:])
        neighbours = [f"{self.region[:4]}{n:02d}" for n in range(1, 30) if n != base]
        return self.rng.choice(neighbours)

    # -- the life ----------------------------------------------------------------------------------------------------

    def live(self) -> None:
        kind = self.kind
        try:
            self.assessment()
            end_of_intake = self.intake()
            if kind is not None and kind.truncate and kind.stage == "intake":
                raise _Truncated
            self.supervise(end_of_intake)
            self.finish()
        except (_Truncated, _Ended):
            pass
        if kind is not None and kind.name == "A01_no_decision_on_record":
            # The court's data never arrived: none of the decision organ's events, nor the receipt answering them.
            dropped = {"decision_effective", "bureau_notified", "documents_delivered", "documents_receipted",
                       "term_changed"}
            self.events = [e for e in self.events if e.event_type not in dropped]

    def assessment(self) -> None:
        kind_name = self.kind.name if self.kind else None
        if kind_name != "R17_assessment_late" and self.rng.random() >= ASSESSMENT_SHARE:
            return
        rng = self.rng
        if self.category == "parole":
            requester = agency("prison", prefecture(self.county))
        elif self.category == "temporary_release":
            requester = self.decision_agency
        else:
            requester = agency("court", self.county) if rng.random() < 0.7 else agency("procuratorate", self.county)
        expedited = rng.random() < 0.15
        if kind_name == "R17_assessment_late":
            requested = self.office(self.decided.date() - dt.timedelta(days=rng.randint(60, 90)))
            reported = self.after(requested, (35, 50))
        else:
            requested = self.office(self.decided.date() - dt.timedelta(days=rng.randint(15, 60)))
            reported = self.after(requested, (1, 3) if expedited else (2, 8))
        self.emit("assessment_requested", requester, requested,
                  {"bureau_region": self.county, "expedited": expedited}, mark="assessment")
        self.emit("assessment_reported", self.bureau(self.county), reported,
                  {"opinion": "suitable" if rng.random() < 0.93 else "unsuitable"})

    def intake(self) -> dt.datetime:
        """Decision → notice and documents → release or hand-over → report → enrolment. Returns the moment of the
        last intake event."""
        rng, kind_name = self.rng, (self.kind.name if self.kind else None)
        decided, organ = self.decided, self.decision_agency
        region = self.county
        last = decided
        self.emit("decision_effective", organ, decided, {
            "category": self.category, "term_start": self.term_start.isoformat(),
            "term_end": self.term_end.isoformat(), "execution_region": region, "document_no": self.document_no,
            "in_custody": self.in_custody}, mark="decision")
        self.marks["term"] = self.marks["decision"]
        # The decision organ notifies the bureau and delivers the documents (copied to procuratorate and police).
        delivered = None
        if kind_name == "R01_court_never_notified":
            pass
        elif kind_name == "R01_court_notified_late":
            delivered = self.after(decided, (25, 40))
        else:
            notified = self.after(decided, (0, 3))
            self.emit("bureau_notified", organ, notified, {"execution_region": region})
            delivered = self.after(decided, (25, 40)) if kind_name == "R02_documents_late" else \
                self.after(notified, (0, 4))
        if delivered is not None:
            self.emit("documents_delivered", organ, delivered,
                      {"execution_region": region, "copied_to": ["procuratorate", "police"]}, mark="delivered")
            last = max(last, delivered)
            if kind_name != "R03_receipt_not_returned":
                receipted = self.after(delivered, (0, 3))
                self.emit("documents_receipted", self.bureau(region), receipted, {})
                last = max(last, receipted)
        # The person: released, handed over, or reporting on their own.
        if self.category == "temporary_release":
            if kind_name == "R05_not_transferred":
                return last
            handed = self.after(decided, (25, 40)) if kind_name == "R05_transferred_late" else \
                self.after(decided, (1, 5))
            self.emit("subject_transferred", self.custodian, handed, {"to_region": region}, mark="handover")
        else:
            start = decided
            if self.category == "parole":
                released = self.office(self.term_start) if self.release_days else self.after(decided, 0)
                self.emit("prisoner_released", agency("prison", prefecture(region)), released, {"to_region": region})
                start = released
                last = max(last, released)
            if kind_name == "R04_not_reported":
                return last
            handed = self.after(start, (25, 40)) if kind_name == "R04_reported_late" else self.after(start, (1, 5))
            self.emit("subject_reported", self.bureau(region), handed, {"region": region}, mark="handover")
        if kind_name == "R06_enrolled_late":
            enrolled = self.after(handed, (15, 25))
        else:
            enrolled = self.after(handed, 0) if rng.random() < 0.6 else self.after(handed, 1)
        if kind_name == "A02_enrolled_wrong_region":
            wrong = self.other_region()
            self.emit("subject_enrolled", self.bureau(wrong), enrolled, {"region": wrong}, mark="enrolled")
        else:
            self.emit("subject_enrolled", self.bureau(region), enrolled, {"region": region}, mark="enrolled")
        return max(last, enrolled)

    # -- supervision blocks ------------------------------------------------------------------------------------------

    def term_end_moment(self) -> dt.datetime:
        return dt.datetime.combine(self.term_end, dt.time(0), CST)

    def supervise(self, start: dt.datetime) -> None:
        rng, kind = self.rng, self.kind
        t = start
        failure_at = None
        if self.pending:
            assert kind is not None
            low = max(t + 2 * DAY, self.decided + 25 * DAY)
            high = self.until - kind.lead * DAY
            if not kind.active:
                high = min(high, self.term_end_moment() - (kind.span + 3) * DAY)
            if low > high:  # cannot happen with the windows of plan(); kept as a guard
                raise AssertionError(f"no room for {kind.name}: {low} > {high}")
            failure_at = low + (high - low) * rng.random()
        while True:
            # The next block begins in office hours, 3 days to a few months after the last one ended.
            begin = self.office((t + dt.timedelta(days=3 + rng.expovariate(1 / 70))).date())
            block, span = self.choose_block(begin)
            if self.pending and begin + (span + 2) * DAY > failure_at:
                self.pending = False
                t = self.failure_block(self.office(max(failure_at, t + DAY).date()))
                continue
            if begin > self.until:
                return
            if begin + (span + 3) * DAY > self.term_end_moment():
                return
            self.marking = False
            try:
                t = block(begin)
            finally:
                self.marking = True

    def may_end(self) -> bool:
        kind = self.kind
        return not self.pending and not (kind is not None and (kind.active or kind.no_end))

    def choose_block(self, begin: dt.datetime) -> tuple[Callable[[dt.datetime], dt.datetime], int]:
        rng = self.rng
        options: list[tuple[float, Callable[[dt.datetime], dt.datetime], int]] = [
            (30, self.block_warning, 0),
            (20, self.block_review, 0),
            (8, self.block_notice, 60),
            (10, self.block_monitoring, 165),
            (6, self.block_contact_lost, 25),
            (5, self.block_detention, 16),
        ]
        kind = self.kind
        if self.transfers == 0 and not (kind is not None and kind.name == "A02_enrolled_wrong_region"):
            options.append((6, self.block_transfer, 8))
        if (not self.term_changed and not self.pending and not (kind is not None and kind.active)
                and (self.term_end_moment() - begin).days > 240):
            options.append((3, self.block_term_changed, 0))
        if self.may_end():
            options.append((0.6, self.block_revocation, 110))
            options.append((0.3, self.block_death, 3))
            options.append((0.4, self.block_missing_then_revoked, 60))
            options.append((0.4, self.block_criminal_detention, 60))
        weights = [w for w, _, _ in options]
        _, block, span = rng.choices(options, weights=weights)[0]
        return block, span

    def block_warning(self, t: dt.datetime) -> dt.datetime:
        self.emit("warning_issued", self.bureau(), t, {"reason": self.rng.choice(WARNING_REASONS)})
        return t

    def block_review(self, t: dt.datetime) -> dt.datetime:
        self.emit("supervision_review_recorded", self.procuratorate(), t,
                  {"outcome": "compliant", "finding": self.rng.choice(REVIEW_FINDINGS)})
        return t

    def notice_terms(self) -> tuple[str, int | None, int]:
        """(notice_kind, reply_within_days or None, the period in days)."""
        rng = self.rng
        if rng.random() < 0.6:
            days = rng.choice((None, 15, 15, 30))
            return "correction", days, days or 15
        days = rng.choice((None, None, 30))
        return "suggestion", days, days or 60

    def block_notice(self, t: dt.datetime, failure: str | None = None, terms=None) -> dt.datetime:
        rng = self.rng
        notice_kind, within, period = terms or self.notice_terms()
        addressee = rng.choices([self.bureau(), self.police(), self.ruling_court], weights=[7, 2, 1])[0]
        self.emit("supervision_review_recorded", self.procuratorate(), t,
                  {"outcome": "violation", "finding": rng.choice(NOTICE_FINDINGS)})
        issued = self.after(t, (0, 2))
        payload: dict[str, Any] = {"notice_kind": notice_kind,
                                   "addressed_to": {"kind": addressee["kind"], "id": addressee["id"]},
                                   "finding": rng.choice(NOTICE_FINDINGS)}
        if within is not None:
            payload["reply_within_days"] = within
        notice = self.emit("procuratorial_notice_issued", self.procuratorate(), issued, payload, mark="notice")
        if failure == "open":
            return issued
        if failure == "late":
            replied = self.after(issued, (period + 20, period + 40))
        else:
            replied = self.after(issued, (2, max(3, min(period - 5, 25))))
        self.emit("notice_replied", addressee, replied,
                  {"notice_event_id": notice.event_id, "adopted": rng.random() < 0.9,
                   "explanation": rng.choice(REPLY_EXPLANATIONS)})
        return replied

    def block_monitoring(self, t: dt.datetime, failure: str | None = None) -> dt.datetime:
        rng = self.rng
        self.emit("monitoring_started", self.bureau(), t, {}, mark="monitoring")
        if failure == "open":
            raise _Truncated
        if failure == "late":
            ended = self.after(t, (130, 160))
            self.emit("monitoring_ended", self.bureau(), ended, {})
            return ended
        last = t
        if rng.random() < 0.3:
            last = self.after(t, (60, 80))
            self.emit("monitoring_extended", self.bureau(), last, {})
        ended = self.after(last, (30, 80))
        self.emit("monitoring_ended", self.bureau(), ended, {})
        return ended

    def block_contact_lost(self, t: dt.datetime, failure: str | None = None) -> dt.datetime:
        rng = self.rng
        self.emit("contact_lost", self.bureau(), t, {}, mark="lost")
        if failure != "not_escalated":
            self.emit("police_assistance_requested", self.bureau(), self.hours_after(t, 0.5, 6), {})
        if failure == "unresolved":
            raise _Truncated
        if failure == "not_escalated":
            restored = self.after(t, (3, 10))
        elif failure == "late":
            restored = self.after(t, (45, 60))
        else:
            restored = self.after(t, (2, 20))
        self.emit("contact_restored", self.bureau(), restored, {})
        if rng.random() < 0.5:
            warned = self.after(restored, (0, 2))
            self.emit("warning_issued", self.bureau(), warned, {"reason": "未经批准离开所居住的市、县"})
            return warned
        return restored

    def block_detention(self, t: dt.datetime, failure: str | None = None) -> dt.datetime:
        rng = self.rng
        started = t.replace(hour=rng.randint(0, 23), minute=rng.randint(0, 59))
        police = self.police()
        if failure == "late":
            recorded = self.after(started, (3, 30))
        elif failure == "missing_while_detained":
            recorded = self.after(started, (20, 30))
        else:
            recorded = started + dt.timedelta(minutes=rng.randint(5, 360))
        self.emit("detention_started", police, started, {"detention_kind": "administrative"}, mark="detention",
                  recorded_at=recorded)
        if failure == "missing_while_detained":
            lost = self.after(started, (1, 3))
            self.emit("contact_lost", self.bureau(), lost, {}, mark="lost")
            self.emit("police_assistance_requested", self.bureau(), self.hours_after(lost, 0.5, 6), {})
            ended = self.after(lost, (5, 10))
            self.emit("detention_ended", police, ended, {}, recorded_at=recorded + dt.timedelta(minutes=rng.randint(1, 30)))
            restored = self.hours_after(ended, 2, 24)
            self.emit("contact_restored", self.bureau(), restored, {})
            return restored
        ended = self.after(started, (3, 15))
        self.emit("detention_ended", police, ended, {})
        return ended

    def block_transfer(self, t: dt.datetime, failure: str | None = None) -> dt.datetime:
        rng = self.rng
        old, new = self.region, self.other_region()
        self.transfers += 1
        self.emit("transfer_decided", self.bureau(old), t, {"new_region": new}, mark="transfer")
        last = t
        if failure != "file_not_sent":
            sent = self.after(t, (0, 3))
            self.emit("transfer_file_sent", self.bureau(old), sent, {"new_region": new})
            last = sent
        if failure == "not_received":
            raise _Truncated
        reported = self.after(t, (1, 4))
        self.emit("subject_reported", self.bureau(new), reported, {"region": new})
        enrolled = self.after(reported, 0) if rng.random() < 0.7 else self.after(reported, 1)
        self.emit("subject_enrolled", self.bureau(new), enrolled, {"region": new})
        self.region = new
        return max(last, enrolled)

    def block_term_changed(self, t: dt.datetime) -> dt.datetime:
        rng = self.rng
        self.term_changed = True
        months = rng.randint(1, 6)
        new_end = max(add_months(self.term_end, -months), t.date() + dt.timedelta(days=120))
        if new_end >= self.term_end:
            return t
        court = self.ruling_court if self.category != "parole" else self.decision_agency
        event = self.emit("term_changed", court, t, {"new_term_end": new_end.isoformat(), "reason": "减刑"})
        self.marks["term"] = event.event_id  # R15 is now triggered by the last term change
        self.term_end = new_end
        return t

    def block_death(self, t: dt.datetime, failure: str | None = None) -> dt.datetime:
        rng = self.rng
        died = t.date()
        publisher = self.bureau() if rng.random() < 0.7 else self.police()
        occurred = self.hours_after(t, 2, 50)
        if failure == "late":
            recorded = self.office(died + dt.timedelta(days=rng.randint(25, 40)))
        else:
            recorded = occurred + dt.timedelta(minutes=rng.randint(5, 240))
        self.emit("death_recorded", publisher, occurred, {"date_of_death": died.isoformat()}, mark="death",
                  recorded_at=recorded)
        raise _Ended

    def _propose(self, t: dt.datetime, arrest: bool) -> tuple[dt.datetime, dt.datetime | None]:
        """The bureau proposes revocation (or, for 暂予监外执行, commitment); returns (proposal, arrest decision)."""
        if self.category == "temporary_release":
            self.emit("commitment_proposed", self.bureau(), t, {"to_kind": self.decision_agency["kind"]}, mark="proposal")
            return t, None
        self.emit("revocation_proposed", self.bureau(), t, {"arrest_requested": arrest}, mark="proposal")
        return t, None

    def _rule(self, proposed: dt.datetime, failure: str | None, arrest: bool) -> dt.datetime:
        """From a proposal to the custody: arrest decision, ruling, commitment."""
        base = proposed
        if arrest:
            decided = self.after(proposed, (4, 10)) if failure == "arrest_late" else self.hours_after(proposed, 2, 30)
            self.emit("arrest_decided", self.ruling_court, decided, {"arrest": True})
            base = decided
        if failure == "ruling_open":
            raise _Truncated
        # Within 30 days of the proposal (clean: at most 25 days after it, or after a late arrest decision).
        ruled = self.after(proposed, (45, 70)) if failure == "ruling_late" else \
            self.after(base, (3, 15)) if failure == "arrest_late" else self.after(base, (5, 25))
        if self.category == "temporary_release":
            self.emit("commitment_decided", self.decision_agency, ruled, {"commit": True}, mark="ruling")
            executor = self.decision_agency if self.decision_agency["kind"] == "prison" else self.police()
        else:
            self.emit("revocation_ruled", self.ruling_court, ruled, {"revoked": True}, mark="ruling")
            executor = self.police()
        if failure == "execution_open":
            raise _Truncated
        committed = self.after(ruled, (20, 30)) if failure == "execution_late" else self.hours_after(ruled, 1, 8)
        facility = f"{self.abbr}{prefecture(self.county)[2:4]}监狱" if executor["kind"] == "prison" or \
            self.category != "temporary_release" else f"{executor['id']}看守所"
        self.emit("committed_to_custody", executor, committed, {"facility": facility})
        raise _Ended

    def block_revocation(self, t: dt.datetime, failure: str | None = None) -> dt.datetime:
        rng = self.rng
        self.emit("warning_issued", self.bureau(), t, {"reason": rng.choice(WARNING_REASONS)})
        warned = self.after(t, (5, 15))
        self.emit("warning_issued", self.bureau(), warned, {"reason": rng.choice(WARNING_REASONS)})
        proposed = self.after(warned, (1, 5))
        arrest = self.category != "temporary_release" and (
            failure == "arrest_late" or (failure is None and rng.random() < 0.3))
        self._propose(proposed, arrest)
        if failure is None and self.category != "temporary_release" and rng.random() < 0.1:
            # The court does not revoke: supervision goes on.
            ruled = self.after(proposed, (5, 25))
            if arrest:
                self.emit("arrest_decided", self.ruling_court, self.hours_after(proposed, 2, 30), {"arrest": False})
            self.emit("revocation_ruled", self.ruling_court, ruled, {"revoked": False})
            return ruled
        return self._rule(proposed, failure, arrest)

    def block_missing_then_revoked(self, t: dt.datetime) -> dt.datetime:
        """脱管 resolved by a revocation proposal with an arrest request (closes R13), pursuit and capture."""
        self.emit("contact_lost", self.bureau(), t, {})
        self.emit("police_assistance_requested", self.bureau(), self.hours_after(t, 0.5, 6), {})
        proposed = self.after(t, (10, 25))
        arrest = self.category != "temporary_release"
        self._propose(proposed, arrest)
        if arrest:
            self.emit("pursuit_started", self.police(), self.after(proposed, (1, 2)), {})
        captured = self.after(proposed, (3, 4))
        self.emit("fugitive_captured", self.police(), captured, {})
        return self._rule(proposed, None, arrest)

    def block_criminal_detention(self, t: dt.datetime) -> dt.datetime:
        """A new crime: criminal detention, then revocation (the person stays in custody)."""
        started = t.replace(hour=self.rng.randint(0, 23), minute=self.rng.randint(0, 59))
        self.emit("detention_started", self.police(), started, {"detention_kind": "criminal"},
                  recorded_at=started + dt.timedelta(minutes=self.rng.randint(5, 360)))
        proposed = self.after(started, (2, 10))
        self._propose(proposed, False)
        return self._rule(proposed, None, False)

    def failure_block(self, t: dt.datetime) -> dt.datetime:
        name = self.kind.name  # type: ignore[union-attr]
        if name in ("R07_transfer_file_not_sent", "R08_transfer_not_received"):
            return self.block_transfer(t, "file_not_sent" if name.startswith("R07") else "not_received")
        if name in ("R09_ruling_overdue", "R09_ruled_late", "R10_arrest_decision_late",
                    "R11_commitment_not_executed", "R11_executed_late"):
            failure = {"R09_ruling_overdue": "ruling_open", "R09_ruled_late": "ruling_late",
                       "R10_arrest_decision_late": "arrest_late", "R11_commitment_not_executed": "execution_open",
                       "R11_executed_late": "execution_late"}[name]
            return self.block_revocation(t, failure)
        if name == "R12_missing_not_escalated":
            return self.block_contact_lost(t, "not_escalated")
        if name == "R13_missing_unresolved":
            return self.block_contact_lost(t, "unresolved")
        if name == "R13_restored_late":
            return self.block_contact_lost(t, "late")
        if name == "R14_detention_notice_late":
            return self.block_detention(t, "late")
        if name == "A03_missing_while_detained":
            return self.block_detention(t, "missing_while_detained")
        if name == "withheld_detention":
            return self.block_detention(t)
        if name in ("R16_notice_reply_overdue", "R16_notice_replied_late"):
            return self.block_notice(t, "open" if name.endswith("overdue") else "late")
        if name == "R18_death_notice_late":
            return self.block_death(t, "late")
        if name == "R19_monitoring_overdue":
            return self.block_monitoring(t, "open")
        if name == "R19_monitoring_ended_late":
            return self.block_monitoring(t, "late")
        raise AssertionError(name)

    def finish(self) -> None:
        """Discharge exactly at the term's end (unless the failure is that it never came), then A04's stray event."""
        kind_name = self.kind.name if self.kind else None
        if kind_name == "R15_not_discharged":
            return
        discharged = self.office(self.term_end).replace(hour=self.rng.randint(9, 11))
        if discharged > self.until:
            return
        number = self.rng.randint(1, 9999)
        self.emit("discharged", self.bureau(), discharged,
                  {"certificate_no": f"({self.term_end.year}){self.abbr}{self.region[2:]}解矫字第{number:04d}号"})
        if kind_name == "A04_activity_after_end":
            stray = self.after(discharged, (3, 20))
            self.emit("warning_issued", self.bureau(), stray, {"reason": self.rng.choice(WARNING_REASONS)},
                      mark="activity")

    # -- publication -------------------------------------------------------------------------------------------------

    def publish(self) -> list[Event]:
        """Drop what happens after `until`; give every event its recorded_at (minutes to hours later, days later
        for a share of events whose timing no rule measures), never after `until`."""
        rng, until = self.rng, self.until
        kept = [e for e in self.events if e.occurred_at <= until]
        for event in kept:
            if event.recorded_at is None:
                if rng.random() < self.late_share:
                    delay = dt.timedelta(days=rng.uniform(1, 14))
                else:
                    delay = dt.timedelta(minutes=rng.uniform(1, 360))
                event.recorded_at = event.occurred_at + delay
            event.recorded_at = max(event.occurred_at, min(event.recorded_at, until)).replace(microsecond=0)
        return kept

    def envelope(self, event: Event) -> dict[str, Any]:
        person = self.published_as.get(event.event_id) or self.person
        return {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "schema_version": 2 if "id_type" in person else 1,
            "agency": event.agency,
            "person": person,
            "occurred_at": iso(event.occurred_at),
            "recorded_at": iso(event.recorded_at),  # type: ignore[arg-type]
            "case_ref": self.document_no,
            "payload": event.payload,
        }


def simulate_person(config: SimulationConfig, until: dt.datetime, county: str, number: int,
                    rates: Mapping[str, float], used_ids: set[str]) -> PersonResult:
    """One person of one county, deterministic in (seed, county, number)."""
    rng = random.Random(f"handoff-simulate/{config.seed}/{county}/{number}")
    roll, total, kind = rng.random(), 0.0, None
    for candidate in (*KINDS, *WITHHELD_KINDS):
        total += rates.get(candidate.name, 0.0)
        if roll < total:
            kind = candidate
            break
    life = Life(rng, county, config.counties, until, config.years, kind, config.late_share, used_ids)
    skipped = None
    if not life.plan():
        skipped, life.kind, life.pending = kind.name if kind else None, None, False  # type: ignore[union-attr]
        if not life.plan():
            raise SimulationError(f"--years {config.years} leaves no room for a decision before {until.isoformat()}")
    life.identify()
    life.organs()
    life.live()
    events = life.publish()
    withheld: list[Event] = []
    if life.kind is not None and life.kind.name in WITHHELD_TYPES:
        withheld = _withheld(life, events)
        events = [e for e in events if e not in withheld]
    failure = None
    if life.kind is None and config.identity:
        failure = identity_error(life, events, config.identity, used_ids)
    if life.kind is not None:
        expected = [{"rule": rule, "state": state, "triggered_by": life.marks[label]}
                    for rule, state, label in life.kind.expected]
        failure = {"failure": life.kind.name, "id_number": life.id_number, "expected": expected}
        if withheld:
            failure["withheld"] = [life.envelope(e) for e in withheld]
        recorded = {e.event_id for e in events}
        missing = [x for x in expected if x["triggered_by"] not in recorded]
        if missing:  # a guard on the windows of plan(): the failure must be on record by `until`
            raise AssertionError(f"{life.kind.name}: trigger after until for {life.id_number}")
    return PersonResult(
        id_number=life.id_number, name=life.name, county=county,
        category=None if life.kind is not None and life.kind.name == "A01_no_decision_on_record" else life.category,
        events=[life.envelope(e) for e in sorted(events, key=lambda e: (e.recorded_at, e.occurred_at))],
        failure=failure, skipped_failure=skipped,
    )


def identity_error(life: Life, events: list[Event], rates: Mapping[str, float],
                   used_ids: set[str]) -> dict[str, Any] | None:
    """Draw and inject one error of identity (IDENTITY_ERRORS) into a person's published events; its truth."""
    rng, roll, total, kind = life.rng, life.rng.random(), 0.0, None
    for name, rate in rates.items():
        total += rate
        if roll < total:
            kind = name
            break
    decision = next((e for e in events if e.event_type == "decision_effective"), None)
    if kind is None or decision is None:
        return None
    truth: dict[str, Any] = {"failure": f"identity_{kind}", "id_number": life.id_number, "expected": []}
    if kind == "mistyped_id":
        while True:  # one serial digit mistyped: the birth date stays, the check character is computed again
            position = rng.randint(14, 16)
            digits = [d for d in "0123456789" if d != life.id_number[position]]
            first17 = life.id_number[:position] + rng.choice(digits) + life.id_number[position + 1:17]
            mistyped = first17 + id_check_char(first17)
            if mistyped not in used_ids:
                used_ids.add(mistyped)
                break
        organ = decision.agency
        for event in events:
            if event.agency == organ:
                life.published_as[event.event_id] = {**life.person, "id_number": mistyped}
        truth.update(published_as=mistyped, candidate=sorted([life.id_number, mistyped]))
    elif kind == "name_variant":
        dotted = rng.choice(DOTTED_NAMES)
        life.name, life.person = dotted, {**life.person, "name": dotted}
        later = [e for e in events if e.agency["kind"] == "bureau"] or events[1:]
        if later:
            variant = dotted.replace("·", rng.choice(DOT_VARIANTS))
            life.published_as[rng.choice(later).event_id] = {**life.person, "name": variant}
    elif kind == "name_conflict":
        first = min(events, key=lambda e: (e.occurred_at, e.event_id)).occurred_at
        later = [e for e in events if e.agency["kind"] == "bureau" and e.occurred_at > first]
        if not later:
            return None
        event = rng.choice(later)
        other = life.name
        while normalised_name(other) == normalised_name(life.name):
            other = rng.choice(SURNAMES) + rng.choice(GIVEN_MALE) + rng.choice(GIVEN_FEMALE)
        life.published_as[event.event_id] = {**life.person, "name": other}
        truth["expected"].append({"rule": "A08_name_conflict", "state": "open", "triggered_by": event.event_id})
    elif kind == "duplicate_decision":
        copy = Event(decision.event_type, decision.agency, decision.occurred_at, dict(decision.payload),
                     life.new_id(), min(decision.recorded_at + dt.timedelta(hours=rng.uniform(1, 72)), life.until))
        events.append(copy)
        flagged = max(decision.event_id, copy.event_id)  # the fold orders one instant's same events by event id
        truth["expected"].append({"rule": "A09_duplicate_decision", "state": "open", "triggered_by": flagged})
    else:  # foreign
        nationality, name = rng.choice(FOREIGN_NATIONALS)
        number = rng.choice("EGMPS") + f"{rng.randint(0, 99_999_999):08d}"
        birth = dt.date(int(life.id_number[6:10]), int(life.id_number[10:12]), int(life.id_number[12:14]))
        life.person = {"id_type": "passport", "id_number": number, "nationality": nationality, "name": name,
                       "birth_date": birth.isoformat()}
        life.name = name
        life.id_number = truth["id_number"] = f"passport:{nationality}:{number}"
    return truth


def _withheld(life: Life, events: list[Event]) -> list[Event]:
    """The events of a withheld kind that stay off the record: the decision organ's (all of them), the intake's
    enrolment, the one detention of the failure's block (the first one begun after the failure's place)."""
    types = WITHHELD_TYPES[life.kind.name]  # type: ignore[union-attr]
    if life.kind.name == "withheld_detention":  # type: ignore[union-attr]
        started = next((e for e in events if e.event_type == "detention_started"
                        and e.event_id == life.marks.get("detention")), None)
        if started is None:
            return []
        ended = next((e for e in events if e.event_type == "detention_ended" and e.occurred_at > started.occurred_at),
                     None)
        return [e for e in (started, ended) if e is not None]
    if life.kind.name == "withheld_enrolment":  # type: ignore[union-attr]
        return [e for e in events if e.event_type in types][:1]
    return [e for e in events if e.event_type in types]


def validate(config: SimulationConfig) -> SimulationConfig:
    """The configuration checked (SimulationError says what is wrong), with its counties normalised."""
    counties = check_counties(config.counties)
    if config.persons < 0:
        raise SimulationError("--persons must not be negative")
    if config.years <= 0:
        raise SimulationError("--years must be positive")
    if not 0 <= config.late_share <= 1:
        raise SimulationError("--late-share must be between 0 and 1")
    kind_rates(config)
    return SimulationConfig(**{**config.__dict__, "counties": counties})


def simulate(config: SimulationConfig) -> Iterator[PersonResult]:
    """Every person of every county, in a fixed order: the counties share the persons (the first ones get the
    remainder), the people of each county are numbered from 1."""
    config = validate(config)
    counties = config.counties
    until = config.resolved_until()
    rates = kind_rates(config)
    used_ids: set[str] = set()
    share, extra = divmod(config.persons, len(counties))
    for index, county in enumerate(counties):
        for number in range(1, share + (index < extra) + 1):
            yield simulate_person(config, until, county, number, rates, used_ids)


# -- output: JSON Lines ordered by recorded_at, bounded memory ----------------------------------------------------


def _sort_key(envelope: dict[str, Any], sequence: int) -> str:
    recorded = dt.datetime.fromisoformat(envelope["recorded_at"])
    return f"{int(recorded.timestamp()):012d}{sequence:012d}"


def run(config: SimulationConfig, out: TextIO, truth: TextIO | None = None,
        progress: Callable[[int], None] | None = None, chunk_events: int = DEFAULT_CHUNK_EVENTS) -> dict[str, Any]:
    """Simulate, write the events to `out` as JSON Lines ordered by recorded_at (ties: generation order) and the
    ground truth (a JSON list of injected failures) to `truth`. Memory is bounded by `chunk_events`: sorted runs
    are spilled to temporary files and merged. Returns the summary."""
    config = SimulationConfig(**{**config.__dict__, "until": config.resolved_until()})
    failures: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    persons = events = 0
    sequence = 0
    buffer: list[tuple[str, str]] = []
    runs: list[str] = []
    tmpdir = None
    truth_started = False
    if truth is not None:
        truth.write("[")

    def spill() -> None:
        nonlocal tmpdir
        if tmpdir is None:
            tmpdir = tempfile.mkdtemp(prefix="handoff-simulate-")
        buffer.sort()
        path = os.path.join(tmpdir, f"run{len(runs):05d}.txt")
        with open(path, "w", encoding="utf-8") as handle:
            for key, line in buffer:
                handle.write(f"{key}\t{line}\n")
        runs.append(path)
        buffer.clear()

    try:
        for person in simulate(config):
            persons += 1
            categories[person.category or "unknown (no decision on record)"] += 1
            if person.failure is not None:
                failures[person.failure["failure"]] += 1
                if truth is not None:
                    truth.write(("," if truth_started else "") + "\n  " + json.dumps(person.failure, ensure_ascii=False))
                    truth_started = True
            if person.skipped_failure:
                skipped[person.skipped_failure] += 1
            for envelope in person.events:
                sequence += 1
                buffer.append((_sort_key(envelope, sequence),
                               json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))))
            events += len(person.events)
            if len(buffer) >= chunk_events:
                spill()
            if progress is not None:
                progress(persons)
        if runs:
            if buffer:
                spill()
            handles = [open(path, encoding="utf-8") for path in runs]
            try:
                for line in heapq.merge(*handles):
                    out.write(line.split("\t", 1)[1])
            finally:
                for handle in handles:
                    handle.close()
        else:
            buffer.sort()
            for _, line in buffer:
                out.write(line + "\n")
    finally:
        if tmpdir is not None:
            for path in runs:
                if os.path.exists(path):
                    os.remove(path)
            os.rmdir(tmpdir)
    if truth is not None:
        truth.write("\n]\n" if truth_started else "]\n")
    return {
        "persons": persons, "events": events, "until": iso(config.resolved_until()), "seed": config.seed,
        "categories": dict(sorted(categories.items())),
        "failures_injected": sum(failures.values()),
        "failures": {name: failures[name] for name in (*(kind.name for kind in (*KINDS, *WITHHELD_KINDS)),
                                                     *(f"identity_{kind}" for kind in IDENTITY_ERRORS))
                     if failures[name]},
        **({"failures_not_placeable": dict(sorted(skipped.items()))} if skipped else {}),
    }
