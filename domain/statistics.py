"""The regional figures of oversight (脱管漏管率 and what it is made of), from each person's view at a moment.

A region's figures: persons received (enrolled) and in the register (received, not ended), discharged (解除矫正),
terminated (收监执行 or death), open gaps per rule, persons with an open 漏管 or 脱管 gap (`LOST_SUPERVISION_RULES`)
and their rate per thousand in the register (脱管漏管率), and the person-days of lost supervision.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .rules import LOST_SUPERVISION_RULES
from .supervision import PersonView

ENDED_BY_TERMINATION = ("committed", "deceased")
ENDED = ("discharged", *ENDED_BY_TERMINATION)


class StatPerson:
    """What the figures need of one person at a moment."""

    __slots__ = ("region", "received", "ended", "open_rules", "lost_days")

    def __init__(self, region: str, received: bool, ended: str | None, open_rules: list[str], lost_days: float):
        self.region, self.received, self.ended, self.open_rules, self.lost_days = (
            region, received, ended, open_rules, lost_days)

    @classmethod
    def from_view(cls, view: PersonView, as_of: dt.datetime) -> "StatPerson":
        episode = view.episode
        return cls(
            region=view.region or "",
            received=bool(episode and episode.enrolled_at and episode.enrolled_at <= as_of),
            ended=episode.ended if episode else None,
            open_rules=[o.rule for o in view.gaps(as_of, ("open",))],
            lost_days=view.lost_days(as_of),
        )


def empty_figures(region: str) -> dict[str, Any]:
    return {"region": region, "in_register": 0, "received": 0, "discharged": 0, "terminated": 0, "open_gaps": {},
            "lost_supervision_persons": 0, "lost_supervision_rate_permille": None,
            "lost_supervision_person_days": []}  # summed with fsum at the end: the same total in any order


def regional_figures(people: Iterable[StatPerson]) -> list[dict[str, Any]]:
    """The figures of each region (the person's responsible region), sorted by region code."""
    regions: dict[str, dict[str, Any]] = {}
    for person in people:
        count_person(regions, person)
    return finish_figures(regions)


def count_person(regions: dict[str, dict[str, Any]], person: StatPerson) -> None:
    """Count one more person into unfinished figures (per region, as `empty_figures` starts them)."""
    entry = regions.setdefault(person.region, empty_figures(person.region))
    ended = person.ended in ("discharged", *ENDED_BY_TERMINATION)
    entry["received"] += person.received
    entry["in_register"] += person.received and not ended
    entry["discharged"] += person.ended == "discharged"
    entry["terminated"] += person.ended in ENDED_BY_TERMINATION
    for rule in person.open_rules:
        entry["open_gaps"][rule] = entry["open_gaps"].get(rule, 0) + 1
    entry["lost_supervision_persons"] += any(rule in LOST_SUPERVISION_RULES for rule in person.open_rules)
    entry["lost_supervision_person_days"].append(person.lost_days)


def finish_figures(regions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    for entry in regions.values():
        entry["open_gaps"] = dict(sorted(entry["open_gaps"].items()))
        entry["lost_supervision_person_days"] = round(math.fsum(entry["lost_supervision_person_days"]), 1)
        if entry["in_register"]:
            entry["lost_supervision_rate_permille"] = round(
                1000 * entry["lost_supervision_persons"] / entry["in_register"], 2)
    return [regions[key] for key in sorted(regions)]


def combined_figures(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of several regions together; the rate from the summed counts."""
    in_register = sum(entry["in_register"] for entry in stats)
    lost = sum(entry["lost_supervision_persons"] for entry in stats)
    open_gaps: Counter[str] = Counter()
    for entry in stats:
        open_gaps.update(entry["open_gaps"])
    return {
        "in_register": in_register, "received": sum(entry["received"] for entry in stats),
        "discharged": sum(entry["discharged"] for entry in stats),
        "terminated": sum(entry["terminated"] for entry in stats), "lost_persons": lost,
        "rate": round(1000 * lost / in_register, 2) if in_register else None,
        "lost_days": round(math.fsum(entry["lost_supervision_person_days"] for entry in stats), 1),
        "open_gaps": dict(sorted(open_gaps.items())),
    }
