"""Inference latency of the four model variants (a benchmark script, not a test).

    .venv/bin/python benchmarks/speed.py                      # CPU, 2 threads, 3x640x232
    .venv/bin/python benchmarks/speed.py --device cuda --repeats 50

Batch 1 under torch.inference_mode, warm-up runs excluded. The variants are run
round-robin (one forward of each per round) so that load from other processes on a
shared machine hits all of them alike, and the ratios to the baseline come from the
same run. Prints a Markdown table: median and min latency per image, images per
second, and the median (and min) latency relative to MixSup; on a machine shared with
other work the min is the steadier of the two.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from defect_studio.kinds.segdec.cli import parse_input
from defect_studio.kinds.segdec.complexity import count_macs
from defect_studio.kinds.segdec.models import MODEL_NAMES, build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(names: list[str], cwh: tuple[int, int, int], device: torch.device,
            repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per forward pass of each variant, `repeats` round-robin rounds after warm-up."""
    c, w, h = cwh
    x = torch.rand(1, c, h, w, device=device)
    models = {}
    for n in names:
        m = build_model(n, in_channels=c).to(device).eval()
        models[n] = m
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for _name, m in models.items():
            for _ in range(warmup):
                m(x)
        _sync(device)
        for _ in range(repeats):
            for n, m in models.items():
                _sync(device)
                t0 = time.perf_counter()
                m(x)
                _sync(device)
                times[n].append(time.perf_counter() - t0)
    return times


def table(times: dict[str, list[float]], cwh: tuple[int, int, int]) -> str:
    """Markdown table of the measured latencies, with MACs and the ratio to the baseline."""
    base = statistics.median(times["mixsup"]) if "mixsup" in times else None
    base_min = min(times["mixsup"]) if "mixsup" in times else None
    lines = ["| model | GMACs | median ms | min ms | images/s (median) | median vs MixSup "
             "| min vs MixSup |",
             "|---|---|---|---|---|---|---|"]
    c, w, h = cwh
    for n, ts in times.items():
        med, lo = statistics.median(ts), min(ts)
        macs = count_macs(build_model(n, in_channels=c).to("meta"), (c, h, w)) / 1e9
        ratio = f"{med / base:.2f}" if base else "n/a"
        ratio_min = f"{lo / base_min:.2f}" if base_min else "n/a"
        lines.append(f"| {n} | {macs:.2f} | {med * 1e3:.1f} | {lo * 1e3:.1f} | "
                     f"{1 / med:.2f} | {ratio} | {ratio_min} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--input", default="3x640x232", help="CxWxH (default 3x640x232)")
    p.add_argument("--models", default="all", help="comma-separated names or 'all'")
    p.add_argument("--repeats", type=int, default=10, help="timed rounds (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per model (default 2)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    args = p.parse_args(argv)

    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    names = (list(MODEL_NAMES) if args.models == "all"
             else [s.strip() for s in args.models.split(",")])
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(MODEL_NAMES)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available here")
    torch.set_num_threads(args.threads)
    cwh = parse_input(args.input)

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    times = measure(names, cwh, device, args.repeats, args.warmup)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {args.threads} threads"
    print(f"# input {args.input} (CxWxH), batch 1, {args.repeats} rounds after "
          f"{args.warmup} warm-up runs, device {device} ({where}), torch {torch.__version__}, "
          f"1-min load average {load_before:.2f} before / {load_after:.2f} after")
    print(table(times, cwh))
    return 0


if __name__ == "__main__":
    sys.exit(main())
