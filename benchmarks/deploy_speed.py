"""Images per second of one run: torch Predictor vs ONNX Runtime vs OpenVINO (not a test).

    .venv/bin/python benchmarks/deploy_speed.py --run PROJECT/runs/RUN --images DIR
    .venv/bin/python benchmarks/deploy_speed.py --model mffpa --size 640x232 --channels 1

Same run, same images, one process, same number of CPU threads for all three. With
--run the run is exported (ONNX, then OpenVINO IR converted from it) into a temp
folder; without it a run of --model with seeded untrained weights is made there (speed
does not depend on the weights). Images: the image files under --images (the first
--count), else --count generated gray/RGB images of --image-size. Each backend scores
all images (predict_many: reading from memory, preprocessing, network, heatmap at
image resolution), round-robin over --repeats rounds after one warm-up round, so load
from other processes hits all alike. Prints a Markdown table (median and best images/s)
and the largest |score difference| to torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _make_run(root: Path, model: str, size: str, channels: int, resize: str) -> Path:
    import torch

    from defect_studio.kinds.segdec.config import TrainConfig
    from defect_studio.kinds.segdec.runmodel import build_run_model
    from defect_studio.training.checkpoint import save_model_weights
    from defect_studio.training.config import parse_size

    run = root / "runs" / f"bench-{model}"
    run.mkdir(parents=True)
    cfg = TrainConfig(model=model, input_size=parse_size(size), channels=channels, resize=resize)
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    (run / "status.json").write_text(json.dumps({"state": "finished", "epoch": 1}))
    torch.manual_seed(0)
    save_model_weights(run, build_run_model(cfg))
    return run


def _images(args: argparse.Namespace, channels: int) -> list[np.ndarray]:
    from defect_studio.io.images import is_image_file, read_image

    if args.images:
        files = sorted(p for p in Path(args.images).rglob("*") if is_image_file(p))[:args.count]
        if not files:
            sys.exit(f"no image files under {args.images}")
        return [read_image(p) for p in files]
    w, h = (int(v) for v in args.image_size.lower().split("x"))
    rng = np.random.default_rng(0)
    shape = (h, w) if channels == 1 else (h, w, 3)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(args.count)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a trained run folder (default: an untrained --model run)")
    p.add_argument("--model", default="mffpa")
    p.add_argument("--size", default="640x232", help="input size WxH of the untrained run")
    p.add_argument("--channels", type=int, default=1, choices=[1, 3])
    p.add_argument("--resize", default="resize", choices=["resize", "pad"])
    p.add_argument("--images", help="folder of images to score")
    p.add_argument("--image-size", default="640x232", help="WxH of generated images")
    p.add_argument("--count", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--backends", default="torch,onnx,openvino")
    args = p.parse_args(argv)

    import torch

    from defect_studio.deploy.export import convert_package, export_model
    from defect_studio.deploy.runtime import load_package
    from defect_studio.kinds.segdec.predictor import Predictor

    torch.set_num_threads(args.threads)
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    with tempfile.TemporaryDirectory(prefix="deploy-speed-") as tmp:
        tmp_path = Path(tmp)
        run = Path(args.run) if args.run else _make_run(tmp_path, args.model, args.size,
                                                        args.channels, args.resize)
        t0 = time.perf_counter()
        onnx_pkg = export_model(run, tmp_path / "pkg-onnx", "onnx")
        export_s = time.perf_counter() - t0
        ov_pkg = convert_package(onnx_pkg, tmp_path / "pkg-openvino")
        predictors = {}
        if "torch" in wanted:
            predictors["torch"] = Predictor(run, device="cpu", num_threads=args.threads)
        if "onnx" in wanted:
            predictors["onnx"] = load_package(onnx_pkg, num_threads=args.threads)
        if "openvino" in wanted:
            predictors["openvino"] = load_package(ov_pkg, num_threads=args.threads)
        config = next(iter(predictors.values())).config
        images = _images(args, int(config.channels))
        rates: dict[str, list[float]] = {n: [] for n in predictors}
        scores: dict[str, list[float]] = {}
        for rnd in range(args.repeats + 1):  # round 0 is the warm-up
            for name, pred in predictors.items():
                t = time.perf_counter()
                out = [r for _, r in pred.predict_many(images, batch_size=args.batch)]
                dt = time.perf_counter() - t
                if rnd == 0:
                    scores[name] = [r.score for r in out]
                else:
                    rates[name].append(len(images) / dt)

    W, H = config.input_size
    print(f"run {run.name}: input {W}x{H}x{config.channels} ({config.resize}); {len(images)} "
          f"images of {images[0].shape[1]}x{images[0].shape[0]}; batch {args.batch}; "
          f"{args.threads} thread(s); {args.repeats} rounds; "
          f"{platform.processor() or platform.machine()}"
          f", {os.cpu_count()} CPUs; ONNX export took {export_s:.1f} s\n")
    print("| backend | images/s (median) | images/s (best) | max abs score diff to torch |")
    print("|---|---:|---:|---:|")
    ref = scores.get("torch")
    for name, r in rates.items():
        diff = ("" if ref is None or name == "torch" else
                f"{max(abs(a - b) for a, b in zip(ref, scores[name])):.2e}")
        print(f"| {name} | {statistics.median(r):.1f} | {max(r):.1f} | {diff} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
