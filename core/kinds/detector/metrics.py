"""Box metrics: mAP per type (torchmetrics' MeanAveragePrecision, pycocotools backend),
a confusion matrix by type, the fragmentation figure and the box-level F1 threshold.

Predictions and ground truth are per image: dicts with "boxes" (array [n, 4] x0, y0,
x1, y1 in image pixels), "labels" (type index, 0-based) and, for predictions,
"scores".
"""

from __future__ import annotations

from typing import Any

import numpy as np

MATCH_IOU = 0.5


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU [len(a), len(b)] of x0, y0, x1, y1 boxes (torchvision.ops.box_iou, in
    float64); 0 where the union is empty (degenerate boxes), never NaN."""
    import torch
    from torchvision.ops import box_iou

    a = torch.as_tensor(np.asarray(a, np.float64).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(b, np.float64).reshape(-1, 4))
    iou = box_iou(a, b).numpy()
    # a box of zero or negative size overlaps nothing: its 0/0 or 0/negative is no overlap
    return np.where(iou > 0, iou, 0.0)


def _above(pred: dict, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = np.asarray(pred["scores"]) >= threshold
    return (np.asarray(pred["boxes"]).reshape(-1, 4)[keep], np.asarray(pred["labels"])[keep],
            np.asarray(pred["scores"])[keep])


def mean_average_precision(preds: list[dict], gts: list[dict], classes: list[str]) -> dict:
    """{"map", "map_50", "per_type": {name: {"ap", "ap_50", "n_gt"}}} (None where undefined)."""
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    def tensors(d: dict, with_scores: bool) -> dict:
        out = {"boxes": torch.as_tensor(np.asarray(d["boxes"], np.float32).reshape(-1, 4)),
               "labels": torch.as_tensor(np.asarray(d["labels"], np.int64).reshape(-1))}
        if with_scores:
            out["scores"] = torch.as_tensor(np.asarray(d["scores"], np.float32).reshape(-1))
        return out

    p = [tensors(d, True) for d in preds]
    g = [tensors(d, False) for d in gts]
    coco = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True,
                                backend="pycocotools", max_detection_thresholds=[1, 10, 100])
    at50 = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True,
                                backend="pycocotools", iou_thresholds=[0.5],
                                max_detection_thresholds=[1, 10, 100])
    coco.update(p, g)
    at50.update(p, g)
    r, r50 = coco.compute(), at50.compute()

    def value(v: Any) -> float | None:
        v = float(v)
        return None if v < 0 else round(v, 6)

    n_gt = np.bincount(np.concatenate([np.asarray(d["labels"], np.int64).reshape(-1)
                                       for d in gts] or [np.zeros(0, np.int64)]),
                       minlength=len(classes))
    per_type = {name: {"ap": None, "ap_50": None, "n_gt": int(n_gt[i])}
                for i, name in enumerate(classes)}

    def fill(res: dict, key: str) -> None:
        ids = res["classes"].reshape(-1).tolist()
        vals = res["map_per_class"].reshape(-1).tolist()
        for c, v in zip(ids, vals):
            if 0 <= c < len(classes):
                per_type[classes[c]][key] = value(v)

    fill(r, "ap")
    fill(r50, "ap_50")
    return {"map": value(r["map"]), "map_50": value(r["map_50"]), "per_type": per_type}


def confusion_by_type(preds: list[dict], gts: list[dict], classes: list[str],
                      threshold: float, iou: float = MATCH_IOU) -> dict:
    """Rows: true type + "none" (a box where there is no defect); columns: predicted
    type + "none" (a defect no box found). Boxes at or above ``threshold`` are matched
    to ground truth of any type, best IoU first (at least ``iou``)."""
    k = len(classes)
    m = np.zeros((k + 1, k + 1), np.int64)
    for pred, gt in zip(preds, gts):
        pb, pl, _ = _above(pred, threshold)
        gb, gl = np.asarray(gt["boxes"]).reshape(-1, 4), np.asarray(gt["labels"]).reshape(-1)
        ious = _iou(gb, pb)
        used_g, used_p = set(), set()
        for flat in np.argsort(-ious, axis=None):
            gi, pi = np.unravel_index(flat, ious.shape)
            if ious[gi, pi] < iou:
                break
            if gi in used_g or pi in used_p:
                continue
            used_g.add(gi)
            used_p.add(pi)
            m[int(gl[gi]), int(pl[pi])] += 1
        for gi in range(len(gb)):
            if gi not in used_g:
                m[int(gl[gi]), k] += 1
        for pi in range(len(pb)):
            if pi not in used_p:
                m[k, int(pl[pi])] += 1
    names = list(classes) + ["none"]
    return {"labels": names, "matrix": m.tolist(), "threshold": threshold, "iou": iou}


def fragmentation(preds: list[dict], gts: list[dict], threshold: float,
                  iou: float = MATCH_IOU) -> dict:
    """How many boxes each true defect gets at the operating threshold.

    Each predicted box (score >= threshold) is assigned to the true box it overlaps
    most (IoU > 0, or mostly inside it: intersection >= half the predicted box); a
    defect's count is the number of boxes assigned to it. A defect is "covered by
    exactly one box" when one box is assigned to it and that box has IoU >= ``iou``.
    Returns {"n_defects", "boxes_per_defect" (mean), "one_box" (share covered by exactly
    one box), "missed" (share with no box), "fragmented" (share with two or more),
    "histogram" {0, 1, 2, "3+"}}.
    """
    counts, exact = [], []
    for pred, gt in zip(preds, gts):
        pb, _, _ = _above(pred, threshold)
        gb = np.asarray(gt["boxes"]).reshape(-1, 4)
        if not len(gb):
            continue
        n = np.zeros(len(gb), np.int64)
        best = np.zeros(len(gb))
        if len(pb):
            ious = _iou(gb, pb)
            area_p = (pb[:, 2] - pb[:, 0]) * (pb[:, 3] - pb[:, 1])
            ix = np.clip(np.minimum(gb[:, None, 2], pb[None, :, 2])
                         - np.maximum(gb[:, None, 0], pb[None, :, 0]), 0, None)
            iy = np.clip(np.minimum(gb[:, None, 3], pb[None, :, 3])
                         - np.maximum(gb[:, None, 1], pb[None, :, 1]), 0, None)
            inter = ix * iy
            owner = np.argmax(ious, axis=0)
            for pi, gi in enumerate(owner):
                if ious[gi, pi] > 0 or inter[gi, pi] >= 0.5 * area_p[pi]:
                    n[gi] += 1
                    best[gi] = max(best[gi], ious[gi, pi])
        counts.extend(n.tolist())
        exact.extend(((n == 1) & (best >= iou)).tolist())
    total = len(counts)
    if not total:
        return {"n_defects": 0, "boxes_per_defect": None, "one_box": None, "missed": None,
                "fragmented": None, "histogram": {}, "threshold": threshold}
    c = np.asarray(counts)
    return {
        "n_defects": total,
        "boxes_per_defect": round(float(c.mean()), 4),
        "one_box": round(float(np.mean(exact)), 4),
        "missed": round(float(np.mean(c == 0)), 4),
        "fragmented": round(float(np.mean(c >= 2)), 4),
        "histogram": {"0": int((c == 0).sum()), "1": int((c == 1).sum()),
                      "2": int((c == 2).sum()), "3+": int((c >= 3).sum())},
        "threshold": threshold,
    }


def best_box_f1(preds: list[dict], gts: list[dict], iou: float = MATCH_IOU) -> dict:
    """The score threshold with the best box-level F1 (a box is right when it matches an
    unmatched true box of its type with IoU >= ``iou``, highest scores first)."""
    scores, hits = [], []
    n_gt = 0
    for pred, gt in zip(preds, gts):
        pb, pl, ps = _above(pred, -np.inf)
        gb, gl = np.asarray(gt["boxes"]).reshape(-1, 4), np.asarray(gt["labels"]).reshape(-1)
        n_gt += len(gb)
        ious = _iou(pb, gb)
        taken = np.zeros(len(gb), bool)
        for pi in np.argsort(-ps):
            ok = (~taken) & (gl == pl[pi]) & (ious[pi] >= iou) if len(gb) else np.zeros(0, bool)
            hit = bool(ok.any())
            if hit:
                taken[np.argmax(np.where(ok, ious[pi], -1))] = True
            scores.append(float(ps[pi]))
            hits.append(hit)
    if not scores or not n_gt:
        return {"threshold": 0.5, "precision": None, "recall": None, "f1": None}
    order = np.argsort(-np.asarray(scores), kind="stable")
    s, h = np.asarray(scores)[order], np.asarray(hits)[order]
    tp = np.cumsum(h)
    fp = np.cumsum(~h)
    precision, recall = tp / (tp + fp), tp / n_gt
    f1 = np.where(precision + recall > 0, 2 * precision * recall /
                  np.maximum(precision + recall, 1e-12), 0)
    i = int(np.argmax(f1))
    return {"threshold": float(s[i]), "precision": float(precision[i]),
            "recall": float(recall[i]), "f1": float(f1[i])}
