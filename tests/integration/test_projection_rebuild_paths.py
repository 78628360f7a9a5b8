"""The rebuild's fast paths give exactly the rows of the plain one.

Plain: every stored event through eventsourcing's mapper, folded in this process. Fast: raw rows decoded with
orjson (adapters/fastread.py), folded here or in worker processes that read the streams over connections of their
own. All three must write the same rows, in the same order, on SQLite and PostgreSQL, with and without encrypted
(and compressed) event state.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import uuid

import pytest
import sqlalchemy as sa
from eventsourcing.cryptography import AESCipher

import projections.supervision as projection_module
from adapters.config import Settings
from adapters.eventstore import EventStore
from adapters.readmodel import obligations
from adapters.fastread import StateDecoder, StreamReader
from projections.supervision import SupervisionProjection
from services.bootstrap import bootstrap
from services.ingest import Source
from tools.simulate import SimulationConfig, run

pytestmark = pytest.mark.filterwarnings("ignore::domain.calendar.ProvisionalCalendarWarning")

CST = dt.timezone(dt.timedelta(hours=8))
UNTIL = dt.datetime(2026, 6, 30, 18, 0, tzinfo=CST)


def simulated_lines(persons: int, seed: int) -> list[bytes]:
    """A county's histories with many handoff failures of every kind (retractions, transfers, custody, deaths)."""
    config = SimulationConfig(persons=persons, seed=seed, failure_rate=0.3, until=UNTIL,
                              counties=("520222", "520221"))
    out = io.StringIO()
    run(config, out, io.StringIO())
    return [line.encode() for line in out.getvalue().splitlines()]


def load(services, lines: list[bytes]) -> None:
    for start in range(0, len(lines), 500):
        result = services.ingestor.ingest(lines[start:start + 500], Source("sim", allow_recorded_at=True))
        assert result.rejected == 0


def written(services) -> dict[str, list[tuple]]:
    """Every read-model row with its personal fields opened, obligations in the order they were written."""
    read_model = services.read_model
    with read_model.engine.connect() as connection:
        obligation_rows = connection.execute(
            sa.text("SELECT * FROM rm_obligations ORDER BY id")).mappings().all()
    obligations = [tuple(read_model.sealer.open(v) if k in ("id_number", "name") else v
                         for k, v in row.items() if k not in ("id", "person_key"))
                   for row in obligation_rows]
    return {"dump": read_model.dump(), "obligations_in_written_order": obligations}


def rebuilt(services, *, fast_read: bool, workers: int) -> dict[str, list[tuple]]:
    # Small pages and tasks, so that the parallel path hands out many of both and must put them back in order.
    projection = SupervisionProjection(services.store, services.read_model, services.rules,
                                       services.projection.calendar, page_size=37, fast_read=fast_read)
    persons = projection.rebuild(workers=workers)
    assert persons > 0
    return written(services)


@pytest.fixture
def small_tasks(monkeypatch):
    monkeypatch.setattr(projection_module, "PERSONS_PER_TASK", 5)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain-state", "encrypted-compressed-state"])
def test_fast_and_parallel_rebuilds_write_the_rows_of_the_plain_rebuild(database_url, encrypted, small_tasks,
                                                                          monkeypatch):
    if encrypted:
        # eventsourcing reads COMPRESSOR_TOPIC from the environment: state is compressed, then encrypted.
        monkeypatch.setenv("COMPRESSOR_TOPIC", "eventsourcing.compressor:ZlibCompressor")
    key = AESCipher.create_key(32) if encrypted else None
    services = bootstrap(Settings(database_url=database_url, cipher_key=key), clock=lambda: UNTIL)
    try:
        if encrypted:
            assert services.store.mapper.cipher is not None and services.store.mapper.compressor is not None
        load(services, simulated_lines(160 if database_url.startswith("sqlite") else 80, seed=11))

        plain = rebuilt(services, fast_read=False, workers=0)
        assert len(plain["obligations_in_written_order"]) > 500
        assert {row["status"] for row in plain["dump"]["rm_persons"]} >= {"under_supervision", "discharged"}

        assert rebuilt(services, fast_read=True, workers=0) == plain
        assert rebuilt(services, fast_read=True, workers=2) == plain

        # The parallel rebuild leaves the read model as the service serves it: position at the head, indexes back.
        assert services.projection.lag() == 0
        indexes = {index["name"] for index in sa.inspect(services.read_model.engine).get_indexes("rm_obligations")}
        assert {index.name for index in obligations.indexes} == indexes
    finally:
        services.close()


def test_a_rebuild_chooses_worker_processes_only_for_a_large_log(tmp_path, monkeypatch):
    services = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/h.sqlite3"), clock=lambda: UNTIL)
    chosen = []
    original = SupervisionProjection._fold_pages_in_workers

    def recording(self, head, workers, *rest):
        chosen.append(workers)
        return original(self, head, workers, *rest)

    monkeypatch.setattr(SupervisionProjection, "_fold_pages_in_workers", recording)
    monkeypatch.setattr(projection_module, "available_cpus", lambda: 2)
    try:
        load(services, simulated_lines(40, seed=3))
        services.projection.catch_up()
        live = services.read_model.dump()
        services.projection.rebuild()
        assert chosen == [] and services.read_model.dump() == live
        monkeypatch.setattr(projection_module, "PARALLEL_FROM_EVENTS", 100)
        services.projection.rebuild()
        assert chosen == [2] and services.read_model.dump() == live
    finally:
        services.close()


# -- the state decoder ------------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSOR_TOPIC", "eventsourcing.compressor:ZlibCompressor")
    store = EventStore(f"sqlite:///{tmp_path}/s.sqlite3", cipher_key=AESCipher.create_key(16))
    yield store
    store.close()


def stored_state(store, attributes: dict) -> bytes:
    """The state eventsourcing stores for an event with these attributes (transcoded, compressed, encrypted)."""
    state = store.mapper.transcoder.encode(attributes)
    return store.mapper.cipher.encrypt(store.mapper.compressor.compress(state))


def test_the_decoder_gives_what_the_mapper_gives(store):
    timestamp = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc)
    plain = {"timestamp": timestamp, "event_id": "e1", "payload": {"region": "520222", "n": 3, "x": 1.5,
                                                                     "names": ["张三", "\u2028"], "none": None}}
    decoded = StateDecoder(store.mapper).decode(stored_state(store, plain))
    assert decoded == {**plain, "timestamp": {"_type_": "datetime_iso", "_data_": timestamp.isoformat()}}

    # Values only the transcoder can decode (custom types in the payload; JSON orjson refuses) take its path.
    custom = {"timestamp": timestamp, "payload": {"stream": uuid.UUID(int=7), "at": timestamp}}
    assert StateDecoder(store.mapper).decode(stored_state(store, custom)) == custom
    not_a_number = StateDecoder(store.mapper).decode(stored_state(store, {"timestamp": timestamp, "x": math.nan}))
    assert not_a_number["timestamp"] == timestamp and math.isnan(not_a_number["x"])
    # orjson would read these as floats; the transcoder keeps them exact
    for huge in (2**64, -(2**63) - 1, 10**30):
        decoded = StateDecoder(store.mapper).decode(stored_state(store, {"timestamp": timestamp, "n": huge}))
        assert decoded["n"] == huge and type(decoded["n"]) is int


def test_the_stream_reader_reads_whole_streams_in_version_order(tmp_path):
    services = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/h.sqlite3"), clock=lambda: UNTIL)
    try:
        load(services, simulated_lines(12, seed=5))
        reader = StreamReader.of_store(services.store)
        expected = {}
        for n in services.store.recorder.select_notifications(1, 10_000):
            if n.topic.startswith("domain.person:Person."):
                expected.setdefault(reader.key(n.originator_id), {})[n.originator_version] = n.state
        keys = list(expected)
        assert reader.states(keys) == {key: [expected[key][v] for v in sorted(expected[key])] for key in keys}
        worker_reader, close = StreamReader.source(services.store).open()
        try:
            assert worker_reader.states(keys) == reader.states(keys)
            assert worker_reader.states(["0" * 32]) == {}
        finally:
            close()
    finally:
        services.close()


# -- the bulk write -----------------------------------------------------------------------------------------------


def test_the_read_model_stores_awkward_text_exactly(database_url):
    """Rows go to SQLite by the driver's executemany and to PostgreSQL by COPY, whose text format needs escaping."""
    from adapters.readmodel import PersonRows, ReadModel

    awkward = ["tab\there", "new\nline", "carriage\rreturn", "back\\slash", "\\N", "\\.", "\\", "a\\tb", "张三 𠀀",
               ""]
    read_model = ReadModel(database_url)
    try:
        rows = [
            PersonRows(f"52022219800101{n:04d}", text,
                       [("520222", "under_supervision", None, None, -1, None, 2**62, "probation", text, text, "v1",
                         text, False, 1, -(2**62), None, 0, None)],
                       [("520222", "R04_not_reported", text, "bureau", text, None, text, 0, None, None, -(2**62),
                         "v1", True, text, True, 2, 0, 2**62, -1, 1)])
            for n, text in enumerate(awkward)
        ]
        read_model.apply("test", "v1", 0, 1, rows)
        dump = read_model.dump()
        persons = {row["id_number"]: row for row in dump["rm_persons"]}
        assert [persons[r.id_number]["name"] for r in rows] == awkward
        assert {(p["responsible_kind"], p["received_us"], p["ended"], p["ended_us"]) for p in persons.values()} == \
            {(None, -1, None, 2**62)}
        obligations = {row["id_number"]: row for row in dump["rm_obligations"]}
        for column in ("name", "triggered_by", "obligated_id", "due_at"):
            assert [obligations[r.id_number][column] for r in rows] == awkward, column
        assert {(o["obligated_region"], o["due_us"], o["fulfilled_at"], o["gap_us"]) for o in obligations.values()} \
            == {(None, 0, None, -(2**62))}
    finally:
        read_model.drop()
        read_model.close()


def test_a_read_model_of_an_older_shape_is_dropped_and_built_again(tmp_path):
    """Read models are derived data: a table missing, a column or an index of another definition, and every table
    goes (the projector then rebuilds them from the event log), rather than answer from rows of another shape."""
    import sqlalchemy as sa

    from adapters.readmodel import PersonRows, ReadModel

    url = f"sqlite:///{tmp_path}/rm.sqlite3"
    row = PersonRows("520222198001011236", "张三", [("520222", "under_supervision", None, None, None, None, None,
                                                   "probation", None, None, "v1", None, False, 1, 0, None, 0,
                                                   None)], [])
    for change in ("DROP TABLE rm_regions", "DROP INDEX ix_rm_persons_now",
                   "CREATE INDEX ix_rm_persons_old ON rm_persons (region)"):
        read_model = ReadModel(url)
        read_model.apply("supervision", "v1", 0, 1, [row])
        assert len(read_model.dump()["rm_persons"]) == 1
        with read_model.engine.begin() as connection:
            connection.exec_driver_sql(change)
        read_model.close()
        reopened = ReadModel(url)
        assert reopened.dump()["rm_persons"] == [] and reopened.serving("supervision") == (None, 0, None), change
        assert {index["name"] for index in sa.inspect(reopened.engine).get_indexes("rm_persons")} >= \
            {"ix_rm_persons_now"}
        reopened.close()


def _open_read_model(url: str, times: int, go) -> None:
    from adapters.readmodel import ReadModel

    go.wait()  # every process imported and ready (a barrier): they open the new store at the same moment
    for _ in range(times):
        read_model = ReadModel(url)
        read_model.serving("supervision")
        read_model.close()


def test_processes_starting_together_never_drop_each_others_tables(tmp_path):
    """An API, a projector's shares and a bench starting at once on a new store: each checks the schema and creates
    it in one transaction, so none sees another's half-made schema as an older one and drops it."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for attempt in range(3):
        url = f"sqlite:///{tmp_path}/together{attempt}.sqlite3"
        go = context.Barrier(6)
        processes = [context.Process(target=_open_read_model, args=(url, 4, go)) for _ in range(6)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(120)
        assert [process.exitcode for process in processes] == [0] * 6
