"""The import graph keeps its shape: no cycles, and every import points down the layers.

The rules (docs/architecture.md, "Import rules", has them as a table):

- no import cycle between modules (run-time imports, lazy ones included), and none
  between components;
- ``workers`` and ``eventlog`` import no other component;
- ``api`` imports no adapter module of ``eventlog`` or ``projections`` (one that reaches
  SQLAlchemy, SQLite or the broker, directly or through its own imports);
- the client package, ``vectorpanda_client`` (clients/python), imports nothing from the
  server, and nothing outside the standard library but its declared dependencies;
- the rest of ARCHITECTURE.md's direction: ``api`` -> ``coordinator`` -> ``eventlog``,
  ``workers``; ``projections``, ``scheduler``, ``notifier`` -> ``eventlog``; the shell,
  ``vectorpanda`` (its ``server`` wiring included), may import every component.

Why a small ``ast`` walk (tests/import_graph.py) rather than import-linter: no new
dependency in the lock; it reads the source without importing it (so FAISS and the
database drivers need not load); lazy imports inside functions count, which is where
today's cycles hide; and the allowances below are plain data a reviewer can shrink.

The allowances are today's known breaks, each to be deleted by the change that fixes it;
``test_every_allowance_is_still_needed`` fails once one is no longer needed, so the list
only shrinks.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tests.import_graph import (
    COMPONENTS,
    STDLIB,
    Edge,
    Graph,
    adapters,
    build_graph,
    component,
    component_cycles,
    cycle_report,
)

SERVER = set(COMPONENTS) - {"vectorpanda_client"}

# Which other components each component may import.
MAY_IMPORT: dict[str, set[str]] = {
    "workers": set(),  # issue 13
    "eventlog": set(),  # issue 13
    "vectorpanda_client": set(),  # issue 13: the client imports nothing from the server
    "api": {"coordinator", "eventlog", "projections"},  # the last two: no adapter module
    "coordinator": {"eventlog", "workers"},
    "projections": {"eventlog"},
    "scheduler": {"eventlog"},
    "notifier": {"eventlog"},
    "vectorpanda": set(COMPONENTS) - {"vectorpanda"},  # the shell wires everything
}
PURE_ONLY = {"api": {"eventlog", "projections"}}  # importer -> components it may use pure only

# (importer, imported) edges that close a cycle today. Cutting them leaves no cycle.
ALLOWED_CYCLE_EDGES: set[tuple[str, str]] = set()

# (importer, imported) modules that break a layer rule today.
ALLOWED_LAYER_BREAKS: set[tuple[str, str]] = set()


def layer_breaks(graph: Graph) -> list[tuple[Edge, str]]:
    """Every import that breaks MAY_IMPORT or PURE_ONLY, with the rule it breaks."""
    adapter_modules = adapters(graph, {c for cs in PURE_ONLY.values() for c in cs})
    out = []
    for e in graph.edges:
        source, target = component(e.source), component(e.target)
        if source == target:
            continue
        if target not in MAY_IMPORT.get(source, set()):
            out.append((e, f"{source} may not import {target}"))
        elif target in PURE_ONLY.get(source, set()) and e.target in adapter_modules:
            out.append((e, f"{e.target} is an adapter (reaches a database or broker driver)"))
    return out


def client_outside_imports(graph: Graph, pyproject: Path) -> list[str]:
    """Modules the client imports that are neither standard library nor a declared dependency."""
    declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    ok = STDLIB | {Requirement(d).name.replace("-", "_").lower() for d in declared}
    return sorted(
        f"{module} imports {name}"
        for module, names in graph.external.items()
        if component(module) == "vectorpanda_client"
        for name in names
        if name not in ok
    )


GRAPH = build_graph()


def test_the_graph_covers_every_component() -> None:
    assert {component(m) for m in GRAPH.modules} == set(COMPONENTS)
    assert set(MAY_IMPORT) == set(COMPONENTS)
    assert len(GRAPH.modules) > 150 and len(GRAPH.edges) > 500


def test_no_import_cycle() -> None:
    assert cycle_report(GRAPH, ALLOWED_CYCLE_EDGES) == []


def test_no_cycle_between_components() -> None:
    assert component_cycles(GRAPH) == []


def test_every_import_points_down_the_layers() -> None:
    breaks = [
        f"{edge}: {rule}"
        for edge, rule in layer_breaks(GRAPH)
        if (edge.source, edge.target) not in ALLOWED_LAYER_BREAKS
    ]
    assert breaks == []


def test_the_client_imports_nothing_of_the_server_and_only_its_declared_dependencies() -> None:
    client_pyproject = COMPONENTS["vectorpanda_client"] / "pyproject.toml"
    assert client_outside_imports(GRAPH, client_pyproject) == []
    into_server = [
        str(e)
        for e in GRAPH.edges
        if component(e.source) == "vectorpanda_client" and component(e.target) in SERVER
    ]
    assert into_server == []


def test_every_allowance_is_still_needed() -> None:
    """Once a change fixes a break, its allowance goes: delete the entries named here."""
    runtime = {(e.source, e.target) for e in GRAPH.edges if not e.type_only}
    stale_cycles = {
        pair
        for pair in ALLOWED_CYCLE_EDGES
        if pair not in runtime or cycle_report(GRAPH, ALLOWED_CYCLE_EDGES - {pair}) == []
    }
    breaking = {(edge.source, edge.target) for edge, _ in layer_breaks(GRAPH)}
    assert stale_cycles == set()
    assert ALLOWED_LAYER_BREAKS - breaking == set()


# The checker itself, on planted packages.


def plant(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {name.split("/", 1)[0]: root for name in files}


def test_the_checker_catches_a_planted_cycle(tmp_path: Path) -> None:
    components = plant(
        tmp_path,
        {
            "alpha/__init__.py": "from alpha.one import x\n",  # a re-export is not a cycle
            "alpha/one.py": "from alpha import two\nx = 1\n",
            "alpha/two.py": "def f():\n    from .one import x  # lazy and relative\n    return x\n",
            "alpha/three.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from alpha.four import Y\n",
            "alpha/four.py": "import alpha.three\nY = 1\n",  # a TYPE_CHECKING loop: fine
        },
    )
    graph = build_graph(components)
    assert cycle_report(graph) == ["2 modules: alpha.one -> alpha.two -> alpha.one"]
    assert cycle_report(graph, {("alpha.two", "alpha.one")}) == []
    # the real graph without its allowances: a cycle for each allowed edge's knot
    assert bool(cycle_report(GRAPH)) == bool(ALLOWED_CYCLE_EDGES)


def test_the_checker_catches_planted_layer_breaks(tmp_path: Path) -> None:
    components = plant(
        tmp_path,
        {
            "workers/__init__.py": "",
            "workers/store.py": "def f():\n    from coordinator import hub\n",
            "coordinator/__init__.py": "",
            "coordinator/hub.py": "from eventlog import events\n",
            "coordinator/back.py": "import api.routes\n",
            "eventlog/__init__.py": "",
            "eventlog/events.py": "import json\n",
            "eventlog/sql.py": "import sqlalchemy\n",
            "eventlog/store.py": "def f():\n    from eventlog import sql\n",  # adapter, lazily
            "api/__init__.py": "",
            "api/routes.py": "import coordinator.hub\nfrom eventlog import events, store\n",
            "vectorpanda_client/__init__.py": "import httpx, fastapi\nfrom vectorpanda import cli",
            "vectorpanda/__init__.py": "",
            "vectorpanda/cli.py": "",
            "clients/pyproject.toml": '[project]\ndependencies = ["httpx", "numpy"]\n',
        },
    )
    del components["clients"]
    graph = build_graph(components)
    adapter = "is an adapter (reaches a database or broker driver)"
    assert sorted(f"{e}: {rule}" for e, rule in layer_breaks(graph)) == [
        f"api.routes:2 -> eventlog.store: eventlog.store {adapter}",
        "coordinator.back:1 -> api.routes: coordinator may not import api",
        "vectorpanda_client:2 -> vectorpanda.cli: vectorpanda_client may not import vectorpanda",
        "workers.store:2 -> coordinator.hub: workers may not import coordinator",
    ]
    assert component_cycles(graph) == [["api", "coordinator"]]
    assert client_outside_imports(graph, tmp_path / "clients" / "pyproject.toml") == [
        "vectorpanda_client imports fastapi"
    ]
