"""No import circles inside corral's packages (issue 12).

The graph is built from the source, not from what an import happens to load: every
`import` and `from … import` of every module, at any depth (function-level imports and
`if TYPE_CHECKING:` blocks count: a circle hidden there is still a circle), relative
imports resolved, and `from corral.x import y` read as module corral.x.y when that is a
module, else as corral.x. A package's modules must form no cycle, alone or through
modules of other packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import corral

# The top-level packages of corral whose modules are held to no import circle: all of them.
CHECKED = ["api", "cli", "core", "drivers", "engine", "images", "observe", "ports", "routers",
           "spec", "stores"]

Graph = dict[str, set[str]]


def module_files(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Every module under `root` (the folder of `package`): name -> (file, is a package)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def imports_of(name: str, path: Path, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of `modules` that module `name` imports, anywhere in its source."""
    here = name if is_package else name.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                member = f"{source}.{alias.name}"
                named.add(member if member in modules else source)
    return {target for target in named if target in modules and target != name}


def import_graph(root: Path, package: str) -> Graph:
    files = module_files(root, package)
    names = set(files)
    return {name: imports_of(name, path, is_package, names)
            for name, (path, is_package) in files.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
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


CORRAL = import_graph(Path(corral.__file__).parent, "corral")


@pytest.mark.parametrize("package", CHECKED)
def test_the_modules_of_a_checked_package_form_no_import_circle(package: str) -> None:
    prefix = f"corral.{package}"
    assert any(name == prefix or name.startswith(prefix + ".") for name in CORRAL)
    circles = [c for c in cycles(CORRAL)
               if any(m == prefix or m.startswith(prefix + ".") for m in c)]
    assert circles == []


def test_the_graph_reads_sub_packages_relative_and_function_level_imports(
        tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "a.py").write_text("from . import b\nfrom .b import thing\n")
    (pkg / "sub" / "b.py").write_text("def later():\n    from ..c import value\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from pkg.sub.a import x\n"
                              "import pkg.sub\n")
    graph = import_graph(pkg, "pkg")
    assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.b"}, "pkg.sub.a": {"pkg.sub.b"},
                     "pkg.sub.b": {"pkg.c"}, "pkg.c": {"pkg.sub.a", "pkg.sub"}}
    assert cycles(graph) == [["pkg.c", "pkg.sub", "pkg.sub.a", "pkg.sub.b"]]


def test_only_modules_that_import_each_other_back_make_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
