"""eventsourcing's JSON transcoder, with orjson doing the work where it gives exactly the same result.

Every stored event's state is written and read through the transcoder; json's encoder and decoder (with their
Python hooks for datetimes and UUIDs) were a tenth of the ingest path. The stored bytes do not change: `encode`
uses orjson only for states made of the values orjson writes exactly as json does (str, int within 64 bits, bool,
None, dicts with str keys, lists, and datetimes, which both hand to the same `_type_`/`_data_` transcoding), and
json for anything else (UUIDs, floats, tuples, subclasses). `decode` falls back to json for what orjson refuses
(NaN, integers beyond 64 bits, lone surrogates). Selected with eventsourcing's TRANSCODER_TOPIC (adapters/config.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder

_INT_RANGE = range(-(2**63), 2**64)


def _written_alike(value: Any) -> bool:
    """Whether orjson writes `value` byte for byte as json.dumps(separators=(",", ":"), ensure_ascii=False) does,
    datetimes included (both pass them to the transcoder's `_encode_obj`). Loops, not all(): this runs for every
    stored event."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            item_kind = type(item)
            if item_kind is str or item is None or item_kind is bool or item_kind is dt.datetime:
                continue
            if not _written_alike(item):
                return False
        return True
    if kind is str or value is None or kind is bool or kind is dt.datetime:
        return True
    if kind is int:
        return value in _INT_RANGE
    if kind is list:
        for item in value:
            if not _written_alike(item):
                return False
        return True
    return False


class OrjsonTranscoder(JSONTranscoder):
    def encode(self, obj: Any) -> bytes:
        if _written_alike(obj):
            return orjson.dumps(obj, default=self._encode_obj, option=orjson.OPT_PASSTHROUGH_DATETIME)
        return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        try:
            return self._revive(orjson.loads(data))
        except (orjson.JSONDecodeError, _ReadDifferently):
            return super().decode(data)

    def _revive(self, value: Any) -> Any:
        """json's object_hook, applied the same way: to every object, innermost first."""
        kind = type(value)
        if kind is dict:
            for key, item in value.items():
                value[key] = self._revive(item)
            return self._decode_obj(value)
        if kind is list:
            return [self._revive(item) for item in value]
        if kind is float:  # orjson reads an integer beyond 64 bits as a float; json keeps it exact
            raise _ReadDifferently
        return value


class _ReadDifferently(Exception):
    """orjson's reading may differ from json's: read with json."""
