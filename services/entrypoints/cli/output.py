"""What every `handoff` command shares: exit codes, JSON and table output, refusals on standard error."""

from __future__ import annotations

import json
import sys
from typing import Any

from domain.identity import id_number_problem, id_number_refusal

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_FATAL = 3
EXIT_DIFFERENT = 5  # rebuild --compare found a difference


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def fail(message: str, code: int) -> int:
    print(f"handoff: {message}", file=sys.stderr)
    return code


def check_id_number(id_number: str) -> str | None:
    problem = id_number_problem(id_number)
    return f"{id_number!r}: {id_number_refusal(problem)}" if problem else None


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["" if value is None else str(value) for value in row])
    # Written to a file or a pipe, a table is laid out for a 100-column terminal, the width the tables are designed
    # for; on a terminal, for the terminal's own width.
    Console(width=None if sys.stdout.isatty() else 100).print(table)
