"""The orjson transcoder must write the very bytes eventsourcing's JSON transcoder writes, and read them back alike."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.transcoder import OrjsonTranscoder


def registered(transcoder):
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


REFERENCE, FAST = registered(JSONTranscoder()), registered(OrjsonTranscoder())

leaves = (st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False)
          | st.datetimes(timezones=st.just(dt.timezone.utc) | st.just(dt.timezone(dt.timedelta(hours=8))))
          | st.uuids() | st.decimals(allow_nan=False, allow_infinity=False))
values = st.recursive(leaves, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(st.text(), children, max_size=4), max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(), values, max_size=8))
def test_same_bytes_and_same_values_as_the_json_transcoder(state):
    data = REFERENCE.encode(state)
    assert FAST.encode(state) == data
    assert FAST.decode(data) == REFERENCE.decode(data)


@pytest.mark.parametrize("data", [b'{"n":NaN}', b'{"n":123456789012345678901234567890}', b'{"s":"\\ud800"}',
                                  b'{"a":{"_type_":"uuid_hex","_data_":"' + uuid.UUID(int=7).hex.encode() + b'"}}'])
def test_what_orjson_refuses_is_read_by_json(data):
    fast, reference = FAST.decode(data), REFERENCE.decode(data)
    assert repr(fast) == repr(reference)  # repr: NaN != NaN


def test_a_person_event_state_round_trips():
    state = {"timestamp": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc), "event_id": "e",
             "payload": {"term_start": "2024-01-01", "notified_to": ["police", "procuratorate"]}, "case_ref": None,
             "amount": Decimal("1.5"), "stream": uuid.UUID(int=5)}
    assert FAST.encode(state) == REFERENCE.encode(state)
    assert FAST.decode(FAST.encode(state)) == state
