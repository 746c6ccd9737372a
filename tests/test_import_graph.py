"""No import circle among the project's modules (issue 26).

Every ``import`` statement counts, wherever it stands: at the top, inside a function, under
``if TYPE_CHECKING:``. A function-level import only delays a circle to the first call (and hides it from
the reader); a type-only one is a circle in the design that becomes a runtime one as soon as the guard goes.
An edge points at the module named: ``from a.b import c`` goes to ``a.b.c`` when that is a module, else to
``a.b``. Parent packages are not edges of their own: importing ``a.b.c`` runs ``a/__init__`` too, but a
package that re-exports its children is a facade, not a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FOLDERS = ("laioncele", "pipelines", "encoder_training", "inference", "infra", "bench")

# Import circles tolerated for now (none: keep it that way).
KNOWN_CYCLES: list[set[str]] = []


def project_modules(root: Path, folders: tuple[str, ...]) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is_package) for every .py file under ``folders``."""
    modules: dict[str, tuple[Path, bool]] = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            modules[".".join(parts)] = (path, is_package)
    return modules


def import_graph(modules: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its text."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:
                        graph[name].add(f"{source}.{alias.name}")
                    elif source in modules:
                        graph[name].add(source)
        graph[name].discard(name)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = lowlink[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = lowlink[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            else:
                work.pop()
                if work:
                    lowlink[work[-1][0]] = min(lowlink[work[-1][0]], lowlink[node])
                if lowlink[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(component)
    return cycles


def describe(cycle: set[str], graph: dict[str, set[str]]) -> str:
    return "; ".join(f"{name} -> {sorted(graph[name] & cycle)}" for name in sorted(cycle))


def test_project_has_no_import_cycle() -> None:
    graph = import_graph(project_modules(ROOT, PROJECT_FOLDERS))
    assert len(graph) > 100, "the walk found too few modules: wrong root?"
    cycles = [cycle for cycle in import_cycles(graph) if cycle not in KNOWN_CYCLES]
    assert not cycles, "import circles:\n" + "\n".join(describe(cycle, graph) for cycle in cycles)


def test_face_interface_imports_no_backend() -> None:
    graph = import_graph(project_modules(ROOT, ("laioncele",)))
    assert not {m for m in graph["laioncele.faces.base"] if m.startswith("laioncele.faces.")}
    assert {"laioncele.faces.dlib_backend", "laioncele.faces.insightface_backend"} <= graph[
        "laioncele.faces.factory"
    ]


def write_package(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    "a_text",
    [
        "from pkg.b import thing\n",  # top level, absolute
        "def late():\n    from . import b\n",  # function level, relative, names a submodule
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.b\n",  # type-only
    ],
)
def test_checker_finds_a_circle_however_it_is_imported(tmp_path: Path, a_text: str) -> None:
    write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import *\n",
            "pkg/a.py": a_text,
            "pkg/b.py": "from .a import *\nthing = 1\n",
            "pkg/c.py": "import pkg.a\n",  # imports into the circle, is not part of it
        },
    )
    graph = import_graph(project_modules(tmp_path, ("pkg",)))
    assert import_cycles(graph) == [{"pkg.a", "pkg.b"}]


def test_checker_passes_a_package_that_reexports_its_children(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import x\nfrom pkg.b import y\n",
            "pkg/a.py": "x = 1\n",
            "pkg/b.py": "from pkg.a import x\ny = x\n",
        },
    )
    assert import_cycles(import_graph(project_modules(tmp_path, ("pkg",)))) == []
