"""The agency directory: who "FY-520222-01" is, so that people read 盘州市人民法院 and not only a code.

Events name their publisher by its own code (`agency.id`), which means nothing to oversight staff. A directory,
kept by the operator as a TOML file, gives each code its kind, region and name:

    [[agency]]
    id = "FY-520222-01"
    kind = "court"
    region = "520222"
    name = "盘州市人民法院"

Parsing is strict and says every problem at once, by entry number, in Chinese then English: a directory is edited by
hand, and a typo ("nmae", a region written without quotes) must be found before the file is used, not show up as a
nameless agency on a page. This module is pure: reading and writing the file is `services/agencies.py`'s.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .catalog import AgencyKind, text_problem
from .identity import region_problem

FIELDS = ("id", "kind", "region", "name")
KINDS = tuple(kind.value for kind in AgencyKind)
KIND_LABELS = {"court": "人民法院", "procuratorate": "人民检察院", "police": "公安机关", "prison": "监狱",
               "bureau": "社区矫正机构"}
_MAX_LENGTH = 200  # as an envelope's agency id (ShortText)


@dataclass(frozen=True)
class Agency:
    id: str  # the agency's own code, as its events carry it: "FY-520222-01"
    kind: str  # an AgencyKind value: court, procuratorate, police, prison, bureau
    region: str  # GB/T 2260 code of the agency's region: "520222"
    name: str  # "盘州市人民法院"

    def __post_init__(self) -> None:
        if isinstance(self.kind, AgencyKind):  # kept as the plain value, as read from a file
            object.__setattr__(self, "kind", self.kind.value)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class AgencyDirectoryError(ValueError):
    """A directory that cannot be used; `problems` lists each problem ('中文 / English'), the message all of them."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _text_problem(field: str, value: Any) -> str | None:
    """Why a field is not a non-blank string of reasonable length without control characters ('中文 / English')."""
    if not isinstance(value, str):
        return f"{field} 应为带引号的文字 / {field} must be a quoted string"
    if len(value) > _MAX_LENGTH:
        return f"{field} 超过 {_MAX_LENGTH} 字 / {field} is longer than {_MAX_LENGTH} characters"
    problem = text_problem(value)
    if problem:
        chinese, _, english = problem.partition(" / ")
        return f"{field} {chinese} / {field} {english or chinese}"
    if value != value.strip():
        return f"{field} 首尾有空白 / {field} has leading or trailing blanks"
    return None


def agency_problems(entry: Any) -> list[str]:
    """Why one directory entry is not a valid agency ('中文 / English' each, without the entry number); [] if it is."""
    if not isinstance(entry, Mapping):
        return ["应为 [[agency]] 表 / must be an [[agency]] table"]
    problems = [f"缺少 {field} / {field} is missing" for field in FIELDS if field not in entry]
    problems += [f"未知字段 {key}（可用字段：{'、'.join(FIELDS)}） / unknown field {key} (fields: {', '.join(FIELDS)})"
                 for key in entry if key not in FIELDS]
    for field in ("id", "name"):
        if field in entry and (problem := _text_problem(field, entry[field])):
            problems.append(problem)
    if "kind" in entry and entry["kind"] not in KINDS:
        problems.append(f"kind {entry['kind']!r} 无效，应为 {'、'.join(KINDS)} 之一 / "
                        f"kind {entry['kind']!r} must be one of {', '.join(KINDS)}")
    if "region" in entry:
        region = entry["region"]
        if not isinstance(region, str):
            # `region = 520222` is a TOML integer: a leading zero would be lost, and codes are text everywhere else.
            problems.append("region 应为带引号的 6 位区划代码，如 \"520222\" / "
                            "region must be a quoted 6-digit code such as \"520222\"")
        elif problem := region_problem(region):
            problems.append(f"region {region!r} 不是有效的 6 位行政区划代码（GB/T 2260） / region {region!r}: {problem}")
    return problems


def agencies_from_document(document: Mapping[str, Any]) -> tuple[Agency, ...]:
    """The agencies of a parsed directory (`{"agency": [ {...}, ... ]}`), in file order; AgencyDirectoryError with
    every problem when any entry is bad. No `agency` array at all is an empty directory."""
    problems = [f"未知的顶层项 {key}（只能有 [[agency]]） / unknown top-level key {key} (only [[agency]] tables)"
                for key in document if key != "agency"]
    entries = document.get("agency", [])
    if not isinstance(entries, list):
        raise AgencyDirectoryError(problems + ["agency 应写作 [[agency]] 表的数组 / agency must be an array of "
                                               "[[agency]] tables"])
    agencies: list[Agency] = []
    first_entry: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        entry_problems = agency_problems(entry)
        if not entry_problems:
            earlier = first_entry.setdefault(entry["id"], number)
            if earlier != number:
                entry_problems.append(f"id {entry['id']} 与第 {earlier} 条重复 / id {entry['id']} repeats entry "
                                      f"{earlier}")
        if entry_problems:
            problems += [_numbered(number, problem) for problem in entry_problems]
        else:
            agencies.append(Agency(**{field: entry[field] for field in FIELDS}))
    if problems:
        raise AgencyDirectoryError(problems)
    return tuple(agencies)


def _numbered(number: int, problem: str) -> str:
    chinese, _, english = problem.partition(" / ")
    return f"第 {number} 条：{chinese} / entry {number}: {english}"


def parse_agencies(text: str) -> tuple[Agency, ...]:
    """The agencies of a directory's TOML text, in file order (AgencyDirectoryError says every problem)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise AgencyDirectoryError([f"不是有效的 TOML：{error} / not valid TOML: {error}"]) from None
    return agencies_from_document(document)


def directory_document(agencies: Iterable[Agency]) -> dict[str, list[dict[str, str]]]:
    """The document to write for these agencies: `{"agency": [...]}` sorted by id, so that a file's diff shows what
    changed. Refuses (AgencyDirectoryError) what `agencies_from_document` would refuse when read back."""
    entries = [agency.as_dict() for agency in sorted(agencies, key=lambda agency: agency.id)]
    agencies_from_document({"agency": entries})
    return {"agency": entries}


def with_agency(agencies: Iterable[Agency], agency: Agency, *, replace: bool = False) -> tuple[Agency, ...]:
    """The directory with `agency` added, sorted by id. An id already there is refused (AgencyDirectoryError) unless
    `replace`: a typed id that happens to exist must not silently rename another agency."""
    problems = agency_problems(agency.as_dict())
    kept = {existing.id: existing for existing in agencies}
    if agency.id in kept and not replace:
        problems.append(f"id {agency.id} 已在名录中（{kept[agency.id].name}） / id {agency.id} is already in the "
                        f"directory ({kept[agency.id].name})")
    if problems:
        raise AgencyDirectoryError(problems)
    kept[agency.id] = agency
    return tuple(sorted(kept.values(), key=lambda entry: entry.id))


def agency_label(agency_id: str | None, directory: Mapping[str, Agency] | Iterable[Agency]) -> str:
    """An agency id with its name, for a table or a page: "盘州市人民法院（FY-520222-01）"; the id alone when the
    directory does not know it (and "" for no id)."""
    if not agency_id:
        return ""
    if isinstance(directory, Mapping):
        agency = directory.get(agency_id)
    else:
        agency = next((entry for entry in directory if entry.id == agency_id), None)
    return f"{agency.name}（{agency_id}）" if agency else agency_id
