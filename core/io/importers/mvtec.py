"""MVTec-AD: one category folder with train/good/, test/good/, test/<defect type>/ and
ground_truth/<defect type>/X_mask.png.

train/ -> split train, test/ -> split test; good -> ok; any other test folder ->
defective, with the mask from ground_truth/ when there is one. A folder holding
several categories (bottle/, cable/...) is refused with their names: a project is one
product, so import one category at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from defect_studio.errors import ImportFormatError

from .base import ImportItem, ImportReport, SourceTree, is_image, walk_images

NAME = "mvtec"
EXPECTS = "an MVTec-AD category: train/good/, test/good/, test/<type>/, " \
          "ground_truth/<type>/X_mask.png"


def _is_category(files: set[Path], prefix: Path = Path(".")) -> bool:
    return any(p.parent == prefix / "train" / "good" for p in files)


def detect(tree: SourceTree) -> bool:
    files = {p for p in tree.images}
    if _is_category(files):
        return True
    return bool(_categories(files))


def _categories(files: set[Path]) -> list[str]:
    return sorted({p.parts[0] for p in files
                   if len(p.parts) == 4 and p.parts[1] == "train" and p.parts[2] == "good"})


def read(src: Path, report: ImportReport) -> Iterator[ImportItem]:
    if not (src / "train" / "good").is_dir() and not (src / "test" / "good").is_dir():
        cats = [d.name for d in sorted(src.iterdir())
                if d.is_dir() and (d / "train" / "good").is_dir()] if src.is_dir() else []
        if cats:
            raise ImportFormatError(
                f"{src} holds {len(cats)} MVTec-AD categories ({', '.join(cats)}); import one "
                f"category folder at a time, e.g. {src / cats[0]}")
        raise ImportFormatError(f"{src} is not an MVTec-AD category: it has no train/good/ or "
                                f"test/good/ folder")
    gt = src / "ground_truth"
    used_masks: set[Path] = set()
    for split in ("train", "test"):
        root = src / split
        if not root.is_dir():
            continue
        for img in walk_images(root):
            kind = img.parent.relative_to(root).parts[0] if img.parent != root else ""
            if kind.lower() == "good":
                yield ImportItem(img, label="ok", split=split)
                continue
            if split == "train" or not kind:
                yield ImportItem(img, label="unlabeled", split=split,
                                 note="not in good/ or a test defect folder")
                continue
            mask = _find_mask(gt / kind, img.stem)
            if mask is None:
                yield ImportItem(img, label="defective", split=split,
                                 note="no ground-truth mask")
            else:
                used_masks.add(mask)
                yield ImportItem(img, label="defective", mask=mask, split=split,
                                 mask_file=str(mask))
    if gt.is_dir():
        for m in walk_images(gt):
            if m not in used_masks:
                report.skip(m, "mask without image")


def _find_mask(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}_mask.png", f"{stem}.png"):
        p = folder / name
        if p.is_file() and is_image(p):
            return p
    return None
