"""Validation problems in the clerk's language: Chinese first, then pydantic's English ("中文 / English").

pydantic words its errors in English only ("Input should be a valid date in the format YYYY-MM-DD, invalid date
separator…"); each error has a stable `type` and a context, from which the Chinese is written here. Our own
validators (dates out of range, control characters, ID numbers) already raise "中文 / English" text, kept as is.
`english()` takes the English half of such a text, for clients that ask for English (`Accept-Language: en`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_KINDS = {"string": "字符串", "int": "整数", "float": "数字", "bool": "布尔值（true/false）", "dict": "JSON 对象",
          "list": "数组", "date": "日期", "datetime": "时间", "uuid": "UUID", "model": "JSON 对象"}

_CHINESE: dict[str, str] = {
    "missing": "缺少必填字段",
    "extra_forbidden": "不允许的字段（未知字段不会被忽略，请检查拼写）",
    "string_too_short": "过短（至少 {min_length} 个字符）",
    "string_too_long": "过长（最多 {max_length} 个字符）",
    "string_pattern_mismatch": "格式不符",
    "literal_error": "取值无效，应为 {expected} 之一",
    "enum": "取值无效，应为 {expected} 之一",
    "date_parsing": "不是有效日期，格式应为 YYYY-MM-DD（如 2024-03-01）",
    "date_from_datetime_parsing": "不是有效日期，格式应为 YYYY-MM-DD（如 2024-03-01）",
    "date_from_datetime_inexact": "应为日期，不含时刻（YYYY-MM-DD）",
    "datetime_parsing": "不是有效时间，应为 ISO 8601 格式（如 2024-03-01T10:00:00+08:00）",
    "datetime_from_date_parsing": "不是有效时间，应为 ISO 8601 格式（如 2024-03-01T10:00:00+08:00）",
    "timezone_aware": "时间须带时区（如 +08:00）",
    "greater_than_equal": "应不小于 {ge}",
    "less_than_equal": "应不大于 {le}",
    "greater_than": "应大于 {gt}",
    "less_than": "应小于 {lt}",
    "int_parsing": "不是有效整数",
    "int_from_float": "应为整数",
    "bool_parsing": "不是有效布尔值（true/false）",
    "uuid_parsing": "不是有效的 UUID（如 7d0c6a1e-2a4f-4a53-9a43-3c1f0b9e8f11）",
    "union_tag_invalid": "取值无效，应为 {expected_tags} 之一",
    "union_tag_not_found": "缺少用于区分类型的字段 {discriminator}",
    "json_invalid": "不是有效的 JSON",
    "too_long": "项数过多（最多 {max_length} 项）",
    "too_short": "项数过少（至少 {min_length} 项）",
}


def chinese(error: Mapping[str, Any]) -> str:
    """The Chinese wording of one pydantic error (an item of `ValidationError.errors()`)."""
    kind = error.get("type", "")
    context = error.get("ctx") or {}
    if kind.endswith("_type"):
        return f"应为{_KINDS.get(kind.removesuffix('_type'), '其他类型')}"
    template = _CHINESE.get(kind)
    if template is None:
        return "取值无效"
    try:
        return template.format(**context)
    except (KeyError, IndexError):
        return template.split("，")[0].split("（")[0]


def bilingual(error: Mapping[str, Any]) -> str:
    """'中文 / English' for one pydantic error; our own validators' messages are bilingual already."""
    message = str(error.get("msg", ""))
    if error.get("type") == "value_error":
        return message.removeprefix("Value error, ")
    return f"{chinese(error)} / {message}"


_CHINESE_HALF = re.compile(r"(^|; )([\w.\[\]-]+: )?[^;]*? / ")


def english(text: str) -> str:
    """The English of a '中文 / English' text (each '; '-separated part, its location kept)."""
    return _CHINESE_HALF.sub(r"\1\2", text)
