"""The INT8 re-check band: float32 decides where INT8 could flip the decision (torch-free).

An INT8 package (``export-model --int8``) also holds the float32 network (``model_f32.*``)
and, in package.json's ``recheck``, a band in logit space around the decision threshold.
The runtime scores each batch with INT8 and re-scores in float32 only the images whose
INT8 score lies inside the band around the threshold in use; those take the float32 score
and heatmap, so their decision is the float32 decision.

Logit space, not probability space: scores are sigmoids and saturate near 0 and 1, where a
probability difference says nothing about the logit error (the quantization error is
roughly additive on the decision logit, not on the probability).

The band (``calibrate_band``), from the calibration images (the training images NNCF
calibrated on, scored by both networks at export), d = |logit_int8 - logit_f32| per image:

    band = SAFETY_FACTOR x max(d over the images that INT8 moves at least as far as their
                               distance to the threshold (d >= |logit_f32 - logit(threshold)|:
                               the only ones that can flip, whichever way INT8 moves them),
                               d over the MIN_NEAR images nearest the threshold)

Why not the max (or a quantile) over all images: the INT8 error grows with the image's
logit (magnetic tiles, test split: d <= 0.12 for the images within 0.5 logit of the
threshold, 0.66-0.95 for defect images scored 1.6-1.9 logits above it, which no error seen
carries across). A flipped image's INT8 logit lies within d of the threshold, so a band of
at least that d re-checks every flip seen at calibration; the MIN_NEAR nearest give the
error where flips happen when none was seen; SAFETY_FACTOR covers test images whose error
exceeds the calibration figures (docs/benchmarks.md, "INT8 re-check band"). The band is
calibrated at the package's threshold and used as is around a --threshold of the user's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SAFETY_FACTOR = 1.5
MIN_NEAR = 20  # the calibration images nearest the threshold that always set the band
LOGIT_EPS = 1e-7  # scores clipped to [eps, 1 - eps] before the logit: +-16.1 at most
MAX_BAND_LOGIT = 2 * math.log((1 - LOGIT_EPS) / LOGIT_EPS)  # a wider band re-checks all
RECHECK_MODES = ("on", "off")
F32_MODEL_FILES = {"onnx": "model_f32.onnx", "openvino": "model_f32.xml"}
RULE = (f"band = {SAFETY_FACTOR} x the largest |logit(score_int8) - logit(score_f32)| among "
        "the calibration images where it is at least |logit(score_f32) - logit(threshold)| "
        f"and the {MIN_NEAR} images nearest the threshold; an image is re-scored in float32 "
        "when |logit(score_int8) - logit(threshold)| <= band")


def logit(p: Any) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [LOGIT_EPS, 1 - LOGIT_EPS] (float64)."""
    q = np.clip(np.asarray(p, dtype=np.float64), LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(q) - np.log1p(-q)


def calibrate_band(f32_scores: Any, int8_scores: Any, threshold: float) -> dict[str, Any]:
    """The ``recheck`` facts of package.json (without the model file name) from the scores
    of the same calibration images by the float32 and the INT8 network."""
    a = np.asarray(f32_scores, dtype=np.float64).reshape(-1)
    b = np.asarray(int8_scores, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("the band needs the two networks' scores of the same images")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a network gave a score that is not a number on a calibration image")
    diff = np.abs(logit(b) - logit(a))
    dist = np.abs(logit(a) - float(logit(threshold)))
    reach = diff >= dist  # INT8 moved it at least as far as the threshold: it could flip
    near = np.zeros_like(reach)
    near[np.argsort(dist, kind="stable")[:MIN_NEAR]] = True
    flipped = (a >= threshold) != (b >= threshold)
    worst = float(diff[near | reach | flipped].max())
    band = min(SAFETY_FACTOR * worst, MAX_BAND_LOGIT)
    flips = int(flipped.sum())
    inside = np.abs(logit(b) - float(logit(threshold))) <= band
    return {
        "band_logit": round(band, 6),
        "rule": RULE,
        "safety_factor": SAFETY_FACTOR,
        "calibration": {
            "images": int(a.size),
            "abs_logit_diff_max": round(float(diff.max()), 6),
            "abs_logit_diff_q99": round(float(np.quantile(diff, 0.99)), 6),
            "abs_logit_diff_median": round(float(np.median(diff)), 6),
            "images_reaching_threshold": int(reach.sum()),
            "abs_logit_diff_max_reaching_or_nearest": round(worst, 6),
            "decisions_differing": flips,
            "share_in_band": round(float(inside.mean()), 4),
        },
    }


def check_recheck(manifest: dict[str, Any], fmt: str, files: dict[str, Any],
                  where: object) -> dict[str, Any] | None:
    """The validated ``recheck`` of an INT8 package's manifest, or None when it has none
    (an INT8 package made before the re-check, or with ``--int8-recheck off``). ValueError
    (one line) naming what is wrong."""
    recheck = manifest.get("recheck")
    if recheck is None:
        return None
    if manifest.get("precision") != "int8":
        raise ValueError(f"{where}: 'recheck' belongs to INT8 packages, and this one is not")
    if not isinstance(recheck, dict):
        raise ValueError(f"{where}: 'recheck' must be an object, found {_short(recheck)}")
    model = recheck.get("model")
    if model != F32_MODEL_FILES[fmt] or model not in files:
        raise ValueError(f"{where}: 'recheck.model' must be {F32_MODEL_FILES[fmt]!r}, listed in "
                         f"'files', found {_short(model)}")
    band = recheck.get("band_logit")
    if isinstance(band, bool) or not isinstance(band, (int, float)) or \
            not math.isfinite(band) or not 0 <= band <= MAX_BAND_LOGIT:
        raise ValueError(f"{where}: 'recheck.band_logit' must be a number from 0 to "
                         f"{MAX_BAND_LOGIT:.1f} (logit units), found {_short(band)}")
    return {**recheck, "band_logit": float(band)}


def in_band(scores: Any, threshold: float, band: float) -> np.ndarray:
    """Indices of the scores within ``band`` logits of the threshold (a score that is not a
    number counts as inside: float32 decides it)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    dist = np.abs(logit(s) - float(logit(threshold)))
    return np.flatnonzero(~(dist > band))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
