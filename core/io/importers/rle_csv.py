"""Run-length CSV as in the Severstal steel-defect challenge: columns ImageId, ClassId,
EncodedPixels (or the older ImageId_ClassId, EncodedPixels), one row per image and
class; EncodedPixels = "start length start length ...", 1-based, column-major
(down the first column, then the next).

All classes merge into one defect mask. Images listed only with empty EncodedPixels,
or not listed at all, are OK. Images are looked up beside the CSV, in
train_images/ or images/ next to it, then by name anywhere under the source; rows
naming a missing image are reported.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from defect_studio.errors import ImportFormatError, MaskError

from .base import ImageIndex, ImportItem, ImportReport, SourceTree, walk_images

NAME = "rle-csv"
EXPECTS = "a CSV with ImageId, ClassId, EncodedPixels (Severstal run-length masks) and " \
          "its images"


def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
            return [c.strip() for c in next(csv.reader(fh), [])]
    except OSError:
        return []


def is_rle_csv(path: Path) -> bool:
    return "EncodedPixels" in _header(path)


def detect(tree: SourceTree) -> bool:
    if tree.root.is_file():
        return tree.root.suffix.lower() == ".csv" and is_rle_csv(tree.root)
    return any(is_rle_csv(tree.root / p) for p in tree.with_suffix(".csv") if len(p.parts) <= 2)


def rle_pairs_to_mask(encoded: str, h: int, w: int) -> np.ndarray:
    """Bool HxW from 'start length ...' (1-based, column-major); MaskError when the runs
    leave the image or the string is malformed."""
    nums = encoded.split()
    if len(nums) % 2:
        raise MaskError("EncodedPixels has an odd number of values")
    try:
        arr = np.asarray(nums, np.int64).reshape(-1, 2)
    except ValueError as e:
        raise MaskError(f"EncodedPixels is not numbers: {e}") from e
    flat = np.zeros(h * w, bool)
    for start, length in arr:
        if start < 1 or length < 0 or start - 1 + length > h * w:
            raise MaskError(f"run {start} {length} lies outside the {w}x{h} image")
        flat[start - 1:start - 1 + length] = True
    return flat.reshape(w, h).T


def mask_to_rle_pairs(mask: np.ndarray) -> str:
    """'start length ...' (1-based, column-major) of a bool mask."""
    flat = np.concatenate([[False], np.asarray(mask, bool).T.reshape(-1), [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])
    starts, ends = edges[::2], edges[1::2]
    return " ".join(f"{s + 1} {e - s}" for s, e in zip(starts, ends))


def _find_csv(src: Path) -> Path:
    if src.is_file():
        return src
    cands = [p for p in sorted(src.glob("*.csv")) + sorted(src.glob("*/*.csv")) if is_rle_csv(p)]
    if not cands:
        raise ImportFormatError(f"no CSV with an EncodedPixels column in {src}")
    return cands[0]


def read(src: Path, report: ImportReport) -> Iterator[ImportItem]:
    path = _find_csv(src)
    rows = _read_rows(path)
    root = src if src.is_dir() else path.parent
    image_dirs = [d for d in (path.parent / "train_images", path.parent / "images") if d.is_dir()]
    images = walk_images(image_dirs[0]) if image_dirs else walk_images(root)
    index = ImageIndex(root, images)
    runs: dict[Path, list[str]] = {}
    for image_id, encoded in rows:
        img = index.find(image_id, image_dirs[0] if image_dirs else path.parent)
        if img is None:
            report.skip(image_id, f"image not found: listed in {path.name}")
            continue
        runs.setdefault(img, [])
        if encoded.strip():
            runs[img].append(encoded)
    for img in index.images:
        enc = runs.get(img)
        if not enc:
            yield ImportItem(img, label="ok", note="" if enc is not None else "not in the CSV")
            continue

        def make(h: int, w: int, enc: list[str] = enc) -> np.ndarray:
            out = np.zeros((h, w), bool)
            for e in enc:
                out |= rle_pairs_to_mask(e, h, w)
            return out

        yield ImportItem(img, label="defective", mask=make, mask_file=f"{path}#{img.name}")


def _read_rows(path: Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip() for f in reader.fieldnames or []]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ImportFormatError(f"cannot read {path}: {e}") from e
    if "EncodedPixels" not in fields:
        raise ImportFormatError(f"{path} has no EncodedPixels column")
    out: list[tuple[str, str]] = []
    for r in rows:
        r = {(k or "").strip(): (v or "") for k, v in r.items()}
        if "ImageId" in r:
            image_id = r["ImageId"].strip()
        elif "ImageId_ClassId" in r:
            image_id = r["ImageId_ClassId"].rsplit("_", 1)[0].strip()
        else:
            raise ImportFormatError(f"{path} has no ImageId column (columns: {', '.join(fields)})")
        out.append((image_id, r.get("EncodedPixels", "")))
    return out
