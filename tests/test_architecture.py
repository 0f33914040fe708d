"""The architecture holds: no import cycle anywhere, and the domain package neither knows Airflow nor
starts processes (DAGs wire, plugins adapt Airflow, include/devstack runs the stack).

Imports are read from the source (every ``import`` statement, inside functions and under
``TYPE_CHECKING`` too: a cycle hidden in a function is still a cycle of the design).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {  # import name prefix -> folder that holds it
    "active_learning": REPO / "include" / "active_learning",
    "devstack": REPO / "include" / "devstack",
    "active_learning_airflow": REPO / "plugins" / "active_learning_airflow",
}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in ROOTS.items():
        for path in folder.rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def imported_names(path: Path, module: str) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        edges = set()
        for name in imported_names(path, module):
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):  # a package's own __init__ is no edge back
                edges.add(name)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_anywhere() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_sees_a_cycle_hidden_in_a_function() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_the_domain_package_knows_no_airflow_and_starts_no_processes() -> None:
    forbidden = ("airflow", "active_learning_airflow", "devstack", "subprocess")
    offenders = []
    for module, path in modules().items():
        if not module.startswith("active_learning.") and module != "active_learning":
            continue
        for name in imported_names(path, module):
            if name.split(".")[0] in forbidden:
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert offenders == []


def test_the_dev_stack_is_not_imported_by_dags_or_plugins() -> None:
    offenders = []
    for path in [*(REPO / "dags").glob("*.py"), *(REPO / "plugins").rglob("*.py")]:
        for name in imported_names(path, path.stem):
            if name.split(".")[0] == "devstack":
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert offenders == []
