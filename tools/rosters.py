"""The rosters the simulated county's agencies would export, from everything they did (withheld events included).

A court lists its effective judgments (decision_effective), a detention centre its admissions and releases
(detention_started / detention_ended), a bureau its register as of a day: the persons it received whose supervision
has not ended, by the region they are supervised in. The bureau's register is the law's fold of everything that
happened (domain.md's statuses), which is what a bureau's own records say when it publishes nothing wrong; what it
withheld is in it all the same. A reconciliation of these rosters against the published events must find exactly
the withheld events of the ground truth (tools/simulate.py, `--withhold`).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from domain.rosters import FIELDS
from domain.rules import RuleSet
from domain.supervision import fold_records

ROSTER_COLUMNS = (*FIELDS, "end_date")


def _day(moment: str) -> str:
    return dt.datetime.fromisoformat(moment).astimezone(dt.timezone(dt.timedelta(hours=8))).date().isoformat()


def everything(published: Iterable[Mapping[str, Any]], truth: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The published envelopes and the withheld ones of the truth: all that happened."""
    events = [dict(e) for e in published]
    for entry in truth:
        events += [dict(e) for e in entry.get("withheld", ())]
    return events


def rosters(events: Iterable[Mapping[str, Any]], as_of: dt.datetime, rules: RuleSet) -> dict[str, list[dict[str, Any]]]:
    """Each agency's roster as of a moment, by source (`court:FY-632801`): rows of ROSTER_COLUMNS."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_person: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for e in events:
        if dt.datetime.fromisoformat(e["occurred_at"]) <= as_of:
            by_person[e["person"]["id_number"]].append(e)
    for id_number, history in sorted(by_person.items()):
        history.sort(key=lambda e: e["occurred_at"])
        name = history[-1]["person"]["name"]
        detention: Mapping[str, Any] | None = None
        for e in history:
            kind, agency, payload = e["event_type"], e["agency"], e["payload"]
            if kind == "decision_effective" and agency["kind"] == "court":
                out[f"court:{agency['id']}"].append({
                    "id_number": id_number, "name": name, "case_ref": payload.get("document_no", ""),
                    "category": payload["category"], "date": _day(e["occurred_at"]),
                    "region": payload["execution_region"], "end_date": ""})
            elif kind == "detention_started":
                detention = e
                out[f"police:{agency['id']}"].append({
                    "id_number": id_number, "name": name, "case_ref": "", "category": "",
                    "date": _day(e["occurred_at"]), "region": agency["region"], "end_date": ""})
            elif kind == "detention_ended" and detention is not None:
                out[f"police:{detention['agency']['id']}"][-1]["end_date"] = _day(e["occurred_at"])
                detention = None
        view = fold_records([{**e, "recorded_at": e.get("recorded_at") or e["occurred_at"]} for e in history],
                            id_number=id_number, rules=rules, as_of=as_of)
        episode = view.episode
        if (episode is not None and episode.enrolled_at is not None and episode.enrolled_at <= as_of
                and episode.ended not in ("discharged", "committed", "deceased")):
            region = episode.current_region
            out[f"bureau:SFJ-{region}"].append({
                "id_number": id_number, "name": name, "case_ref": episode.document_no or "",
                "category": episode.category, "date": _day(episode.enrolled_at.isoformat()), "region": region,
                "end_date": ""})
    return dict(out)


def write_rosters(directory: str, found: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    """One CSV per agency (`court_FY-632801.csv`), UTF-8 with a BOM as Excel likes; returns the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for source, rows in sorted(found.items()):
        path = os.path.join(directory, source.replace(":", "_") + ".csv")
        with open(path, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=ROSTER_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        paths.append(path)
    return paths


def rosters_of_files(events_path: str, truth_path: str | None, as_of: dt.datetime,
                     rules: RuleSet) -> dict[str, list[dict[str, Any]]]:
    with open(events_path, encoding="utf-8") as handle:
        published = [json.loads(line) for line in handle if line.strip()]
    truth: list[Any] = []
    if truth_path:
        with open(truth_path, encoding="utf-8") as handle:
            truth = json.load(handle)
    return rosters(everything(published, truth), as_of, rules)
