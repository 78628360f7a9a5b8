"""`handoff ingest` and `handoff route`: the Kafka workers (registered into the CLI by `register`).

Both need HANDOFF_KAFKA_BOOTSTRAP (and, for TLS/SASL, the other HANDOFF_KAFKA_* variables: docs/kafka.md). Both stop
gracefully on SIGTERM or Ctrl-C: the batch in hand is finished and stored, the consumer leaves its group.
Exit codes: 0 stopped, 2 bad arguments or configuration, 3 the store cannot be opened (as every command).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.kafka import AGENCY_KINDS, KafkaConfig, KafkaConfigError, quiet_client_diagnostics
from services.entrypoints.cli.output import EXIT_OK, EXIT_USAGE, fail



def register(commands: argparse._SubParsersAction, formats: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `ingest` and `route` to the `handoff` command."""
    ingest = commands.add_parser(
        "ingest", help="Kafka ingest worker: consume the inbound topics into the event store (one of a group)")
    ingest.add_argument("--kinds", default=",".join(AGENCY_KINDS),
                        help="comma-separated agency kinds whose inbound topics to consume (default all five)")
    ingest.add_argument("--group", help="consumer group (default HANDOFF_KAFKA_GROUP or handoff-ingest)")
    ingest.add_argument("--import", dest="import_legacy", action="store_true",
                        help="migration: envelopes may carry their original recorded_at (never those sent over HTTP)")
    ingest.add_argument("--until-idle", type=float, metavar="SECONDS",
                        help="exit after this many seconds without a message (a batch job instead of a service)")
    ingest.add_argument("--no-create-topics", dest="create_topics", action="store_false",
                        help="do not create missing topics (they are created by the operator, with ACLs)")
    ingest.set_defaults(handler=cmd_ingest)

    route = commands.add_parser(
        "route", help="follow the event log: notify agencies on handoff.out.<kind>.<region>; keep read models current")
    route.add_argument("--from-head", action="store_true",
                       help="on the first start, route only events appended from now on (not the whole history)")
    route.add_argument("--once", action="store_true", help="route up to the head of the log, then exit")
    route.add_argument("--interval", type=float, default=1.0, help="seconds between polls of the log when idle")
    route.add_argument("--no-deadlines", dest="deadlines", action="store_false",
                       help="no gap alerts by the clock (only gaps revealed by events)")
    route.add_argument("--no-create-topics", dest="create_topics", action="store_false",
                       help="do not create missing outbound topics")
    route.set_defaults(handler=cmd_route)


def _config(group: str | None = None) -> KafkaConfig:
    config = KafkaConfig.from_env()
    if config is None:
        raise KafkaConfigError("set HANDOFF_KAFKA_BOOTSTRAP (host:port[,host:port...]) to use Kafka")
    return config.with_(group=group) if group else config


def _on_signals(stop: Callable[[], Any]) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop())


def _verbose() -> None:
    logging.getLogger("handoff.kafka").setLevel(logging.INFO)
    quiet_client_diagnostics()


def _heartbeat() -> Callable[[], None] | None:
    """HANDOFF_HEARTBEAT_FILE: touched after every poll, for a container health check (docker-compose.yml)."""
    path = os.environ.get("HANDOFF_HEARTBEAT_FILE")
    if not path:
        return None
    heartbeat = Path(path)

    def touch() -> None:
        try:
            heartbeat.touch()
        except OSError:
            pass

    touch()
    return touch


def cmd_ingest(args: argparse.Namespace, services) -> int:
    from services.entrypoints.workers.kafka_ingest import IngestWorker

    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in AGENCY_KINDS]
    if unknown or not kinds:
        return fail(f"--kinds: unknown agency kind(s) {', '.join(unknown) or '(none given)'}; "
                    f"use {', '.join(AGENCY_KINDS)}", EXIT_USAGE)
    try:
        config = _config(args.group)
    except KafkaConfigError as error:
        return fail(str(error), EXIT_USAGE)
    _verbose()
    worker = IngestWorker(services.store, config, kinds=kinds, allow_recorded_at=args.import_legacy,
                          create_topics=args.create_topics)
    _on_signals(worker.stop)
    stats = worker.run(idle_exit=args.until_idle, on_poll=_heartbeat())
    print(json.dumps(stats.as_dict()))
    return EXIT_OK


def cmd_route(args: argparse.Namespace, services) -> int:
    from services.entrypoints.workers.router import Router

    try:
        config = _config()
    except KafkaConfigError as error:
        return fail(str(error), EXIT_USAGE)
    _verbose()
    router = Router(services.store, services.projection, services.read_model, config, clock=services.queries.clock,
                    deadlines=args.deadlines, create_topics=args.create_topics)
    if args.from_head:
        router.start_at_head()
    _on_signals(router.stop)
    if args.once:
        try:
            router.run_once()
        finally:
            router.close()
    else:
        router.run(interval=args.interval, on_poll=_heartbeat())
    print(json.dumps({"position": router.position(), "routed_events": router.routed_events,
                      "notifications": router.sent}))
    return EXIT_OK
