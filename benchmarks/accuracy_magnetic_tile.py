"""Image-level accuracy of MixSup and MFFPA on the magnetic-tile data set.

Magnetic tile surface defects: Huang, Qiu, Yuan, "Surface defect saliency of
magnetic tile", The Visual Computer, 2020.

The images are imported by reference into a temporary project, split once with a
fixed seed (stratified by label), and each model is trained with N = 0, about 10 %,
25 %, 50 % and all defective training images keeping their pixel masks (the rest
are image-labelled only). The comparison is fair: both models get the same recipe
(learning rate, delta, loss weights, dilation, input size) and complete the same
number of epochs (no time cap); the input size comes from the data (median image size,
aspect kept, long side capped by --max-side). Every run is evaluated on the test split
with defect_studio.evaluation; the script prints a table (AP both ways, AUC, epochs, training
time) and writes nothing outside its temporary folder unless --json is given.

    python benchmarks/accuracy_magnetic_tile.py                    # 50 epochs: GPU or CPU-hours
    python benchmarks/accuracy_magnetic_tile.py --quick            # smoke run: a few minutes
    python benchmarks/accuracy_magnetic_tile.py --epochs 4 --max-side 96 --ns 0,all
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "magnetic-tile"
SPLIT = (0.5, 0.2, 0.3)  # train, val, test: a large test split keeps the AP estimate steady


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="magnetic-tile folder")
    p.add_argument("--models", default="mixsup,mffpa", help="comma-separated model names")
    p.add_argument("--size", default=None,
                   help="input size WxH (default: from the data, long side --max-side)")
    p.add_argument("--max-side", type=int, default=256,
                   help="cap of the long side of the input size from the data (default 256)")
    p.add_argument("--epochs", type=int, default=50, help="epochs per run, every run (default 50)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate of every run (0.01)")
    p.add_argument("--ns", default="0,10%,25%,50%,all",
                   help="numbers of defective training images with masks (counts, shares, all), "
                        "run in this order")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 120 images, 64x64, 2 epochs (a couple of minutes)")
    p.add_argument("--per-class", type=int, default=None, dest="per_class",
                   help="use only this many images of each defect class (and 7x as many OK "
                        "ones), a seeded sample: a reduced run")
    p.add_argument("--workdir", help="keep the project here instead of a temporary folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig field of every run (JSON value), e.g. "
                        "cpu_bf16=true")
    p.add_argument("--json", help="also write the results to this JSON file (rewritten after "
                                  "every run, so a stopped benchmark keeps what finished)")
    return p.parse_args(argv)


def subset_tree(data: Path, dst: Path, *, per_class: int, seed: int) -> Path:
    """A folder of symlinks to a seeded sample of each MT_* class (image + mask)."""
    rng = np.random.default_rng(seed)
    for cls in sorted(d for d in data.iterdir() if d.is_dir()):
        images = sorted((cls / "Imgs").glob("*.jpg"))
        k = per_class * (7 if cls.name == "MT_Free" else 1)  # OK images are the majority
        picked = rng.choice(len(images), size=min(k, len(images)), replace=False)
        out = dst / cls.name / "Imgs"
        out.mkdir(parents=True)
        for i in sorted(picked.tolist()):
            for f in (images[i], images[i].with_suffix(".png")):
                if f.exists():
                    (out / f.name).symlink_to(f)
    return dst


def build_project(root: Path, data: Path, *, seed: int):
    """Import magnetic-tile by reference and split it (stratified, seeded)."""
    from defect_studio.io.importers import import_dataset
    from defect_studio.project import Project

    project = Project.create(root)
    report = import_dataset(data, project, fmt="pairs", copy=False)
    if report.imported == 0:
        raise SystemExit(f"no image imported from {data}: {report.skipped[:3]}")
    project.assign_splits(SPLIT, seed=seed, only_unassigned=False)
    counts = project.counts()
    project.close()
    return report, counts


def n_values(text: str, n_train_masked: int) -> list[int]:
    """The mask counts of --ns in the order given ("all,0" trains all masks first)."""
    from defect_studio.training.sweep import parse_levels

    levels = [parse_levels(item, n_train_masked)[0] for item in text.split(",") if item.strip()]
    return list(dict.fromkeys(levels))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from benchmarks.common import parse_overrides
    from defect_studio.evaluation import evaluate_run
    from defect_studio.project import Project
    from defect_studio.training import TrainConfig, train
    from defect_studio.training.config import parse_size

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not data.is_dir():
        print(f"magnetic-tile not found at {data} (see ../shared/datasets/README.md)",
              file=sys.stderr)
        return 2
    size = parse_size(args.size) if args.size else None
    epochs, max_side = args.epochs, args.max_side
    if args.quick:
        epochs, max_side = 2, 64
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    overrides = parse_overrides(args.set)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mt-bench-"))
    root = work / "project"
    try:
        t = time.perf_counter()
        per_class = 10 if args.quick else args.per_class
        if per_class:  # K images of each defect class and 7K OK ones
            data = subset_tree(data, work / "subset", per_class=per_class, seed=args.seed)
        report, counts = build_project(root, data, seed=args.seed)
        print(f"imported {report.imported} images in {time.perf_counter() - t:.0f}s; splits "
              f"{counts['splits']}", flush=True)
        with Project.open(root, readonly=True) as p:
            n_def = len(p.images(split="train", label="defective"))
            n_masked = len(p.images(split="train", label="defective", has_mask=True))
            from defect_studio.training.sizing import choose_input_size

            shown = choose_input_size(p, TrainConfig(input_size=size, max_side=max_side))
        ns = n_values(args.ns, n_masked)
        runs = len(models) * len(ns)
        print(f"{runs} runs: models {models}, N {ns} of {n_masked} masked ({n_def} defective) "
              f"training images, {shown.reason}, {epochs} epochs each, lr {args.lr}", flush=True)
        rows = []
        # N outer, models inner: a stopped run has both models for every N it reached.
        for n in ns:
            for model in models:
                # The same recipe for both models; dynamic balancing turns itself off for N = 0.
                cfg = TrainConfig(**{
                    **dict(model=model, epochs=epochs, input_size=size, max_side=max_side,
                           lr=args.lr, delta=1.0, batch=1, dyn_balance=True, p=2.0, w_max=3.0,
                           dilate=7, pixel_labels=n, seed=args.seed, device=args.device,
                           val_every=0, keep_best=False, num_threads=args.threads),
                    **overrides})
                t = time.perf_counter()
                run_id = train(root, cfg, run_id=f"{model.replace('+', '-')}-N{n}")
                train_s = time.perf_counter() - t
                r = evaluate_run(root, run_id, split="test", device=args.device)
                with open(root / "runs" / run_id / "status.json", encoding="utf-8") as f:
                    epochs_done = json.load(f)["epoch"]
                with open(root / "runs" / run_id / "config.json", encoding="utf-8") as f:
                    used = json.load(f)["input_size"]
                rows.append({"model": model, "N": n, "epochs": epochs_done,
                             "ap_sklearn": r["ap_sklearn"], "ap_trapz": r["ap_trapz"],
                             "auc": r["auc"], "train_s": round(train_s, 1), "n_test": r["n"],
                             "input_size": used,
                             "n_test_pos": r["n_pos"]})
                print(f"  {model:10s} N={n:<4d} AP {r['ap_sklearn']:.4f}  AUC {r['auc']:.4f}  "
                      f"{train_s:.0f}s", flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows},
                                                          indent=2))
        print_table(rows, rows[0]["input_size"] if rows else size, counts)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(rows: list[dict], size: tuple[int, int], counts: dict) -> None:
    print()
    print(f"magnetic-tile, test split ({rows[0]['n_test']} images, "
          f"{rows[0]['n_test_pos']} defective), "
          f"input {size[0]}x{size[1]}; AP in % (sklearn = average_precision_score, "
          "trapz = trapezoidal PR area)")
    print("| model | N | epochs | AP sklearn | AP trapz | AUC | train time |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['N']} | {r['epochs']} | {100 * r['ap_sklearn']:.2f} | "
              f"{100 * r['ap_trapz']:.2f} | {100 * r['auc']:.2f} | {r['train_s'] / 60:.1f} min |")


if __name__ == "__main__":
    sys.exit(main())
