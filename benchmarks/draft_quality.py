"""Draft mask quality without training (issue 18, the "none" case): for each defective
training image of a project that *has* masks, the draft that defect_studio.kinds.segdec.drafts
makes when the masks are ignored, compared with the true mask.

Per project it prints, for the defective training images with a mask: how many got a draft,
how many drafts hit the defect (a draft pixel within --tol px of the true mask, in the
image's own pixels), the mean draft precision (share of draft pixels within --tol px of the
defect), how many images have their most anomalous cell within --tol px of the defect
(top-1), and the drafting time. ``--method ok-gaussian`` makes the drafts as before
(one Gaussian of the features of the OK training images at the run's input size, no edge
padding) for comparison.

    python benchmarks/draft_quality.py PROJECT:512x512 [PROJECT:WxH ...] [--method own,ok-gaussian]

The size after the colon is the run's input size (what `train` chooses for the project
without masks: 512x512 for the demo-1024 case). Nothing is written; the project is opened
read-only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("projects", nargs="+", help="PROJECT:WxH (the run's input size)")
    p.add_argument("--method", default="own", help="own (drafts.py), ok-gaussian, or both")
    p.add_argument("--tol", type=int, default=8, help="px of the image: near the defect")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="append each row as one JSON line to this file")
    return p.parse_args(argv)


def parse_target(text: str) -> tuple[Path, tuple[int, int]]:
    path, sep, size = text.rpartition(":")
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        w = h = 0
    if not sep or w <= 0 or h <= 0 or w > 8192 or h > 8192:
        raise SystemExit(f"give PROJECT:WxH (input size 1-8192 px), got {text!r}")
    return Path(path), (w, h)


def ok_gaussian(ok, defective, size):
    """The drafts as made before (one Gaussian of the OK images' features at the input
    size, no edge padding): {id: bool mask at size (H, W)} and the top-1 maps."""
    import cv2
    import numpy as np
    import torch
    import torch.nn.functional as F

    from defect_studio.backbones.efficientnet_lite import load_efficientnet_lite0, normalize
    from defect_studio.kinds.segdec.drafts import COV_EPS, DRAFT_SHARE, SMOOTH_CELLS

    net = load_efficientnet_lite0(pretrained=True)

    @torch.no_grad()
    def feats(x):
        f4, f8 = net.features(normalize(x[None].float()), ("1/4", "1/8"))
        f8 = F.interpolate(f8, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        return F.avg_pool2d(torch.cat([f4, f8], 1), 3, 1, 1)[0]

    s1 = s2 = None
    n = 0
    for x in ok:
        e = feats(x).flatten(1).double()
        s1 = e.sum(1) if s1 is None else s1 + e.sum(1)
        s2 = e @ e.T if s2 is None else s2 + e @ e.T
        n += e.shape[1]
    mean = s1 / n
    cov = s2 / n - torch.outer(mean, mean) + COV_EPS * torch.eye(s2.shape[0], dtype=s2.dtype)
    mean, inv = mean.float(), torch.linalg.inv(cov).float()

    def dist(x):
        e = feats(x)
        _, h, w = e.shape
        d = e.flatten(1).T - mean
        m = ((d @ inv) * d).sum(1).clamp_min(0).sqrt().reshape(h, w).numpy()
        return cv2.GaussianBlur(np.nan_to_num(m, nan=0.0, posinf=0.0), (0, 0), SMOOTH_CELLS)

    level = float(np.median([dist(x).max() for x in ok]))
    masks, maps = {}, {}
    for i, x in defective.items():
        m = maps[i] = dist(x)
        if m.max() >= level:
            cells = (m >= max(level, DRAFT_SHARE * m.max())).astype(np.uint8)
            masks[i] = cv2.resize(cells, size, interpolation=cv2.INTER_NEAREST) > 0
    return masks, maps


def measure(project: Path, size: tuple[int, int], method: str, tol: int) -> dict:
    import cv2
    import numpy as np

    from defect_studio.kinds.segdec import drafts as D
    from defect_studio.project import Project
    from defect_studio.training.data import preprocess_image

    class Cfg:  # what preprocess_image reads
        def __init__(self, input_size, channels):
            self.input_size, self.channels, self.resize = input_size, channels, "stretch"

    with Project.open(project, readonly=True) as p:
        train = [r for r in p.images(split="train") if r.label in ("ok", "defective")]
        ok = [r for r in train if r.label == "ok"]
        bad = [r for r in train if r.label == "defective" and r.has_mask]
        channels = 1 if all(r.channels == 1 for r in train) else 3
        truth = {r.id: p.load_mask(r.id) > 0 for r in bad}
        images = {r.id: p.read_image(r) for r in bad}
        t0 = time.perf_counter()
        if method == "own":
            def read(img):
                at = D.draft_size((img.shape[1], img.shape[0]), size)
                return preprocess_image(img, Cfg(at, channels))
            oks = [read(p.read_image(ok[i])) for i in D.ok_subset(list(range(len(ok))))]
            # drafts.draft_masks' steps, keeping the maps for top-1 (each computed once)
            surface = D.Surface()
            level = D.draft_level([float(surface.distance(x).max()) for x in oks])
            maps = {i: surface.distance(read(img)) for i, img in images.items()}
            drafts = {i: D.draft_from_map(m, level, size) for i, m in maps.items()}
            masks = {i: d for i, d in drafts.items() if d is not None}
            seconds = time.perf_counter() - t0
        elif method == "ok-gaussian":
            oks = [preprocess_image(p.read_image(ok[i]), Cfg(size, channels))
                   for i in range(len(ok))][:200]
            defective = {i: preprocess_image(img, Cfg(size, channels))
                         for i, img in images.items()}
            masks, maps = ok_gaussian(oks, defective, size)
            seconds = time.perf_counter() - t0
        else:
            raise SystemExit(f"unknown method {method!r}: own, ok-gaussian")
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tol + 1, 2 * tol + 1))
    hits = top1 = 0
    precision = []
    for i, mask in truth.items():
        H, W = mask.shape
        near = cv2.dilate(mask.astype(np.uint8), kernel) > 0
        m = maps[i]
        y, x = np.unravel_index(int(m.argmax()), m.shape)
        top1 += bool(near[min(int((y + 0.5) * H / m.shape[0]), H - 1),
                          min(int((x + 0.5) * W / m.shape[1]), W - 1)])
        if i in masks:
            d = cv2.resize(masks[i].astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
            inside = int((d & near).sum())
            hits += inside > 0
            precision.append(inside / max(int(d.sum()), 1))
    return {"project": str(project), "input": list(size), "method": method,
            "defective": len(truth), "ok_images": len(ok), "drafted": len(masks), "hit": hits,
            "precision": round(float(np.mean(precision)), 3) if precision else None,
            "top1": top1, "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    if not 0 <= args.tol <= 256:
        raise SystemExit("--tol must be 0-256 px")
    methods = ["own", "ok-gaussian"] if args.method == "both" else [args.method]
    print(f"torch threads {torch.get_num_threads()}; near = within {args.tol} px of the mask")
    print("| project | input | method | defective | drafted | hit | precision | top-1 | s |\n"
          "|---|---|---|---|---|---|---|---|---|", flush=True)
    for text in args.projects:
        project, size = parse_target(text)
        for method in methods:
            r = measure(project, size, method, args.tol)
            print(f"| {project} | {size[0]}x{size[1]} | {method} | {r['defective']} | "
                  f"{r['drafted']} | {r['hit']} | {r['precision']} | {r['top1']} | "
                  f"{r['seconds']} |", flush=True)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as f:
                    f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
