"""No import cycle among e4gym's modules, function-level imports included (a cycle through a lazy import is still
a cycle). The layers themselves are import-linter's contract (``.importlinter``, ``lint-imports`` in ``make test``);
this checks what that contract does not: cycles between modules of one package.

The graph has an edge ``a -> b`` for every ``import`` statement anywhere in module ``a`` (top level, in functions,
under ``TYPE_CHECKING``) that names module ``b`` of the package: ``from p import x`` is an edge to ``p.x`` when
that is a module, else to ``p``; ``import p.q`` to the longest existing module of ``p.q``. Parent packages that
Python initialises on the way are not edges (every submodule would otherwise form a cycle with an ``__init__``
that imports it).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Imports that close a known cycle, left out of the check until they are fixed (importer, imported): why.
def module_files(root: Path, package: str) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of ``package`` under ``root`` (``__init__`` names its package)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names one import statement of ``module`` may refer to, most specific first per name."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:  # relative: strip one package per level beyond the first (a package is its own anchor)
        anchor = module.split(".")
        drop = node.level - 1 if is_package else node.level
        anchor = anchor[: len(anchor) - drop]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{a.name}" for a in node.names] + [base]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (see the module docstring)."""
    files = module_files(root, package)
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = _targets(node, module, is_package)
            if isinstance(node, ast.ImportFrom):  # `from p import x`: p.x if a module, else p itself
                found = [n for n in names[:-1] if n in files] or [names[-1]]
            else:
                found = names
            for name in found:
                while name and name not in files:  # the longest prefix that is a module of the package
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it is acyclic (depth-first search)."""
    done: set[str] = set()
    path: list[str] = []
    on_path: dict[str, int] = {}

    def visit(node: str) -> list[str] | None:
        on_path[node] = len(path)
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                return [*path[on_path[nxt]:], nxt]
            if nxt not in done and (cycle := visit(nxt)):
                return cycle
        path.pop()
        del on_path[node]
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)):
            return cycle
    return None


def test_e4gym_has_no_import_cycle() -> None:
    graph = import_graph(ROOT, "e4gym")
    assert "e4gym.bench.config" in graph["e4gym.bench.runner"]  # top level
    assert "e4gym.bench.sweep" in graph["e4gym.cli"]  # in a function
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_checker_finds_a_cycle_through_a_function_level_relative_import(tmp_path: Path) -> None:
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "def f():\n    from ..a import thing\n",
        "pkg/b.py": "import json\nfrom pkg.sub.c import f\n",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]


def test_checker_passes_an_acyclic_package(tmp_path: Path) -> None:
    _package(tmp_path, {
        "pkg/__init__.py": "from pkg.a import x\n",
        "pkg/a.py": "from . import b\nimport pkg.b.missing\n",
        "pkg/b.py": "from pkg import errors\n",
        "pkg/errors.py": "",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.errors"}, "pkg.errors": set()}
    assert find_cycle(graph) is None
