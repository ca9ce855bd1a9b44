"""Export parity on the real magnetic-tile images (a check outside `make test`).

    .venv/bin/python benchmarks/deploy_parity_magnetic_tile.py [--count 300] [--threads 2]

Imports ../shared/datasets/magnetic-tile (linked, into a temp project), trains a short
MixSup run ("resize") and a short MFFPA run ("pad": the aspect-preserving geometry) on a
few training images, exports each as ONNX and as OpenVINO IR, and scores --count images
of every size in the set with the torch Predictor and with both packages. Passes (exit 0)
when max |score difference| <= 1e-4 and every OK/NG decision is the same; prints a
Markdown table. The runs are short: parity, not accuracy, is measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic-tile"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--count", type=int, default=300, help="images scored per run and backend")
    p.add_argument("--size", default="192x192", help="input size WxH of the runs")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from defect_studio.cli import main as cli
    from defect_studio.deploy.export import convert_package, export_model
    from defect_studio.deploy.runtime import load_package
    from defect_studio.kinds.segdec.predictor import Predictor
    from defect_studio.project import Project
    from defect_studio.training import TrainConfig, train
    from defect_studio.training.config import parse_size

    torch.set_num_threads(args.threads)
    if not Path(args.data).is_dir():
        print(f"magnetic-tile not found at {args.data}", file=sys.stderr)
        return 2
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="mt-parity-") as tmp:
        root = Path(tmp) / "mt"
        assert cli(["import", args.data, "--project", str(root), "--link"]) == 0
        with Project.open(root) as project:
            train_recs = project.images(split="train")
            keep = ([r for r in train_recs if r.label == "defective"][:6]
                    + [r for r in train_recs if r.label == "ok"][:6])
            keep_ids = {r.id for r in keep}
            for r in train_recs:
                if r.id not in keep_ids:
                    project.set_split(r.id, "test")
            recs = project.images()
            rng = np.random.default_rng(0)
            pick = sorted(rng.choice(len(recs), size=min(args.count, len(recs)), replace=False))
            images = [project.read_image(recs[i]) for i in pick]
        sizes = {im.shape[:2] for im in images}
        for model, resize in (("mixsup", "resize"), ("mffpa", "pad")):
            cfg = TrainConfig(model=model, epochs=1, input_size=parse_size(args.size),
                              resize=resize, device="cpu", num_threads=args.threads,
                              val_every=0, seed=0)
            t = time.perf_counter()
            run_id = train(root, cfg, run_id=f"{model}-{resize}")
            train_s = time.perf_counter() - t
            run = root / "runs" / run_id
            ref = Predictor(run, device="cpu", num_threads=args.threads)
            want = [pr for _, pr in ref.predict_many(images)]
            onnx_pkg = export_model(run, Path(tmp) / f"{run_id}-onnx", "onnx")
            ov_pkg = convert_package(onnx_pkg, Path(tmp) / f"{run_id}-openvino")
            for fmt, pkg_dir in (("onnx", onnx_pkg), ("openvino", ov_pkg)):
                pkg = load_package(pkg_dir, num_threads=args.threads)
                got = [pr for _, pr in pkg.predict_many(images)]
                d_score = max(abs(a.score - b.score) for a, b in zip(want, got))
                d_heat = max(float(np.abs(a.heatmap - b.heatmap).max()) for a, b in zip(want, got))
                flips = sum(a.is_ng != b.is_ng for a, b in zip(want, got))
                passed = d_score <= 1e-4 and flips == 0
                ok &= passed
                rows.append((model, resize, fmt, len(images), d_score, d_heat, flips,
                             sum(a.is_ng for a in want), ref.threshold, train_s, passed))
    print(f"magnetic-tile: {len(images)} images in {len(sizes)} sizes; input {args.size}\n")
    print("| model | resize | format | images | max abs score diff | max abs heatmap diff "
          "| decisions differing | NG (torch) | threshold | train s | pass |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.2e} | {r[5]:.2e} | {r[6]} | {r[7]} "
              f"| {r[8]:.4f} | {r[9]:.0f} | {'yes' if r[10] else 'NO'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
