"""The dashboard's words: a dict literal silently keeps the last of two equal keys, so a new label named like an old
one would replace it on every page (it did once: the scorecard's "agency" turned the gap queue's "Obligated agency"
into "Agency"). Both languages say the same things."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

from services.entrypoints.http.labels import TEXT

LABELS = Path(__file__).resolve().parents[2] / "services" / "entrypoints" / "http" / "labels.py"


def test_no_label_is_written_twice_in_one_table():
    repeated = []
    for node in ast.walk(ast.parse(LABELS.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Dict):
            keys = [key.value for key in node.keys if isinstance(key, ast.Constant)]
            repeated += [f"line {node.lineno}: {key}" for key, n in collections.Counter(keys).items() if n > 1]
    assert repeated == []


def test_both_languages_have_the_same_words():
    assert set(TEXT["zh"]) == set(TEXT["en"])
