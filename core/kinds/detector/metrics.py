"""Box metrics: mAP per type (pycocotools' COCOeval, one type at a time),
a confusion matrix by type, the fragmentation figure and the box-level F1 threshold.

Predictions and ground truth are per image: dicts with "boxes" (array [n, 4] x0, y0,
x1, y1 in image pixels), "labels" (type index, 0-based) and, for predictions,
"scores".
"""

from __future__ import annotations

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
    """{"map", "map_50", "per_type": {name: {"ap", "ap_50", "n_gt"}}} (None where undefined).

    COCO's figures from pycocotools' COCOeval (IoU 0.50:0.95, 101 recall points, at most
    100 boxes per image and type), run once per type on only the images that hold a true
    or predicted box of that type: the others add nothing to that type's AP, and COCOeval
    run over all types at once keeps a table of every (image, type) pair, so its memory and
    time grew with images x types (4.4 GB at 500 types). Here they grow with the boxes.
    mAP is the mean AP of the types that have true boxes (as COCO's summary computes it);
    a type with predictions but no true box has no AP.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    k = len(classes)
    n_gt = np.zeros(k, np.int64)
    images_of = [set() for _ in range(k)]  # per type: images with a true or predicted box
    anns: list[dict] = []
    dets: list[dict] = []
    for target, d, out in ((anns, gts, False), (dets, preds, True)):
        for i, item in enumerate(d, 1):
            boxes = np.asarray(item["boxes"], np.float64).reshape(-1, 4)
            labels = np.asarray(item["labels"], np.int64).reshape(-1)
            scores = np.asarray(item["scores"], np.float64).reshape(-1) if out else None
            for j, (box, c) in enumerate(zip(boxes, labels)):
                if not 0 <= c < k:
                    continue
                x0, y0, x1, y1 = (float(v) for v in box)
                w, h = x1 - x0, y1 - y0
                ann = {"id": len(target) + 1, "image_id": i, "category_id": int(c) + 1,
                       "bbox": [x0, y0, w, h], "area": w * h, "iscrowd": 0}
                if out:
                    ann["score"] = float(scores[j])
                else:
                    n_gt[c] += 1
                target.append(ann)
                images_of[c].add(i)
    per_type = {name: {"ap": None, "ap_50": None, "n_gt": int(n_gt[i])}
                for i, name in enumerate(classes)}
    quiet = contextlib.redirect_stdout(io.StringIO())  # pycocotools prints its progress
    with quiet:
        coco_gt = COCO()
        coco_gt.dataset = {"images": [{"id": i} for i in range(1, len(gts) + 1)],
                           "annotations": anns,
                           "categories": [{"id": c + 1} for c in range(k)]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets) if dets else None
    aps, aps_50 = [], []
    for c in range(k):
        if not n_gt[c]:
            continue  # no true box: AP undefined (COCO's -1)
        if coco_dt is None:  # no prediction at all: every true box is missed
            ap = ap_50 = 0.0
        else:
            ev = COCOeval(coco_gt, coco_dt, "bbox")
            ev.params.catIds = [c + 1]
            ev.params.imgIds = sorted(images_of[c])
            ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e10]], ["all"]
            ev.params.maxDets = [100]
            with quiet:
                ev.evaluate()
                ev.accumulate()
            prec = ev.eval["precision"][:, :, 0, 0, 0]  # [IoU thresholds, recall points]
            ap = float(prec[prec > -1].mean()) if (prec > -1).any() else 0.0
            ap_50 = float(prec[0][prec[0] > -1].mean()) if (prec[0] > -1).any() else 0.0
        per_type[classes[c]]["ap"] = round(ap, 6)
        per_type[classes[c]]["ap_50"] = round(ap_50, 6)
        aps.append(ap)
        aps_50.append(ap_50)
    return {"map": round(float(np.mean(aps)), 6) if aps else None,
            "map_50": round(float(np.mean(aps_50)), 6) if aps_50 else None,
            "per_type": per_type}


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
