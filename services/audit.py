"""The tamper-evident record: verify the hash chain against the stored events, anchor its heads, export proofs.

`verify` walks the chains and the events table side by side, in position order, without extending the chain, and
reports the first broken link of each chain with what is wrong:

- `edited_event`: the row at a chained position is not what was chained (state, topic or originator changed);
- `deleted_event`: a chained position has no row any more;
- `inserted_event`: a row that is in no chain, between chained positions (or one pushed in before later rows);
- `reordered_events`: the row at a position holds what was chained at another position (rows swapped or moved);
- `unchained_after_head`: a row after the chain's head: inserted behind the service's back, or written by a process
  without the chain (`handoff audit seal` chains it if an operator knows it is genuine);
- `chain_tampered`: the chain table itself disagrees with its own hashes (a link edited, removed or added);
- `anchor_mismatch`: the chain no longer has the anchored hash at the anchored position.

See docs/audit.md for what each check proves and the offline procedure for exports.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from uuid import UUID

from adapters.chain import (CHAINS, EVENTS, GENESIS, AuditChain, EventLog, Head, Link, Row,
                            chain_hash, now_iso)
from adapters.fastread import StateDecoder
from domain.identity import PERSON_NAMESPACE, normalise_id_number
from domain.person import EventClaim, Person
from domain.principals import AuditDecision

EXPORT_FORMAT = "handoff-audit-export/1"
SEAL_HINT = ("if an operator knows the row is genuine (written by a process without the chain, e.g. an older "
             "version), `handoff audit seal` chains it")
ACCEPT_HINT = ("the chain never links a row it did not write; if an auditor finds it genuine, `handoff audit accept "
               "POSITION --reason ...` records that decision")
DECISION_TOPIC = f"{AuditDecision.__module__}:{AuditDecision.__qualname__}.Recorded"
PERSON_TOPIC = f"{Person.__module__}:{Person.__qualname__}.EventRecorded"


class _ExpectedClaims:
    """The claims the chained person events make, gathered during the walk from their raw states."""

    def __init__(self, store: Any):
        self.decoder = StateDecoder(store.mapper)
        self.expected: dict[str, tuple[int, EventClaim]] = {}

    def add(self, row: Row) -> None:
        try:
            state = self.decoder.decode(row.state)
            agency = state["agency"]
            retracts = state["payload"]["retracted_event_id"].lower() if state["event_type"] == "event_retracted" \
                else None
            claim = EventClaim(state["event_id"].lower(), state["content_hash"], UUID(row.originator_id),
                               agency["kind"], agency["id"], state["event_type"], retracts)
        except Exception:  # a state that does not decode is reported by the walk (its hash), not here
            return
        self.expected[claim.event_id] = (row.id, claim)


def _decoded(store: Any, row: Row) -> Any | None:
    """The domain event of a raw row, or None when it cannot be read (the chain walk reports such a row)."""
    from eventsourcing.persistence import StoredEvent

    try:
        return store.mapper.to_domain_event(StoredEvent(
            originator_id=UUID(row.originator_id), originator_version=int(row.originator_version), topic=row.topic,
            state=row.state))
    except Exception:  # whatever a tampered row makes the decoder raise
        return None


def _finding(kind: str, chain: str, position: int, message: str, **details: Any) -> dict[str, Any]:
    return {"kind": kind, "chain": chain, "position": position, "message": message,
            **{key: value for key, value in details.items() if value is not None}}


def _describe(row: Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"position": row.id, "topic": row.topic, "originator_id": row.originator_id,
            "originator_version": row.originator_version, "event_hash": row.event_hash}


def _describe_link(link: Link) -> dict[str, Any]:
    return {"position": link.position, "topic": link.topic, "originator_id": link.originator_id,
            "originator_version": link.originator_version, "event_hash": link.event_hash}


def load_anchors(document: Any) -> list[dict[str, Any]]:
    """Anchors from what `handoff audit anchor` printed: {"anchors": [...]}, a list of anchors, or one anchor."""
    if isinstance(document, dict) and "anchors" in document:
        document = document["anchors"]
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise ValueError("expected the JSON printed by `handoff audit anchor`")
    result = []
    for item in document:
        if not (isinstance(item, dict) and item.get("chain") in CHAINS and isinstance(item.get("position"), int)
                and isinstance(item.get("head_hash"), str)):
            raise ValueError(f"not an anchor: {item!r}")
        result.append(item)
    return result


class _Walk:
    """The state of one chain while verifying."""

    def __init__(self, name: str, head: Head):
        self.name = name
        self.head = head  # as recorded in audit_heads when the walk began
        self.prev = GENESIS
        self.links = 0
        self.last = 0
        self.finding: dict[str, Any] | None = None


class Auditor:
    def __init__(self, chain: AuditChain, batch: int = 5000):
        self.chain = chain
        self.log: EventLog = chain.log
        self.batch = batch

    # -- verify -------------------------------------------------------------------------------------------------

    def verify(self, chains: Sequence[str] = CHAINS, anchors: Sequence[dict[str, Any]] = (),
               progress: Callable[[int, int], Any] | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        heads = self.chain.heads()
        selected = [name for name in CHAINS if name in chains]
        walks = {name: _Walk(name, heads[name]) for name in selected}
        top = max(head.position for head in heads.values())  # the chained head of the log
        total = max(top, self.log.max_id())
        checks = self._anchor_checks(selected, anchors)
        decisions = self.decisions()
        accepted: list[dict[str, Any]] = []
        claims = _ExpectedClaims(self.chain.store)
        rows_checked = 0
        tail: dict[str, Row] = {}  # per chain, the first row after the head

        for step, (position, link, row) in enumerate(self._merged(top)):
            if progress and step % 2000 == 0:
                progress(position, total)
            name = link.chain if link else row.chain
            walk = walks.get(name)
            if walk is None or walk.finding:
                continue
            if row is not None:
                rows_checked += 1
            if link is None:
                decision = decisions.get(position)
                if decision is not None and decision["event_hash"] == row.event_hash:
                    accepted.append({"chain": name, "position": position, **decision})
                    continue
                if position > top:
                    tail.setdefault(name, row)
                    continue
                walk.finding = self._unchained(walk, row, top)
                continue
            walk.finding = self._check_link(walk, link, row)
            if walk.finding:
                continue
            if row.topic == PERSON_TOPIC:
                claims.add(row)
            for anchor in checks.get((name, position), []):
                if anchor["head_hash"] != link.chain_hash and not walk.finding:
                    walk.finding = self._anchor_finding(anchor, f"the chain's hash at position {position} is "
                                                                f"{link.chain_hash}")
                anchor["checked"] = True
            walk.prev, walk.links, walk.last = link.chain_hash, walk.links + 1, position
        if progress:
            progress(total, total)

        notes: list[str] = []
        for walk in walks.values():
            if walk.finding:
                continue
            head = walk.head
            if (head.position, head.head_hash, head.links) != (walk.last, walk.prev, walk.links):
                walk.finding = _finding(
                    "chain_tampered", walk.name, max(head.position, walk.last),
                    f"the head record of chain {walk.name} (position {head.position}, {head.links} links, hash "
                    f"{head.head_hash}) disagrees with its links (last at position {walk.last}, {walk.links} "
                    f"links, hash {walk.prev}): links were removed or added, or the head record was edited")
                continue
            for (name, position), pending in checks.items():
                for anchor in pending:
                    if name == walk.name and not anchor.get("checked") and not walk.finding:
                        if position == 0 and anchor["head_hash"] == GENESIS:
                            anchor["checked"] = True
                            continue
                        walk.finding = self._anchor_finding(
                            anchor, f"chain {name} has no link at position {position} (its head is at {walk.last})")
            row = tail.get(walk.name)
            if row is not None and not walk.finding:
                now = self.chain.heads()
                if max(head.position for head in now.values()) >= row.id:
                    notes.append(f"rows after position {top} were chained while verifying; verify again to check "
                                 "them too")
                else:
                    walk.finding = _finding(
                        "unchained_after_head", walk.name, row.id,
                        f"the row at position {row.id} is after the head of the chain (position {top}) and not in "
                        f"it: a row inserted behind the service's back, or written by a process without the chain; "
                        f"{SEAL_HINT}",
                        found=_describe(row))

        findings = sorted((w.finding for w in walks.values() if w.finding), key=lambda f: f["position"])
        if EVENTS in selected:
            findings += self.claim_findings(claims.expected)
        result: dict[str, Any] = {
            "ok": not findings,
            "chains": {w.name: {"head_position": w.head.position, "head_hash": w.head.head_hash,
                                "links": w.head.links, "ok": w.finding is None} for w in walks.values()},
            "claims": {"ok": not any(f["chain"] == "claims" for f in findings)},
            "checked": {"rows": rows_checked, "links": sum(w.links for w in walks.values()),
                        "anchors": sum(1 for pending in checks.values() for a in pending if a.get("checked"))},
            "seconds": round(time.perf_counter() - started, 3),
        }
        if accepted:
            result["accepted"] = accepted
        if findings:
            result["finding"] = findings[0]
            result["findings"] = findings
        if notes:
            result["notes"] = sorted(set(notes))
        return result

    def _anchor_checks(self, selected: list[str], given: Sequence[dict[str, Any]]) -> dict[tuple[str, int], list]:
        checks: dict[tuple[str, int], list[dict[str, Any]]] = {}
        stored = [{**a, "source": "audit_anchors table"} for a in self.chain.anchors()]
        for anchor in [*({**a, "source": a.get("source", "anchor file")} for a in given), *stored]:
            if anchor["chain"] in selected:
                checks.setdefault((anchor["chain"], int(anchor["position"])), []).append(dict(anchor))
        return checks

    @staticmethod
    def _anchor_finding(anchor: dict[str, Any], what: str) -> dict[str, Any]:
        return _finding("anchor_mismatch", anchor["chain"], int(anchor["position"]),
                        f"anchor from {anchor['source']} (anchored at {anchor.get('anchored_at')}) expects hash "
                        f"{anchor['head_hash']} at position {anchor['position']}, but {what}: the chain was "
                        "rewritten or truncated", anchor={k: anchor.get(k) for k in
                                                          ("chain", "position", "head_hash", "anchored_at")})

    def _merged(self, top: int) -> Iterator[tuple[int, Link | None, Row | None]]:
        """(position, link, row) in position order over both chains' links up to `top` and every row."""
        links_iter = self._pages(lambda after: self.chain.links_page(after, self.batch, stop=top),
                                 lambda link: link.position)
        rows_iter = self._pages(lambda after: self.log.page(after, self.batch), lambda row: row.id)
        link, row = next(links_iter, None), next(rows_iter, None)
        while link is not None or row is not None:
            link_at = link.position if link else None
            row_at = row.id if row else None
            if row_at is None or (link_at is not None and link_at < row_at):
                yield link_at, link, None
                link = next(links_iter, None)
            elif link_at is None or row_at < link_at:
                yield row_at, None, row
                row = next(rows_iter, None)
            else:
                yield link_at, link, row
                link = next(links_iter, None)
                # A position is linked in one chain; should the other chain have a link there too (a forged
                # link), it is checked against the same row before moving on.
                if link is None or link.position != row_at:
                    row = next(rows_iter, None)

    @staticmethod
    def _pages(fetch: Callable[[int], list], key: Callable[[Any], int]) -> Iterator[Any]:
        after = 0
        while True:
            page = fetch(after)
            if not page:
                return
            yield from page
            after = key(page[-1])

    def _check_link(self, walk: _Walk, link: Link, row: Row | None) -> dict[str, Any] | None:
        name, position = walk.name, link.position
        if link.prev_hash != walk.prev:
            where = f"the link at position {walk.last}" if walk.last else "the start of the chain"
            return _finding("chain_tampered", name, position,
                            f"the link at position {position} does not follow {where} (prev_hash "
                            f"{link.prev_hash}, expected {walk.prev}): a link was removed, added or edited in the "
                            "chain table", link=_describe_link(link))
        if link.chain_hash != chain_hash(link.prev_hash, link.event_hash):
            return _finding("chain_tampered", name, position,
                            f"the link at position {position} has chain_hash {link.chain_hash}, but "
                            f"SHA-256(prev_hash || event_hash) is {chain_hash(link.prev_hash, link.event_hash)}: "
                            "the chain table was edited", link=_describe_link(link))
        if row is not None and row.event_hash == link.event_hash:
            return None
        return self._explain_mismatch(name, link, row)

    def _explain_mismatch(self, name: str, link: Link, row: Row | None) -> dict[str, Any]:
        """A chained position whose row is gone or different: say what most likely happened."""
        position = link.position
        chained = link.originator_id, link.originator_version
        moved = self.log.find(*chained)  # where the chained event is now, if anywhere
        moved_intact = moved is not None and moved.id != position and moved.event_hash == link.event_hash
        found_as = None
        if row is not None:
            others = [l for l in self.chain.links_with_hash(row.chain, row.event_hash) if l.position != position]
            found_as = others[0] if others else None
        details = {"chained": _describe_link(link), "found": _describe(row)}
        if row is None:
            if moved_intact:
                return _finding("reordered_events", name, position,
                                f"the event chained at position {position} ({link.topic} {link.originator_id} "
                                f"v{link.originator_version}) is now at position {moved.id}: rows were moved",
                                now_at=moved.id, **details)
            return _finding("deleted_event", name, position,
                            f"the event chained at position {position} ({link.topic} {link.originator_id} "
                            f"v{link.originator_version}) is no longer in the store: a row was deleted", **details)
        if moved_intact and found_as is not None:
            return _finding("reordered_events", name, position,
                            f"the row at position {position} holds the event chained at position "
                            f"{found_as.position}, and the event chained here is at position {moved.id}: rows "
                            "were swapped or reordered", now_at=moved.id, chained_at=found_as.position, **details)
        if moved_intact:
            return _finding("inserted_event", name, position,
                            f"the row at position {position} is in no chain and the event chained here is now at "
                            f"position {moved.id}: a row was inserted and later rows moved up", now_at=moved.id,
                            **details)
        if found_as is not None:
            return _finding("deleted_event", name, position,
                            f"the event chained at position {position} is gone and the row here is the one chained "
                            f"at position {found_as.position}: a row was deleted and later rows moved down",
                            chained_at=found_as.position, **details)
        changed = [field for field, old, new in (
            ("topic", link.topic, row.topic), ("originator_id", link.originator_id, row.originator_id),
            ("originator_version", str(link.originator_version), str(row.originator_version)),
        ) if old != new] or ["state"]
        return _finding("edited_event", name, position,
                        f"the row at position {position} does not hash to its link (event_hash {row.event_hash}, "
                        f"chained {link.event_hash}): its {', '.join(changed)} was edited", changed=changed, **details)

    def _unchained(self, walk: _Walk, row: Row, top: int) -> dict[str, Any]:
        """A row at or below the chained head that no link covers."""
        name, position = walk.name, row.id
        fits = chain_hash(walk.prev, row.event_hash)
        after = self.chain.next_link(name, position)
        if (after is not None and after.prev_hash == fits) or (after is None and walk.head.position == position
                                                                and walk.head.head_hash == fits):
            return _finding("chain_tampered", name, position,
                            f"the link at position {position} is missing from the chain table; the row there is "
                            "genuine (it fits between its neighbours' hashes): a link was deleted",
                            found=_describe(row))
        if after is None and position <= walk.head.position:
            return _finding("chain_tampered", name, position,
                            f"the chain table has no link at position {position} although the head of chain {name} "
                            f"is at position {walk.head.position}: links were deleted", found=_describe(row))
        return _finding("inserted_event", name, position,
                        f"the row at position {position} is in no chain although it lies between chained "
                        f"positions (the head is at {top}): a row was inserted; {ACCEPT_HINT}", found=_describe(row))

    # -- decisions on unchained rows --------------------------------------------------------------------------------

    def decisions(self) -> dict[int, dict[str, Any]]:
        """Position -> the auditor's decision on that unchained row (only decisions that are themselves chained)."""
        store = self.chain.store
        found: dict[int, dict[str, Any]] = {}
        try:
            notifications = list(store.recorder.select_notifications(1, 1_000_000, topics=[DECISION_TOPIC]))
        except Exception:  # a decision row tampered until unreadable: the chain walk reports it; no decision counts
            return found
        linked = self.chain.links_at(EVENTS, [n.id for n in notifications])
        for notification in notifications:
            row = Row.stored(notification.id, notification)
            decision = _decoded(store, row)
            if decision is None or row.id not in linked or linked[row.id].event_hash != row.event_hash:
                continue
            found[int(decision.position)] = {"event_hash": decision.event_hash, "decision": decision.decision,
                                             "reason": decision.reason, "by": decision.by, "at": decision.at}
        return found

    def accept(self, position: int, reason: str, by: str) -> dict[str, Any]:
        """Record that the unchained row at `position` is genuine. ValueError if there is no such row."""
        [row] = self.log.page(position - 1, 1, stop=position) or [None]
        if row is None:
            raise ValueError(f"no row at position {position}")
        if self.chain.links_at(row.chain, [position]):
            raise ValueError(f"the row at position {position} is in the chain already")
        if not reason.strip():
            raise ValueError("a decision needs a --reason")
        decision = AuditDecision(position, row.event_hash, "accepted", reason.strip(), by, now_iso())
        self.chain.store.save(decision)
        return {"position": position, "event_hash": row.event_hash, "decision": "accepted", "reason": reason.strip(),
                "by": by, "at": decision.at, "found": _describe(row)}

    # -- the event claims -------------------------------------------------------------------------------------------

    def claim_findings(self, expected: dict[str, tuple[int, EventClaim]]) -> list[dict[str, Any]]:
        """The claims table against the claims re-derived from the chained person events: a claim deleted (an event
        could then be stored twice), altered (another publisher could retract it) or added."""
        recorder = self.chain.store.claiming_recorder
        actual = {claim.event_id: claim for claim in recorder.select_all_claims()}
        findings = []
        for event_id, (position, claim) in expected.items():
            found = actual.get(event_id)
            if found is None:
                findings.append(_finding(
                    "claim_missing", "claims", position,
                    f"the claim of event {event_id} (stored at position {position}) is missing from the claims "
                    "table: the same event could be stored again",
                    expected={**dataclasses.asdict(claim), "person_stream": str(claim.person_stream)}))
            elif found != claim:
                changed = [f for f in ("content_hash", "person_stream", "publisher_kind", "publisher_id",
                                       "event_type", "retracts") if getattr(found, f) != getattr(claim, f)]
                findings.append(_finding(
                    "claim_altered", "claims", position,
                    f"the claim of event {event_id} (stored at position {position}) was altered: its "
                    f"{', '.join(changed)} differs from the stored event", changed=changed))
        for event_id in sorted(set(actual) - set(expected)):
            findings.append(_finding(
                "claim_extra", "claims", 0,
                f"the claims table holds event {event_id}, which no chained event has: a claim was added (it would "
                "refuse a genuine event as a duplicate or conflict)", event_id=event_id))
        return sorted(findings, key=lambda f: f["position"])

    # -- anchor and seal ------------------------------------------------------------------------------------------

    def anchor(self) -> list[dict[str, Any]]:
        """The head of each chain (from its last link), recorded in audit_anchors and returned to hand out.

        Raises ValueError when a head record disagrees with the chain's last link (verify first)."""
        heads = self.chain.heads()
        records = []
        anchored_at = now_iso()
        for name in CHAINS:
            last = self.chain.last_link(name)
            position, digest = (last.position, last.chain_hash) if last else (0, GENESIS)
            head = heads[name]
            if (head.position, head.head_hash) != (position, digest):
                raise ValueError(f"the head record of chain {name} disagrees with its last link; run "
                                 "`handoff audit verify`")
            records.append({"chain": name, "position": position, "head_hash": digest, "anchored_at": anchored_at})
        self.chain.add_anchors(records)
        return records

    def seal(self) -> int:
        return self.chain.extend()

    def summary(self) -> dict[str, Any]:
        return {name: {"head_position": h.position, "head_hash": h.head_hash, "links": h.links}
                for name, h in self.chain.heads().items()}

    # -- export ---------------------------------------------------------------------------------------------------

    def export(self, id_number: str, encrypted: bool = False) -> dict[str, Any] | None:
        """A person's whole stream with the proofs that each event is in the events chain and that the chain
        reaches its head (and the latest anchor); None when nobody is on record."""
        stream_id = Person.create_id(id_number)
        rows = self.log.stream(stream_id)
        if not rows:
            return None
        chained = self.chain.links_at(EVENTS, (row.id for row in rows))
        head = self.chain.heads()[EVENTS]
        stored_anchors = self.chain.anchors(EVENTS)
        anchor = stored_anchors[-1] if stored_anchors else None
        positions = [row.id for row in rows if row.id in chained]
        window: list[tuple[int, str]] = []
        start_prev = None
        if positions:
            first = min(positions)
            if anchor and 0 < anchor["position"] < first:
                first = anchor["position"]  # so the anchored hash lies inside the proof
            window = self.chain.window(EVENTS, first, head.position)
            if window:
                start_prev = self.chain.links_at(EVENTS, [window[0][0]])[window[0][0]].prev_hash
        events = []
        for row in rows:
            link = chained.get(row.id)
            events.append({
                "position": row.id, "topic": row.topic, "originator_id": row.originator_id,
                "originator_version": row.originator_version,
                "state_b64": base64.b64encode(row.state).decode("ascii"),
                "event_hash": link.event_hash if link else row.event_hash,
                "prev_hash": link.prev_hash if link else None,
                "chain_hash": link.chain_hash if link else None,
                "chained": link is not None,
            })
        return {
            "format": EXPORT_FORMAT,
            "id_number": normalise_id_number(id_number),
            "stream_id": str(stream_id),
            "person_namespace": str(PERSON_NAMESPACE),
            "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "state_encrypted": encrypted,
            "hashing": {
                "event_hash": "SHA-256(F('handoff.audit.event.v1') || F(topic) || F(originator_id) || "
                              "F(decimal version) || F(state)), F(x) = 8-byte big-endian length of x, then x "
                              "(text as UTF-8, originator_id as the 36-character lower-case UUID)",
                "chain_hash": "SHA-256(prev_hash || event_hash) over the raw 32-byte digests; the first link's "
                              "prev_hash is 32 zero bytes",
            },
            "events": events,
            "chain": {
                "name": EVENTS,
                "start_prev_hash": start_prev,
                "links": [[position, digest] for position, digest in window],
                "head": {"position": head.position, "head_hash": head.head_hash, "links": head.links},
            },
            "anchor": anchor,
        }
