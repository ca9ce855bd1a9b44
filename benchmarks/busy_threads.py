"""Training time on a busy machine: the OpenMP wait policy and the thread count, interleaved.

Generates a small demo project (80 images, 128x128), then runs `defect-studio train
--preset quick --epochs 2` as a subprocess in several settings, one after the other, round
after round, so that every setting sees the same background load:

  default   torch's threads, the OpenMP runtime's own wait policy (DEFECT_STUDIO_OMP=default)
  passive   torch's threads, OMP_WAIT_POLICY=PASSIVE (what defect_studio.threads sets)
  threads1  --threads 1 (passive)

Optionally it starts --load N busy processes (each a 1-thread training loop of its own) for
the whole measurement, to make a quiet machine busy. Prints one line per run and the
median per setting.

    python benchmarks/busy_threads.py --rounds 3              # as the machine is now
    python benchmarks/busy_threads.py --rounds 3 --load 2     # quiet machine + 2 busy procs
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "default": ({"DEFECT_STUDIO_OMP": "default"}, []),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, []),
    "threads1": ({"OMP_WAIT_POLICY": "PASSIVE"}, ["--threads", "1"]),
}
LOAD_CODE = ("import torch\ntorch.set_num_threads(1)\nx = torch.randn(256, 256)\n"
             "while True:\n    x = torch.tanh(x @ x * 1e-3)\n")


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "DEFECT_STUDIO_OMP", "OMP_NUM_THREADS")}
    env.update(extra)
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--count", type=int, default=80)
    p.add_argument("--load", type=int, default=0, help="busy processes to start (default 0)")
    p.add_argument("--settings", default=",".join(SETTINGS))
    args = p.parse_args(argv)
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    py = sys.executable
    times: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="busy-threads-") as tmp:
        proj = Path(tmp) / "demo"
        subprocess.run([py, "-m", "defect_studio", "demo", "--project", str(proj), "--count",
                        str(args.count), "--size", "128x128", "--seed", "0"], check=True,
                       stdout=subprocess.DEVNULL, env=clean_env({}))
        load = [subprocess.Popen([py, "-c", LOAD_CODE], env=clean_env({"OMP_NUM_THREADS": "1"}))
                for _ in range(args.load)]
        try:
            print(f"cpus {os.cpu_count()}, load processes started {args.load}, "
                  f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
            for r in range(args.rounds):
                for name in names:
                    env, extra = SETTINGS[name]
                    t0 = time.perf_counter()
                    subprocess.run([py, "-m", "defect_studio", "train", "--project", str(proj),
                                    "--preset", "quick", "--epochs", str(args.epochs), *extra],
                                   check=True, stdout=subprocess.DEVNULL, env=clean_env(env))
                    dt = time.perf_counter() - t0
                    times[name].append(dt)
                    print(f"round {r + 1} {name:9s} {dt:7.1f} s  (load avg "
                          f"{os.getloadavg()[0]:.2f})", flush=True)
        finally:
            for proc in load:
                proc.kill()
                proc.wait()
    print("\nsetting    median s   runs")
    for name in names:
        v = times[name]
        print(f"{name:9s} {statistics.median(v):8.1f}   "
              + ", ".join(f"{t:.1f}" for t in v))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
