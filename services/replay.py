"""Audit replay: what the service showed at a past moment T, recomputed from the event store.

The service at T knew the events it had stored by T (their `ingested_at`; for imported legacy records this differs
from `recorded_at`) and applied the rule set in force at T (the rule-set history in the event store). Its default
answers ("now") came from the read models: every stored event folded, states taken at T. Its answers for an explicit
`--as-of T2` came from an exact fold as of T2. Replay does the same computations on the same inputs, so the answers
are identical; with another rule set it shows what that rule set would have found over the same history.

When the rule set asked for is the one the bitemporal read model serves, and the read model is current, the answer
is read from it as of (T2 or T) as known at T: an event's recorded_at is when it was stored, except for imported
records, whose persons are marked in the read model and refolded from what was stored by T. Otherwise every person
is refolded. `answered_from` says which.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from domain.adoption import HISTORY_ID, RuleSetHistory
from domain.person import RecordedEvent
from domain.rules import RuleSet, default_rule_set
from domain.statistics import StatPerson, count_person, finish_figures, regional_figures
from domain.supervision import GAP_STATES, PersonView, fold
from projections.supervision import Unfoldable, quarantining

from services.ports import EventLog
from services.queries import PERSON_REGISTERED_TOPIC, Queries, gap_sort_key
from services.views import gap_record, status_record


def rule_set_history(store: EventLog) -> RuleSetHistory | None:
    return store.get_aggregate(HISTORY_ID)


def record_rule_set(store: EventLog, rules: RuleSet, now: dt.datetime) -> None:
    """Add the rule set to the history if it is not the one in force (at start-up of every process)."""
    from eventsourcing.persistence import IntegrityError

    for _ in range(3):
        history = rule_set_history(store) or RuleSetHistory()
        if history.current_version == rules.version:
            return
        history.adopt(rules.version, rules.describe(), now.isoformat(), calendar=rules.describe_calendar())
        try:
            store.save(history)
            return
        except IntegrityError:  # another process recorded an adoption at the same moment: look again
            continue


def ingested_by(events: list[RecordedEvent], moment: dt.datetime) -> list[RecordedEvent]:
    return [e for e in events if dt.datetime.fromisoformat(e.ingested_at or e.recorded_at) <= moment]


class Replay:
    def __init__(self, store: EventLog, token: Callable[[str], str] = lambda x: x, queries: Queries | None = None):
        self.store = store
        self.sort_key = gap_sort_key(token)  # the order the service's answers had
        self.queries = queries  # the read model's queries; None: every replay refolds

    def rules_at(self, moment: dt.datetime) -> RuleSet:
        history = rule_set_history(self.store)
        return (history.in_force_at(moment) if history else None) or default_rule_set()

    def resolve_rules(self, moment: dt.datetime, rules: RuleSet | str | None) -> RuleSet:
        """The rule set in force at the moment, a version from the history, or a given rule set."""
        if isinstance(rules, RuleSet):
            return rules
        if isinstance(rules, str):
            history = rule_set_history(self.store)
            found = history.find(rules) if history else None
            if found is None and rules == default_rule_set().version:
                found = default_rule_set()
            if found is None:
                raise ValueError(f"rule set {rules!r} was never in force here")
            return found
        return self.rules_at(moment)

    def views(self, known_at: dt.datetime, as_of: dt.datetime | None, rules: RuleSet) -> Iterator[PersonView]:
        for page in self.store.originators_of_topic(PERSON_REGISTERED_TOPIC, 500):
            for stream_id, person in self.store.aggregates(page).items():
                events = ingested_by(person.events, known_at)
                if events:
                    try:
                        with quarantining(stream_id):
                            view = fold(events, id_number=person.id_number, rules=rules, as_of=as_of)
                    except Unfoldable:  # alerted; left out of the replay as the read model leaves it out
                        continue
                    yield view

    def replay(self, known_at: dt.datetime, as_of: dt.datetime | None = None, rules: RuleSet | str | None = None,
               region: str | None = None, rule: str | None = None, state: str = "open",
               id_number: str | None = None) -> dict[str, Any]:
        rule_set = self.resolve_rules(known_at, rules)
        moment = as_of or known_at
        states = GAP_STATES if state == "all" else (state,)
        if self._read_model_answers(rule_set):
            result = self._from_read_model(known_at, moment, rule_set, region, rule, state, states)
        else:
            result = self._refolded(known_at, as_of, moment, rule_set, region, rule, states)
        if id_number:
            result["status"] = self.status(id_number, known_at, as_of, rule_set)
        return result

    def _read_model_answers(self, rule_set: RuleSet) -> bool:
        if self.queries is None:
            return False
        freshness = self.queries.freshness()
        return freshness["rule_set"] == rule_set.version and freshness["events_behind"] == 0

    def _from_read_model(self, known_at: dt.datetime, moment: dt.datetime, rule_set: RuleSet, region: str | None,
                         rule: str | None, state: str, states: tuple[str, ...]) -> dict[str, Any]:
        queries = self.queries
        assert queries is not None
        gaps = queries.gaps(as_of=moment, known_at=known_at, region=region, rule=rule, state=state,
                            exclude_imported=True)
        figures = queries.unfinished_figures(moment, region, known_at, exclude_imported=True)
        imported = queries.read_model.imported_persons(rule_set.version)
        for view in self._views_of(imported, known_at, moment, rule_set):
            if region and not (view.region or "").startswith(region):
                continue
            gaps.extend(gap_record(view, o, moment) for o in view.gaps(moment, states) if not rule or o.rule == rule)
            count_person(figures, StatPerson.from_view(view, moment))
        gaps.sort(key=self.sort_key)
        return {"known_at": known_at.isoformat(), "as_of": moment.isoformat(), "rule_set": rule_set.version,
                "gaps": gaps, "stats": finish_figures(figures), "answered_from": "read_model",
                "refolded_persons": len(imported)}

    def _views_of(self, id_numbers: list[str], known_at: dt.datetime, as_of: dt.datetime,
                  rules: RuleSet) -> Iterator[PersonView]:
        for id_number in id_numbers:
            person = self.store.person(id_number)
            events = ingested_by(person.events, known_at) if person else []
            if events:
                try:
                    with quarantining(person.id):
                        yield fold(events, id_number=id_number, rules=rules, as_of=as_of)
                except Unfoldable:
                    continue

    def _refolded(self, known_at: dt.datetime, as_of: dt.datetime | None, moment: dt.datetime, rule_set: RuleSet,
                  region: str | None, rule: str | None, states: tuple[str, ...]) -> dict[str, Any]:
        gaps, people = [], []
        for view in self.views(known_at, as_of, rule_set):
            if region and not (view.region or "").startswith(region):
                continue
            gaps.extend(gap_record(view, o, moment) for o in view.gaps(moment, states) if not rule or o.rule == rule)
            people.append(StatPerson.from_view(view, moment))
        gaps.sort(key=self.sort_key)
        return {"known_at": known_at.isoformat(), "as_of": moment.isoformat(), "rule_set": rule_set.version,
                "gaps": gaps, "stats": regional_figures(people), "answered_from": "refold", "refolded_persons": None}

    def status(self, id_number: str, known_at: dt.datetime, as_of: dt.datetime | None,
               rules: RuleSet | str | None = None) -> dict[str, Any] | None:
        rule_set = self.resolve_rules(known_at, rules)
        person = self.store.person(id_number)
        events = ingested_by(person.events, known_at) if person else []
        if not events:
            return None
        moment = as_of or known_at
        with quarantining(person.id):
            view = fold(events, id_number=id_number, rules=rule_set, as_of=moment)
        return status_record(view, moment)
