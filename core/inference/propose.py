"""Draft defect masks from a heatmap, and the runs that can sort "likely defects first".

``propose_mask`` turns a heatmap (a predictor's calibrated map at the image's size, of any
model kind) into a draft mask for the inspector to correct; ``runs_trained_on`` finds the
project's finished runs of the kinds that train on given data (e.g. "ok_only": the anomaly
model of a cold start), newest first, whose scores sort the unlabeled images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from defect_studio.errors import UserError

FALLBACK_FRACTION = 0.8  # no pixel over the threshold: the region above 80 % of the peak


def propose_mask(heatmap: np.ndarray, threshold: float, *, min_area: int = 9
                 ) -> tuple[np.ndarray, float]:
    """(mask uint8 HxW 0/255, threshold used) from a heatmap in [0, 1] (float, or uint8 0..255).

    Pixels at or above ``threshold`` form the draft; specks smaller than ``min_area`` pixels
    are dropped and holes filled. When no pixel reaches the threshold (a part the model
    calls OK) the draft is the hottest spot: the pixels above ``FALLBACK_FRACTION`` of the
    peak, so the inspector still gets a starting point. A flat (all-equal) map gives an
    empty mask.
    """
    h = np.asarray(heatmap)
    if h.ndim != 2 or h.size == 0:
        raise UserError(f"a heatmap must be a 2-D array, got shape {h.shape}")
    h = h.astype(np.float32) / 255.0 if h.dtype == np.uint8 else h.astype(np.float32)
    if not np.all(np.isfinite(h)):
        raise UserError("the heatmap holds NaN or infinite values; predict the image again")
    t = float(threshold)
    if not (np.isfinite(t) and 0.0 <= t <= 1.0):
        raise UserError(f"a mask threshold must be between 0 and 1, got {threshold}")
    peak, low = float(h.max()), float(h.min())
    if peak <= low:
        return np.zeros(h.shape, np.uint8), t
    if peak < t:
        t = low + FALLBACK_FRACTION * (peak - low)
    m = h >= t
    labels, n = ndimage.label(m)
    if n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= min_area
        keep[0] = False
        if not keep.any():  # everything is small: keep the largest speck rather than nothing
            keep[int(np.argmax(sizes[1:])) + 1] = True
        m = keep[labels]
    m = ndimage.binary_fill_holes(m)
    return (m.astype(np.uint8) * 255), t


def runs_trained_on(runs_dir: str | Path, trains_on: str) -> list[str]:
    """Ids of the finished runs in ``runs_dir`` whose kind trains on ``trains_on`` (one of
    defect_studio.kinds.base.TRAINS_ON), newest first."""
    from defect_studio.kinds import kind_of_run
    from defect_studio.project.runs import list_runs

    out = []
    for r in list_runs(Path(runs_dir)):
        if r.state == "finished" and kind_of_run(Path(runs_dir) / r.id).trains_on == trains_on:
            out.append(r)
    out.sort(key=lambda r: (str(getattr(r, "created", "") or ""), r.id), reverse=True)
    return [r.id for r in out]
