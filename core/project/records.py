"""The image record of a project and how it is read from the images table: shared by the
store (defect_studio.project.store) and the box tables (defect_studio.project.boxes), so
neither imports the other for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class ImageRecord:
    """One image of a project, as stored in the database."""

    id: int
    path: str  # relative (posix) to the project root when inside it, else absolute
    hash: str  # sha1 hex of the file's bytes
    width: int
    height: int
    channels: int
    bit_depth: int
    split: str | None  # None until assigned
    split_pinned: bool  # user-pinned: automatic re-splitting leaves it alone
    label: str  # one of LABELS
    label_source: str  # one of LABEL_SOURCES
    has_mask: bool
    mask_rough: bool  # mask made from boxes: only roughly right
    name: str  # file name for display


COLUMNS = (
    "id, path, hash, width, height, channels, bit_depth, split, split_pinned, label, "
    "label_source, has_mask, mask_rough"
)


def record_from_row(row: tuple) -> ImageRecord:
    """An ImageRecord from a row of `SELECT {COLUMNS} FROM images`."""
    (id_, path, hash_, w, h, c, bd, split, pinned, label, source, has_mask, rough) = row
    return ImageRecord(
        id=int(id_), path=path, hash=hash_, width=int(w), height=int(h), channels=int(c),
        bit_depth=int(bd), split=split, split_pinned=bool(pinned), label=label,
        label_source=source, has_mask=bool(has_mask), mask_rough=bool(rough),
        name=PurePosixPath(path).name,
    )
