"""The agency directory: parsing its TOML strictly, its errors by entry number, labels; and the directory file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from domain.agencies import (KINDS, Agency, AgencyDirectoryError, agency_label, agency_problems, directory_document,
                             parse_agencies, with_agency)
from domain.catalog import AgencyKind
from domain.regions import region_name
from services.agencies import AgencyDirectory, AgencyFileError, directory_path

ROOT = Path(__file__).resolve().parents[2]

COURT = Agency("FY-520222-01", "court", "520222", "盘州市人民法院")
BUREAU = Agency("SFJ-520222-01", "bureau", "520222", "盘州市司法局")

VALID = """
[[agency]]
id = "FY-520222-01"
kind = "court"
region = "520222"
name = "盘州市人民法院"

[[agency]]
id = "SFJ-520222-01"
kind = "bureau"
region = "520222"
name = "盘州市司法局"
"""


def entry(**fields: object) -> str:
    """One [[agency]] table; a field given as None is left out."""
    values = {"id": "FY-520222-01", "kind": "court", "region": "520222", "name": "盘州市人民法院", **fields}
    lines = [f"{key} = {value}" if not isinstance(value, str) else f'{key} = "{value}"'
             for key, value in values.items() if value is not None]
    return "[[agency]]\n" + "\n".join(lines) + "\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(AgencyDirectoryError) as caught:
        parse_agencies(text)
    return caught.value.problems


# -- parsing -------------------------------------------------------------------------------------------------------


def test_a_valid_directory_gives_its_agencies_in_file_order():
    assert parse_agencies(VALID) == (COURT, BUREAU)


def test_an_empty_file_is_an_empty_directory():
    assert parse_agencies("") == ()
    assert parse_agencies("# nothing yet\n") == ()


def test_the_kinds_are_the_catalogs():
    assert set(KINDS) == {kind.value for kind in AgencyKind}
    assert Agency("FY-1", AgencyKind.COURT, "520222", "x").kind == "court"


@pytest.mark.parametrize("missing", ["id", "kind", "region", "name"])
def test_a_missing_field_is_named_with_the_entry_number(missing):
    text = entry(id="FY-1") + entry(id="FY-2") + entry(**{"id": "FY-3", missing: None})
    assert problems_of(text) == [f"第 3 条：缺少 {missing} / entry 3: {missing} is missing"]


def test_every_problem_is_said_at_once():
    text = entry(id="FY-1", name=None) + entry(id="FY-2") + entry(id="FY-3", kind="judge", region="52022")
    problems = problems_of(text)
    assert problems[0] == "第 1 条：缺少 name / entry 1: name is missing"
    assert problems[1].startswith("第 3 条：kind 'judge' 无效，应为 court、procuratorate、police、prison、bureau 之一 / "
                                  "entry 3: kind 'judge' must be one of court, procuratorate")
    assert problems[2].startswith("第 3 条：region '52022' 不是有效的 6 位行政区划代码（GB/T 2260） / entry 3: region")
    assert len(problems) == 3
    with pytest.raises(AgencyDirectoryError) as caught:
        parse_agencies(text)
    assert str(caught.value) == "\n".join(problems)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"nmae": "盘州市人民法院", "name": None},
     ["第 1 条：缺少 name / entry 1: name is missing",
      "第 1 条：未知字段 nmae（可用字段：id、kind、region、name） / entry 1: unknown field nmae (fields: id, kind, "
      "region, name)"]),
    ({"region": 520222},
     ['第 1 条：region 应为带引号的 6 位区划代码，如 "520222" / entry 1: region must be a quoted 6-digit code such '
      'as "520222"']),
    ({"region": "990000"},
     ["第 1 条：region '990000' 不是有效的 6 位行政区划代码（GB/T 2260） / entry 1: region '990000': unknown "
      "province code 99"]),
    ({"name": "   "}, ["第 1 条：name 不能只包含空白 / entry 1: name must not be blank"]),
    ({"name": " 盘州市人民法院"}, ["第 1 条：name 首尾有空白 / entry 1: name has leading or trailing blanks"]),
    ({"id": 17}, ["第 1 条：id 应为带引号的文字 / entry 1: id must be a quoted string"]),
    ({"id": "FY\\u0007"},  # a TOML escape: the raw character is not even TOML
     ["第 1 条：id 含有不可见的控制字符 U+0007 / entry 1: id contains the control character U+0007"]),
    ({"name": "法" * 201}, ["第 1 条：name 超过 200 字 / entry 1: name is longer than 200 characters"]),
])
def test_a_bad_field_is_explained(fields, expected):
    assert problems_of(entry(**fields)) == expected


def test_a_repeated_id_names_the_first_entry():
    text = entry(id="FY-1") + entry(id="FY-2") + entry(id="FY-1", name="另一个法院")
    assert problems_of(text) == ["第 3 条：id FY-1 与第 1 条重复 / entry 3: id FY-1 repeats entry 1"]


def test_a_file_that_is_not_toml_or_not_a_directory_is_refused():
    [problem] = problems_of('[[agency]]\nid = "FY-1\n')
    assert problem.startswith("不是有效的 TOML：") and " / not valid TOML: " in problem
    assert problems_of('[agency]\nid = "FY-1"\n') == [
        "agency 应写作 [[agency]] 表的数组 / agency must be an array of [[agency]] tables"]
    assert problems_of('title = "x"\n' + entry()) == [
        "未知的顶层项 title（只能有 [[agency]]） / unknown top-level key title (only [[agency]] tables)"]
    assert problems_of("agency = [1]\n") == ["第 1 条：应为 [[agency]] 表 / entry 1: must be an [[agency]] table"]


def test_agency_problems_of_one_entry():
    assert agency_problems(COURT.as_dict()) == []
    assert agency_problems({"id": "FY-1", "kind": "court", "region": "520222"}) == ["缺少 name / name is missing"]


# -- labels --------------------------------------------------------------------------------------------------------


def test_agency_label_names_a_known_agency_and_shows_an_unknown_ids_alone():
    directory = {agency.id: agency for agency in (COURT, BUREAU)}
    assert agency_label("FY-520222-01", directory) == "盘州市人民法院（FY-520222-01）"
    assert agency_label("FY-520222-01", [COURT, BUREAU]) == "盘州市人民法院（FY-520222-01）"
    assert agency_label("FY-999999", directory) == "FY-999999"
    assert agency_label("FY-520222-01", {}) == "FY-520222-01"
    assert agency_label(None, directory) == ""


# -- building a directory ------------------------------------------------------------------------------------------


def test_with_agency_adds_sorted_and_refuses_a_taken_id_unless_replacing():
    assert with_agency([COURT], BUREAU) == (COURT, BUREAU)
    assert with_agency([BUREAU], COURT) == (COURT, BUREAU)
    renamed = Agency(COURT.id, "court", "520222", "盘州市人民法院（新址）")
    with pytest.raises(AgencyDirectoryError) as caught:
        with_agency([COURT], renamed)
    assert caught.value.problems == [
        "id FY-520222-01 已在名录中（盘州市人民法院） / id FY-520222-01 is already in the directory (盘州市人民法院)"]
    assert with_agency([COURT, BUREAU], renamed, replace=True) == (renamed, BUREAU)
    with pytest.raises(AgencyDirectoryError):
        with_agency([], Agency("FY-1", "judge", "520222", "x"))


def test_a_name_with_quotes_and_backslashes_is_written_back_as_it_was(tmp_path):
    odd = Agency("FY-1", "court", "520222", '盘州市"人民"法院\\')
    directory = AgencyDirectory(tmp_path / "agencies.toml")
    directory.add(odd)
    assert AgencyDirectory(tmp_path / "agencies.toml").list() == [odd]


def test_directory_document_is_sorted_by_id():
    assert directory_document([BUREAU, COURT]) == {"agency": [COURT.as_dict(), BUREAU.as_dict()]}


# -- the seed file -------------------------------------------------------------------------------------------------


def test_the_example_directory_is_valid_and_names_the_simulators_agencies():
    agencies = parse_agencies((ROOT / "docs" / "agencies.example.toml").read_text(encoding="utf-8"))
    ids = {agency.id for agency in agencies}
    # tools/simulate.py publishes as KIND-REGION: every kind of its default county, the prefecture's court and prison.
    assert {"FY-520222", "JCY-520222", "GA-520222", "SFJ-520222", "FY-520200", "JY-520200", "SFJ-520221"} <= ids
    for agency in agencies:
        assert region_name(agency.region) is not None, agency
        assert agency.id.endswith(agency.region), agency
    assert [agency.id for agency in agencies] == sorted(ids), "kept sorted by id, as `agency add` writes it"


# -- the directory file (services/agencies.py) ---------------------------------------------------------------------


def test_the_file_is_the_setting_else_agencies_toml_here(tmp_path):
    assert directory_path({"HANDOFF_AGENCIES_FILE": str(tmp_path / "a.toml")}) == tmp_path / "a.toml"
    assert directory_path({}) == Path("agencies.toml")
    assert directory_path({"HANDOFF_AGENCIES_FILE": ""}) == Path("agencies.toml")


def test_a_missing_file_is_an_empty_directory_and_add_creates_it(tmp_path):
    path = tmp_path / "sub" / "agencies.toml"
    directory = AgencyDirectory(path)
    assert directory.list() == [] and len(directory) == 0 and directory.get("FY-1") is None
    directory.add(BUREAU)
    directory.add(COURT)
    assert directory.list() == [COURT, BUREAU]
    assert directory.name_of("FY-520222-01") == "盘州市人民法院" and directory.name_of("GA-1") is None
    assert directory.label("SFJ-520222-01") == "盘州市司法局（SFJ-520222-01）"
    assert AgencyDirectory(path).list() == [COURT, BUREAU]
    text = path.read_text(encoding="utf-8")
    assert text.index('id = "FY-520222-01"') < text.index('id = "SFJ-520222-01"')
    assert text.count("[[agency]]\n") == 2, "written as people write it, one [[agency]] table each"
    assert parse_agencies(text) == (COURT, BUREAU)
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["agencies.toml"], "no temporary file left behind"


def test_add_keeps_entries_written_meanwhile_and_refuses_a_taken_id(tmp_path):
    path = tmp_path / "agencies.toml"
    path.write_text(VALID, encoding="utf-8")
    directory = AgencyDirectory(path)
    other = AgencyDirectory(path)
    police = Agency("GA-520222-01", "police", "520222", "盘州市公安局")
    other.add(police)
    directory.add(Agency("JCY-520222-01", "procuratorate", "520222", "盘州市人民检察院"))
    assert [agency.id for agency in AgencyDirectory(path).list()] == [
        "FY-520222-01", "GA-520222-01", "JCY-520222-01", "SFJ-520222-01"]
    with pytest.raises(AgencyDirectoryError):
        directory.add(Agency("GA-520222-01", "police", "520222", "另一个公安局"))
    assert directory.name_of("GA-520222-01") == "盘州市公安局"


def test_add_refuses_to_overwrite_a_file_that_is_not_valid(tmp_path):
    path = tmp_path / "agencies.toml"
    path.write_text(VALID, encoding="utf-8")
    directory = AgencyDirectory(path)
    path.write_text(VALID + entry(id="FY-9", name=None), encoding="utf-8")
    with pytest.raises(AgencyFileError) as caught:
        directory.add(Agency("GA-1", "police", "520222", "盘州市公安局"))
    assert str(caught.value) == f"{path}: 第 3 条：缺少 name / entry 3: name is missing"
    assert "FY-9" in path.read_text(encoding="utf-8"), "left as it was"


def test_an_invalid_file_is_refused_at_load_with_its_path(tmp_path):
    path = tmp_path / "agencies.toml"
    path.write_text(entry(kind="judge"), encoding="utf-8")
    with pytest.raises(AgencyFileError) as caught:
        AgencyDirectory(path)
    assert caught.value.path == path and str(caught.value).startswith(f"{path}: 第 1 条：kind 'judge' 无效")


def test_a_reader_sees_an_edited_file_and_keeps_the_last_valid_one(tmp_path, caplog):
    path = tmp_path / "agencies.toml"
    path.write_text(entry(), encoding="utf-8")
    directory = AgencyDirectory(path)
    assert directory.name_of("FY-520222-01") == "盘州市人民法院"
    path.write_text(VALID, encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a different modification time whatever the clock's resolution
    assert directory.name_of("SFJ-520222-01") == "盘州市司法局"
    path.write_text(VALID + "[[agency]]\nid = 5\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="handoff.agencies"):
        assert directory.name_of("SFJ-520222-01") == "盘州市司法局"
        assert directory.name_of("FY-520222-01") == "盘州市人民法院"
    assert len(caplog.records) == 1 and "第 3 条：缺少 kind" in caplog.text
    path.unlink()
    assert directory.list() == []
