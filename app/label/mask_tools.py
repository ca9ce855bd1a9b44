"""Mask editing logic on numpy arrays: brush, eraser, polygon fill, GrabCut assist, undo.

No Qt here, so the logic is tested without widgets. A mask is a uint8 HxW array,
0 = background, 255 = defect (the project's PNG format). Every edit returns the
dirty rectangle it touched, so the canvas redraws only that part of the overlay.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

MASK_ON = 255

# (x0, y0, x1, y1), x1/y1 exclusive, always clipped to the mask.
Rect = tuple[int, int, int, int]


def clip_rect(rect: Rect, shape: tuple[int, ...]) -> Rect | None:
    """Clip a rect to an HxW shape; None when nothing is left."""
    h, w = shape[:2]
    x0, y0, x1, y1 = rect
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(w, x1), min(h, y1)
    if x0 >= x1 or y0 >= y1:
        return None
    return (x0, y0, x1, y1)


def union_rect(a: Rect | None, b: Rect | None) -> Rect | None:
    """The smallest rect holding both (either may be None)."""
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def paint_segment(mask: np.ndarray, p0: tuple[float, float], p1: tuple[float, float],
                  radius: float, value: int = MASK_ON) -> Rect | None:
    """Paint a round-capped line of the given radius from p0 to p1 (image pixels).

    value=255 paints (brush), value=0 erases. Returns the dirty rect.
    """
    r = max(0.5, float(radius))
    # cv2 draws on integer coordinates; fixed-point (shift=4) keeps sub-pixel strokes smooth.
    shift = 4
    f = 1 << shift
    a = (int(round(p0[0] * f)), int(round(p0[1] * f)))
    b = (int(round(p1[0] * f)), int(round(p1[1] * f)))
    ri = int(round(r * f))
    cv2.circle(mask, a, ri, int(value), -1, cv2.LINE_8, shift)
    if a != b:
        cv2.circle(mask, b, ri, int(value), -1, cv2.LINE_8, shift)
        thickness = max(1, int(round(2 * r)))
        cv2.line(mask, (a[0] >> shift, a[1] >> shift), (b[0] >> shift, b[1] >> shift),
                 int(value), thickness, cv2.LINE_8)
    pad = int(np.ceil(r)) + 2
    x0 = int(min(p0[0], p1[0])) - pad
    y0 = int(min(p0[1], p1[1])) - pad
    x1 = int(max(p0[0], p1[0])) + pad + 1
    y1 = int(max(p0[1], p1[1])) + pad + 1
    return clip_rect((x0, y0, x1, y1), mask.shape)


def fill_polygon(mask: np.ndarray, points: list[tuple[float, float]],
                 value: int = MASK_ON) -> Rect | None:
    """Fill a closed polygon (image pixels). Fewer than 3 points fill nothing."""
    if len(points) < 3:
        return None
    pts = np.round(np.asarray(points, dtype=np.float64)).astype(np.int32)
    cv2.fillPoly(mask, [pts.reshape(-1, 1, 2)], int(value))
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return clip_rect((int(x0), int(y0), int(x1) + 1, int(y1) + 1), mask.shape)


def grabcut_region(image: np.ndarray, points: list[tuple[float, float]], *,
                   is_box: bool, stroke_radius: float = 3.0, margin: int = 16,
                   iterations: int = 4) -> tuple[np.ndarray, Rect] | None:
    """Refine a rough box or stroke to a defect region with cv2.grabCut.

    Works on a crop around the box / stroke (plus a margin), so a 2000x2000 image
    costs no more than a small one. Returns (bool region of the crop, crop rect),
    or None when the box is too small. With a box, everything outside it is
    background and inside is "probably defect"; with a stroke, the stroke is
    surely defect and its surroundings probably background.
    """
    if len(points) < 2 and is_box:
        return None
    pts = np.asarray(points, dtype=np.float64)
    h, w = image.shape[:2]
    bx0, by0 = np.floor(pts.min(axis=0)).astype(int)
    bx1, by1 = np.ceil(pts.max(axis=0)).astype(int) + 1
    if is_box and (bx1 - bx0 < 4 or by1 - by0 < 4):
        return None
    pad = margin + (0 if is_box else int(np.ceil(stroke_radius)) * 3)
    crop = clip_rect((bx0 - pad, by0 - pad, bx1 + pad, by1 + pad), (h, w))
    if crop is None:
        return None
    cx0, cy0, cx1, cy1 = crop
    patch = _to_bgr8(image[cy0:cy1, cx0:cx1])
    gc = np.full(patch.shape[:2], cv2.GC_BGD, np.uint8)
    if is_box:
        gc[max(0, by0 - cy0):by1 - cy0, max(0, bx0 - cx0):bx1 - cx0] = cv2.GC_PR_FGD
    else:
        # Around the stroke: probably background; the stroke itself: surely defect.
        near = np.zeros_like(gc)
        local = [(x - cx0, y - cy0) for x, y in points]
        for a, b in zip(local, local[1:] or local):
            paint_segment(near, a, b, stroke_radius * 4 + margin / 2, 1)
        gc[near > 0] = cv2.GC_PR_BGD
        sure = np.zeros_like(gc)
        for a, b in zip(local, local[1:] or local):
            paint_segment(sure, a, b, stroke_radius, 1)
        gc[sure > 0] = cv2.GC_FGD
    if not (gc == cv2.GC_BGD).any():
        # grabCut needs some background samples: take the crop border.
        gc[0, :] = gc[-1, :] = cv2.GC_BGD
        gc[:, 0] = gc[:, -1] = cv2.GC_BGD
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(patch, gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        # A flat patch (one colour) has no statistics to separate; keep the user's shape.
        pass
    region = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return region, crop


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    """Any image patch (gray/RGB, uint8/uint16) as contiguous 8-bit BGR for OpenCV."""
    a = img
    if a.dtype != np.uint8:
        lo, hi = float(a.min()), float(a.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        a = ((a.astype(np.float32) - lo) * scale).astype(np.uint8)
    if a.ndim == 2:
        a = cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    elif a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(a)


@dataclass
class _Edit:
    rect: Rect
    before: np.ndarray
    after: np.ndarray


class UndoStack:
    """Bounded undo/redo of mask edits, storing only the dirty rect before and after.

    Bounded by the number of steps and by bytes, so long sessions on large images
    do not grow memory without limit; the oldest steps fall off first.
    """

    def __init__(self, max_steps: int = 100, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self._undo: deque[_Edit] = deque()
        self._redo: list[_Edit] = []
        self._bytes = 0

    def clear(self) -> None:
        """Forget all steps (another image was opened)."""
        self._undo.clear()
        self._redo.clear()
        self._bytes = 0

    def push(self, before_full: np.ndarray, after_full: np.ndarray, rect: Rect | None) -> bool:
        """Record an edit given the mask before and after and the rect it touched.

        Returns False (nothing recorded) when the rect is empty or nothing changed.
        """
        if rect is None:
            return False
        x0, y0, x1, y1 = rect
        before = before_full[y0:y1, x0:x1].copy()
        after = after_full[y0:y1, x0:x1].copy()
        if np.array_equal(before, after):
            return False
        self._undo.append(_Edit(rect, before, after))
        self._bytes += before.nbytes + after.nbytes
        self._redo.clear()
        while self._undo and (len(self._undo) > self.max_steps or self._bytes > self.max_bytes):
            old = self._undo.popleft()
            self._bytes -= old.before.nbytes + old.after.nbytes
        return True

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self, mask: np.ndarray) -> Rect | None:
        """Restore the last edit in place; returns its rect (None if nothing to undo)."""
        if not self._undo:
            return None
        e = self._undo.pop()
        self._bytes -= e.before.nbytes + e.after.nbytes
        x0, y0, x1, y1 = e.rect
        mask[y0:y1, x0:x1] = e.before
        self._redo.append(e)
        return e.rect

    def redo(self, mask: np.ndarray) -> Rect | None:
        """Re-apply the last undone edit in place; returns its rect."""
        if not self._redo:
            return None
        e = self._redo.pop()
        x0, y0, x1, y1 = e.rect
        mask[y0:y1, x0:x1] = e.after
        self._undo.append(e)
        self._bytes += e.before.nbytes + e.after.nbytes
        return e.rect
