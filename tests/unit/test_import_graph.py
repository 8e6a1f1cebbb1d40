"""Dependencies point one way: no import cycle among the project's own modules.

A cycle is two modules that each know the other, however the import is written: at the top, inside
a function (a lazy import) or under ``if TYPE_CHECKING:``. Each of those still couples the two, so
the graph built here counts every ``import`` statement anywhere in a module. Standard library
``ast`` only, no module is imported, so this stays fast.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# (directory, the package name its modules are imported by)
SOURCES = (
    (ROOT / "layers" / "core" / "calsync", "calsync"),
    (ROOT / "functions", "functions"),
    (ROOT / "localdev", "localdev"),
    (ROOT / "bench", "bench"),
)


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root, package in SOURCES:
        for path in sorted(root.rglob("*.py")):
            found[_module_name(path, root, package)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies in (``a.b.c`` may be a name in ``a.b``)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            # ``from pkg import mod`` imports the submodule ``pkg.mod`` when there is one.
            names = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
            names = [n for n in names if n != prefix] or [prefix]
        else:
            continue
        for name in names:
            target = _resolve(name, known)
            if target is not None and target != module:
                targets.add(target)
    return targets


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {module: _imported(module, path, known) for module, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete cycle through the component's first module (breadth-first, shortest)."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return component


def test_the_graph_sees_the_sources() -> None:
    graph = _graph()
    assert "calsync.store" in graph and "localdev.emulator.emulator" in graph
    assert "localdev.emulator.errors" in graph["localdev.emulator.traffic"]


def test_no_import_cycles() -> None:
    graph = _graph()
    found = [
        f"{' -> '.join(_cycle_in(component, graph))}  (modules caught in it: {', '.join(component)})"
        for component in _cycles(graph)
    ]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_benchmarks_and_localdev_never_import_the_tests() -> None:
    """Builders both use live in `localdev.builders`; `tests` is not a library."""
    offenders = []
    for root, package in SOURCES[2:]:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                offenders += [f"{_module_name(path, root, package)} imports {n}" for n in names
                              if n == "tests" or n.startswith("tests.")]
    assert not offenders, "\n".join(offenders)
