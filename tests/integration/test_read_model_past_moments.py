"""The read model answers questions about the past exactly as the reference fold does, on a simulated county.

A county of simulated histories (late publications, every kind of handoff failure) plus retractions recorded days
after the events they withdraw, projected once; then, at 50 random (as_of, known_at) pairs, the gaps (open and late,
with due and fulfilment times), each person's status and responsible agency, and the regional figures read from the
read model's versions must equal what refolding every person from the event log answers. SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import uuid

import pytest

from adapters.config import Settings
from domain.calendar import micros
from projections.supervision import SupervisionProjection
from services.bootstrap import bootstrap
from services.ingest import Source
from tools.simulate import SimulationConfig, run

pytestmark = pytest.mark.filterwarnings("ignore::domain.calendar.ProvisionalCalendarWarning")

CST = dt.timezone(dt.timedelta(hours=8))
UNTIL = dt.datetime(2026, 6, 30, 18, 0, tzinfo=CST)
START = UNTIL - dt.timedelta(days=3 * 365)
PAIRS = 50


def county_with_retractions(persons: int, seed: int) -> list[dict]:
    """Simulated envelopes, and a retraction of every 15th event by its own agency, recorded 1–20 days later."""
    out = io.StringIO()
    run(SimulationConfig(persons=persons, seed=seed, failure_rate=0.3, until=UNTIL, counties=("520222", "520221")),
        out, io.StringIO())
    envelopes = [json.loads(line) for line in out.getvalue().splitlines()]
    rng = random.Random(seed)
    retractions = []
    for original in envelopes[7::15]:
        recorded = dt.datetime.fromisoformat(original["recorded_at"]) + dt.timedelta(days=rng.randint(1, 20))
        recorded = min(recorded, UNTIL)
        retractions.append({
            **{key: original[key] for key in ("schema_version", "agency", "person", "case_ref")},
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "event_type": "event_retracted",
            "occurred_at": recorded.isoformat(), "recorded_at": recorded.isoformat(),
            "payload": {"retracted_event_id": original["event_id"], "reason": "录入错误"}})
    return sorted(envelopes + retractions, key=lambda e: e["recorded_at"])


@pytest.fixture
def county(database_url):
    services = bootstrap(Settings(database_url=database_url), clock=lambda: UNTIL, projector="none")
    envelopes = county_with_retractions(90 if database_url.startswith("sqlite") else 60, seed=5)
    lines = [json.dumps(e, ensure_ascii=False).encode() for e in envelopes]
    for start in range(0, len(lines), 500):
        result = services.ingestor.ingest(lines[start:start + 500], Source("sim", allow_recorded_at=True))
        assert result.rejected == 0, result
    services.projection.catch_up()
    assert services.projection.lag() == 0
    yield services
    services.close()


def random_pairs(rng: random.Random, edges: list[dt.datetime]) -> list[tuple[dt.datetime, dt.datetime | None]]:
    """(as_of, known_at): mostly known at or after the moment asked about, some before it, some as known now; half
    of the moments a second after an instant where answers change (a due time, just before a late fulfilment),
    where off-by-one errors show."""
    pairs = []
    span = int((UNTIL - START).total_seconds())
    for number in range(PAIRS):
        if number % 2:
            as_of = rng.choice(edges) + dt.timedelta(seconds=1)
        else:
            as_of = START + dt.timedelta(seconds=rng.randrange(span))
        choice = rng.random()
        if choice < 0.2:
            known_at = None
        elif choice < 0.85:
            known_at = min(UNTIL, as_of + dt.timedelta(days=rng.uniform(0, 60)))
        else:
            known_at = as_of - dt.timedelta(days=rng.uniform(0, 30))
        pairs.append((as_of, known_at))
    return pairs


def _gap_key(gap: dict) -> tuple:
    return (gap["id_number"], gap["rule"], gap["triggered_by"])


def test_the_read_model_answers_every_past_question_as_the_fold_does(county):
    queries, read_model = county.queries, county.read_model
    rng = random.Random(2026)
    compared_gaps = compared_persons = 0
    final = queries.exact_gaps(as_of=UNTIL, state="all")
    edges = sorted({dt.datetime.fromisoformat(gap["due_at"]) for gap in final}
                   | {dt.datetime.fromisoformat(gap["fulfilled_at"]) - dt.timedelta(seconds=2)
                      for gap in final if gap["fulfilled_at"]})
    for as_of, known_at in random_pairs(rng, edges):
        label = f"as of {as_of.isoformat()}, known at {known_at.isoformat() if known_at else 'now'}"

        for state in ("open", "late"):
            from_rows = sorted(queries.gaps(as_of=as_of, known_at=known_at, state=state), key=_gap_key)
            refolded = sorted(queries.exact_gaps(as_of=as_of, known_at=known_at, state=state), key=_gap_key)
            assert from_rows == refolded, f"{state} gaps {label}"
            compared_gaps += len(refolded)
        # Pages of a region prefix (read region by region) and of one county, in the order of the whole queue.
        for region in ("5202", "520221"):
            whole = queries.gaps(as_of=as_of, known_at=known_at, state="all", region=region)
            assert sorted(whole, key=_gap_key) == sorted(
                queries.exact_gaps(as_of=as_of, known_at=known_at, state="all", region=region), key=_gap_key), label
            paged = [gap for offset in range(0, len(whole) + 7, 7)
                     for gap in queries.gaps(as_of=as_of, known_at=known_at, state="all", region=region, limit=7,
                                             offset=offset)]
            assert paged == whole, f"pages of {region}, {label}"

        assert queries.stats(as_of=as_of, known_at=known_at) == queries.exact_stats(as_of=as_of, known_at=known_at), \
            label
        assert queries.stats(region="520221", as_of=as_of, known_at=known_at) == \
            queries.exact_stats(region="520221", as_of=as_of, known_at=known_at), label

        rows = {row.id_number: row for row in read_model.persons(
            as_of_us=micros(as_of), known_at_us=micros(known_at) if known_at else None,
            rule_set=county.projection.serving_rule_set())}
        views = {view.id_number: view for view in queries.all_views(as_of, known_at)}
        assert rows.keys() == views.keys(), label
        for id_number, view in views.items():
            row = rows[id_number]
            responsible = view.responsible
            assert (row.status, row.region, row.responsible_kind, row.responsible_region) == (
                view.status, view.region, (responsible or {}).get("kind"), (responsible or {}).get("region")), \
                f"{label}: {id_number}"
        compared_persons += len(views)
    # The pairs reached into histories with gaps and persons, not only into empty moments.
    assert compared_gaps > 200 and compared_persons > 500


def test_catching_up_batch_by_batch_writes_the_rows_of_a_rebuild(database_url):
    """The projector keeps each person's history between catch-ups and gives it only the events stored since
    (refolding a person when one was recorded before what it has, or retracted): the rows must be a rebuild's, also
    when two projectors (say `handoff serve`'s and a CLI command's) take turns over the same read model."""
    services = bootstrap(Settings(database_url=database_url), clock=lambda: UNTIL, projector="none")
    other = SupervisionProjection(services.store, services.read_model, services.rules, services.projection.calendar)
    try:
        envelopes = county_with_retractions(40, seed=9)
        rng = random.Random(9)
        late = rng.sample(range(len(envelopes)), len(envelopes) // 10)  # stored last, recorded long before
        order = [e for n, e in enumerate(envelopes) if n not in set(late)] + [envelopes[n] for n in late]
        lines = [json.dumps(e, ensure_ascii=False).encode() for e in order]
        for number, start in enumerate(range(0, len(lines), 97)):
            assert services.ingestor.ingest(lines[start:start + 97], Source("sim", allow_recorded_at=True)).rejected == 0
            (other if number % 3 == 2 else services.projection).catch_up()
        caught_up = services.read_model.dump()
        services.projection.rebuild()
        assert services.read_model.dump() == caught_up
    finally:
        services.close()


def test_shares_of_the_projector_write_the_rows_of_a_rebuild(database_url):
    """The projector run as N processes, each folding the persons of its share of stream ids, from a position of
    its own: the answers stand where the furthest-behind share stands, a share other than 0 waits for share 0 to
    build a new rule set's rows, a change in the number of shares takes over the old positions, and whatever the
    shares and the order they run in, the rows are a rebuild's."""
    services = bootstrap(Settings(database_url=database_url), clock=lambda: UNTIL, projector="none")
    store, read_model, rules, calendar = services.store, services.read_model, services.rules, \
        services.projection.calendar

    def shares_of(count: int) -> list[SupervisionProjection]:
        return [SupervisionProjection(store, read_model, rules, calendar, clock=lambda: UNTIL, shares=count,
                                      owned=[share]) for share in range(count)]

    three, two = shares_of(3), shares_of(2)
    try:
        envelopes = county_with_retractions(40, seed=11)
        lines = [json.dumps(e, ensure_ascii=False).encode() for e in envelopes]
        batches = [lines[start:start + 80] for start in range(0, len(lines), 80)]
        assert len(batches) >= 8

        def ingest(batch: list[bytes]) -> None:
            assert services.ingestor.ingest(batch, Source("sim", allow_recorded_at=True)).rejected == 0

        ingest(batches[0])
        assert three[1].catch_up() == 0 and read_model.serving("supervision")[0] is None  # waits for share 0
        assert three[0].catch_up() > 0  # builds every person's rows, and every share's position
        assert three[1].catch_up() == 0 and three[2].catch_up() == 0 and services.projection.lag() == 0

        ingest(batches[1])
        three[0].catch_up()
        assert services.projection.lag() > 0  # shares 1 and 2 still stand before the new events
        three[2].catch_up()
        three[1].catch_up()
        assert services.projection.lag() == 0

        ingest(batches[2])
        three[2].catch_up()  # shares 0 and 1 left behind, then the count of shares changes to two
        ingest(batches[3])
        two[1].catch_up()
        two[0].catch_up()
        ingest(batches[4])
        two[0].catch_up()
        services.projection.catch_up()  # back to one projector, which takes over from share 1 (behind)
        assert [name for name, in _position_names(read_model)] == ["supervision"]
        for batch in batches[5:]:
            ingest(batch)
            for share in (2, 0, 1):
                three[share].catch_up()
        assert services.projection.lag() == 0
        assert sorted(name for name, in _position_names(read_model)) == [f"supervision/{k}:3" for k in range(3)]
        caught_up = read_model.dump()
        services.projection.rebuild()
        assert read_model.dump() == caught_up
    finally:
        services.close()


def _position_names(read_model) -> list[tuple[str]]:
    import sqlalchemy as sa

    from adapters.readmodel import positions

    with read_model.engine.connect() as connection:
        return connection.execute(sa.select(positions.c.projection)).all()
