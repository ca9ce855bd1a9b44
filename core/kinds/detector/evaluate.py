"""Evaluate a detector run on a split: box figures (mAP per type, confusion matrix by
type, fragmentation) and, when the split has OK and defective images, the image-level
figures of evaluate_run (score = the most confident box).

Same contract as defect_studio.evaluation.evaluate.evaluate_run; the files written are in the
run folder: scores.csv, boxes.csv and evaluation_<split>.json.
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
from defect_studio.evaluation.evaluate import EVAL_SPLITS, without_curves


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def evaluate_detector(project_root: str | os.PathLike, run_id: str, split: str = "test", *,
                      device: str = "auto", batch_size: int = 8,
                      progress: Callable[[int, int], Any] | None = None) -> dict[str, Any]:
    """Score the split's images that have boxes or are labelled OK; see the module doc.

    Returns {run_id, split, model, n, n_pos, n_errors, errors, boxes {map, map_50,
    per_type, confusion, fragmentation, box_f1}, ap (= ap_sklearn), ap_sklearn, ap_trapz, auc,
    run_threshold, best_f1, pixel, pr_curve, roc_curve, files, elapsed_s[, note]}.
    """
    from defect_studio.evaluation.metrics import confusion_at, image_metrics
    from defect_studio.inference.predictor import resolve_run_dir
    from defect_studio.io.atomic import atomic_write_bytes, write_json_atomic
    from defect_studio.kinds.detector.data import split_samples
    from defect_studio.kinds.detector.metrics import (
        best_box_f1,
        confusion_by_type,
        fragmentation,
        mean_average_precision,
    )
    from defect_studio.kinds.detector.predictor import DetectorPredictor
    from defect_studio.project import Project

    if split not in EVAL_SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(EVAL_SPLITS)}")
    t0 = time.perf_counter()
    run_dir = resolve_run_dir(run_id, project_root)
    predictor = DetectorPredictor(run_dir, device=device)
    classes = predictor.classes
    with Project.open(project_root, readonly=True) as project:
        samples, _ = split_samples(project, None if split == "all" else split, classes)
    if not samples:
        raise DataError(f"the {split} split has no image with boxes or labelled OK to "
                        "evaluate the detector on")
    by_path = {str(s.path): s for s in samples}
    preds, gts, used, errors, rows, box_rows = [], [], [], [], [], []
    index = {c: i for i, c in enumerate(classes)}
    for item, pred in predictor.predict_many(list(by_path), batch_size=batch_size,
                                             progress=progress):
        s = by_path[item]
        if isinstance(pred, str):
            errors.append({"image_id": s.image_id, "path": item, "error": pred})
            continue
        preds.append({"boxes": np.array([[b.x, b.y, b.x + b.w, b.y + b.h] for b in pred.boxes],
                                        np.float64).reshape(-1, 4),
                      "scores": np.array([b.score for b in pred.boxes], np.float64),
                      "labels": np.array([index[b.type] for b in pred.boxes], np.int64)})
        gts.append({"boxes": s.boxes, "labels": s.labels})
        used.append(s)
        rows.append([s.image_id, item, "defective" if s.label else "ok", f"{pred.score:.6g}",
                     "NG" if pred.is_ng else "OK", len(s.boxes),
                     len(pred.boxes_at(predictor.threshold))])
        box_rows.extend([s.image_id, b.type, f"{b.x:.2f}", f"{b.y:.2f}", f"{b.w:.2f}",
                         f"{b.h:.2f}", f"{b.score:.4f}"] for b in pred.boxes)
    if not preds:
        raise DataError(f"none of the {len(samples)} images could be scored; first error: "
                        f"{errors[0]['error'] if errors else 'unknown'}")
    thr = predictor.threshold
    boxes = mean_average_precision(preds, gts, classes)
    boxes["confusion"] = confusion_by_type(preds, gts, classes, thr)
    boxes["fragmentation"] = fragmentation(preds, gts, thr)
    boxes["box_f1"] = best_box_f1(preds, gts)
    y = [s.label for s in used]
    scores = [float(np.max(p["scores"])) if len(p["scores"]) else 0.0 for p in preds]
    m = image_metrics(y, scores)
    run_thr = confusion_at(y, scores, thr)
    run_thr["source"] = predictor.threshold_source
    result: dict[str, Any] = {
        "run_id": run_dir.name, "split": split, "model": predictor.config.model,
        "n": m["n"], "n_pos": m["n_pos"], "n_errors": len(errors), "errors": errors,
        "boxes": boxes, "ap": m["ap_sklearn"], "ap_sklearn": m["ap_sklearn"],
        "ap_trapz": m["ap_trapz"],
        "auc": m["auc"], "run_threshold": run_thr, "best_f1": m["best_f1"],
        "pixel": {"pixel_auroc": None, "pixel_ap": None, "n_pixels": 0, "n_images": 0,
                  "subsampled": False, "note": "a detector predicts boxes, not pixels"},
        "pr_curve": m["pr_curve"], "roc_curve": m["roc_curve"],
    }
    if "note" in m:
        result["note"] = m["note"]
    files = {"scores": run_dir / "scores.csv", "boxes": run_dir / "boxes.csv",
             "pr_curve": run_dir / "pr_curve.csv", "roc_curve": run_dir / "roc_curve.csv",
             "json": run_dir / f"evaluation_{split}.json"}
    pr, roc = m["pr_curve"], m["roc_curve"]
    atomic_write_bytes(files["pr_curve"], _csv(["precision", "recall", "threshold"], [
        [p, r, pr["thresholds"][i] if i < len(pr["thresholds"]) else ""]
        for i, (p, r) in enumerate(zip(pr["precision"], pr["recall"]))]))
    atomic_write_bytes(files["roc_curve"], _csv(["fpr", "tpr", "threshold"], [
        list(v) for v in zip(roc["fpr"], roc["tpr"], roc["thresholds"])]))
    atomic_write_bytes(files["scores"], _csv(
        ["image_id", "path", "label", "score", "decision", "true_boxes", "boxes"], rows))
    atomic_write_bytes(files["boxes"], _csv(
        ["image_id", "type", "x", "y", "w", "h", "score"], box_rows))
    result["files"] = {k: str(v) for k, v in files.items()}
    result["elapsed_s"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(files["json"], without_curves(result))
    return result


def summary_lines(result: dict) -> list[str]:
    """The kind's ``summary_lines`` entry: the box lines of an evaluation result."""
    return box_summary_lines(result["boxes"]) if "boxes" in result else []


def box_summary_lines(boxes: dict) -> list[str]:
    """Readable lines of the "boxes" part of an evaluation (for the evaluate CLI)."""
    def num(v, d=3):
        return "n/a" if v is None else f"{v:.{d}f}"

    lines = [f"  boxes: mAP@0.5 {num(boxes['map_50'])}   mAP@[.5:.95] {num(boxes['map'])}"]
    for name, t in boxes["per_type"].items():
        lines.append(f"    {name:<20} AP@0.5 {num(t['ap_50'])}  AP {num(t['ap'])}  "
                     f"({t['n_gt']} true boxes)")
    f = boxes["fragmentation"]
    if f["n_defects"]:
        lines.append(f"  fragmentation at threshold {num(f['threshold'], 4)}: "
                     f"{num(f['boxes_per_defect'], 2)} boxes per defect, "
                     f"{100 * f['one_box']:.1f} % covered by exactly one box, "
                     f"{100 * f['missed']:.1f} % missed, {100 * f['fragmented']:.1f} % with 2+")
    c = boxes["confusion"]
    lines.append("  confusion by type (rows true, columns predicted; none = no box / no "
                 "defect):")
    width = max(len(n) for n in c["labels"]) + 2
    lines.append("    " + " " * width + "".join(f"{n[:8]:>9}" for n in c["labels"]))
    for name, row in zip(c["labels"], c["matrix"]):
        lines.append(f"    {name:<{width}}" + "".join(f"{v:>9}" for v in row))
    return lines
