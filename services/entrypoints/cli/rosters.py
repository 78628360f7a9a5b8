"""`handoff reconcile`: compare an agency's roster (名单碰撞) with the record.

    handoff reconcile --source court:FY-632801 judgments.xlsx --as-of 2026-11-30 [--format json|table|csv]
    handoff reconcile --source bureau:SFJ-632801 register.csv --as-of 2026-11-30 --region 632801
    handoff reconcile --source police:GA-632801 admissions.csv --as-of 2026-11-30 --columns date=收押日期
    handoff reconcile --replay ROSTER_ID

Default columns: id_number, name, case_ref, category, date, region (their usual Chinese headers are read too,
e.g. 身份证号码, 姓名, 案号); `--columns FIELD=HEADER,...` maps other exports. Every difference is published as an
anomaly (A05–A07) and a lead; rows with problems are listed with why, and kept with the roster.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from adapters.spreadsheets import UnreadableFile, read_table
from domain.rosters import RosterError, RosterSource, parse_column_map

from services.bootstrap import Services
from services.entrypoints.cli.output import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, fail, print_json, table
from services.entrypoints.exports import csv_text
from services.rosters import RosterNotFound

DIRECTION_LABELS = {"roster_only": "名单有、系统无", "service_only": "系统有、名单无"}
SHORT_DIRECTIONS = {"roster_only": "仅名单", "service_only": "仅系统"}
CSV_COLUMNS = ["rule", "direction", "id_number", "name", "region", "row", "explanation", "lead_id"]


def cmd_reconcile(args: argparse.Namespace, services: Services) -> int:
    args.caught_up(services)
    try:
        if args.replay:
            report = services.rosters.replay(args.replay)
        else:
            if not (args.source and args.file and args.as_of):
                return fail("give --source KIND:AGENCY_ID, the roster FILE and --as-of DATE (or --replay ID) / "
                            "请给出 --source、名单文件与 --as-of", EXIT_USAGE)
            source = RosterSource.parse(args.source)
            path = Path(args.file)
            if not path.is_file():
                return fail(f"没有这个文件 / no such file: {path}", EXIT_USAGE)
            header, lines = read_table(path.read_bytes(), path.name)
            report = services.rosters.receive(source, header, lines, args.as_of, parse_column_map(args.columns),
                                              file_name=path.name, received_by="operator (CLI)", region=args.region)
            args.caught_up(services)  # the findings' leads are in the register when the command returns
    except (RosterError, UnreadableFile) as problem:
        return fail(str(problem), EXIT_USAGE)
    except RosterNotFound:
        return fail(f"没有这份名单 / no such roster: {args.replay}", EXIT_NOT_FOUND)
    if args.format == "json":
        print_json(report)
    elif args.format == "csv":
        print(csv_text(CSV_COLUMNS, [_csv_row(f) for f in report["findings"]]
                       + [["", "rejected", r.get("id_number", ""), r.get("name", ""), "", r["row"],
                           "；".join(r["problems"]), ""] for r in report["rejected_rows"]]), end="")
    else:
        _print_report(report)
    return EXIT_OK


def _csv_row(f: dict[str, Any]) -> list[Any]:
    return [f["rule"], f["direction"], f["id_number"], f["name"], f["region"], (f["row"] or {}).get("row", ""),
            f["explanation"], f["lead_id"]]


def _print_report(report: dict[str, Any]) -> None:
    roster, summary = report["roster"], report["summary"]
    agency = f"{roster['agency_id']}（{roster['agency_name']}）" if roster["agency_name"] else roster["agency_id"]
    replayed = ""
    if roster.get("replayed"):
        replayed = "；重放结果与当时记录一致" if roster["matches_recorded"] else "；重放结果与当时记录不一致！"
    print(f"{roster['kind_label']} {agency}，截至 {roster['as_of']}：{roster['rows']} 行，比对 "
          f"{roster['rows_compared']} 行，有问题 {roster['rows_rejected']} 行；发现不一致 {summary['findings']} 处"
          f"（名单有系统无 {summary['roster_only']}，系统有名单无 {summary['service_only']}）{replayed}")
    print(f"名单编号 {roster['id']}  哈希 {roster['hash'][:16]}…")
    if report["findings"]:
        # Laid out to show the whole lead id in 100 columns: `handoff leads show` takes it.
        table("名单碰撞发现 Findings（仅名单：名单有、系统无；仅系统：系统有、名单无）",
              ["规则", "方向", "身份证号码", "姓名", "行", "线索编号"],
              [[f["rule"].split("_")[0], SHORT_DIRECTIONS[f["direction"]], f["id_number"], f["name"],
                (f["row"] or {}).get("row", ""), f["lead_id"]] for f in report["findings"]])
    if report["rejected_rows"]:
        table("有问题的行 Rows refused (kept with the roster)", ["行", "身份证号码", "姓名", "问题"],
              [[r["row"], r.get("id_number", ""), r.get("name", ""), "；".join(p.split(" / ")[0] for p in r["problems"])]
               for r in report["rejected_rows"]])


def register(commands: Any, caught_up: Any) -> None:
    reconcile = commands.add_parser(
        "reconcile", help="名单碰撞: compare an agency's roster (CSV or XLSX) with the record; differences become leads")
    reconcile.add_argument("file", nargs="?", help="the roster: .csv (UTF-8 or GB18030) or .xlsx")
    reconcile.add_argument("--source", help="KIND:AGENCY_ID whose list it is: court (judgments), bureau (register), "
                                            "police (detention centre admissions); e.g. court:FY-632801")
    reconcile.add_argument("--as-of", type=dt.date.fromisoformat, help="the day the list is as of (YYYY-MM-DD)")
    reconcile.add_argument("--columns", help="FIELD=HEADER,... for exports with other headers, FIELD one of "
                                             "id_number, name, case_ref, category, date, region, end_date")
    reconcile.add_argument("--region", help="the agency's region when the agency directory does not have it")
    reconcile.add_argument("--replay", metavar="ROSTER_ID", help="compare a stored roster again, as known then")
    reconcile.add_argument("--format", choices=("json", "table", "csv"), default="table")
    reconcile.set_defaults(handler=cmd_reconcile, caught_up=caught_up)
