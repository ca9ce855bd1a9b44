"""Check the import contracts of .importlinter (import-linter) and that there is no import circle.

    python scripts/import_contracts.py        # exit 0 when every contract holds

Why not plain ``lint-imports``: import-linter asks grimp for the import graph, and grimp finds
a package's modules by walking the one folder of its top package. ``defect_studio`` is made
of three folders (core/, app/, resources/: setuptools package-dir, see pyproject.toml), so
grimp sees core/ alone and would check nothing of the GUI. This script builds the same graph
from the three folders (each import statement read with ``ast``, including imports inside
functions, without those under ``if TYPE_CHECKING:``, external packages as one squashed
module each, as grimp does) and hands it to import-linter, which checks the contracts.

A circle is any strongly connected set of modules in that graph (graphlib finds one);
a package importing its own submodules, and a submodule importing names from its own
package's ``__init__``, are not counted as a circle when the ``__init__`` imports nothing
back from the submodule.
"""

from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
# package -> folder, as in pyproject.toml [tool.setuptools] package-dir
PACKAGE_DIRS = {"defect_studio": "core", "defect_studio.app": "app",
                "defect_studio.resources": "resources"}


def module_files(repo: Path = REPO) -> dict[str, Path]:
    """Every module of defect_studio -> its file."""
    out: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        base = repo / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            out[name] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """(line, imported module, names) of every import statement not under TYPE_CHECKING."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, (), 0
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", tuple(a.name for a in node.names), node.level
        stack.extend(ast.iter_child_nodes(node))


def _resolve(importer: str, is_package: bool, module: str, level: int) -> str:
    if not level:
        return module
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def build_graph(repo: Path = REPO) -> grimp.ImportGraph:
    files = module_files(repo)
    graph = grimp.ImportGraph()
    for name in files:
        graph.add_module(name)
    externals: set[str] = set()
    for importer, path in files.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        is_package = path.name == "__init__.py"
        for line, module, names, level in _imports(ast.parse(source, str(path))):
            target = _resolve(importer, is_package, module, level)
            if target.split(".")[0] == "defect_studio":
                # `from pkg import sub` imports the module pkg.sub when there is one
                found = [f"{target}.{n}" for n in names if f"{target}.{n}" in files]
                targets = found or [target]
                # a name that is not a module: the nearest enclosing module
                targets = [_nearest(t, files) for t in targets]
            else:
                top = target.split(".")[0]
                if not top or top == "__future__":
                    continue
                if top not in externals:
                    graph.add_module(top, is_squashed=True)
                    externals.add(top)
                targets = [top]
            for t in targets:
                if t and t != importer:
                    graph.add_import(importer=importer, imported=t, line_number=line,
                                     line_contents=lines[line - 1].strip())
    return graph


def _nearest(name: str, files: dict[str, Path]) -> str:
    while name and name not in files:
        name = name.rpartition(".")[0]
    return name


class RepoGraphBuilder:
    """import-linter's GraphBuilder port, over the graph of build_graph()."""

    def build(self, root_package_names, cache_dir=None, include_external_packages=False,
              exclude_type_checking_imports=False):
        return build_graph()


def circles(graph: grimp.ImportGraph) -> list[str] | None:
    """One import circle among defect_studio's modules (as a list of modules), or None."""
    ours = {m for m in graph.modules if m.startswith("defect_studio")}
    deps: dict[str, set[str]] = {}
    for m in ours:
        targets = {t for t in graph.find_modules_directly_imported_by(m) if t in ours}
        # a submodule taking names from its own package's __init__ is not a circle unless
        # that __init__ imports the submodule back (then the edge stays and is found)
        deps[m] = {t for t in targets if not (m.startswith(t + ".") and m not in
                                               graph.find_modules_directly_imported_by(t))}
    try:
        graphlib.TopologicalSorter(deps).prepare()
    except graphlib.CycleError as e:
        return list(e.args[1])
    return None


def main() -> int:
    from importlinter import configuration
    from importlinter.application import use_cases
    from importlinter.application.app_config import settings

    configuration.configure()
    settings.configure(GRAPH_BUILDER=RepoGraphBuilder(), DEFAULT_CACHE_DIR=None)
    ok = use_cases.lint_imports(config_filename=str(REPO / ".importlinter"))
    cycle = circles(build_graph())
    if cycle:
        print("Import circle: " + " -> ".join(cycle))
    else:
        print("No import circle among defect_studio's modules.")
    return 0 if ok and not cycle else 1


if __name__ == "__main__":
    sys.exit(main())
