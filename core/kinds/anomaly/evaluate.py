"""Evaluate an anomaly run: the result of defect_studio.evaluation.evaluate_run plus image AUROC,
pixel AUROC and AUPRO, so the Evaluate page shows it beside MFFPA runs.

Same signature, same files (scores.csv, pr_curve.csv, roc_curve.csv, evaluation_<split>.json)
and the same keys; added: ``image_auroc`` (= ``auc``) and ``pixel.aupro``. AUPRO is computed
on maps downscaled to at most ``AUPRO_SIDE`` pixels on the long side (memory: whole maps
are kept for it, unlike the sampled pixel AUROC).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

AUPRO_SIDE = 256


def _small(a: np.ndarray, interp: int) -> np.ndarray:
    h, w = a.shape[:2]
    s = AUPRO_SIDE / max(h, w)
    if s >= 1:
        return a
    return cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


class RegionOverlap:
    """AUPRO over the evaluated images: keeps each mask and heatmap downscaled to at most
    AUPRO_SIDE on the long side (whole maps are needed, unlike the sampled pixel AUROC)."""

    result_keys = ("aupro",)

    def __init__(self) -> None:
        self.masks: list[np.ndarray] = []
        self.maps: list[np.ndarray] = []

    def add(self, mask: np.ndarray, heatmap: np.ndarray) -> None:
        self.masks.append(_small((np.asarray(mask) > 0).astype(np.uint8), cv2.INTER_NEAREST))
        self.maps.append(_small(heatmap.astype(np.float32), cv2.INTER_AREA))

    def result(self) -> dict[str, Any]:
        from defect_studio.kinds.anomaly.aupro import aupro

        return {"aupro": aupro(self.masks, self.maps)}


def evaluate_anomaly_run(
    project_root: str | os.PathLike,
    run_id: str,
    split: str = "test",
    *,
    device: str = "auto",
    batch_size: int = 8,
    progress: Callable[[int, int], Any] | None = None,
) -> dict[str, Any]:
    """Score the labelled images of ``split`` with an anomaly run (see evaluate_run)."""
    from defect_studio.evaluation.evaluate import evaluate_run
    from defect_studio.kinds.anomaly.predictor import AnomalyPredictor

    return evaluate_run(project_root, run_id, split, device=device, batch_size=batch_size,
                        progress=progress, predictor_class=AnomalyPredictor,
                        region_overlap=RegionOverlap())
