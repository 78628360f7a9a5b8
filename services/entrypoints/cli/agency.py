"""`handoff agency add|list`: the agency directory (机关名录) that gives agency codes their names.

    handoff agency add --id FY-520222-01 --kind court --region 520222 --name 盘州市人民法院 [--replace]
    handoff agency list [--format json|table]

The directory is a file (HANDOFF_AGENCIES_FILE, else agencies.toml in the working directory), not the event store:
these commands never open the store. Exit codes: 0 done, 2 a refused agency or an invalid directory file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from domain.agencies import KIND_LABELS, KINDS, Agency, AgencyDirectoryError
from domain.regions import region_label

from services.agencies import AgencyDirectory, directory_path
from services.entrypoints.cli.output import EXIT_OK, EXIT_USAGE, fail, print_json, table


def register(commands: argparse._SubParsersAction, formats: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `agency add` and `agency list` to the `handoff` command."""
    agency = commands.add_parser(
        "agency", help="the agency directory 机关名录: names for agency codes (file HANDOFF_AGENCIES_FILE, default "
                       "agencies.toml)")
    agency_commands = agency.add_subparsers(dest="agency_command", required=True)

    add = agency_commands.add_parser("add", help="add an agency to the directory (the file is rewritten sorted by "
                                                 "id; its comments are not kept)")
    add.add_argument("--id", required=True, help="the agency's own code, as its events carry it, e.g. FY-520222-01")
    add.add_argument("--kind", required=True, choices=KINDS)
    add.add_argument("--region", required=True, help="the agency's region: 6-digit GB/T 2260 code, e.g. 520222")
    add.add_argument("--name", required=True, help="the agency's name, e.g. 盘州市人民法院")
    add.add_argument("--replace", action="store_true", help="replace the entry of the same id (a correction)")
    add.set_defaults(handler=cmd_agency_add, needs_store=False)

    listing = agency_commands.add_parser("list", help="every agency of the directory, sorted by id")
    formats(listing)
    listing.set_defaults(handler=cmd_agency_list, needs_store=False)


_SHORT_KINDS = {"court": "法院", "procuratorate": "检察院", "police": "公安", "prison": "监狱", "bureau": "社区矫正"}


def _directory() -> AgencyDirectory:
    return AgencyDirectory(directory_path())


def cmd_agency_add(args: argparse.Namespace, services: None) -> int:
    agency = Agency(id=args.id, kind=args.kind, region=args.region, name=args.name)
    try:
        directory = _directory()
        existing = directory.get(agency.id)
        if existing and not args.replace:
            return fail(f"机关未添加：{agency.id} 已在名录中（{existing.name}），更正请加 --replace / agency not added: "
                        f"{agency.id} is already in the directory ({existing.name}); add --replace to correct it",
                        EXIT_USAGE)
        directory.add(agency, replace=args.replace)
    except AgencyDirectoryError as error:
        return fail(f"机关未添加 / agency not added:\n{error}", EXIT_USAGE)
    print(f"已添加 added: {directory.label(agency.id)} {KIND_LABELS[agency.kind]} {region_label(agency.region)} "
          f"→ {directory.path}")
    return EXIT_OK


def cmd_agency_list(args: argparse.Namespace, services: None) -> int:
    try:
        directory = _directory()
    except AgencyDirectoryError as error:
        return fail(f"机关名录文件有误 / invalid agency directory:\n{error}", EXIT_USAGE)
    agencies = directory.list()
    if args.format == "json":
        print_json([{**agency.as_dict(), "region_label": region_label(agency.region)} for agency in agencies])
        return EXIT_OK
    # Four columns, the region's name beside its code, the kind in short: then the longest real names (an id like
    # FY-653000-01, "653000 克孜勒苏柯尔克孜自治州", "…自治州中级人民法院") still fit a 100-column terminal.
    table(f"机关名录 agencies: {len(agencies)}", ["机关代码 id", "类别", "地区 region", "名称 name"],
          [[agency.id, _SHORT_KINDS[agency.kind], region_label(agency.region), agency.name] for agency in agencies])
    print(f"名录文件 file: {directory.path}" + ("" if directory.path.exists() else "（尚不存在 / does not exist yet）"))
    return EXIT_OK
