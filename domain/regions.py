"""Region names for GB/T 2260 codes: people read 盘州市, not 520281.

Every agency, person and gap carries a 6-digit administrative division code, and oversight staff must not have to
know the codes by heart. Codes also outlive the places they named: 盘县 (520222) became 盘州市 (520281) in 2017, yet
the records made before, and agencies that never updated their systems, still carry 520222. A lookup that knew only
today's list would call such a code unknown; this one names it and says that it was withdrawn, and what took its
place.

The list is shipped in `domain/data/gbt2260.jsonl` (its sources and their dates: `domain/data/README.md`): 3,223
codes in force at province, prefecture and county level and 3,431 withdrawn since 1980. A full name joins the
official names from the province down with a space ("贵州省 黔西南布依族苗族自治州 普安县"): the official names
are long, and the spaces show where one level ends.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_DATA_FILE = Path(__file__).resolve().parent / "data" / "gbt2260.jsonl"

# The standard's city-level groupings (110100 市辖区 …): codes, not places, so a full name leaves them out.
_GROUPINGS = frozenset({"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"})


@dataclass(frozen=True)
class RegionName:
    code: str  # the 6-digit code (a prefix asked for is given padded: "5202" → "520200")
    name: str  # "普安县"
    full_name: str  # "贵州省 黔西南布依族苗族自治州 普安县": official names from the province down, space-separated
    retired: bool = False  # withdrawn from the current list; legacy records still carry it
    retired_note: str | None = None  # "2017 年撤销，今属 520281 盘州市"
    successor: str | None = None  # the code in force that took a withdrawn code's place, when recorded


@functools.cache
def _rows() -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The list's header and its rows by code (read once: 6,600 short lines)."""
    with _DATA_FILE.open(encoding="utf-8") as handle:
        header = json.loads(handle.readline())
        rows = {row[0]: row for row in map(json.loads, handle)}
    return header, rows


def region_list_source() -> dict[str, Any]:
    """Where the list of codes came from and how many it has (the data file's first line), for an 'about' page."""
    return dict(_rows()[0])


def all_region_codes() -> list[str]:
    """Every code the list knows, in force or withdrawn, in code order."""
    return sorted(_rows()[1])


def _padded(code: str) -> str | None:
    """A 6-digit code, or a 2- or 4-digit prefix padded with zeros ("52" → "520000"); None for anything else."""
    if not isinstance(code, str) or not code.isascii() or not code.isdigit() or len(code) not in (2, 4, 6):
        return None
    return code.ljust(6, "0")


def _full_name(code: str, name: str, rows: dict[str, list[Any]]) -> str:
    """Province, prefecture and county names of a code in force, leaving out the groupings of the level between."""
    parts = []
    if not code.endswith("0000"):
        province = rows.get(code[:2] + "0000")
        if province:
            parts.append(province[1])
        if not code.endswith("00"):
            city = rows.get(code[:4] + "00")
            if city and len(city) == 2 and city[1] not in _GROUPINGS:
                parts.append(city[1])
    parts.append(name)
    return " ".join(parts)


def _withdrawn_note(withdrawn: str, successor: str | None, rows: dict[str, list[Any]]) -> str:
    when = f"{withdrawn} 年间撤销" if "—" in withdrawn else f"{withdrawn} 年撤销"
    if successor and successor in rows:
        return f"{when}，今属 {successor} {rows[successor][1]}"
    return when


@functools.lru_cache(maxsize=4096)  # tables and pages ask for the same few regions over and over
def region_name(code: str) -> RegionName | None:
    """The name of a region code (or of a 2- or 4-digit prefix: "52" 贵州省, "5202" 六盘水市), withdrawn codes
    included and flagged; None for a code the list does not know."""
    padded = _padded(code)
    if padded is None:
        return None
    rows = _rows()[1]
    row = rows.get(padded)
    if row is None:
        return None
    if len(row) == 2:
        return RegionName(padded, row[1], _full_name(padded, row[1], rows))
    _, name, full_name, withdrawn, successor = row
    return RegionName(padded, name, full_name, retired=True,
                      retired_note=_withdrawn_note(withdrawn, successor, rows), successor=successor)


def region_label(code: str) -> str:
    """A code with its name, for a table cell: "520281 盘州市", "520222 盘县（已撤销）", "520299（未知区划代码）"."""
    region = region_name(code)
    if region is None:
        return f"{code}（未知区划代码）"
    # A grouping's own name says nothing ("市辖区"): name it with its province ("北京市市辖区").
    name = region.full_name.replace(" ", "") if region.name in _GROUPINGS else region.name
    return f"{code} {name}（已撤销）" if region.retired else f"{code} {name}"
