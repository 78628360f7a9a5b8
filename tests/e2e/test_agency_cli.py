"""`handoff agency add|list` as an operator runs them, on a directory file of their own (HANDOFF_AGENCIES_FILE).

The commands are registered into a parser built here exactly as `services/entrypoints/cli/main.py` registers them
(`register(commands, formats)`); once main.py does, the last test runs them through `main()` too.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from rich.cells import cell_len

from domain.agencies import parse_agencies
from services.agencies import AgencyDirectory
from services.entrypoints.cli.agency import register

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "agencies.example.toml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="handoff")
    commands = parser.add_subparsers(dest="command", required=True)

    def formats(command: argparse.ArgumentParser) -> None:  # as main.py's
        command.add_argument("--format", choices=("json", "table"), default="table")

    register(commands, formats)
    return parser


def handoff(*argv: str) -> int:
    args = build_parser().parse_args(argv)
    assert args.needs_store is False, "the directory is a file: no store is opened"
    return args.handler(args, None)


@pytest.fixture
def directory_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "agencies.toml"
    monkeypatch.setenv("HANDOFF_AGENCIES_FILE", str(path))
    monkeypatch.chdir(tmp_path)
    return path


def add(*fields: str) -> int:
    return handoff("agency", "add", *fields)


def test_add_then_list_as_json(directory_file, capsys):
    assert add("--id", "SFJ-520222-01", "--kind", "bureau", "--region", "520222", "--name", "盘州市司法局") == 0
    assert add("--id", "FY-520222-01", "--kind", "court", "--region", "520222", "--name", "盘州市人民法院") == 0
    out = capsys.readouterr().out
    assert "已添加 added: 盘州市人民法院（FY-520222-01） 人民法院 520222 盘县（已撤销）" in out
    assert handoff("agency", "list", "--format", "json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {"id": "FY-520222-01", "kind": "court", "region": "520222", "name": "盘州市人民法院",
         "region_label": "520222 盘县（已撤销）"},
        {"id": "SFJ-520222-01", "kind": "bureau", "region": "520222", "name": "盘州市司法局",
         "region_label": "520222 盘县（已撤销）"},
    ]
    # The file is written sorted by id, and reads back as the same directory.
    agencies = parse_agencies(directory_file.read_text(encoding="utf-8"))
    assert [agency.id for agency in agencies] == ["FY-520222-01", "SFJ-520222-01"]


def test_without_the_setting_the_file_is_agencies_toml_in_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HANDOFF_AGENCIES_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert handoff("agency", "list", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == []
    assert add("--id", "GA-632801", "--kind", "police", "--region", "632801", "--name", "格尔木市公安局") == 0
    assert "格尔木市公安局" in (tmp_path / "agencies.toml").read_text(encoding="utf-8")


def test_a_refused_agency_says_why_and_changes_nothing(directory_file, capsys):
    assert add("--id", "FY-1", "--kind", "court", "--region", "5202", "--name", "盘州市人民法院") == 2
    err = capsys.readouterr().err
    assert "机关未添加 / agency not added:" in err
    assert "region '5202' 不是有效的 6 位行政区划代码（GB/T 2260）" in err
    assert not directory_file.exists()
    with pytest.raises(SystemExit):  # argparse: an unknown kind is a usage error
        add("--id", "FY-1", "--kind", "judge", "--region", "520222", "--name", "x")


def test_a_taken_id_needs_replace(directory_file, capsys):
    assert add("--id", "FY-520222", "--kind", "court", "--region", "520222", "--name", "盘县人民法院") == 0
    assert add("--id", "FY-520222", "--kind", "court", "--region", "520222", "--name", "盘州市人民法院") == 2
    err = capsys.readouterr().err
    assert "FY-520222 已在名录中（盘县人民法院），更正请加 --replace" in err
    assert add("--id", "FY-520222", "--kind", "court", "--region", "520222", "--name", "盘州市人民法院",
               "--replace") == 0
    assert [a.name for a in parse_agencies(directory_file.read_text(encoding="utf-8"))] == ["盘州市人民法院"]


def test_an_invalid_file_is_reported_with_its_path(directory_file, capsys):
    directory_file.write_text('[[agency]]\nid = "FY-1"\nkind = "court"\nregion = "520222"\n', encoding="utf-8")
    assert handoff("agency", "list") == 2
    err = capsys.readouterr().err
    assert "机关名录文件有误 / invalid agency directory:" in err
    assert f"{directory_file}: 第 1 条：缺少 name / entry 1: name is missing" in err


def test_the_table_shows_region_names_and_fits_100_columns(directory_file, capsys):
    shutil.copy(EXAMPLE, directory_file)
    # The longest names there are: an autonomous prefecture's intermediate court, with a long id.
    assert add("--id", "FY-653000-01", "--kind", "court", "--region", "653000",
               "--name", "克孜勒苏柯尔克孜自治州中级人民法院") == 0
    capsys.readouterr()
    assert handoff("agency", "list") == 0
    out = capsys.readouterr().out
    assert f"机关名录 agencies: {len(AgencyDirectory(EXAMPLE)) + 1}" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert "520222 盘县（已撤销）" in rows["FY-520222"] and "盘州市人民法院" in rows["FY-520222"]
    assert "632801 格尔木市" in rows["SFJ-632801"] and "社区矫正" in rows["SFJ-632801"]
    assert "653000 克孜勒苏柯尔克孜自治州" in rows["FY-653000-01"]
    table_lines = [line for line in out.splitlines() if line and line[0] in "┏┃┡│└"]
    assert max(cell_len(line) for line in table_lines) <= 100


def test_through_main_once_it_registers_the_commands(directory_file, capsys):
    from services.entrypoints.cli import main

    try:
        main.build_parser().parse_args(["agency", "list"])
    except SystemExit:
        pytest.skip("services/entrypoints/cli/main.py does not register `handoff agency` yet")
    capsys.readouterr()
    shutil.copy(EXAMPLE, directory_file)
    assert main.main(["agency", "list", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(parse_agencies(EXAMPLE.read_text(encoding="utf-8")))
