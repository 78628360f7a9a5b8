"""Region names (GB/T 2260): codes in force, prefixes, withdrawn codes, unknown codes, and the shipped list itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from domain.identity import PROVINCE_PREFIXES, region_problem
from domain.regions import all_region_codes, region_label, region_list_source, region_name

ROOT = Path(__file__).resolve().parents[2]
DATA_FILE = ROOT / "domain" / "data" / "gbt2260.jsonl"


@pytest.mark.parametrize(("code", "name", "full_name"), [
    ("520000", "贵州省", "贵州省"),
    ("520200", "六盘水市", "贵州省 六盘水市"),
    ("520281", "盘州市", "贵州省 六盘水市 盘州市"),
    ("520201", "钟山区", "贵州省 六盘水市 钟山区"),
    ("520203", "六枝特区", "贵州省 六盘水市 六枝特区"),
    ("520204", "水城区", "贵州省 六盘水市 水城区"),
    ("520122", "息烽县", "贵州省 贵阳市 息烽县"),
    ("522323", "普安县", "贵州省 黔西南布依族苗族自治州 普安县"),
    ("632801", "格尔木市", "青海省 海西蒙古族藏族自治州 格尔木市"),
    ("632802", "德令哈市", "青海省 海西蒙古族藏族自治州 德令哈市"),
    ("632803", "茫崖市", "青海省 海西蒙古族藏族自治州 茫崖市"),
    ("632821", "乌兰县", "青海省 海西蒙古族藏族自治州 乌兰县"),
    ("632822", "都兰县", "青海省 海西蒙古族藏族自治州 都兰县"),
    ("632823", "天峻县", "青海省 海西蒙古族藏族自治州 天峻县"),
    ("630102", "城东区", "青海省 西宁市 城东区"),
    ("110000", "北京市", "北京市"),
    ("110105", "朝阳区", "北京市 朝阳区"),  # the grouping 110100 市辖区 is no level of a name
    ("469001", "五指山市", "海南省 五指山市"),  # nor is 469000 省直辖县级行政区划
    ("441900", "东莞市", "广东省 东莞市"),
    ("820000", "澳门特别行政区", "澳门特别行政区"),
])
def test_a_code_in_force_has_its_name_and_full_name(code, name, full_name):
    region = region_name(code)
    assert region is not None
    assert (region.code, region.name, region.full_name) == (code, name, full_name)
    assert not region.retired and region.retired_note is None and region.successor is None
    assert region_label(code) == f"{code} {name}"


@pytest.mark.parametrize(("prefix", "code", "name"), [
    ("52", "520000", "贵州省"), ("5202", "520200", "六盘水市"), ("63", "630000", "青海省"),
    ("6328", "632800", "海西蒙古族藏族自治州"), ("5223", "522300", "黔西南布依族苗族自治州"),
])
def test_a_prefix_names_its_province_or_city(prefix, code, name):
    region = region_name(prefix)
    assert region is not None and (region.code, region.name) == (code, name)
    assert region_label(prefix) == f"{prefix} {name}"


def test_a_grouping_of_the_standard_is_named_with_its_province():
    region = region_name("1101")
    assert region is not None and region.full_name == "北京市 市辖区" and not region.retired
    assert region_label("1101") == "1101 北京市市辖区"
    assert region_label("500200") == "500200 重庆市县"


@pytest.mark.parametrize(("code", "name", "full_name", "year", "successor", "note"), [
    ("520222", "盘县", "贵州省 六盘水市 盘县", "2017", "520281", "2017 年撤销，今属 520281 盘州市"),
    ("520221", "水城县", "贵州省 六盘水市 水城县", "2020", "520204", "2020 年撤销，今属 520204 水城区"),
    ("522200", "铜仁地区", "贵州省 铜仁地区", "2011", "520600", "2011 年撤销，今属 520600 铜仁市"),
    ("371202", "莱城区", "山东省 莱芜市 莱城区", "2018", "370116", "2018 年撤销，今属 370116 莱芜区"),
])
def test_a_withdrawn_code_is_named_and_flagged(code, name, full_name, year, successor, note):
    region = region_name(code)
    assert region is not None
    assert (region.name, region.full_name, region.retired, region.successor) == (name, full_name, True, successor)
    assert region.retired_note == note and year in region.retired_note
    assert region_label(code) == f"{code} {name}（已撤销）"


def test_a_withdrawal_known_only_within_a_range_says_so():
    region = region_name("330103")  # 杭州市下城区, merged into 拱墅区 after the 2019-04 list
    assert region is not None and region.retired and region.successor is None
    assert region.retired_note == "2019—2026 年间撤销"


@pytest.mark.parametrize("code", [
    "632825",  # never a GB/T 2260 code (大柴旦行委 had the statistical code 632857, not in GB/T 2260 either)
    "520299", "990000", "000000", "", "5", "520", "52022", "5202220", "52022a", "５２０２２２", " 520222",
])
def test_what_the_list_does_not_know_is_none(code):
    assert region_name(code) is None
    assert region_label(code) == f"{code}（未知区划代码）"


def region_codes_in(path: Path) -> set[str]:
    """6-digit codes written as strings in a test or tool file (18-digit ID numbers are not matched)."""
    return set(re.findall(r"""["'](\d{6})["']""", path.read_text(encoding="utf-8")))


def test_every_region_code_the_tests_and_the_simulator_use_has_a_name():
    used = set()
    for path in [*(ROOT / "tests").rglob("*.py"), ROOT / "tools" / "simulate.py"]:
        if path.resolve() != Path(__file__).resolve():  # this file names unknown codes on purpose
            used |= region_codes_in(path)
    used = {code for code in used if region_problem(code) is None}  # the invalid codes the tests refuse on purpose
    assert {"520222", "520221", "520203", "632801", "110105"} <= used
    unnamed = sorted(code for code in used if region_name(code) is None)
    assert unnamed == []


def test_the_shipped_list_is_well_formed():
    lines = DATA_FILE.read_text(encoding="utf-8").splitlines()
    header, rows = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    codes = [row[0] for row in rows]
    assert len(codes) == len(set(codes)), "a code appears twice"
    for row in rows:
        code = row[0]
        assert len(code) == 6 and code.isascii() and code.isdigit(), row
        assert code[:2] in PROVINCE_PREFIXES, row
        assert len(row) in (2, 5) and row[1] and row[1] == row[1].strip(), row
    current = [row for row in rows if len(row) == 2]
    retired = [row for row in rows if len(row) == 5]
    assert header["counts"] == {"current": len(current), "retired": len(retired)}
    assert len(current) > 3200 and len(retired) > 3000
    assert header["current"] and header["history"]  # where the list came from, and when
    assert region_list_source()["counts"] == header["counts"]
    assert all_region_codes() == sorted(codes)
    in_force = {row[0] for row in current}
    # Every province of the standard is in force, and so is the province of every code in force.
    assert {prefix + "0000" for prefix in PROVINCE_PREFIXES} <= in_force
    assert all(code[:2] + "0000" in in_force for code in in_force)
    # A successor is a code in force, and a withdrawal has a year or a range of years.
    for row in retired:
        assert row[4] is None or row[4] in in_force, row
        assert re.fullmatch(r"\d{4}(—\d{4})?", row[3]), row
