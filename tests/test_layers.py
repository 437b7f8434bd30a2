"""The package's import graph: no cycle, no import from a lower layer to a higher one,
unique module names, and no module reaching into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "streammix"

# Layer of each part of the package (shared/DESIGN.md): a module may import its own
# layer and lower ones only.
LAYERS = [
    ("streammix.errors", 0),
    ("streammix._validation", 0),
    ("streammix._random", 0),
    ("streammix.core", 1),
    ("streammix.engine", 2),
    ("streammix.io", 3),
    ("streammix.cluster", 3),
    ("streammix.estimators", 4),
    ("streammix.datasets", 5),
    ("streammix.plotting", 5),
    ("streammix.jobs", 5),
    ("streammix.pipeline", 6),
    ("streammix.cli", 6),
    ("streammix", 7),
]


def layer(module: str) -> int:
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    raise AssertionError(f"{module} has no layer")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(module: str) -> set[str]:
    """Every streammix module ``module`` imports, at any depth of its code."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, targets in GRAPH.items()
        for t in targets
        if layer(t) > layer(m) and not (m == "streammix" or t.startswith(m + "."))
    ]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    # A package's __init__ may import its own submodules (it re-exports them).
    graph = {
        m: {t for t in targets if not (MODULES[m].name == "__init__.py" and t.startswith(m))}
        for m, targets in GRAPH.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_module_names_are_unique():
    names: dict[str, list[str]] = {}
    for m, path in MODULES.items():
        if path.name != "__init__.py":
            names.setdefault(path.stem, []).append(m)
    assert {n: ms for n, ms in names.items() if len(ms) > 1} == {}


def _defined_here(tree: ast.AST) -> set[str]:
    """Names a module defines: functions, classes, and attributes it assigns."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_uses_another_modules_private_names(module):
    """No ``from x import _name`` from another streammix module, and no ``obj._name``
    unless this module defines ``_name`` (its own classes' members) or ``obj`` is
    ``self``/``cls``/``super()`` (members a class inherits are its own)."""
    tree = ast.parse(MODULES[module].read_text())
    own = _defined_here(tree)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or "streammix" in (node.module or "")):
            bad += [a.name for a in node.names if a.name.startswith("_") and a.name != "__all__"]
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if (node.attr.startswith("__") and node.attr.endswith("__")) or node.attr in own:
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super":
                continue
            bad.append(ast.unparse(node))
    assert bad == []
