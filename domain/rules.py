"""The handoff rules of domain.md as data: trigger, fulfilment, obligated agency, deadline and legal basis.

The code that needs more than data (who exactly is obligated, when a period starts) is in `supervision.py`; the
figures live here so that a province can change a deadline with a TOML file (`HANDOFF_RULES_FILE`) and every gap
says which rule-set version found it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import tomllib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from .calendar import WorkingCalendar, YearNotice
from .catalog import EVENT_TYPES

DEFAULT_RULE_SET_VERSION = "2026.2"


class Unit(StrEnum):
    DAYS = "days"  # CPL 105 calendar days, holiday extension except in custody
    WORKING_DAYS = "working_days"
    HOURS = "hours"  # exact, no extension
    MONTHS = "months"


class Confidence(StrEnum):
    VERIFIED = "V"  # in the statute's text
    SECONDARY = "S"  # from secondary copies of M2020/M2012
    POLICY = "P"  # this product's default where the law says 立即/及时 or nothing


@dataclass(frozen=True)
class Deadline:
    amount: int
    unit: Unit


@dataclass(frozen=True)
class Rule:
    id: str
    title: str  # Chinese label for users
    trigger: tuple[str, ...]
    fulfilled_by: tuple[str, ...]
    obligated: str
    deadline: Deadline | None  # None for anomalies, which have no deadline of their own
    basis: str
    confidence: Confidence
    enabled: bool = True
    params: dict[str, int] = field(default_factory=dict)

    @property
    def is_anomaly(self) -> bool:
        return self.id.startswith("A")


def _rule(id, title, trigger, fulfilled_by, obligated, amount, unit, basis, confidence, **params) -> Rule:
    deadline = Deadline(amount, Unit(unit)) if amount is not None else None
    return Rule(id, title, tuple(trigger), tuple(fulfilled_by), obligated, deadline, basis, Confidence(confidence),
                params=params)


DEFAULT_RULES: tuple[Rule, ...] = (
    _rule("R01_bureau_not_notified", "未通知执行地社区矫正机构", ["decision_effective"],
          ["bureau_notified", "documents_delivered"], "decision organ", 5, "days", "Law 20", "V"),
    _rule("R02_documents_not_delivered", "法律文书未送达", ["decision_effective"], ["documents_delivered"],
          "decision organ", 10, "days", "Law 20, SPC 519", "V"),
    _rule("R03_receipt_not_returned", "未回执", ["documents_delivered"], ["documents_receipted"], "bureau",
          5, "days", "M2020", "S"),
    _rule("R04_not_reported", "未按时报到（漏管）", ["decision_effective", "prisoner_released"],
          ["subject_reported", "subject_enrolled"], "bureau (the person must report)", 10, "days",
          "Law 21 (V); counting from release (P)", "V"),
    _rule("R05_not_transferred", "暂予监外执行未移送（漏管）", ["decision_effective"],
          ["subject_transferred", "subject_enrolled"], "custodian (police/prison)", 10, "days", "Law 21", "V"),
    _rule("R06_not_enrolled", "未接收登记", ["subject_reported", "subject_transferred"], ["subject_enrolled"],
          "bureau", 3, "days", "M2012, policy", "S"),
    _rule("R07_transfer_file_not_sent", "变更执行地档案未移交", ["transfer_decided"], ["transfer_file_sent"],
          "old bureau", 5, "days", "M2020", "S"),
    _rule("R08_transfer_not_received", "变更执行地未报到接收（脱管）", ["transfer_decided"], ["subject_enrolled"],
          "new bureau", 7, "days", "M2012", "S"),
    _rule("R09_ruling_overdue", "撤销/收监建议逾期未裁决", ["revocation_proposed", "commitment_proposed"],
          ["revocation_ruled", "commitment_decided"], "court / decision organ", 30, "days", "Law 48, 49", "V"),
    _rule("R10_arrest_decision_overdue", "逮捕决定逾期", ["revocation_proposed"], ["arrest_decided"], "court",
          48, "hours", "Law 47", "V"),
    _rule("R11_commitment_not_executed", "已裁定未收监", ["revocation_ruled", "commitment_decided"],
          ["committed_to_custody"], "police (prison if it decided)", 1, "days", "Law 48, 49 (立即/及时)", "P"),
    _rule("R12_missing_not_escalated", "失联未及时通报公安", ["contact_lost"],
          ["police_assistance_requested", "contact_restored"], "bureau", 24, "hours", "Law 30 (立即)", "P"),
    _rule("R13_missing_unresolved", "脱管逾期未处置（脱管）", ["contact_lost"],
          ["contact_restored", "revocation_proposed", "commitment_proposed"], "bureau", 30, "days",
          "SPC 543, M2020", "V"),
    _rule("R14_detention_notice_late", "羁押未及时通报", ["detention_started"], ["(recorded_at)"], "police",
          24, "hours", "Law 32 (及时)", "P"),
    _rule("R15_not_discharged", "期满未解除矫正", ["term_end"], ["discharged"], "bureau", 1, "days", "Law 44", "P"),
    _rule("R16_notice_reply_overdue", "检察意见逾期未回复", ["procuratorial_notice_issued"], ["notice_replied"],
          "addressee", None, "days", "Law 62, SPP 553", "S",
          suggestion_default_days=60, correction_default_days=15),
    _rule("R17_assessment_overdue", "调查评估逾期", ["assessment_requested"], ["assessment_reported"], "bureau",
          10, "working_days", "M2020", "S", expedited_days=5),
    _rule("R18_death_notice_late", "死亡未及时通报", ["death_recorded"], ["(recorded_at)"], "bureau",
          5, "days", "M2020", "S"),
    _rule("R19_monitoring_overdue", "电子定位逾期未解除或延长", ["monitoring_started", "monitoring_extended"],
          ["monitoring_ended", "monitoring_extended"], "bureau", 3, "months", "Law 29", "V"),
    _rule("A01_no_decision_on_record", "无判决裁定信息", ["bureau or police event"], ["decision_effective"],
          "court", 10, "days", "cross-agency data", "P"),
    _rule("A02_region_mismatch", "执行地不一致", ["subject_enrolled"], ["transfer_decided"], "bureau",
          None, "days", "cross-agency data", "P"),
    _rule("A03_missing_while_detained", "羁押期间被列为脱管", ["contact_lost", "detention_started"],
          ["contact_restored", "detention_ended"], "police", None, "days", "cross-agency data", "P"),
    _rule("A04_activity_after_end", "矫正终止后仍有活动", ["supervision event after the episode ended"],
          ["event_retracted"], "bureau", None, "days", "cross-agency data", "P"),
    _rule("A05_unpublished_decision", "已判决未推送（名单碰撞）", ["roster_discrepancy_found"], ["event_retracted"],
          "court", None, "days", "cross-agency data: the court's list (名单碰撞)", "P"),
    _rule("A06_register_mismatch", "在册名单不一致（名单碰撞）", ["roster_discrepancy_found"], ["event_retracted"],
          "bureau", None, "days", "cross-agency data: the bureau's register (名单碰撞)", "P"),
    _rule("A07_unreported_detention", "收押未通报（名单碰撞）", ["roster_discrepancy_found"], ["event_retracted"],
          "police", None, "days", "cross-agency data: the detention centre's list (名单碰撞), Law 32", "P"),
    _rule("A08_name_conflict", "同一证件姓名不一致", ["an event under another name for the same person key"],
          ["event_retracted"], "the publishing agency", None, "days",
          "cross-agency data: names compared normalised (domain/identity.py)", "P"),
    _rule("A09_duplicate_decision", "同一文书号重复生效", ["a second decision_effective with the same document_no"],
          ["event_retracted"], "the decision organ", None, "days",
          "cross-agency data: one decision per document_no and person", "P"),
    _rule("A10_outside_jurisdiction", "超越管辖的行为", ["an act by an agency without jurisdiction over the person"],
          ["event_retracted"], "the acting agency", None, "days", "domain/jurisdiction.py", "P"),
)

# Triggers that are a moment rather than an event: the event that sets the moment opens the obligation (R15 counts
# from the term's end, which the decision sets and a term change moves).
TRIGGER_EVENTS: dict[str, tuple[str, ...]] = {"term_end": ("decision_effective",)}
# Entries of `trigger` and `fulfilled_by` that describe rather than name an event: an anomaly the fold derives from
# the history as a whole, or an obligation met by the record reaching the service. Kept as the table says them.
DESCRIPTIVE = frozenset({"term_end", "(recorded_at)", "event_retracted", "bureau or police event",
                         "supervision event after the episode ended",
                         "an act by an agency without jurisdiction over the person",
                         "an event under another name for the same person key",
                         "a second decision_effective with the same document_no"})

# The rules whose open gaps make a person 漏管 or 脱管: the numerator of the 脱管漏管率.
LOST_SUPERVISION_RULES = ("R04_not_reported", "R05_not_transferred", "R08_transfer_not_received",
                          "R13_missing_unresolved")


class RuleSetError(ValueError):
    pass


@dataclass(frozen=True)
class RuleSet:
    version: str
    rules: dict[str, Rule]
    # The State Council's holiday notices configured with the rules (`[calendar."YYYY"]`); other years come from
    # the `holidays` package (domain/calendar.py).
    notices: tuple[YearNotice, ...] = ()

    def __getitem__(self, rule_id: str) -> Rule:
        return self.rules[rule_id]

    @functools.cached_property
    def calendar(self) -> WorkingCalendar:
        """The working-day calendar of this rule set: one per rule set, so that cached due times never mix two."""
        return WorkingCalendar(self.notices)

    def describe_calendar(self) -> list[dict[str, Any]]:
        return [notice.describe() for notice in self.notices]

    def enabled(self, rule_id: str) -> bool:
        return self.rules[rule_id].enabled

    @functools.cached_property
    def opened_on(self) -> dict[str, tuple[str, ...]]:
        """Event type -> the rules it triggers, in table order (a trigger that is a moment, not an event, counts
        from the event that sets it: `TRIGGER_EVENTS`)."""
        index: dict[str, list[str]] = {}
        for rule in self.rules.values():
            for trigger in rule.trigger:
                for event_type in TRIGGER_EVENTS.get(trigger, (trigger,)):
                    if event_type in EVENT_TYPES and rule.id not in index.setdefault(event_type, []):
                        index[event_type].append(rule.id)
        return {event_type: tuple(ids) for event_type, ids in index.items()}

    @functools.cached_property
    def fulfilled_on(self) -> dict[str, frozenset[str]]:
        """Event type -> the rules whose open obligations it fulfils."""
        index: dict[str, set[str]] = {}
        for rule in self.rules.values():
            for event_type in rule.fulfilled_by:
                if event_type in EVENT_TYPES:
                    index.setdefault(event_type, set()).add(rule.id)
        return {event_type: frozenset(ids) for event_type, ids in index.items()}

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"rule": rule.id, "title": rule.title, "trigger": list(rule.trigger),
             "fulfilled_by": list(rule.fulfilled_by), "obligated": rule.obligated,
             "deadline": {"amount": rule.deadline.amount, "unit": str(rule.deadline.unit)} if rule.deadline else None,
             "basis": rule.basis, "confidence": str(rule.confidence), "enabled": rule.enabled, "params": rule.params}
            for rule in self.rules.values()
        ]


def default_rule_set() -> RuleSet:
    return RuleSet(DEFAULT_RULE_SET_VERSION, {rule.id: rule for rule in DEFAULT_RULES})


_OVERRIDABLE = {"deadline", "basis", "confidence", "enabled", "params", "title", "trigger", "fulfilled_by"}


def _event_list(value: Any, rule: Rule, key: str) -> tuple[str, ...]:
    """A TOML list of event types for `trigger` or `fulfilled_by`: catalogue event types, or the rule's own
    descriptive entries."""
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{key} must be a non-empty list of event types")
    own = set(getattr(rule, key)) & DESCRIPTIVE
    unknown = [item for item in value if item not in EVENT_TYPES and item not in own]
    if unknown:
        raise ValueError(f"{key}: unknown event type {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    return tuple(dict.fromkeys(value))


def load_rule_set(path: str | Path | None) -> RuleSet:
    """The default rule set, with the overrides of a TOML file if given.

    ```toml
    version = "guizhou-2026.1"          # optional; default: <default version>+<hash of the file>
    [rules.R04_not_reported]
    deadline = { amount = 15, unit = "days" }
    basis = "黔司发〔2026〕1号"
    confidence = "P"
    [rules.R16_notice_reply_overdue.params]
    correction_default_days = 20
    [rules.R06_not_enrolled]            # the events that open or fulfil a rule (catalogue event types)
    trigger = ["subject_reported", "subject_transferred"]
    fulfilled_by = ["subject_enrolled"]
    [calendar."2027"]                   # the State Council's notice of a year (国务院办公厅关于部分节假日安排的通知)
    holidays = ["2027-01-01", "2027-02-05", ...]  # days off that are not Saturdays or Sundays
    workdays = ["2027-01-31", ...]      # Saturdays and Sundays made working days (调休)
    source = "国办发明电〔2026〕7号"
    ```
    """
    base = default_rule_set()
    if not path:
        return base
    data = Path(path).read_bytes()
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise RuleSetError(f"{path}: not a valid TOML file: {error}") from None
    rules = dict(base.rules)
    for rule_id, changes in (document.get("rules") or {}).items():
        if rule_id not in rules:
            raise RuleSetError(f"{path}: unknown rule {rule_id!r}; known: {', '.join(rules)}")
        unknown = set(changes) - _OVERRIDABLE
        if unknown:
            raise RuleSetError(f"{path}: rule {rule_id}: cannot override {', '.join(sorted(unknown))}")
        rule = rules[rule_id]
        updates: dict[str, Any] = {}
        try:
            if "deadline" in changes:
                deadline = changes["deadline"]
                amount = int(deadline["amount"])
                if amount <= 0:
                    raise ValueError("amount must be positive")
                updates["deadline"] = Deadline(amount, Unit(deadline["unit"]))
            if "confidence" in changes:
                updates["confidence"] = Confidence(changes["confidence"])
            if "enabled" in changes:
                updates["enabled"] = bool(changes["enabled"])
            if "params" in changes:
                unknown_params = set(changes["params"]) - set(rule.params)
                if unknown_params:
                    raise ValueError(f"unknown params {', '.join(sorted(unknown_params))}")
                updates["params"] = {**rule.params, **{k: int(v) for k, v in changes["params"].items()}}
            for key in ("basis", "title"):
                if key in changes:
                    updates[key] = str(changes[key])
            for key in ("trigger", "fulfilled_by"):
                if key in changes:
                    updates[key] = _event_list(changes[key], rule, key)
        except (KeyError, TypeError, ValueError) as error:
            raise RuleSetError(f"{path}: rule {rule_id}: {error}") from None
        rules[rule_id] = replace(rule, **updates)
    notices = tuple(_notice(path, year, table) for year, table in sorted((document.get("calendar") or {}).items()))
    unknown = set(document) - {"version", "rules", "calendar"}
    if unknown:
        raise RuleSetError(f"{path}: unknown section {', '.join(sorted(unknown))}; known: version, rules, calendar")
    version = document.get("version") or f"{base.version}+{hashlib.sha256(data).hexdigest()[:8]}"
    return RuleSet(str(version), rules, notices)


def _notice(path: str | Path, year: str, table: Any) -> YearNotice:
    try:
        if not isinstance(table, dict):
            raise ValueError("expected a table with holidays, workdays and source")
        unknown = set(table) - {"holidays", "workdays", "source"}
        if unknown:
            raise ValueError(f"unknown keys {', '.join(sorted(unknown))}")
        return YearNotice(int(year), frozenset(_day(d) for d in table.get("holidays", [])),
                          frozenset(_day(d) for d in table.get("workdays", [])), str(table["source"]))
    except KeyError as error:
        raise RuleSetError(f"{path}: calendar {year}: missing {error}") from None
    except (TypeError, ValueError) as error:
        raise RuleSetError(f"{path}: calendar {year}: {error}") from None


def _day(value: Any) -> dt.date:
    # TOML has a date type (2027-01-01) and strings ("2027-01-01"); accept both.
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def rule_set_from_description(version: str, described: list[dict[str, Any]],
                              calendar: list[dict[str, Any]] | None = None) -> RuleSet:
    """The rule set back from `RuleSet.describe()` and `describe_calendar()` (as kept in the rule-set history for
    audit replays)."""
    rules = {}
    for item in described:
        deadline = item["deadline"]
        rules[item["rule"]] = Rule(
            id=item["rule"], title=item["title"], trigger=tuple(item["trigger"]),
            fulfilled_by=tuple(item["fulfilled_by"]), obligated=item["obligated"],
            deadline=Deadline(int(deadline["amount"]), Unit(deadline["unit"])) if deadline else None,
            basis=item["basis"], confidence=Confidence(item["confidence"]), enabled=bool(item["enabled"]),
            params={key: int(value) for key, value in item["params"].items()},
        )
    return RuleSet(version, rules, tuple(YearNotice.from_description(item) for item in calendar or ()))
