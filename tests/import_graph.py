"""The project's import graph, read from the source with ``ast`` (nothing is imported).

Every ``import`` and ``from ... import`` counts, at module level or inside a function
(a lazy import still ties the two modules together); an import under
``if TYPE_CHECKING:`` is kept but marked, so cycles, which are a run-time matter, can
leave it out while layer rules, which are about who knows whom, still see it.

``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``.
Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those implicit
edges are not added (as import-linter's grimp does not), so a package whose
``__init__`` re-exports its modules does not count as a cycle with them.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Top-level package -> the directory that holds it (the client lives in clients/python).
COMPONENTS: dict[str, Path] = {
    name: ROOT
    for name in (
        "api",
        "coordinator",
        "workers",
        "eventlog",
        "projections",
        "scheduler",
        "notifier",
        "vectorpanda",
    )
} | {"vectorpanda_client": ROOT / "clients" / "python"}


@dataclass(frozen=True)
class Edge:
    """One import: ``source`` imports ``target`` (a first-party module) or ``external``."""

    source: str
    target: str
    line: int
    type_only: bool = False

    def __str__(self) -> str:
        marker = " (TYPE_CHECKING)" if self.type_only else ""
        return f"{self.source}:{self.line} -> {self.target}{marker}"


@dataclass
class Graph:
    """Modules, the first-party imports between them, and the outside packages each uses."""

    modules: dict[str, Path] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    external: dict[str, set[str]] = field(default_factory=dict)  # module -> top-level names

    def runtime_neighbours(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in self.modules}
        for e in self.edges:
            if not e.type_only:
                out[e.source].add(e.target)
        return out


def component(module: str) -> str:
    return module.split(".", 1)[0]


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import node with whether it sits under ``if TYPE_CHECKING:``."""

    def walk(node: ast.AST, type_only: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, type_only
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), True)
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), type_only)
            else:
                yield from walk(child, type_only)

    yield from walk(tree, False)


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The longest known module that ``name`` starts with, or None (not first-party)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def build_graph(components: Mapping[str, Path] = COMPONENTS) -> Graph:
    graph = Graph()
    seen: set[Edge] = set()
    for name, base in components.items():
        for path in sorted((base / name).rglob("*.py")):
            graph.modules[module_name(path, base)] = path
    for source, path in graph.modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        outside = graph.external.setdefault(source, set())
        for node, type_only in _imports(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                if node.level:  # relative: from the module's own package upwards
                    package = source.split(".") if is_package else source.split(".")[:-1]
                    stem = package[: len(package) - node.level + 1]
                    base_name = ".".join([*stem, *([node.module] if node.module else [])])
                else:
                    base_name = node.module or ""
                names = [f"{base_name}.{alias.name}" for alias in node.names] or [base_name]
                if not any(_resolve(n, graph.modules) for n in names):
                    names = [base_name]
            for imported in names:
                target = _resolve(imported, graph.modules)
                if target is None:
                    outside.add(imported.split(".", 1)[0])
                elif target != source:
                    edge = Edge(source, target, node.lineno, type_only)
                    if edge not in seen:
                        seen.add(edge)
                        graph.edges.append(edge)
    return graph


def cycles(neighbours: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:  # iterative, so a deep graph needs no recursion limit
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(neighbours[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(neighbours[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    scc.append(member)
                    if member == node:
                        break
                if len(scc) > 1:
                    found.append(sorted(scc))

    for node in sorted(neighbours):
        if node not in index:
            visit(node)
    return sorted(found)


def shortest_cycle(scc: list[str], neighbours: Mapping[str, Iterable[str]]) -> list[str]:
    """One concrete loop through the component's first module, for the failure message."""
    start, members = scc[0], set(scc)
    paths: dict[str, list[str]] = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(neighbours[node]):
            if child == start:
                return [*paths[node], start]
            if child in members and child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return scc


STDLIB = frozenset(sys.stdlib_module_names)


def cycle_report(graph: Graph, ignored: Iterable[tuple[str, str]] = ()) -> list[str]:
    """One line per import cycle left once the ``ignored`` (source, target) edges are cut."""
    neighbours = graph.runtime_neighbours()
    for source, target in ignored:
        neighbours.get(source, set()).discard(target)
    return [
        f"{len(scc)} modules: " + " -> ".join(shortest_cycle(scc, neighbours))
        for scc in cycles(neighbours)
    ]


def component_cycles(graph: Graph) -> list[list[str]]:
    """Cycles between components (a -> b -> a through any of their modules)."""
    between: dict[str, set[str]] = {component(m): set() for m in graph.modules}
    for e in graph.edges:
        if component(e.source) != component(e.target):
            between[component(e.source)].add(component(e.target))
    return cycles(between)


INFRASTRUCTURE = frozenset(
    {"sqlalchemy", "sqlite3", "aio_pika", "aiormq", "psycopg", "psycopg2", "asyncpg"}
)


def adapters(graph: Graph, of: Iterable[str]) -> set[str]:
    """Modules of the components ``of`` that reach a database or broker driver, directly or
    through any chain of first-party imports (a lazy one included): importing one of them
    ties the importer to SQLAlchemy, SQLite or the broker."""
    neighbours: dict[str, set[str]] = {m: set() for m in graph.modules}
    for e in graph.edges:
        neighbours[e.source].add(e.target)
    tainted = {m for m, names in graph.external.items() if names & INFRASTRUCTURE}
    changed = True
    while changed:
        grown = {m for m, ns in neighbours.items() if ns & tainted} - tainted
        tainted |= grown
        changed = bool(grown)
    wanted = set(of)
    return {m for m in tainted if component(m) in wanted}
