"""Shared pieces of the dataset importers: the item each reader yields, the report,
folder-name conventions, and mask helpers (files, polygons, boxes).

A reader never touches the project: it turns a source tree into `ImportItem`s and
records what it could not use in the `ImportReport`. `import_dataset` (in
`runner.py`) then reads the images, resolves the masks and adds them to the project.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from defect_studio.errors import MaskError
from defect_studio.io.images import IMAGE_EXTENSIONS

IMAGE_EXTS = frozenset(IMAGE_EXTENSIONS)  # the one list, in core/io/images.py
# Lossless formats may hold index masks (0/1, class ids); a JPEG mask never does.
LOSSLESS_EXTS = frozenset({".png", ".bmp", ".tif", ".tiff"})
PROJECT_MARKER = "project.sqlite"
IGNORED_DIRS = frozenset({"__macosx", ".git", ".svn", "__pycache__", ".ipynb_checkpoints"})

# A mask may be given as an array, a file (read when the image size is known), or a
# function of the image size (height, width) for formats with relative coordinates.
MaskSource = np.ndarray | Path | Callable[[int, int], np.ndarray]
# Boxes with their type name, (type, x, y, w, h) in pixels (top-left corner and size), or a
# function of the image size (height, width) giving them, for relative coordinates.
BoxList = list[tuple[str, float, float, float, float]]
BoxSource = BoxList | Callable[[int, int], BoxList]

_OK_PHRASES = frozenset({
    "defect_free", "defectfree", "non_defective", "nondefective", "no_defect", "nodefect",
    "not_defective", "without_defect", "no_defects", "mt_free",
})
_OK_TOKENS = frozenset({"ok", "good", "pass", "passed", "free", "normal", "clean", "accept",
                        "accepted"})
_NG_TOKENS = frozenset({"ng", "nok", "bad", "defect", "defects", "defective", "fail", "failed",
                        "reject", "rejected", "anomaly", "anomalous", "abnormal", "faulty",
                        "damaged", "notok", "not_ok"})
_SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                "validation": "val", "test": "test", "testing": "test"}


def peek_text(path: Path, n: int = 4096) -> str:
    """The first `n` bytes of a file as text ("" if unreadable): cheap format sniffing."""
    try:
        with open(path, "rb") as fh:
            return fh.read(n).decode("utf-8", errors="replace")
    except OSError:
        return ""


def printable(path: Path | str) -> str:
    """A path as text that can always be printed and stored (undecodable bytes of a
    file name shown as \\xNN)."""
    text = str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def is_inside(path: Path | str, root: Path | str) -> bool:
    """True when `path` (made absolute, `..` resolved by name) lies in `root`."""
    p = os.path.normpath(os.path.abspath(os.fspath(path)))
    r = os.path.normpath(os.path.abspath(os.fspath(root)))
    return p == r or p.startswith(r.rstrip(os.sep) + os.sep)


def label_from_name(name: str) -> str | None:
    """'ok' or 'defective' when a folder name says so (case-insensitive), else None.

    "OK", "good", "pass", "MT_Free", "defect_free" -> ok; "NG", "bad", "defects",
    "fail" -> defective. A name with words of both kinds is ambiguous -> None.
    """
    norm = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if norm in _OK_PHRASES:
        return "ok"
    if norm in ("not_ok", "notok"):
        return "defective"
    tokens = set(norm.split("_"))
    ok, ng = bool(tokens & _OK_TOKENS), bool(tokens & _NG_TOKENS)
    if ok and not ng:
        return "ok"
    if ng and not ok:
        return "defective"
    return None


def split_from_name(name: str) -> str | None:
    """'train' / 'val' / 'test' for folder names such as Train, validation, TEST."""
    return _SPLIT_WORDS.get(name.lower())


def is_image(path: Path | str) -> bool:
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTS


@dataclass
class ImportItem:
    """One image to import, as a reader found it.

    label: what the source says ("ok", "defective", "unlabeled"); a mask with defect
    pixels makes it "defective" anyway. label_from_mask: the label is only implied by
    the mask (image + mask pairs), so a mask that cannot be used leaves it unlabeled.
    """

    image_path: Path
    label: str = "unlabeled"
    mask: MaskSource | None = None
    mask_rough: bool = False
    split: str | None = None
    note: str = ""
    label_from_mask: bool = False
    mask_file: str | None = None  # the mask's own file, named in the report when it is bad
    boxes: BoxSource | None = None  # typed boxes, kept beside the (rough) mask
    # the label the folder names gave ("ok", "defective", "unlabeled"), when the reader
    # knows it: a mask never turns an image of an OK folder defective (runner._import_one)
    folder_label: str | None = None


@dataclass
class ImportReport:
    """What an import did: counts plus one row per file (imported, duplicate, skipped)."""

    format: str
    source: str = ""
    imported: int = 0
    duplicates: int = 0
    masks: int = 0
    boxes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    by_label: dict[str, int] = field(default_factory=dict)
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # file, status, detail
    root: Path | None = None  # the source folder annotation paths must stay in
    allow_outside: bool = False

    def skip(self, file: Path | str, reason: str) -> None:
        """Record a file (image, mask or annotation) that was not used, and why."""
        self.skipped.append((printable(file), reason))
        self.rows.append((printable(file), "skipped", reason))

    def note(self, file: Path | str, status: str, detail: str = "") -> None:
        self.rows.append((printable(file), status, detail))

    def inside(self, path: Path | str) -> bool:
        """True when `path` lies in the source folder (or outside reads are allowed)."""
        return self.allow_outside or self.root is None or is_inside(path, self.root)

    def mark(self) -> tuple:
        """A snapshot of the counts, for rewind() after a rolled-back chunk."""
        return (self.imported, self.duplicates, self.masks, dict(self.by_label),
                len(self.rows), len(self.skipped))

    def rewind(self, mark: tuple) -> None:
        """Forget the rows recorded since mark() (their transaction was rolled back)."""
        self.imported, self.duplicates, self.masks, by_label, n_rows, n_skipped = mark
        self.by_label = by_label
        del self.rows[n_rows:]
        del self.skipped[n_skipped:]

    def skipped_by_reason(self) -> dict[str, int]:
        """Skip counts grouped by the kind of reason (the text before the first colon)."""
        return dict(Counter(reason.split(":")[0].strip() for _, reason in self.skipped))

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "source": self.source,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "masks": self.masks,
            "boxes": self.boxes,
            "by_label": dict(self.by_label),
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "skipped_by_reason": self.skipped_by_reason(),
        }

    def write_csv(self, path: Path | str) -> None:
        """The per-file report: file, status, detail."""
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "status", "detail"])
            w.writerows(self.rows)


# ---------------------------------------------------------------- source listing

def walk_files(root: Path, limit: int | None = None) -> Iterator[Path]:
    """Regular files under root (sorted, hidden and tool folders left out), at most
    `limit`. FIFOs, devices and sockets are never listed (opening a FIFO would hang;
    a symlink to /dev/zero would never end). Defect Studio project folders (with a
    project.sqlite) are left out too: a project created inside the source must not
    import its own copies and masks."""
    n = 0
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        if any(e.name == PROJECT_MARKER for e in entries):
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir(follow_symlinks=False):  # like os.walk: links not followed
                    if e.name.lower() not in IGNORED_DIRS:
                        subdirs.append(Path(e.path))
                    continue
                if not e.is_file():  # FIFO, device, socket, dangling link
                    continue
            except OSError:
                continue
            yield Path(e.path)
            n += 1
            if limit is not None and n >= limit:
                return
        stack.extend(reversed(subdirs))


def walk_images(root: Path) -> list[Path]:
    return [p for p in walk_files(root) if is_image(p)]


class ImageIndex:
    """Images under a root, looked up by file name or stem (for annotation formats
    whose annotation names its image loosely: 'x.jpg', 'x', 'sub/x.jpg')."""

    def __init__(self, root: Path, images: Iterable[Path] | None = None):
        self.root = root
        self.images = list(images) if images is not None else walk_images(root)
        self.by_name: dict[str, list[Path]] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for p in self.images:
            self.by_name.setdefault(p.name.lower(), []).append(p)
            self.by_stem.setdefault(p.stem.lower(), []).append(p)

    def find(self, name: str, near: Path | None = None) -> Path | None:
        """The image called `name` (a name, stem or relative path); when several
        match, the one sharing the longest folder path with `near`."""
        name = name.replace("\\", "/").strip()
        if not name:
            return None
        if near is not None:
            direct = (near / name)
            if direct.is_file() and is_image(direct):
                return direct
        base = name.rsplit("/", 1)[-1].lower()
        cands = self.by_name.get(base) or self.by_stem.get(base) \
            or self.by_stem.get(os.path.splitext(base)[0]) or []
        if not cands:
            return None
        if len(cands) > 1:
            tail = name.lower()
            exact = [c for c in cands if c.as_posix().lower().endswith("/" + tail)]
            if len(exact) == 1:
                return exact[0]
            if near is not None:
                cands = sorted(cands, key=lambda c: -_common_parts(c.parent, near))
        return cands[0]


def _common_parts(a: Path, b: Path) -> float:
    n = 0
    for x, y in zip(a.parts, b.parts):
        if x != y:
            break
        n += 1
    # Sibling folders such as Validation_Images / Validation_Annotations: count a
    # shared leading word as half a match so they pair up.
    if len(a.parts) > n and len(b.parts) > n:
        wa = re.split(r"[^a-z0-9]", a.parts[n].lower())[0]
        wb = re.split(r"[^a-z0-9]", b.parts[n].lower())[0]
        if wa and wa == wb:
            return n + 0.5
    return n


# ---------------------------------------------------------------- masks

def read_mask_file(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A mask image as bool HxW. Gray, colour (any channel) and 16-bit masks are
    thresholded at half range (128 for 8-bit: soft-edged masks); lossless masks whose
    values are all small (0/1 or class ids <= 10) count every nonzero pixel.
    Raises MaskError when the size differs from `shape` (when given), ImageReadError
    when unreadable."""
    from defect_studio.io.images import read_image

    m = read_image(path)
    if m.ndim == 3:
        m = m.max(axis=2)
    if shape is not None and m.shape[:2] != tuple(shape):
        raise MaskError(f"mask is {m.shape[1]}x{m.shape[0]}, image is {shape[1]}x{shape[0]}")
    top = int(m.max()) if m.size else 0
    if path.suffix.lower() in LOSSLESS_EXTS and 0 < top <= 10:
        return m > 0
    half = 32768 if m.dtype == np.uint16 and top > 255 else 128
    return m >= half


def resolve_mask(src: MaskSource, shape: tuple[int, int]) -> np.ndarray:
    """Any MaskSource as a bool HxW array of the image's size (MaskError otherwise)."""
    if isinstance(src, Path):
        return read_mask_file(src, shape)
    m = src(*shape) if callable(src) else np.asarray(src)
    if m.shape != tuple(shape):
        raise MaskError(f"mask is {m.shape[1] if m.ndim > 1 else '?'}x{m.shape[0]}, "
                        f"image is {shape[1]}x{shape[0]}")
    return m.astype(bool)


def check_coords(values, shape: tuple[int, int], what: str = "coordinates") -> np.ndarray:
    """The values as float64; MaskError when one is NaN/infinite or lies further than the
    image's size outside it (nonsense that would take drawing code minutes)."""
    a = np.asarray(values, np.float64)
    if a.size == 0:
        return a
    if not np.isfinite(a).all():
        raise MaskError(f"{what} must be finite numbers (found NaN or infinity)")
    limit = 2 * max(shape) + 16
    if np.abs(a).max() > limit:
        raise MaskError(f"{what} lie far outside the {shape[1]}x{shape[0]} image "
                        f"(up to {np.abs(a).max():.3g})")
    return a


def fill_polygons(shape: tuple[int, int], polygons: Iterable[np.ndarray]) -> np.ndarray:
    """Bool mask with the polygons (Nx2 x,y pixel indices; fractions rounded) filled,
    boundary pixels included. MaskError for NaN or far-off coordinates."""
    import cv2

    out = np.zeros(shape, np.uint8)
    pts = [np.round(check_coords(p, shape, "polygon coordinates")).astype(np.int32)
           .reshape(-1, 1, 2) for p in polygons if len(p) >= 3]
    if pts:
        cv2.fillPoly(out, pts, 255)
    return out > 0


def box_mask(shape: tuple[int, int], boxes: Iterable[tuple[float, float, float, float]]
             ) -> np.ndarray:
    """Bool mask with axis-aligned boxes (x0, y0, x1, y1, inclusive pixel corners) set,
    clipped to the image."""
    h, w = shape
    out = np.zeros(shape, bool)
    for box in boxes:
        try:
            x0, y0, x1, y1 = (float(v) for v in box)
        except (TypeError, ValueError):
            continue  # not numbers: no box (the importer reports it as a bad box)
        if not np.isfinite([x0, y0, x1, y1]).all():
            continue  # NaN/inf: no box (reported as a bad box)
        # far-off corners cost nothing here: a box is clipped before it is drawn
        x0, x1, y0, y1 = (float(np.clip(v, -1, n)) for v, n in ((x0, w), (x1, w), (y0, h), (y1, h)))
        xa, xb = sorted((int(round(x0)), int(round(x1))))
        ya, yb = sorted((int(round(y0)), int(round(y1))))
        xa, ya = max(xa, 0), max(ya, 0)
        xb, yb = min(xb, w - 1), min(yb, h - 1)
        if xb >= xa and yb >= ya:
            out[ya:yb + 1, xa:xb + 1] = True
    return out


# ---------------------------------------------------------------- detection support

@dataclass
class SourceTree:
    """A listing of a source folder, made once and shared by the format detectors."""

    root: Path
    files: list[Path]  # relative to root
    truncated: bool = False

    @classmethod
    def scan(cls, root: Path, limit: int = 200_000) -> SourceTree:
        files = [p.relative_to(root) for p in walk_files(root, limit)]
        return cls(root, files, len(files) >= limit)

    @property
    def images(self) -> list[Path]:
        return [p for p in self.files if is_image(p)]

    def with_suffix(self, *suffixes: str) -> list[Path]:
        suf = {s.lower() for s in suffixes}
        return [p for p in self.files if p.suffix.lower() in suf]

    def dirs(self) -> set[Path]:
        out: set[Path] = set()
        for p in self.files:
            out.update(p.parents)
        out.discard(Path("."))
        return out
