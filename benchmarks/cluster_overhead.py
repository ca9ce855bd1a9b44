"""What a cluster run costs over a local one (train --cluster, predict --cluster).

Starts a Ray head on 127.0.0.1 (tests/cluster_support.py; or uses --address), makes a demo
project, and times the same tiny training job as a local `train` process and as
`train --cluster` (alternating, --repeats times), and the same scoring as `predict --model`
and `predict --cluster`. Prints wall times, the overhead in seconds and as a ratio, and
what travelled (cluster.json). On one machine the cluster's worker shares the CPUs with
everything else: the overhead is the fixed cost of a job (joining the cluster, starting
the worker, shipping the data, fetching the run folder), not network speed.

    .venv/bin/python benchmarks/cluster_overhead.py --epochs 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict) -> float:
    t = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--address", help="an existing cluster (default: start a local head)")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "tests"))
    head = None
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if args.address:
        address = args.address
    else:
        from cluster_support import RayHead

        head = RayHead().start()
        address, env = head.address, {**head.env, "PYTHONUNBUFFERED": "1"}
        env.pop("DEFECT_STUDIO_FAULT_SCORER_EXIT", None)
    try:
        from defect_studio.demo import generate_demo_project

        tmp = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
        project = tmp / "p"
        generate_demo_project(project, count=args.images, size=(args.size, args.size), seed=1,
                              defect_rate=0.25).close()
        py = [sys.executable, "-m", "defect_studio"]
        common = ["--project", str(project), "--epochs", str(args.epochs), "--size",
                  f"{args.size}x{args.size}", "--device", "cpu", "--threads", "1"]
        local, cluster, records = [], [], []
        for i in range(args.repeats):
            local.append(timed(py + ["train", *common, "--run-id", f"local{i}"], env))
            cluster.append(timed(py + ["train", *common, "--run-id", f"cluster{i}",
                                       "--cluster", address], env))
            records.append(json.loads((project / "runs" / f"cluster{i}" / "cluster.json")
                                      .read_text()))
        pkg = tmp / "pkg"
        timed(py + ["export-model", "--project", str(project), "--run", "local0", "--out",
                    str(pkg)], env)
        p_local = timed(py + ["predict", "--model", str(pkg), str(project / "images"),
                              "--out", str(tmp / "o1"), "--no-overlays"], env)
        p_cluster = timed(py + ["predict", "--model", str(pkg), str(project / "images"),
                                "--out", str(tmp / "o2"), "--no-overlays", "--cluster",
                                address], env)
    finally:
        if head is not None:
            head.stop()
    ml, mc = statistics.median(local), statistics.median(cluster)
    print(f"train, {args.images} images {args.size}x{args.size}, {args.epochs} epoch(s), "
          f"{args.repeats} repeats (median wall):")
    print(f"  local {ml:.1f} s, cluster {mc:.1f} s: overhead {mc - ml:+.1f} s "
          f"({mc / ml:.2f}x)   all: local {[round(x, 1) for x in local]}, "
          f"cluster {[round(x, 1) for x in cluster]}")
    print(f"  data: first run sent {records[0]['files_sent']} files "
          f"({records[0]['bytes_sent'] / 1e6:.2f} MB); later runs sent "
          f"{[r['files_sent'] for r in records[1:]]} files")
    print(f"predict {args.images} images: local {p_local:.1f} s, cluster {p_cluster:.1f} s "
          f"({p_cluster / p_local:.2f}x)")


if __name__ == "__main__":
    main()
