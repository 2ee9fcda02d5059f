"""One-way layers (issue 14): every microq import, module-level and inside functions, points down.

Layers, bottom first (a module may import its own package and anything in a lower layer):
  errors, ir, qir, names (and the package's __init__) <- data, ops <- ref, runtime (apart:
  imports only the base) <- onnx_import (float frontend) <- quant <- qdq, tflite_import (quantized frontends)
  <- codegen <- report (formatting) <- compare (analysis) <- api <- cli <- __main__
The test prints the package import graph (the closing note of issue 14 quotes it) and fails on
an upward or sideways edge and on any import cycle between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "python" / "microq"

LAYERS = [
    {"microq", "errors", "ir", "qir", "names"},
    {"data", "ops"},
    {"ref", "runtime"},
    {"onnx_import"},
    {"quant"},
    {"qdq", "tflite_import"},
    {"codegen"},
    {"report"},
    {"compare"},
    {"api"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_edges() -> dict[tuple[str, str], list[int]]:
    """(importer, imported module) -> line numbers, over every import statement anywhere."""
    files = sorted(PKG.rglob("*.py"))
    modules = {_module(p) for p in files}

    def resolve(name: str) -> str:
        while name not in modules:
            name = name.rsplit(".", 1)[0]
        return name

    edges: dict[tuple[str, str], list[int]] = {}
    for path in files:
        mod = _module(path)
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for t in targets:
                if t == "microq" or t.startswith("microq."):
                    dst = resolve(t)
                    if dst != mod:
                        edges.setdefault((mod, dst), []).append(node.lineno)
    return edges


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "microq"


def package_graph(edges) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        if _layer(a) != _layer(b):
            graph.setdefault(_layer(a), set()).add(_layer(b))
    return graph


def test_every_module_has_a_layer():
    missing = sorted({_layer(_module(p)) for p in PKG.rglob("*.py")} - set(RANK))
    assert not missing, f"put these in LAYERS of tests/test_layering.py: {missing}"


def test_imports_point_down_and_print_the_graph():
    edges = import_edges()
    graph = package_graph(edges)
    print("\nmicroq import graph (package -> packages it imports), bottom layer last:")
    for pkg in sorted(graph, key=lambda p: (-RANK[p], p)):
        print(f"  {pkg:14s} -> {', '.join(sorted(graph[pkg], key=lambda p: (-RANK[p], p)))}")
    bad = [f"{a} -> {b} (line {', '.join(map(str, lines))})"
           for (a, b), lines in sorted(edges.items())
           if _layer(a) != _layer(b) and not RANK[_layer(b)] < RANK[_layer(a)]]
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


def test_no_import_cycles():
    succ: dict[str, set[str]] = {}
    for a, b in import_edges():
        succ.setdefault(a, set()).add(b)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(succ.get(m, ())):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(succ):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_check_sees_function_level_imports(tmp_path):
    """The walk covers imports inside functions (the ones that hid the old cycles)."""
    edges = import_edges()
    inner = [(a, b) for (a, b) in edges if a == "microq.api" and b.startswith("microq.codegen")]
    assert inner, "api imports codegen only inside functions: the walk must see those"
