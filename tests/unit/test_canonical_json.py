"""Content hashes must never change: orjson's canonical JSON must be byte for byte json.dumps's."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.envelope import canonical_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


def reference(document) -> bytes:
    """The canonical form content hashes were first defined with."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=8))
def test_canonical_json_is_json_dumps_sorted_compact_utf8(document):
    assert canonical_json(document) == reference(document)


def test_every_code_point_is_written_as_json_dumps_writes_it():
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert canonical_json({"text": text, "b": [1, "二"]}) == reference({"text": text, "b": [1, "二"]})


def test_integers_beyond_64_bits_fall_back_to_json_dumps():
    document = {"n": 2**80, "m": -(2**70)}
    assert canonical_json(document) == reference(document)
