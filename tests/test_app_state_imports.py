"""The page states load no Qt, and no import circle runs through the app's modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = ("label", "train", "evaluate", "review")


@pytest.mark.parametrize("page", PAGES)
def test_page_state_loads_no_qt(page):
    code = (f"import sys, defect_studio.app.{page}.state\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'PySide6', 'shiboken6', 'pyqtgraph'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def module_names() -> dict[str, Path]:
    out = {}
    for folder, package in ((REPO / "app", "defect_studio.app"), (REPO / "core", "defect_studio")):
        for f in folder.rglob("*.py"):
            parts = [p for p in f.relative_to(folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = f
    return out


def imports_of(name: str, path: Path, known: dict) -> set[str]:
    """The project modules a module imports (anywhere in it, lazy imports too)."""
    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package
                for _ in range(node.level - 1):
                    up = up.rpartition(".")[0]
                base = f"{up}.{base}" if base else up
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            r = resolve(t)
            if r is not None and r != name:
                found.add(r)
    return found


def test_no_import_circle_through_the_app():
    known = module_names()
    graph = {m: imports_of(m, p, known) for m, p in known.items()}

    def reaches(start: str, goal: str) -> list[str] | None:
        seen, todo = {start}, [[start]]
        while todo:
            path = todo.pop()
            for nxt in graph[path[-1]]:
                if nxt == goal:
                    return path + [goal]
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(path + [nxt])
        return None

    circles = [reaches(m, m) for m in graph if m.startswith("defect_studio.app")]
    assert [c for c in circles if c] == []
