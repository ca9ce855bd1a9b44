"""YOLO segmentation and detection: data.yaml (keys path, train, val, test, names) with
images/ and labels/ trees, or just images/ + labels/ folders.

Each image's label file is the image path with its last images/ folder replaced by
labels/ and the extension by .txt. A line "c x1 y1 x2 y2 x3 y3 ..." is a polygon
(filled into the mask); "c cx cy w h" is a box (mask marked rough, and a typed box named by
`names`). Coordinates are relative to the image size. An empty label file, or none, means
OK (YOLO's "background" images). Class ids that are negative, not whole numbers, or missing
from `names` are reported and left out (never a new type; without `names`, ids 0..999 name
the types "0", "1", ...).
data.yaml is parsed by PyYAML (at most 1 MiB read); its paths stay in the source folder.
Splits come from the data.yaml keys, else from train/val/test folder names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

from defect_studio.errors import ImportFormatError

from .base import (
    ImportItem,
    ImportReport,
    SourceTree,
    box_mask,
    fill_polygons,
    split_from_name,
    walk_images,
)

NAME = "yolo"
EXPECTS = "data.yaml (path, train, val, names) with images/ and labels/*.txt, or " \
          "images/ + labels/ folders"

MAX_RELATIVE = 10.0  # relative coordinates beyond this are nonsense, not a slightly-off box
MAX_YAML_BYTES = 1 << 20  # a data.yaml is a few lines; only this much is ever read
# Without `names` in a data.yaml, class ids name the types ("0", "1", ...): only these.
MAX_UNNAMED_CLASS = 999
_YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")


def load_data_yaml(path: Path) -> dict:
    """A data.yaml as a mapping, parsed by PyYAML's BaseLoader: it builds nothing but text,
    lists and mappings (no tags, no objects; `yes`, `null` or `1.0` stay the text written,
    as class names must), and an alias is shared, never copied.

    ImportFormatError for a file over MAX_YAML_BYTES (only that much is read), text that
    is not YAML, nesting too deep to parse, or a top level that is not a mapping."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
    except OSError as e:
        raise ImportFormatError(f"cannot read {path}: {e.strerror or e}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise ImportFormatError(f"{path} is larger than {MAX_YAML_BYTES // 1024} KiB: not a "
                                "YOLO data.yaml")
    try:
        text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")
        data = yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as e:
        raise ImportFormatError(f"{path} is not valid YAML: {str(e)[:200]}") from None
    except RecursionError:
        raise ImportFormatError(f"{path} is nested too deeply to be a YOLO data.yaml") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ImportFormatError(f"{path} must be a mapping (keys path, train, val, names), "
                                f"not a {_kind(data)}")
    return data


def _kind(value: object) -> str:
    return {dict: "mapping", list: "list", str: "text"}.get(type(value), type(value).__name__)


def find_yaml(src: Path) -> Path | None:
    if src.is_file() and src.suffix.lower() in (".yaml", ".yml"):
        return src
    for name in _YAML_NAMES:
        if (src / name).is_file():
            return src / name
    return None


def detect(tree: SourceTree) -> bool:
    if any(str(p).lower() in _YAML_NAMES for p in tree.files):
        return True
    has_labels = any(len(p.parts) >= 2 and "labels" in (x.lower() for x in p.parts[:-1])
                     and p.suffix.lower() == ".txt" for p in tree.files)
    has_images = any("images" in (x.lower() for x in p.parts[:-1]) for p in tree.images)
    return has_labels and has_images


def label_path(image: Path) -> Path:
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i].lower() == "images":
            parts[i] = "labels" if parts[i] == "images" else "Labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _names(data: dict, yaml_path: Path, report: ImportReport) -> dict[int, str] | None:
    """Class id -> type name from `names` (a list, or a mapping of ids); None without
    names. Entries that are not text, and ids that are not whole numbers >= 0, are
    reported and left out (lines of those classes are then unknown classes)."""
    names = data.get("names")
    if names is None or names == "":
        return None
    if isinstance(names, list):
        items = list(enumerate(names))
    elif isinstance(names, dict):
        items = list(names.items())
    else:
        raise ImportFormatError(f"{yaml_path}: names must be a list or a mapping of class "
                                f"ids to names, not {_kind(names)}")
    out: dict[int, str] = {}
    for key, value in items:
        k = str(key) if isinstance(key, (str, int)) else None
        if k is None or not (k.isascii() and k.isdigit()):
            report.skip(yaml_path, f"bad class id in names: "
                                   f"{k[:40] if k is not None else 'a ' + _kind(key)} is not "
                                   "a whole number >= 0")
            continue
        if not isinstance(value, str) or not value.strip():
            what = "empty" if isinstance(value, str) else f"a {_kind(value)}"
            report.skip(yaml_path, f"bad class name in names: class {k} is {what}, not a name")
            continue
        out[int(k)] = value
    return out


def _texts(value: object) -> list[str] | None:
    """A split entry as a list of texts (one text or a list of texts); None otherwise."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _split_images(base: Path, entry: list[str], report: ImportReport) -> list[Path]:
    """Images of one data.yaml split entry: folders, list files, or lists of those."""
    out: list[Path] = []
    for e in entry:
        if not e.strip():
            continue
        p = Path(e.strip())
        p = p if p.is_absolute() else base / p
        if not report.inside(p):
            report.skip(p, "outside the source folder: named in data.yaml; pass "
                           "--allow-outside to read it")
            continue
        if p.is_dir():
            out.extend(walk_images(p))
        elif p.is_file() and p.suffix.lower() == ".txt":
            for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    q = q if q.is_absolute() else (p.parent / q)
                    if not report.inside(q):
                        report.skip(q, f"outside the source folder: listed in {p.name}; pass "
                                       "--allow-outside to import it")
                    elif q.is_file():
                        out.append(q)
                    else:
                        report.skip(q, f"image not found: listed in {p.name}")
        else:
            report.skip(p, "split folder in data.yaml not found")
    return out


def read(src: Path, report: ImportReport) -> Iterator[ImportItem]:
    yaml_path = find_yaml(src)
    names: dict[int, str] | None = None
    listed: list[tuple[Path, str | None]] = []
    if yaml_path is not None:
        data = load_data_yaml(yaml_path)
        names = _names(data, yaml_path, report)
        path = data.get("path")
        base = Path(path) if isinstance(path, str) and path.strip() else yaml_path.parent
        base = base if base.is_absolute() else (yaml_path.parent / base)
        # data.yaml moved with its data set (path is stale) or path leaves the source
        if not base.is_dir() or not report.inside(base):
            base = yaml_path.parent
        for key, split in (("train", "train"), ("val", "val"), ("test", "test")):
            value = data.get(key)
            if value is None or value == "":
                continue
            entries = _texts(value)
            if entries is None:
                report.skip(yaml_path, f"bad split entry: {key} is a {_kind(value)}, not a "
                                       "folder or list file (or a list of them)")
                continue
            listed.extend((p, split) for p in _split_images(base, entries, report))
        if not listed and not any(data.get(k) for k in ("train", "val", "test")):
            raise ImportFormatError(f"{yaml_path} names no train/val/test images")
    else:
        if src.is_file():
            raise ImportFormatError(f"{src}: YOLO expects a data.yaml or a folder")
        for p in walk_images(src):
            split = next((s for s in map(split_from_name, p.relative_to(src).parts[:-1]) if s),
                         None)
            listed.append((p, split))
    seen: set[Path] = set()
    for img, split in listed:
        if img in seen:
            continue
        seen.add(img)
        yield _item(img, split, names, report)


def _item(img: Path, split: str | None, names: dict[int, str] | None,
          report: ImportReport) -> ImportItem:
    lp = label_path(img)
    if not lp.is_file():
        return ImportItem(img, label="ok", split=split, note="no label file (background)")
    try:
        lines = lp.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        report.skip(lp, f"unreadable label file: {e}")
        return ImportItem(img, label="unlabeled", split=split, note="label file unreadable")
    polys: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    kinds: list[str] = []  # the type name of each box
    for n, line in enumerate(lines, 1):
        tok = line.split()
        if not tok:
            continue
        try:
            cls_value = float(tok[0])
            vals = np.array([float(t) for t in tok[1:]], np.float64)
        except (ValueError, OverflowError):
            report.skip(f"{lp}:{n}", "malformed line: not numbers")
            continue
        if not cls_value.is_integer():
            report.skip(f"{lp}:{n}", f"malformed line: class id {tok[0][:20]} is not a whole "
                                     "number")
            continue
        cls = int(cls_value)
        if cls < 0:
            report.skip(f"{lp}:{n}", f"unknown class: class id {cls} is negative")
            continue
        if names is None and cls > MAX_UNNAMED_CLASS:
            report.skip(f"{lp}:{n}", f"unknown class: {cls} (without names in a data.yaml "
                                     f"only class ids 0..{MAX_UNNAMED_CLASS} are read)")
            continue
        if not np.isfinite(vals).all() or np.abs(vals).max(initial=0) > MAX_RELATIVE:
            report.skip(f"{lp}:{n}", "malformed line: coordinates must be finite numbers "
                                     f"between -{MAX_RELATIVE} and {MAX_RELATIVE}")
            continue
        if names is not None and cls not in names:
            report.skip(f"{lp}:{n}", f"unknown class: {cls} is not in data.yaml names")
            continue
        if len(vals) == 4:
            boxes.append(vals)
            kinds.append(names[cls] if names is not None else str(cls))
        elif len(vals) >= 6 and len(vals) % 2 == 0:
            polys.append(vals.reshape(-1, 2))
        else:
            report.skip(f"{lp}:{n}", f"malformed line: {len(vals)} coordinates")
    if not polys and not boxes:
        if any(line.strip() for line in lines):
            return ImportItem(img, label="unlabeled", split=split,
                              note="no usable annotation in label file")
        return ImportItem(img, label="ok", split=split)

    def make(h: int, w: int) -> np.ndarray:
        scale = np.array([w, h], np.float64)
        m = fill_polygons((h, w), [np.floor(p * scale) for p in polys])
        bx = [((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w - 1, (cy + bh / 2) * h - 1)
              for cx, cy, bw, bh in boxes]
        return m | box_mask((h, w), bx)

    def typed(h: int, w: int) -> list:
        return [(k, (cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h)
                for k, (cx, cy, bw, bh) in zip(kinds, boxes)]

    return ImportItem(img, label="defective", mask=make, mask_rough=bool(boxes), split=split,
                      mask_file=str(lp), boxes=typed if boxes else None)

