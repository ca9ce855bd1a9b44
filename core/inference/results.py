"""One writer of scoring results: a table (CSV or JSON lines) plus overlay PNGs, used by
`defect-studio predict` (predictions.csv + <stem>_overlay.png), the line's watch folder
(results.jsonl / rejected.jsonl + overlays/<stem>_<hash>_overlay.png) and the GUI's Review
export (review.csv + overlays/<stem>.png).

numpy and OpenCV only (no torch, no Qt): the torch-free line runtime uses it.

- ``ResultsTable``: one file of rows. CSV (the columns given, header first) or JSON lines
  (``.jsonl``: one JSON object per row, as given). Each row is appended and flushed at
  once (``durable``: also fsync'd), so an interrupted job keeps the rows it wrote;
  ``append`` continues an existing file (a last line cut off by a crash is ended first,
  the CSV header written only into a new file); ``atomic`` writes ``<name>.tmp`` and
  puts it in place only on ``commit()`` (the old file stays untouched until then).
  Text that cannot be encoded (undecodable file names) is written backslash-escaped.
- ``ResultsWriter``: a table in an output folder plus overlays: unique overlay names
  (``<stem><suffix>.png``, then ``<stem>_2<suffix>.png`` ...; case-insensitive; in
  ``append`` mode also unique against files already there), at most ``max_overlay_side``
  pixels on the longer side (larger images are shrunk first), and an overlay that cannot
  be drawn or written is recorded in ``problems`` and logged, never raised: one bad item
  never sinks the batch.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from defect_studio.errors import UserError

log = logging.getLogger("defect_studio.results")

PREDICT_COLUMNS = ("path", "score", "decision", "error", "overlay", "run_id", "threshold")
REVIEW_COLUMNS = ("path", "score", "decision", "label", "overlay", "run_id", "threshold")
MAX_OVERLAY_SIDE = 2048  # pixels on the longer side of an overlay PNG (4096: 923 MB and 15 s
# for the overlay of a 100 MP image on a loaded 2-core machine; 2048: 231 MB, 2.8 s)
MAX_STEM = 150  # characters of the source name kept in an overlay's name


class ResultsTable:
    """One results file, CSV or JSON lines (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] | None = None, *,
                 append: bool = False, durable: bool = False, atomic: bool = False) -> None:
        self.path = Path(path)
        self.jsonl = self.path.suffix.lower() == ".jsonl"
        if not self.jsonl and not columns:
            raise ValueError("a CSV results table needs its columns")
        if atomic and append:
            raise ValueError("a results table is either appended to or replaced atomically")
        self.columns = tuple(columns) if columns else None
        self.durable, self.atomic = durable, atomic
        self.rows = 0
        self._file = self.path.with_name(self.path.name + ".tmp") if atomic else self.path
        if append:
            self._end_cut_off_line()
            new = not self._file.is_file() or self._file.stat().st_size == 0
        else:
            self._write("", truncate=True)
            new = True
        if new and self.columns and not self.jsonl:
            self._write(self._csv_line(self.columns))

    def add(self, row: Mapping[str, Any]) -> None:
        """Append one row (CSV: the columns in order, missing ones empty; ValueError for a
        key that is not a column)."""
        if self.jsonl:
            line = json.dumps(dict(row)) + "\n"
        else:
            extra = set(row) - set(self.columns)
            if extra:
                raise ValueError(f"not columns of {self.path.name}: {sorted(extra)}")
            line = self._csv_line([row.get(c, "") for c in self.columns])
        self._write(line)
        self.rows += 1

    def commit(self) -> None:
        """Put an atomic table in place (nothing to do otherwise)."""
        if self.atomic and self._file.exists():
            os.replace(self._file, self.path)

    def discard(self) -> None:
        """Drop an atomic table's rows (the previous file stays as it was)."""
        if self.atomic:
            try:
                self._file.unlink()
            except FileNotFoundError:
                pass

    # -- internals ---------------------------------------------------------------------
    @staticmethod
    def _csv_line(values: Sequence[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerow(["" if v is None else v for v in values])
        return buf.getvalue()

    def _write(self, text: str, truncate: bool = False) -> None:
        with open(self._file, "w" if truncate else "a", encoding="utf-8",
                  errors="backslashreplace", newline="") as f:
            f.write(text)
            f.flush()
            if self.durable:
                os.fsync(f.fileno())

    def _end_cut_off_line(self) -> None:
        try:
            with open(self._file, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return
                f.seek(-1, os.SEEK_END)
                cut = f.read(1) != b"\n"
        except FileNotFoundError:
            return
        if cut:  # a line cut off by a crash: end it, so the next row is a line of its own
            self._write("\n")


class ResultsWriter:
    """A results table in ``out`` plus its overlay PNGs (see the module docstring).

    Use as a context manager: on leaving, an atomic table is committed, or discarded when
    an exception is on its way out.
    """

    def __init__(self, out: str | os.PathLike, table: str,
                 columns: Sequence[str] | None = None, *, overlay_dir: str = "",
                 overlay_suffix: str = "_overlay", append: bool = False,
                 durable: bool = False, atomic: bool = False,
                 max_overlay_side: int = MAX_OVERLAY_SIDE) -> None:
        self.out = Path(out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the output folder {self.out}: "
                            f"{e.strerror or e}") from None
        self.table = ResultsTable(self.out / table, columns, append=append, durable=durable,
                                  atomic=atomic)
        self.overlay_dir = overlay_dir
        self.overlay_suffix = overlay_suffix
        self.append = append
        self.max_overlay_side = int(max_overlay_side)
        self.problems: list[tuple[str, str]] = []  # (source, why) of overlays not written
        self._taken: set[str] = set()

    # -- rows --------------------------------------------------------------------------
    def add(self, row: Mapping[str, Any]) -> None:
        self.table.add(row)

    @property
    def count(self) -> int:
        return self.table.rows

    def close(self) -> None:
        self.table.commit()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.table.commit()
        else:
            self.table.discard()

    # -- overlays ----------------------------------------------------------------------
    def overlay_path(self, source: str | os.PathLike) -> Path:
        """A new overlay file for ``source``: unique in this writer (and, when appending,
        among the files already in the folder)."""
        folder = self.out / self.overlay_dir if self.overlay_dir else self.out
        stem = (Path(source).stem or "image")[:MAX_STEM]
        name, i = f"{stem}{self.overlay_suffix}.png", 2
        while name.lower() in self._taken or (self.append and (folder / name).exists()):
            name = f"{stem}_{i}{self.overlay_suffix}.png"
            i += 1
        self._taken.add(name.lower())
        return folder / name

    def write_overlay(self, source: str | os.PathLike, image: np.ndarray, heatmap: np.ndarray,
                      score: float, is_ng: bool, *, alpha: float = 0.5,
                      colormap: str = "jet", vmax: float | None = None) -> str:
        """Draw and write the decision overlay of one image; returns its path relative to
        the output folder (posix), or "" when it could not be made (then in ``problems``)."""
        from defect_studio.inference.overlay import decision_overlay
        from defect_studio.io.images import write_png_atomic

        try:
            small = self._bounded(image)
            heat = np.asarray(heatmap)
            if heat.ndim == 2 and small.ndim >= 2 and heat.size > small.shape[0] * small.shape[1]:
                # the heat at the overlay's size too: the peak mark and the colours never
                # touch a full-size copy of a huge part's map
                heat = cv2.resize(np.asarray(heat, dtype=np.float32),
                                  (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
            picture = decision_overlay(small, heat, score, is_ng,
                                       alpha=alpha, colormap=colormap, vmax=vmax)
            target = self.overlay_path(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_png_atomic(target, picture)
        except (OSError, UserError, ValueError, TypeError, MemoryError, cv2.error) as e:
            why = str(e) or type(e).__name__
            self.problems.append((str(source), why))
            log.warning("could not write the overlay of %s: %s", source, why)
            return ""
        return target.relative_to(self.out).as_posix()

    def _bounded(self, image: np.ndarray) -> np.ndarray:
        img = np.asarray(image)
        if img.ndim < 2:
            return img  # refused by the overlay code with its own message
        h, w = img.shape[:2]
        if max(h, w) <= self.max_overlay_side:
            return img
        scale = self.max_overlay_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if img.dtype == np.bool_:
            img = img.astype(np.uint8) * 255
        out = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        return out[:, :, None] if img.ndim == 3 and out.ndim == 2 else out
