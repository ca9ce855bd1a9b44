"""Image- and pixel-level metrics of a defect detector.

Conventions used everywhere in the project:

* ``y_true`` is 1 for a defective (NG) image, 0 for a good (OK) one.
* ``scores`` are the model's defect probabilities; an image is called NG when
  ``score >= threshold``.
* Two average-precision variants are reported (see docs/evaluation.md, "Image metrics"):
  ``ap_sklearn`` is scikit-learn's ``average_precision_score`` (step-wise sum
  ``sum_n (R_n - R_{n-1}) P_n``, no interpolation); ``ap_trapz`` is the
  trapezoidal area under the precision-recall curve returned by
  ``precision_recall_curve`` (the curve's points, including its end point at
  recall 0 / precision 1, joined by straight lines). ``ap_trapz`` is what the
  original MixSup code reports; tables must say which one they use.

Metrics that are undefined for the given data (AUC with one class, AP without
any defective image) are ``None`` and a ``note`` explains why; nothing raises
for that case, because small validation splits hit it in normal use.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from defect_studio.errors import DataError

# Above this many pixels pixel_metrics works on a seeded random subset: sorting
# hundreds of millions of floats would take minutes and gigabytes for a metric
# whose value changes in the third decimal at most.
MAX_PIXELS = 2_000_000


def _as_arrays(y_true: Sequence[Any], scores: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.size != s.size:
        raise DataError(f"{y.size} labels but {s.size} scores: they must match one to one")
    if y.size == 0:
        raise DataError("no images to evaluate: the list of labels is empty")
    if not np.all(np.isfinite(s)):
        raise DataError("some scores are NaN or infinite: the model output is not usable")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise DataError(f"labels must be 0 (OK) or 1 (defective), got {sorted(values)}")
    return y.astype(np.int8), s


def _counts(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, Any]:
    pred = s >= threshold
    pos = y == 1
    tp = int(np.count_nonzero(pred & pos))
    fp = int(np.count_nonzero(pred & ~pos))
    fn = int(np.count_nonzero(~pred & pos))
    tn = int(y.size - tp - fp - fn)
    return _from_counts(float(threshold), tp, fp, tn, fn)


def _from_counts(threshold: float, tp: int, fp: int, tn: int, fn: int) -> dict[str, Any]:
    # Division by zero (no predicted / no actual positives) gives 0, as scikit-learn's
    # zero_division=0 does: a detector that never fires gets no credit for precision.
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = tp + fp + tn + fn
    return {
        "threshold": threshold,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "accuracy": float((tp + tn) / n) if n else 0.0,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def confusion_at(y_true: Sequence[Any], scores: Sequence[Any], threshold: float) -> dict[str, Any]:
    """Confusion matrix and P/R/F1/accuracy when images with ``score >= threshold`` are NG.

    Returns {threshold, precision, recall, f1, accuracy, tp, fp, tn, fn}. One
    vectorised pass; for many calls on the same data (a slider) use ThresholdSweep.
    """
    y, s = _as_arrays(y_true, scores)
    return _counts(y, s, float(threshold))


class ThresholdSweep:
    """Confusion counts at any threshold in O(log n) after one sort (for a live slider)."""

    def __init__(self, y_true: Sequence[Any], scores: Sequence[Any]):
        y, s = _as_arrays(y_true, scores)
        order = np.argsort(s, kind="stable")
        self._scores = s[order]
        # cumulative positives among the k lowest scores, k = 0..n
        self._pos_below = np.concatenate([[0], np.cumsum(y[order] == 1)])
        self.n = int(y.size)
        self.n_pos = int(self._pos_below[-1])

    def at(self, threshold: float) -> dict[str, Any]:
        """Same dict as confusion_at(y_true, scores, threshold)."""
        k = int(np.searchsorted(self._scores, threshold, side="left"))  # k scores < threshold
        fn = int(self._pos_below[k])
        tn = k - fn
        tp = self.n_pos - fn
        fp = (self.n - k) - tp
        return _from_counts(float(threshold), tp, fp, tn, fn)


def _best_f1(y: np.ndarray, s: np.ndarray, n_pos: int) -> dict[str, Any]:
    if n_pos == 0:
        # No defective image: every threshold has F1 = 0, so there is no best one.
        out = _counts(y, s, float("inf"))
        out["threshold"] = None
        return out
    # Candidate thresholds are the distinct scores: between two of them nothing changes.
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    pos_below = np.concatenate([[0], np.cumsum(y[order] == 1)])
    cand = np.unique(s_sorted)
    k = np.searchsorted(s_sorted, cand, side="left")  # images scored below each candidate
    fn = pos_below[k]
    tp = n_pos - fn
    fp = (y.size - k) - tp
    f1 = 2 * tp / (2 * tp + fp + fn)  # = 2PR/(P+R); tp + fn = n_pos > 0 so never 0/0
    # ties go to the highest threshold (fewest false alarms at the same F1)
    i = int(len(f1) - 1 - np.argmax(f1[::-1]))
    return _from_counts(float(cand[i]), int(tp[i]), int(fp[i]), int(k[i] - fn[i]), int(fn[i]))


# The validation split must show at this one-sided level that defective images score above
# good ones before its best-F1 point becomes a run's threshold. Where it cannot (a model that
# has not learned the defects yet, or too few defective validation images to tell), the
# best-F1 point is the optimum of noise, and with a quarter of the images defective it is
# often "flag everything" (F1 0.4 for no skill): measured on the 1024-px demo, a best-F1
# threshold from a validation AUC of 0.53 (9 defective images) flagged 36 of 45 good test
# parts. 0.05 is the usual level; 2 defective and 5 good images separated perfectly pass it.
SEPARATION_ALPHA = 0.05


def separation(y_true: Sequence[Any], scores: Sequence[Any],
               alpha: float = SEPARATION_ALPHA) -> dict[str, Any]:
    """Whether the scores rank defective images above good ones beyond chance.

    One-sided Mann-Whitney U test (the rank test whose statistic is ROC AUC times
    n_pos * n_neg; scipy, exact for small sets without ties). Returns {"auc", "p_value",
    "n_pos", "n_neg", "separates"}; with one class missing auc and p_value are None and
    separates is False.
    """
    y, s = _as_arrays(y_true, scores)
    pos, neg = s[y == 1], s[y == 0]
    out: dict[str, Any] = {"auc": None, "p_value": None, "n_pos": int(pos.size),
                           "n_neg": int(neg.size), "separates": False}
    if pos.size and neg.size:
        from scipy.stats import mannwhitneyu

        r = mannwhitneyu(pos, neg, alternative="greater")
        out["auc"] = float(r.statistic) / (pos.size * neg.size)
        out["p_value"] = float(r.pvalue)
        out["separates"] = bool(out["p_value"] < alpha)
    return out


def separation_warning(sep: dict[str, Any], instead: str) -> str:
    """The note for a validation split that does not separate (``separation``): what it
    showed and what the threshold was set from ``instead``."""
    auc = "n/a" if sep["auc"] is None else f"{sep['auc']:.2f}"
    p = "n/a" if sep["p_value"] is None else f"{sep['p_value']:.2g}"
    return (f"validation does not show the model separating defective from good images "
            f"(ROC AUC {auc} on {sep['n_pos']} defective / {sep['n_neg']} good, p = {p}): "
            f"its best-F1 point would be chance, so the threshold is {instead}; label more "
            f"defective images for validation or train longer, and check the test figures")


def trapezoid_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Trapezoidal area under a precision-recall curve: sklearn.metrics.auc(recall, precision).

    The points must be in curve order (by threshold, as precision_recall_curve
    returns them: recall falls monotonically). They are not re-sorted: at a repeated
    recall the order of the precisions decides which neighbours get joined. Fewer than
    two points enclose no area (0.0); DataError for mismatched lengths or a recall that
    goes back and forth (not a curve).
    """
    r = np.asarray(recall, dtype=np.float64).reshape(-1)
    p = np.asarray(precision, dtype=np.float64).reshape(-1)
    if r.shape != p.shape:
        raise DataError(f"precision has {p.size} points but recall {r.size}")
    if r.size < 2:
        return 0.0
    try:
        return float(auc(r, p))
    except ValueError as e:  # recall neither increasing nor decreasing
        raise DataError(f"not a precision-recall curve: {e}") from None


def image_metrics(y_true: Sequence[Any], scores: Sequence[Any]) -> dict[str, Any]:
    """Image-level metrics of defect scores against OK(0)/NG(1) ground truth.

    Returns {"ap_sklearn", "ap_trapz", "auc", "best_f1": {threshold, precision,
    recall, f1, accuracy, tp, fp, tn, fn}, "n", "n_pos", "pr_curve": {precision,
    recall, thresholds}, "roc_curve": {fpr, tpr, thresholds}} with plain Python
    types (JSON-ready). With only one class present the undefined values are None
    and "note" says why.
    """
    y, s = _as_arrays(y_true, scores)
    n, n_pos = int(y.size), int(np.count_nonzero(y))
    notes = []
    out: dict[str, Any] = {"n": n, "n_pos": n_pos}

    if n_pos > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns about ties; results are fine
            precision, recall, pr_thr = precision_recall_curve(y, s)
        out["ap_sklearn"] = float(average_precision_score(y, s))
        out["ap_trapz"] = trapezoid_ap(precision, recall)
        out["pr_curve"] = {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "thresholds": pr_thr.tolist(),
        }
    else:
        out["ap_sklearn"] = out["ap_trapz"] = None
        out["pr_curve"] = {"precision": [], "recall": [], "thresholds": []}
        notes.append("no defective image: AP and the precision-recall curve are undefined")

    if 0 < n_pos < n:
        out["auc"] = float(roc_auc_score(y, s))
        fpr, tpr, roc_thr = roc_curve(y, s)
        # sklearn's first threshold is +inf (nothing flagged), which JSON cannot hold
        roc_thr = np.where(np.isfinite(roc_thr), roc_thr, np.nextafter(s.max(), np.inf))
        out["roc_curve"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                            "thresholds": roc_thr.tolist()}
    else:
        out["auc"] = None
        out["roc_curve"] = {"fpr": [], "tpr": [], "thresholds": []}
        what = "defective" if n_pos == n else "OK"
        notes.append(f"all {n} images are {what}: ROC AUC needs both classes")

    out["best_f1"] = _best_f1(y, s, n_pos)
    if notes:
        out["note"] = "; ".join(notes)
    return out


def pixel_metrics(
    masks: Sequence[np.ndarray],
    heatmaps: Sequence[np.ndarray],
    *,
    max_pixels: int = MAX_PIXELS,
    seed: int = 0,
) -> dict[str, Any]:
    """Pixel AUROC and AP of heatmaps (defect probability per pixel) against masks.

    masks: HxW arrays, nonzero = defect; heatmaps: same shapes, float scores.
    Above ``max_pixels`` pixels in total a seeded random subset is used (same
    result on every call). Returns {"pixel_auroc", "pixel_ap", "n_pixels",
    "n_images", "subsampled"} plus "note" when a value is undefined.
    """
    if len(masks) != len(heatmaps):
        raise DataError(f"{len(masks)} masks but {len(heatmaps)} heatmaps: they must match")
    if len(masks) == 0:
        return {"pixel_auroc": None, "pixel_ap": None, "n_pixels": 0, "n_images": 0,
                "subsampled": False, "note": "no image with a mask"}
    for i, (m, h) in enumerate(zip(masks, heatmaps)):
        if np.shape(m) != np.shape(h):
            raise DataError(f"mask {i} is {np.shape(m)} but its heatmap is {np.shape(h)}")
    total = int(sum(np.size(m) for m in masks))
    subsampled = total > max_pixels
    if subsampled:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(total, size=max_pixels, replace=False))
        offsets = np.cumsum([0] + [int(np.size(m)) for m in masks])
        ys, ss = [], []
        for i, (m, h) in enumerate(zip(masks, heatmaps)):
            lo, hi = np.searchsorted(idx, [offsets[i], offsets[i + 1]])
            local = idx[lo:hi] - offsets[i]
            ys.append(np.asarray(m).reshape(-1)[local] != 0)
            ss.append(np.asarray(h, dtype=np.float32).reshape(-1)[local])
        y = np.concatenate(ys)
        s = np.concatenate(ss)
    else:
        y = np.concatenate([np.asarray(m).reshape(-1) != 0 for m in masks])
        s = np.concatenate([np.asarray(h, dtype=np.float32).reshape(-1) for h in heatmaps])
    out: dict[str, Any] = {"n_pixels": int(y.size), "n_images": len(masks),
                           "subsampled": subsampled}
    n_pos = int(np.count_nonzero(y))
    if not np.all(np.isfinite(s)):
        raise DataError("some heatmap values are NaN or infinite")
    if 0 < n_pos < y.size:
        out["pixel_auroc"] = float(roc_auc_score(y, s))
        out["pixel_ap"] = float(average_precision_score(y, s))
    else:
        out["pixel_auroc"] = out["pixel_ap"] = None
        out["note"] = ("no defect pixel in the masks" if n_pos == 0
                       else "every pixel is a defect pixel") + ": pixel metrics need both"
    return out
