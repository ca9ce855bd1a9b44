"""Small heatmaps kept for the review queue (Qt-free: the page states use them too).

The network's map is 1/8 of the image anyway, so 256 px on the long side loses nothing
visible and bounds memory.
"""

from __future__ import annotations

import numpy as np

HEATMAP_KEEP_SIDE = 256


def shrink_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """float [0,1] HxW -> uint8 with the long side at most HEATMAP_KEEP_SIDE."""
    import cv2

    h, w = heatmap.shape[:2]
    scale = HEATMAP_KEEP_SIDE / max(h, w)
    hm = np.clip(np.nan_to_num(heatmap.astype(np.float32)), 0.0, 1.0)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        hm = cv2.resize(hm, size, interpolation=cv2.INTER_AREA)
    return (hm * 255.0 + 0.5).astype(np.uint8)


def expand_heatmap(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 small heatmap -> float32 [0,1] at (H, W)."""
    import cv2

    h, w = shape
    hm = small.astype(np.float32) / 255.0
    if hm.shape[:2] != (h, w):
        hm = cv2.resize(hm, (w, h), interpolation=cv2.INTER_LINEAR)
    return hm
