"""INT8 vs float32 packages of one run: images/s, decisions that differ, AP change (not a test).

    .venv/bin/python benchmarks/int8_speed.py --demo --size 640x232
    .venv/bin/python benchmarks/int8_speed.py --magnetic-tile --size 640x232
    .venv/bin/python benchmarks/int8_speed.py --run PROJECT/runs/RUN

Without --run a project is made in a temp folder (--demo: the generated demo project;
--magnetic-tile: ../shared/datasets/magnetic-tile, linked) and a short MFFPA run is
trained on it (--epochs, --train-images per label; OMP threads = --threads). The run is
exported as a float32 package and as an INT8 package (export-model --int8, calibrated on
the run's training images) of --format (openvino, onnx or both). Then, on the test split
(labelled OK/defective; --test-count of them, evenly spread over the split):

- the torch Predictor, the f32 package, the INT8 package without its float32 re-check
  (int8) and with it (int8+recheck, the default) score every test image: max |score
  difference| to torch (the f32 row is the OpenVINO/ONNX parity at this input size),
  decisions at the run's threshold that differ from f32, and the AP of each;
- speed: the packages score --count test images (predict_many, batches of --batch),
  round-robin over --repeats rounds after a warm-up round, same process and threads, so
  load from other processes hits all alike; median images/s and the ratio to f32;
- the re-check band against the INT8 logit errors on the test images.

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic-tile"


def _project(args: argparse.Namespace, root: Path) -> Path:
    from defect_studio.cli import main as cli
    from defect_studio.project import Project

    if args.demo:
        from defect_studio.demo import generate_demo_project

        w, h = (int(v) for v in args.size.lower().split("x"))
        generate_demo_project(root, count=args.demo_count, size=(w, h), seed=1,
                              defect_rate=0.25).close()
    else:
        if cli(["import", args.data, "--project", str(root), "--link"]) != 0:
            sys.exit(f"could not import {args.data}")
    with Project.open(root) as project:  # a short run: few training images per label
        train = project.images(split="train")
        keep = ([r for r in train if r.label == "defective"][:args.train_images]
                + [r for r in train if r.label == "ok"][:args.train_images])
        keep_ids = {r.id for r in keep}
        for r in train:
            if r.id not in keep_ids:
                project.set_split(r.id, "test")
    return root


def _train(root: Path, args: argparse.Namespace) -> Path:
    from defect_studio.training import TrainConfig, train
    from defect_studio.training.config import parse_size

    common = dict(epochs=args.epochs, input_size=parse_size(args.size), channels=args.channels,
                  resize="resize", device="cpu", num_threads=args.threads, val_every=0, seed=0)
    if args.preset:  # the preset's recipe (lr, loss weights, bf16, ...) at the given size
        cfg = TrainConfig.preset(args.preset, **common)
    else:
        cfg = TrainConfig(model=args.model, **common)
    t = time.perf_counter()
    run_id = train(root, cfg, run_id=f"{args.model}-int8")
    print(f"trained {run_id} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return root / "runs" / run_id


def _ap(labels: list[int], scores: list[float]) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores)) if 0 < sum(labels) < len(labels) \
        else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a finished run folder inside its project")
    src.add_argument("--demo", action="store_true", help="train a short run on the demo")
    src.add_argument("--magnetic-tile", action="store_true",
                     help="train a short run on magnetic tiles")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--model", default="mffpa")
    p.add_argument("--size", default="640x232", help="input size WxH of the trained run")
    p.add_argument("--channels", type=int, default=1, choices=[1, 3])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--preset", choices=["quick", "thorough"],
                   help="train with this preset's recipe (at --size, --epochs) instead of "
                        "the plain defaults")
    p.add_argument("--train-images", type=int, default=12, help="per label, for the run")
    p.add_argument("--demo-count", type=int, default=120)
    p.add_argument("--format", default="openvino", choices=["openvino", "onnx", "both"])
    p.add_argument("--calibration-images", type=int, default=300)
    p.add_argument("--test-count", type=int, default=200)
    p.add_argument("--count", type=int, default=24, help="images per speed round")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--keep", metavar="DIR", help="make the project, run and packages in DIR "
                   "(kept; rerun with --run DIR/project/runs/RUN) instead of a temp folder")
    p.add_argument("--reuse", action="store_true", help="with --keep: take the packages "
                   "already in DIR instead of exporting them again")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch

    from defect_studio.deploy.export import export_model
    from defect_studio.deploy.runtime import load_package
    from defect_studio.inference import load_predictor
    from defect_studio.project import Project

    torch.set_num_threads(args.threads)
    fmts = ["openvino", "onnx"] if args.format == "both" else [args.format]
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        tmp_path = Path(args.keep).resolve() if args.keep else Path(tmp)
        tmp_path.mkdir(parents=True, exist_ok=True)
        if args.run:
            run = Path(args.run).resolve()
        else:
            run = _train(_project(args, tmp_path / "project"), args)
        root = run.parent.parent
        with Project.open(root, readonly=True) as project:
            recs = [r for r in project.images(split="test") if r.label in ("ok", "defective")]
            step = len(recs) / max(1, min(args.test_count, len(recs)))  # both labels, spread
            recs = [recs[int(i * step)] for i in range(min(args.test_count, len(recs)))]
            images = [project.read_image(r) for r in recs]
            labels = [int(r.label == "defective") for r in recs]
        pkgs: dict[str, Path] = {}
        export_s: dict[str, float] = {}
        for fmt in fmts:
            for prec in ("f32", "int8"):
                kept = tmp_path / f"{fmt}-{prec}"
                if args.reuse and (kept / "package.json").is_file():
                    pkgs[f"{fmt} {prec}"] = kept
                    continue
                t = time.perf_counter()
                pkgs[f"{fmt} {prec}"] = export_model(
                    run, tmp_path / f"{fmt}-{prec}", fmt, int8=prec == "int8",
                    calibration_images=args.calibration_images if prec == "int8" else None)
                export_s[f"{fmt} {prec}"] = time.perf_counter() - t
        ref = load_predictor(run, device="cpu", num_threads=args.threads)
        preds = {}
        for name, d in pkgs.items():
            if name.endswith("int8"):  # the same package with and without its re-check
                preds[name] = load_package(d, num_threads=args.threads, int8_recheck="off")
                preds[name + "+recheck"] = load_package(d, num_threads=args.threads)
            else:
                preds[name] = load_package(d, num_threads=args.threads)
        scores = {"torch": [r.score for _, r in ref.predict_many(images, batch_size=args.batch)]}
        shares: dict[str, float] = {}
        for name, pred in preds.items():
            scores[name] = [r.score for _, r in pred.predict_many(images, batch_size=args.batch)]
            if pred.recheck_band is not None:
                shares[name] = pred.recheck_counts["rechecked"] / len(images)
        speed_imgs = images[:args.count]
        rates: dict[str, list[float]] = {n: [] for n in preds}
        for rnd in range(args.repeats + 1):  # round 0 is the warm-up
            for name, pred in preds.items():
                t = time.perf_counter()
                for _ in pred.predict_many(speed_imgs, batch_size=args.batch):
                    pass
                if rnd:
                    rates[name].append(len(speed_imgs) / (time.perf_counter() - t))
        calib = preds[f"{fmts[0]} int8"].manifest["quantization"]["calibration"]

    thr = ref.threshold
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    W, H = ref.config.input_size
    print(f"run {run.name} ({args.model}): input {W}x{H}x{ref.config.channels}; "
          f"{len(images)} test images ({sum(labels)} defective); threshold {thr:.4f}; "
          f"INT8 calibrated on {calib['images']} of {calib['train_images']} training "
          f"images; batch {args.batch}; {args.threads} thread(s); {args.repeats} rounds of "
          f"{len(speed_imgs)} images; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at the end\n")
    print("| package | images/s (median) | vs f32 | max abs score diff to torch "
          "| decisions differing from f32 | AP | AP change vs f32 | re-checked in f32 "
          "| export s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ap_torch = _ap(labels, scores["torch"])
    print(f"| torch Predictor | | | | | {ap_torch:.4f} | | | |")
    for name in preds:
        fmt = name.split()[0]
        f32 = f"{fmt} f32"
        med = statistics.median(rates[name])
        ratio = med / statistics.median(rates[f32])
        diff = max(abs(a - b) for a, b in zip(scores["torch"], scores[name]))
        flips = sum((a >= thr) != (b >= thr) for a, b in zip(scores[f32], scores[name]))
        ap = _ap(labels, scores[name])
        share = f"{100 * shares[name]:.1f} %" if name in shares else ""
        print(f"| {name} | {med:.2f} | {ratio:.2f}x | {diff:.2e} | {flips} of {len(images)} "
              f"({100 * (1 - flips / max(1, len(images))):.1f} % equal) | {ap:.4f} "
              f"| {ap - _ap(labels, scores[f32]):+.4f} | {share} "
              f"| {export_s.get(name.split('+')[0], float('nan')):.0f} |")
    _band_facts(preds, scores, thr)
    return 0


def _band_facts(preds: dict, scores: dict, thr: float) -> None:
    """The re-check band (calibrated on training images) against the logit errors on the
    test images: does the calibration max cover them?"""
    import numpy as np

    from defect_studio.deploy.recheck import logit

    for name, pred in preds.items():
        if pred.recheck_band is None:
            continue
        fmt = name.split()[0]
        cal = pred.info.recheck["calibration"]
        d = np.abs(logit(scores[name.split("+")[0]]) - logit(scores[f"{fmt} f32"]))
        print(f"\n{name}: band {pred.recheck_band:.3f} logit around logit(threshold) "
              f"{float(logit(thr)):.3f}; calibration ({cal['images']} training images): max "
              f"|logit int8 - f32| {cal['abs_logit_diff_max']:.3f}, q99 "
              f"{cal['abs_logit_diff_q99']:.3f}, median {cal['abs_logit_diff_median']:.3f}; "
              f"test: max {d.max():.3f}, q99 {np.quantile(d, 0.99):.3f}, median "
              f"{np.median(d):.3f}, test images over the calibration max "
              f"{int((d > cal['abs_logit_diff_max']).sum())}, over the band "
              f"{int((d > pred.recheck_band).sum())}")


if __name__ == "__main__":
    sys.exit(main())
