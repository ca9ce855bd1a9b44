"""labelme: one JSON per image ({"shapes": [...], "imagePath": ..., "imageHeight",
"imageWidth"}), usually beside the image.

Polygons are filled; rectangles become boxes (mask marked rough); circles (centre +
a point on the rim) are filled; lines and line strips are drawn 3 px wide, points
as 3 px discs. The image is found from imagePath (relative to the JSON), else by
the JSON's own stem; embedded imageData alone is not imported (the project keeps
image files, not JSON blobs). A JSON without shapes means OK. Images with no JSON are
imported unlabeled; JSONs whose image is missing are reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .base import (
    ImageIndex,
    ImportItem,
    ImportReport,
    SourceTree,
    check_coords,
    is_image,
    peek_text,
    walk_files,
)

NAME = "labelme"
EXPECTS = "labelme JSON files (with \"shapes\") beside their images"


def is_labelme_json(path: Path) -> bool:
    head = peek_text(path)
    return '"shapes"' in head and '"annotations"' not in head


def detect(tree: SourceTree) -> bool:
    if tree.root.is_file():
        return tree.root.suffix.lower() == ".json" and is_labelme_json(tree.root)
    return any(is_labelme_json(tree.root / p) for p in tree.with_suffix(".json")[:20])


def read(src: Path, report: ImportReport) -> Iterator[ImportItem]:
    root = src.parent if src.is_file() else src
    files = [src] if src.is_file() else list(walk_files(src))
    index = ImageIndex(root, [f for f in files if is_image(f)])
    used: set[Path] = set()
    for js in (f for f in files if f.suffix.lower() == ".json"):
        try:
            data = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:  # RecursionError: nesting bomb
            report.skip(js, f"unreadable JSON: {type(e).__name__}: {str(e)[:200]}")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
            report.skip(js, "not a labelme file: no \"shapes\" list")
            continue
        named = data.get("imagePath")
        named = named if isinstance(named, str) else ""
        img = index.find(named, js.parent) or index.find(js.stem, js.parent)
        if img is None:
            hint = " (the JSON embeds it as imageData: save it beside the JSON under that " \
                   "name to import it)" if data.get("imageData") else ""
            report.skip(js, f"image not found: {named or js.stem}{hint}")
            continue
        if img in used:
            report.skip(js, f"second annotation file: {img.name} has one already")
            continue
        used.add(img)
        yield _item(img, js, data["shapes"], report)
    if not src.is_file():
        for img in index.images:
            if img not in used:
                yield ImportItem(img, label="unlabeled", note="no labelme JSON")


def _item(img: Path, js: Path, shapes: list, report: ImportReport) -> ImportItem:
    usable: list[tuple[str, np.ndarray, str]] = []  # kind, points, label (type of a box)
    for i, sh in enumerate(shapes):
        kind = str(sh.get("shape_type") or "polygon") if isinstance(sh, dict) else "?"
        try:
            pts = np.asarray(sh["points"], np.float64).reshape(-1, 2)
        except (KeyError, TypeError, ValueError, OverflowError):
            report.skip(f"{js}#shape{i}", "malformed shape: no points")
            continue
        need = {"polygon": 3, "rectangle": 2, "circle": 2, "line": 2, "linestrip": 2, "point": 1}
        if kind not in need:
            report.skip(f"{js}#shape{i}", f"unsupported shape type: {kind}")
            continue
        if len(pts) < need[kind]:
            report.skip(f"{js}#shape{i}", f"malformed shape: {kind} with {len(pts)} points")
            continue
        name = sh.get("label") if isinstance(sh.get("label"), str) else ""
        usable.append((kind, pts, name.strip() or "defect"))
    if not usable:
        if shapes:
            return ImportItem(img, label="unlabeled", note="no usable shape", mask_file=str(js))
        return ImportItem(img, label="ok", mask_file=str(js))

    def make(h: int, w: int) -> np.ndarray:
        out = np.zeros((h, w), np.uint8)
        for kind, pts, _ in usable:
            pts = check_coords(pts, (h, w), f"{kind} points")
            p = np.round(pts).astype(np.int32)
            if kind == "polygon":
                cv2.fillPoly(out, [p.reshape(-1, 1, 2)], 255)
            elif kind == "rectangle":
                (x0, y0), (x1, y1) = p[0], p[1]
                cv2.rectangle(out, (int(x0), int(y0)), (int(x1), int(y1)), 255, -1)
            elif kind == "circle":
                r = int(round(float(np.hypot(*(pts[1] - pts[0])))))
                cv2.circle(out, (int(p[0][0]), int(p[0][1])), max(r, 1), 255, -1)
            elif kind in ("line", "linestrip"):
                cv2.polylines(out, [p.reshape(-1, 1, 2)], False, 255, 3)
            else:
                cv2.circle(out, (int(p[0][0]), int(p[0][1])), 3, 255, -1)
        return out > 0

    rough = any(kind == "rectangle" for kind, _, _ in usable)
    boxes = [(name, *pts[:2].min(axis=0), *np.abs(pts[1] - pts[0]))
             for kind, pts, name in usable if kind == "rectangle"]
    return ImportItem(img, label="defective", mask=make, mask_rough=rough, mask_file=str(js),
                      boxes=boxes or None)
