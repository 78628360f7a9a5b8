"""`handoff bench`: honest figures for ingest, projection and queries, each beside its baseline in the same run.

Everything runs on generated data (the county simulator) in a fresh temporary store:
- ingest events/s through the one ingest path (batches of 5,000, one transaction each), over the whole county;
- like for like, the ingest path and a naive baseline (the same parsing and validation, then one eventsourcing
  `Application.save()` per event) on the same first 20,000 events, in alternating rounds of fresh processes;
- with --kafka, the Kafka ingest worker's events/s beside a raw kafka-python consumer reading the same messages
  (HANDOFF_KAFKA_BOOTSTRAP, or a throwaway Tansu broker from the dev extra; tools/kafka_bench.py);
- projection rebuild events/s;
- the projector (`handoff project`) beside the ingest path running at full speed: its rate, how far behind it falls,
  how soon after ingest stops it is at the head;
- query latency p50/p99 for a page of gaps, a person's status and regional statistics;
- peak memory (resident set size) of the run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from adapters.config import Settings
from adapters.eventstore import EventStore
from domain.envelope import parse_event
from domain.person import Person, RecordedEvent

from services.bootstrap import bootstrap
from services.ingest import BULK_BATCH, Source, utc_now
from tools.schema import ensure_schema

# Events stored by the naive baseline, and by the ingest path into a fresh store for the like-for-like ratio: enough
# that the ingest path's side lasts more than a second (5,000 lasted 0.4 s, and one run's ratio at 100,000 persons
# was a quarter below another's).
NAIVE_EVENTS = 20_000
# The like-for-like pair (ingest path, naive baseline) is measured this many times, alternating, each side in a fresh
# process: a side measured once, in the process that had just loaded the whole county, ran up to a quarter slower
# at 30,000-100,000 persons than the same events in a process of their own; alternating rounds spread the machine's
# drift over both sides, and the median of each side is reported.
LIKE_FOR_LIKE_ROUNDS = 3
QUERY_SAMPLE = 2_000  # persons whose status the query bench asks for


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as stream:
        for line in stream:
            if line.strip():
                yield line.rstrip(b"\n")


def _batches(lines: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    quantiles = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": round(quantiles[49] * 1000, 2), "p99_ms": round(quantiles[98] * 1000, 2),
            "samples": len(samples)}


def _timed(function: Callable[[], Any], repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return _percentiles(samples)


def measure_ingest(services, path: Path, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    source = Source("bench", allow_recorded_at=True)
    events = accepted = 0
    start = time.perf_counter()
    marks = [(0, 0.0)]  # (events stored, seconds) after each batch
    for result in services.ingestor.ingest_batches(((batch, None) for batch in _batches(_lines(path), BULK_BATCH)),
                                                   source):
        events += len(result.items)
        accepted += result.accepted
        marks.append((events, time.perf_counter() - start))
        if progress:
            progress(len(result.items))
    seconds = time.perf_counter() - start
    return {"events": events, "accepted": accepted, "seconds": round(seconds, 2),
            "events_per_s": round(events / seconds, 1), "events_per_s_by_tenth": by_tenth(marks)}


def by_tenth(marks: list[tuple[int, float]]) -> list[float]:
    """The rate over each tenth of a load, from (events, seconds) marks: how ingest slows as the store grows."""
    total = marks[-1][0]
    if total == 0:
        return []
    rates, previous = [], marks[0]
    for tenth in range(1, 11):
        mark = next(m for m in marks if m[0] >= total * tenth / 10)
        if mark[0] > previous[0] and mark[1] > previous[1]:
            rates.append(round((mark[0] - previous[0]) / (mark[1] - previous[1]), 1))
            previous = mark
    return rates


def measure_ingest_prefix(database_url: str, path: Path) -> dict[str, Any]:
    """The ingest path on the events of `path` (the baseline's), in a store of its own (the baseline's counterpart)."""
    ensure_schema(database_url)
    services = bootstrap(Settings(database_url=database_url), projector="none")
    try:
        return measure_ingest(services, path)
    finally:
        services.close()


def like_for_like(work: Path, data: Path, database_url: str | None, limit: int,
                  rounds: int = LIKE_FOR_LIKE_ROUNDS) -> dict[str, Any]:
    """The ingest path and the naive baseline on the same first `limit` events, each round into fresh stores and
    each side in a fresh process (alternating, so that drift of the machine weighs on both); medians per side."""
    import itertools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    prefix = work / "like-for-like.jsonl"
    with prefix.open("wb") as out:
        out.writelines(line + b"\n" for line in itertools.islice(_lines(data), limit))
    spawn = multiprocessing.get_context("spawn")

    def fresh_process(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as process:
            return process.submit(function, *args).result()

    ingest_rounds, naive_rounds = [], []
    for number in range(rounds):
        if database_url is None:
            ingest_url, naive_url = f"sqlite:///{work}/same{number}.sqlite3", f"sqlite:///{work}/naive{number}.sqlite3"
        else:  # a second PostgreSQL database is not ours to create: measure in schemas of their own
            joiner = "&" if "?" in database_url else "?"
            ingest_url, naive_url = (f"{database_url}{joiner}schema={name}{number}" for name in ("same", "naive"))
        ingest_rounds.append(fresh_process(measure_ingest_prefix, ingest_url, prefix))
        naive_rounds.append(fresh_process(measure_naive, naive_url, prefix, limit))

    def median_of(measured: list[dict[str, Any]]) -> dict[str, Any]:
        middle = sorted(measured, key=lambda m: m["events_per_s"])[len(measured) // 2]
        return {**middle, "rounds_events_per_s": [m["events_per_s"] for m in measured]}

    return {"ingest_same_events": median_of(ingest_rounds), "naive": median_of(naive_rounds)}


def measure_naive(database_url: str, path: Path, limit: int) -> dict[str, Any]:
    """The baseline: same parsing and validation, one Application.save() (one transaction) per event."""
    ensure_schema(database_url)
    store = EventStore(database_url)
    events = 0
    start = time.perf_counter()
    try:
        for line in _lines(path):
            if events == limit:
                break
            event = parse_event(line, allow_recorded_at=True)
            envelope = event.envelope
            person = store.person(envelope.person.id_number) or Person(envelope.person.id_number)
            person.record(RecordedEvent(
                event.event_id, event.event_type, envelope.schema_version, envelope.agency.model_dump(mode="json"),
                envelope.person.model_dump(mode="json"), envelope.occurred_at.isoformat(),
                (envelope.recorded_at or utc_now()).isoformat(), envelope.case_ref, dict(envelope.payload),
                event.content_hash, "naive"))
            store.save(person)
            events += 1
    finally:
        store.close()
    seconds = time.perf_counter() - start
    return {"events": events, "seconds": round(seconds, 2), "events_per_s": round(events / seconds, 1)}


def measure_rebuild(services) -> dict[str, Any]:
    start = time.perf_counter()
    persons = services.projection.rebuild()
    seconds = time.perf_counter() - start
    events = sum(1 for _ in _count_person_events(services.store))
    return {"events": events, "persons": persons, "seconds": round(seconds, 2),
            "events_per_s": round(events / seconds, 1)}


def measure_live_projector(database_url: str, path: Path, interval: float = 0.2, shares: int = 1) -> dict[str, Any]:
    """The projector as deployed (`handoff project`, a process of its own, or `shares` of them, one per share of
    the persons) while the ingest path loads the whole county into a fresh store at full speed beside it: how far
    behind it falls (sampled from its freshness every `interval` s), how long after ingest stops it reaches the
    head, its rate over the whole run, and the projector processes' peak memory."""
    import subprocess
    import sys
    import threading

    ensure_schema(database_url)
    services = bootstrap(Settings(database_url=database_url, projector_shares=shares), projector="none")
    env = {**os.environ, "HANDOFF_DATABASE_URL": database_url, "HANDOFF_PROJECTOR_SHARES": str(shares)}
    command = [sys.executable, "-m", "services.entrypoints.cli.main", "project", "--interval", str(interval)]
    projectors = [subprocess.Popen(command + (["--share", str(share)] if shares > 1 else []), env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for share in range(shares)]
    behind: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            behind.append(services.projection.freshness()["events_behind"])

    def running() -> bool:
        return all(projector.poll() is None for projector in projectors)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        start = time.perf_counter()
        sampler.start()
        ingest = measure_ingest(services, path)
        ingest_ended = time.perf_counter()
        while services.projection.freshness()["events_behind"] and running():
            time.sleep(interval / 4)
        caught_up = time.perf_counter()
        stop.set()
        sampler.join()
        if not running():
            raise RuntimeError("a `handoff project` process exited during the live bench")
        peaks = [_peak_rss_of(projector.pid) for projector in projectors]
    finally:
        stop.set()
        for projector in projectors:
            projector.terminate()
            projector.wait(30)
        services.close()
    return {"shares": shares, "events": ingest["events"], "ingest_events_per_s": ingest["events_per_s"],
            "projector_events_per_s": round(ingest["events"] / (caught_up - start), 1),
            "max_events_behind": max(behind, default=0),
            "seconds_to_head_after_ingest": round(caught_up - ingest_ended, 2), "samples": len(behind),
            "projector_peak_rss_mib": max(peaks) if None not in peaks else None}


def _peak_rss_of(pid: int) -> float | None:
    """A running process's peak resident set (MiB), from Linux's /proc; None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _count_person_events(store: EventStore) -> Iterator[int]:
    from projections.supervision import PERSON_TOPIC

    start = 1
    while True:
        page = store.recorder.select_notifications(start, 10_000, topics=[PERSON_TOPIC])
        if not page:
            return
        yield from (1 for _ in page)
        start = page[-1].id + 1


def measure_decode(services, limit: int = 50_000) -> dict[str, Any]:
    """The projection's state decoder (adapters/fastread.py) beside eventsourcing's mapper, on the same stored person
    events: what reading streams raw instead of through the library's mapper saves a rebuild."""
    from adapters.fastread import StateDecoder
    from projections.supervision import PERSON_TOPIC

    store, stored, start = services.store, [], 1
    while len(stored) < limit and (page := store.recorder.select_notifications(start, 10_000, topics=[PERSON_TOPIC])):
        stored.extend(page[:limit - len(stored)])
        start = page[-1].id + 1
    decoder = StateDecoder(store.mapper)
    began = time.perf_counter()
    for notification in stored:
        decoder.decode(notification.state)
    fast = time.perf_counter() - began
    began = time.perf_counter()
    for notification in stored:
        store.mapper.to_domain_event(notification)
    mapper = time.perf_counter() - began
    return {"events": len(stored), "state_decoder_events_per_s": round(len(stored) / fast) if fast else None,
            "mapper_events_per_s": round(len(stored) / mapper) if mapper else None,
            "speedup": round(mapper / fast, 1) if fast else None}


def measure_queries(services, repeat: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    # A sample of persons to ask about, not all of them: the peak memory reported is the service's, not the bench's.
    id_numbers = [row.id_number for row in services.read_model.persons(limit=QUERY_SAMPLE)]
    regions = services.read_model.regions()
    cities = sorted({region[:4] for region in regions})
    return {
        "persons": services.read_model.person_total(),
        "gaps_page": _timed(lambda: services.queries.gaps(region=rng.choice(cities), limit=100), repeat),
        "gaps_page_by_rule": _timed(lambda: services.queries.gaps(rule="R04_not_reported", limit=100), repeat),
        "status": _timed(lambda: services.queries.status(rng.choice(id_numbers)), repeat),
        "stats_region": _timed(lambda: services.queries.stats(region=rng.choice(regions)), max(10, repeat // 10)),
        **measure_past(services, cities, regions, repeat, rng),
        **measure_register(services, cities, repeat, rng),
    }


def measure_past(services, cities: list[str], regions: list[str], repeat: int, rng: random.Random) -> dict[str, Any]:
    """Questions about the past from the bitemporal read model, beside the exact refold of every person that
    answered them before (the baseline, timed on one question: it takes seconds)."""
    from services.overview import Overview

    now = services.queries.clock()

    def past() -> dt.datetime:
        return now - dt.timedelta(days=rng.randint(30, 720), hours=rng.randint(0, 23))

    def known_at_page() -> Any:
        as_of = past()
        return services.queries.gaps(region=rng.choice(cities), as_of=as_of,
                                     known_at=as_of + dt.timedelta(days=rng.randint(0, 60)), limit=100)

    def overview_cold() -> Any:  # a new overview: its month-end cache is empty
        overview = Overview(services.queries, services.projection, services.read_model, services.store)
        return overview.figures(None, None, now.date())

    city, as_of = cities[0], past()
    started = time.perf_counter()
    services.queries.exact_gaps(region=city, as_of=as_of, known_at=as_of)
    refold_s = time.perf_counter() - started
    return {
        "gaps_page_as_of": _timed(lambda: services.queries.gaps(region=rng.choice(cities), as_of=past(), limit=100),
                                  repeat),
        "gaps_page_known_at": _timed(known_at_page, repeat),
        "stats_region_as_of": _timed(lambda: services.queries.stats(region=rng.choice(regions), as_of=past()),
                                     max(10, repeat // 10)),
        "overview_cold": _timed(overview_cold, 3),
        "refold_baseline_gaps_as_of_s": round(refold_s, 2),
    }


def measure_register(services, cities: list[str], repeat: int, rng: random.Random,
                     acted: int = 600) -> dict[str, Any]:
    """The lead register as an officer uses it, through the dashboard (HTTP, templates and all): the register page
    of a city with its totals and counts per state, and a lead's page; first `acted` leads are worked on (checked,
    confirmed, dismissed, snoozed) by officers. Beside them, the baseline: the city's whole queue read and matched
    with the leads' states in Python, the way a register without its own index would."""
    from fastapi.testclient import TestClient

    from services.entrypoints.http.api import create_app
    from services.leads import LeadQuery, actor_of

    city = cities[0]
    officer, token = services.principals.add("oversight", "基准 检察官", kind="procuratorate", agency_id="JCY-BENCH",
                                             region=city)
    leads = services.leads.page(LeadQuery(limit=5_000), {"region": city})["items"]
    steps = [("start_check",), ("start_check", "confirm"), ("dismiss",), ("snooze",)]
    today = services.queries.clock().date()
    for item in rng.sample(leads, min(acted, len(leads))):
        for action in rng.choice(steps):
            fields = {"dismiss": {"reason": "data_error"},
                      "snooze": {"until": (today + dt.timedelta(days=10)).isoformat(), "reason": "基准"}}.get(action, {})
            services.leads.act(item["lead_id"], action, fields, actor_of(officer), officer.sees_region,
                               services.principals.active)
    sample = [item["lead_id"] for item in rng.sample(leads, min(200, len(leads)))]
    with TestClient(create_app(services)) as browser:
        assert browser.post("/login", data={"token": token}, follow_redirects=False).status_code == 303

        def page(path: str) -> Any:
            response = browser.get(path)
            assert response.status_code == 200, response.status_code
            return response

        register = _timed(lambda: page(f"/leads?page={rng.randint(1, 20)}"), repeat)
        register_new = _timed(lambda: page("/leads?state=new"), repeat)
        register_checking = _timed(lambda: page("/leads?state=checking"), repeat)
        lead_page = _timed(lambda: page(f"/leads/{rng.choice(sample)}"), repeat)

    def whole_queue_baseline() -> int:
        gaps = services.queries.gaps(region=city, state="all")
        states = services.read_model.lead_versions_of(
            [f"{g['rule'].split('_')[0]}-{g['triggered_by']}" for g in gaps])
        return len(states)

    return {"register_city": city, "register_leads": len(leads), "register_acted": min(acted, len(leads)),
            "register_page": register, "register_page_new": register_new,
            "register_page_checking": register_checking, "lead_page": lead_page,
            "register_baseline_whole_queue": _timed(whole_queue_baseline, 3)}


RECONCILE_COURT = "court:FY-520222"  # the simulated county's court (bench data: counties 520222, 520221)
RECONCILE_BASELINE_SAMPLE = 500


def reconcile_roster(data: Path, persons: int, path: Path) -> dict[str, int]:
    """A court's list of judgments as CSV: every decision of the bench's data (every court's, as a province-wide
    list would be), and 1% of `persons` more: judgments of persons the record does not have (the findings)."""
    import csv

    from domain.identity import id_check_char

    written, listed = 0, set()
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id_number", "name", "case_ref", "category", "date", "region"])
        for line in _lines(data):
            if b'"decision_effective"' not in line:
                continue
            event = json.loads(line)
            payload = event["payload"]
            if (event["person"]["id_number"], payload["document_no"]) in listed:
                continue  # a judgment published twice (A09) is listed once
            listed.add((event["person"]["id_number"], payload["document_no"]))
            writer.writerow([event["person"]["id_number"], event["person"]["name"], payload["document_no"],
                             payload["category"], event["occurred_at"][:10], payload["execution_region"]])
            written += 1
        unknown = max(1, persons // 100)
        for n in range(unknown):  # born in 1949: no simulated person is (the simulator draws from 1950)
            first17 = f"520222{dt.date(1949, 1, 1) + dt.timedelta(days=n // 500):%Y%m%d}{n % 500 * 2:03d}"
            writer.writerow([first17 + id_check_char(first17), f"未推送{n}", f"(2026)黔0222刑初{90000 + n}号",
                             "probation", "2026-01-05", "520222"])
    return {"rows": written + unknown, "of_record": written, "not_of_record": unknown}


def measure_reconcile(services, data: Path, work: Path, persons: int) -> dict[str, Any]:
    """Reconciling a court's roster of the persons' judgments and 1% more the record lacks: reading the CSV,
    checking, keeping, comparing and publishing the findings, then a replay (comparing again) beside a baseline
    that folds each listed person from the event store (a sample, scaled to the roster)."""
    from adapters.spreadsheets import read_table
    from domain.rosters import RosterSource

    path = work / "roster.csv"
    made = reconcile_roster(data, persons, path)
    today = services.rosters.clock().astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    started = time.perf_counter()
    header, lines = read_table(path.read_bytes(), path.name)
    report = services.rosters.receive(RosterSource.parse(RECONCILE_COURT), header, lines, today,
                                      file_name=path.name, received_by="bench")
    received = time.perf_counter() - started
    started = time.perf_counter()
    replayed = services.rosters.replay(report["roster"]["id"])
    replay = time.perf_counter() - started
    sample = []
    with open(path, encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            sample.append(line.split(",", 1)[0])
            if len(sample) >= RECONCILE_BASELINE_SAMPLE:
                break
    started = time.perf_counter()
    for id_number in sample:
        view = services.queries.view(id_number)
        _ = view.episode.document_no if view is not None and view.episode is not None else None
    per_row = (time.perf_counter() - started) / len(sample)
    return {**made, "findings": report["summary"]["findings"], "replay_matches": replayed["roster"]["matches_recorded"],
            "receive_s": round(received, 1), "replay_s": round(replay, 1),
            "baseline_fold_per_row_ms": round(per_row * 1000, 2),
            "baseline_fold_roster_s": round(per_row * made["rows"], 1), "baseline_sample": len(sample)}


def measure_scorecard(services, repeat: int = 5) -> dict[str, Any]:
    """The monthly scorecard of last month for a city and for everywhere, after its follower of the log has counted
    every event once (timed apart: it runs once, then follows the log)."""
    from services.scorecard import previous_month

    started = time.perf_counter()
    counted = services.scorecards.catch_up()
    catch_up = time.perf_counter() - started
    today = services.scorecards.clock().astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    month = previous_month(f"{today.year:04d}-{today.month:02d}")
    city = sorted({region[:4] for region in services.read_model.regions()})[0]
    return {"month": month, "log_events_counted": counted, "catch_up_s": round(catch_up, 1),
            "city": _timed(lambda: services.scorecards.month(month, city), repeat),
            "everywhere": _timed(lambda: services.scorecards.month(month), repeat)}


def measure_identity(services, repeat: int = 5, sample: int = 500) -> dict[str, Any]:
    """Who is who at the store's size: the queue of probable matches (疑似同一人, grouped by the database), beside a
    baseline that reads every person's events to group them by name and birth date (a sample of persons, scaled);
    then one group linked: the catch-up that folds the linked keys together, and a person's status as one person of
    two keys beside a person of one."""
    import random

    from domain.identity import normalised_name
    from services.leads import Actor

    everyone = lambda region: True  # noqa: E731
    timed = _timed(lambda: services.identity.candidates(everyone), repeat)
    groups = services.identity.candidates(everyone)
    stream_ids = list(services.queries.person_ids())
    chosen = random.Random(7).sample(stream_ids, min(sample, len(stream_ids)))
    started = time.perf_counter()
    grouped: dict[tuple[str, str], set[str]] = {}
    for stream_id in chosen:
        person = services.store.get_aggregate(stream_id)
        for event in person.events:
            key = (normalised_name(event.person["name"]), person.id_number[6:14])
            grouped.setdefault(key, set()).add(person.id_number)
    baseline = (time.perf_counter() - started) * len(stream_ids) / max(1, len(chosen))
    result: dict[str, Any] = {"groups": len(groups), "queue": timed, "baseline_read_every_person_s": round(baseline, 1),
                              "baseline_sample": len(chosen), "link_catch_up_s": None, "status_linked": None}
    if groups:
        group = groups[0]
        keep = group["members"][0]["id_number"]
        officer = Actor(id="bench", name="bench", agency_kind="procuratorate", agency_id="JCY-BENCH", region="520200")
        services.identity.link_candidate(group["candidate_id"], keep, "bench", officer, everyone)
        started = time.perf_counter()
        services.projection.catch_up()
        result["link_catch_up_s"] = round(time.perf_counter() - started, 3)
        now = services.queries.clock()
        result["status_linked"] = _timed(lambda: services.queries.status(keep, as_of=now), repeat * 4)
        linked = {key for member in group["members"] for key in member["keys"]}
        single_key = next(key for key in (services.store.get_aggregate(stream_id).id_number for stream_id in
                                          stream_ids[:50]) if key not in linked)
        result["status_single"] = _timed(lambda: services.queries.status(single_key, as_of=now), repeat * 4)
    return result


def simulated(persons: int, seed: int, path: Path) -> dict[str, Any]:
    """Generate the bench's data with the county simulator (5% injected failures, two counties), in a process of
    its own, so that the peak memory reported is that of ingest, rebuild and queries, not of the generator."""
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-m", "services.entrypoints.cli.main", "simulate", "--persons", str(persons),
         "--seed", str(seed), "--counties", "520222,520221", "--failure-rate", "0.05", "--out", str(path),
         # Errors of identity: one in a thousand persons of each kind (a few in a small run). Not foreign nationals:
         # a court's roster (measure_reconcile) names persons by resident ID only.
         *(arg for kind in ("mistyped_id", "duplicate_decision", "name_conflict")
           for arg in ("--identity-error", f"{kind}={max(0.001, min(0.01, 4 / max(persons, 1)))}"))],
        capture_output=True, text=True, check=True)
    summary = json.loads(completed.stderr.strip().splitlines()[-1])
    return {"events": summary["events"]}


def scaling(persons: int, args) -> dict[str, Any]:
    """The same bench with `persons` and 10x `persons`, each in a fresh process so that peak memory is its own."""
    import subprocess
    import sys

    runs = []
    for count in (persons, persons * 10):
        command = [sys.executable, "-m", "services.entrypoints.cli.main", "bench", "--persons", str(count),
                   "--seed", str(args.seed), "--format", "json"] + (["--quick"] if args.quick else [])
        if args.database_url:
            command += ["--database-url", args.database_url]
        completed = subprocess.run(command, capture_output=True, text=True, check=True)
        runs.append(json.loads(completed.stdout))
    base, large = runs
    rows = []
    for name, pick in (("ingest events/s", lambda r: r["ingest"]["events_per_s"]),
                       ("ingest events/s, last tenth of the load", lambda r: r["ingest"]["events_per_s_by_tenth"][-1]),
                       ("naive events/s", lambda r: r["naive"]["events_per_s"]),
                       ("rebuild events/s", lambda r: r["rebuild"]["events_per_s"]),
                       ("gaps page p99 ms", lambda r: r["queries"]["gaps_page"]["p99_ms"]),
                       ("peak memory MiB", lambda r: r["peak_rss_mib"])):
        rows.append([name, pick(base), pick(large), round(pick(large) / pick(base), 2) if pick(base) else None])
    return {"runs": runs, "rows": rows}


def run(persons: int, seed: int, database_url: str | None, naive_events: int, query_repeat: int,
        generate: Callable[[int, int, Path], dict[str, Any]], kafka: bool = False,
        say: Callable[[str], None] = lambda _: None, projector_shares: int = 1, live: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="handoff-bench-") as workdir:
        work = Path(workdir)
        data = work / "events.jsonl"
        say(f"generating {persons} persons")
        generated = generate(persons, seed, data)
        url = database_url or f"sqlite:///{work}/bench.sqlite3"
        backend = url.split(":", 1)[0]
        results: dict[str, Any] = {"data": {"persons": persons, "seed": seed, **generated}, "store": backend,
                                   "machine": {"cpus": os.cpu_count()}}
        services = bootstrap(Settings(database_url=url), projector="none")
        try:
            say("ingest through the ingest path")
            results["ingest"] = measure_ingest(services, data)
            results["peak_rss_mib_after_ingest"] = peak_rss_mib()
            say(f"naive baseline beside the ingest path, same {naive_events:,} events, {LIKE_FOR_LIKE_ROUNDS} rounds")
            results.update(like_for_like(work, data, None if backend == "sqlite" else url, naive_events))
            say("projection rebuild")
            results["rebuild"] = measure_rebuild(services)
            results["peak_rss_mib_after_rebuild"] = peak_rss_mib()
            say("decoding stored events: the projection's decoder beside eventsourcing's mapper")
            results["decode"] = measure_decode(services)
            say("queries")
            results["queries"] = measure_queries(services, query_repeat)
            say("reconciling a court's roster of every judgment (名单碰撞)")
            results["reconcile"] = measure_reconcile(services, data, work, persons)
            say("the monthly scorecard (月度通报)")
            results["scorecard"] = measure_scorecard(services)
            say("who is who: the probable matches (疑似同一人), a link")
            results["identity"] = measure_identity(services)
        finally:
            services.close()
        results["live_projector"] = results["live_projector_shares"] = None
        if live:
            say("the projector (handoff project) beside the ingest path at full speed, into a fresh store")
            results["live_projector"] = measure_live_projector(_beside(url, work, "live"), data)
        if live and projector_shares > 1:
            say(f"the projector as {projector_shares} processes (handoff project --share K), into a fresh store")
            results["live_projector_shares"] = measure_live_projector(
                _beside(url, work, "live_shares"), data, shares=projector_shares)
        results["kafka"] = None
        if kafka:
            from tools.kafka_bench import bench as kafka_bench

            kafka_url = _beside(url, work, "kafka")
            results["kafka"] = kafka_bench(data, kafka_url, say)
    worker_rate = (results["kafka"] or {}).get("ingest_worker", {}).get("events_per_s")
    raw_rate = (results["kafka"] or {}).get("raw_consume", {}).get("events_per_s")
    results["ratios"] = {
        "ingest_over_naive": round(results["ingest_same_events"]["events_per_s"] / results["naive"]["events_per_s"], 1),
        "ingest_over_raw_consume": round(worker_rate / raw_rate, 3) if worker_rate and raw_rate else None,
    }
    results["peak_rss_mib"] = peak_rss_mib()
    results["targets"] = {
        "ingest_at_least_10x_naive": results["ratios"]["ingest_over_naive"] >= 10,
        "rebuild_at_least_50000_events_per_s": results["rebuild"]["events_per_s"] >= 50_000,
        "gap_query_p99_under_50ms": results["queries"]["gaps_page"]["p99_ms"] < 50,
        "gap_query_measured_at_100000_persons": results["queries"]["persons"] >= 100_000,
        "past_gap_page_p99_under_100ms": results["queries"]["gaps_page_known_at"]["p99_ms"] < 100,
        "past_stats_p99_under_200ms": results["queries"]["stats_region_as_of"]["p99_ms"] < 200,
        "overview_cold_under_1s": results["queries"]["overview_cold"]["p50_ms"] < 1000,
        "reconcile_roster_of_the_persons_under_60s": results["reconcile"]["receive_s"] < 60,
        "register_and_lead_pages_p99_under_300ms": max(results["queries"]["register_page"]["p99_ms"],
                                                       results["queries"]["lead_page"]["p99_ms"]) < 300,
        "projector_at_least_as_fast_as_ingest": None if not live else any(
            measured["projector_events_per_s"] >= measured["ingest_events_per_s"]
            for measured in (results["live_projector"], results["live_projector_shares"]) if measured),
    }
    return results


def _beside(url: str, work: Path, name: str) -> str:
    """Another fresh store beside the bench's own: a file next to it (SQLite), or a schema of the same database."""
    if url.startswith("sqlite"):
        return f"sqlite:///{work}/{name}.sqlite3"
    return url + ("&" if "?" in url else "?") + f"schema={name}"


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    q, live = results["queries"], results["live_projector"]
    return [
        [f"ingest (ingest path, batches of {BULK_BATCH:,})", f"{results['ingest']['events_per_s']:,} events/s",
         f"{results['ingest']['events']:,} events"],
        ["ingest, each tenth of the load", " → ".join(f"{rate:,.0f}" for rate in results["ingest"]["events_per_s_by_tenth"]),
         "events/s as the store grows"],
        ["naive baseline (one save per event)", f"{results['naive']['events_per_s']:,} events/s",
         f"{results['naive']['events']:,} events; median of {_rounds(results['naive'])}"],
        ["ingest path, same events as naive", f"{results['ingest_same_events']['events_per_s']:,} events/s",
         f"{results['ingest_same_events']['events']:,} events; median of {_rounds(results['ingest_same_events'])}"],
        ["ingest / naive (same events)", f"{results['ratios']['ingest_over_naive']}×", "target ≥ 10×"],
        ["projection rebuild", f"{results['rebuild']['events_per_s']:,} events/s", "target ≥ 50,000"],
        ["decode stored events: projection's decoder / mapper",
         f"{results['decode']['state_decoder_events_per_s']:,} / {results['decode']['mapper_events_per_s']:,} events/s",
         f"{results['decode']['speedup']}× on {results['decode']['events']:,} events"],
        ["gaps page (region, 100 rows)", f"p50 {q['gaps_page']['p50_ms']} ms · p99 {q['gaps_page']['p99_ms']} ms",
         f"{q['persons']:,} persons; target p99 < 50 ms"],
        ["gaps page (rule)", f"p50 {q['gaps_page_by_rule']['p50_ms']} ms · p99 {q['gaps_page_by_rule']['p99_ms']} ms", ""],
        ["status", f"p50 {q['status']['p50_ms']} ms · p99 {q['status']['p99_ms']} ms", ""],
        ["stats (one region)", f"p50 {q['stats_region']['p50_ms']} ms · p99 {q['stats_region']['p99_ms']} ms", ""],
        ["gaps page as of a past date (city)",
         f"p50 {q['gaps_page_as_of']['p50_ms']} ms · p99 {q['gaps_page_as_of']['p99_ms']} ms",
         "target p99 < 100 ms at 100,000 persons"],
        ["gaps page as of, as known at (city)",
         f"p50 {q['gaps_page_known_at']['p50_ms']} ms · p99 {q['gaps_page_known_at']['p99_ms']} ms",
         f"baseline: refolding everyone {q['refold_baseline_gaps_as_of_s']} s"],
        ["stats of a region as of a past date",
         f"p50 {q['stats_region_as_of']['p50_ms']} ms · p99 {q['stats_region_as_of']['p99_ms']} ms",
         "target p99 < 200 ms at 100,000 persons"],
        ["overview with its 12-month trend, cold", f"p50 {q['overview_cold']['p50_ms']} ms",
         "target < 1 s at 100,000 persons"],
        ["线索台账 page (dashboard, a city, 50 rows, totals)",
         f"p50 {q['register_page']['p50_ms']} ms · p99 {q['register_page']['p99_ms']} ms",
         f"{q['register_leads']:,}+ leads, {q['register_acted']} acted on; target p99 < 300 ms at 100,000 persons"],
        ["线索台账 page, state new / checking",
         f"p99 {q['register_page_new']['p99_ms']} / {q['register_page_checking']['p99_ms']} ms",
         f"baseline: whole queue matched in Python p50 {q['register_baseline_whole_queue']['p50_ms']} ms"],
        ["a lead's page (dashboard, with the timeline)",
         f"p50 {q['lead_page']['p50_ms']} ms · p99 {q['lead_page']['p99_ms']} ms", "target p99 < 300 ms"],
        _reconcile_row(results["reconcile"]),
        ["月度通报: last month, a city / everywhere",
         f"p50 {results['scorecard']['city']['p50_ms']} / {results['scorecard']['everywhere']['p50_ms']} ms",
         f"first counting the whole log once: {results['scorecard']['catch_up_s']} s "
         f"({results['scorecard']['log_events_counted']:,} events)"],
        _identity_row(results["identity"]),
        *(_projector_row(measured) for measured in (live, results.get("live_projector_shares")) if measured),
        ["peak memory", f"{results['peak_rss_mib']} MiB", f"after ingest {results['peak_rss_mib_after_ingest']} MiB"],
        *_kafka_rows(results),
    ]


def _reconcile_row(measured: dict[str, Any]) -> list[str]:
    return [f"名单碰撞: a court's roster of {measured['rows']:,} rows, kept, compared, findings published",
            f"{measured['receive_s']} s · replay {measured['replay_s']} s",
            f"{measured['findings']:,} findings; baseline: folding each listed person "
            f"{measured['baseline_fold_roster_s']} s ({measured['baseline_fold_per_row_ms']} ms a row, sample of "
            f"{measured['baseline_sample']}); target < 60 s"]


def _identity_row(measured: dict[str, Any]) -> list[str]:
    linked = measured.get("status_linked")
    after = (f"; one group linked: catch-up {measured['link_catch_up_s']} s, status p50 {linked['p50_ms']} ms "
             f"(one key: {measured['status_single']['p50_ms']} ms)") if linked else ""
    return ["疑似同一人: the probable-match queue", f"p50 {measured['queue']['p50_ms']} ms",
            f"{measured['groups']:,} groups; baseline: reading every person's events "
            f"{measured['baseline_read_every_person_s']} s (sample of {measured['baseline_sample']})" + after]


def _projector_row(live: dict[str, Any]) -> list[str]:
    processes = f", {live['shares']} processes (--share)" if live.get("shares", 1) > 1 else ""
    memory = live.get("projector_peak_rss_mib")
    return [f"projector (handoff project{processes}) beside ingest",
            f"{live['projector_events_per_s']:,} events/s · ingest {live['ingest_events_per_s']:,} events/s",
            f"at most {live['max_events_behind']:,} events behind; at the head {live['seconds_to_head_after_ingest']} s "
            f"after ingest stopped" + (f"; peak memory {memory} MiB per process" if memory else "")]


def _rounds(measured: dict[str, Any]) -> str:
    return ", ".join(f"{rate:,.0f}" for rate in measured["rounds_events_per_s"])


def _kafka_rows(results: dict[str, Any]) -> list[list[str]]:
    kafka = results.get("kafka")
    if not kafka:
        return [["kafka", "n/a", "run with --kafka"]]
    worker, raw = kafka["ingest_worker"], kafka["raw_consume"]
    return [
        ["kafka ingest worker (handoff ingest)", f"{worker['events_per_s']:,} events/s",
         f"{worker['events']:,} messages, {worker['batches']:,} transactions; {kafka['broker']}"],
        ["raw kafka-python consume (same messages)", f"{raw['events_per_s']:,} events/s",
         f"{raw['events']:,} messages, {raw['megabytes']} MB"],
        ["ingest worker / raw consume", f"{results['ratios']['ingest_over_raw_consume']}×", "what storing costs"],
    ]
