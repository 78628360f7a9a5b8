"""`handoff scorecard`: the monthly scorecard (月度通报) of each agency and region, as known at the month's end.

    handoff scorecard --month 2026-11 [--region 6328] [--format json|table|csv|xlsx] [--out FILE] [--current]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from services.bootstrap import Services
from services.entrypoints.cli.output import EXIT_OK, EXIT_USAGE, fail, print_json, table
from services.entrypoints.exports import (SCORECARD_AGENCY_COLUMNS, SCORECARD_REGION_COLUMNS, csv_text,
                                          scorecard_agency_row, scorecard_heading, scorecard_region_row,
                                          scorecard_xlsx)
from services.scorecard import BadMonth


def _percent(value: Any) -> str:
    return "—" if value is None else f"{value:.1f}%"


def cmd_scorecard(args: argparse.Namespace, services: Services) -> int:
    args.caught_up(services)
    try:
        report = services.scorecards.month(args.month, args.region, current=args.current)
    except BadMonth as problem:
        return fail(str(problem), EXIT_USAGE)
    if args.format == "json":
        print_json(report)
    elif args.format == "xlsx":
        if not args.out:
            return fail("--format xlsx needs --out FILE.xlsx / Excel 文件请用 --out 指定保存位置", EXIT_USAGE)
        Path(args.out).write_bytes(scorecard_xlsx(report))
        print(f"已保存 {args.out}", file=sys.stderr)
    elif args.format == "csv":
        text = csv_text(SCORECARD_AGENCY_COLUMNS, [scorecard_agency_row(a) for a in report["agencies"]]) + "\n" + \
            csv_text(SCORECARD_REGION_COLUMNS, [scorecard_region_row(r) for r in report["regions"]])
        if args.out:
            Path(args.out).write_text("\ufeff" + text, encoding="utf-8")
        else:
            print(text, end="")
    else:
        _print(report)
    return EXIT_OK


def _print(report: dict[str, Any]) -> None:
    for line in scorecard_heading(report):
        print(line)
    table("各机关 Agencies", ["机关", "到期", "按期率", "逾期中位", "推送", "补录", "被拒", "碰撞"],
          [[a["name"] if a["name"] == a["agency_id"] else f"{a['name']}\n{a['agency_id']}", a["due"], _percent(a["on_time_share"]),
            "—" if a["median_delay_days"] is None else f"{a['median_delay_days']} 天", a["published"],
            a["backdated"], a["refused_total"], a["findings_total"]] for a in report["agencies"]])
    table("各地区 Regions（脱管漏管率 ‰，排名由低到高）", ["排名", "区划", "在册", "脱管漏管", "率‰", "上月‰", "变化"],
          [[r["rank"], r["region_label"], r["in_register"], r["lost_supervision_persons"],
            r["lost_supervision_rate_permille"], r["previous_rate_permille"], _change(r["change_permille"])]
           for r in report["regions"]])


def _change(value: Any) -> str:
    if value is None:
        return "—"
    return f"+{value}" if value > 0 else str(value)


def register(commands: Any, caught_up: Any) -> None:
    scorecard = commands.add_parser("scorecard", help="月度通报: each agency's month (due, on time, delays, published, "
                                                      "backdated, refused, findings) and each region's 脱管漏管率")
    scorecard.add_argument("--month", required=True, help="YYYY-MM, e.g. 2026-11")
    scorecard.add_argument("--region", help="a region code or prefix (6328: the prefecture)")
    scorecard.add_argument("--current", action="store_true",
                           help="also the same month as known now (the 通报 itself stays as known at its end)")
    scorecard.add_argument("--format", choices=("json", "table", "csv", "xlsx"), default="table")
    scorecard.add_argument("--out", help="write the CSV or Excel file here")
    scorecard.set_defaults(handler=cmd_scorecard, caught_up=caught_up)
