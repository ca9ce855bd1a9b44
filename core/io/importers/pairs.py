"""Image + mask pairs.

A file is a mask when
- its stem ends in _GT, _label, _mask (also -gt, _labels, _masks, _groundtruth; any
  case): X_GT.png, X_label.bmp, X_mask.png, X_mask.jpg belong to image X.*;
- it is a .png with the same stem as a non-PNG image in the same folder: NAME.png
  beside NAME.jpg (the magnetic-tile layout MT_*/Imgs/NAME.jpg + NAME.png);
- it lies in a folder named masks/ mask/ gt/ ground_truth/ groundtruth/ labels/
  annotations/ that mirrors an images/ (imgs/, image/) folder: images/a/x.jpg +
  masks/a/x.png (or masks/a/x_mask.png).
Masks are thresholded at 128 (soft-edged gray masks); lossless masks holding only
small values (0/1, class ids) count every nonzero pixel. A mask with a defect pixel
makes its image defective; an all-zero mask makes it OK with a clean mask, unless
the image lies in a defect folder (see folders.FolderLabels: NG/, or MT_Crack/
beside MT_Free/), which keeps it defective. Images without a mask are labelled by
their folder name (ok/good/free, ng/bad/defect), else unlabeled. Masks without an
image are reported.

The folder names' labels are never overridden by a mask: an image in an OK folder
whose mask marks defect pixels is imported unlabeled, without the mask, and the
conflict is reported (the user labels it). `doubtful_pairs` finds, for format
detection, the NAME.png beside NAME.jpg pairs whose .png is more likely the same part
saved twice than a mask (a photo, or defect pixels in an OK folder): "auto" then asks
for a format.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .base import (
    ImportItem,
    ImportReport,
    SourceTree,
    is_image,
    read_mask_file,
    walk_files,
)
from .folders import FolderLabels

NAME = "pairs"
EXPECTS = "images with masks: X.jpg + X_mask.png / X_GT.png / X_label.bmp, NAME.jpg + " \
          "NAME.png, or images/ + masks/ folders"

_MASK_SUFFIX = re.compile(r"^(.+?)[_-](gt|label|labels|mask|masks|groundtruth|ground_truth)$",
                          re.IGNORECASE)
_MASK_DIRS = ("masks", "mask", "gt", "ground_truth", "groundtruth", "labels", "label",
              "annotations")
_IMAGE_DIRS = frozenset({"images", "imgs", "image", "img"})


def pair_files(files: list[Path], same_stem: set[Path] | None = None
               ) -> tuple[dict[Path, Path], list[Path], list[Path]]:
    """Split image files into (image -> mask, images without a mask, masks without an
    image). Paths are returned as given (relative or absolute). `same_stem`, when given,
    receives the images paired only by the NAME.png-beside-NAME.jpg rule."""
    files = [f for f in files if is_image(f)]
    by_dir_stem: dict[tuple[Path, str], list[Path]] = {}
    for f in files:
        by_dir_stem.setdefault((f.parent, f.stem.lower()), []).append(f)

    masks: dict[Path, tuple[Path, str]] = {}  # mask -> (folder, stem of its image)
    weak: set[Path] = set()  # masks found only by the same-stem rule
    for f in files:
        m = _MASK_SUFFIX.match(f.stem)
        if m:
            masks[f] = (f.parent, m.group(1).lower())
        elif f.suffix.lower() == ".png":
            group = by_dir_stem[(f.parent, f.stem.lower())]
            if any(g.suffix.lower() != ".png" for g in group):
                masks[f] = (f.parent, f.stem.lower())
                weak.add(f)
    mask_dir_files = {f for f in files if f not in masks and _in_mask_dir(f)}

    images = [f for f in files if f not in masks and f not in mask_dir_files]
    image_keys = {(f.parent, f.stem.lower()): f for f in images}
    pairs: dict[Path, Path] = {}
    for mask, key in masks.items():
        img = image_keys.get(key)
        if img is not None and img not in pairs:
            pairs[img] = mask
    # Mirrored folders: images/a/x.jpg <- masks/a/x.png or masks/a/x_mask.png
    mirrored: dict[tuple[Path, str], Path] = {}
    for f in mask_dir_files | {m for m in masks if _in_mask_dir(m)}:
        stem = f.stem
        mm = _MASK_SUFFIX.match(stem)
        mirrored[(f.parent, (mm.group(1) if mm else stem).lower())] = f
    if mirrored:
        for img in images:
            if img in pairs:
                continue
            for cand_dir in _mirror_dirs(img.parent):
                found = mirrored.get((cand_dir, img.stem.lower()))
                if found is not None:
                    pairs[img] = found
                    break
    if same_stem is not None:
        same_stem.update(img for img, mask in pairs.items()
                         if mask in weak and not _in_mask_dir(mask))
    used = set(pairs.values())
    orphans = [m for m in list(masks) + sorted(mask_dir_files) if m not in used]
    without = [f for f in images if f not in pairs]
    return pairs, without, orphans


def _in_mask_dir(f: Path) -> bool:
    return any(part.lower() in _MASK_DIRS for part in f.parent.parts)


def _mirror_dirs(folder: Path) -> Iterator[Path]:
    parts = folder.parts
    for i, part in enumerate(parts):
        if part.lower() in _IMAGE_DIRS:
            for md in _MASK_DIRS:
                yield Path(*parts[:i], md, *parts[i + 1:])


def detect(tree: SourceTree) -> bool:
    pairs, _, _ = pair_files(tree.files)
    return bool(pairs)


# At most this many candidate masks are read by format detection (the reader checks all).
MAX_CONFLICT_CHECKS = 64


def doubtful_pairs(tree: SourceTree, limit: int = MAX_CONFLICT_CHECKS
                   ) -> list[tuple[Path, Path, str]]:
    """(image, .png, why) for pairs of the same-stem rule (NAME.png beside NAME.jpg) whose
    .png is more likely a second copy of the part than its mask: in a folder named OK it
    marks defect pixels (it would make a good part defective), anywhere it looks like a
    photo (most pixels neither 0 nor its top value; masks with values up to 10 are index
    masks), or it cannot be read. Relative paths; at most `limit` candidates are read."""
    from defect_studio.errors import UserError
    from defect_studio.io.images import read_image

    same: set[Path] = set()
    pairs, without, _ = pair_files(tree.files, same)
    candidates = sorted(same)[:limit]
    if not candidates:
        return []
    labels = FolderLabels(tree.root, [tree.root / p for p in list(pairs) + without])
    out: list[tuple[Path, Path, str]] = []
    for img in candidates:
        png = tree.root / pairs[img]
        try:
            raw = read_image(png)
            raw = raw.max(axis=2) if raw.ndim == 3 else raw
            top = int(raw.max()) if raw.size else 0
            photo = top > 10 and float(np.mean((raw == 0) | (raw == top))) < 0.9
            marks = bool(read_mask_file(png).any())
        except (UserError, OSError, ValueError):
            out.append((img, pairs[img], "cannot be read as a mask"))
            continue
        if photo:
            out.append((img, pairs[img], "looks like a photo, not a mask"))
        elif marks and labels.classify(tree.root / img)[0] == "ok":
            out.append((img, pairs[img], "is in a folder named OK, where a mask would make "
                                         "the good part defective"))
    return out


def read(src: Path, report: ImportReport) -> Iterator[ImportItem]:
    if src.is_file():
        from defect_studio.errors import ImportFormatError

        raise ImportFormatError(f"{src} is a file; the 'pairs' format expects a folder of "
                                f"images and masks")
    # relative paths: folder names above src (/data/labels/...) must not look like mask folders
    rel = [p.relative_to(src) for p in walk_files(src)]
    rel_pairs, rel_without, rel_orphans = pair_files(rel)
    pairs = {src / k: src / v for k, v in rel_pairs.items()}
    without = [src / p for p in rel_without]
    for m in rel_orphans:
        report.skip(src / m, "mask without image")
    images = sorted(list(pairs) + without)
    labels = FolderLabels(src, images)
    for img in images:
        label, split = labels.classify(img)
        mask = pairs.get(img)
        if mask is not None and label == "defective":
            # A defect folder wins over an empty mask (4 MT_Uneven masks are all zero):
            # the image stays defective; the mask is kept as the source gives it.
            yield ImportItem(img, label="defective", mask=mask, split=split,
                             mask_file=str(mask))
        elif mask is not None:
            # In an OK folder the folder's label stands: a mask with defect pixels is a
            # conflict (runner._import_one), never a defective part.
            yield ImportItem(img, label="ok", mask=mask, split=split, label_from_mask=True,
                             mask_file=str(mask), folder_label=label)
        else:
            yield ImportItem(img, label=label, split=split, note="no mask")
