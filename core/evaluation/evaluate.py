"""Evaluate a trained run on a split of its project: metrics, curves and per-image scores.

The project is opened read-only (the GUI may hold the write lock); the only files
written are inside the run's folder: scores_<split>.csv, pr_curve_<split>.csv,
roc_curve_<split>.csv and evaluation_<split>.json, plus scores.csv, pr_curve.csv and
roc_curve.csv as copies of the latest evaluation (the app shows those). When the run
folder cannot be written (read-only, disk full) the metrics are still returned, with
"save_error" saying why nothing was saved.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from defect_studio.errors import DataError, UserError
from defect_studio.evaluation.metrics import MAX_PIXELS, confusion_at, image_metrics, pixel_metrics

EVAL_SPLITS = ("train", "val", "test", "all")
CURVE_KEYS = ("pr_curve", "roc_curve")


def _csv_text(header: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _pixel_sample(mask: np.ndarray, heat: np.ndarray, k: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most k (mask, heat) pixel pairs of one image, picked by a seeded RNG.

    Keeping only a per-image sample bounds memory on large images; each image gets
    the same share so large images do not dominate.
    """
    m = (np.asarray(mask) > 0).reshape(-1)
    h = np.asarray(heat, dtype=np.float32).reshape(-1)
    if m.size <= k:
        return m, h
    idx = np.random.default_rng(seed).choice(m.size, size=k, replace=False)
    return m[idx], h[idx]


def _write_files(run_dir, split: str, rows: list, m: dict,
                 result: dict) -> tuple[dict[str, str], str | None]:
    """Write scores/pr_curve/roc_curve_<split>.csv and evaluation_<split>.json (and the
    unsuffixed CSVs, the latest evaluation the app shows). Returns (files written, None)
    or ({}, the reason) when the run folder cannot be written: the metrics stand."""
    from defect_studio.io.atomic import atomic_write_bytes, write_json_atomic

    pr, roc = m["pr_curve"], m["roc_curve"]
    # precision_recall_curve has one point more than thresholds: its end point (recall 0)
    pr_rows = [[_fmt(p), _fmt(r), _fmt(pr["thresholds"][i]) if i < len(pr["thresholds"]) else ""]
               for i, (p, r) in enumerate(zip(pr["precision"], pr["recall"]))]
    tables = {
        "scores": _csv_text(["image_id", "path", "label", "score", "decision", "split"], rows),
        "pr_curve": _csv_text(["precision", "recall", "threshold"], pr_rows),
        "roc_curve": _csv_text(["fpr", "tpr", "threshold"],
                               [[_fmt(a), _fmt(b), _fmt(c)] for a, b, c in
                                zip(roc["fpr"], roc["tpr"], roc["thresholds"])]),
    }
    files = {k: run_dir / f"{k}_{split}.csv" for k in tables}
    files["json"] = run_dir / f"evaluation_{split}.json"
    try:
        for key, data in tables.items():
            atomic_write_bytes(files[key], data)
            atomic_write_bytes(run_dir / f"{key}.csv", data)  # the latest, for the app
        names = {k: str(v) for k, v in files.items()}
        write_json_atomic(files["json"], without_curves({**result, "files": names}))
    except OSError as e:
        return {}, f"{e.strerror or e} ({e.filename or run_dir})"
    return names, None


def without_curves(result: dict[str, Any]) -> dict[str, Any]:
    """The evaluation dict minus the curve arrays (for --json and the JSON file)."""
    return {k: v for k, v in result.items() if k not in CURVE_KEYS}


def evaluate_run(
    project_root: str | os.PathLike,
    run_id: str,
    split: str = "test",
    *,
    device: str = "auto",
    batch_size: int = 8,
    progress: Callable[[int, int], Any] | None = None,
    predictor_class: Any = None,
    region_overlap: Any = None,
) -> dict[str, Any]:
    """Score the labelled images of ``split`` ("train", "val", "test" or "all") with a run.

    Every model kind can use it: ``predictor_class`` (default: the predictor entry of the
    run's kind, defect_studio.kinds) loads the run; ``region_overlap`` (e.g. the anomaly
    kind's RegionOverlap) collects each image's mask and heatmap and adds its figure to
    ``pixel`` (AUPRO for anomaly runs).

    Ground truth: an image is defective when it is labelled defective or its mask
    has a defect pixel; unlabelled images without a mask are skipped. Returns
    {run_id, split, model, n, n_pos, n_errors, errors, ap (= ap_sklearn), ap_sklearn, ap_trapz, auc,
    run_threshold {threshold, source, precision, recall, f1, accuracy, tp, fp, tn, fn},
    best_f1 {same keys}, pixel {pixel_auroc, pixel_ap, ...}, pr_curve, roc_curve,
    files, save_error, elapsed_s[, note]} and writes the CSVs and evaluation_<split>.json
    (without the curve arrays) into the run folder. progress(done, total) follows the
    scoring and may raise (e.g. CancelledError) to stop; nothing is written then.
    """
    from defect_studio.inference.predictor import resolve_run_dir
    from defect_studio.kinds import kind_of_run
    from defect_studio.project import Project

    if split not in EVAL_SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(EVAL_SPLITS)}")
    t0 = time.perf_counter()
    run_dir = resolve_run_dir(run_id, project_root)
    predictor = (predictor_class or kind_of_run(run_dir).load("predictor"))(run_dir, device=device)

    # Read-only: no lock, so this works while the GUI has the project open.
    with Project.open(project_root, readonly=True) as project:
        recs = project.images(split=None if split == "all" else split)
        recs = [r for r in recs if r.label != "unlabeled" or r.has_mask]
        if not recs:
            where = "the project" if split == "all" else f"the {split} split"
            raise DataError(f"{where} has no labelled images to evaluate on: label images OK or "
                            "defective, or assign splits (defect-studio split)")
        # Pixel metrics need a known mask: a drawn one, or an implicit empty one for OK
        # images, counted only when some image of the split has a mask at all.
        use_pixels = any(r.has_mask for r in recs)
        n_pixel_images = sum(1 for r in recs if r.has_mask or r.label == "ok") if use_pixels else 0
        per_image = max(1, MAX_PIXELS // max(1, n_pixel_images))

        rows: list[list[Any]] = []
        y_true: list[int] = []
        scores: list[float] = []
        errors: list[dict[str, Any]] = []
        pix_masks: list[np.ndarray] = []
        pix_heats: list[np.ndarray] = []
        pixel_skipped: list[dict[str, Any]] = []
        by_path = {str(project.image_path(r)): r for r in recs}
        results = predictor.predict_many(list(by_path), batch_size=batch_size, progress=progress)
        for item, pred in results:
            rec = by_path[item]
            if isinstance(pred, str):
                errors.append({"image_id": rec.id, "path": rec.path, "error": pred})
                continue
            mask = project.load_mask(rec.id) if rec.has_mask else None
            defective = rec.label == "defective" or (mask is not None and bool(np.any(mask)))
            y_true.append(int(defective))
            scores.append(pred.score)
            # the score in full (repr): a threshold chosen on it must call it the same way
            rows.append([rec.id, rec.path, "defective" if defective else "ok",
                         repr(float(pred.score)), "NG" if pred.is_ng else "OK", rec.split or ""])
            if not use_pixels or (mask is None and rec.label != "ok"):
                continue  # a defective image without a mask: where the defect is is unknown
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
            if region_overlap is not None:
                region_overlap.add(mask, pred.heatmap)

    if not scores:
        raise DataError(f"none of the {len(recs)} images could be scored; first error: "
                        f"{errors[0]['error'] if errors else 'unknown'}")

    m = image_metrics(y_true, scores)
    run_thr = confusion_at(y_true, scores, predictor.threshold)
    run_thr["source"] = predictor.threshold_source
    if use_pixels:
        pixel = pixel_metrics(pix_masks, pix_heats)
        pixel["n_images"] = len(pix_masks)
        if region_overlap is not None:
            pixel.update(region_overlap.result())
        if pixel_skipped:
            pixel["skipped"] = pixel_skipped
    else:
        pixel = {"pixel_auroc": None, "pixel_ap": None, "n_pixels": 0, "n_images": 0,
                 "subsampled": False, "note": f"no image of the {split} split has a mask"}
        if region_overlap is not None:
            pixel.update({k: None for k in region_overlap.result_keys})

    result: dict[str, Any] = {
        "run_id": run_dir.name,
        "split": split,
        "model": predictor.config.model,
        "n": m["n"],
        "n_pos": m["n_pos"],
        "n_errors": len(errors),
        "errors": errors,
        "ap": m["ap_sklearn"],  # the image-level AP every kind reports (= ap_sklearn)
        "ap_sklearn": m["ap_sklearn"],
        "ap_trapz": m["ap_trapz"],
        "auc": m["auc"],
        **({"image_auroc": m["auc"]} if region_overlap is not None else {}),
        "run_threshold": run_thr,
        "best_f1": m["best_f1"],
        "pixel": pixel,
        "pr_curve": m["pr_curve"],
        "roc_curve": m["roc_curve"],
    }
    if "note" in m:
        result["note"] = m["note"]

    result["elapsed_s"] = round(time.perf_counter() - t0, 3)
    result["files"], result["save_error"] = _write_files(run_dir, split, rows, m, result)
    return result
