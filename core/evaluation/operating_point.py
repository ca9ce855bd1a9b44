"""Choosing a decision threshold by the escape rate a line can accept, and listing the
images of each confusion-matrix cell (for drill-down and reports). No Qt."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from defect_studio.errors import DataError

CELLS = ("tp", "fn", "fp", "tn")


def threshold_for_escape_rate(y_true: Sequence[Any], scores: Sequence[Any],
                              max_escape_rate: float) -> dict[str, Any]:
    """The highest threshold at which at most `max_escape_rate` (0..1) of the defective
    images score below it (escape = a defective part called OK).

    Images with score >= threshold are NG. The highest such threshold calls the fewest
    good parts NG. Returns {"threshold", "escape_rate", "escapes", "n_pos"}; DataError
    for a rate outside 0..1 or NaN, or when there is no defective image.
    """
    try:
        rate = float(max_escape_rate)
    except (TypeError, ValueError):
        raise DataError(f"escape rate must be a number from 0 to 1, got {max_escape_rate!r}") \
            from None
    if not math.isfinite(rate) or not 0.0 <= rate <= 1.0:
        raise DataError(f"escape rate must be from 0 to 1 (0 % to 100 %), got {max_escape_rate!r}")
    y = np.asarray(y_true).astype(int).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise DataError(f"{y.size} labels but {s.size} scores")
    if not np.all(np.isfinite(s)):
        raise DataError("some scores are NaN or infinite")
    pos = np.sort(s[y == 1])
    if pos.size == 0:
        raise DataError("no defective image to measure an escape rate on")
    allowed = int(math.floor(rate * pos.size + 1e-9))
    if allowed >= pos.size:
        threshold = float(np.nextafter(pos[-1], np.inf))  # every defective may escape
    else:
        threshold = float(pos[allowed])
    escapes = int(np.count_nonzero(pos < threshold))
    return {"threshold": threshold, "escape_rate": escapes / pos.size, "escapes": escapes,
            "n_pos": int(pos.size)}


def cell_of(label_defective: bool, score: float, threshold: float) -> str:
    """"tp", "fn", "fp" or "tn" of one image at `threshold` (score >= threshold is NG)."""
    ng = score >= threshold
    if label_defective:
        return "tp" if ng else "fn"
    return "fp" if ng else "tn"


def cell_members(y_true: Sequence[Any], scores: Sequence[Any], threshold: float,
                 cell: str) -> list[int]:
    """Indexes of the images in one cell, worst first: missed defects (fn) lowest score
    first, false alarms (fp) highest first, the others by score from the threshold out."""
    if cell not in CELLS:
        raise DataError(f"unknown confusion cell {cell!r}; one of {', '.join(CELLS)}")
    y = np.asarray(y_true).astype(int).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    idx = [i for i in range(y.size) if cell_of(bool(y[i]), float(s[i]), threshold) == cell]
    descending = cell in ("fp", "tp")
    return sorted(idx, key=lambda i: (-s[i] if descending else s[i], i))
