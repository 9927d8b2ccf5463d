"""The layers of DESIGN.md, checked on the source: no import cycle, no production import of test
helpers, and each layer importing only the layers below it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("controllers", "proxy_task_utils")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module imported anywhere in the file (also inside functions), but not for type checking."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                # ``from pkg import submodule`` imports the submodule
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
        else:
            yield from _imports(node, module, is_package)


def _graph() -> dict[str, set[str]]:
    """Edges between our modules; a package's ``__init__`` is a facade and is left out on both ends."""
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        if module in packages:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps = {d for d in _imports(tree, module, False) if d in MODULES and d not in packages and d != module}
        graph[module] = deps
    return graph


GRAPH = _graph()


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_the_imports():
    # a graph that lost its edges would pass every test below
    assert "controllers.engine.jobs" in GRAPH["controllers.selection.controller"]
    assert "proxy_task_utils.storage.base" in GRAPH["proxy_task_utils.storage.local"]
    assert sum(len(v) for v in GRAPH.values()) > 150


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    assert _find_cycle(GRAPH) is None


def test_no_production_module_imports_the_test_helpers():
    offenders = {
        m: sorted(d for d in deps if d.startswith("controllers.testing"))
        for m, deps in GRAPH.items()
        if not m.startswith("controllers.testing")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


LAYERS = [
    # (modules, what they must not import)
    ("proxy_task_utils", ("controllers",)),
    ("controllers.stats", ("controllers.engine", "controllers.runners", "controllers.search", "controllers.selection",
                           "controllers.variance", "controllers.latency", "controllers.cli", "controllers.pipeline")),
    ("controllers.engine", ("controllers.search", "controllers.selection", "controllers.variance",
                            "controllers.cli", "controllers.pipeline", "controllers.status")),
    ("controllers.runners", ("controllers.engine", "controllers.search", "controllers.selection",
                             "controllers.variance", "controllers.cli", "controllers.pipeline")),
    ("controllers.errors", ("controllers.",)),
]  # fmt: skip


@pytest.mark.parametrize("layer, forbidden", LAYERS)
def test_layers_import_only_downwards(layer, forbidden):
    bad = {
        m: sorted(d for d in deps if d.startswith(forbidden))
        for m, deps in GRAPH.items()
        if m == layer or m.startswith(layer + ".")
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_the_three_tools_have_one_shape():
    for tool in ("variance", "selection", "search"):
        for part in ("__init__", "config", "controller", "plots", "report"):
            assert (ROOT / "controllers" / tool / f"{part}.py").is_file(), f"controllers/{tool}/{part}.py"
