"""The README is for its readers: short enough to read, and every file it points to is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_short_enough_to_read():
    assert len(README) < 12_000


def test_every_path_the_readme_names_is_in_the_repository():
    named = set(re.findall(r"`((?:docs|tools|tests|services|domain|adapters|projections)/[\w./-]*)`", README))
    assert "docs/rules.md" in named  # the pattern finds what it is meant to
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert missing == []


def test_the_readme_links_nowhere_outside_the_repository():
    assert "../" not in README
    assert not re.findall(r"\]\((?!#)(?!docs/|tools/|tests/)[^)]*\)", README)  # markdown links stay inside
