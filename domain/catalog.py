"""The event catalog of domain.md: one strict pydantic model per event type's payload, and who may publish it.

Payloads are validated in pydantic's strict mode from JSON, so `true` is a bool and never `"yes"`, a date is an
ISO date string and never a number, and an unknown field is an error rather than silently dropped.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_serializer,
                      model_validator)

from .identity import (IdType, document_problem, id_number_problem, id_number_refusal, normalise_id_number,
                       normalised_document_number, person_key, region_problem)

T = TypeVar("T")


class AgencyKind(StrEnum):
    COURT = "court"
    PROCURATORATE = "procuratorate"
    POLICE = "police"
    PRISON = "prison"
    BUREAU = "bureau"


class Category(StrEnum):
    """The four categories of community correction (Law 2)."""

    CONTROL = "control"  # 管制
    PROBATION = "probation"  # 缓刑
    PAROLE = "parole"  # 假释
    TEMPORARY_RELEASE = "temporary_release"  # 暂予监外执行


# Deprivation of political rights is executed by the police, not by community correction: producers that send it
# get a message saying so rather than a bare "not one of" list.
NOT_COMMUNITY_CORRECTION = {"deprivation_of_political_rights", "剥夺政治权利"}


def refusing(problem: Callable[[T], str | None]) -> Callable[[T], T]:
    """A pydantic validator from a function saying why a value is refused (None when it is fine)."""
    def check(value: T) -> T:
        found = problem(value)
        if found:
            raise ValueError(found)
        return value
    return check


RegionCode = Annotated[str, AfterValidator(refusing(region_problem))]

# The dates an event can plausibly carry: community correction's measures exist since the Criminal Law of 1979
# (管制, 缓刑, 假释), and the PRC holiday calendar (the lunar tables of the `holidays` package) ends with 2100. A date
# outside is a typing error (9999-12-31 for "indefinite", 0001-01-01 for "unknown"), refused with a clear reason,
# never a period the service would count holidays over.
EARLIEST_DATE = dt.date(1979, 1, 1)
LATEST_DATE = dt.date(2100, 12, 31)
# A deployment may set its own range (HANDOFF_PLAUSIBLE_DATES) inside these bounds, where the calendar and the day
# counting are known to work (before 1950 Shanghai's zone data has local mean time offsets).
PLAUSIBLE_BOUNDS = (dt.date(1950, 1, 1), dt.date(2200, 12, 31))
_plausible = (EARLIEST_DATE, LATEST_DATE)


def plausible_dates() -> tuple[dt.date, dt.date]:
    """The first and last date an event, a term or a question may name."""
    return _plausible


def configure_plausible_dates(earliest: dt.date, latest: dt.date) -> None:
    """Set the plausible range for this process (from the deployment's settings, at start-up)."""
    global _plausible
    low, high = PLAUSIBLE_BOUNDS
    if not low <= earliest < latest <= high:
        raise ValueError(f"合理日期范围须在 {low} 至 {high} 之内且起早于止 / the plausible range must lie within "
                         f"{low} to {high}, its start before its end: got {earliest} to {latest}")
    _plausible = (earliest, latest)


def date_range_problem(day: dt.date) -> str | None:
    """Why a date is not plausible for an event, in Chinese then English; None when it is."""
    earliest, latest = _plausible
    if earliest <= day <= latest:
        return None
    return (f"日期 {day.isoformat()} 超出合理范围（{earliest.isoformat()} 至 {latest.isoformat()}）"
            f" / date {day.isoformat()} is outside the plausible range {earliest.isoformat()} to "
            f"{latest.isoformat()}")


PlausibleDate = Annotated[dt.date, AfterValidator(refusing(date_range_problem))]

# Characters no clerk types: control characters (a NUL breaks PostgreSQL text; line breaks and tabs are allowed in
# free text only) and the bidirectional overrides that make a name read differently from what it is.
_INVISIBLE = {chr(c) for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F,
                               *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_FREE_TEXT_ALLOWED = {"\n", "\t", "\r"}


def text_problem(value: str, *, free_text: bool = False) -> str | None:
    """Why a text is not acceptable, in Chinese then English; None when it is."""
    if not value.strip():
        return "不能只包含空白 / must not be blank"
    bad = next((ch for ch in value if ch in _INVISIBLE and not (free_text and ch in _FREE_TEXT_ALLOWED)), None)
    if bad is not None:
        return f"含有不可见的控制字符 U+{ord(bad):04X} / contains the control character U+{ord(bad):04X}"
    return None


Text = Annotated[str, Field(min_length=1, max_length=4000),
                 AfterValidator(refusing(functools.partial(text_problem, free_text=True)))]
ShortText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(refusing(text_problem))]


class Payload(BaseModel):
    """Base of every payload model: strict, closed, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Empty(Payload):
    pass


class AssessmentRequested(Payload):
    bureau_region: RegionCode
    expedited: bool


class AssessmentReported(Payload):
    opinion: Literal["suitable", "unsuitable"]


def _check_category(value: str) -> Category:
    if value in NOT_COMMUNITY_CORRECTION:
        raise ValueError(
            "剥夺政治权利 (deprivation of political rights) is not community correction: it is executed by the police"
        )
    try:
        return Category(value)
    except ValueError:
        raise ValueError(f"must be one of {', '.join(Category)}") from None


# A plain string checked afterwards, so the refusal of 剥夺政治权利 gets its own message. (A "before" validator
# would switch pydantic to Python-mode validation, where strict mode refuses ISO date strings.)
CategoryField = Annotated[str, AfterValidator(_check_category)]


class DecisionEffective(Payload):
    category: CategoryField
    term_start: PlausibleDate
    term_end: PlausibleDate
    execution_region: RegionCode
    document_no: ShortText
    in_custody: bool

    @model_validator(mode="after")
    def _term_in_order(self):
        if self.term_end < self.term_start:
            raise ValueError(f"term_end {self.term_end} is before term_start {self.term_start}")
        return self


class ExecutionRegion(Payload):
    execution_region: RegionCode


class DocumentsDelivered(Payload):
    execution_region: RegionCode
    copied_to: list[AgencyKind] = Field(max_length=5)


class ToRegion(Payload):
    to_region: RegionCode


class AtRegion(Payload):
    region: RegionCode


class WarningIssued(Payload):
    reason: Text


class DetentionStarted(Payload):
    detention_kind: Literal["administrative", "criminal", "compulsory_rehab"]


class RevocationProposed(Payload):
    arrest_requested: bool


class CommitmentProposed(Payload):
    # The organ the 收监执行建议 goes to: the one that decided the 暂予监外执行 (Law 49).
    to_kind: Literal["court", "prison", "police"]


class ArrestDecided(Payload):
    arrest: bool


class RevocationRuled(Payload):
    revoked: bool


class CommitmentDecided(Payload):
    commit: bool


class CommittedToCustody(Payload):
    facility: ShortText


class NewRegion(Payload):
    new_region: RegionCode


class TermChanged(Payload):
    new_term_end: PlausibleDate
    reason: Text


class Discharged(Payload):
    certificate_no: ShortText


class DeathRecorded(Payload):
    date_of_death: PlausibleDate


class AgencyRef(Payload):
    kind: AgencyKind
    id: ShortText


class ProcuratorialNoticeIssued(Payload):
    notice_kind: Literal["correction", "suggestion"]
    addressed_to: AgencyRef
    # Absent: the rule set's default applies (SPP 553: two months for a suggestion).
    reply_within_days: Annotated[int, Field(ge=1, le=366)] | None = None
    finding: Text


class NoticeReplied(Payload):
    notice_event_id: uuid.UUID
    adopted: bool
    explanation: Text


class SupervisionReviewRecorded(Payload):
    outcome: Literal["compliant", "violation"]
    finding: Text


class RosterDiscrepancyFound(Payload):
    """A difference between an agency's own list and the record (名单碰撞, domain/rosters.py), recorded in the name
    of the agency whose list it was: the anomaly and the lead follow from it like any other event's."""

    rule: Literal["A05_unpublished_decision", "A06_register_mismatch", "A07_unreported_detention"]
    direction: Literal["roster_only", "service_only"]
    roster_id: uuid.UUID
    region: RegionCode | None = None  # where the person belongs, when the record has no episode of theirs
    row: dict[str, Any] | None = None  # the roster's row (evidence), absent when the record alone has the person
    evidence: dict[str, Any] | None = None  # what the record showed
    finding: Text


class IdentityDocument(Payload):
    """证件 / an identity document: what names a person (envelope version 2), and the other key of an identity
    link."""

    @model_serializer(mode="wrap")
    def _without_absent_fields(self, serialise: Any) -> dict[str, Any]:
        return {name: value for name, value in serialise(self).items() if value is not None}

    id_type: Annotated[IdType | None, Field(description=(
        "证件类型（schema_version 2 起；缺省为 resident 居民身份证）：resident、resident_legacy15 15 位旧身份证、"
        "foreign_permanent_resident 外国人永久居留身份证、passport 护照（须填 nationality）、hk_macau_permit "
        "港澳居民来往内地通行证、taiwan_permit 台湾居民来往大陆通行证 / identity document type (from schema_version 2; "
        "absent means resident)"), examples=["resident"])] = None
    nationality: Annotated[str | None, Field(description=(
        "国籍（ISO 3166-1 三字母代码；护照必填） / nationality, ISO 3166-1 alpha-3 (required with a passport)"),
        examples=["KOR"])] = None
    id_number: Annotated[str, Field(min_length=1, max_length=40, description=(
        "证件号码：居民身份证为 18 位（GB 11643 校验码） / the document's number: 18 characters with a GB 11643 "
        "check character for a resident ID"), examples=["520222198001011236"])]

    @field_validator("nationality")
    @classmethod
    def _nationality_goes_with_its_document(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("id_type") not in (IdType.PASSPORT, IdType.FOREIGN_PERMANENT_RESIDENT):
            raise ValueError("只有护照和外国人永久居留身份证报送国籍 / nationality goes with a passport or a foreign "
                             "permanent resident ID only")
        return value.strip().upper()

    @field_validator("id_number")
    @classmethod
    def _valid_number_of_its_type(cls, value: str, info: ValidationInfo) -> str:
        if "id_type" not in info.data:
            return value  # the type itself is refused
        id_type = info.data["id_type"] or IdType.RESIDENT
        if id_type is IdType.RESIDENT and len(value) == 18 and value.isascii() and value.isalnum():
            problem = id_number_problem(value)  # the common case, cached: no Unicode normalisation needed
            if problem:
                raise ValueError(id_number_refusal(problem))
            return normalise_id_number(value)
        number = normalised_document_number(value)
        if id_type is IdType.PASSPORT and "nationality" not in info.data:
            return number  # the nationality is refused
        problem = document_problem(id_type, number, info.data.get("nationality"))
        if problem:
            raise ValueError(id_number_refusal(problem) if id_type is IdType.RESIDENT else f"证件号码无效：{problem}")
        return number

    @property
    def key(self) -> str:
        """The person key (domain/identity.py `person_key`): what joins this person's records."""
        return person_key(self.id_type or IdType.RESIDENT, self.id_number, self.nationality)


class IdentityLink(Payload):
    """Two person keys are (no longer) one person: the envelope's person and `other` (domain/merging.py)."""

    other: IdentityDocument
    reason: Text


class EventRetracted(Payload):
    retracted_event_id: uuid.UUID
    reason: Text


_ALL = frozenset(AgencyKind)
_DECISION_ORGANS = frozenset({AgencyKind.COURT, AgencyKind.PRISON, AgencyKind.POLICE})
_BUREAU = frozenset({AgencyKind.BUREAU})
_COURT = frozenset({AgencyKind.COURT})
_POLICE = frozenset({AgencyKind.POLICE})
_CUSTODIANS = frozenset({AgencyKind.POLICE, AgencyKind.PRISON})
_PROCURATORATE = frozenset({AgencyKind.PROCURATORATE})
# The agencies whose lists are reconciled: courts (judgments), bureaus (registers), police (detention centres).
_ROSTER_KEEPERS = frozenset({AgencyKind.COURT, AgencyKind.BUREAU, AgencyKind.POLICE})


class EventSpec(BaseModel):
    """One row of the event catalog."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    event_type: str
    payload: type[Payload]
    publishers: frozenset[AgencyKind]
    meaning: str


def _spec(event_type: str, payload: type[Payload], publishers: frozenset[AgencyKind], meaning: str) -> EventSpec:
    return EventSpec(event_type=event_type, payload=payload, publishers=publishers, meaning=meaning)


CATALOG: dict[str, EventSpec] = {
    spec.event_type: spec
    for spec in [
        _spec("assessment_requested", AssessmentRequested,
              frozenset({AgencyKind.COURT, AgencyKind.PROCURATORATE, AgencyKind.PRISON, AgencyKind.POLICE}),
              "委托调查评估 (Law 18)"),
        _spec("assessment_reported", AssessmentReported, _BUREAU, "调查评估意见 returned"),
        # Prison and police may publish it only for temporary_release: see publisher_problem().
        _spec("decision_effective", DecisionEffective, _DECISION_ORGANS,
              "judgment / ruling / decision takes effect; opens an episode"),
        _spec("bureau_notified", ExecutionRegion, _DECISION_ORGANS, "通知执行地社区矫正机构 (Law 20)"),
        _spec("documents_delivered", DocumentsDelivered, _DECISION_ORGANS, "送达法律文书, 抄送 (Law 20)"),
        _spec("documents_receipted", Empty, _BUREAU, "回执"),
        _spec("prisoner_released", ToRegion, _CUSTODIANS, "a parolee or 暂予监外执行 subject leaves custody"),
        _spec("subject_transferred", ToRegion, _CUSTODIANS, "移送 of a 暂予监外执行 subject to the bureau (Law 21)"),
        _spec("subject_reported", AtRegion, _BUREAU, "the person reports (报到)"),
        _spec("subject_enrolled", AtRegion, _BUREAU, "接收登记, 建档, 宣告 (Law 22): supervision starts"),
        _spec("contact_lost", Empty, _BUREAU, "失去联系 / 脱管 (Law 30)"),
        _spec("police_assistance_requested", Empty, _BUREAU, "the bureau asks police to help search"),
        _spec("contact_restored", Empty, _BUREAU, "found again"),
        _spec("warning_issued", WarningIssued, _BUREAU, "警告"),
        _spec("detention_started", DetentionStarted, _POLICE, "拘留 / 强制措施 (Law 32)"),
        _spec("detention_ended", Empty, _POLICE, "released from that detention"),
        _spec("revocation_proposed", RevocationProposed, _BUREAU, "撤销缓刑/假释建议 (Law 46–47)"),
        _spec("commitment_proposed", CommitmentProposed, _BUREAU, "收监执行建议 for 暂予监外执行 (Law 49)"),
        _spec("arrest_decided", ArrestDecided, _COURT, "within 48 h of the request (Law 47)"),
        _spec("revocation_ruled", RevocationRuled, _COURT, "(Law 48)"),
        _spec("commitment_decided", CommitmentDecided, _DECISION_ORGANS, "(Law 49)"),
        _spec("committed_to_custody", CommittedToCustody, _CUSTODIANS, "送交监狱/看守所, 收监 executed; episode ends"),
        _spec("pursuit_started", Empty, _POLICE, "追捕 (Law 50)"),
        _spec("fugitive_captured", Empty, _POLICE, "追捕 (Law 50)"),
        _spec("transfer_decided", NewRegion, _BUREAU, "变更执行地 decided by the old bureau (Law 27)"),
        _spec("transfer_file_sent", NewRegion, _BUREAU, "documents and file handed to the new bureau"),
        _spec("term_changed", TermChanged, _COURT, "e.g. 减刑 (Law 33)"),
        _spec("monitoring_started", Empty, _BUREAU, "电子定位 (Law 29)"),
        _spec("monitoring_extended", Empty, _BUREAU, "电子定位 (Law 29)"),
        _spec("monitoring_ended", Empty, _BUREAU, "电子定位 (Law 29)"),
        _spec("discharged", Discharged, _BUREAU, "解除社区矫正 at term end (Law 44); episode ends"),
        _spec("death_recorded", DeathRecorded, frozenset({AgencyKind.BUREAU, AgencyKind.POLICE}),
              "(Law 51); episode ends"),
        _spec("procuratorial_notice_issued", ProcuratorialNoticeIssued, _PROCURATORATE,
              "纠正意见 / 检察建议 (Law 62)"),
        _spec("notice_replied", NoticeReplied,
              frozenset({AgencyKind.COURT, AgencyKind.POLICE, AgencyKind.PRISON, AgencyKind.BUREAU}), "written reply"),
        _spec("supervision_review_recorded", SupervisionReviewRecorded, _PROCURATORATE,
              "a prosecution review of a case"),
        # Any kind may retract, but only its own events: checked against the stream in the Person aggregate.
        _spec("roster_discrepancy_found", RosterDiscrepancyFound, _ROSTER_KEEPERS,
              "名单碰撞: the agency's own list differs from the record (A05–A07)"),
        _spec("event_retracted", EventRetracted, _ALL, "mistakes are retracted, never deleted"),
        _spec("identity_linked", IdentityLink, _ALL, "two person keys are one person (published by the agency that "
                                                     "made the error, or in its name by an admin)"),
        _spec("identity_unlinked", IdentityLink, _ALL, "two person keys are no longer one person"),
    ]
}

EVENT_TYPES = tuple(CATALOG)


def publisher_problem(kind: AgencyKind, event_type: str, payload: Payload) -> str | None:
    """Why an agency of `kind` may not publish this event, or None when it may."""
    spec = CATALOG[event_type]
    if kind not in spec.publishers:
        allowed = ", ".join(sorted(spec.publishers))
        return f"an agency of kind {kind} may not publish {event_type} (allowed: {allowed})"
    if (
        event_type == "decision_effective"
        and kind in (AgencyKind.PRISON, AgencyKind.POLICE)
        and payload.category is not Category.TEMPORARY_RELEASE  # type: ignore[attr-defined]
    ):
        return f"{kind} may publish decision_effective only for temporary_release (暂予监外执行)"
    return None
