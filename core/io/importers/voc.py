"""Pascal VOC XML: one <annotation> per image with <filename>, <size> and <object>s
with <bndbox> (xmin, ymin, xmax, ymax; 1-based inclusive pixel corners).

Boxes become box masks, marked rough, and typed boxes (<name> is the type); an
annotation without objects means OK. XML is parsed with defusedxml. The
image is found from <filename> (also when it lacks its extension) or the XML's stem,
preferring the image folder that pairs with the XML's folder (JPEGImages/ beside
Annotations/, IMAGES/ beside ANNOTATIONS/, Validation_Images/ beside
Validation_Annotations/). Images with no XML are imported unlabeled.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import defusedxml.ElementTree as ET  # no entity bombs or external entities

from .base import ImageIndex, ImportItem, ImportReport, SourceTree, box_mask, is_image, walk_files

NAME = "voc"
EXPECTS = "Pascal VOC XML files (<annotation> with <object><bndbox>) and their images"


def _is_voc(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(2048).decode("utf-8", errors="replace")
    except OSError:
        return False
    return "<annotation" in head


def detect(tree: SourceTree) -> bool:
    if tree.root.is_file():
        return tree.root.suffix.lower() == ".xml" and _is_voc(tree.root)
    return any(_is_voc(tree.root / p) for p in tree.with_suffix(".xml")[:20])


def read(src: Path, report: ImportReport) -> Iterator[ImportItem]:
    root = src.parent if src.is_file() else src
    files = list(walk_files(root))
    xmls = [src] if src.is_file() else [f for f in files if f.suffix.lower() == ".xml"]
    index = ImageIndex(root, [f for f in files if is_image(f)])
    used: set[Path] = set()
    for xml in xmls:
        try:
            ann = ET.parse(xml).getroot()
        except (ET.ParseError, ValueError, OSError) as e:  # DefusedXmlException: ValueError
            report.skip(xml, f"unreadable XML: {e}")
            continue
        if ann.tag != "annotation":
            report.skip(xml, f"not a VOC annotation: root element <{ann.tag}>")
            continue
        fname = (ann.findtext("filename") or "").strip()
        img = _find(index, fname, xml)
        if img is None:
            report.skip(xml, f"image not found: {fname or xml.stem}")
            continue
        if img in used:
            report.skip(xml, f"second annotation file: {img.name} has one already")
            continue
        used.add(img)
        boxes, typed = [], []
        for i, obj in enumerate(ann.iter("object")):
            bb = obj.find("bndbox")
            try:
                x0, y0, x1, y1 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError):
                report.skip(f"{xml}#object{i}", "malformed object: no usable <bndbox>")
                continue
            if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
                report.skip(f"{xml}#object{i}", "malformed object: <bndbox> coordinates must "
                                                 "be finite numbers")
                continue
            boxes.append((x0 - 1, y0 - 1, x1 - 1, y1 - 1))  # VOC corners are 1-based
            # as a typed box: x, y of the pixel corner, w, h spanning the inclusive pixels
            typed.append(((obj.findtext("name") or "defect").strip() or "defect",
                          x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1))
        n_obj = sum(1 for _ in ann.iter("object"))
        if boxes:
            yield ImportItem(img, label="defective", mask_rough=True, mask_file=str(xml),
                             mask=lambda h, w, b=tuple(boxes): box_mask((h, w), b),
                             boxes=typed)
        elif n_obj:
            yield ImportItem(img, label="unlabeled", note="no usable box in XML")
        else:
            yield ImportItem(img, label="ok")
    if not src.is_file():
        for img in index.images:
            if img not in used:
                yield ImportItem(img, label="unlabeled", note="no VOC XML")


def _find(index: ImageIndex, fname: str, xml: Path) -> Path | None:
    return (index.find(fname, xml.parent) if fname else None) or index.find(xml.stem, xml.parent)
