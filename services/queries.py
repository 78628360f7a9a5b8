"""Queries of oversight staff and agencies: gaps, a person's status, regional statistics, upcoming deadlines.

Two paths give the same answers. "Now, as known now" (the default) reads the read models, kept current by the
supervision projection. Any other moment (`as_of` in the past, `known_at` in the past) refolds the persons from the
event store, exactly, bitemporally. Tests compare the two.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from domain.calendar import micros
from domain.person import Person
from domain.rules import LOST_SUPERVISION_RULES
from domain.statistics import StatPerson, empty_figures, finish_figures, regional_figures
from domain.supervision import GAP_STATES, Obligation, PersonView
from projections.supervision import Unfoldable

from services.ports import EventLog, Projection, SupervisionReadModel
from services.views import gap_record, status_record

PERSON_REGISTERED_TOPIC = f"{Person.__module__}:{Person.__qualname__}.Registered"


def states_for(state: str) -> tuple[str, ...]:
    return GAP_STATES if state == "all" else (state,)


def gap_sort_key(token: Callable[[str], str]) -> Callable[[dict[str, Any]], tuple]:
    """As the read model orders gaps: by the due instant (ISO strings of one offset sort as instants), then by the
    person's key (the ID number, or its keyed token when personal data is sealed), rule and trigger."""
    def key(record: dict[str, Any]) -> tuple:
        return (record["due_at"] or "", token(record["id_number"]), record["rule"], record["triggered_by"])
    return key


class Queries:
    def __init__(self, store: EventLog, read_model: SupervisionReadModel, projection: Projection,
                 clock: Callable[[], dt.datetime]):
        self.store = store
        self.read_model = read_model
        self.projection = projection
        self.clock = clock

    # -- exact folds from the event store ----------------------------------------------------------------------

    def view(self, id_number: str, as_of: dt.datetime | None = None,
             known_at: dt.datetime | None = None) -> PersonView | None:
        return self.projection.view_of(id_number, as_of or self.clock(), known_at)

    def person_ids(self) -> Iterator[UUID]:
        for page in self.store.originators_of_topic(PERSON_REGISTERED_TOPIC):
            yield from page

    def all_views(self, as_of: dt.datetime, known_at: dt.datetime | None) -> Iterator[PersonView]:
        for stream_id in self.person_ids():
            try:
                view = self.projection.fold(self.store.get_aggregate(stream_id), as_of=as_of, known_at=known_at)
            except Unfoldable:  # quarantined (and alerted): kept out of the figures, as the read model does
                continue
            if view.last_occurred_at is not None:  # nothing of this person was known yet
                yield view

    def freshness(self) -> dict[str, Any]:
        """How current the read model's answers are (projection position, events and seconds behind). Answers
        never wait for the projector: it runs on its own (`handoff project`, or in `handoff serve`)."""
        return self.projection.freshness()

    def _serving(self) -> str | None:
        return self.projection.serving_rule_set()

    # -- gaps ---------------------------------------------------------------------------------------------------

    def gaps(self, as_of: dt.datetime | None = None, known_at: dt.datetime | None = None, region: str | None = None,
             rule: str | None = None, state: str = "open", limit: int | None = None, offset: int = 0,
             agency: str | None = None, agency_region: str | None = None,
             agency_id: str | None = None, exclude_imported: bool = False) -> list[dict[str, Any]]:
        """Gaps ordered by due time (most overdue first), then person, rule and trigger; a page if limit is set.

        `agency` / `agency_region` keep the gaps borne by an agency kind / by agencies of a region prefix; with
        `agency_id` too, those borne by that one agency (domain.authorisation.bears). Any (as_of, known_at) is
        answered from the read model's versions; None: now, as known now."""
        moment = as_of or self.clock()
        rows = self.read_model.gaps(micros(moment), states_for(state), region=region, rule=rule, limit=limit,
                                    offset=offset, agency=agency, agency_region=agency_region, agency_id=agency_id,
                                    known_at_us=_micros(known_at), rule_set=self._serving(),
                                    exclude_imported=exclude_imported)
        return [self.gap_from_row(row, moment, known_at) for row in rows]

    @staticmethod
    def _row_obligation(row) -> Obligation:
        return Obligation(
            rule=row.rule, triggered_by=row.triggered_by, trigger_at=None, obligated_kind=row.obligated_kind,  # type: ignore[arg-type]
            obligated_id=row.obligated_id, obligated_region=row.obligated_region,
            due_at=dt.datetime.fromisoformat(row.due_at),
            fulfilled_at=dt.datetime.fromisoformat(row.fulfilled_at) if row.fulfilled_at else None,
            provisional=bool(row.provisional), reason=row.reason,
        )

    def gap_from_row(self, row, now: dt.datetime, known_at: dt.datetime | None = None) -> dict[str, Any]:
        view = PersonView(id_number=row.id_number, name=row.name, as_of=now, known_at=known_at, rule_set=row.rule_set,
                          status=None, responsible=None, episode=None, obligations=[], last_occurred_at=None)
        record = gap_record(view, self._row_obligation(row), now)
        record["region"] = row.region
        return record

    # -- upcoming -----------------------------------------------------------------------------------------------

    def upcoming(self, within: dt.timedelta, region: str | None = None, agency: str | None = None,
                 agency_region: str | None = None, agency_id: str | None = None) -> list[dict[str, Any]]:
        now = self.clock()
        rows = self.read_model.upcoming(micros(now), micros(now + within), region=region, agency=agency,
                                        agency_region=agency_region, agency_id=agency_id, rule_set=self._serving())
        records = []
        for row in rows:
            record = self.gap_from_row(row, now)
            record["state"] = "upcoming"
            record["due_in_hours"] = round((dt.datetime.fromisoformat(row.due_at) - now).total_seconds() / 3600, 1)
            records.append(record)
        return records

    # -- status -------------------------------------------------------------------------------------------------

    def status(self, id_number: str, as_of: dt.datetime | None = None,
               known_at: dt.datetime | None = None) -> dict[str, Any] | None:
        moment = as_of or self.clock()
        view = self.view(id_number, moment, known_at)
        if view is None or view.last_occurred_at is None:
            return None
        return status_record(view, moment)

    def quarantined(self) -> list[Any]:
        """The persons the projection quarantined (their events cannot be folded)."""
        return self.read_model.quarantined()

    # -- statistics ---------------------------------------------------------------------------------------------

    def stats(self, region: str | None = None, as_of: dt.datetime | None = None,
              known_at: dt.datetime | None = None) -> list[dict[str, Any]]:
        """The figures of domain.statistics.regional_figures at (as_of, known_at) (None: now, as known now), with the
        counts done by the database from the versions that held then, and only gap rows read."""
        return finish_figures(self.unfinished_figures(as_of or self.clock(), region, known_at))

    def unfinished_figures(self, now: dt.datetime, region: str | None = None, known_at: dt.datetime | None = None,
                           exclude_imported: bool = False) -> dict[str, dict[str, Any]]:
        """The figures per region before `finish_figures`: more persons may still be counted in
        (domain.statistics.count_person)."""
        now_us, known_us, rule_set = micros(now), _micros(known_at), self._serving()
        scope = {"known_at_us": known_us, "rule_set": rule_set, "exclude_imported": exclude_imported}
        regions: dict[str, dict[str, Any]] = {}
        for row in self.read_model.person_counts(now_us, region, **scope):
            entry = regions[row.region or ""] = empty_figures(row.region or "")
            for key in ("received", "in_register", "discharged", "terminated"):
                entry[key] = int(getattr(row, key) or 0)
        lost_persons: dict[str, set[str]] = defaultdict(set)
        for row in self.read_model.open_gap_keys(now_us, region=region, **scope):
            entry = regions.setdefault(row.region or "", empty_figures(row.region or ""))
            entry["open_gaps"][row.rule] = entry["open_gaps"].get(row.rule, 0) + 1
            if row.rule in LOST_SUPERVISION_RULES:
                lost_persons[row.region or ""].add(row.person_key)
        lost_by_person: dict[tuple[str, str], list[Obligation]] = defaultdict(list)
        for row in self.read_model.gaps_of_rules_before(LOST_SUPERVISION_RULES, now_us, region=region, **scope):
            lost_by_person[(row.region or "", row.id_number)].append(self._row_obligation(row))
        for (person_region, _), lost in lost_by_person.items():
            view = PersonView(id_number="", name="", as_of=now, known_at=None, rule_set="", status=None,
                              responsible=None, episode=None, obligations=lost, last_occurred_at=None)
            entry = regions.setdefault(person_region, empty_figures(person_region))
            entry["lost_supervision_person_days"].append(view.lost_days(now))
        for person_region, ids in lost_persons.items():
            regions[person_region]["lost_supervision_persons"] = len(ids)
        return regions

    def exact_stats(self, region: str | None = None, as_of: dt.datetime | None = None,
                    known_at: dt.datetime | None = None) -> list[dict[str, Any]]:
        """The same figures from every person refolded: the reference the read model is held to (tests, bench)."""
        moment = as_of or self.clock()
        return regional_figures(
            StatPerson.from_view(view, moment)
            for view in self.all_views(moment, known_at)
            if not region or (view.region or "").startswith(region)
        )

    def exact_gaps(self, as_of: dt.datetime | None = None, known_at: dt.datetime | None = None,
                   region: str | None = None, rule: str | None = None, state: str = "open") -> list[dict[str, Any]]:
        """Gaps from every person refolded: the reference the read model is held to (tests, bench)."""
        moment = as_of or self.clock()
        records = [
            gap_record(view, obligation, moment)
            for view in self.all_views(moment, known_at)
            if not region or (view.region or "").startswith(region)
            for obligation in view.gaps(moment, states_for(state))
            if not rule or obligation.rule == rule
        ]
        records.sort(key=gap_sort_key(self.read_model.sealer.token))
        return records


def _micros(moment: dt.datetime | None) -> int | None:
    return None if moment is None else micros(moment)
