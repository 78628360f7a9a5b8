"""The shape of the code, checked: dependencies point inward, no import cycle, no private name used across modules.

Layers, inner to outer: `domain` (the law and the aggregates; imports no other package of ours), `adapters` (the
store, the read model, Kafka: implement the ports), `projections`, `services` (the use cases), `services.entrypoints`
(CLI, HTTP, workers: thin), `tools` (simulate, bench: outside the product's import path). Every import counts,
including those inside functions, which would otherwise hide a cycle until the line runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "adapters", "projections", "services", "tools")

# Which of our packages each layer may import (a module may always import its own layer).
ALLOWED = {
    "domain": set(),
    "adapters": {"domain"},
    "projections": {"domain", "adapters"},
    "services": {"domain", "adapters", "projections"},
    "services.entrypoints": {"domain", "adapters", "projections", "services"},
    "tools": {"domain", "adapters", "projections", "services", "services.entrypoints"},
}
# The `handoff simulate` (with its --rosters) and `handoff bench` commands start the dev tools, only when they run.
TOOL_COMMANDS = {("services.entrypoints.cli.main", "tools.simulate"), ("services.entrypoints.cli.main", "tools.bench"),
                 ("services.entrypoints.cli.main", "tools.rosters")}  # simulate --rosters


@dataclass(frozen=True)
class Import:
    importer: str
    module: str  # the module imported (or whose name is imported)
    name: str | None  # `from module import name`
    line: int
    top_level: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


MODULES = our_modules()


def imports_of(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, None, node.lineno, id(node) in top_level)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                yield Import(name, module, alias.name, node.lineno, id(node) in top_level)


def target(imported: Import) -> str | None:
    """Our module that an import depends on (a submodule when `from package import submodule`), else None."""
    if imported.name and f"{imported.module}.{imported.name}" in MODULES:
        return f"{imported.module}.{imported.name}"
    if imported.module in MODULES:
        return imported.module
    return None


def layer(module: str) -> str:
    return "services.entrypoints" if module.startswith("services.entrypoints") else module.split(".")[0]


ALL_IMPORTS = [imported for name, path in MODULES.items() for imported in imports_of(name, path)]
GRAPH: dict[str, set[str]] = {name: set() for name in MODULES}
for _imported in ALL_IMPORTS:
    _target = target(_imported)
    if _target is not None and _target != _imported.importer:
        GRAPH[_imported.importer].add(_target)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_the_whole_code():
    assert {"domain.person", "services.ingest", "services.entrypoints.cli.main", "adapters.eventstore",
            "projections.supervision", "tools.bench"} <= set(MODULES)
    assert "domain.person" in GRAPH["services.ingest"]  # a known edge: the walk resolves imports


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module():
    private = [f"{i.importer}:{i.line} imports {i.module}.{i.name}" for i in ALL_IMPORTS
               if i.name and i.name.startswith("_") and not i.name.startswith("__") and target(i) is not None]
    assert private == []


def test_no_private_attribute_of_another_of_our_modules_is_used():
    found = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES:
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in MODULES:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert found == []


@pytest.mark.parametrize("importer_layer", list(ALLOWED))
def test_dependencies_point_inward(importer_layer):
    wrong = []
    for imported in ALL_IMPORTS:
        module = target(imported)
        if module is None or layer(imported.importer) != importer_layer or layer(module) == importer_layer:
            continue
        if layer(module) not in ALLOWED[importer_layer] and (imported.importer, module) not in TOOL_COMMANDS:
            wrong.append(f"{imported.importer}:{imported.line} imports {module}")
    assert wrong == []


def test_the_dev_tools_are_imported_only_when_their_command_runs():
    eager = [f"{i.importer}:{i.line}" for i in ALL_IMPORTS
             if (i.importer, target(i)) in TOOL_COMMANDS and i.top_level]
    assert eager == []


def test_the_domain_needs_no_infrastructure():
    infrastructure = ("sqlalchemy", "psycopg", "sqlite3", "kafka", "fastapi", "starlette", "uvicorn", "jinja2",
                      "eventsourcing.sqlite", "eventsourcing.postgres", "eventsourcing.popo", "eventsourcing.application")
    found = [f"{i.importer}:{i.line} imports {i.module}" for i in ALL_IMPORTS
             if layer(i.importer) == "domain" and i.module.startswith(infrastructure)]
    assert found == []


# The composition root builds the adapters; the audit use case verifies the audit chain's own tables.
ADAPTER_USERS = {"services.bootstrap", "services.audit"}


def test_use_cases_reach_the_store_through_ports():
    direct = [f"{i.importer}:{i.line} imports {target(i)}" for i in ALL_IMPORTS
              if layer(i.importer) == "services" and i.importer not in ADAPTER_USERS
              and (target(i) or "").startswith("adapters")]
    assert direct == []
