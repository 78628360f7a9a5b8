"""The Kafka ingest worker's second process: it fetches the inbound messages and checks them, while the worker's
main process (kafka_ingest.IngestWorker beside it) decides and stores the previous batch, so two cores work at once.

Why this split: kafka-python's fetch (decoding, and the CRC32C of every record batch) and the check of an envelope
(parse, validate, authorise: `services.ingest.check_items`) need no store; with a pure-Python CRC32C they took about
as long as deciding and storing, and with the `crc32c` C extension (a dependency) the worker's limit is the store.
Bulk loads already check ahead in a second process (`Ingestor.ingest_batches`); here the consuming moves there too.

What stays in the main process, and why:
- the consumer-group membership and its rebalance callbacks: the group member must be the process that knows what
  is on record (the store's positions, read on every assignment, are the truth);
- deciding and storing (one transaction per run, with the partition's `Tracking`), the rejected copies and the
  offsets committed for monitoring.
This process is not a group member (a plain `KafkaConsumer` with `assign()`, configured exactly like any other of
the service's consumers) and never touches the store: it reads the partitions the main process names, from the
offsets it names, and sends back checked runs. A crash of either process therefore stores nothing half-done; what
was fetched and not stored is fetched again from the store's positions (docs/kafka.md, "Exactly once").

The conversation (two pipes, pickled messages: multiprocessing's `Connection`):
- main -> fetcher: `("start", config, name, allow_recorded_at, main_share)` first; then
  `("assign", generation, {(topic, partition): next offset or None for the beginning}, latest)`, which replaces the
  whole assignment (an empty map: none); `("latest", latest)`, which renews the check's time bound (the main
  process's clock + FUTURE_TOLERANCE, so an injected clock rules the check too; the bound used is at most one turn
  of the main loop old); `("hungry",)` (the main process waited for a poll: see MAX_MAIN_SHARE); `("stop",)`.
- fetcher -> main: `("runs", generation, fetched_at, [CheckedRun, ...])`, one poll, each partition's runs in offset
  order, checked but for those left to the main process to check (the balance of the two processes), tagged with the generation of the assignment they were fetched for (the main process drops runs of an
  assignment it has replaced); `("error", traceback)` before the fetcher exits on an error. The fetcher goes on to
  the next poll only once the main process has read this one (the pipe is the bounded queue: backpressure; one poll
  is stored while the next is fetched and checked).
The fetcher ignores SIGINT and SIGTERM (a Ctrl-C or a whole process group's SIGTERM reaches the main process, which
stops it after finishing the run in hand) and exits by itself when the main process is gone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.kafka import KafkaConfig, quiet_client_diagnostics, tracking_name
from domain.authorisation import PublisherIdentity
from domain.catalog import AgencyKind
from domain.envelope import MAX_ENVELOPE_BYTES
from domain.errors import Rejected, RejectionCode

from services.ingest import Checked, CheckedEvent, Source, check_items

log = logging.getLogger("handoff.kafka")

H_PUBLISHER_ID = "handoff-publisher-id"
H_PUBLISHER_REGION = "handoff-publisher-region"
H_VIA = "handoff-via"

NO_KEY = "the message has no key: key every message by the envelope's person.id_number (per-person order)"
WRONG_KEY = "the message key is not the envelope's person.id_number (key by the ID number: per-person order)"

# How long either process waits on its pipe before looking at the other's health (and, here, for new commands).
WAIT_S = 0.2
# Balancing the two processes: the fetch process leaves whole runs at the end of each poll unchecked, up to this
# share of the poll's messages, for the main process to check. The share grows by a step whenever the main process
# had to wait for a poll ("hungry") and shrinks by a step whenever the fetch process had to wait to hand one over
# (a send slower than SLOW_SEND_S: the main process was busy storing). Checking takes about as long as fetching and
# as deciding and storing, so where the split should be depends on the store and the machine.
MAX_MAIN_SHARE = 0.5
SHARE_STEP = 0.05
SLOW_SEND_S = 0.02
STOP_GRACE_S = 10.0


def key_problem(key: bytes | None, value: bytes) -> str | None:
    """Why the key of an inbound message is wrong, or None. Messages whose person cannot be read are left to the
    ingest path, which refuses them with a better reason."""
    if len(value) > MAX_ENVELOPE_BYTES:
        return None
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        return None
    person = document.get("person") if isinstance(document, dict) else None
    id_number = person.get("id_number") if isinstance(person, dict) else None
    if not isinstance(id_number, str):
        return None
    if key is None:
        return NO_KEY
    if key != id_number.encode("utf-8", errors="surrogatepass"):
        return WRONG_KEY
    return None


def checked_key_problem(key: bytes | None, value: bytes, checked: Checked) -> str | None:
    """`key_problem(key, value)`, without its second JSON decoding when the check has read the envelope already.

    The checked event holds the ID number normalised (a final x upper-cased) while the key must equal the envelope's
    ID number as sent; both differ only there, so only a key that matches but for that letter's case needs the
    envelope read again (about one ID number in eleven ends in X; and every refused envelope, whose person the
    check may not have reached)."""
    if isinstance(checked, CheckedEvent):
        expected = checked.id_number.encode("utf-8", errors="surrogatepass")
        if key is None:
            return NO_KEY
        if key == expected and not expected.endswith(b"X"):
            return None
        if key.upper() != expected:  # the ID number as sent upper-cases to `expected`: so does a matching key
            return WRONG_KEY
    return key_problem(key, value)


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name and value is not None:
            try:
                return value.decode("utf-8") or None
            except UnicodeDecodeError:
                return None
    return None


@dataclass(frozen=True)
class Narrowing:
    """What a message's headers add to the topic's identity (headers can only narrow: a producer that sets them
    restricts itself; Kafka ACLs on the topic remain what lets anyone write at all)."""

    publisher_id: str | None = None
    publisher_region: str | None = None
    via_http: bool = False

    @classmethod
    def of(cls, record) -> "Narrowing":
        headers = record.headers
        return cls(_header(headers, H_PUBLISHER_ID), _header(headers, H_PUBLISHER_REGION),
                   _header(headers, H_VIA) == "http")

    def source(self, config: KafkaConfig, topic: str, partition: int, allow_recorded_at: bool) -> Source:
        """The ingest source of a run: the topic fixes the kind, the headers narrow, HTTP never imports."""
        return Source(
            name=tracking_name(topic, partition),
            publisher=PublisherIdentity(kind=AgencyKind(config.kind_of(topic)), id=self.publisher_id,
                                        region=self.publisher_region),
            allow_recorded_at=allow_recorded_at and not self.via_http,
        )


@dataclass(slots=True)
class CheckedRun:
    """Consecutive messages of one partition with the same header identity: one transaction in the main process.
    `values` and `keys` are the messages as they came (dead letters and rejected copies keep them); `checked` is
    None for a run left to the main process to check (`check_run`, the same check)."""

    topic: str
    partition: int
    source: Source
    offsets: list[int]
    values: list[bytes]
    keys: list[bytes | None]
    checked: list[Checked] | None


def check_run(values: Sequence[bytes], keys: Sequence[bytes | None], source: Source,
              latest: dt.datetime) -> list[Checked]:
    """Each message checked (`check_items`: parse, validate, authorise, times) and its key with it."""
    checked = check_items(values, source, latest)
    for index, (key, value) in enumerate(zip(keys, values)):
        problem = checked_key_problem(key, value, checked[index])
        if problem is not None:
            checked[index] = Rejected(RejectionCode.INVALID_ENVELOPE, problem)
    return checked


def partition_runs(config: KafkaConfig, topic: str, partition: int, records: Sequence[Any],
                   allow_recorded_at: bool) -> list[CheckedRun]:
    """One partition's polled records as runs, in offset order, not checked yet (a run ends where the header
    identity changes: eventsourcing allows one Tracking per transaction)."""
    runs: list[CheckedRun] = []
    start = 0
    while start < len(records):
        narrowing = Narrowing.of(records[start])
        end = start + 1
        while end < len(records) and Narrowing.of(records[end]) == narrowing:
            end += 1
        chunk = records[start:end]
        source = narrowing.source(config, topic, partition, allow_recorded_at)
        values = [r.value if r.value is not None else b"" for r in chunk]
        keys = [r.key for r in chunk]
        runs.append(CheckedRun(topic, partition, source, [r.offset for r in chunk], values, keys, None))
        start = end
    return runs


# -- the fetch process ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """The fetch process (`python -c _CHILD COMMANDS_FD BATCHES_FD`, started by `FetchProcess`).

    A fresh interpreter rather than multiprocessing's spawn or forkserver: those import the parent's `__main__`
    again (a script without a main guard would run twice), and a fork is unsafe once kafka-python's threads run."""
    from multiprocessing.connection import Connection

    argv = sys.argv[1:] if argv is None else argv
    commands = Connection(int(argv[0]), writable=False)
    batches = Connection(int(argv[1]), readable=False)
    # A Ctrl-C, or a SIGTERM to the whole process group, is for the main process: it finishes the run in hand and
    # then stops this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    quiet_client_diagnostics()
    loop = None
    try:
        start = commands.recv()
        if start[0] != "start":
            raise ValueError(f"expected the start command, got {start[0]!r}")
        _, config, name, allow_recorded_at, main_share = start
        loop = _FetchLoop(config, name, allow_recorded_at, commands, batches, main_share)
        loop.run()
        return 0
    except _ParentGone:
        return 0
    except BaseException:
        text = traceback.format_exc()
        try:
            batches.send(("error", text))
        except OSError:  # the main process is gone
            pass
        log.error("the fetch process failed:\n%s", text)
        return 1
    finally:
        if loop is not None:
            loop.close()


# Not `-m services.entrypoints.workers.kafka_fetch`: this module would then be `__main__`, and what it pickles
# (CheckedRun) could not be unpickled by the main process.
_CHILD = "import sys; from services.entrypoints.workers.kafka_fetch import main; sys.exit(main())"


class _ParentGone(Exception):
    pass


class _FetchLoop:
    def __init__(self, config: KafkaConfig, name: str, allow_recorded_at: bool, commands, batches,
                 main_share: float | None):
        self.config = config
        self.name = name
        self.allow_recorded_at = allow_recorded_at
        self.commands = commands
        self.batches = batches
        self.generation = 0
        self.latest: dt.datetime | None = None
        self.assigned = False
        # None: balance by feedback (MAX_MAIN_SHARE); a number: that share, fixed (tests of both checking paths).
        self.adaptive = main_share is None
        self.main_share = 0.0 if main_share is None else main_share
        self.consumer = config.consumer(group=None, role=f"{name}-fetch")

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False)
        except Exception:
            log.exception("%s: closing the fetch consumer failed", self.name)

    def run(self) -> None:
        while self._apply_commands():
            if not self.assigned or self.latest is None:
                continue
            polled = self.consumer.poll(timeout_ms=int(WAIT_S * 1000), max_records=self.config.max_poll_records)
            if not polled:
                continue
            fetched_at = time.perf_counter()  # CLOCK_MONOTONIC: comparable with the main process's (the bench)
            runs = [run for tp, records in polled.items()
                    for run in partition_runs(self.config, tp.topic, tp.partition, records, self.allow_recorded_at)]
            for run in self._ours(runs):
                run.checked = check_run(run.values, run.keys, run.source, self.latest)
            sending = time.monotonic()
            try:
                # Blocks while the main process is behind (the pipe's buffer is the queue): backpressure.
                self.batches.send(("runs", self.generation, fetched_at, runs))
            except OSError:  # EPIPE: the main process is gone
                raise _ParentGone from None
            if self.adaptive and time.monotonic() - sending > SLOW_SEND_S:
                self.main_share = max(0.0, self.main_share - SHARE_STEP)

    def _ours(self, runs: list[CheckedRun]) -> list[CheckedRun]:
        """The runs this process checks: all but the last ones, as many as fit in the main process's share."""
        budget = self.main_share * sum(len(run.offsets) for run in runs)
        mine = len(runs)
        while mine and len(runs[mine - 1].offsets) <= budget:
            budget -= len(runs[mine - 1].offsets)
            mine -= 1
        return runs[:mine]

    def _apply_commands(self) -> bool:
        """Apply the commands that arrived (waiting a little for one when there is nothing to fetch); False: stop.
        Raises _ParentGone at the end of the command pipe: the main process exited or was killed."""
        wait = WAIT_S if not self.assigned or self.latest is None else 0
        while self.commands.poll(wait):
            wait = 0
            try:
                command = self.commands.recv()
            except (EOFError, OSError):
                raise _ParentGone from None
            if command[0] == "stop":
                return False
            if command[0] == "latest":
                self.latest = command[1]
            elif command[0] == "hungry":
                if self.adaptive:
                    self.main_share = min(MAX_MAIN_SHARE, self.main_share + SHARE_STEP)
            elif command[0] == "assign":
                _, self.generation, offsets, self.latest = command
                self._assign(offsets)
            else:
                raise ValueError(f"unknown command {command[0]!r}")
        return True

    def _assign(self, offsets: dict[tuple[str, int], int | None]) -> None:
        from kafka import TopicPartition

        partitions = {TopicPartition(topic, partition): offset for (topic, partition), offset in offsets.items()}
        self.consumer.assign(list(partitions))  # an empty list unsubscribes
        for tp, offset in partitions.items():
            if offset is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
        self.assigned = bool(partitions)


class FetchProcessFailed(RuntimeError):
    pass


class FetchProcess:
    """The main process's handle on the fetch process: start it, tell it what to read, take its checked runs, stop
    it. Two pipes: commands one way, pickled polls of checked runs the other (multiprocessing's Connection)."""

    def __init__(self, config: KafkaConfig, name: str, allow_recorded_at: bool, main_share: float | None = None):
        self.config = config
        self.name = name
        self.allow_recorded_at = allow_recorded_at
        self.main_share = main_share
        self.process: subprocess.Popen | None = None
        self.commands = None
        self.batches = None

    def start(self) -> "FetchProcess":
        from multiprocessing.connection import Connection

        commands_read, commands_write = os.pipe()
        batches_read, batches_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(commands_read), str(batches_write)],
                pass_fds=(commands_read, batches_write), stdin=subprocess.DEVNULL, env=_child_environment())
        finally:
            os.close(commands_read)
            os.close(batches_write)
        self.commands = Connection(commands_write, readable=False)
        self.batches = Connection(batches_read, writable=False)
        self.commands.send(("start", self.config, self.name, self.allow_recorded_at, self.main_share))
        return self

    def assign(self, generation: int, offsets: dict[tuple[str, int], int | None], latest: dt.datetime) -> None:
        self._command(("assign", generation, offsets, latest))

    def renew_latest(self, latest: dt.datetime) -> None:
        self._command(("latest", latest))

    def hungry(self) -> None:
        """The main process waited for a poll: leave it a larger share of the checking."""
        self._command(("hungry",))

    def _command(self, command: tuple) -> None:
        try:
            self.commands.send(command)
        except OSError:
            raise FetchProcessFailed(f"the fetch process is gone (exit code {self.process.poll()})") from None

    def receive(self, timeout: float = WAIT_S) -> tuple[int, float, list[CheckedRun]] | None:
        """The next poll's checked runs (generation, fetched_at, runs), or None after `timeout`. Raises if the fetch
        process failed or is gone: the worker must not wait for batches that will never come."""
        if not self.batches.poll(timeout):
            if self.process.poll() is not None:
                raise FetchProcessFailed(f"the fetch process exited unexpectedly (exit code {self.process.returncode})")
            return None
        try:
            message = self.batches.recv()
        except (EOFError, OSError):
            raise FetchProcessFailed(
                f"the fetch process exited unexpectedly (exit code {self.process.wait(STOP_GRACE_S)})") from None
        if message[0] == "error":
            raise FetchProcessFailed(f"the fetch process failed:\n{message[1]}")
        _, generation, fetched_at, runs = message
        return generation, fetched_at, runs

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Ask the fetch process to stop and wait for it (reading what it still sends, so that it is never stuck
        writing to a full pipe); kill it after `grace` seconds."""
        if self.process is None:
            return
        try:
            self.commands.send(("stop",))
        except OSError:
            pass
        deadline = time.monotonic() + grace
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                if self.batches.poll(0.05):
                    self.batches.recv()
            except (EOFError, OSError):
                break
        try:
            self.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s: the fetch process did not stop within %.0f s; killing it", self.name, grace)
            self.process.kill()
            self.process.wait()
        self.commands.close()
        self.batches.close()
        self.process = None


def _child_environment() -> dict[str, str]:
    """The main process's environment, with this project first on the path: the fetch process imports `services`
    from where this file is, whatever the working directory (which stays the same: relative certificate paths)."""
    root = str(Path(__file__).resolve().parents[3])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}

