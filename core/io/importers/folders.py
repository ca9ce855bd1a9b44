"""Folders of good and defective images: OK/ NG/, good/ bad/, pass/ fail/, ...

The nearest enclosing folder whose name says ok or defective (see
`label_from_name`) gives the label; folders beside an OK folder are defect types
(good/ scratch/ dent/, MT_Free/ MT_Crack/), hence defective; a folder named
train/val/test above or below it gives the split (train/OK/x.png and OK/train/x.png
both work). Images in no such folder are imported unlabeled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .base import (
    ImportItem,
    ImportReport,
    SourceTree,
    label_from_name,
    split_from_name,
    walk_images,
)

NAME = "folders"
EXPECTS = "image folders named by their class: OK/ NG/, good/ bad/, pass/ fail/ " \
          "(optionally under train/ val/ test/)"


def detect(tree: SourceTree) -> bool:
    labelled = {p.parent for p in tree.images
                if any(label_from_name(part) for part in p.parent.parts)}
    return bool(labelled) or (bool(tree.images) and label_from_name(tree.root.name) is not None)


# Folder names that say nothing about the class: never read as "a defect type".
_NEUTRAL = frozenset({"unlabeled", "unlabelled", "unknown", "unsorted", "todo", "new", "images",
                      "imgs", "img", "image", "misc", "other", "others", "all", "data"})


class FolderLabels:
    """Labels and splits from folder names.

    The nearest folder (from the image up to and including src) whose name says ok
    or defective gives the label. A folder beside an OK folder (MT_Blowhole beside
    MT_Free, scratch/ beside good/) is a defect type, hence defective, unless its name
    is neutral (images, unknown, other...) or a split. The nearest train/val/test
    folder gives the split.
    """

    def __init__(self, src: Path, images: list[Path]):
        self.src = src
        dirs = {d for img in images for d in img.relative_to(src).parents}
        self.ok_parents = {d.parent for d in dirs
                           if d != Path(".") and label_from_name(d.name) == "ok"}

    def _label_of(self, rel_dir: Path) -> str | None:
        name = rel_dir.name
        said = label_from_name(name)
        if said:
            return said
        if rel_dir.parent in self.ok_parents and name.lower() not in _NEUTRAL \
                and split_from_name(name) is None:
            return "defective"
        return None

    def classify(self, image: Path) -> tuple[str, str | None]:
        """(label, split) of an image below src."""
        rel = image.parent.relative_to(self.src)
        label: str | None = None
        split: str | None = None
        for d in [rel, *rel.parents]:
            if d == Path("."):
                label = label or label_from_name(self.src.name)
                split = split or split_from_name(self.src.name)
                break
            label = label or self._label_of(d)
            split = split or split_from_name(d.name)
        return label or "unlabeled", split


def read(src: Path, report: ImportReport) -> Iterator[ImportItem]:
    if src.is_file():
        raise_not_folder(src)
    images = walk_images(src)
    labels = FolderLabels(src, images)
    for img in images:
        label, split = labels.classify(img)
        note = "" if label != "unlabeled" else "not in an OK/NG folder"
        yield ImportItem(img, label=label, split=split, note=note)


def raise_not_folder(src: Path) -> None:
    from defect_studio.errors import ImportFormatError

    raise ImportFormatError(f"{src} is a file; the 'folders' format expects a folder with "
                            f"OK/ and NG/ (or good/ bad/) sub-folders")
