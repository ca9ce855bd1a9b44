"""AUPRO: area under the per-region-overlap curve up to a false-positive rate of 0.3.

The MVTec AD measure of anomaly localisation: every connected defect region counts the same,
however large, so a map that finds the small defects scores well even when one big defect
dominates the pixel counts. No maintained package in our dependencies has it
(torchmetrics and scikit-learn do not; anomalib is a heavy framework we do not ship), so
this is a short implementation of the published definition: for thresholds t from high to
low, FPR(t) over all defect-free pixels and PRO(t) = mean over regions of the fraction of
the region at or above t; the curve is integrated (trapezoids) up to FPR = ``max_fpr`` and
divided by ``max_fpr``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from defect_studio.errors import DataError


def aupro(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_fpr: float = 0.3,
          n_thresholds: int = 1000) -> float | None:
    """AUPRO in [0, 1] of anomaly maps against masks (same shapes, nonzero = defect).

    None when there is no defect region or no defect-free pixel (undefined).
    """
    if len(masks) != len(maps):
        raise DataError(f"{len(masks)} masks but {len(maps)} maps: they must match")
    if not 0 < max_fpr <= 1:
        raise DataError(f"max_fpr must be in (0, 1], got {max_fpr}")
    regions: list[np.ndarray] = []
    normal: list[np.ndarray] = []
    for m, a in zip(masks, maps):
        m = np.asarray(m) != 0
        a = np.asarray(a, dtype=np.float64)
        if m.shape != a.shape:
            raise DataError(f"a mask is {m.shape} but its map is {a.shape}")
        if not np.all(np.isfinite(a)):
            raise DataError("some anomaly map values are NaN or infinite")
        normal.append(a[~m])
        labels, n = ndimage.label(m)
        if n:
            idx = labels.ravel()
            order = np.argsort(idx, kind="stable")
            counts = np.bincount(idx, minlength=n + 1)
            vals = a.ravel()[order]
            bounds = np.cumsum(counts)
            regions.extend(np.sort(vals[bounds[k - 1]:bounds[k]]) for k in range(1, n + 1))
    neg = np.sort(np.concatenate(normal)) if normal else np.empty(0)
    if not regions or neg.size == 0:
        return None
    lo = min(neg[0], min(r[0] for r in regions))
    hi = max(neg[-1], max(r[-1] for r in regions))
    thresholds = np.linspace(hi, lo, n_thresholds)
    fpr = 1 - np.searchsorted(neg, thresholds, side="left") / neg.size
    pro = np.mean([1 - np.searchsorted(r, thresholds, side="left") / r.size for r in regions],
                  axis=0)
    fpr = np.concatenate([[0.0], fpr])
    pro = np.concatenate([[0.0], pro])
    keep = fpr <= max_fpr
    f, p = fpr[keep], pro[keep]
    if f[-1] < max_fpr:  # close the curve at exactly max_fpr (linear interpolation)
        j = int(np.argmax(fpr > max_fpr))
        w = (max_fpr - fpr[j - 1]) / max(fpr[j] - fpr[j - 1], 1e-12)
        f = np.append(f, max_fpr)
        p = np.append(p, pro[j - 1] + w * (pro[j] - pro[j - 1]))
    return float(np.trapezoid(p, f) / max_fpr)
