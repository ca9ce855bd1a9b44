"""Defect types and boxes: the box annotations of a project.

A project has a list of defect types (name, colour, hotkey); an image can carry boxes
of those types. A box is (type, x, y, w, h) in image pixels: (x, y) is the top-left
corner, w and h the size, in continuous coordinates (the image spans 0..width,
0..height), as in COCO. Boxes are stored in the same crash-safe way as labels: one
transaction per change. A box makes its image "defective", so labels, masks and
boxes never contradict each other.

`BoxesMixin` adds the methods to `defect_studio.project.store.Project`.
"""

from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass
from numbers import Real

from defect_studio.errors import ProjectError, UserError
from defect_studio.project.records import COLUMNS, record_from_row
from defect_studio.units import count_of

# distinct colours for new types (colour-blind friendly first: Okabe-Ito, then more)
PALETTE = ("#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7",
           "#999999", "#8dd3c7", "#bebada", "#fb8072", "#80b1d3")
MAX_TYPE_NAME = 64
MAX_BOXES_PER_IMAGE = 10_000
MIN_BOX_SIZE = 1.0  # pixels, after clipping to the image
_COLOR_RE = re.compile(r"#[0-9a-fA-F]{6}")


class BoxError(UserError):
    """A box or defect type that cannot be stored (NaN, outside the image, unknown type)."""


@dataclass(frozen=True)
class DefectType:
    """A kind of defect (scratch, pit, ...) with its display colour and hotkey."""

    id: int
    name: str
    color: str  # "#rrggbb"
    hotkey: str | None  # a QKeySequence text such as "Alt+1"


@dataclass(frozen=True)
class Box:
    """A defect box: its type's name and x, y (top-left), w, h in image pixels."""

    type: str
    x: float
    y: float
    w: float
    h: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.x + self.w, self.y + self.h)


def _number(v: object, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, Real):
        raise BoxError(f"{what} must be a number, not {type(v).__name__} {v!r:.40}")
    f = float(v)
    if not math.isfinite(f):
        raise BoxError(f"{what} is {f}: a box needs finite coordinates")
    return f


def clean_box(x: object, y: object, w: object, h: object, width: int, height: int,
              what: str = "box") -> tuple[float, float, float, float]:
    """A box clipped to the image (width x height), as floats (x, y, w, h).

    BoxError for non-numbers, NaN/inf, a negative or zero size, or a box that after
    clipping is less than a pixel wide or high (outside the image). A box reaching
    over the border (also a huge one) is clipped.
    """
    x, y, w, h = (_number(v, f"{what} {k}") for v, k in zip((x, y, w, h), "xywh"))
    if w <= 0 or h <= 0:
        raise BoxError(f"{what} has size {w:g}x{h:g}: width and height must be positive")
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 - x0 < MIN_BOX_SIZE or y1 - y0 < MIN_BOX_SIZE:
        raise BoxError(
            f"{what} ({x:g}, {y:g}, {w:g}x{h:g}) lies outside the {width}x{height} image "
            "or is smaller than a pixel"
        )
    return (x0, y0, x1 - x0, y1 - y0)


def check_type_name(name: object) -> str:
    """A usable defect type name (stripped), or BoxError."""
    if not isinstance(name, str):
        raise BoxError(f"a defect type name must be text, not {type(name).__name__}")
    name = name.strip()
    if not name:
        raise BoxError("a defect type needs a name")
    if len(name) > MAX_TYPE_NAME or any(ord(c) < 32 or c in "\x7f" for c in name):
        raise BoxError(
            f"defect type name {name[:80]!r} is too long or has control characters "
            f"(at most {MAX_TYPE_NAME} printable characters)"
        )
    return name


def _check_color(color: object) -> str:
    if not isinstance(color, str) or not _COLOR_RE.fullmatch(color):
        raise BoxError(f"colour {color!r:.40} is not of the form #rrggbb")
    return color.lower()


def _check_hotkey(key: object) -> str | None:
    if key is None or key == "":
        return None
    if not isinstance(key, str) or len(key) > 32 or any(ord(c) < 32 for c in key):
        raise BoxError(f"hotkey {key!r:.40} is not a key name such as 'Alt+1'")
    return key


class BoxesMixin:
    """Defect types and boxes of a project (mixed into Project)."""

    # --- defect types ------------------------------------------------------------------

    def defect_types(self) -> list[DefectType]:
        """The project's defect types in display order."""
        rows = self._query("SELECT id, name, color, hotkey FROM defect_types "
                           "ORDER BY position, id")
        return [DefectType(int(i), n, c, k) for i, n, c, k in rows]

    def defect_type(self, name: str) -> DefectType | None:
        """The type of this name (case-insensitive), or None."""
        rows = self._query("SELECT id, name, color, hotkey FROM defect_types WHERE name = ?",
                           (str(name).strip(),))
        return DefectType(int(rows[0][0]), *rows[0][1:]) if rows else None

    def add_type(self, name: str, color: str | None = None,
                 hotkey: str | None = None) -> DefectType:
        """Add a defect type (or return the existing one of that name, unchanged).

        Without a colour, the next palette colour is used; without a hotkey, the next
        free of Alt+1 ... Alt+9 (none after nine types).
        """
        name = check_type_name(name)
        with self._tx() as db:
            self._add_type(db, name, color, hotkey)
        return self.defect_type(name)

    def _add_type(self, db: sqlite3.Connection, name: str, color: str | None,
                  hotkey: str | None) -> int:
        row = db.execute("SELECT id FROM defect_types WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return int(row[0])
        n = db.execute("SELECT COUNT(*), COALESCE(MAX(position), -1) FROM defect_types"
                       ).fetchone()
        color = _check_color(color) if color is not None else PALETTE[n[0] % len(PALETTE)]
        hotkey = _check_hotkey(hotkey)
        if hotkey is None:
            taken = {r[0] for r in db.execute("SELECT hotkey FROM defect_types")}
            hotkey = next((f"Alt+{i}" for i in range(1, 10) if f"Alt+{i}" not in taken), None)
        try:
            cur = db.execute(
                "INSERT INTO defect_types (name, color, hotkey, position) VALUES (?, ?, ?, ?)",
                (name, color, hotkey, n[1] + 1))
        except sqlite3.IntegrityError:
            raise BoxError(f"hotkey {hotkey} is already used by another defect type") from None
        return int(cur.lastrowid)

    def update_type(self, name: str, *, new_name: str | None = None, color: str | None = None,
                    hotkey: str | None = None) -> DefectType:
        """Rename a type or change its colour or hotkey (hotkey "" clears it)."""
        t = self.defect_type(name)
        if t is None:
            raise BoxError(f"there is no defect type '{name}' in this project")
        new = check_type_name(new_name) if new_name is not None else t.name
        col = _check_color(color) if color is not None else t.color
        key = _check_hotkey(hotkey) if hotkey is not None else t.hotkey
        with self._tx() as db:
            try:
                db.execute("UPDATE defect_types SET name = ?, color = ?, hotkey = ? WHERE id = ?",
                           (new, col, key, t.id))
            except sqlite3.IntegrityError:
                raise BoxError(f"another defect type already has the name '{new}' or the "
                               f"hotkey {key}") from None
        return self.defect_type(new)

    def delete_type(self, name: str) -> None:
        """Remove a defect type no box uses (BoxError names how many boxes do)."""
        t = self.defect_type(name)
        if t is None:
            raise BoxError(f"there is no defect type '{name}' in this project")
        with self._tx() as db:
            n = db.execute("SELECT COUNT(*) FROM boxes WHERE type_id = ?", (t.id,)).fetchone()[0]
            if n:
                raise BoxError(f"defect type '{t.name}' is used by {count_of(n, 'box')}; "
                               "change or delete them first")
            db.execute("DELETE FROM defect_types WHERE id = ?", (t.id,))

    # --- boxes -------------------------------------------------------------------------

    def boxes(self, image_id: int) -> list[Box]:
        """The boxes of an image, in the order they were saved."""
        rows = self._query(
            "SELECT t.name, b.x, b.y, b.w, b.h FROM boxes b JOIN defect_types t "
            "ON t.id = b.type_id WHERE b.image_id = ? ORDER BY b.id", (int(image_id),))
        return [Box(n, float(x), float(y), float(w), float(h)) for n, x, y, w, h in rows]

    def all_boxes(self) -> dict[int, list[Box]]:
        """Boxes of every image that has any: image_id -> boxes."""
        rows = self._query(
            "SELECT b.image_id, t.name, b.x, b.y, b.w, b.h FROM boxes b JOIN defect_types t "
            "ON t.id = b.type_id ORDER BY b.image_id, b.id")
        out: dict[int, list[Box]] = {}
        for i, n, x, y, w, h in rows:
            out.setdefault(int(i), []).append(Box(n, float(x), float(y), float(w), float(h)))
        return out

    def set_boxes(self, image_id: int, boxes, *, source: str = "user",
                  create_types: bool = False):
        """Replace the boxes of an image in one transaction; returns the updated record.

        `boxes`: Box objects or (type_name, x, y, w, h) tuples. Each is checked and
        clipped to the image (clean_box); one bad box refuses the whole call (BoxError),
        nothing changes. Unknown type names are refused unless create_types=True. Any
        box makes the image "defective"; no boxes leave the label as it is.
        """
        if source not in ("import", "user", "prediction"):
            raise ProjectError(f"unknown label source {source!r}")
        rec = self.image(image_id)
        items = list(boxes)
        if len(items) > MAX_BOXES_PER_IMAGE:
            raise BoxError(f"{len(items)} boxes for one image; at most {MAX_BOXES_PER_IMAGE}")
        clean = []
        for i, b in enumerate(items):
            if isinstance(b, Box):
                b = (b.type, b.x, b.y, b.w, b.h)
            if not isinstance(b, (tuple, list)) or len(b) != 5:
                raise BoxError(f"box {i + 1} of image {rec.id} is not (type, x, y, w, h)")
            name = check_type_name(b[0])
            what = f"box {i + 1} of image {rec.id} ('{rec.name}')"
            clean.append((name, *clean_box(*b[1:], rec.width, rec.height, what)))
        with self._tx() as db:
            ids = {}
            for name, *_ in clean:
                if name.lower() in ids:
                    continue
                row = db.execute("SELECT id FROM defect_types WHERE name = ?", (name,)).fetchone()
                if row is None and not create_types:
                    raise BoxError(f"there is no defect type '{name}' in this project; add it "
                                   "first")
                ids[name.lower()] = int(row[0]) if row else self._add_type(db, name, None, None)
            db.execute("DELETE FROM boxes WHERE image_id = ?", (rec.id,))
            db.executemany(
                "INSERT INTO boxes (image_id, type_id, x, y, w, h, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(rec.id, ids[n.lower()], x, y, w, h, source) for n, x, y, w, h in clean])
            if clean:
                db.execute("UPDATE images SET label = 'defective', label_source = ? "
                           "WHERE id = ?", (source, rec.id))
        return self.image(rec.id)

    def box_counts(self) -> dict[str, dict[str, int]]:
        """Per defect type (all types, in display order): {"boxes": n, "images": n}."""
        rows = self._query(
            "SELECT t.name, COUNT(b.id), COUNT(DISTINCT b.image_id) FROM defect_types t "
            "LEFT JOIN boxes b ON b.type_id = t.id GROUP BY t.id ORDER BY t.position, t.id")
        return {n: {"boxes": int(b), "images": int(i)} for n, b, i in rows}

    def images_with_type(self, name: str | None = None) -> list:
        """Images with at least one box of this type (any type when None), by id."""
        cols = ", ".join(f"i.{c.strip()}" for c in COLUMNS.split(","))
        sql = (f"SELECT DISTINCT {cols} FROM images i JOIN boxes b ON b.image_id = i.id "
               "JOIN defect_types t ON t.id = b.type_id")
        params: tuple = ()
        if name is not None:
            sql += " WHERE t.name = ?"
            params = (str(name).strip(),)
        return [record_from_row(r) for r in self._query(sql + " ORDER BY i.id", params)]

    def _has_boxes(self, db: sqlite3.Connection, image_id: int) -> bool:
        return db.execute("SELECT 1 FROM boxes WHERE image_id = ? LIMIT 1",
                          (int(image_id),)).fetchone() is not None
