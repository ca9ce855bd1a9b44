"""Cold start on magnetic tiles: the anomaly model (KD, KD+SSPCAB, KD+SSPCAB+SimAM) against a
PaDiM-style baseline with the same EfficientNet-Lite0 teacher.

Magnetic tile surface defects: Huang, Qiu, Yuan, "Surface defect saliency of magnetic tile",
The Visual Computer, 2020.

The images are imported by reference into a temporary project and split once (seeded,
stratified; the split of benchmarks/accuracy_magnetic_tile.py). Every method trains on the
OK images of the train split only and is scored on the whole test split: image AUROC (score
= max of the map), pixel AUROC and AUPRO (masks and maps at the input size), training time
and inference time per image (batch 1, at the input size, teacher included). Nothing is
written outside the temporary folder unless --json or --workdir is given.

    python benchmarks/anomaly_magnetic_tile.py --quick            # smoke run, ~2 min
    python benchmarks/anomaly_magnetic_tile.py --size 128x128 --epochs 30 --threads 1
    python benchmarks/anomaly_magnetic_tile.py --size 256x256 --epochs 40 --threads 4  # quiet
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

from benchmarks.accuracy_magnetic_tile import DEFAULT_DATA, build_project, subset_tree  # noqa: E402

METHODS = ("padim", "anomaly-kd", "anomaly-sspcab", "anomaly")
TITLES = {"padim": "PaDiM baseline (same teacher)", "anomaly-kd": "KD",
          "anomaly-sspcab": "KD + SSPCAB", "anomaly": "KD + SSPCAB + SimAM"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="magnetic-tile folder")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated: {', '.join(METHODS)}")
    p.add_argument("--size", default="128x128",
                   help="input size WxH, multiples of 16 (default 128x128)")
    p.add_argument("--epochs", type=int, default=30, help="epochs of the KD models (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 10 images per defect class + 70 OK, 64x64, 2 epochs")
    p.add_argument("--workdir", help="keep the project (and its runs) here")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--map-taps", default="1/8,1/16",
                   help="teacher taps summed into the KD anomaly map (default 1/8,1/16, "
                        "as AnomalyConfig)")
    p.add_argument("--reuse", action="store_true",
                   help="with --workdir: evaluate the finished KD runs already there instead of "
                        "training them again (training time then comes from their metrics.json)")
    return p.parse_args(argv)


def test_set(root: Path, size: tuple[int, int]):
    """Test images [N, C, H, W], masks [N, H, W] (bool) and labels, at the input size."""
    import torch

    from defect_studio.kinds.anomaly.config import AnomalyConfig
    from defect_studio.kinds.segdec.data import preprocess_image, preprocess_mask
    from defect_studio.project import Project

    with Project.open(root, readonly=True) as p:
        recs = [r for r in p.images(split="test") if r.label in ("ok", "defective")]
        channels = 1 if all(r.channels == 1 for r in recs) else 3
        cfg = AnomalyConfig(input_size=size, channels=channels)
        xs, masks, labels, classes = [], [], [], []
        for r in recs:
            classes.append(next((part for part in Path(r.path).parts if part.startswith("MT_")),
                                "?"))
            img = p.read_image(r)
            xs.append(preprocess_image(img, cfg))
            raw = p.load_mask(r.id) if r.has_mask else None
            m = preprocess_mask(raw, cfg) if raw is not None else np.zeros(size[::-1], bool)
            masks.append(m)
            labels.append(int(r.label == "defective" or bool(m.any())))
    return torch.stack(xs), np.stack(masks), np.asarray(labels), np.asarray(classes)


def per_class_auroc(maps: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> dict:
    """Image AUROC of each defect class against all OK test images."""
    from sklearn.metrics import roc_auc_score

    scores = maps.reshape(len(maps), -1).max(1)
    ok = labels == 0
    out = {}
    for c in sorted(set(classes[labels == 1].tolist())):
        sel = ok | ((classes == c) & (labels == 1))
        out[c] = round(float(roc_auc_score(labels[sel], scores[sel])), 4)
    return out


def metrics(maps: np.ndarray, masks: np.ndarray, labels: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score

    from defect_studio.evaluation.metrics import pixel_metrics
    from defect_studio.kinds.anomaly.aupro import aupro

    scores = maps.reshape(len(maps), -1).max(1)
    pix = pixel_metrics(list(masks), list(maps))
    return {"image_auroc": float(roc_auc_score(labels, scores)), "pixel_auroc": pix["pixel_auroc"],
            "aupro": aupro(list(masks), list(maps))}


def timed_maps(fn, x) -> tuple[np.ndarray, float]:
    """Maps of every test image, one image at a time; returns (maps, seconds per image)."""
    import torch

    out = []
    with torch.inference_mode():
        fn(x[:1])  # warm-up
        t = time.perf_counter()
        for i in range(len(x)):
            out.append(fn(x[i:i + 1])[0].float().cpu().numpy())
        per_image = (time.perf_counter() - t) / len(x)
    return np.stack(out), per_image


def run_padim(root: Path, size, x_test, device) -> tuple[np.ndarray, float, float]:
    import torch

    from defect_studio.kinds.anomaly.baseline import PaDiM
    from defect_studio.kinds.anomaly.config import AnomalyConfig
    from defect_studio.kinds.anomaly.teacher import Teacher
    from defect_studio.kinds.anomaly.train import GoodImages
    from defect_studio.project import Project

    t = time.perf_counter()
    with Project.open(root, readonly=True) as p:
        data = GoodImages(p, AnomalyConfig(input_size=size))
        ids = data.train
        teacher = Teacher().to(device)
        model = PaDiM(teacher)
        model.fit(torch.stack([data.image(i) for i in ids[k:k + 16]]).to(device)
                  for k in range(0, len(ids), 16))
    train_s = time.perf_counter() - t
    maps, per_image = timed_maps(lambda b: model.maps(b.to(device)), x_test)
    return maps, train_s, per_image


def run_kd(root: Path, name: str, size, epochs, seed, threads, device, x_test, reuse=False,
           map_taps=("1/4", "1/8", "1/16")):
    from defect_studio.kinds.anomaly.config import AnomalyConfig
    from defect_studio.kinds.anomaly.predictor import AnomalyPredictor
    from defect_studio.kinds.anomaly.train import train

    cfg = AnomalyConfig(model=name, epochs=epochs, input_size=size, seed=seed, device=device,
                        num_threads=threads, val_every=0, map_taps=map_taps)
    run_dir = root / "runs" / f"bench-{name}"
    if reuse and (run_dir / "model.pt").is_file():  # a finished run of an earlier call
        pred = AnomalyPredictor(run_dir, device=device, num_threads=threads)
        pred.model.map_taps = cfg.map_taps  # the map is not part of the training
        maps, per_image = timed_maps(lambda b: pred.model(b.to(pred.device)), x_test)
        m = json.loads((run_dir / "metrics.json").read_text())
        return maps, float(m["elapsed_s"]), per_image, m.get("teacher_runs")
    t = time.perf_counter()
    teacher_runs = {}

    def on_event(e):
        if e["event"] == "epoch":
            teacher_runs["n"] = e["teacher_runs"]
            print(f"    {name} epoch {e['epoch']}/{epochs} loss {e['loss']:.4f}", flush=True)

    run_id = train(root, cfg, run_id=f"bench-{name}", on_event=on_event)
    train_s = time.perf_counter() - t
    pred = AnomalyPredictor(root / "runs" / run_id, device=device, num_threads=threads)
    maps, per_image = timed_maps(lambda b: pred.model(b.to(pred.device)), x_test)
    return maps, train_s, per_image, teacher_runs.get("n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from defect_studio.project import Project
    from defect_studio.training.config import parse_size

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not data.is_dir():
        print(f"magnetic-tile not found at {data}", file=sys.stderr)
        return 2
    size, epochs = parse_size(args.size), args.epochs
    if args.quick:
        size, epochs = (64, 64), 2
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = sorted(set(methods) - set(METHODS))
    if bad:
        print(f"unknown method(s) {bad}; choose from {METHODS}", file=sys.stderr)
        return 2
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mt-anomaly-"))
    root = work / "project"
    try:
        t = time.perf_counter()
        if args.quick:
            subset = work / "subset"
            data = subset if subset.is_dir() else subset_tree(data, subset, per_class=10,
                                                              seed=args.seed)
        if not (root / "project.sqlite").exists():
            report, counts = build_project(root, data, seed=args.seed)
            took = time.perf_counter() - t
            print(f"imported {report.imported} images in {took:.0f}s", flush=True)
        with Project.open(root, readonly=True) as p:
            counts = p.counts()
            n_train_ok = len(p.images(split="train", label="ok"))
        x_test, masks, labels, classes = test_set(root, size)
        print(f"splits {counts['splits']}; training on {n_train_ok} OK train images; test "
              f"{len(labels)} images ({int(labels.sum())} defective); {size[0]}x{size[1]}, "
              f"{epochs} epochs, {args.threads} thread(s)", flush=True)
        rows = []
        for name in methods:
            teacher_runs = None
            if name == "padim":
                maps, train_s, per_image = run_padim(root, size, x_test, args.device)
            else:
                maps, train_s, per_image, teacher_runs = run_kd(
                    root, name, size, epochs, args.seed, args.threads, args.device, x_test,
                    reuse=args.reuse, map_taps=tuple(args.map_taps.split(",")))
            m = metrics(maps, masks, labels)
            m["per_class_image_auroc"] = per_class_auroc(maps, labels, classes)
            row = {"method": name, **m, "train_s": round(train_s, 1),
                   "infer_ms": round(1000 * per_image, 1), "teacher_runs": teacher_runs}
            rows.append(row)
            print(f"  {TITLES[name]:32s} image AUROC {m['image_auroc']:.4f}  pixel AUROC "
                  f"{m['pixel_auroc']:.4f}  AUPRO {m['aupro']:.4f}  train {train_s:.0f}s  "
                  f"infer {1000 * per_image:.1f} ms/image", flush=True)
            print(f"    image AUROC per defect class: {m['per_class_image_auroc']}", flush=True)
        print_table(rows, size, epochs, len(labels), int(labels.sum()), n_train_ok, args.threads)
        if args.json:
            Path(args.json).write_text(json.dumps({"size": list(size), "epochs": epochs,
                                                   "rows": rows}, indent=2))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(rows, size, epochs, n_test, n_pos, n_train, threads) -> None:
    print()
    print(f"magnetic-tile test split ({n_test} images, {n_pos} defective), trained on {n_train} OK "
          f"images, input {size[0]}x{size[1]}, {epochs} epochs, {threads} thread(s)")
    print("| method | image AUROC | pixel AUROC | AUPRO | train time | inference / image |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {TITLES[r['method']]} | {100 * r['image_auroc']:.2f} | "
              f"{100 * r['pixel_auroc']:.2f} | "
              f"{100 * r['aupro']:.2f} | {r['train_s']:.0f} s | {r['infer_ms']:.1f} ms |")
    classes = sorted({c for r in rows for c in r["per_class_image_auroc"]})
    print()
    print("image AUROC per defect class (that class's test images against all OK test images)")
    print("| method | " + " | ".join(c.removeprefix("MT_") for c in classes) + " |")
    print("|---|" + "---|" * len(classes))
    for r in rows:
        per = r["per_class_image_auroc"]
        print(f"| {TITLES[r['method']]} | "
              + " | ".join(f"{100 * per[c]:.1f}" if c in per else "-" for c in classes) + " |")


if __name__ == "__main__":
    sys.exit(main())
