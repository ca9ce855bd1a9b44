"""DAGM 2007: ClassN/Train/ and ClassN/Test/ with *.PNG images and a Label/ folder of
NNNN_label.PNG masks (and optionally Labels.txt: "index flag file 0 labelfile").

Train -> split train, Test -> split test. An image with a label mask is defective
(mask kept); one marked defective in Labels.txt without a mask file is defective
without a mask; every other image is OK. A folder holding several classes
(Class1/, Class2/...) is refused with their names: import one class at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from defect_studio.errors import ImportFormatError

from .base import ImportItem, ImportReport, SourceTree, is_image, split_from_name

NAME = "dagm"
EXPECTS = "a DAGM class folder: Train/ and Test/ with images and Label/NNNN_label.PNG masks"

_LABEL_STEM = re.compile(r"^(.+)_label$", re.IGNORECASE)


def _is_split_dir(name: str) -> bool:
    return name.lower() in ("train", "test")


def detect(tree: SourceTree) -> bool:
    for p in tree.files:
        parts = [x.lower() for x in p.parts]
        if len(parts) >= 3 and parts[-2] == "label" and _is_split_dir(parts[-3]) \
                and (_LABEL_STEM.match(p.stem) or p.name.lower() == "labels.txt"):
            return True
    return False


def _split_dirs(src: Path) -> list[Path]:
    if _is_split_dir(src.name) and (src / "Label").is_dir():
        return [src]
    return [d for d in sorted(src.iterdir()) if d.is_dir() and _is_split_dir(d.name)
            and any(c.is_dir() and c.name.lower() == "label" for c in d.iterdir())]


def read(src: Path, report: ImportReport) -> Iterator[ImportItem]:
    if not src.is_dir():
        raise ImportFormatError(f"{src} is not a folder; DAGM expects ClassN/Train and Test")
    dirs = _split_dirs(src)
    if not dirs:
        classes = [d.name for d in sorted(src.iterdir()) if d.is_dir() and _split_dirs(d)]
        if classes:
            raise ImportFormatError(
                f"{src} holds {len(classes)} DAGM classes ({', '.join(classes)}); import one "
                f"class folder at a time, e.g. {src / classes[0]}")
        raise ImportFormatError(f"{src} is not a DAGM class folder: no Train/ or Test/ folder "
                                f"with a Label/ folder in it")
    for d in dirs:
        yield from _read_split(d, split_from_name(d.name), report)


def _read_split(folder: Path, split: str | None, report: ImportReport) -> Iterator[ImportItem]:
    label_dir = next((c for c in folder.iterdir() if c.is_dir() and c.name.lower() == "label"),
                     None)
    masks: dict[str, Path] = {}
    flagged: set[str] = set()
    if label_dir is not None:
        for m in sorted(label_dir.iterdir()):
            mm = _LABEL_STEM.match(m.stem)
            if mm and is_image(m):
                masks[mm.group(1).lower()] = m
        listing = next((c for c in label_dir.iterdir() if c.name.lower() == "labels.txt"), None)
        if listing is not None:
            flagged = _read_labels_txt(listing, report)
    images = sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))
    stems = {p.stem.lower() for p in images}
    for stem, m in masks.items():
        if stem not in stems:
            report.skip(m, "mask without image")
    for img in images:
        stem = img.stem.lower()
        if stem in masks:
            yield ImportItem(img, label="defective", mask=masks[stem], split=split,
                             mask_file=str(masks[stem]))
        elif stem in flagged:
            yield ImportItem(img, label="defective", split=split,
                             note="defective in Labels.txt, no mask file")
        else:
            yield ImportItem(img, label="ok", split=split)


def _read_labels_txt(path: Path, report: ImportReport) -> set[str]:
    """Stems of the images Labels.txt marks defective (flag 1)."""
    flagged: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        report.skip(path, f"unreadable label list: {e}")
        return flagged
    for line in lines:
        cols = line.split()
        if len(cols) >= 3 and cols[1] == "1" and is_image(cols[2]):
            flagged.add(Path(cols[2]).stem.lower())
    return flagged
