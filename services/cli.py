"""The `handoff` command line: operators publish files, clerks and auditors read a person's history, and serve."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from domain.identity import id_number_problem

from .bootstrap import Services, bootstrap
from .history import person_history
from .ingest import Source

PUBLISH_BATCH_LINES = 500

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_FATAL = 3


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def _fail(message: str, code: int) -> int:
    print(f"handoff: {message}", file=sys.stderr)
    return code


def _batches(stream: BinaryIO, size: int) -> Iterator[list[tuple[int, bytes]]]:
    """Numbered non-blank lines of a JSON Lines stream, in batches."""
    batch: list[tuple[int, bytes]] = []
    for number, line in enumerate(stream, start=1):
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        batch.append((number, line))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _progress():
    """A progress bar on stderr when a person is watching, nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        transient=True, console=Console(stderr=True),
    )


def cmd_publish(args: argparse.Namespace, services: Services) -> int:
    name = "stdin" if args.file == "-" else args.file
    try:
        stream: BinaryIO = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    except OSError as error:
        return _fail(f"cannot read {args.file}: {error.strerror}", EXIT_USAGE)
    source = Source(name=f"cli:{os.path.basename(name)}", allow_recorded_at=args.import_legacy)
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    rejections: list[dict[str, Any]] = []
    total_bytes = None if args.file == "-" else os.fstat(stream.fileno()).st_size
    progress = _progress()
    task = progress.add_task("publishing", total=total_bytes) if progress else None
    try:
        if progress:
            progress.start()
        for batch in _batches(stream, args.batch_size):
            numbers = [number for number, _ in batch]
            result = services.ingestor.ingest(
                [line for _, line in batch], source, positions=[f"line {number}" for number in numbers]
            )
            totals["accepted"] += result.accepted
            totals["duplicates"] += result.duplicates
            totals["rejected"] += result.rejected
            for item in result.items:
                if item.status == "rejected":
                    rejections.append(
                        {"line": numbers[item.index], "event_id": item.event_id, "code": item.code,
                         "reason": item.reason}
                    )
            if progress and task is not None:
                progress.update(task, completed=stream.tell() if args.file != "-" else None)
    except OSError as error:
        return _fail(f"error reading {args.file}: {error}", EXIT_FATAL)
    finally:
        if progress:
            progress.stop()
        if stream is not sys.stdin.buffer:
            stream.close()
    _print_json({**totals, "rejections": rejections})
    return EXIT_OK


def _check_id_number(id_number: str) -> str | None:
    problem = id_number_problem(id_number)
    return f"{id_number!r} is not a valid resident ID number: {problem}" if problem else None


def cmd_history(args: argparse.Namespace, services: Services) -> int:
    problem = _check_id_number(args.id_number)
    if problem:
        return _fail(problem, EXIT_USAGE)
    events = person_history(services.store, args.id_number)
    if events is None:
        if args.format == "json":
            _print_json([])
        return _fail(f"no events on record for {args.id_number}", EXIT_NOT_FOUND)
    if args.format == "json":
        _print_json(events)
    else:
        _print_history_table(events)
    return EXIT_OK


def _print_history_table(events: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{events[0]['person']['name']} {events[0]['person']['id_number']}")
    for column in ("occurred_at 发生", "recorded_at 记录", "event", "publisher 发布机关", "payload"):
        table.add_column(column)
    for event in events:
        publisher = event["publisher"]
        name = event["event_type"] + (" (retracted 已撤回)" if event["retracted_by"] else "")
        table.add_row(
            event["occurred_at"], event["recorded_at"][:19], name,
            f"{publisher['kind']} {publisher['id']} ({publisher['region']})",
            json.dumps(event["payload"], ensure_ascii=False),
        )
    # Piped output gets a wide console so tables are not folded to 80 columns.
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def cmd_serve(args: argparse.Namespace, services: Services) -> int:
    import uvicorn

    from .api import create_app

    uvicorn.run(create_app(services), host=args.host, port=args.port, log_level="info")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="handoff",
        description="Inter-agency handoffs in community corrections (社区矫正衔接). "
        "Store: HANDOFF_DATABASE_URL (default sqlite:///var/handoff.sqlite3).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    publish = commands.add_parser("publish", help="publish a JSON Lines file of event envelopes (operator tool)")
    publish.add_argument("file", help="JSON Lines file, or - for standard input")
    publish.add_argument(
        "--import", dest="import_legacy", action="store_true",
        help="migrating legacy records: an envelope may carry its original recorded_at",
    )
    publish.add_argument("--batch-size", type=int, default=PUBLISH_BATCH_LINES, help=argparse.SUPPRESS)
    publish.set_defaults(handler=cmd_publish)

    history = commands.add_parser("history", help="a person's events in occurred_at order")
    history.add_argument("id_number")
    history.add_argument("--format", choices=("json", "table"), default="table")
    history.set_defaults(handler=cmd_history)

    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default=os.environ.get("HANDOFF_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("HANDOFF_PORT", "8000")))
    serve.set_defaults(handler=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        services = bootstrap()
    except Exception as error:  # an unreachable or unreadable store is fatal, reported in one line
        return _fail(f"cannot open the event store: {error}", EXIT_FATAL)
    try:
        return args.handler(args, services)
    finally:
        services.close()


if __name__ == "__main__":
    sys.exit(main())
