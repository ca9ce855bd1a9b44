"""The rules of the code's shape, checked by the machine (docs/ARCHITECTURE.md, "Rules").

- the import contracts of .importlinter hold and there is no import circle
  (scripts/import_contracts.py), and the checker does catch a broken rule;
- the wheel installs `defect_studio` and nothing else at the top level;
- a user's own `core` or `app` package in the working folder does not shadow ours;
- every page of app/ is a room: page.py (Qt) and state.py (plain Python).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import import_contracts  # noqa: E402


def test_import_contracts_hold():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "import_contracts.py")],
                       capture_output=True, text=True, timeout=240, cwd=REPO)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout and "No import circle" in r.stdout


def test_the_checker_sees_the_gui_and_catches_breaks():
    graph = import_contracts.build_graph()
    modules = set(graph.modules)
    # the GUI lives in app/ but is part of the graph (grimp alone would miss it)
    assert "defect_studio.app.shell.window" in modules
    assert "defect_studio.kinds.segdec.train" in modules
    assert "PySide6" in graph.find_modules_directly_imported_by("defect_studio.app.shell.window")
    assert import_contracts.circles(graph) is None
    graph.add_import(importer="defect_studio.project.runs", imported="defect_studio.cli")
    graph.add_import(importer="defect_studio.cli", imported="defect_studio.project.runs")
    assert import_contracts.circles(graph) is not None


def test_a_forbidden_import_breaks_a_contract(monkeypatch):
    from importlinter import configuration
    from importlinter.application import use_cases
    from importlinter.application.app_config import settings

    class Broken(import_contracts.RepoGraphBuilder):
        def build(self, *args, **kwargs):
            g = import_contracts.build_graph()
            g.add_import(importer="defect_studio.deploy.runtime", imported="torch")
            return g

    configuration.configure()
    settings.configure(GRAPH_BUILDER=Broken(), DEFAULT_CACHE_DIR=None)
    assert use_cases.lint_imports(config_filename=str(REPO / ".importlinter")) is False


def test_pyproject_lists_every_package_folder():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    declared = set(cfg["tool"]["setuptools"]["packages"])
    dirs = cfg["tool"]["setuptools"]["package-dir"]
    found = set()
    for package, folder in dirs.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([package, *rel.parts]))
    assert declared == found
    mods = import_contracts.module_files()
    assert all(m.startswith("defect_studio") for m in mods)


@pytest.mark.slow
def test_wheel_installs_only_defect_studio(tmp_path):
    # build from a copy: setuptools writes build/ and *.egg-info into the source folder
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("core", "app", "resources"):
        shutil.copytree(REPO / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next(tmp_path.glob("defect_studio-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"defect_studio", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    for needed in ("defect_studio/__init__.py", "defect_studio/__main__.py",
                   "defect_studio/app/shell/window.py", "defect_studio/kinds/segdec/train.py",
                   "defect_studio/resources/icons/app.svg",
                   "defect_studio/resources/demo_recipe.json"):
        assert needed in names
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)


def test_a_users_core_package_does_not_shadow_ours(tmp_path):
    """A Django-style `core/` (and `app/`) in the working folder, which broke
    `python -m core.cli`."""
    for name in ("core", "app", "resources"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('user package')\n")
    (tmp_path / "core" / "cli.py").write_text("raise SystemExit('wrong cli')\n")
    r = subprocess.run([sys.executable, "-m", "defect_studio", "--version"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    code = ("from defect_studio.deploy.runtime import load_package; "
            "from defect_studio.resources import RESOURCE_DIR; "
            "print((RESOURCE_DIR / 'demo_recipe.json').is_file())")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr


def test_every_page_is_a_room():
    for page in ("label", "train", "evaluate", "review"):
        folder = REPO / "app" / page
        assert (folder / "page.py").is_file(), page
        assert (folder / "state.py").is_file(), f"app/{page}/state.py (the page's Qt-free state)"


def test_the_gui_free_contract_names_every_part_of_core():
    """A new module at core/'s top is covered by "core never imports the GUI or Qt"."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".importlinter")
    listed = set(cfg["importlinter:contract:core-gui-free"]["source_modules"].split())
    parts = {".".join(m.split(".")[:2]) for m in import_contracts.module_files()
             if m.count(".") >= 1}
    parts -= {"defect_studio.app", "defect_studio.__main__"}
    assert parts <= listed, sorted(parts - listed)


def test_every_import_of_a_defect_studio_name_resolves():
    """`from defect_studio.X import name` anywhere (benchmarks and scripts too, which no
    test runs whole) names a module or attribute that exists: a move leaves no stale import."""
    import ast
    import importlib
    import importlib.util

    stale = []
    for folder in ("core", "app", "tests", "benchmarks", "scripts"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                        and node.module.split(".")[0] == "defect_studio"):
                    continue
                if node.module.endswith("__main__"):
                    continue
                module = importlib.import_module(node.module)
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    if not hasattr(module, alias.name) and not (
                            hasattr(module, "__path__") and importlib.util.find_spec(name)):
                        stale.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert stale == []
