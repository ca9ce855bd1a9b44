"""`import_dataset`: run a format reader and add what it found to a project."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from defect_studio.errors import (
    ImageReadError,
    ImportFormatError,
    MaskError,
    ProjectError,
    UserError,
)

from .base import ImportItem, ImportReport, read_mask_file, resolve_mask
from .detect import READERS, detect_format

# Commit every this many images: an interrupted import keeps what it did, and the
# database is not locked for the whole import.
CHUNK = 200


# Errors a malformed annotation can raise while its mask is built (wrong types, NaN,
# numbers too big for an integer): the item's mask is reported, the import goes on.
ANNOTATION_ERRORS = (ValueError, TypeError, OverflowError, KeyError, IndexError, AttributeError,
                     ZeroDivisionError, RecursionError, cv2.error)


class ImportStopped(ProjectError):
    """The import stopped part-way (disk full...); the report says what was saved."""

    def __init__(self, message: str, report: ImportReport):
        super().__init__(message)
        self.report = report


def import_dataset(src: Path | str, project, fmt: str = "auto", copy: bool = True,
                   progress: Callable[[int, int], None] | None = None, *,
                   allow_outside: bool = False) -> ImportReport:
    """Import images, labels and masks from `src` into an open, writable `project`.

    fmt: a name from READERS or "auto" (detect_format). copy: copy the files into the
    project, else keep absolute references. progress(done, total) is called after each
    image. Files that cannot be used are listed in the report with the reason; the
    import goes on. Images already in the project (same content) count as duplicates.
    Unassigned images get a split at the end. ImportFormatError when the source is not
    in the format, or holds no image at all.

    Paths an annotation file names (labelme imagePath, COCO file_name, VOC filename,
    YOLO data.yaml entries) must stay inside the source folder; items that leave it are
    skipped with the reason unless allow_outside. When saving fails part-way (disk
    full), ImportStopped says how many images were saved; its .report lists them.
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
    report.root = source_root(src)
    report.allow_outside = allow_outside
    items = [item for item in READERS[fmt].read(src, report) if _usable(item, report)]
    if not items:
        why = f"; {len(report.skipped)} files were skipped" if report.skipped else ""
        raise ImportFormatError(
            f"no images to import in '{src}' as {fmt} ({READERS[fmt].EXPECTS}){why}")
    before = {rec.id for rec in project.images()}
    seen: dict[int, str] = {}
    total = len(items)
    for start in range(0, total, CHUNK):
        mark = report.mark()
        try:
            with project.batch():
                for i, item in enumerate(items[start:start + CHUNK], start + 1):
                    try:
                        _import_one(project, item, copy, report, before, seen)
                    except ANNOTATION_ERRORS as e:  # one bad item never sinks the batch
                        report.skip(item.image_path, f"bad item: {type(e).__name__}: {e}")
                    if progress is not None:
                        progress(i, total)
        except ProjectError as e:  # this chunk was rolled back; earlier ones are saved
            report.rewind(mark)
            if not report.imported:
                raise
            _stop(project, report, e, total - start)
    if report.imported:
        project.assign_splits(only_unassigned=True)
    return report


# An annotation file given directly in one of these folders speaks for the data set
# folder above it (COCO's annotations/instances.json beside images/).
ANNOTATION_DIRS = frozenset({"annotations", "annotation", "labels", "label", "anns"})


def source_root(src: Path) -> Path:
    """The folder annotation paths must stay in: the source folder; for an annotation
    file, its folder (or the one above it, when that folder is annotations/ or labels/)."""
    src = src.absolute()
    if src.is_dir():
        return src
    return src.parent.parent if src.parent.name.lower() in ANNOTATION_DIRS else src.parent


def _usable(item: ImportItem, report: ImportReport) -> bool:
    """False (with a skipped row) for an item whose file name cannot be stored or whose
    image lies outside the source folder."""
    path = item.image_path
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        report.skip(path, "file name is not valid UTF-8: rename the file to import it")
        return False
    if not report.inside(path):
        report.skip(path, f"outside the source folder {report.root}: named by an annotation "
                          "file; pass --allow-outside to import it")
        return False
    if isinstance(item.mask, Path) and not report.inside(item.mask):
        report.skip(item.mask, "outside the source folder: mask not used")
        item.mask = None
        if item.label_from_mask:
            item.label = "unlabeled"
    return True


def _stop(project, report: ImportReport, error: ProjectError, left: int) -> None:
    """Raise ImportStopped with a truthful account of what was saved."""
    reason = str(error.__cause__ or error)
    try:
        project.assign_splits(only_unassigned=True)
        splits = "they have their train/val/test splits"
    except ProjectError:
        splits = "they have no split yet (run `defect-studio split` once there is space)"
    raise ImportStopped(
        f"the import stopped: {reason}. {report.imported} images were saved before that and "
        f"are in the project ({splits}); the other {left} were not imported. Free some space "
        f"and run the same import again: the saved ones are recognised as duplicates",
        report) from error


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
                from defect_studio.io.images import image_info

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
        except ANNOTATION_ERRORS as e:
            mask_problem = f"bad annotation: {type(e).__name__}: {e}"
        if mask_problem:
            mask, label = None, _fallback_label(item)
        elif mask is not None and item.folder_label == "ok" and mask.any():
            # the folder says good, the mask says defective: ask the user, never guess
            mask_problem = (f"conflict: the image is in a folder named OK but this mask marks "
                            f"{int(mask.sum())} defect pixels: the image is imported "
                            "unlabeled, without the mask; label it in the app (or import with "
                            "--format folders if the file is a second copy of the part)")
            mask, label = None, "unlabeled"
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
    from defect_studio.project.boxes import BoxError, check_type_name, clean_box

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
