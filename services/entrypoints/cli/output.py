"""What every `handoff` command shares: exit codes, JSON and table output, refusals on standard error."""

from __future__ import annotations

import json
import sys
from typing import Any

from domain.identity import typed_person_key

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


def person_key_argument(text: str) -> tuple[str | None, str | None]:
    """The person key a command line names (an ID number, a 15-digit one, another document's key), or why not."""
    key, problem = typed_person_key(text)
    return key, (f"{text!r}: {problem}" if problem else None)


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
