"""`handoff audit verify|anchor|seal|accept|export`: the tamper-evident record (registered into the CLI's `audit` command).

See docs/audit.md. Exit codes: 0 intact / done, 1 nobody on record (export), 2 bad arguments or unreadable file,
3 the store cannot be opened, 4 the record is broken (verify) or inconsistent (anchor).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from services.entrypoints.cli.output import (EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, person_key_argument, fail, print_json,
                                             table)

EXIT_BROKEN = 4


def register(audit_commands: argparse._SubParsersAction, formats: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the hash-chain commands to `handoff audit`."""
    verify = audit_commands.add_parser(
        "verify", help="check the hash chains against the stored events (does not extend them); exit 4 when broken")
    verify.add_argument("--chain", choices=("events", "dead_letters", "all"), default="all")
    verify.add_argument("--anchor", metavar="FILE", help="anchors held by a third party (printed by `audit anchor`): "
                                                         "the chain must still have those hashes at those positions")
    formats(verify)
    verify.set_defaults(handler=cmd_verify)

    anchor = audit_commands.add_parser(
        "anchor", help="print (and record) the head of each chain, for a third party to hold")
    anchor.add_argument("--out", metavar="FILE", help="also write the anchors to this file")
    formats(anchor)
    anchor.set_defaults(handler=cmd_anchor)

    seal = audit_commands.add_parser(
        "seal", help="chain stored rows not yet in the chain (operator action after a writer crashed)")
    formats(seal)
    seal.set_defaults(handler=cmd_seal)

    accept = audit_commands.add_parser(
        "accept", help="record that a row the chain does not cover is genuine (an auditor's decision, itself chained)")
    accept.add_argument("position", type=int, help="the row's position, as `audit verify` reports it")
    accept.add_argument("--reason", required=True, help="why it is genuine (e.g. restored from the backup of …)")
    accept.add_argument("--by", required=True, help="the auditor who decides (name)")
    formats(accept)
    accept.set_defaults(handler=cmd_accept)

    export = audit_commands.add_parser(
        "export", help="a person's whole stored history with the chain proofs (check offline: tools/verify_export.py)")
    export.add_argument("id_number")
    export.add_argument("--out", metavar="FILE", help="write the export here (default standard output)")
    export.set_defaults(handler=cmd_export)


def _auditor(services):
    from services.audit import Auditor

    return Auditor(services.chain)


def _progress_bar():
    """A progress bar of positions on stderr when a person is watching (as `_progress()` in cli.py)."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), transient=True, console=Console(stderr=True))


def cmd_verify(args: argparse.Namespace, services) -> int:
    from services.audit import load_anchors

    anchors: list[dict[str, Any]] = []
    if args.anchor:
        try:
            with open(args.anchor, encoding="utf-8") as handle:
                anchors = [{**a, "source": f"anchor file {os.path.basename(args.anchor)}"}
                           for a in load_anchors(json.load(handle))]
        except OSError as error:
            return fail(f"cannot read {args.anchor}: {error.strerror}", EXIT_USAGE)
        except ValueError as error:
            return fail(f"{args.anchor}: {error}", EXIT_USAGE)
    chains = ("events", "dead_letters") if args.chain == "all" else (args.chain,)
    progress = _progress_bar()
    task = progress.add_task("verifying the chain", total=None) if progress else None
    if progress:
        progress.start()
    try:
        result = _auditor(services).verify(
            chains, anchors,
            progress=(lambda done, total: progress.update(task, completed=done, total=total)) if progress else None)
    finally:
        if progress:
            progress.stop()
    if args.format == "json":
        print_json(result)
    else:
        table("audit chains 审计哈希链", ["chain", "head position", "head hash", "links", "state"],
               [[name, c["head_position"], c["head_hash"], c["links"], "ok" if c["ok"] else "BROKEN 已被篡改"]
                for name, c in result["chains"].items()])
        for finding in result.get("findings", []):
            print(f"{finding['chain']} position {finding['position']}: {finding['kind']}: {finding['message']}")
        for note in result.get("notes", []):
            print(f"note: {note}")
        print(f"{'intact' if result['ok'] else 'BROKEN'}: {result['checked']['rows']} rows, "
              f"{result['checked']['links']} links, {result['checked']['anchors']} anchors checked in "
              f"{result['seconds']} s")
    return EXIT_OK if result["ok"] else EXIT_BROKEN


def cmd_anchor(args: argparse.Namespace, services) -> int:

    try:
        records = _auditor(services).anchor()
    except ValueError as error:
        return fail(str(error), EXIT_BROKEN)
    document = {"anchors": records}
    if args.out:
        try:
            os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
            with open(args.out, "w", encoding="utf-8") as handle:
                json.dump(document, handle, ensure_ascii=False, indent=2)
                handle.write("\n")
        except OSError as error:
            return fail(f"cannot write {args.out}: {error.strerror}", EXIT_USAGE)
    if args.format == "json":
        print_json(document)
    else:
        table("anchors 锚点", ["chain", "position", "head hash", "anchored at"],
               [[r["chain"], r["position"], r["head_hash"], r["anchored_at"]] for r in records])
    return EXIT_OK


def cmd_seal(args: argparse.Namespace, services) -> int:

    auditor = _auditor(services)
    sealed = auditor.seal()
    summary = auditor.summary()
    if args.format == "json":
        print_json({"sealed": sealed, "chains": summary})
    else:
        table(f"sealed {sealed} rows", ["chain", "head position", "head hash", "links"],
               [[name, c["head_position"], c["head_hash"], c["links"]] for name, c in summary.items()])
    return EXIT_OK


def cmd_accept(args: argparse.Namespace, services) -> int:

    try:
        decision = _auditor(services).accept(args.position, args.reason, args.by)
    except ValueError as error:
        return fail(str(error), EXIT_USAGE)
    if args.format == "json":
        print_json(decision)
    else:
        print(f"position {decision['position']} accepted 已认可 by {decision['by']}: {decision['reason']}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace, services) -> int:

    args.id_number, problem = person_key_argument(args.id_number)
    if problem:
        return fail(problem, EXIT_USAGE)
    export = _auditor(services).export(args.id_number, encrypted=bool(services.settings.cipher_key))
    if export is None:
        return fail(f"no events on record for {args.id_number}", EXIT_NOT_FOUND)
    unchained = [e["position"] for e in export["events"] if not e["chained"]]
    if unchained:
        print(f"handoff: warning: events at positions {unchained} are not in the chain yet; the export will not "
              "verify (run `handoff audit verify`, and `handoff audit seal` if they are genuine)", file=sys.stderr)
    text = json.dumps(export, ensure_ascii=False, indent=1) + "\n"
    if args.out:
        try:
            os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
            with open(args.out, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as error:
            return fail(f"cannot write {args.out}: {error.strerror}", EXIT_USAGE)
    else:
        sys.stdout.write(text)
    return EXIT_OK
