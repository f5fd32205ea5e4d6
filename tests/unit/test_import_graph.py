"""The package's import graph: no new cycles, and publishes enter only through ``Hub.publish``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import ssehub

PACKAGE = Path(ssehub.__file__).resolve().parent
# Cycles whose owners are untangling them: this set may only shrink.
KNOWN_CYCLES = {"ssehub.runs", "ssehub.runs_redis", "ssehub.tasks.builtin", "ssehub.tasks.registry"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (type-only imports included)."""
    files = {module_name(f): f for f in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:  # relative: from the package, up ``level - 1`` packages
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    target = f"{base}.{target}" if target else base
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in files else target)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def cyclic_modules(graph: dict[str, set[str]]) -> set[str]:
    """Modules that can reach themselves again."""
    cyclic = set()
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            node = todo.pop()
            if node == start:
                cyclic.add(start)
                break
            if node not in seen:
                seen.add(node)
                todo.extend(graph[node])
    return cyclic


def test_no_import_cycle_beyond_the_known_ones() -> None:
    cyclic = cyclic_modules(import_graph())
    assert cyclic <= KNOWN_CYCLES, sorted(cyclic - KNOWN_CYCLES)
    assert not cyclic & {"ssehub.errors", "ssehub.metrics", "ssehub.hub"}


def test_only_the_hub_hands_events_to_the_broker() -> None:
    direct = re.compile(r"broker\.publish\(")
    callers = [
        module_name(f)
        for f in PACKAGE.rglob("*.py")
        if direct.search(f.read_text()) and "brokers" not in f.parts
    ]
    assert callers == ["ssehub.hub"]
