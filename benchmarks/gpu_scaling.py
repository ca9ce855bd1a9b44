"""GPU training: the CUDA path and data-parallel scaling over 1..N GPUs (train --gpus N).

For a machine with GPUs (none on the development machine: this has not run yet). Makes a
demo project of --images images of --size px, then for each N in --gpus (default 1 up to
all GPUs) trains the same job with `train --device cuda --gpus N` (N = 1: the ordinary
one-process CUDA path), and reads each run's events: seconds per epoch after the first
(warm-up) epoch, training images per second, and the final validation AP (so a broken
CUDA path shows as NaN or a collapsed AP, not only as a time). With --cluster ADDRESS the
runs go to that Ray cluster instead (train --cluster ADDRESS --gpus N). --model picks the
kind (the anomaly model trains on the demo's good parts; the detector needs boxes: give
--project DIR, a project with typed boxes, e.g. NEU-DET imported, which is used as it is).

    .venv/bin/python benchmarks/gpu_scaling.py --images 400 --size 256 --epochs 4
    .venv/bin/python benchmarks/gpu_scaling.py --model anomaly
    .venv/bin/python benchmarks/gpu_scaling.py --model relational --project NEU_PROJECT
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def epoch_rates(run_dir: Path, images_per_epoch: int) -> tuple[float, float, dict]:
    """(s per epoch after the first, images/s, final metrics) from a run folder."""
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    stamps = [e["elapsed_s"] for e in events if e["event"] == "progress"
              and e["step"] == e["steps"]]
    per_epoch = [b - a for a, b in zip(stamps, stamps[1:])] or stamps[:1]
    s = sum(per_epoch) / len(per_epoch)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return s, images_per_epoch / s if s else 0.0, metrics


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8, help="accumulated batch (>= GPUs)")
    ap.add_argument("--gpus", default=None, help="comma list, e.g. 1,2,4 (default 1..all)")
    ap.add_argument("--cluster", help="Ray address: train there instead")
    ap.add_argument("--model", default="mffpa", help="train --model (default mffpa)")
    ap.add_argument("--project", help="an existing project instead of a demo one")
    args = ap.parse_args()
    if args.gpus:
        counts = [int(x) for x in args.gpus.split(",")]
    else:
        n = torch.cuda.device_count()
        if not n and not args.cluster:
            raise SystemExit("no CUDA GPU here (use --cluster ADDRESS or --gpus)")
        counts = list(range(1, max(1, n) + 1))

    from defect_studio.demo import generate_demo_project
    from defect_studio.kinds import kind_of_model

    tmp = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    if args.project:
        project = Path(args.project)
    else:
        project = tmp / "p"
        generate_demo_project(project, count=args.images, size=(args.size, args.size),
                              seed=1, defect_rate=0.25).close()
    cfg = tmp / "cfg.json"
    cfg.write_text(json.dumps({kind_of_model(args.model).batch_setting: args.batch,
                               "val_every": 1}))
    rows = []
    stamp = time.strftime("%H%M%S")
    for n in counts:
        run_id = f"gpus{n}-{args.model}-{stamp}"
        cmd = [sys.executable, "-m", "defect_studio", "train", "--project", str(project),
               "--model", args.model,
               "--config", str(cfg), "--epochs", str(args.epochs), "--size",
               f"{args.size}x{args.size}", "--device", "cuda", "--run-id", run_id,
               "--gpus", str(n)]
        if args.cluster:
            cmd += ["--cluster", args.cluster]
        t = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONUNBUFFERED="1"))
        wall = time.monotonic() - t
        if proc.returncode != 0:
            rows.append((n, wall, None, None, proc.stderr.strip().splitlines()[-1:]))
            continue
        started = json.loads((project / "runs" / run_id / "events.jsonl")
                             .read_text().splitlines()[0])
        s, ips, m = epoch_rates(project / "runs" / run_id, started["n_train"])
        rows.append((n, wall, s, ips, m.get("ap")))
    print(f"{args.model}: {args.project or f'{args.images} demo images'} "
          f"{args.size}x{args.size}, batch {args.batch}, "
          f"{args.epochs} epochs, torch {torch.__version__}")
    print("| GPUs | wall s | s/epoch | images/s | speed-up | val AP |\n|---|---|---|---|---|---|")
    base = next((r[3] for r in rows if r[3]), None)
    for n, wall, s, ips, ap_ in rows:
        if s is None:
            print(f"| {n} | {wall:.0f} | failed: {ap_} | | | |")
            continue
        up = f"{ips / base:.2f}x" if base else ""
        print(f"| {n} | {wall:.0f} | {s:.2f} | {ips:.1f} | {up} | {ap_} |")


if __name__ == "__main__":
    main()
