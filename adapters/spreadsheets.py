"""Reading a table an agency exported: CSV (UTF-8, or GB 18030 as Chinese Excel saves it) or XLSX (openpyxl)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from typing import Any


class UnreadableFile(ValueError):
    """Not a table this reads; the message in Chinese then English."""


def read_table(content: bytes, file_name: str) -> tuple[list[Any], Iterator[Sequence[Any]]]:
    """The header row and an iterator over the other rows of the first sheet (XLSX) or the file (CSV)."""
    if content[:4] == b"PK\x03\x04" or file_name.lower().endswith((".xlsx", ".xlsm")):
        return _xlsx(content)
    if file_name.lower().endswith(".xls") or content[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise UnreadableFile("不支持旧版 Excel（.xls）文件，请另存为 .xlsx 或 CSV / old Excel (.xls) files are not read: "
                             "save the sheet as .xlsx or CSV")
    return _csv(content)


def _csv(content: bytes) -> tuple[list[Any], Iterator[Sequence[Any]]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = content.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # gb18030 decodes almost anything; kept for clarity
        raise UnreadableFile("无法识别文件编码（应为 UTF-8 或 GB18030） / the file is neither UTF-8 nor GB 18030 text")
    if "\x00" in text:
        raise UnreadableFile("文件不是文本表格（CSV）或 Excel（.xlsx） / the file is neither CSV text nor .xlsx")
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    header = next(reader, None)
    if header is None:
        raise UnreadableFile("文件为空 / the file is empty")
    return header, reader


def _xlsx(content: bytes) -> tuple[list[Any], Iterator[Sequence[Any]]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as problem:  # openpyxl raises many kinds for a damaged file
        raise UnreadableFile(f"无法读取 Excel 文件：{problem} / cannot read the .xlsx file: {problem}") from None
    rows = workbook.worksheets[0].iter_rows(values_only=True)
    header = next(rows, None)
    if header is None:
        raise UnreadableFile("表格为空 / the sheet is empty")
    return list(header), rows
