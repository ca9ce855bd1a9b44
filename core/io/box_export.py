"""Box exporters: a project's typed boxes as YOLO detection and Pascal VOC, and the
box annotations of the COCO export.

- "yolo": OUT/data.yaml (written by PyYAML: path, the splits, names = the project's
  defect types by class id), OUT/images/<split>/ and
  OUT/labels/<split>/<stem>.txt with "class cx cy w h" (relative) per box. OK images
  get an empty label file (YOLO's background images).
- "voc": OUT/Annotations/<stem>.xml (written with xml.etree) and OUT/JPEGImages/ with
  the image files (hard links where possible); <bndbox> corners are 1-based inclusive
  pixels, and an OK image has an annotation without objects.

Both formats hold boxes only: defective images without boxes and unlabeled images
are left out and counted under "left_out" (exporting them would re-import as OK).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from defect_studio.io.atomic import atomic_write_bytes

BOX_FORMATS = ("yolo", "voc")


def coco_box_annotations(project, image_id: int, category_ids: dict[str, int]) -> list[dict]:
    """COCO annotation bodies (bbox-only, marked "defect_studio": "box") of an image's boxes."""
    return [{"segmentation": [], "bbox": [b.x, b.y, b.w, b.h], "area": b.w * b.h, "iscrowd": 0,
             "category_id": category_ids[b.type.lower()], "defect_studio": "box"}
            for b in project.boxes(image_id)]


def coco_categories(project) -> tuple[list[dict], dict[str, int]]:
    """COCO categories: 1 "defect" (mask regions) plus one per defect type."""
    cats = [{"id": 1, "name": "defect", "supercategory": "defect"}]
    ids = {"defect": 1}
    for t in project.defect_types():
        if t.name.lower() not in ids:
            ids[t.name.lower()] = len(cats) + 1
            cats.append({"id": len(cats) + 1, "name": t.name, "supercategory": "defect",
                         "color": t.color})
    return cats, ids


def _exportable(project, link_or_copy, out_images, unique_stems):
    """(record, stem, image file in OUT, boxes) of images with boxes or labelled OK."""
    records = project.images()
    stems = unique_stems(records)
    boxes = project.all_boxes()
    rows, left_out, missing = [], 0, []
    for rec in records:
        if rec.id not in boxes and rec.label != "ok":
            left_out += 1
            continue
        src = project.image_path(rec)
        if not src.is_file():
            missing.append(str(src))
            continue
        folder = out_images(rec)
        folder.mkdir(parents=True, exist_ok=True)
        dst = folder / f"{stems[rec.id]}{src.suffix.lower()}"
        if dst.exists():
            dst.unlink()
        link_or_copy(src, dst)
        rows.append((rec, stems[rec.id], dst, boxes.get(rec.id, [])))
    return rows, left_out, missing


def export_yolo(project, out: Path, link_or_copy, unique_stems) -> dict:
    """The YOLO detection export (see the module docstring)."""
    names = [t.name for t in project.defect_types()]
    index = {n.lower(): i for i, n in enumerate(names)}
    rows, left_out, missing = _exportable(
        project, link_or_copy, lambda r: out / "images" / (r.split or "train"), unique_stems)
    n_boxes = 0
    for rec, stem, _, boxes in rows:
        lines = [f"{index[b.type.lower()]} {(b.x + b.w / 2) / rec.width:.8f} "
                 f"{(b.y + b.h / 2) / rec.height:.8f} {b.w / rec.width:.8f} "
                 f"{b.h / rec.height:.8f}" for b in boxes]
        n_boxes += len(lines)
        label = out / "labels" / (rec.split or "train") / f"{stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(label, "".join(line + "\n" for line in lines).encode())
    splits = sorted({r.split or "train" for r, *_ in rows})
    data = {"path": ".", **{s: f"images/{s}" for s in splits},
            "names": dict(enumerate(names))}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False,
                          width=1 << 16)
    atomic_write_bytes(out / "data.yaml", text.encode("utf-8"))
    return {"format": "yolo", "out": str(out), "images": len(rows), "boxes": n_boxes,
            "types": names, "left_out": left_out, "missing": missing}


def export_voc(project, out: Path, link_or_copy, unique_stems) -> dict:
    """The Pascal VOC export (see the module docstring)."""
    rows, left_out, missing = _exportable(project, link_or_copy,
                                          lambda r: out / "JPEGImages", unique_stems)
    ann_dir = out / "Annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    n_boxes = 0
    for rec, stem, dst, boxes in rows:
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = "JPEGImages"
        ET.SubElement(root, "filename").text = dst.name
        size = ET.SubElement(root, "size")
        for k, v in (("width", rec.width), ("height", rec.height), ("depth", rec.channels)):
            ET.SubElement(size, k).text = str(v)
        for b in boxes:
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = b.type
            ET.SubElement(obj, "difficult").text = "0"
            bb = ET.SubElement(obj, "bndbox")
            # 1-based inclusive corners: the pixels the box covers
            x0, y0 = round(b.x) + 1, round(b.y) + 1
            x1 = max(round(b.x + b.w), x0)
            y1 = max(round(b.y + b.h), y0)
            for k, v in (("xmin", x0), ("ymin", y0), ("xmax", x1), ("ymax", y1)):
                ET.SubElement(bb, k).text = str(v)
            n_boxes += 1
        ET.indent(root)
        atomic_write_bytes(ann_dir / f"{stem}.xml", ET.tostring(root, encoding="utf-8",
                                                                xml_declaration=True))
    return {"format": "voc", "out": str(out), "images": len(rows), "boxes": n_boxes,
            "left_out": left_out, "missing": missing}
