"""Draw docs/architecture.svg: the rooms of defect_studio and which room imports which.

    python scripts/architecture_picture.py [PREVIEW.png]   # needs Graphviz's `dot` on PATH

The graph is the real one (scripts/import_contracts.py reads every import statement of
core/, app/ and resources/), squashed to rooms: each page of app/, the window shell, the
shared widgets, each model kind, the kind registry and each kind-neutral package of core/.
An arrow A -> B says that some module of A imports one of B. Dashed arrows are imports
made inside a function (lazily) and nowhere at module level. Arrows into the base layer
(project, io and the small shared modules), which every room may use, are left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import import_contracts  # noqa: E402

REPO = import_contracts.REPO
OUT = REPO / "docs" / "architecture.svg"

GROUPS = [  # (cluster title, colour, rooms)
    ("app/ (defect_studio.app): the desktop app", "#e8f0fe",
     ["app.shell", "app.label", "app.train", "app.evaluate", "app.review", "app.common"]),
    ("core/kinds/: one folder per model kind", "#fdf0e0",
     ["kinds", "kinds.segdec", "kinds.anomaly", "kinds.detector"]),
    ("core/: kind-neutral (defect_studio)", "#e9f5e9",
     ["cli", "training", "evaluation", "inference", "deploy", "project", "io", "demo",
      "backbones", "base"]),
]
ROOM_LABELS = {
    "app.shell": "shell\nwindow, menus, entry", "app.common": "common\nwidgets, jobs",
    "app.label": "label\npage + state", "app.train": "train\npage + state",
    "app.evaluate": "evaluate\npage + state", "app.review": "review\npage + state",
    "kinds": "kinds (registry)\nModelKind", "kinds.segdec": "segdec\nMixSup / MFFPA",
    "kinds.anomaly": "anomaly\ngood parts only", "kinds.detector": "detector\nboxes + types",
    "training": "training\nrun framework", "deploy": "deploy\nexport, runtime, watch",
    "base": "errors, units, notices,\npreprocess, progress",
    "project": "project\nthe store", "io": "io\nimages, importers",
}
# rooms that every other room may use: arrows into them are left out of the picture
BASE_LAYER = ("base", "project", "io")


def room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "defect_studio" or len(parts) == 1:
        return None
    rest = parts[1:]
    if rest[0] == "kinds" and len(rest) > 1 and rest[1] == "base":
        return "kinds"
    if rest[0] in ("app", "kinds") and len(rest) > 1:
        return f"{rest[0]}.{rest[1]}"
    if rest[0] in ("resources", "__main__", "app"):
        return None
    if rest[0] in ("errors", "units", "preprocess", "progress", "crashlog", "notices"):
        return "base"
    return rest[0]


def lazy_only(files: dict[str, Path]) -> set[tuple[str, str]]:
    """(importer, imported top name) pairs found only inside functions."""
    top, inner = set(), set()
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.ImportFrom) and sub.module:
                        inner.add((mod, sub.module))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                top.add((mod, node.module))
    return inner - top


def main() -> int:
    graph = import_contracts.build_graph()
    files = import_contracts.module_files()
    lazy = lazy_only(files)
    edges: dict[tuple[str, str], bool] = defaultdict(bool)  # -> any module-level import
    for m in graph.modules:
        a = room(m)
        if a is None:
            continue
        for t in graph.find_modules_directly_imported_by(m):
            b = room(t)
            if b is None or b == a or b in BASE_LAYER:
                continue
            eager = not any((m, t2) in lazy for t2 in (t,))
            edges[(a, b)] |= eager
    lines = ["digraph rooms {", '  rankdir=TB; compound=true; fontname="Helvetica";',
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica",'
             ' fontsize=11];', '  edge [color="#555555", arrowsize=0.6];']
    for i, (title, colour, rooms) in enumerate(GROUPS):
        lines.append(f'  subgraph cluster_{i} {{ label="{title}"; style=filled; '
                     f'color="{colour}"; fontsize=12;')
        for r in rooms:
            label = ROOM_LABELS.get(r, r.split(".")[-1]).replace("\n", "\\n")
            lines.append(f'    "{r}" [label="{label}"];')
        lines.append("  }")
    for (a, b), eager in sorted(edges.items()):
        style = "" if eager else " [style=dashed]"
        lines.append(f'  "{a}" -> "{b}"{style};')
    lines.append("}")
    dot = "\n".join(lines)
    svg = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True,
                         check=True).stdout
    OUT.write_text(svg, encoding="utf-8")
    print(f"wrote {OUT} ({len(edges)} arrows)")
    if len(sys.argv) > 1:  # a PNG preview too: python scripts/architecture_picture.py x.png
        subprocess.run(["dot", "-Tpng", "-o", sys.argv[1]], input=dot, text=True, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
