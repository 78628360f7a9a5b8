"""Hypothesis strategies for the arrival-order tests: plausible histories of one person, and orders of arrival.

A history is drawn as the life of one person under community correction (shared/docs/domain.md): perhaps an
assessment, a decision of a random category, the decision organ's notifications, the hand-over (release, transfer,
report, enrolment), some of what happens during supervision (contact lost and restored, detentions, electronic
monitoring, a transfer to another region, a changed term, warnings, procuratorial notices and replies, reviews,
pursuits), an end (discharge, revocation and commitment, death, or none yet), sometimes activity after that end, and
retractions, by the event's publisher or by another agency.

Times lie on a coarse grid: a day from `BASE_DAY` and one of two clock times, and consecutive events of a chain are
often zero steps apart. Events of different agencies at the same instant are therefore frequent; they are the cases
where only the causal order of types (not arrival) can decide the answer.

An arrival is a permutation of the history plus a `recorded_at` per event, non-decreasing in arrival order and never
before the event's `occurred_at`: each event is published some random time after it occurred.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.unit.factories import payload as valid_payload
from tests.unit.histories import eid

CST = dt.timezone(dt.timedelta(hours=8))
BASE_DAY = dt.date(2024, 3, 4)
# The clock times of a day: two, so that events on the same day often share their instant.
SLOTS = (dt.time(10), dt.time(15))
# Steps between consecutive events of a chain, in slots (two a day). Hypothesis shrinks towards the first, 0: the
# minimal counterexamples put events at the same instant whenever that is what matters.
ADVANCES = (0, 1, 2, 4, 7, 20, 60, 80)
# How long after it occurred an event is published (its recorded_at): at once, or late.
LATENESS = (dt.timedelta(0), dt.timedelta(minutes=1), dt.timedelta(hours=5), dt.timedelta(days=3),
            dt.timedelta(days=40), dt.timedelta(days=400))
HOME = "520222"
ELSEWHERE = "632801"
# A region whose bureau never has jurisdiction over the drawn person (A10_outside_jurisdiction).
FOREIGN = "520221"
DOCUMENT_NO = "(2024)黔0222刑初123号"

AgencyTable = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class Step:
    """One event of a drawn history: `agency` is a key of the agency table the history was drawn with."""

    name: str
    event_type: str
    agency: str
    tick: int
    payload: dict[str, Any]

    @property
    def event_id(self) -> str:
        return eid(self.name)

    @property
    def occurred_at(self) -> dt.datetime:
        return at_tick(self.tick)

    def __repr__(self) -> str:
        return f"{self.name} by {self.agency} at {self.occurred_at:%Y-%m-%d %H:%M} {self.payload}"


@dataclass(frozen=True)
class History:
    steps: tuple[Step, ...]

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return "History(\n" + "".join(f"  {step!r}\n" for step in self.steps) + ")"

    def wrongful_retractions(self) -> set[str]:
        """The event ids of the retractions published by another agency than their target's publisher."""
        publishers = {step.event_id: step.agency for step in self.steps}
        return {step.event_id for step in self.steps if step.event_type == "event_retracted"
                and publishers[step.payload["retracted_event_id"]] != step.agency}


@dataclass(frozen=True)
class Arrival:
    """An order of arrival: `order` lists the indexes of the history's steps as they arrive; `recorded_at[i]` is
    when step i was recorded."""

    order: tuple[int, ...]
    recorded_at: tuple[dt.datetime, ...]

    def __repr__(self) -> str:
        return f"Arrival(order={list(self.order)})"


def at_tick(tick: int) -> dt.datetime:
    day, slot = divmod(tick, len(SLOTS))
    return dt.datetime.combine(BASE_DAY + dt.timedelta(days=day), SLOTS[slot], CST)


def tick_of(day: dt.date) -> int:
    return (day - BASE_DAY).days * len(SLOTS)


class _Life:
    """Draws one history, step by step (see the module's docstring)."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any], agencies: AgencyTable):
        self.draw = draw
        self.agencies = agencies
        self.steps: list[Step] = []

    def maybe(self) -> bool:
        return self.draw(st.booleans())

    def after(self, tick: int) -> int:
        return tick + self.draw(st.sampled_from(ADVANCES))

    def add(self, event_type: str, agency: str, tick: int, **changes: Any) -> Step:
        name = f"{len(self.steps):02d}-{event_type}"
        step = Step(name, event_type, agency, tick, valid_payload(event_type, **changes))
        self.steps.append(step)
        return step

    # -- the life -------------------------------------------------------------------------------------------------

    def history(self) -> History:
        tick = self.draw(st.integers(0, 6))
        if self.maybe():
            tick = self.assessment(tick)
        category = self.draw(st.sampled_from(("probation", "parole", "control", "temporary_release")))
        decider = self.draw(st.sampled_from(("court", "prison", "police"))) if category == "temporary_release" \
            else "court"
        in_custody = category == "parole" or (category == "temporary_release" and (decider != "court" or self.maybe()))
        term_start = at_tick(tick).date()
        term_end = term_start + dt.timedelta(days=self.draw(st.sampled_from((182, 365, 91))))
        self.add("decision_effective", decider, tick, category=category, term_start=term_start.isoformat(),
                 term_end=term_end.isoformat(), execution_region=HOME, document_no=DOCUMENT_NO, in_custody=in_custody)
        self.notifications(decider, tick)
        cursor = self.hand_over(category, decider, in_custody, tick)
        for block in self.draw(st.lists(st.sampled_from(BLOCKS), max_size=4)):
            cursor = self.after(cursor)
            getattr(self, block)(cursor, term_end)
        ending = self.draw(st.sampled_from(ENDINGS[category]))
        end = getattr(self, ending)(self.after(cursor), decider, term_end)
        if end is not None and self.maybe():
            self.activity_after_end(end)
        self.retract()
        return History(tuple(self.steps))

    def assessment(self, tick: int) -> int:
        requester = self.draw(st.sampled_from(("court", "procuratorate", "prison", "police")))
        self.add("assessment_requested", requester, tick, bureau_region=HOME, expedited=self.maybe())
        if self.maybe():
            self.add("assessment_reported", "bureau", self.after(tick),
                     opinion=self.draw(st.sampled_from(("suitable", "unsuitable"))))
        return self.after(tick)

    def notifications(self, decider: str, tick: int) -> None:
        if self.maybe():
            self.add("bureau_notified", decider, self.after(tick), execution_region=HOME)
        if self.maybe():
            delivered = self.add("documents_delivered", decider, self.after(tick), execution_region=HOME,
                                 copied_to=["procuratorate", "police"])
            if self.maybe():
                self.add("documents_receipted", "bureau", self.after(delivered.tick))

    def hand_over(self, category: str, decider: str, in_custody: bool, tick: int) -> int:
        region = self.draw(st.sampled_from((HOME, HOME, ELSEWHERE)))
        if category == "temporary_release":
            custodian = decider if decider in ("prison", "police") else "police"
            if self.maybe() or self.maybe():
                tick = self.after(tick)
                self.add("subject_transferred", custodian, tick, to_region=region)
        else:
            if in_custody and (self.maybe() or self.maybe()):
                tick = self.after(tick)
                self.add("prisoner_released", "prison", tick, to_region=region)
            if self.maybe() or self.maybe():
                tick = self.after(tick)
                self.add("subject_reported", "bureau", tick, region=HOME)
        if self.maybe() or self.maybe():
            tick = self.after(tick)
            self.add("subject_enrolled", "bureau" if region == HOME else f"bureau@{ELSEWHERE}", tick, region=region)
        return tick

    # -- during supervision (BLOCKS) ------------------------------------------------------------------------------

    def missing(self, tick: int, term_end: dt.date) -> None:
        self.add("contact_lost", "bureau", tick)
        if self.maybe():
            tick = self.after(tick)
            self.add("police_assistance_requested", "bureau", tick)
        if self.maybe():
            self.add("contact_restored", "bureau", self.after(tick))

    def detention(self, tick: int, term_end: dt.date) -> None:
        self.add("detention_started", "police", tick,
                 detention_kind=self.draw(st.sampled_from(("administrative", "criminal", "compulsory_rehab"))))
        if self.maybe():
            self.add("detention_ended", "police", self.after(tick))

    def monitoring(self, tick: int, term_end: dt.date) -> None:
        self.add("monitoring_started", "bureau", tick)
        if self.maybe():
            tick = self.after(tick)
            self.add("monitoring_extended", "bureau", tick)
        if self.maybe():
            self.add("monitoring_ended", "bureau", self.after(tick))

    def transfer(self, tick: int, term_end: dt.date) -> None:
        self.add("transfer_decided", "bureau", tick, new_region=ELSEWHERE)
        if self.maybe():
            self.add("transfer_file_sent", "bureau", self.after(tick), new_region=ELSEWHERE)
        if self.maybe():
            self.add("subject_enrolled", f"bureau@{ELSEWHERE}", self.after(tick), region=ELSEWHERE)

    def term(self, tick: int, term_end: dt.date) -> None:
        new_end = term_end + dt.timedelta(days=self.draw(st.sampled_from((-30, -1, 0, 45))))
        self.add("term_changed", "court", tick, new_term_end=new_end.isoformat(), reason="减刑")

    def warning(self, tick: int, term_end: dt.date) -> None:
        self.add("warning_issued", "bureau", tick, reason="未按规定报告")

    def notice(self, tick: int, term_end: dt.date) -> None:
        addressee = self.draw(st.sampled_from(("bureau", "police", "court")))
        agency = self.agencies[addressee]
        notice = self.add("procuratorial_notice_issued", "procuratorate", tick,
                          notice_kind=self.draw(st.sampled_from(("correction", "suggestion"))),
                          addressed_to={"kind": agency["kind"], "id": agency["id"]},
                          reply_within_days=self.draw(st.sampled_from((15, 1, 60))), finding="未按期报到未通知")
        if self.maybe():
            replier = addressee if self.maybe() or self.maybe() else \
                self.draw(st.sampled_from([kind for kind in ("bureau", "police", "court") if kind != addressee]))
            self.add("notice_replied", replier, self.after(tick), notice_event_id=notice.event_id, adopted=True,
                     explanation="已纠正")

    def review(self, tick: int, term_end: dt.date) -> None:
        self.add("supervision_review_recorded", "procuratorate", tick,
                 outcome=self.draw(st.sampled_from(("compliant", "violation"))), finding="依法监管")

    def foreign(self, tick: int, term_end: dt.date) -> None:
        """An act by the bureau of a region without jurisdiction: kept, raises A10, changes nothing else."""
        event_type = self.draw(st.sampled_from(("discharged", "contact_lost", "warning_issued", "transfer_decided")))
        changes = {"discharged": {"certificate_no": "JJ-2025-0002"}, "warning_issued": {"reason": "未按规定报告"},
                   "transfer_decided": {"new_region": FOREIGN}}.get(event_type, {})
        self.add(event_type, f"bureau@{FOREIGN}", tick, **changes)

    def pursuit(self, tick: int, term_end: dt.date) -> None:
        self.add("pursuit_started", "police", tick)
        if self.maybe():
            self.add("fugitive_captured", "police", self.after(tick))

    # -- the end (ENDINGS): each returns the tick of the episode's end, or None --------------------------------------

    def ongoing(self, tick: int, decider: str, term_end: dt.date) -> int | None:
        return None

    def discharge(self, tick: int, decider: str, term_end: dt.date) -> int | None:
        tick = max(tick, tick_of(term_end) + self.draw(st.sampled_from((0, 1, 2, 5))))
        if self.maybe():
            self.add("monitoring_started", "bureau", self.after(max(tick - 100, 0)))
            self.add("monitoring_ended", "bureau", tick if self.maybe() else self.after(tick))
        self.add("discharged", "bureau", tick, certificate_no="JJ-2025-0001")
        return tick

    def revocation(self, tick: int, decider: str, term_end: dt.date) -> int | None:
        self.add("revocation_proposed", "bureau", tick, arrest_requested=self.maybe())
        if self.maybe():
            self.add("arrest_decided", "court", self.after(tick), arrest=self.maybe())
        if not self.maybe() and not self.maybe():
            return None
        tick = self.after(tick)
        revoked = self.maybe() or self.maybe()
        self.add("revocation_ruled", "court", tick, revoked=revoked)
        if revoked and (self.maybe() or self.maybe()):
            tick = self.after(tick)
            self.add("committed_to_custody", self.draw(st.sampled_from(("police", "prison"))), tick,
                     facility="贵州省第一监狱")
            return tick
        return None

    def commitment(self, tick: int, decider: str, term_end: dt.date) -> int | None:
        self.add("commitment_proposed", "bureau", tick, to_kind=decider)
        if not self.maybe() and not self.maybe():
            return None
        tick = self.after(tick)
        commit = self.maybe() or self.maybe()
        self.add("commitment_decided", decider, tick, commit=commit)
        if commit and (self.maybe() or self.maybe()):
            tick = self.after(tick)
            self.add("committed_to_custody", "prison" if decider == "prison" else "police", tick,
                     facility="贵州省第一监狱")
            return tick
        return None

    def death(self, tick: int, decider: str, term_end: dt.date) -> int | None:
        died = at_tick(tick).date() - dt.timedelta(days=self.draw(st.sampled_from((0, 1, 9))))
        self.add("death_recorded", self.draw(st.sampled_from(("bureau", "police"))), tick,
                 date_of_death=died.isoformat())
        return tick

    def activity_after_end(self, end: int) -> None:
        event_type = self.draw(st.sampled_from(("warning_issued", "monitoring_ended", "subject_reported",
                                                "contact_lost")))
        changes = {"warning_issued": {"reason": "未按规定报告"}, "subject_reported": {"region": HOME}}.get(event_type, {})
        self.add(event_type, "bureau", self.after(end), **changes)

    # -- retractions ------------------------------------------------------------------------------------------------

    def retract(self) -> None:
        """Up to three events retracted: by their publisher, by another agency (of the same kind or not: no
        effect), or by another agency and by the publisher (the first must not stand in the way of the second)."""
        targets = self.draw(st.lists(st.sampled_from(range(len(self.steps))), unique=True, max_size=3))
        for index in targets:
            target = self.steps[index]
            others = [key for key in self.agencies if key != target.agency]
            by = self.draw(st.sampled_from(("publisher", "publisher", "other", "other then publisher")))
            if by != "publisher":
                self.add("event_retracted", self.draw(st.sampled_from(others)), self.after(target.tick),
                         retracted_event_id=target.event_id, reason="录入错误")
            if by != "other":
                self.add("event_retracted", target.agency, self.after(target.tick),
                         retracted_event_id=target.event_id, reason="录入错误")


BLOCKS = ("missing", "detention", "monitoring", "transfer", "term", "warning", "notice", "review", "pursuit",
          "foreign")
ENDINGS = {
    "probation": ("ongoing", "discharge", "revocation", "death"),
    "parole": ("ongoing", "discharge", "revocation", "death"),
    "control": ("ongoing", "discharge", "death"),
    "temporary_release": ("ongoing", "discharge", "commitment", "death"),
}


@st.composite
def person_histories(draw: Callable[[st.SearchStrategy[Any]], Any], agencies: AgencyTable) -> History:
    """A plausible history of one person; `agencies` maps the keys of tests/unit/histories.py's AGENCIES (court,
    procuratorate, police, prison, bureau, bureau@632801, police@632801) to the agencies that publish."""
    return _Life(draw, agencies).history()


def in_time_order(history: History) -> Arrival:
    """The arrival of a perfect world: everything in occurred_at order, each recorded the moment it occurred."""
    order = sorted(range(len(history)), key=lambda index: history.steps[index].tick)
    return Arrival(tuple(order), tuple(step.occurred_at for step in history.steps))


@st.composite
def arrivals(draw: Callable[[st.SearchStrategy[Any]], Any], history: History) -> Arrival:
    """A random order of arrival: each event is published some time after it occurred (`LATENESS`), which is its
    recorded_at, and events arrive in recorded_at order, a random one among those recorded at the same moment.

    Any order is possible (an event published 400 days late arrives after everything else), and the draws shrink
    towards the arrival in time order, so a minimal counterexample delays only the events whose lateness matters."""
    size = len(history)
    lateness = draw(st.lists(st.sampled_from(LATENESS), min_size=size, max_size=size))
    tiebreak = draw(st.lists(st.integers(0, 3), min_size=size, max_size=size))
    recorded = [step.occurred_at + late for step, late in zip(history.steps, lateness)]
    order = sorted(range(size), key=lambda index: (recorded[index], tiebreak[index], index))
    return Arrival(tuple(order), tuple(recorded))


@st.composite
def moments(draw: Callable[[st.SearchStrategy[Any]], Any], history: History, count: int = 3) -> list[dt.datetime]:
    """`count` moments to ask "as of": instants of the history's events (where same-instant order matters), half a
    day after one, and long after the last (when every deadline has passed)."""
    instants = sorted({step.occurred_at for step in history.steps})
    candidates = st.one_of(
        st.sampled_from(instants),
        st.sampled_from(instants).map(lambda moment: moment + dt.timedelta(hours=12)),
    )
    drawn = draw(st.lists(candidates, min_size=count - 1, max_size=count - 1))
    return [*drawn, instants[-1] + dt.timedelta(days=400)]


def chunks(draw: Callable[[st.SearchStrategy[Any]], Any], items: Sequence[Any]) -> list[list[Any]]:
    """`items` cut into consecutive batches of random sizes (1 to 4)."""
    batches: list[list[Any]] = []
    start = 0
    while start < len(items):
        size = draw(st.integers(1, 4))
        batches.append(list(items[start:start + size]))
        start += size
    return batches
