"""Roster reconciliation (名单碰撞): an agency's own list compared with what the service knows.

The service sees only what agencies publish: a judgment never published can never raise a 漏管 gap. Procuratorates
find such cases by comparing whole lists, and so does this module, by the roster's kind (domain.md, A05–A07):

- a court's list of effective community-correction judgments (`court`): a judgment on the list with no
  `decision_effective` on record (`A05_unpublished_decision`, 已判决未推送), and a decision of that court on record
  that the list lacks;
- a bureau's register (`bureau`, 在册名单): a person on the list the service does not have in that bureau's register,
  and one the service has there that the list lacks (`A06_register_mismatch`);
- a detention centre's admissions and releases (`police`): a person under supervision admitted with no detention
  on record (`A07_unreported_detention`); when the service listed them as missing meanwhile, the finding says the
  detention explains it (A03's other face).

Pure: reading files and asking the read model are the services' job; here are the rows' law (columns, what a
valid row is, duplicates) and the comparison of rows with facts already gathered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from eventsourcing.domain import Aggregate, event

from .identity import id_number_problem, normalise_id_number, normalised_case_ref, region_problem

ROSTER_NAMESPACE = uuid.UUID("5f0c3a52-7a53-4c4e-9a63-2b2f7f0e51a1")

# The kinds of roster, what each is called, and the rule its differences are found under.
KIND_LABELS = {"court": "法院生效判决名单", "bureau": "社区矫正在册名单", "police": "看守所收押释放名单"}
KIND_RULES = {"court": "A05_unpublished_decision", "bureau": "A06_register_mismatch",
              "police": "A07_unreported_detention"}
KIND_ALIASES = {"detention": "police", "detention_centre": "police", "看守所": "police", "法院": "court",
                "司法局": "bureau", "社区矫正机构": "bureau", "公安": "police"}

# The default columns of a roster file, and the optional one of a detention list (the release date).
FIELDS = ("id_number", "name", "case_ref", "category", "date", "region")
OPTIONAL_FIELDS = ("end_date",)
FIELD_LABELS = {"id_number": "身份证号码", "name": "姓名", "case_ref": "案号", "category": "矫正类别",
                "date": "日期", "region": "区划代码", "end_date": "释放日期"}
# The columns each kind cannot do without: a judgment is known by its number and date, an admission by its date.
REQUIRED = {"court": ("id_number", "name", "case_ref", "date"), "bureau": ("id_number", "name"),
            "police": ("id_number", "name", "date")}
# Headers agencies' exports use for our columns (a file may use these without any mapping).
HEADER_ALIASES = {
    "身份证号码": "id_number", "身份证号": "id_number", "公民身份号码": "id_number", "证件号码": "id_number",
    "姓名": "name", "案号": "case_ref", "文书编号": "case_ref", "判决书编号": "case_ref", "决定书编号": "case_ref",
    "矫正类别": "category", "类别": "category", "日期": "date", "生效日期": "date", "判决生效日期": "date",
    "入矫日期": "date", "收押日期": "date", "入所日期": "date", "释放日期": "end_date", "出所日期": "end_date",
    "区划代码": "region", "执行地": "region", "执行地区划": "region",
}
CATEGORIES = {"control": "control", "probation": "probation", "parole": "parole",
              "temporary_release": "temporary_release", "管制": "control", "缓刑": "probation", "假释": "parole",
              "暂予监外执行": "temporary_release", "监外执行": "temporary_release"}
# How far after an admission a detention on record still counts as this admission's (a detention is published
# from the moment it started; an admission list may be dated the next morning).
ADMISSION_WINDOW = dt.timedelta(days=2)
MAX_ROWS = 1_000_000


class RosterError(ValueError):
    """A roster that cannot be compared at all (no rows, a required column missing, an unknown kind); `problems` in
    Chinese then English."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RosterSource:
    kind: str  # court, bureau, police
    agency_id: str

    @classmethod
    def parse(cls, text: str) -> RosterSource:
        """KIND:AGENCY_ID, e.g. court:FY-632801 (detention is a synonym of police)."""
        kind, sep, agency_id = (text or "").partition(":")
        kind = KIND_ALIASES.get(kind.strip(), kind.strip())
        if not sep or kind not in KIND_LABELS or not agency_id.strip():
            raise RosterError([f"名单来源应写作 类别:机关代码，类别为 court、bureau 或 police（看守所），如 court:FY-632801；"
                               f"收到 {text!r} / the source is KIND:AGENCY_ID with KIND court, bureau or police "
                               f"(detention), e.g. court:FY-632801; got {text!r}"])
        return cls(kind, agency_id.strip())

    def __str__(self) -> str:
        return f"{self.kind}:{self.agency_id}"


def parse_column_map(text: str | None) -> dict[str, str]:
    """`--columns id_number=公民身份号码,date=收押日期`: our field → the header the export uses."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, header = part.partition("=")
        name = name.strip()
        if not sep or name not in FIELDS + OPTIONAL_FIELDS or not header.strip():
            raise RosterError([f"列映射 {part.strip()!r} 应写作 字段=表头，字段为 {', '.join(FIELDS + OPTIONAL_FIELDS)} / "
                               f"a column mapping is FIELD=HEADER with FIELD one of "
                               f"{', '.join(FIELDS + OPTIONAL_FIELDS)}; got {part.strip()!r}"])
        mapping[name] = header.strip()
    return mapping


def column_positions(header: Sequence[Any], kind: str, mapping: Mapping[str, str]) -> dict[str, int]:
    """Where each of our fields is in the file's header: by the mapping, by its own name or a usual header."""
    cells = [str(cell).strip() if cell is not None else "" for cell in header]
    positions: dict[str, int] = {}
    for index, cell in enumerate(cells):
        name = cell if cell in FIELDS + OPTIONAL_FIELDS else HEADER_ALIASES.get(cell)
        if name and name not in positions:
            positions[name] = index
    for name, wanted in mapping.items():
        if wanted in cells:
            positions[name] = cells.index(wanted)
        else:
            positions.pop(name, None)
    missing = [name for name in REQUIRED[kind] if name not in positions]
    if missing:
        said = "、".join(f"{name}（{FIELD_LABELS[name]}）" for name in missing)
        raise RosterError([f"名单缺少必需的列：{said}；表头为：{' | '.join(cells)}。可用 --columns 字段=表头 指定 / "
                           f"required column(s) missing: {', '.join(missing)}; the header is {' | '.join(cells)}; "
                           f"map other headers with --columns FIELD=HEADER"])
    return positions


@dataclass
class RosterRow:
    """One row of a roster as read, with what is wrong with it (a row with problems is kept, not compared)."""

    number: int  # the row's line in the file (the header is line 1), as a spreadsheet numbers it
    values: dict[str, str]  # our fields as written in the file
    id_number: str = ""
    name: str = ""
    case_ref: str | None = None
    category: str | None = None
    date: dt.date | None = None
    end_date: dt.date | None = None
    region: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.number, **self.values, **({"problems": self.problems} if self.problems else {})}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()


_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")


def parse_date(text: str) -> dt.date | None:
    """2026-11-03, 2026/11/3, 2026.11.3, 2026年11月3日, 20261103 (exports write dates every way); None if none."""
    text = text.strip()
    if len(text) == 8 and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    if len(text) > 10 and text[10] in "T ":  # a moment: its day
        text = text[:10]
    found = _DATE.match(text)
    if not found:
        return None
    try:
        return dt.date(*map(int, found.groups()))
    except ValueError:
        return None


def read_rows(kind: str, header: Sequence[Any], lines: Iterable[Sequence[Any]], mapping: Mapping[str, str],
              as_of: dt.date) -> list[RosterRow]:
    """Every data row of a roster with its problems, in the file's order. Blank lines are skipped."""
    positions = column_positions(header, kind, mapping)
    raw: list[tuple[int, dict[str, str]]] = []
    numeric_ids: set[int] = set()  # rows whose ID number a spreadsheet kept as a number
    id_column = positions["id_number"]
    for offset, line in enumerate(lines):
        cells = [_text(cell) for cell in line]
        if not any(cells):
            continue
        if len(raw) >= MAX_ROWS:
            raise RosterError([f"名单超过 {MAX_ROWS:,} 行，请分批报送 / more than {MAX_ROWS:,} rows: send it in parts"])
        if id_column < len(line) and isinstance(line[id_column], (int, float)):
            numeric_ids.add(offset + 2)
        raw.append((offset + 2, {name: cells[index] if index < len(cells) else "" for name, index in positions.items()}))
    rows = checked_rows(kind, raw, as_of)
    for row in rows:
        if row.number in numeric_ids and not row.id_number:
            row.problems.append("该身份证号码在表格中存为数字，末几位已丢失：请把该列设为文本后重新导出 / the spreadsheet "
                                "kept this ID number as a number and lost its last digits: format the column as "
                                "text and export again")
    return rows


def checked_rows(kind: str, raw: Iterable[tuple[int, Mapping[str, str]]], as_of: dt.date) -> list[RosterRow]:
    """Rows (line number, our fields as written) with their problems: as read from a file, or from a stored
    roster when a reconciliation is replayed."""
    rows: list[RosterRow] = []
    seen: dict[tuple, int] = {}
    for number, values in raw:
        row = RosterRow(number=number, values=dict(values))
        _check(row, kind, as_of)
        if row.ok:
            key = (row.id_number, normalised_case_ref(row.case_ref or ""), row.date)
            if key in seen:
                row.problems.append(f"与第 {seen[key]} 行重复 / a duplicate of row {seen[key]}")
            else:
                seen[key] = row.number
        rows.append(row)
    return rows


def _check(row: RosterRow, kind: str, as_of: dt.date) -> None:
    values, problems = row.values, row.problems
    for name in REQUIRED[kind]:
        if not values.get(name):
            problems.append(f"缺少{FIELD_LABELS[name]} / {name} is empty")
    id_number = values.get("id_number", "")
    if id_number:
        problem = id_number_problem(id_number.strip())
        if problem:
            chinese, _, english = problem.partition(" / ")
            problems.append(f"身份证号码无效：{chinese} / invalid ID number: {english or chinese}")
        else:
            row.id_number = normalise_id_number(id_number.strip())
    row.name = values.get("name", "")
    row.case_ref = values.get("case_ref") or None
    if values.get("category"):
        row.category = CATEGORIES.get(values["category"])
        if row.category is None:
            problems.append(f"矫正类别 {values['category']!r} 不是管制、缓刑、假释或暂予监外执行 / category "
                            f"{values['category']!r} is not control, probation, parole or temporary_release")
    for name in ("date", "end_date"):
        if values.get(name):
            day = parse_date(values[name])
            if day is None:
                problems.append(f"{FIELD_LABELS[name]} {values[name]!r} 不是日期（如 2026-11-03） / {name} "
                                f"{values[name]!r} is not a date (e.g. 2026-11-03)")
            elif day > as_of:
                problems.append(f"{FIELD_LABELS[name]} {day} 晚于核对日期 {as_of} / {name} {day} is after the "
                                f"as-of date {as_of}")
            else:
                setattr(row, name, day)
    if row.date and row.end_date and row.end_date < row.date:
        problems.append(f"释放日期早于收押日期 / end_date {row.end_date} is before date {row.date}")
    if values.get("region"):
        if region_problem(values["region"]):
            problems.append(f"区划代码 {values['region']!r} 应为 6 位 GB/T 2260 代码 / region {values['region']!r} "
                            f"is not a 6-digit GB/T 2260 code")
        else:
            row.region = values["region"]


def content_hash(rows: Sequence[RosterRow]) -> str:
    """SHA-256 of the rows as read (our fields, in order): the same list gives the same hash whatever the file's
    format or column order."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row.number, row.values], ensure_ascii=False, sort_keys=True).encode())
    return digest.hexdigest()


def roster_id(source: RosterSource, as_of: dt.date, digest: str) -> uuid.UUID:
    """The same list of the same agency as of the same day is the same roster: sending it again changes nothing."""
    return uuid.uuid5(ROSTER_NAMESPACE, f"{source}|{as_of.isoformat()}|{digest}")


# -- what the service knew, as the comparison needs it -------------------------------------------------------------


@dataclass(frozen=True)
class KnownDecision:
    """A decision on record: whose it is, its number, when it took effect."""

    id_number: str
    name: str
    decided_by: str | None
    case_key: str | None  # the number (案号) as compared: see compare_court's `case_key`
    effective: dt.date
    region: str | None


@dataclass(frozen=True)
class KnownSpan:
    """What the service showed of a person over [start, end) (end None: still so at the moment asked)."""

    id_number: str
    name: str
    status: str | None
    in_register: bool
    region: str | None
    start: dt.datetime
    end: dt.datetime | None


@dataclass(frozen=True)
class Finding:
    """One difference between a roster and the record. Its region is the record's, else the row's, else the
    agency's, else the one the ID number was issued in (oversight must see every finding somewhere)."""

    rule: str
    direction: str  # roster_only: on the list, not on record; service_only: on record, not on the list
    id_number: str
    name: str
    region: str | None  # where the person belongs for oversight (the record's region, else the row's)
    obligated_kind: str
    obligated_id: str
    row: dict[str, Any] | None  # the roster row (evidence), None for service_only
    evidence: dict[str, Any]  # what the record shows
    explanation: str  # Chinese / English

    @property
    def key(self) -> str:
        """Identifies the finding within its roster (its event id derives from it)."""
        anchor = self.row["row"] if self.row else self.evidence.get("case_key") or ""
        return f"{self.rule}|{self.direction}|{self.id_number}|{anchor}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _span_evidence(spans: Sequence[KnownSpan]) -> list[dict[str, Any]]:
    return [{"status": s.status, "region": s.region, "from": s.start.isoformat(),
             "to": s.end.isoformat() if s.end else None} for s in spans]


def compare_court(source: RosterSource, rows: Sequence[RosterRow], decisions: Sequence[KnownDecision],
                  court_decisions: Sequence[KnownDecision], region: str | None,
                  case_key: Callable[[str], str] = normalised_case_ref) -> list[Finding]:
    """A05 both ways. `decisions`: the decisions on record of the roster's persons (at least those of the court);
    `court_decisions`: the court's decisions on record effective within the roster's period (from its earliest
    date to the as-of day). `case_key` makes a case number comparable (the record keeps numbers as keys)."""
    by_person: dict[str, list[KnownDecision]] = {}
    for decision in decisions:
        by_person.setdefault(decision.id_number, []).append(decision)
    rule, findings = KIND_RULES["court"], []
    listed: set[tuple[str, str]] = set()
    for row in rows:
        if not row.ok:
            continue
        wanted = case_key(row.case_ref or "")
        on_record = by_person.get(row.id_number, [])
        # The same number, or a decision of this court that took effect that day (a number typed differently).
        match = [d for d in on_record if d.case_key == wanted] or [
            d for d in on_record if d.decided_by == source.agency_id and d.effective == row.date]
        if match:
            listed.update((row.id_number, d.case_key) for d in match)
            continue
        others = [{"decided_by": d.decided_by, "effective": d.effective.isoformat()} for d in on_record]
        findings.append(Finding(
            rule, "roster_only", row.id_number, row.name,
            next((d.region for d in on_record if d.region), None) or row.region or region or row.id_number[:6],
            source.kind, source.agency_id, row.as_dict(), {"decisions_on_record": others},
            f"法院名单载有生效判决 {row.case_ref}（{row.date}），本系统无该判决的生效信息（已判决未推送）/ the court's list "
            f"has judgment {row.case_ref} effective {row.date}; no decision_effective for it is on record"))
    for decision in court_decisions:
        if (decision.id_number, decision.case_key) in listed:
            continue
        findings.append(Finding(
            rule, "service_only", decision.id_number, decision.name, decision.region or region,
            source.kind, source.agency_id, None,
            {"decided_by": decision.decided_by, "effective": decision.effective.isoformat(),
             "case_key": decision.case_key},
            f"本系统载有该院于 {decision.effective} 生效的判决，法院名单中没有 / a decision of this court effective "
            f"{decision.effective} is on record but not on the court's list"))
    return findings


def compare_bureau(source: RosterSource, rows: Sequence[RosterRow], register: Mapping[str, KnownSpan],
                   shown: Mapping[str, KnownSpan], region: str | None) -> list[Finding]:
    """A06 both ways. `register`: who the service has in the bureau's register at the as-of moment (by ID number);
    `shown`: what the service shows then of the roster's other persons."""
    rule, findings, listed = KIND_RULES["bureau"], [], set()
    for row in rows:
        if not row.ok:
            continue
        listed.add(row.id_number)
        if row.id_number in register:
            continue
        span = shown.get(row.id_number)
        if span is None:
            said = "本系统无此人的信息 / the person is not on record"
        elif span.in_register:
            said = (f"本系统显示其在 {span.region} 在册 / on record in the register of {span.region}")
        else:
            said = f"本系统显示其状态为 {span.status or '无'}，未在册 / on record with status {span.status}, not in register"
        findings.append(Finding(
            rule, "roster_only", row.id_number, row.name,
            (span.region if span else None) or row.region or region or row.id_number[:6],
            source.kind, source.agency_id, row.as_dict(),
            {"shown": _span_evidence([span]) if span else []},
            f"社区矫正机构在册名单有此人，本系统未显示其在该机构在册：{said} / on the bureau's register, not in its "
            f"register on record"))
    for id_number, span in register.items():
        if id_number in listed:
            continue
        findings.append(Finding(
            rule, "service_only", id_number, span.name, span.region or region, source.kind, source.agency_id, None,
            {"shown": _span_evidence([span])},
            f"本系统显示此人在该机构在册（{span.status}），在册名单中没有 / in the bureau's register on record "
            f"(status {span.status}), missing from its list"))
    return findings


def compare_police(source: RosterSource, rows: Sequence[RosterRow], spans: Mapping[str, Sequence[KnownSpan]],
                   region: str | None) -> list[Finding]:
    """A07: an admission of a person under supervision at the time, with no detention on record from the admission
    to its release (or the next two days). `spans`: what the service showed of each roster person over the rows'
    periods, in time order."""
    rule, findings = KIND_RULES["police"], []
    for row in rows:
        if not row.ok or row.date is None:
            continue
        start = dt.datetime.combine(row.date, dt.time(0), dt.timezone(dt.timedelta(hours=8)))
        end = start + ADMISSION_WINDOW
        if row.end_date is not None:
            end = min(end, dt.datetime.combine(row.end_date, dt.time(0), start.tzinfo) + dt.timedelta(days=1))
        during = [s for s in spans.get(row.id_number, ()) if s.start < end and (s.end is None or s.end > start)]
        if not any(s.in_register for s in during) or any(s.status == "detained" for s in during):
            continue  # not under supervision then (not the service's concern), or the detention is on record
        missing = any(s.status == "missing" for s in during)
        explains = ("；其间本系统将其列为脱管，实为被羁押 / meanwhile the record lists the person as missing: the "
                    "unreported detention explains it") if missing else ""
        findings.append(Finding(
            rule, "roster_only", row.id_number, row.name,
            next((s.region for s in during if s.region), None) or row.region or region or row.id_number[:6],
            source.kind, source.agency_id, row.as_dict(),
            {"shown": _span_evidence(during), "explains_missing": missing},
            f"看守所名单显示此社区矫正对象于 {row.date} 被收押，本系统无羁押信息（羁押未通报）{explains} / the detention "
            f"centre admitted this person under supervision on {row.date}; no detention_started is on record"))
    return findings


# -- the roster as kept in the store --------------------------------------------------------------------------------


class Roster(Aggregate):
    """A roster as received: its source, as-of day, hash, row count and every row (with its problems), in the event
    store like every event (encrypted when the store is), so a reconciliation can be replayed from it."""

    @staticmethod
    def create_id(source: str, as_of: str, digest: str, **_: Any) -> uuid.UUID:
        return roster_id(RosterSource.parse(source), dt.date.fromisoformat(as_of), digest)

    @event("Received")
    def __init__(self, source: str, as_of: str, digest: str, row_count: int, rows: list[dict[str, Any]],
                 file_name: str, received_by: str, received_at: str, region: str | None):
        self.source = source
        self.region = region  # the agency's region (a bureau's register is that region's)
        self.as_of = as_of
        self.digest = digest
        self.row_count = row_count
        self.rows = rows
        self.file_name = file_name
        self.received_by = received_by
        self.received_at = received_at
        self.findings: list[str] | None = None  # the finding events recorded, once compared

    @event("Compared")
    def compared(self, findings: list[str]) -> None:
        """The ids of the `roster_discrepancy_found` events its comparison recorded."""
        self.findings = list(findings)
