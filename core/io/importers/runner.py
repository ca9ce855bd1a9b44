"""`import_dataset`: run a format reader and add what it found to a project."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from core.errors import ImageReadError, ImportFormatError, MaskError, ProjectError, UserError

from .base import ImportItem, ImportReport, read_mask_file, resolve_mask
from .detect import READERS, detect_format

# Commit every this many images: an interrupted import keeps what it did, and the
# database is not locked for the whole import.
CHUNK = 200


def import_dataset(src: Path | str, project, fmt: str = "auto", copy: bool = True,
                   progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Import images, labels and masks from `src` into an open, writable `project`.

    fmt: a name from READERS or "auto" (detect_format). copy: copy the files into the
    project, else keep absolute references. progress(done, total) is called after each
    image. Files that cannot be used are listed in the report with the reason; the
    import goes on. Images already in the project (same content) count as duplicates.
    Unassigned images get a split at the end. ImportFormatError when the source is not
    in the format, or holds no image at all.
    """
    if getattr(project, "readonly", False):
        raise ProjectError(f"project '{project.root}' is open read-only; open it for writing "
                           "to import into it")
    src = Path(src).expanduser()
    if not src.exists():
        raise ImportFormatError(f"'{src}' does not exist")
    if fmt == "auto":
        fmt = detect_format(src)
    if fmt not in READERS:
        raise ImportFormatError(f"unknown import format '{fmt}' (known: {', '.join(READERS)})")
    report = ImportReport(format=fmt, source=str(src.absolute()))
    items = list(READERS[fmt].read(src, report))
    if not items:
        why = f"; {len(report.skipped)} files were skipped" if report.skipped else ""
        raise ImportFormatError(
            f"no images to import in '{src}' as {fmt} ({READERS[fmt].EXPECTS}){why}")
    before = {rec.id for rec in project.images()}
    seen: dict[int, str] = {}
    total = len(items)
    for start in range(0, total, CHUNK):
        with project.batch():
            for i, item in enumerate(items[start:start + CHUNK], start + 1):
                _import_one(project, item, copy, report, before, seen)
                if progress is not None:
                    progress(i, total)
    if report.imported:
        project.assign_splits(only_unassigned=True)
    return report


def _fallback_label(item: ImportItem) -> str:
    return "unlabeled" if item.label_from_mask else item.label


def _import_one(project, item: ImportItem, copy: bool, report: ImportReport,
                before: set[int], seen: dict[int, str]) -> None:
    path = item.image_path
    mask: np.ndarray | None = None
    label = item.label
    mask_problem = ""
    if item.mask is not None:
        shape = None
        if callable(item.mask):
            try:
                from core.io.images import image_info

                meta = image_info(path)
            except ImageReadError as e:
                report.skip(path, f"unreadable image: {_reason(e)}")
                return
            shape = (meta.height, meta.width)
        try:
            if isinstance(item.mask, Path):
                mask = read_mask_file(item.mask)
            else:
                mask = resolve_mask(item.mask, shape) if shape else np.asarray(item.mask, bool)
        except ImageReadError as e:
            mask_problem = f"unreadable mask: {_reason(e)}"
        except MaskError as e:
            mask_problem = f"bad mask: {e}"
        if mask_problem:
            mask, label = None, _fallback_label(item)
    try:
        try:
            rec = _add(project, path, copy, label, item, mask)
        except MaskError as e:  # the mask does not fit: keep the image, report the mask
            mask_problem, mask, label = f"mask of the wrong size: {e}", None, _fallback_label(item)
            rec = _add(project, path, copy, label, item, None)
    except ImageReadError as e:
        report.skip(path, f"unreadable image: {_reason(e)}")
        return
    except ProjectError as e:
        report.skip(path, f"not added: {e}")
        return
    if mask_problem:
        where = item.mask_file or (item.mask if isinstance(item.mask, Path) else f"{path} (mask)")
        report.skip(where, mask_problem)
    if rec.id in before or rec.id in seen:
        report.duplicates += 1
        first = seen.get(rec.id, "an image already in the project")
        detail = f"same content as {first} ({rec.name})"
        if label != "unlabeled" and rec.label != "unlabeled" and label != rec.label and \
                not item.label_from_mask:
            detail += f"; labelled {label} here but {rec.label} there: kept {rec.label}"
        report.note(path, "duplicate", detail)
        return
    seen[rec.id] = str(path)
    if item.boxes is not None:
        rec = _add_boxes(project, rec, item, report)
    report.imported += 1
    report.by_label[rec.label] = report.by_label.get(rec.label, 0) + 1
    report.masks += int(rec.has_mask)
    empty = rec.label == "defective" and mask is not None and not mask.any()
    detail = "; ".join(x for x in (item.note, "without its mask" if mask_problem else "",
                                   "defective, but its mask is empty" if empty else "") if x)
    report.note(path, "imported", f"{rec.label}{'; ' + detail if detail else ''}")


def _add(project, path: Path, copy: bool, label: str, item: ImportItem,
         mask: np.ndarray | None):
    return project.add_image(
        path, copy=copy, label=label, source="import", split=item.split,
        mask=None if mask is None else mask.astype(np.uint8) * 255,
        mask_rough=item.mask_rough if mask is not None else False)


def _add_boxes(project, rec, item: ImportItem, report: ImportReport):
    """Store the item's typed boxes; a bad box is reported and left out, the rest kept."""
    from core.project.boxes import BoxError, check_type_name, clean_box

    where = item.mask_file or str(item.image_path)
    try:
        boxes = item.boxes(rec.height, rec.width) if callable(item.boxes) else item.boxes
    except (ValueError, TypeError, ArithmeticError) as e:
        report.skip(where, f"bad box: {e}")
        return rec
    good = []
    for i, (name, *xywh) in enumerate(boxes):
        try:
            good.append((check_type_name(name),
                         *clean_box(*xywh, rec.width, rec.height, f"box {i + 1}")))
        except BoxError as e:
            report.skip(f"{where}#box{i + 1}", f"bad box: {e}")
    if not good:
        return rec
    try:
        rec = project.set_boxes(rec.id, good, source="import", create_types=True)
    except UserError as e:  # the image stays, with its (rough) mask
        report.skip(where, f"boxes not saved: {e}")
        return rec
    report.boxes += len(good)
    return rec


def _reason(e: Exception) -> str:
    """The reason part of an ImageReadError ("cannot read image 'x': reason")."""
    msg = str(e)
    return msg.split("': ", 1)[1] if "': " in msg else msg
