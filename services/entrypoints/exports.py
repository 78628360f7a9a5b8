"""Tables as files people open elsewhere: CSV (UTF-8 with a byte-order mark, so Excel on a Chinese Windows reads the
names right) and Excel workbooks (openpyxl), each with the lines that say what the table is (截至 date, filters)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from typing import Any

from services.entrypoints.http.pictures import fmt_due


def csv_text(columns: Sequence[str], rows: Sequence[Sequence[Any]], bom: bool = False) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
    return ("\ufeff" if bom else "") + out.getvalue()


def xlsx_bytes(title: str, heading: Sequence[str], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    """One sheet: the heading lines (what, 截至 when, which filters), a blank line, then the table with its header
    row frozen and filters on."""
    return workbook_bytes([(title, heading, columns, rows)])


Sheet = tuple[str, Sequence[str], Sequence[str], Sequence[Sequence[Any]]]  # title, heading, columns, rows


def workbook_bytes(sheets: Sequence[Sheet]) -> bytes:
    """A workbook of sheets laid out as `xlsx_bytes` lays out one."""
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for title, heading, columns, rows in sheets:
        _fill(book.create_sheet(title[:31]), heading, columns, rows)  # 31: Excel's limit on a sheet's name
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _fill(sheet: Any, heading: Sequence[str], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    for line in heading:
        sheet.append([line])
    sheet.append([])
    header_row = len(heading) + 2
    sheet.append(list(columns))
    for cell in sheet[header_row]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append(["" if value is None else value for value in row])
    sheet.freeze_panes = sheet.cell(row=header_row + 1, column=1)
    sheet.auto_filter.ref = f"A{header_row}:{get_column_letter(len(columns))}{header_row + len(rows)}"
    for index, name in enumerate(columns, start=1):
        width = max([len(str(name))] + [len(str(row[index - 1] or "")) for row in rows[:200]])
        sheet.column_dimensions[get_column_letter(index)].width = min(48, max(8, width * 1.6))


# The register as a table (CSV, Excel, the CLI): the field's words first, the API's names after.
EXPORT_COLUMNS = ("线索编号 lead_id", "状态 state", "规则 rule", "规则名称 rule title", "社区矫正对象 name",
                  "身份证号 id_number", "地区 region", "期限 due", "缺口 gap", "已自行履行 self-fulfilled",
                  "承办人 assignee", "督办至 escalated to", "暂缓至 snoozed until")


def export_row(item: dict[str, Any], rule_title: Callable[[str], str]) -> list[Any]:
    return [item["lead_id"], item["state_label"], item["rule"], rule_title(item["rule"]), item["name"],
            item["id_number"], item["region"], fmt_due(item["due_at"]), item["gap_state"],
            "是" if item["self_fulfilled"] else "", (item["assignee"] or {}).get("name"), item["escalated_to"],
            item["snoozed_until"]]


# The monthly scorecard (月度通报) as tables: per agency, then per region with its rank.
SCORECARD_AGENCY_COLUMNS = ("机关 agency", "类别 kind", "代码 id", "区划 region", "到期义务 due", "按期履行 on time",
                            "按期率% on-time share", "逾期中位天数 median delay (days)", "逾期已履行 late",
                            "逾期未履行 still open", "推送事件 published", "补录(超24小时) backdated",
                            "被拒 refused", "名单碰撞发现 findings")
SCORECARD_REGION_COLUMNS = ("排名 rank", "区划 region", "在册 in register", "脱管漏管人数 lost persons",
                            "脱管漏管率‰ rate", "上月‰ previous", "变化‰ change", "未消除缺口 open gaps")


def scorecard_agency_row(a: dict[str, Any]) -> list[Any]:
    refused = "、".join(f"{code} {n}" for code, n in sorted(a["refused"].items())) or 0
    return [a["name"], a["kind_label"], a["agency_id"], a["region"], a["due"], a["on_time"], a["on_time_share"],
            a["median_delay_days"], a["late"], a["still_open"], a["published"], a["backdated"], refused,
            a["findings_total"]]


def scorecard_region_row(r: dict[str, Any]) -> list[Any]:
    return [r["rank"], r["region_label"], r["in_register"], r["lost_supervision_persons"],
            r["lost_supervision_rate_permille"], r["previous_rate_permille"], r["change_permille"], r["open_gaps"]]


def scorecard_heading(report: dict[str, Any]) -> list[str]:
    return [f"社区矫正衔接工作月度通报 {report['month']}（{report['region_label']}）",
            f"截至 {report['as_of'][:10]} 月末，按当时掌握的信息统计（规则版本 {report['rule_set']}）"
            + ("" if report["complete"] else "；本月尚未结束，为截至目前的数字")]


def scorecard_xlsx(report: dict[str, Any]) -> bytes:
    heading = scorecard_heading(report)
    return workbook_bytes([
        ("各机关 agencies", heading, SCORECARD_AGENCY_COLUMNS, [scorecard_agency_row(a) for a in report["agencies"]]),
        ("各地区 regions", heading, SCORECARD_REGION_COLUMNS, [scorecard_region_row(r) for r in report["regions"]]),
    ])
