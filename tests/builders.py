"""Builders of realistic, valid envelopes (and broken ones) for integration and end-to-end tests."""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import uuid
from typing import Any

from domain.identity import id_check_char

CST = dt.timezone(dt.timedelta(hours=8))
REGIONS = ["520222", "520221", "520203", "632801", "110105"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"


def id_number(n: int, region: str = "520222", birth: dt.date = dt.date(1980, 1, 1)) -> str:
    """A valid 18-character resident ID number, distinct for each n < 1000 * 10000 days."""
    day = birth + dt.timedelta(days=n // 1000)
    first17 = f"{region}{day:%Y%m%d}{n % 1000:03d}"
    return first17 + id_check_char(first17)


def agency(kind: str, region: str = "520222") -> dict[str, str]:
    prefix = {"court": "FY", "procuratorate": "JCY", "police": "GA", "prison": "JY", "bureau": "SFJ"}[kind]
    return {"kind": kind, "id": f"{prefix}-{region}", "region": region}


def envelope(
    event_type: str,
    payload: dict[str, Any],
    *,
    kind: str = "court",
    person: str | None = None,
    name: str = "张三",
    occurred_at: dt.datetime | None = None,
    event_id: str | None = None,
    region: str = "520222",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": 1,
        "agency": agency(kind, region),
        "person": {"id_number": person or id_number(1), "name": name},
        "occurred_at": (occurred_at or dt.datetime(2024, 3, 1, 10, tzinfo=CST)).isoformat(),
        "case_ref": "(2024)黔0222刑初123号",
        "payload": payload,
        **extra,
    }


def decision(person: str, *, category: str = "probation", region: str = "520222", start: dt.date = dt.date(2024, 3, 1),
             months: int = 12, kind: str = "court", **kw: Any) -> dict[str, Any]:
    end = start + dt.timedelta(days=30 * months)
    return envelope(
        "decision_effective",
        {"category": category, "term_start": start.isoformat(), "term_end": end.isoformat(),
         "execution_region": region, "document_no": f"({start.year})黔0222刑初{person[-4:]}号",
         "in_custody": category in ("parole", "temporary_release")},
        kind=kind, person=person, region=region,
        occurred_at=dt.datetime.combine(start, dt.time(10), CST), **kw,
    )


def case_history(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """A plausible probation/parole/control case from decision to discharge, for person number n."""
    region = rng.choice(REGIONS)
    person = id_number(n, region)
    name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
    start = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(0, 600))
    category = rng.choices(["probation", "parole", "control"], weights=[671, 294, 3])[0]
    months = rng.choice([6, 12, 18, 24, 36])
    end = start + dt.timedelta(days=30 * months)

    def at(days: int, hour: int = 10) -> dt.datetime:
        return dt.datetime.combine(start + dt.timedelta(days=days), dt.time(hour), CST)

    def ev(event_type: str, payload: dict[str, Any], kind: str, when: dt.datetime) -> dict[str, Any]:
        return envelope(event_type, payload, kind=kind, person=person, name=name, occurred_at=when, region=region)

    events = [
        ev("decision_effective", {"category": category, "term_start": start.isoformat(), "term_end": end.isoformat(),
                                  "execution_region": region, "document_no": f"({start.year})刑初{n}号",
                                  "in_custody": category == "parole"}, "court", at(0)),
        ev("bureau_notified", {"execution_region": region}, "court", at(rng.randint(1, 4))),
        *([ev("prisoner_released", {"to_region": region}, "prison", at(1, 9))] if category == "parole" else []),
        ev("documents_delivered", {"execution_region": region, "copied_to": ["procuratorate", "police"]}, "court",
           at(rng.randint(3, 9))),
        ev("documents_receipted", {}, "bureau", at(rng.randint(10, 13))),
        ev("subject_reported", {"region": region}, "bureau", at(rng.randint(2, 9), 9)),
    ]
    events.append(ev("subject_enrolled", {"region": region}, "bureau", at(10, 15)))
    if rng.random() < 0.2:
        events.append(ev("warning_issued", {"reason": "未按规定报告"}, "bureau", at(rng.randint(40, 150))))
    if end < dt.date(2026, 6, 1):
        events.append(ev("discharged", {"certificate_no": f"JJ{n:06d}"}, "bureau", at((end - start).days)))
    return events


def broken_variants(good: dict[str, Any], rng: random.Random) -> bytes:
    """One invalid line derived from a good envelope, in one of many realistic ways."""
    bad = copy.deepcopy(good)
    bad["event_id"] = str(uuid.uuid4())
    choice = rng.randrange(9)
    if choice == 0:
        return b"{not json"
    if choice == 1:
        return json.dumps([bad]).encode()
    if choice == 2:
        bad["person"]["id_number"] = bad["person"]["id_number"][:17] + ("0" if bad["person"]["id_number"][17] != "0" else "1")
    elif choice == 3:
        bad["payload"]["unexpected"] = True
    elif choice == 4:
        bad["occurred_at"] = "2024-13-01T10:00:00+08:00"
    elif choice == 5:
        bad["event_type"] = "sentence_commuted"
    elif choice == 6:
        bad["agency"]["kind"] = "procuratorate"  # may not publish these types
    elif choice == 7:
        bad["agency"]["region"] = "52022"
    else:
        del bad["event_id"]
    return json.dumps(bad, ensure_ascii=False).encode()


def mixed_lines(count: int, seed: int = 7, invalid_share: float = 0.2, duplicate_share: float = 0.05) -> list[bytes]:
    """`count` JSON Lines: valid case histories with some invalid lines and some repeated (duplicate) lines."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    n = 0
    while len(lines) < count:
        n += 1
        for event in case_history(n, rng):
            if len(lines) >= count:
                break
            roll = rng.random()
            if roll < invalid_share:
                lines.append(broken_variants(event, rng))
            elif roll < invalid_share + duplicate_share and lines:
                lines.append(json.dumps(event, ensure_ascii=False).encode())
                if len(lines) < count:
                    lines.append(json.dumps(event, ensure_ascii=False).encode())
            else:
                lines.append(json.dumps(event, ensure_ascii=False).encode())
    return lines
