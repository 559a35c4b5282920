"""The architecture as a test: imports between the layers go downward only, and no module
imports itself back through others (every import counts, lazy ones inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "tasks")

# Each layer and the layers it may import (besides itself). Longest prefix wins.
LAYERS: dict[str, set[str]] = {
    "bench.core": set(),
    "tasks": {"bench.core"},
    "bench.backbones": {"bench.core"},
    "bench.engine": {"bench.core", "bench.backbones", "tasks"},
    "methods": {"bench.core", "bench.backbones", "tasks", "bench.engine"},
    "bench.run": {"bench.core", "bench.backbones", "tasks", "bench.engine", "methods"},
    "bench.sweep": {
        "bench.core",
        "bench.backbones",
        "tasks",
        "bench.engine",
        "methods",
        "bench.run",
    },
    "bench.report": {"bench.core", "tasks"},
    "bench.cli": {"*"},
    "bench.benchmarks": {"*"},
    "bench": {"bench.cli"},  # bench/__init__.py, bench/__main__.py
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in it (``from a import b`` is ``a.b``
    when that is a module, else ``a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                for a in node.names
            ]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PACKAGES}
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, set(mods)) - {m} for m, p in mods.items()}


def layer(module: str) -> str:
    return max(
        (name for name in LAYERS if module == name or module.startswith(name + ".")), key=len
    )


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def upward(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in sorted(g.items()):
        allowed = LAYERS[layer(src)]
        for dst in sorted(targets):
            if layer(dst) != layer(src) and "*" not in allowed and layer(dst) not in allowed:
                bad.append(f"{src} ({layer(src)}) imports {dst} ({layer(dst)})")
    return bad


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_layers_import_downward_only():
    assert upward(graph()) == []


def test_every_package_says_what_it_holds_and_may_import():
    for m, p in modules().items():
        if p.name == "__init__.py" and m in LAYERS | {
            "methods.prompting": 0,
            "methods.verbalizers": 0,
        }:
            doc = ast.get_docstring(ast.parse(p.read_text())) or ""
            assert "may import" in doc.lower() or m in ("bench.benchmarks",), m


@pytest.mark.parametrize(
    "g, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
    ],
)
def test_cycle_finder_finds_cycles(g, expected):
    assert cycles(g) == expected


def test_layer_rule_catches_an_upward_import():
    assert upward({"methods.x": {"bench.run.runner"}, "bench.run.runner": {"methods.x"}}) == [
        "methods.x (methods) imports bench.run.runner (bench.run)"
    ]
    assert upward({"bench.report.make": {"bench.core.io", "tasks"}}) == []
