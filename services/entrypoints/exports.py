"""Tables as files people open elsewhere: CSV (UTF-8 with a byte-order mark, so Excel on a Chinese Windows reads the
names right) and Excel workbooks (openpyxl), each with the lines that say what the table is (截至 date, filters)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any


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
