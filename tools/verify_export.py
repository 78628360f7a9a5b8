#!/usr/bin/env python3
"""Check a `handoff audit export` offline, with the Python standard library only.

    python tools/verify_export.py export.json [--anchor anchors.json]

Prints `OK: ...` and exits 0 when every check passes, or `FAIL: <the first failure>` and exits 1 (2 when the file
cannot be read). The checks, in order (docs/audit.md explains them):

 1. the stream belongs to the ID number: stream_id = uuid5(person_namespace, ID number with an upper-case check
    character), and every event carries it;
 2. the history is whole from its start: versions 1, 2, 3, ... without a gap, the first a `Person.Registered`;
 3. each event's event_hash is the SHA-256 of its canonical encoding (recomputed from topic, originator id, version
    and the state bytes);
 4. the chain: starting from start_prev_hash, folding chain_hash = SHA-256(prev || event_hash) over the listed
    event hashes in position order gives, at each of the person's positions, that event's event_hash, prev_hash and
    chain_hash, and ends at the head (position and hash);
 5. the anchor: the chain hash at the anchored position is the anchored hash. Use --anchor with the anchors a third
    party holds (printed by `handoff audit anchor`): the anchor inside the export came from the same database.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import uuid

FORMAT = "handoff-audit-export/1"
HASH_DOMAIN = b"handoff.audit.event.v1"
GENESIS = "0" * 64
REGISTERED = "domain.person:Person.Registered"


class Failure(Exception):
    pass


def field(value: bytes) -> bytes:
    return len(value).to_bytes(8, "big") + value


def event_hash(topic: str, originator_id: str, version: int, state: bytes) -> str:
    return hashlib.sha256(field(HASH_DOMAIN) + field(topic.encode("utf-8")) + field(originator_id.encode("utf-8"))
                          + field(str(version).encode("ascii")) + field(state)).hexdigest()


def chain_hash(prev_hash: str, digest: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + bytes.fromhex(digest)).hexdigest()


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def load_anchors(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if isinstance(document, dict) and "anchors" in document:
        document = document["anchors"]
    return document if isinstance(document, list) else [document]


def verify(export: dict, anchors: list[dict] | None = None) -> str:
    check(export.get("format") == FORMAT, f"not a {FORMAT} document")
    events = export.get("events") or []
    check(bool(events), "the export holds no events")

    # 1. the stream is the person's
    id_number = export["id_number"]
    id_number = id_number[:17] + id_number[17:].upper()
    stream_id = str(uuid.uuid5(uuid.UUID(export["person_namespace"]), id_number))
    check(export["stream_id"] == stream_id,
          f"stream_id {export['stream_id']} is not the stream of {id_number} ({stream_id})")

    # 2. the whole history from its start, and 3. each event's hash
    for index, event in enumerate(events, start=1):
        where = f"event at position {event.get('position')}"
        check(event["originator_id"] == stream_id, f"{where}: belongs to stream {event['originator_id']}")
        check(event["originator_version"] == index,
              f"{where}: version {event['originator_version']}, expected {index} (an event of the history is "
              "missing or out of order)")
        state = base64.b64decode(event["state_b64"], validate=True)
        recomputed = event_hash(event["topic"], event["originator_id"], event["originator_version"], state)
        check(recomputed == event["event_hash"],
              f"{where}: event_hash {event['event_hash']}, but its content hashes to {recomputed} (edited)")
    check(events[0]["topic"] == REGISTERED, f"the history does not start with {REGISTERED}")

    # 4. the chain from the first link of the proof to the head
    chain = export["chain"]
    links = chain.get("links") or []
    check(bool(links) and chain.get("start_prev_hash"), "the export holds no chain proof (events not chained)")
    folded: dict[int, tuple[str, str, str]] = {}  # position -> (event_hash, prev_hash, chain_hash)
    current, last_position = chain["start_prev_hash"], None
    for position, digest in links:
        check(last_position is None or position > last_position,
              f"chain positions out of order at {position} (after {last_position})")
        new = chain_hash(current, digest)
        folded[position] = (digest, current, new)
        current, last_position = new, position
    for event in events:
        where = f"event at position {event['position']}"
        check(event.get("chained") is not False and event["position"] in folded,
              f"{where}: not in the chain proof (not chained)")
        digest, prev, new = folded[event["position"]]
        check(digest == event["event_hash"], f"{where}: the chain holds event_hash {digest} at this position, the "
                                             f"event has {event['event_hash']}")
        check(prev == event["prev_hash"], f"{where}: prev_hash {event['prev_hash']}, the chain gives {prev}")
        check(new == event["chain_hash"], f"{where}: chain_hash {event['chain_hash']}, the chain gives {new}")
    head = chain["head"]
    check(last_position == head["position"],
          f"the proof ends at position {last_position}, the head is at {head['position']}")
    check(current == head["head_hash"], f"the proof reaches hash {current}, the head is {head['head_hash']}")

    # 5. the anchor(s)
    held = [a for a in (anchors if anchors is not None else [export.get("anchor")])
            if a and a.get("chain", "events") == chain.get("name", "events")]
    for anchor in held:
        position, expected = anchor["position"], anchor["head_hash"]
        if position == 0:
            check(expected == GENESIS, f"anchor at position 0 must be the empty chain's hash {GENESIS}")
            continue
        check(position in folded, f"anchor at position {position} lies outside the proof "
                                  f"({links[0][0]}..{last_position}): the chain was truncated, or the export is "
                                  "older than the anchor")
        check(folded[position][2] == expected,
              f"anchor at position {position}: the chain has {folded[position][2]}, the anchor {expected} "
              "(the chain was rewritten)")
    anchored = f", anchored at position(s) {', '.join(str(a['position']) for a in held)}" if held else \
        ", no anchor checked"
    return (f"OK: {len(events)} events of {id_number} are in the events chain, which reaches head "
            f"{head['head_hash'][:16]}… at position {head['position']} ({len(links)} links checked{anchored})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="check a `handoff audit export` offline")
    parser.add_argument("export", help="the JSON written by `handoff audit export ID_NUMBER`")
    parser.add_argument("--anchor", help="anchors held by a third party (JSON printed by `handoff audit anchor`)")
    args = parser.parse_args(argv)
    try:
        with open(args.export, encoding="utf-8") as handle:
            export = json.load(handle)
        anchors = load_anchors(args.anchor) if args.anchor else None
    except (OSError, ValueError) as error:
        print(f"cannot read: {error}", file=sys.stderr)
        return 2
    try:
        print(verify(export, anchors))
        return 0
    except Failure as failure:
        print(f"FAIL: {failure}")
        return 1
    except (KeyError, TypeError, ValueError) as error:  # a malformed (or mangled) export fails too
        print(f"FAIL: malformed export: {type(error).__name__}: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
