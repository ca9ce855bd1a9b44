"""COCO JSON: {"images": [...], "annotations": [...], "categories": [...]}.

Segmentation may be polygons, uncompressed RLE ({"counts": [..], "size": [h, w]}) or
compressed RLE (the COCO string encoding, decoded here); an annotation with only a
bbox becomes a box (mask marked rough). Every bbox is also kept as a typed box (its
category's name is the type), except the mask regions of Defect Studio's own export
(marked "defect_studio": "mask"; its boxes are marked "box"). Images without
annotations are OK. Annotations of unknown categories or images are reported. Image files are looked
up from file_name relative to the JSON's folder (also images/ beside it, its
parent), then by name anywhere under the source. The source may be the JSON file or
a folder holding one or more (split from a train/val/test word in the file name).

Defect Studio's own export adds per-image "label", "split", "has_mask" and
"mask_rough" fields; they are honoured so that an export re-imports unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from defect_studio.errors import ImportFormatError, MaskError

from .base import (
    ImageIndex, ImportItem, ImportReport, SourceTree, box_mask, fill_polygons, peek_text,
    walk_files, walk_images,
)

NAME = "coco"
EXPECTS = "a COCO JSON file with \"images\" and \"annotations\" (images beside it or in " \
          "images/)"


# ---------------------------------------------------------------- RLE

def rle_decode_string(s: str) -> list[int]:
    """Counts of a compressed COCO RLE string (pycocotools' 6-bit, delta-coded format)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(s):
                raise ValueError("truncated RLE string")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_encode_string(counts: list[int]) -> str:
    """The compressed COCO RLE string of run counts (inverse of rle_decode_string)."""
    out: list[str] = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def rle_to_mask(counts: list[int], h: int, w: int) -> np.ndarray:
    """Bool HxW from COCO run counts (column-major, starting with a background run)."""
    cnt = np.asarray(counts, np.int64)  # OverflowError for counts like 10**23
    if cnt.ndim != 1 or (cnt < 0).any() or (cnt > h * w).any() or int(cnt.sum()) != h * w:
        raise ValueError(f"RLE covers {int(cnt.sum())} pixels, image has {h * w}")
    flat = np.repeat(np.arange(len(cnt)) % 2 == 1, cnt)
    return flat.reshape(w, h).T


def mask_to_rle_counts(mask: np.ndarray) -> list[int]:
    """Run counts (column-major, first run background) of a bool mask."""
    flat = np.asarray(mask, bool).T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(edges).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs
    return [int(r) for r in runs]


# ---------------------------------------------------------------- detection

def is_coco_json(path: Path) -> bool:
    head = peek_text(path, 65536)
    return '"images"' in head and ('"annotations"' in head or '"categories"' in head
                                   or len(head) >= 65536) and '"shapes"' not in head


def detect(tree: SourceTree) -> bool:
    if tree.root.is_file():
        return tree.root.suffix.lower() == ".json" and is_coco_json(tree.root)
    return any(is_coco_json(tree.root / p) for p in tree.with_suffix(".json")
               if len(p.parts) <= 3)


def _split_of(name: str) -> str | None:
    m = re.search(r"(?<![a-z])(train|val|valid|validation|test)(?![a-z])", name.lower())
    if not m:
        return None
    return {"valid": "val", "validation": "val"}.get(m.group(1), m.group(1))


# ---------------------------------------------------------------- reading

def read(src: Path, report: ImportReport) -> Iterator[ImportItem]:
    if src.is_file():
        jsons, root = [src], src.parent
    else:
        jsons = [p for p in walk_files(src) if p.suffix.lower() == ".json"
                 and len(p.relative_to(src).parts) <= 3 and is_coco_json(p)]
        root = src
        if not jsons:
            raise ImportFormatError(f"no COCO JSON (with \"images\") found in {src}")
    index: ImageIndex | None = None
    for js in jsons:
        try:
            data = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:  # RecursionError: nesting bomb
            raise ImportFormatError(f"cannot read COCO file {js}: {type(e).__name__}: "
                                    f"{str(e)[:200]}") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise ImportFormatError(f"{js} is not a COCO file: no \"images\" list")
        if index is None:
            index = ImageIndex(root, walk_images(root))
        yield from _read_one(js, data, index, _split_of(js.stem) if len(jsons) > 1 else None,
                             report)


def _locate(js: Path, file_name: str, index: ImageIndex) -> Path | None:
    fn = file_name.replace("\\", "/")
    p = Path(fn)
    if p.is_absolute():
        return p if p.is_file() else index.find(fn, js.parent)
    for base in (js.parent, js.parent / "images", js.parent.parent, js.parent.parent / "images"):
        if (base / p).is_file():
            return base / p
    return index.find(fn, js.parent)


def _read_one(js: Path, data: dict, index: ImageIndex, split: str | None,
              report: ImportReport) -> Iterator[ImportItem]:
    cats = data.get("categories")
    cat_ids = {_key(c.get("id")) for c in cats if isinstance(c, dict)} - {None} \
        if isinstance(cats, list) else None
    names = {_key(c.get("id")): str(c.get("name") or c.get("id")) for c in cats
             if isinstance(c, dict)} if isinstance(cats, list) else {}
    images: dict = {}
    for im in data["images"]:
        if isinstance(im, dict) and _key(im.get("id")) is not None \
                and isinstance(im.get("file_name"), str) and im["file_name"]:
            images[im["id"]] = im
        else:
            report.skip(js, f"malformed image entry (id must be a number or text, file_name "
                            f"text): {str(im)[:80]}")
    anns: dict = {k: [] for k in images}
    annotations = data.get("annotations")
    if annotations is not None and not isinstance(annotations, list):
        report.skip(js, f"\"annotations\" is not a list ({type(annotations).__name__}): "
                        "annotations ignored, images imported unlabeled")
        annotations = []
        for im in images.values():
            im["label"] = "unlabeled"
    for i, a in enumerate(annotations or []):
        where = f"{js}#annotation{_key(a.get('id')) or i if isinstance(a, dict) else i}"
        if not isinstance(a, dict) or _key(a.get("image_id")) not in images:
            report.skip(where, "annotation for an unknown image id")
            continue
        if cat_ids is not None and _key(a.get("category_id")) not in cat_ids:
            report.skip(where, f"unknown class: category {str(a.get('category_id'))[:40]}")
            continue
        anns[a["image_id"]].append(a)
    for image_id, im in images.items():
        path = _locate(js, im["file_name"], index)
        if path is None:
            report.skip(im["file_name"], f"image not found: listed in {js.name}")
            continue
        yield _item(path, im, anns[image_id], split, f"{js}#image{image_id}", report, names)


def _key(value: object) -> int | str | None:
    """An id usable as a key (int or text); None for lists, dicts, floats, booleans."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    return value


def _item(path: Path, im: dict, anns: list, split: str | None, where: str,
          report: ImportReport, names: dict | None = None) -> ImportItem:
    own_label = im.get("label") if im.get("label") in ("ok", "defective", "unlabeled") else None
    own_split = im.get("split") if im.get("split") in ("train", "val", "test") else split
    boxes = _boxes(anns, names or {})
    # Defect Studio's export marks its box-only annotations: they are not mask regions
    anns = [a for a in anns if a.get("defect_studio") != "box"]
    if not anns and boxes:
        return ImportItem(path, label=own_label or "defective", split=own_split, boxes=boxes,
                          mask_file=where, mask=(lambda h, w: np.zeros((h, w), bool))
                          if im.get("has_mask") else None, mask_rough=bool(im.get("mask_rough")))
    rough = bool(im.get("mask_rough")) or any(not a.get("segmentation") for a in anns)
    if not anns:
        label = own_label or "ok"
        if im.get("has_mask"):
            return ImportItem(path, label=label, split=own_split,
                              mask=lambda h, w: np.zeros((h, w), bool), mask_rough=rough)
        return ImportItem(path, label=label, split=own_split)

    def make(h: int, w: int) -> np.ndarray:
        out = np.zeros((h, w), bool)
        for a in anns:
            out |= _ann_mask(a, h, w)
        return out

    return ImportItem(path, label=own_label or "defective", mask=make, mask_rough=rough,
                      split=own_split, mask_file=where, boxes=boxes or None)


def _boxes(anns: list, names: dict) -> list:
    """Typed boxes (category name, x, y, w, h) of the annotations with a bbox; the mask
    regions of Defect Studio's own export are not boxes."""
    out = []
    for a in anns:
        bbox = a.get("bbox")
        if a.get("defect_studio") == "mask" or not isinstance(bbox, list) or len(bbox) != 4:
            continue
        out.append((names.get(a.get("category_id"), str(a.get("category_id"))), *bbox))
    return out


def _ann_mask(a: dict, h: int, w: int) -> np.ndarray:
    seg = a.get("segmentation")
    if isinstance(seg, dict):
        counts = seg.get("counts")
        size = seg.get("size") or [h, w]
        if not isinstance(size, list) or len(size) != 2 or \
                not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
            raise MaskError(f"RLE size must be [height, width] numbers, got {str(size)[:40]}")
        if [size[0], size[1]] != [h, w]:
            raise MaskError(f"RLE size {size[1]}x{size[0]} does not match image {w}x{h}")
        if isinstance(counts, str) and len(counts) > 8 * h * w + 64:
            raise MaskError("bad RLE: the counts string is longer than the image")
        if isinstance(counts, list) and len(counts) > h * w + 1:
            raise MaskError("bad RLE: more runs than pixels")
        try:
            cnt = rle_decode_string(counts) if isinstance(counts, str) else list(counts)
            return rle_to_mask(cnt, h, w)
        except (ValueError, TypeError, OverflowError) as e:
            raise MaskError(f"bad RLE: {e}") from e
    if isinstance(seg, list) and seg:
        polys = [np.floor(np.asarray(p, np.float64).reshape(-1, 2)) for p in seg
                 if isinstance(p, list) and len(p) >= 6]
        return fill_polygons((h, w), polys)
    bbox = a.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4:
        try:
            x, y, bw, bh = (float(v) for v in bbox)
        except (TypeError, ValueError):  # reported as a bad box by the importer
            return np.zeros((h, w), bool)
        return box_mask((h, w), [(x, y, x + bw - 1, y + bh - 1)])
    return np.zeros((h, w), bool)

