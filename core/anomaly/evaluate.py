"""Evaluate an anomaly run: the result of core.evaluation.evaluate_run plus image AUROC,
pixel AUROC and AUPRO, so the Evaluate page shows it beside MFFPA runs.

Same signature, same files (scores.csv, pr_curve.csv, roc_curve.csv, evaluation_<split>.json)
and the same keys; added: ``image_auroc`` (= ``auc``) and ``pixel.aupro``. AUPRO is computed
on maps downscaled to at most ``AUPRO_SIDE`` pixels on the long side (memory: whole maps
are kept for it, unlike the sampled pixel AUROC).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from core.errors import DataError, UserError
from core.evaluation.evaluate import EVAL_SPLITS, _csv_text, _fmt, _pixel_sample, without_curves
from core.evaluation.metrics import MAX_PIXELS, confusion_at, image_metrics, pixel_metrics

AUPRO_SIDE = 256


def _small(a: np.ndarray, interp: int) -> np.ndarray:
    h, w = a.shape[:2]
    s = AUPRO_SIDE / max(h, w)
    if s >= 1:
        return a
    return cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


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
    from core.anomaly.aupro import aupro
    from core.anomaly.predictor import AnomalyPredictor
    from core.inference.predictor import resolve_run_dir
    from core.io.atomic import atomic_write_bytes, write_json_atomic
    from core.project import Project

    if split not in EVAL_SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(EVAL_SPLITS)}")
    t0 = time.perf_counter()
    run_dir = resolve_run_dir(run_id, project_root)
    predictor = AnomalyPredictor(run_dir, device=device)
    with Project.open(project_root, readonly=True) as project:
        recs = project.images(split=None if split == "all" else split)
        recs = [r for r in recs if r.label != "unlabeled" or r.has_mask]
        if not recs:
            where = "the project" if split == "all" else f"the {split} split"
            raise DataError(f"{where} has no labelled images to evaluate on: label images OK or "
                            "defective, or assign splits (defect-studio split)")
        use_pixels = any(r.has_mask for r in recs)
        n_pixel_images = sum(1 for r in recs if r.has_mask or r.label == "ok") if use_pixels else 0
        per_image = max(1, MAX_PIXELS // max(1, n_pixel_images))
        rows: list[list[Any]] = []
        y_true: list[int] = []
        scores: list[float] = []
        errors: list[dict[str, Any]] = []
        pix_masks, pix_heats, pro_masks, pro_maps = [], [], [], []
        pixel_skipped: list[dict[str, Any]] = []
        by_path = {str(project.image_path(r)): r for r in recs}
        for item, pred in predictor.predict_many(list(by_path), batch_size=batch_size,
                                                 progress=progress):
            rec = by_path[item]
            if isinstance(pred, str):
                errors.append({"image_id": rec.id, "path": rec.path, "error": pred})
                continue
            mask = project.load_mask(rec.id) if rec.has_mask else None
            defective = rec.label == "defective" or (mask is not None and bool(np.any(mask)))
            y_true.append(int(defective))
            scores.append(pred.score)
            rows.append([rec.id, rec.path, "defective" if defective else "ok", _fmt(pred.score),
                         "NG" if pred.is_ng else "OK", rec.split or ""])
            if not use_pixels or (mask is None and rec.label != "ok"):
                continue
            if mask is None:
                mask = np.zeros(pred.heatmap.shape, np.uint8)
            if mask.shape[:2] != pred.heatmap.shape:
                reason = (f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                          f"{pred.heatmap.shape[1]}x{pred.heatmap.shape[0]}: "
                          "left out of the pixel metrics")
                pixel_skipped.append({"image_id": rec.id, "path": rec.path, "reason": reason})
                continue
            pm, ph = _pixel_sample(mask, pred.heatmap, per_image, seed=rec.id)
            pix_masks.append(pm)
            pix_heats.append(ph)
            pro_masks.append(_small((np.asarray(mask) > 0).astype(np.uint8), cv2.INTER_NEAREST))
            pro_maps.append(_small(pred.heatmap.astype(np.float32), cv2.INTER_AREA))
    if not scores:
        raise DataError(f"none of the {len(recs)} images could be scored; first error: "
                        f"{errors[0]['error'] if errors else 'unknown'}")

    m = image_metrics(y_true, scores)
    run_thr = confusion_at(y_true, scores, predictor.threshold)
    run_thr["source"] = predictor.threshold_source
    if use_pixels:
        pixel = pixel_metrics(pix_masks, pix_heats)
        pixel["n_images"] = len(pix_masks)
        pixel["aupro"] = aupro(pro_masks, pro_maps)
        if pixel_skipped:
            pixel["skipped"] = pixel_skipped
    else:
        pixel = {"pixel_auroc": None, "pixel_ap": None, "aupro": None, "n_pixels": 0, "n_images": 0,
                 "subsampled": False, "note": f"no image of the {split} split has a mask"}
    result: dict[str, Any] = {
        "run_id": run_dir.name, "split": split, "model": predictor.config.model,
        "n": m["n"], "n_pos": m["n_pos"], "n_errors": len(errors), "errors": errors,
        "ap_sklearn": m["ap_sklearn"], "ap_trapz": m["ap_trapz"], "auc": m["auc"],
        "image_auroc": m["auc"], "run_threshold": run_thr, "best_f1": m["best_f1"],
        "pixel": pixel, "pr_curve": m["pr_curve"], "roc_curve": m["roc_curve"],
    }
    if "note" in m:
        result["note"] = m["note"]
    files = {"scores": run_dir / "scores.csv", "pr_curve": run_dir / "pr_curve.csv",
             "roc_curve": run_dir / "roc_curve.csv", "json": run_dir / f"evaluation_{split}.json"}
    atomic_write_bytes(files["scores"], _csv_text(
        ["image_id", "path", "label", "score", "decision", "split"], rows))
    pr = m["pr_curve"]
    pr_rows = [[_fmt(p), _fmt(r), _fmt(pr["thresholds"][i]) if i < len(pr["thresholds"]) else ""]
               for i, (p, r) in enumerate(zip(pr["precision"], pr["recall"]))]
    atomic_write_bytes(files["pr_curve"], _csv_text(["precision", "recall", "threshold"], pr_rows))
    roc = m["roc_curve"]
    atomic_write_bytes(files["roc_curve"], _csv_text(
        ["fpr", "tpr", "threshold"],
        [[_fmt(a), _fmt(b), _fmt(c)]
         for a, b, c in zip(roc["fpr"], roc["tpr"], roc["thresholds"])]))
    result["files"] = {k: str(v) for k, v in files.items()}
    result["elapsed_s"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(files["json"], without_curves(result))
    return result
