"""The shape of the source tree, read from its ASTs (issue #14's acceptance).

- the import graph between shapewise modules has no cycle, counting imports inside
  functions too (only ``if TYPE_CHECKING:`` blocks are left out: they never run);
- kernels/ is the ground floor: none of its modules imports shapewise.bench, check,
  search, tune or cli;
- the source tree holds no symlinks (kernels/ and profiles/ reach the package through
  pyproject's package-dir, not through links);
- no .py file is over 600 lines.

The tree is the repository this file sits in, not the installed package: these are rules
about the source. Every file is held to every rule; nothing is exempt.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: folder -> the package it is installed as (pyproject's package-dir)
PACKAGE_ROOTS = {"shapewise": "shapewise", "kernels": "shapewise.kernels",
                 "profiles": "shapewise.profiles"}
#: what kernels/ must never import (``shapewise.tune`` is the package shapewise.tuning)
ABOVE_KERNELS = ("shapewise.bench", "shapewise.check", "shapewise.search", "shapewise.tuning",
                 "shapewise.cli")
MAX_LINES = 600
#: folders that are not source: tool caches, environments, build outputs
_NOT_SOURCE = {".git", ".venv", "venv", "build", "dist", "__pycache__", ".pytest_cache",
               ".ruff_cache", ".hypothesis", ".mypy_cache", ".whl", ".out", "node_modules"}

pytestmark = pytest.mark.skipif(not (REPO / "pyproject.toml").is_file(),
                                reason="needs the source tree")


def _walk() -> list[Path]:
    """Every file and folder of the source tree (symlinks included, never followed)."""
    out: list[Path] = []
    for top, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in _NOT_SOURCE and not d.endswith(".egg-info"))
        out += [Path(top) / d for d in dirs] + [Path(top) / f for f in sorted(files)]
    return out


def _modules() -> dict[str, Path]:
    """Module name -> file, for every module of the package as installed."""
    mods: dict[str, Path] = {}
    for folder, package in PACKAGE_ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join([package, *parts])] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The shapewise modules that ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package
                    for _ in range(child.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                for alias in child.names:  # `from pkg import module` imports the module
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in mods else base)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return {m for m in found if m.split(".")[0] == "shapewise" and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: {m for m in _imports(name, path, mods) if m in mods}
            for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The rule below can fail: a two-module cycle and a three-module one are found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "a"}, "f": set()}
    assert sorted(_cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_import_graph_has_no_cycle() -> None:
    graph = _graph()
    assert len(graph) > 50, "the walk found too few modules to mean anything"
    assert _cycles(graph) == []


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    graph = _graph()
    # a relative import at the top of a module
    assert "shapewise.kernels.timing" in graph["shapewise.kernels.gemm"]
    # a lazy import inside a function (attention's triton row loads the Triton kernel)
    assert "shapewise.kernels.triton_attention" in graph["shapewise.kernels.attention"]


def test_kernels_are_the_ground_floor() -> None:
    def above(module: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in ABOVE_KERNELS)

    offenders = {
        name: sorted(m for m in imports if above(m))
        for name, imports in _graph().items()
        if name.startswith("shapewise.kernels")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_symlinks_in_the_source_tree() -> None:
    links = [str(p.relative_to(REPO)) for p in _walk() if p.is_symlink()]
    assert links == []


def test_no_python_file_is_over_600_lines() -> None:
    """Every .py file of the tree, tests and scripts included."""
    long = {}
    for path in _walk():
        if path.suffix == ".py" and path.is_file():
            with path.open(encoding="utf-8") as f:
                lines = sum(1 for _ in f)
            if lines > MAX_LINES:
                long[str(path.relative_to(REPO))] = lines
    assert long == {}


def test_every_package_of_the_tree_ships_in_the_wheel() -> None:
    """pyproject lists the packages one by one: a new sub-package left off that list would
    work in an editable install and be missing from ``pip install .``."""
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))[
        "tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert setuptools["package-dir"] == {"shapewise.kernels": "kernels",
                                         "shapewise.profiles": "profiles"}
