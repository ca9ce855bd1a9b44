"""Box detection on NEU-DET: the plain detector against each relational switch.

NEU surface defect database (NEU-DET): Song, Yan, "A noise robust method based on
completed local binary patterns for hot-rolled steel strip surface defects",
Applied Surface Science, 2013; boxes by He et al., IEEE TIM 2020. 1800 200x200 gray
images, 6 defect types (crazing, inclusion, patches, pitted surface, rolled-in
scale, scratches), VOC XML boxes.

The images are imported by reference (once) into a project under --work, split with
a fixed seed; --train-images / --test-images keep a seeded subset for reduced runs.
Each variant is trained with the same settings and evaluated on the test split:
mAP@0.5 and mAP@[.5:.95] (torchmetrics, pycocotools), mAP@0.5 per type, and the
fragmentation figure at the run's threshold (boxes per true defect, share covered
by exactly one box), plus training and evaluation wall time.

    python benchmarks/detector_neu.py                                  # full
    python benchmarks/detector_neu.py --train-images 300 --test-images 120 \\
        --epochs 3 --size 128 --threads 1                              # reduced
    python benchmarks/detector_neu.py --quick                          # smoke run
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

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "neu-det"
# name -> switches (relation, geometry, gate, iou_loss); "detector" is the plain model
VARIANTS = {
    "plain": dict(model="detector"),
    "relation": dict(model="detector", relation=True, geometry=False, gate=False),
    "relation+geometry": dict(model="detector", relation=True, geometry=True, gate=False),
    "relation+geometry+gate": dict(model="detector", relation=True, geometry=True, gate=True),
    "iou_loss": dict(model="detector", iou_loss=True),
    "relational (all)": dict(model="relational"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="NEU-DET folder (VOC)")
    p.add_argument("--work", default="/tmp/detector_neu", help="project and runs go here")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--size", type=int, default=224, help="square input size")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--train-images", type=int, default=None,
                   help="seeded subset of the train split")
    p.add_argument("--test-images", type=int, default=None, help="seeded subset of the test split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny subset, 1 epoch, 96 px")
    p.add_argument("--json", help="write the results here as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.train_images, args.test_images, args.epochs, args.size = 24, 12, 1, 96
    return args


def prepare_project(args: argparse.Namespace) -> Path:
    """The NEU-DET project (imported once, by reference) with the subsets pinned."""
    import numpy as np

    from defect_studio.io.importers import import_dataset
    from defect_studio.project import Project

    if not Path(args.data).is_dir():
        raise SystemExit(f"NEU-DET not found at {args.data}; give --data")
    tag = f"neu_{args.train_images or 'all'}_{args.test_images or 'all'}_s{args.seed}"
    root = Path(args.work) / tag
    if (root / "project.sqlite").is_file():
        return root
    with Project.create(root) as project:
        import_dataset(args.data, project, fmt="voc", copy=False)
        project.assign_splits((0.7, 0.15, 0.15), seed=args.seed, only_unassigned=False)
        rng = np.random.default_rng(args.seed)
        with project.batch():
            for split, keep in (("train", args.train_images), ("test", args.test_images),
                                ("val", args.test_images)):
                recs = project.images(split=split)
                if keep is not None and keep < len(recs):
                    drop = rng.permutation(len(recs))[keep:]
                    for i in drop:
                        project.set_split(recs[int(i)].id, None)
    return root


def run_variant(root: Path, name: str, args: argparse.Namespace) -> dict:
    from defect_studio.kinds.detector.config import DetectorConfig
    from defect_studio.kinds.detector.evaluate import evaluate_detector
    from defect_studio.kinds.detector.train import train

    cfg = DetectorConfig.from_dict({
        **VARIANTS[name], "epochs": args.epochs, "input_size": [args.size, args.size],
        "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "device": args.device,
        "num_threads": args.threads, "val_every": 0})
    stem = name.split(" ")[0].replace("+", "-")
    run_id = f"{stem}-{args.size}px-{args.epochs}ep-{int(time.time())}"
    t0 = time.perf_counter()
    train(root, cfg, run_id=run_id)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = evaluate_detector(root, run_id, "test", device=args.device)
    t_eval = time.perf_counter() - t0
    b = r["boxes"]
    return {"variant": name, "run_id": run_id, "map_50": b["map_50"], "map": b["map"],
            "per_type_ap_50": {k: v["ap_50"] for k, v in b["per_type"].items()},
            "fragmentation": b["fragmentation"], "box_f1": b["box_f1"],
            "threshold": r["run_threshold"]["threshold"], "n_test": r["n"],
            "train_s": round(t_train, 1), "eval_s": round(t_eval, 1)}


def table(results: list[dict]) -> str:
    head = ("| variant | mAP@0.5 | mAP@[.5:.95] | boxes / defect | one box | missed | "
            "train s | eval s |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in results:
        f = r["fragmentation"]

        def num(v, d=3):
            return "n/a" if v is None else f"{v:.{d}f}"
        lines.append(f"| {r['variant']} | {num(r['map_50'])} | {num(r['map'])} | "
                     f"{num(f['boxes_per_defect'], 2)} | {num(f['one_box'], 2)} | "
                     f"{num(f['missed'], 2)} | {r['train_s']:.0f} | {r['eval_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        print(f"unknown variant(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    root = prepare_project(args)
    print(f"project {root}; settings: {vars(args)}", flush=True)
    results = []
    for name in names:
        r = run_variant(root, name, args)
        results.append(r)
        print(json.dumps(r), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"settings": vars(args), "results": results},
                                                  indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
