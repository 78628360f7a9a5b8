"""The `handoff` command line: operators publish files, clerks and auditors read a person's history, and serve."""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import io
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from domain.calendar import ProvisionalCalendarWarning
from domain.rules import RuleSetError

from services.entrypoints import timeparse
from services.bootstrap import Services, bootstrap
from services.history import person_history
from services.ingest import BULK_BATCH, Source
from services.entrypoints.http.labels import AGENCY_LABELS, CATEGORY_LABELS, STATUS_LABELS
from services.entrypoints.http.pictures import fmt_due, fmt_time
from services.entrypoints.cli.output import (EXIT_DIFFERENT, EXIT_FATAL, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE,
                                             person_key_argument, fail, print_json, table)

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
        return fail(f"cannot read {args.file}: {error.strerror}", EXIT_USAGE)
    source = Source(name=f"cli:{os.path.basename(name)}", allow_recorded_at=args.import_legacy)
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    rejections: list[dict[str, Any]] = []
    total_bytes = None if args.file == "-" else os.fstat(stream.fileno()).st_size
    progress = _progress()
    task = progress.add_task("publishing", total=total_bytes) if progress else None
    try:
        if progress:
            progress.start()
        line_numbers: collections.deque[list[int]] = collections.deque()  # of the batches read, not yet stored

        def sourced_batches():
            for batch in _batches(stream, args.batch_size):
                line_numbers.append([number for number, _ in batch])
                yield [line for _, line in batch], [f"line {number}" for number, _ in batch]

        for result in services.ingestor.ingest_batches(sourced_batches(), source):
            numbers = line_numbers.popleft()
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
        return fail(f"error reading {args.file}: {error}", EXIT_FATAL)
    finally:
        if progress:
            progress.stop()
        if stream is not sys.stdin.buffer:
            stream.close()
    print_json({**totals, "rejections": rejections})
    return EXIT_OK


def cmd_history(args: argparse.Namespace, services: Services) -> int:
    args.id_number, problem = person_key_argument(args.id_number)
    if problem:
        return fail(problem, EXIT_USAGE)
    linked = (services.queries.status(args.id_number) or {}).get("linked_keys", [])
    events = person_history(services.store, args.id_number, linked)
    if events is None:
        if args.format == "json":
            print_json([])
        return fail(f"no events on record for {args.id_number}", EXIT_NOT_FOUND)
    if args.format == "json":
        print_json(events)
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


def parse_moment(text: str) -> dt.datetime:
    try:
        return timeparse.parse_moment(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_duration(text: str) -> dt.timedelta:
    try:
        return timeparse.parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


GAP_STATES_ZH = {"open": "未履行", "late": "逾期履行", "upcoming": "即将到期"}
# The field's words, as the dashboard shows them (services/entrypoints/http/labels.py).
STATUS_NAMES, CATEGORY_NAMES, AGENCY_NAMES = STATUS_LABELS["zh"], CATEGORY_LABELS["zh"], AGENCY_LABELS["zh"]


def _print_obligations(records: list[dict[str, Any]], title: str) -> None:
    """Gaps or obligations in a table that fits 100 columns: the rule by its code, the person's name over the ID
    number, times to the minute (a due time at midnight as 24:00 of the day before, as the law counts)."""
    table(title, ["规则", "状态", "社区矫正对象", "地区", "责任机关", "期限 due", "履行 met"],
          [[r["rule"].split("_")[0], "数据不一致" if r["rule"].startswith("A") else GAP_STATES_ZH.get(r["state"], r["state"]),
            f"{r['name']}\n{r['id_number']}", r["region"],
            f"{AGENCY_NAMES.get(r['obligated']['kind'], r['obligated']['kind'])}\n{r['obligated']['id'] or ''}".strip(),
            fmt_due(r["due_at"]) if r["due_at"] else "", fmt_time(r["fulfilled_at"]) if r["fulfilled_at"] else ""] for r in records])


def cmd_gaps(args: argparse.Namespace, services: Services) -> int:
    caught_up(services)
    records = services.queries.gaps(as_of=args.as_of, known_at=args.known_at, region=args.region, rule=args.rule,
                                    state=args.state, limit=args.limit, offset=args.offset)
    if args.format == "json":
        print_json(records)
    else:
        _print_obligations(records, f"gaps 衔接缺口 ({len(records)})")
    return EXIT_OK


def cmd_upcoming(args: argparse.Namespace, services: Services) -> int:
    caught_up(services)
    records = services.queries.upcoming(args.within, region=args.region)
    if args.format == "json":
        print_json(records)
    else:
        _print_obligations(records, f"due within {args.within} 即将到期 ({len(records)})")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, services: Services) -> int:
    args.id_number, problem = person_key_argument(args.id_number)
    if problem:
        return fail(problem, EXIT_USAGE)
    record = services.queries.status(args.id_number, as_of=args.as_of, known_at=args.known_at)
    if record is None:
        return fail(f"no events on record for {args.id_number} (as known at that time)", EXIT_NOT_FOUND)
    if args.format == "json":
        print_json(record)
        return EXIT_OK
    episode = record["episode"] or {}
    decided = episode.get("decided_by") or {}
    responsible = record["responsible"] or {}
    table(f"{record['name']} {record['id_number']}", ["", ""], [
        ["status 状态", f"{STATUS_NAMES.get(record['status'], record['status'])} {record['status']}"],
        ["responsible 责任机关", f"{AGENCY_NAMES.get(responsible.get('kind'), '-')} {responsible.get('region') or ''}"],
        ["category 类别", f"{CATEGORY_NAMES.get(episode.get('category'), '')} {episode.get('category') or ''}"],
        ["term 矫正期限", f"{episode.get('term_start')} – {episode.get('term_end')}" if episode else None],
        ["execution region 执行地", episode.get("current_region")],
        ["decided by 决定机关", f"{AGENCY_NAMES.get(decided.get('kind'), '')} {decided.get('id') or ''}"],
        ["case number 案号", episode.get("document_no")],
        ["lost supervision days 脱管天数", record["lost_supervision_days"]],
    ])
    if record["open_obligations"]:
        table("open obligations 待履行义务", ["规则", "规则名称", "状态", "期限 due", "责任机关"],
              [[o["rule"].split("_")[0], services.rules[o["rule"]].title, GAP_STATES_ZH.get(o["state"], o["state"]),
                fmt_due(o["due_at"]), f"{AGENCY_NAMES.get(o['obligated']['kind'], '')} {o['obligated']['region'] or ''}"]
               for o in record["open_obligations"]])
    if record["gaps"]:
        _print_obligations(record["gaps"], "gaps 衔接缺口")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, services: Services) -> int:
    caught_up(services)
    records = services.queries.stats(region=args.region, as_of=args.as_of, known_at=args.known_at)
    if args.format == "json":
        print_json(records)
        return EXIT_OK
    table("statistics 统计", ["region 地区", "in register 在册", "received 接收", "discharged 解矫", "terminated 终止",
                              "lost 脱管漏管人数", "rate 脱管漏管率 ‰", "lost days 脱管人日", "open gaps 未履行"],
           [[r["region"], r["in_register"], r["received"], r["discharged"], r["terminated"],
             r["lost_supervision_persons"], r["lost_supervision_rate_permille"], r["lost_supervision_person_days"],
             ", ".join(f"{rule.split('_')[0]}:{n}" for rule, n in r["open_gaps"].items())] for r in records])
    return EXIT_OK


def _with_progress(description: str, total: int, work: Callable[[Callable[[int, int], None] | None], Any]) -> Any:
    """Run `work(progress)` with a progress bar of log positions on stderr when a person is watching."""
    progress = _progress()
    if progress is None:
        return work(None)
    task = progress.add_task(description, total=total)
    progress.start()
    try:
        return work(lambda done, total_: progress.update(task, completed=done, total=total_))
    finally:
        progress.stop()


def caught_up(services: Services) -> None:
    """The CLI answers from a read model brought up to the log's head first (the API and dashboard never wait:
    their projector runs beside them)."""
    if services.projection.lag():
        _with_progress("updating read models 更新读模型", services.projection.head(),
                       lambda progress: services.projection.catch_up(progress=progress))


def cmd_rebuild(args: argparse.Namespace, services: Services) -> int:
    if args.compare:
        return _rebuild_compare(services)
    persons = _with_progress("rebuilding read models 重建读模型", services.projection.head(),
                             lambda progress: services.projection.rebuild(progress=progress))
    print_json({"rebuilt": "supervision", "persons_folded": persons, "rule_set": services.rules.version,
                 "position": services.projection.freshness()["position"]})
    return EXIT_OK


def cmd_audit_replay(args: argparse.Namespace, services: Services) -> int:
    from domain.rules import load_rule_set

    rules = args.rules
    if rules and os.path.exists(rules):
        try:
            rules = load_rule_set(rules)
        except RuleSetError as error:
            return fail(str(error), EXIT_USAGE)
    caught_up(services)  # so that the read model can answer (else every person is refolded)
    try:
        result = services.replay.replay(args.known_at, as_of=args.as_of, rules=rules, region=args.region,
                                        rule=args.rule, state=args.state, id_number=args.person)
    except ValueError as error:
        return fail(str(error), EXIT_USAGE)
    if args.format == "json":
        print_json(result)
        return EXIT_OK
    source = ("read model" + (f", {result['refolded_persons']} persons with imported records refolded"
                              if result["refolded_persons"] else "")
              if result["answered_from"] == "read_model" else "every person refolded")
    print(f"as shown at {result['known_at']} (as of {result['as_of']}), rule set {result['rule_set']} ({source})")
    _print_obligations(result["gaps"], f"gaps 衔接缺口 ({len(result['gaps'])})")
    return EXIT_OK


def cmd_audit_quarantined(args: argparse.Namespace, services: Services) -> int:
    """The persons whose events the fold cannot process: out of every figure until an operator mends the cause."""
    caught_up(services)
    rows = services.queries.quarantined()
    if args.format == "json":
        print_json({"items": [{"id_number": r.id_number, "name": r.name, "problem": r.problem} for r in rows]})
    elif not rows:
        print("no person is quarantined 无隔离对象")
    else:
        table(f"quarantined 已隔离 ({len(rows)})", ["ID number 身份证号", "name 姓名", "problem 问题"],
               [[r.id_number, r.name, r.problem] for r in rows])
    return EXIT_OK


def _rebuild_compare(services: Services) -> int:
    """Rebuild into a fresh store and diff it with the live read models; any difference fails the command."""
    import tempfile

    from adapters.readmodel import ReadModel
    from projections.supervision import SupervisionProjection

    services.projection.catch_up()  # the live models as the service serves them
    with tempfile.TemporaryDirectory(prefix="handoff-compare-") as workdir:
        fresh = ReadModel(f"sqlite:///{workdir}/fresh.sqlite3", services.read_model.sealer)
        try:
            SupervisionProjection(services.store, fresh, services.rules, services.projection.calendar).rebuild()
            live, rebuilt = services.read_model.dump(), fresh.dump()
        finally:
            fresh.close()
    differences = []
    for name in live:
        live_rows = {json.dumps(r, sort_keys=True, ensure_ascii=False) for r in live[name]}
        fresh_rows = {json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rebuilt[name]}
        differences += [{"table": name, "only_in": "live", "row": json.loads(r)} for r in sorted(live_rows - fresh_rows)]
        differences += [{"table": name, "only_in": "rebuilt", "row": json.loads(r)} for r in sorted(fresh_rows - live_rows)]
    report = {"identical": not differences, "rows": {name: len(rows) for name, rows in live.items()},
              "differences": len(differences), "first_differences": differences[:20]}
    print_json(report)
    return EXIT_OK if not differences else EXIT_DIFFERENT


def cmd_rules(args: argparse.Namespace, services: Services) -> int:
    from domain import jurisdiction

    calendar = services.rules.calendar.coverage()
    if args.format == "json":
        print_json({"version": services.rules.version, "rules": services.rules.describe(), "calendar": calendar,
                     "jurisdiction": jurisdiction.describe()})
        return EXIT_OK
    table(f"rule set {services.rules.version}", ["rule", "title 名称", "deadline 期限", "obligated 责任机关", "basis 依据"],
           [[r["rule"], r["title"], f"{r['deadline']['amount']} {r['deadline']['unit']}" if r["deadline"] else "-",
             r["obligated"], f"{r['basis']} ({r['confidence']})"] for r in services.rules.describe()])
    first, last = calendar["package_years"]
    rows = [[str(n["year"]), "notice 通知 (rules file)", n["source"]] for n in calendar["notices"]]
    rows.append([f"{first}–{last}", f"{calendar['package']}", "published notices 已发布的放假安排"])
    rows.append([f"{calendar['provisional_from']}–", "provisional 暂定",
                 "statutory holidays and 补假 only 按法定节假日推算，调休安排未发布"])
    table("holiday calendar 节假日安排", ["years 年份", "from 来源", "note 说明"], rows)
    acts: dict[str, tuple[list[str], dict[str, None]]] = {}
    for row in jurisdiction.describe():
        types, bases = acts.setdefault(row["title"], ([], {}))
        types.append(row["event_type"])
        bases.update(dict.fromkeys(row["basis"].removeprefix("Law ").split(", ")))
    table("jurisdiction 管辖 (A10_outside_jurisdiction otherwise)", ["who may act 有权机关", "acts 行为", "basis 依据"],
           [[title, ", ".join(types), "Law " + ", ".join(sorted(bases, key=int))] for title, (types, bases) in acts.items()])
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace, services: Services) -> int:
    from tools.simulate import SimulationConfig, SimulationError, run, validate

    try:
        config = validate(SimulationConfig(
            persons=args.persons, years=args.years, counties=tuple(args.counties.split(",")), seed=args.seed,
            failure_rate=args.failure_rate, rates=dict(args.rate or []), until=args.until, late_share=args.late_share,
            withhold=dict(args.withhold or []), identity=dict(args.identity_error or []),
        ))
    except SimulationError as error:
        return fail(str(error), EXIT_USAGE)
    if args.rosters and args.out in (None, "-"):
        return fail("--rosters needs --out FILE (the rosters are built from the events written there)", EXIT_USAGE)
    progress = None
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        progress = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), transient=True, console=Console(stderr=True))
        task = progress.add_task("simulating persons", total=args.persons)
    out, truth = sys.stdout, None
    for target in (args.out, args.truth):
        if target not in (None, "-"):
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    try:
        if args.out not in (None, "-"):
            out = open(args.out, "w", encoding="utf-8")
        if args.truth:
            truth = open(args.truth, "w", encoding="utf-8")
        elif args.rosters:
            truth = io.StringIO()
    except OSError as error:
        if out is not sys.stdout:
            out.close()
        return fail(f"cannot write {error.filename}: {error.strerror}", EXIT_USAGE)
    try:
        if progress:
            progress.start()
        summary = run(config, out, truth,
                      progress=(lambda done: progress.update(task, completed=done)) if progress else None)
    except SimulationError as error:
        return fail(str(error), EXIT_USAGE)
    finally:
        if progress:
            progress.stop()
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
        if truth is not None and args.truth:
            truth.close()
    if args.rosters:
        from domain.rules import default_rule_set
        from tools.rosters import everything, rosters, write_rosters

        with open(args.out, encoding="utf-8") as handle:
            published = [json.loads(line) for line in handle if line.strip()]
        if args.truth:
            with open(args.truth, encoding="utf-8") as handle:
                withheld = json.load(handle)
        else:
            withheld = json.loads(truth.getvalue())  # type: ignore[union-attr]
        until = config.resolved_until()
        written = write_rosters(args.rosters, rosters(everything(published, withheld), until, default_rule_set()))
        summary["rosters"] = {"directory": args.rosters, "files": len(written)}
    print(json.dumps(summary, ensure_ascii=False), file=sys.stderr)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace, services: None) -> int:
    from tools import bench

    persons = args.persons or (3_000 if args.quick else 100_000)
    if args.scaling:
        results = bench.scaling(persons, args)
        if args.format == "json":
            print_json(results)
        else:
            base, large = results["runs"]
            table(f"scaling: {base['data']['persons']:,} vs {large['data']['persons']:,} persons",
                   ["measure", f"{base['data']['persons']:,} persons", f"{large['data']['persons']:,} persons", "ratio"],
                   [[name, a, b, ratio] for name, a, b, ratio in results["rows"]])
        return EXIT_OK

    def say(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    results = bench.run(
        persons=persons, seed=args.seed, database_url=args.database_url,
        naive_events=bench.NAIVE_EVENTS, query_repeat=200 if args.quick else 500,
        generate=bench.simulated, kafka=args.kafka, say=say, projector_shares=args.projector_shares,
        live=not args.no_live,
    )
    if args.format == "json":
        print_json(results)
    else:
        table(f"handoff bench — {results['data']['persons']:,} persons, {results['data']['events']:,} events, "
               f"{results['store']}", ["measure", "result", "note"], bench.table_rows(results))
    return EXIT_OK


def cmd_principal_add(args: argparse.Namespace, services: Services) -> int:
    from services.principals import PrincipalError

    try:
        principal, token = services.principals.add(args.role, args.name, kind=args.kind, agency_id=args.agency_id,
                                                   supervisor=args.supervisor,
                                                   region=args.region)
    except PrincipalError as error:
        return fail(str(error), EXIT_USAGE)
    print_json({"token": token, **principal.summary()})
    return EXIT_OK


def cmd_principal_list(args: argparse.Namespace, services: Services) -> int:
    items = [p.summary() for p in services.principals.all()]
    if args.format == "json":
        print_json(items)
    else:
        table("principals", ["id", "role", "name", "agency", "region", "created", "revoked"],
               [[p["id"], p["role"], p["name"], f"{p['kind'] or ''} {p['agency_id'] or ''}".strip(), p["region"],
                 p["created_at"][:19], (p["revoked_at"] or "")[:19]] for p in items])
    return EXIT_OK


def cmd_principal_revoke(args: argparse.Namespace, services: Services) -> int:
    from services.principals import PrincipalError

    try:
        print_json(services.principals.revoke(args.principal_id, args.reason).summary())
    except PrincipalError as error:
        return fail(str(error), EXIT_NOT_FOUND)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace, services: None) -> int:
    from services.entrypoints.http.api import event_schemas

    schemas = event_schemas()
    if args.event_type:
        if args.event_type not in schemas["event_types"]:
            return fail(f"unknown event type {args.event_type!r}", EXIT_USAGE)
        print_json(schemas["event_types"][args.event_type])
    else:
        print_json(schemas)
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace, services: None) -> int:
    from eventsourcing.cryptography import AESCipher

    print(AESCipher.create_key(32))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, services: Services) -> int:
    import uvicorn

    from services.entrypoints.http.api import create_app

    # Our own access log (services.entrypoints.http.api.AccessLogMiddleware) masks ID numbers in paths; uvicorn's would not.
    uvicorn.run(create_app(services), host=args.host, port=args.port, log_level="info", access_log=False)
    return EXIT_OK


def cmd_project(args: argparse.Namespace, services: Services) -> int:
    """The projector worker: catches up (with a progress bar when a person watches), then follows the log. With
    `--share K`, it folds only the persons of share K of HANDOFF_PROJECTOR_SHARES (one process per share)."""
    from projections.supervision import SupervisionProjection
    from services.projector import Projector

    shares, projection = services.settings.projector_shares, services.projection
    if args.share is not None:
        if not 0 <= args.share < shares:
            return fail(f"--share {args.share}: HANDOFF_PROJECTOR_SHARES is {shares}, so a share is 0 to {shares - 1} "
                        f"(共 {shares} 份，编号从 0 到 {shares - 1})", EXIT_USAGE)
        projection = SupervisionProjection(services.store, services.read_model, services.rules,
                                           clock=services.queries.clock, shares=shares, owned=[args.share])
    if projection.lag():
        _with_progress("updating read models 更新读模型", projection.head(),
                       lambda progress: projection.catch_up(progress=progress))
    # The monthly scorecard's count of publications follows the log too: in one process, not in every share.
    followers = [services.scorecards.catch_up] if args.share in (None, 0) else []
    for follower in followers:
        follower()
    if args.once:
        print_json(projection.freshness())
        return EXIT_OK
    projector = Projector(projection, "background", interval=args.interval, followers=followers)
    of_share = f", share {args.share} of {shares}" if args.share is not None else ""
    print(f"handoff project: following the event log (rule set {services.rules.version}{of_share}); Ctrl-C stops",
          file=sys.stderr)
    try:
        projector.run()
    except KeyboardInterrupt:
        pass
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
    publish.add_argument("--batch-size", type=int, default=BULK_BATCH, help=argparse.SUPPRESS)
    publish.set_defaults(handler=cmd_publish)

    history = commands.add_parser("history", help="a person's events in occurred_at order")
    history.add_argument("id_number")
    history.add_argument("--format", choices=("json", "table"), default="table")
    history.set_defaults(handler=cmd_history)

    def bitemporal(command: argparse.ArgumentParser) -> None:
        command.add_argument("--as-of", type=parse_moment, help="valid time: the world as it was then (default now)")
        command.add_argument("--known-at", type=parse_moment,
                             help="transaction time: only what the service had recorded by then (default now)")

    def formats(command: argparse.ArgumentParser) -> None:
        command.add_argument("--format", choices=("json", "table"), default="table")

    gaps = commands.add_parser("gaps", help="handoff gaps (open, late or all)")
    bitemporal(gaps)
    gaps.add_argument("--region", help="region code or prefix (5202 = the city)")
    gaps.add_argument("--rule", help="e.g. R04_not_reported")
    gaps.add_argument("--state", choices=("open", "late", "all"), default="open")
    gaps.add_argument("--limit", type=int, help="at most this many (most overdue first)")
    gaps.add_argument("--offset", type=int, default=0, help="skip this many (with --limit: pages)")
    formats(gaps)
    gaps.set_defaults(handler=cmd_gaps)

    status = commands.add_parser("status", help="a person's supervision status and obligations")
    status.add_argument("id_number")
    bitemporal(status)
    formats(status)
    status.set_defaults(handler=cmd_status)

    stats = commands.add_parser("stats", help="per region: in register, received, gaps, 脱管漏管率")
    stats.add_argument("--region")
    bitemporal(stats)
    formats(stats)
    stats.set_defaults(handler=cmd_stats)

    from services.entrypoints.cli.agency import register as register_agency_commands  # handoff agency

    register_agency_commands(commands, formats)
    from services.entrypoints.cli.leads import register as register_lead_commands  # handoff leads

    register_lead_commands(commands, bitemporal, caught_up)
    from services.entrypoints.cli.rosters import register as register_roster_commands  # handoff reconcile

    register_roster_commands(commands, caught_up)
    from services.entrypoints.cli.scorecard import register as register_scorecard_commands  # handoff scorecard

    register_scorecard_commands(commands, caught_up)

    upcoming = commands.add_parser("upcoming", help="obligations falling due soon")
    upcoming.add_argument("--within", type=parse_duration, default=dt.timedelta(days=7))
    upcoming.add_argument("--region")
    formats(upcoming)
    upcoming.set_defaults(handler=cmd_upcoming)

    rebuild = commands.add_parser("rebuild", help="drop the read models and rebuild them from the event log")
    rebuild.add_argument("--compare", action="store_true",
                         help="rebuild into a fresh store and diff it with the live one instead; fails on any difference")
    rebuild.set_defaults(handler=cmd_rebuild)

    audit = commands.add_parser("audit", help="auditors: replay past answers, verify the record, export a history")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    replay = audit_commands.add_parser("replay", help="what the service showed at --known-at (rules of that time)")
    replay.add_argument("--known-at", type=parse_moment, required=True,
                        help="the moment whose answers to recompute (only what the service had stored by then)")
    replay.add_argument("--as-of", type=parse_moment, help="the question asked then was about this moment")
    replay.add_argument("--rules", help="another rule set: a TOML file, or a version from the rule-set history")
    replay.add_argument("--region")
    replay.add_argument("--rule")
    replay.add_argument("--state", choices=("open", "late", "all"), default="open")
    replay.add_argument("--person", help="also the status of this ID number")
    formats(replay)
    replay.set_defaults(handler=cmd_audit_replay)
    quarantined = audit_commands.add_parser(
        "quarantined", help="persons whose events the fold cannot process (kept out of every figure, alerted)")
    formats(quarantined)
    quarantined.set_defaults(handler=cmd_audit_quarantined)
    from services.entrypoints.cli.audit import register as register_chain_commands

    register_chain_commands(audit_commands, formats)
    from services.entrypoints.cli.kafka import register as register_kafka_commands  # handoff ingest, handoff route

    register_kafka_commands(commands, formats)

    rules = commands.add_parser("rules", help="the rule set in force (HANDOFF_RULES_FILE overrides)")
    formats(rules)
    rules.set_defaults(handler=cmd_rules)

    from tools.simulate import parse_rate

    simulate = commands.add_parser(
        "simulate", help="generate realistic county event histories with injected handoff failures (JSON Lines)")
    simulate.add_argument("--persons", type=int, default=1000, help="persons in all (shared by the counties)")
    simulate.add_argument("--years", type=float, default=3.0, help="decisions spread over this many years before --until")
    simulate.add_argument("--counties", default="632801",
                          help="comma-separated county codes (GB/T 2260), e.g. 632801,632802 (格尔木市, 德令哈市)")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--failure-rate", type=float, default=0.05,
                          help="share of persons with one injected failure, spread equally over the kinds")
    simulate.add_argument("--rate", type=parse_rate, action="append", metavar="KIND=RATE",
                          help="per-person rate of one failure kind (or of every kind of a rule: R04=0.02); repeatable")
    simulate.add_argument("--late-share", type=float, default=0.05,
                          help="share of events published days late (never one whose delay a rule measures)")
    simulate.add_argument("--until", type=parse_moment,
                          help="the simulation's end: nothing occurs or is recorded after it (default now)")
    simulate.add_argument("--out", help="JSON Lines of envelopes with recorded_at, ordered by it (default stdout); "
                          "load with: handoff publish --import FILE")
    simulate.add_argument("--truth", help="write the ground truth here: a JSON list of the injected failures")
    simulate.add_argument("--withhold", type=parse_rate, action="append", metavar="WHAT=RATE",
                          help="keep some events off the record, in the agency's own list only: decision, enrolment "
                               "or detention (e.g. decision=0.01); repeatable; the truth lists them under 'withheld'")
    simulate.add_argument("--identity-error", type=parse_rate, action="append", metavar="KIND=RATE",
                          help="inject errors of identity for persons with no other failure: mistyped_id, "
                               "name_variant, name_conflict, duplicate_decision, foreign (e.g. mistyped_id=0.02); "
                               "repeatable; the truth lists each as identity_<kind> with what must be found")
    simulate.add_argument("--rosters", metavar="DIR",
                          help="write each agency's roster as of --until here (CSV: courts' judgments, bureaus' "
                               "registers, detention centres' admissions), withheld events included; needs --out")
    simulate.set_defaults(handler=cmd_simulate, needs_store=False)

    bench = commands.add_parser("bench", help="measure ingest, rebuild and queries beside their baselines")
    bench.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    bench.add_argument("--persons", type=int, help="simulated persons (default 3,000 quick, 100,000 full)")
    bench.add_argument("--seed", type=int, default=1)
    bench.add_argument("--kafka", action="store_true", help="also measure the Kafka ingest worker and raw consume")
    bench.add_argument("--no-live", action="store_true",
                       help="leave out the projector beside ingest (it loads the whole county a second time)")
    bench.add_argument("--projector-shares", type=int, default=1, metavar="N",
                       help="also measure the projector run as N processes (handoff project --share K) beside the "
                            "single one")
    bench.add_argument("--database-url", help="an EMPTY PostgreSQL database to measure on (default: SQLite in a "
                                              "temporary directory)")
    bench.add_argument("--scaling", action="store_true",
                       help="run with the persons and with 10x the persons, each in a fresh process, side by side")
    formats(bench)
    bench.set_defaults(handler=cmd_bench, needs_store=False)

    principal = commands.add_parser("principal", help="agencies and staff who may use the API and the dashboard")
    principal_commands = principal.add_subparsers(dest="principal_command", required=True)
    add = principal_commands.add_parser("add", help="create one and print its token (shown once, stored hashed)")
    add.add_argument("--role", required=True, choices=("publisher", "oversight", "auditor", "admin"))
    add.add_argument("--kind", choices=("court", "procuratorate", "police", "prison", "bureau"),
                     help="publisher: the agency's kind; oversight: the officer's own agency (procuratorate or "
                          "bureau; a procuratorate's officer issues notices as it)")
    add.add_argument("--id", dest="agency_id", help="publisher (oversight: optional): the agency's own code, e.g. "
                                                    "FY-520222")
    add.add_argument("--supervisor", action="store_true",
                     help="oversight: a supervisor, who approves long snoozes and escalations of leads")
    add.add_argument("--region", help="publisher: the agency's region; oversight: the region prefix it oversees")
    add.add_argument("--name", required=True)
    add.set_defaults(handler=cmd_principal_add)
    listing = principal_commands.add_parser("list", help="every principal, active or revoked")
    formats(listing)
    listing.set_defaults(handler=cmd_principal_list)
    revoke = principal_commands.add_parser("revoke", help="revoke a principal's token")
    revoke.add_argument("principal_id")
    revoke.add_argument("--reason", default="revoked")
    revoke.set_defaults(handler=cmd_principal_revoke)

    schema = commands.add_parser("schema", help="the JSON Schema of the envelope and of every event type")
    schema.add_argument("event_type", nargs="?", help="only this event type's payload schema")
    schema.set_defaults(handler=cmd_schema, needs_store=False)

    keygen = commands.add_parser("keygen", help="print a new AES-256 key for HANDOFF_CIPHER_KEY")
    keygen.set_defaults(handler=cmd_keygen, needs_store=False)

    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default=os.environ.get("HANDOFF_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("HANDOFF_PORT", "8000")))
    serve.set_defaults(handler=cmd_serve, projector_mode="background")

    project = commands.add_parser("project", help="keep the read models current: the projector worker (runs until "
                                                  "stopped; `handoff serve` runs one in the background)")
    project.add_argument("--once", action="store_true", help="catch up to the log's head once, then stop")
    project.add_argument("--interval", type=float, default=1.0,
                         help="seconds between looks at the log when idle (default 1)")
    project.add_argument("--share", type=int, metavar="K",
                         help="fold only the persons of share K (0 to HANDOFF_PROJECTOR_SHARES - 1): run one such "
                              "process per share")
    project.set_defaults(handler=cmd_project)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A due time in a year whose 调休 notice is not known is provisional: said once per process, in one line (the
    # logging record), not twice.
    warnings.simplefilter("ignore", ProvisionalCalendarWarning)
    logging.basicConfig(level=logging.WARNING, format="handoff: %(message)s")
    if not getattr(args, "needs_store", True):
        return args.handler(args, None)
    try:
        # The CLI's commands catch up before they read (`caught_up`); a long-running one says how it keeps current.
        services = bootstrap(projector=getattr(args, "projector_mode", "none"))
    except RuleSetError as error:  # HANDOFF_RULES_FILE names a file that is not a valid rule set
        return fail(f"invalid rules file 规则文件有误: {error}", EXIT_USAGE)
    except Exception as error:  # an unreachable or unreadable store is fatal, reported in one line
        return fail(f"cannot open the event store: {error}", EXIT_FATAL)
    try:
        return args.handler(args, services)
    finally:
        services.close()


if __name__ == "__main__":
    sys.exit(main())
