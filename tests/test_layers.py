"""The package's layering: every import (top-level, inside functions, under TYPE_CHECKING)
goes from a package to its own layer or a lower one, and no two modules import each other
directly or through a chain."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tufl

ROOT = Path(tufl.__file__).parent

# Bottom to top: each package may import itself and the packages before it. Modules at the
# top of the package (tufl/__init__.py, tufl/__main__.py) are the entry points, above all.
LAYERS = ("runtime", "data", "models", "losses", "mixing", "objective", "evaluation", "train", "config",
          "report", "demo", "ablation", "bench", "cli")
ENTRY = len(LAYERS)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(importer: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The tufl modules an import statement loads (``from pkg import module`` names the module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if node.module else package
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    found = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("tufl.") and name != importer:
            found.append(name)
    return found


def _dynamic_imports(tree: ast.AST) -> list[str]:
    """``importlib.import_module("tufl....")`` calls with a constant name."""
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                and node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value) in MODULES):
            out.append(str(node.args[0].value))
    return out


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                   for t in _resolve(name, node)}
        graph[name] = targets | set(_dynamic_imports(tree))
    return graph


def layer(module: str) -> int:
    parts = module.split(".")
    if module in ("tufl", "tufl.__main__"):
        return ENTRY
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module}: package tufl.{parts[1]} has no layer; add it to LAYERS")
    return LAYERS.index(parts[1])


def test_every_import_goes_down_the_layers():
    upward = [f"{a} (layer {LAYERS[layer(a)] if layer(a) < ENTRY else 'entry'}) imports {b} "
              f"(layer {LAYERS[layer(b)] if layer(b) < ENTRY else 'entry'})"
              for a, targets in import_graph().items() for b in sorted(targets) if layer(b) > layer(a)]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_two_packages_import_each_other():
    graph = import_graph()
    edges = {(a.split(".")[1], b.split(".")[1]) for a, targets in graph.items() for b in targets
             if len(a.split(".")) > 1 and len(b.split(".")) > 1}
    both = sorted({tuple(sorted(e)) for e in edges if e[0] != e[1] and (e[1], e[0]) in edges})
    assert not both, f"packages importing each other: {both}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (the import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_module_import_cycles():
    assert strongly_connected(import_graph()) == []


def test_the_checks_catch_what_they_look_for():
    # an upward import and a cycle are found by the same walk the tests above use
    assert layer("tufl.runtime.atomic") < layer("tufl.data.io") < layer("tufl.cli")
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    node = ast.parse("from tufl.train import engine\nfrom ..models import build").body
    assert _resolve("tufl.data.io", node[0]) == ["tufl.train.engine"]
    assert _resolve("tufl.data.io", node[1]) == ["tufl.models.build"]
    with pytest.raises(AssertionError, match="has no layer"):
        MODULES["tufl.newpackage.x"] = ROOT / "newpackage" / "x.py"
        try:
            layer("tufl.newpackage.x")
        finally:
            del MODULES["tufl.newpackage.x"]
