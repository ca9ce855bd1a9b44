"""YOLO segmentation and detection: data.yaml (keys path, train, val, test, names) with
images/ and labels/ trees, or just images/ + labels/ folders.

Each image's label file is the image path with its last images/ folder replaced by
labels/ and the extension by .txt. A line "c x1 y1 x2 y2 x3 y3 ..." is a polygon
(filled into the mask); "c cx cy w h" is a box (mask marked rough, and a typed box named by `names`). Coordinates are
relative to the image size. An empty label file, or none, means OK (YOLO's
"background" images). Classes missing from `names` are reported and left out.
Splits come from the data.yaml keys, else from train/val/test folder names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np

from defect_studio.errors import ImportFormatError

from .base import ImportItem, ImportReport, SourceTree, box_mask, fill_polygons, \
    split_from_name, walk_images

NAME = "yolo"
EXPECTS = "data.yaml (path, train, val, names) with images/ and labels/*.txt, or " \
          "images/ + labels/ folders"

MAX_RELATIVE = 10.0  # relative coordinates beyond this are nonsense, not a slightly-off box
_YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")


def parse_simple_yaml(text: str) -> dict:
    """The few data.yaml shapes YOLO data sets use: `key: scalar`, `key: [a, b]`, block
    lists (`- a`) and one-level mappings (`  0: name`). Not a general YAML parser."""
    out: dict = {}
    key: str | None = None
    for raw in text.splitlines():
        line = _strip_comment(raw).rstrip()
        if not line.strip():
            continue
        indented = line[0] in " \t"
        s = line.strip()
        if indented or s.startswith("- "):
            if key is None:
                continue
            if s.startswith("-"):
                if not isinstance(out.get(key), list):
                    out[key] = []
                out[key].append(_scalar(s[1:].strip()))
            elif ":" in s:
                k, v = s.split(":", 1)
                if not isinstance(out.get(key), dict):
                    out[key] = {}
                out[key][_scalar(k.strip())] = _scalar(v.strip())
            continue
        if ":" not in s:
            continue
        k, v = s.split(":", 1)
        key, v = k.strip(), v.strip()
        if v.startswith("[") and v.endswith("]"):
            out[key] = [_scalar(x.strip()) for x in _split_inline(v[1:-1]) if x.strip()]
        elif v.startswith("{") and v.endswith("}"):
            out[key] = {_scalar(a.split(":", 1)[0].strip()): _scalar(a.split(":", 1)[1].strip())
                        for a in _split_inline(v[1:-1]) if ":" in a}
        else:
            out[key] = _scalar(v) if v else None
    return out


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if ch in "'\"":
            quote = None if quote == ch else (quote or ch)
        elif ch == "#" and quote is None and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _split_inline(s: str) -> list[str]:
    return re.findall(r"""(?:'[^']*'|"[^"]*"|[^,])+""", s)


def _scalar(v: str):
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    if re.fullmatch(r"-?\d+", v):
        return int(v)
    return v


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


def _names(data: dict) -> dict[int, str] | None:
    names = data.get("names")
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items() if str(k).lstrip("-").isdigit()}
    return None


def _split_images(base: Path, entry, report: ImportReport) -> list[Path]:
    """Images of one data.yaml split entry: folders, list files, or lists of those."""
    entries = entry if isinstance(entry, list) else [entry]
    out: list[Path] = []
    for e in entries:
        if e is None or e == "":
            continue
        p = Path(str(e))
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
    yaml = find_yaml(src)
    names: dict[int, str] | None = None
    listed: list[tuple[Path, str | None]] = []
    if yaml is not None:
        try:
            data = parse_simple_yaml(yaml.read_text(encoding="utf-8", errors="replace"))
        except OSError as e:
            raise ImportFormatError(f"cannot read {yaml}: {e}") from e
        names = _names(data)
        base = Path(str(data["path"])) if data.get("path") else yaml.parent
        base = base if base.is_absolute() else (yaml.parent / base)
        if not base.is_dir() or not report.inside(base):  # data.yaml moved with its data set: path is stale
            base = yaml.parent
        for key, split in (("train", "train"), ("val", "val"), ("test", "test")):
            if data.get(key):
                listed.extend((p, split) for p in _split_images(base, data[key], report))
        if not listed and not any(data.get(k) for k in ("train", "val", "test")):
            raise ImportFormatError(f"{yaml} names no train/val/test images")
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
            cls = int(float(tok[0]))
            vals = np.array([float(t) for t in tok[1:]], np.float64)
        except (ValueError, OverflowError):
            report.skip(f"{lp}:{n}", "malformed line: not numbers")
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

