"""The package's layers: no import cycle between subpackages, and each layer imports only below.

The graph counts every import: at module level, under ``TYPE_CHECKING`` and inside functions
(a function-level import is still a dependency, only a late one). ``from pkg import mod``
counts as an import of ``pkg.mod``; the parent packages Python runs on the way are not
counted (every ``dbsystem.x`` import runs ``dbsystem/__init__.py``, the facade).

The layers, bottom to top (docs/ARCHITECTURE.md draws them):

    kernel     dbsystem.kernel + dbsystem.errors, dbsystem._log, dbsystem._version
    backends   drivers behind the declared interfaces
    core       the engine: pools, connections, transactions, replicas, the Engine manager
    features   query, security, orm, monitoring, streams, scaling
    aio        the async engine (its engine modules import no feature) and async facade
    facade     dbsystem (the package) and dbsystem._facade
    leaves     cli, testing, integrations
"""

from __future__ import annotations

import ast
import functools
import pathlib
from collections import defaultdict

import pytest

import dbsystem

PACKAGE = pathlib.Path(dbsystem.__file__).parent
KERNEL_MODULES = {"dbsystem.errors", "dbsystem._log", "dbsystem._version"}
FACADE_MODULES = {"dbsystem", "dbsystem._facade", "dbsystem.extend"}

# What each group may import besides itself. Features may import each other, but never in
# a cycle (the cycle check below), and never the async layer, the facade or a leaf.
ALLOWED = {
    "kernel": set(),
    "backends": {"kernel"},
    "core": {"kernel", "backends"},
    "query": {"kernel", "backends", "core"},
    "security": {"kernel", "backends", "core", "query"},
    "orm": {"kernel", "backends", "core", "query"},
    "monitoring": {"kernel", "backends", "core", "query", "security"},
    "streams": {"kernel", "backends", "core", "query", "security"},
    "scaling": {"kernel", "backends", "core", "query", "orm"},
    "aio": {"kernel", "backends", "core", "query", "security", "orm", "monitoring"},
    "facade": {
        *("kernel", "backends", "core", "query", "security", "orm"),
        *("monitoring", "streams", "scaling", "aio"),
    },
}
ALLOWED["cli"] = ALLOWED["testing"] = {*ALLOWED["facade"], "facade"}
ALLOWED["integrations"] = {*ALLOWED["facade"], "facade"}

# The async engine: these modules of dbsystem.aio stay at the engine's level.
ASYNC_ENGINE = {
    "dbsystem.aio.pool",
    "dbsystem.aio.connection",
    "dbsystem.aio._postgres",
    "dbsystem.aio._threaded",
    "dbsystem.aio._redis",
    "dbsystem.aio.replicas",
}


def _modules(root: pathlib.Path) -> dict[str, pathlib.Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


@functools.cache
def import_graph(root: pathlib.Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports (any level, any place in the file)."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    if not is_package:
                        anchor.pop()
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    edges.add(submodule if submodule in modules else base)
        graph[name] = {edge for edge in edges if edge in modules and edge != name}
    return graph


def group(module: str) -> str:
    if module in KERNEL_MODULES:
        return "kernel"
    if module in FACADE_MODULES:
        return "facade"
    return module.split(".")[1]


def group_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        for target in targets:
            if group(module) != group(target):
                groups[group(module)].add(group(target))
    return groups


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def _witnesses(graph: dict[str, set[str]], source: str, target: str) -> list[str]:
    return sorted(
        f"{module} -> {edge}"
        for module, edges in graph.items()
        for edge in edges
        if group(module) == source and group(edge) == target
    )


def test_no_import_cycle_between_subpackages():
    graph = import_graph()
    groups = group_graph(graph)
    found = cycles(groups)
    detail = [
        (a, b, _witnesses(graph, a, b)[:3])
        for component in found
        for a in component
        for b in groups[a]
        if b in component
    ]
    assert found == [], f"import cycles between subpackages: {found}; edges: {detail}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_below(layer):
    graph = import_graph()
    groups = group_graph(graph)
    extra = groups.get(layer, set()) - ALLOWED[layer]
    assert not extra, {target: _witnesses(graph, layer, target) for target in extra}


def test_the_async_engine_imports_no_feature():
    graph = import_graph()
    allowed = {"kernel", "backends", "core"}
    bad = sorted(
        f"{module} -> {edge}"
        for module in ASYNC_ENGINE
        for edge in graph[module]
        if group(edge) not in allowed and edge not in ASYNC_ENGINE
    )
    assert bad == []


def test_the_checker_sees_cycles_and_function_level_imports(tmp_path):
    # A package whose cycle hides in a function-level import: the check must see it.
    root = tmp_path / "dbsystem"
    for sub in ("kernel", "core"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "kernel" / "a.py").write_text("def f():\n    from dbsystem.core import b\n")
    (root / "core" / "b.py").write_text("from dbsystem.kernel import a\n")
    graph = import_graph(root)
    assert graph["dbsystem.kernel.a"] == {"dbsystem.core.b"}
    assert cycles(group_graph(graph)) == [["core", "kernel"]]


# -- the one path ------------------------------------------------------------------------

STATEMENT_BUILDERS = {"dbsystem.core.execution"}
HOOK_RUNNERS = {"dbsystem.core.execution", "dbsystem.core.connection", "dbsystem.aio.connection"}
HOOK_CALLS = {"run", "arun", "run_stream", "refuse"}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _is_hook_chain(node: ast.AST) -> bool:
    # ``hooks.run(...)``, ``pool.hooks.run(...)``, ``self._pool.hooks.refuse(...)``
    return (isinstance(node, ast.Name) and node.id == "hooks") or (
        isinstance(node, ast.Attribute) and node.attr == "hooks"
    )


def one_path_violations(root: pathlib.Path = PACKAGE) -> list[str]:
    found = []
    for module, path in _modules(root).items():
        for call in _calls(ast.parse(path.read_text())):
            func = call.func
            if (
                isinstance(func, ast.Name)
                and func.id == "Statement"
                and module not in STATEMENT_BUILDERS
            ):
                found.append(f"{module}:{call.lineno} builds a Statement")
            if (
                isinstance(func, ast.Attribute)
                and func.attr in HOOK_CALLS
                and _is_hook_chain(func.value)
                and module not in HOOK_RUNNERS
            ):
                found.append(f"{module}:{call.lineno} runs the hook chain")
    return sorted(found)


def test_statements_are_built_and_hooked_in_the_engine_only():
    # Backends, builders and features describe what they run; the engine builds the
    # Statement (dbsystem.core.execution.statement) and runs the hooks.
    assert one_path_violations() == []


def test_the_one_path_check_sees_a_backend_calling_hooks(tmp_path):
    root = tmp_path / "dbsystem"
    (root / "backends").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "backends" / "__init__.py").write_text("")
    (root / "backends" / "x.py").write_text(
        "def f(pool, s):\n    st = Statement(text='x')\n    return pool.hooks.run(st, s)\n"
    )
    assert one_path_violations(root) == [
        "dbsystem.backends.x:2 builds a Statement",
        "dbsystem.backends.x:3 runs the hook chain",
    ]
