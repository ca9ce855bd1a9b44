"""Test AP of a preset on the demo project, over several seeds, with its training cost.

Generates the default demo project (or uses --project), trains the preset once per
seed, evaluates each run on the test split with defect_studio.evaluation and prints one row per
seed and the mean. CPU seconds are the process's user + system time during training
(all threads); on a quiet machine with 1 thread they are about the wall time.

    python benchmarks/quick_preset_demo.py --threads 1                    # quick, 3 seeds
    python benchmarks/quick_preset_demo.py --threads 2 --seeds 0,1,2      # the timed run
    python benchmarks/quick_preset_demo.py --set epochs=12 --set norm=original
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", help="an existing demo project (default: generate one)")
    p.add_argument("--preset", default="quick")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig field (JSON value), e.g. epochs=12")
    p.add_argument("--label", default="", help="a name for this setting in the output")
    p.add_argument("--json", help="append the result (one JSON line) to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from benchmarks.common import cpu_seconds, parse_overrides
    from defect_studio.demo import DEMO_DEFAULTS, generate_demo_project
    from defect_studio.evaluation import evaluate_run
    from defect_studio.training import TrainConfig, train

    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    work = None
    if args.project:
        root = Path(args.project)
    else:
        work = Path(tempfile.mkdtemp(prefix="quick-demo-"))
        root = work / "demo"
        t = time.perf_counter()
        generate_demo_project(root, **DEMO_DEFAULTS).close()
        print(f"generated the demo project in {time.perf_counter() - t:.1f}s", flush=True)
    rows = []
    try:
        for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
            cfg = TrainConfig.preset(args.preset, **{"seed": seed, "num_threads": args.threads,
                                                     "device": "cpu", **overrides})
            c0, w0 = cpu_seconds(), time.perf_counter()
            run_id = train(root, cfg)
            cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
            m = evaluate_run(root, run_id, split="test", device="cpu")
            saved = json.loads((root / "runs" / run_id / "metrics.json").read_text())
            used = json.loads((root / "runs" / run_id / "config.json").read_text())
            row = {"seed": seed, "run": run_id, "ap": m["ap_sklearn"], "ap_trapz": m["ap_trapz"],
                   "auc": m["auc"], "n_test": m["n"], "n_test_pos": m["n_pos"],
                   "epochs": saved.get("epochs"), "best_epoch": saved.get("best_epoch"),
                   "input_size": used["input_size"], "cpu_s": round(cpu, 1),
                   "wall_s": round(wall, 1)}
            rows.append(row)
            print(f"seed {seed}: test AP {row['ap']:.4f} (trapz {row['ap_trapz']:.4f}) AUC "
                  f"{row['auc']:.4f}  epochs {row['epochs']} best {row['best_epoch']}  "
                  f"cpu {cpu:.0f}s wall {wall:.0f}s", flush=True)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("ap", "ap_trapz", "auc", "cpu_s",
                                                             "wall_s")}
    print(f"{args.label or args.preset} {overrides}: mean test AP {mean['ap']:.4f} "
          f"AUC {mean['auc']:.4f} cpu {mean['cpu_s']:.0f}s wall {mean['wall_s']:.0f}s "
          f"over {len(rows)} seeds", flush=True)
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            f.write(json.dumps({"label": args.label, "preset": args.preset,
                                "overrides": overrides, "threads": args.threads,
                                "mean": mean, "rows": rows}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
