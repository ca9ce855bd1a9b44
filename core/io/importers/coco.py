"""COCO JSON: {"images": [...], "annotations": [...], "categories": [...]}.

Segmentation may be polygons, uncompressed RLE ({"counts": [..], "size": [h, w]}) or
compressed RLE (the COCO string encoding; both decoded by pycocotools after their runs
are checked); an annotation with only a
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
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from defect_studio.errors import ImportFormatError, MaskError

from .base import (
    ImageIndex,
    ImportItem,
    ImportReport,
    SourceTree,
    box_mask,
    fill_polygons,
    peek_text,
    walk_files,
    walk_images,
)

NAME = "coco"
EXPECTS = "a COCO JSON file with \"images\" and \"annotations\" (images beside it or in " \
          "images/)"


# ---------------------------------------------------------------- RLE (pycocotools)

# pycocotools keeps run counts as unsigned 32-bit numbers
_MAX_COUNT = 2**32 - 1
# a compressed count is 1..7 six-bit characters ('0'..'o'); 7 hold any 32-bit delta
_MAX_CHARS_PER_COUNT = 7


def encode_rle(mask: np.ndarray) -> dict:
    """The compressed COCO RLE {"size": [h, w], "counts": text} of a mask (pycocotools)."""
    m = np.asfortranarray(np.asarray(mask, bool).astype(np.uint8))
    rle = coco_mask.encode(m)
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(seg: dict, h: int, w: int) -> np.ndarray:
    """Bool HxW of a COCO RLE segmentation, uncompressed ({"counts": [..]}) or compressed
    ({"counts": "text"}), decoded by pycocotools.

    MaskError (one bad annotation, never the whole file) for a size that is not the
    image's, counts that are not a list of whole numbers or an RLE text, negative runs,
    or runs that do not cover the image exactly: pycocotools' C decoder trusts its
    input (runs that fall short leave pixels uninitialised), so they are checked first.
    """
    counts = seg.get("counts")
    size = seg.get("size") or [h, w]
    if not isinstance(size, list) or len(size) != 2 or \
            not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
        raise MaskError(f"RLE size must be [height, width] numbers, got {str(size)[:40]}")
    if [size[0], size[1]] != [h, w]:
        raise MaskError(f"RLE size {size[1]}x{size[0]} does not match image {w}x{h}")
    if isinstance(counts, str):
        runs = _compressed_counts(counts, h * w)
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    elif isinstance(counts, list):
        runs = _plain_counts(counts, h * w)
        rle = coco_mask.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)
    else:
        raise MaskError(f"bad RLE: counts must be a list of numbers or an RLE text, not "
                        f"{type(counts).__name__}")
    total = int(runs.sum())
    if total != h * w:
        raise MaskError(f"bad RLE: the runs cover {total} pixels, the image has {h * w}")
    try:
        with warnings.catch_warnings():  # numpy 2's copy-keyword notice about pycocotools
            warnings.simplefilter("ignore", DeprecationWarning)
            return coco_mask.decode(rle).astype(bool)
    except (ValueError, TypeError, OverflowError) as e:
        raise MaskError(f"bad RLE: {e}") from e


def _plain_counts(counts: list, n_pixels: int) -> np.ndarray:
    if len(counts) > n_pixels + 1:
        raise MaskError("bad RLE: more runs than pixels")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in counts):
        raise MaskError("bad RLE: counts must be numbers")
    try:
        cnt = np.asarray(counts, np.float64)
    except (ValueError, TypeError, OverflowError) as e:
        raise MaskError(f"bad RLE: {e}") from e
    if not np.isfinite(cnt).all() or (cnt != np.floor(cnt)).any():
        raise MaskError("bad RLE: counts must be whole numbers")
    if (cnt < 0).any():
        raise MaskError("bad RLE: negative run length")
    if (cnt > min(n_pixels, _MAX_COUNT)).any():
        raise MaskError(f"bad RLE: a run is longer than the image ({n_pixels} pixels)")
    return cnt.astype(np.int64)


def _compressed_counts(text: str, n_pixels: int) -> np.ndarray:
    """The run counts of a compressed RLE text, for checking them (not for decoding: that
    is pycocotools' job). MaskError for characters outside '0'..'o', a count cut off, a
    count too long to be 32-bit, or a negative run."""
    if len(text) > _MAX_CHARS_PER_COUNT * (n_pixels + 1):
        raise MaskError("bad RLE: the counts text is longer than the image")
    try:
        c = np.frombuffer(text.encode("ascii"), np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        raise MaskError("bad RLE: the counts text has characters outside '0'..'o'") from None
    if c.size == 0:
        return np.zeros(0, np.int64)
    if ((c < 0) | (c > 63)).any():
        raise MaskError("bad RLE: the counts text has characters outside '0'..'o'")
    more = (c & 0x20) != 0
    if more[-1]:
        raise MaskError("bad RLE: the counts text is cut off")
    ends = np.flatnonzero(~more)  # last character of each count
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > _MAX_CHARS_PER_COUNT:
        raise MaskError("bad RLE: a count in the counts text is too long")
    group = np.repeat(np.arange(ends.size), lengths)
    k = np.arange(c.size) - starts[group]  # position of each character in its count
    x = np.zeros(ends.size, np.int64)
    np.add.at(x, group, (c & 0x1F) << (5 * k))
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * lengths[negative])  # sign-extend
    # from the third count on, each is stored as the difference to the one two before
    runs = x.copy()
    runs[2::2] = np.cumsum(x[2::2])
    if x.size > 3:
        runs[3::2] = x[1] + np.cumsum(x[3::2])
    if (runs < 0).any():
        raise MaskError("bad RLE: negative run length")
    if (runs > _MAX_COUNT).any():
        raise MaskError(f"bad RLE: a run is longer than the image ({n_pixels} pixels)")
    return runs


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
        return decode_rle(seg, h, w)
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

