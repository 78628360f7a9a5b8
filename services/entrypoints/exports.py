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
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    sheet.title = title[:31]  # Excel's limit on a sheet's name
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
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# The register as a table (CSV, Excel, the CLI): the field's words first, the API's names after.
EXPORT_COLUMNS = ("线索编号 lead_id", "状态 state", "规则 rule", "规则名称 rule title", "社区矫正对象 name",
                  "身份证号 id_number", "地区 region", "期限 due", "缺口 gap", "已自行履行 self-fulfilled",
                  "承办人 assignee", "督办至 escalated to", "暂缓至 snoozed until")


def export_row(item: dict[str, Any], rule_title: Callable[[str], str]) -> list[Any]:
    return [item["lead_id"], item["state_label"], item["rule"], rule_title(item["rule"]), item["name"],
            item["id_number"], item["region"], fmt_due(item["due_at"]), item["gap_state"],
            "是" if item["self_fulfilled"] else "", (item["assignee"] or {}).get("name"), item["escalated_to"],
            item["snoozed_until"]]
