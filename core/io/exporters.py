"""Exporters: a project's labels and masks in formats other tools read.

- "masks": OUT/masks/<name>_mask.png (0/255, image size) for every image with a mask,
  and OUT/labels.csv with file (absolute image path), label, split, has_mask, rough,
  source (who set the label) and mask (the PNG, relative to OUT).
- "coco": OUT/annotations.json + OUT/images/ (hard links where possible, else
  copies). One "defect" category; one annotation per connected defect region with a
  polygon from its contour (pixel centres, x + 0.5) when filling that polygon gives
  the region back exactly, else compressed RLE (pycocotools; regions with holes, 1-pixel lines),
  plus bbox and area. Each image also carries "label", "split", "has_mask" and
  "mask_rough", so labels without masks survive a round trip through
  `defect-studio import --format coco`. Typed boxes are bbox-only annotations of
  one category per defect type (mask regions are marked "defect_studio": "mask",
  boxes "box", so a re-import keeps them apart).
- "yolo", "voc": the typed boxes (defect_studio.io.box_export).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from defect_studio.errors import UserError
from defect_studio.io import box_export
from defect_studio.io.atomic import atomic_write_bytes
from defect_studio.io.images import write_png_atomic

from .importers.base import fill_polygons
from .importers.coco import encode_rle

EXPORT_FORMATS = ("masks", "coco", "yolo", "voc")  # yolo, voc: boxes (defect_studio.io.box_export)


def export_project(project, fmt: str, out: Path | str) -> dict:
    """Export `project` as `fmt` ("masks" or "coco") into the folder `out` (created).

    Returns a summary: {"format", "out", "images", "masks", ...}. Images whose file is
    missing are left out and listed under "missing". UserError for an unknown format
    or an output folder that cannot be written.
    """
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"unknown export format '{fmt}' (known: {', '.join(EXPORT_FORMATS)})")
    out = Path(out).expanduser()
    check_export_target(project, out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder '{out}': {e.strerror or e}") from e
    if fmt == "masks":
        return _export_masks(project, out)
    if fmt in box_export.BOX_FORMATS:
        run = box_export.export_yolo if fmt == "yolo" else box_export.export_voc
        return run(project, out, _link_or_copy, _unique_stems)
    return _export_coco(project, out)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_export_target(project, out: Path) -> None:
    """UserError when the export would write into the project folder or into a folder
    that holds one of its images (a linked source folder): OUT, OUT/images, OUT/masks."""
    target = out.absolute().resolve()
    root = Path(project.root).resolve()
    written = {target, target / "images", target / "masks"}
    if _inside(target, root) or root in written:
        raise UserError(
            f"cannot export into '{out}': the export would write inside the project folder "
            f"'{project.root}'. Choose an empty folder outside the project; nothing was written")
    for rec in project.images():
        src = project.image_path(rec).absolute().resolve()
        if src.parent in written:
            raise UserError(
                f"cannot export into '{out}': it holds the project's source image '{src}' "
                "(a linked image), which the export could overwrite. Choose an empty folder "
                "elsewhere; nothing was written")


def _unique_stems(records) -> dict[int, str]:
    """File stems for the records, unique case-insensitively (the id is added on a clash)."""
    taken: set[str] = set()
    stems: dict[int, str] = {}
    for rec in records:
        stem = Path(rec.name).stem or f"image{rec.id}"
        if stem.lower() in taken:
            stem = f"{stem}_{rec.id}"
        taken.add(stem.lower())
        stems[rec.id] = stem
    return stems


def _export_masks(project, out: Path) -> dict:
    records = project.images()
    stems = _unique_stems(records)
    mask_dir = out / "masks"
    n_masks = 0
    rows = []
    for rec in records:
        mask_rel = ""
        if rec.has_mask:
            mask = project.load_mask(rec.id)
            mask_dir.mkdir(exist_ok=True)
            mask_rel = f"masks/{stems[rec.id]}_mask.png"
            write_png_atomic(out / mask_rel, (mask > 0).astype(np.uint8) * 255)
            n_masks += 1
        rows.append([project.image_path(rec).as_posix(), rec.label, rec.split or "",
                     int(rec.has_mask), int(rec.mask_rough), rec.label_source, mask_rel])
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "split", "has_mask", "rough", "source", "mask"])
        w.writerows(rows)
    return {"format": "masks", "out": str(out), "images": len(records), "masks": n_masks,
            "labels_csv": str(out / "labels.csv")}


def mask_annotations(mask: np.ndarray) -> list[dict]:
    """COCO annotation bodies (segmentation, bbox, area) of a mask's connected regions."""
    defect = np.asarray(mask) > 0
    h, w = defect.shape
    n, comp, stats, _ = cv2.connectedComponentsWithStats(defect.astype(np.uint8), connectivity=8)
    anns = []
    for k in range(1, n):
        region = comp == k
        x, y, bw, bh, area = (int(v) for v in stats[k])
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        polys = [c.reshape(-1, 2) for c in contours if len(c) >= 3]
        if polys and np.array_equal(fill_polygons((h, w), polys), region):
            seg: list | dict = [[round(float(v) + 0.5, 1) for v in p.reshape(-1)] for p in polys]
        else:
            seg = encode_rle(region)  # pycocotools' compressed RLE
        anns.append({"segmentation": seg, "bbox": [x, y, bw, bh], "area": area, "iscrowd": 0})
    return anns


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # other file system, or links not allowed
        shutil.copy2(src, dst)


def _export_coco(project, out: Path) -> dict:
    records = project.images()
    stems = _unique_stems(records)
    img_dir = out / "images"
    img_dir.mkdir(exist_ok=True)
    images, annotations, missing = [], [], []
    categories, cat_ids = box_export.coco_categories(project)
    for rec in records:
        src = project.image_path(rec)
        if not src.is_file():
            missing.append(str(src))
            continue
        name = f"{stems[rec.id]}{src.suffix.lower()}"
        dst = img_dir / name
        if dst.exists():
            if dst.resolve() == src.resolve():  # never delete a source (see check_export_target)
                raise UserError(f"export would overwrite the source image '{src}'; stopped")
            dst.unlink()
        _link_or_copy(src, dst)
        images.append({"id": rec.id, "file_name": f"images/{name}", "width": rec.width,
                       "height": rec.height, "label": rec.label, "split": rec.split,
                       "has_mask": rec.has_mask, "mask_rough": rec.mask_rough})
        if rec.has_mask:
            for body in mask_annotations(project.load_mask(rec.id)):
                annotations.append({"id": len(annotations) + 1, "image_id": rec.id,
                                    "category_id": 1, **body, "defect_studio": "mask"})
        for body in box_export.coco_box_annotations(project, rec.id, cat_ids):
            annotations.append({"id": len(annotations) + 1, "image_id": rec.id, **body})
    doc = {
        "info": {"description": "Defect Studio export", "version": "1.0"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    path = out / "annotations.json"
    atomic_write_bytes(path, json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    return {"format": "coco", "out": str(out), "images": len(images),
            "annotations": len(annotations), "masks": sum(1 for i in images if i["has_mask"]),
            "missing": missing, "annotations_json": str(path)}
