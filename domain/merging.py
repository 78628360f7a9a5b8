"""Two person keys that are one person (`identity_linked`, `identity_unlinked`), in both times.

A link says that a key (the envelope's person: usually the one an agency mistyped) is the same person as another
(`other`): from the moment the service knows it, the first key's events are part of the other's history, at every
valid time (who a person is does not change with the date; what is known of it does). Unlinking, or retracting the
link, parts them again from the moment that is known. So a person's history as known at K holds the events of every
key whose root was this person at K: `roots` says, for each key, over which stretches of transaction time it
belongs to which root, and `merged_events` gives a root the events it folds, each with the stretches it is known in.

Keys are joined by the links in force (union of the pairs, the last word on a pair deciding it); a group's root is
its smallest key that no link in force merges into another, else its smallest key: the same for any arrival order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .identity import IdType, person_key
from .supervision import effective_retractions

IDENTITY_EVENTS = frozenset({"identity_linked", "identity_unlinked"})


class Link(NamedTuple):
    """One word on a pair of keys: linked (True) or parted (False), known from `recorded_at`."""

    event_id: str
    linked: bool
    source: str  # the key published under: merged into `target`
    target: str
    recorded_at: dt.datetime


class Piece(NamedTuple):
    """Over transaction time [known_from, known_to) (None: open), a key's events belong to `root`'s history."""

    known_from: dt.datetime | None
    known_to: dt.datetime | None
    root: str


def other_key(other: Mapping[str, Any]) -> str:
    """The person key an identity event's `other` names (as stored: validated, normalised)."""
    return person_key(IdType(other.get("id_type") or IdType.RESIDENT), other["id_number"], other.get("nationality"))


def links_in(parsed: Sequence[Any], key: str) -> list[Link]:
    """The words on identity in one person's stream (published under `key`), from its parsed events. A retracted
    link or unlink is undone from the moment of its retraction's recording."""
    identity = [e for e in parsed if e.event_type in IDENTITY_EVENTS]
    if not identity:
        return []
    retractions = effective_retractions(parsed)
    recorded = {e.event_id.lower(): e.recorded_at for e in parsed}
    links = []
    for e in identity:
        target = other_key(e.payload["other"])
        linked = e.event_type == "identity_linked"
        links.append(Link(e.event_id, linked, key, target, e.recorded_at))
        retraction = retractions.get(e.event_id.lower())
        if retraction is not None:
            links.append(Link(retraction, not linked, key, target, recorded[retraction.lower()]))
    return links


def _roots_at(in_force: Iterable[Link], keys: Iterable[str]) -> dict[str, str]:
    parent = {key: key for key in keys}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    merged_away = set()
    for link in in_force:
        parent[find(link.source)] = find(link.target)
        merged_away.add(link.source)
    groups: dict[str, list[str]] = {}
    for key in parent:
        groups.setdefault(find(key), []).append(key)
    roots = {}
    for members in groups.values():
        root = min((key for key in members if key not in merged_away), default=min(members))
        roots.update(dict.fromkeys(members, root))
    return roots


def roots(links: Iterable[Link]) -> dict[str, list[Piece]]:
    """For every key the links name, the root its events belong to over each stretch of transaction time."""
    ordered = sorted(set(links), key=lambda link: (link.recorded_at, link.event_id.lower()))
    keys = sorted({link.source for link in ordered} | {link.target for link in ordered})
    pieces: dict[str, list[Piece]] = {key: [] for key in keys}
    last_word: dict[frozenset[str], Link] = {}
    instants = sorted({link.recorded_at for link in ordered})
    position = 0
    for start, end in zip([None, *instants], [*instants, None]):
        while position < len(ordered) and start is not None and ordered[position].recorded_at <= start:
            link = ordered[position]
            if link.source != link.target:
                last_word[frozenset((link.source, link.target))] = link
            position += 1
        in_force = [link for link in last_word.values() if link.linked]
        for key, root in _roots_at(in_force, keys).items():
            held = pieces[key]
            if held and held[-1].root == root:
                held[-1] = held[-1]._replace(known_to=end)
            else:
                held.append(Piece(start, end, root))
    return pieces


def root_at(pieces: Mapping[str, list[Piece]], key: str, known_at: dt.datetime | None) -> str:
    """The key whose history holds `key`'s events as known at `known_at` (None: now)."""
    for piece in pieces.get(key, ()):
        if (piece.known_from is None or known_at is None or piece.known_from <= known_at) and (
                piece.known_to is None or (known_at is not None and known_at < piece.known_to)):
            return piece.root
    return key


def _stretches(pieces: Mapping[str, list[Piece]], key: str, root: str) -> list[tuple[Any, Any]]:
    if key not in pieces:
        return [(None, None)] if key == root else []
    return [(piece.known_from, piece.known_to) for piece in pieces[key] if piece.root == root]


def merged_events(root: str, streams: Mapping[str, Sequence[Any]], pieces: Mapping[str, list[Piece]]) -> list[Any]:
    """The parsed events `root`'s history folds: of every key (its own included), those known while the key's root
    was `root`, each carrying the stretches of transaction time it is known in (`known`)."""
    events = []
    for key, parsed in streams.items():
        stretches = _stretches(pieces, key, root)
        if stretches == [(None, None)]:
            events.extend(parsed)
            continue
        for event in parsed:
            known = tuple((max(event.recorded_at, start) if start is not None else event.recorded_at, end)
                          for start, end in stretches if end is None or event.recorded_at < end)
            known = tuple((start, end) for start, end in known if end is None or start < end)
            if known:
                events.append(dataclasses.replace(event, known=known))
    return events


def boundaries(pieces: Mapping[str, list[Piece]]) -> list[dt.datetime]:
    """The moments at which some key changes root: a history records them even when no event arrived then."""
    return sorted({moment for held in pieces.values() for piece in held
                   for moment in (piece.known_from, piece.known_to) if moment is not None})
