"""`handoff audit verify|anchor|export`: the tamper-evident record (registered into the CLI's `audit` command)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def register(audit_commands: argparse._SubParsersAction, formats: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the hash-chain commands to `handoff audit`."""
