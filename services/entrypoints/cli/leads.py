"""`handoff leads`: the lead register (线索台账) from a terminal: list, show one, act on one as a named officer.

    handoff leads [--state S] [--region R] [--rule R] [--assignee ID] [--q TEXT] [--as-of T] [--format json|table|csv]
    handoff leads show LEAD_ID [--as-of T] [--format json|table]
    handoff leads act LEAD_ID ACTION --by PRINCIPAL_ID [--note …] [--reason …] [--until …] [--assignee …]
                      [--notice-kind …] [--document-no …] [--addressee KIND:ID] [--reply-within-days N]

The CLI is the operator's: it reads every region; an action is taken for the oversight principal given by --by,
with that principal's scope and role, exactly as through the API.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from domain.leads import ACTIONS, LeadRefused
from domain.principals import Role

from services.bootstrap import Services
from services.entrypoints.cli.output import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, fail, print_json, table
from services.entrypoints.exports import EXPORT_COLUMNS, csv_text, export_row
from services.entrypoints.timeparse import parse_moment
from services.leads import LEAD_STATES, SORTS, LeadNotFound, LeadQuery, actor_of


def _rule_title(services: Services):
    def title(rule: str) -> str:
        try:
            return services.rules[rule].title
        except KeyError:
            return rule
    return title


def cmd_leads(args: argparse.Namespace, services: Services) -> int:
    args.caught_up(services)
    query = LeadQuery(region=args.region, state=args.state, rule=args.rule, assignee=args.assignee, q=args.q,
                      as_of=args.as_of, known_at=args.known_at, limit=args.limit, offset=args.offset, order=args.sort)
    result = services.leads.page(query, {"region": args.region})
    if args.format == "json":
        print_json(result)
    elif args.format == "csv":
        sys.stdout.write(csv_text(EXPORT_COLUMNS, [export_row(i, _rule_title(services)) for i in result["items"]]))
    else:
        shown = f"{result['offset'] + 1}–{result['offset'] + len(result['items'])}" if result["items"] else "0"
        # The lead id starts with the rule's code: no rule column, so that the table fits 100 columns.
        table(f"线索台账 leads: {shown} / {result['total']}（* 已自行履行 met late）",
              ["线索编号 lead", "状态", "社区矫正对象", "地区", "期限", "承办人"],
              [[i["lead_id"], i["state_label"] + ("*" if i["self_fulfilled"] else ""), i["name"], i["region"],
                (i["due_at"] or "")[:10], (i["assignee"] or {}).get("name")] for i in result["items"]])
    return EXIT_OK


def cmd_leads_show(args: argparse.Namespace, services: Services) -> int:
    args.caught_up(services)
    try:
        record = services.leads.lead(args.lead_id, lambda region: True, as_of=args.as_of)
    except LeadNotFound:
        return fail(f"no such lead 无此线索: {args.lead_id}", EXIT_NOT_FOUND)
    if args.format == "json":
        print_json(record)
        return EXIT_OK
    _print_lead(record, services)
    return EXIT_OK


def _print_lead(record: dict[str, Any], services: Services) -> None:
    gap = record["gap"]
    table(f"线索 {record['lead_id']}", ["", ""], [
        ["状态 state", record["state_label"] + ("（已自行履行）" if record["self_fulfilled"] else "")],
        ["规则 rule", f"{record['rule']} {_rule_title(services)(record['rule'])}"],
        ["社区矫正对象", f"{record['name']} {record['id_number']}"],
        ["地区 region", record["region"]],
        ["期限 due", gap["due_at"]],
        ["责任机关 obligated", f"{gap['obligated']['kind']} {gap['obligated']['id'] or ''} "
                           f"{gap['obligated']['region'] or ''}"],
        ["承办人 assignee", (record["assignee"] or {}).get("name")],
        ["督办至 escalated to", record["escalated_to"]],
        ["待批准 pending", (record["pending"] or {}).get("action")],
    ])
    if record["history"]:
        table("经过 history", ["时间", "操作", "经办人", "说明"],
              [[h["at"][:16], h["action"] + ("（待批准）" if h["outcome"] == "requested" else ""), h["by_name"],
                "; ".join(f"{k}={v}" for k, v in h["fields"].items())] for h in record["history"]])


def cmd_leads_act(args: argparse.Namespace, services: Services) -> int:
    principal = services.principals.active(args.by)
    if principal is None or principal.role is not Role.OVERSIGHT:
        return fail(f"--by {args.by}: not an active oversight principal 不是在用的监督人员（handoff principal list）",
                    EXIT_USAGE)
    fields: dict[str, Any] = {name: getattr(args, name) for name in
                              ("note", "reason", "until", "assignee", "notice_kind", "document_no", "finding",
                               "reply_within_days") if getattr(args, name) is not None}
    if args.addressee:
        kind, _, agency_id = args.addressee.partition(":")
        fields["addressed_to"] = {"kind": kind, "id": agency_id}
    args.caught_up(services)
    try:
        record = services.leads.act(args.lead_id, args.action, fields, actor_of(principal), principal.sees_region,
                                    services.principals.active)
    except LeadNotFound:
        return fail(f"no such lead in the scope of {principal.name} 无此线索: {args.lead_id}", EXIT_NOT_FOUND)
    except LeadRefused as refused:
        return fail(f"{refused.code}: {refused.message}", EXIT_USAGE)
    services.principals.record_access(principal, f"cli leads act {args.action}", record["id_number"])
    if args.format == "json":
        print_json(record)
    else:
        _print_lead(record, services)
    return EXIT_OK


def register(commands: Any, bitemporal: Any, caught_up: Any) -> None:
    """`caught_up(services)`: brings the read model to the log's head first, as every reading command does."""
    leads = commands.add_parser("leads", help="the lead register 线索台账: list, show and act on leads")
    bitemporal(leads)
    leads.add_argument("--state", choices=LEAD_STATES)
    leads.add_argument("--region", help="region code or prefix")
    leads.add_argument("--rule", help="e.g. R04_not_reported")
    leads.add_argument("--assignee", help="an officer's principal id")
    leads.add_argument("--q", help="a name, an ID number or a case number (案号)")
    leads.add_argument("--sort", choices=SORTS, default="due")
    leads.add_argument("--limit", type=int, default=50)
    leads.add_argument("--offset", type=int, default=0)
    leads.add_argument("--format", choices=("json", "table", "csv"), default="table")
    leads.set_defaults(handler=cmd_leads, caught_up=caught_up)
    steps = leads.add_subparsers(dest="leads_command")
    show = steps.add_parser("show", help="one lead: its gap, state and history")
    show.add_argument("lead_id")
    show.add_argument("--as-of", type=parse_moment)
    show.add_argument("--format", choices=("json", "table"), default="table")
    show.set_defaults(handler=cmd_leads_show, caught_up=caught_up)
    act = steps.add_parser("act", help="take an action on a lead for an oversight principal")
    act.add_argument("lead_id")
    act.add_argument("action", choices=ACTIONS)
    act.add_argument("--by", required=True, help="the acting officer's principal id")
    act.add_argument("--note")
    act.add_argument("--reason", help="dismiss: data_error, fulfilled_unrecorded, legal_exception, duplicate, "
                                      "other; snooze: why")
    act.add_argument("--until", help="snooze: YYYY-MM-DD")
    act.add_argument("--assignee", help="assign: the officer's principal id")
    act.add_argument("--notice-kind", choices=("correction", "suggestion"))
    act.add_argument("--document-no")
    act.add_argument("--addressee", help="issue_notice: KIND:ID, e.g. bureau:SFJ-520222")
    act.add_argument("--reply-within-days", type=int)
    act.add_argument("--finding")
    act.add_argument("--format", choices=("json", "table"), default="table")
    act.set_defaults(handler=cmd_leads_act, caught_up=caught_up)
