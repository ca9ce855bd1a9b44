"""Does the installed OpenVINO compute a large last-axis Gather wrongly with a dynamic batch?

    .venv/bin/python benchmarks/openvino_gather_check.py [--threads 2]

The CPU plugin of OpenVINO 2026.4 returns wrong values for part of the output of a Gather
on the last axis (MFFPA's unfold: data [B, 256, 3, 29, 82], sliding-window indices [3, 80])
when the input's batch is dynamic, the output has more than about 2**25 elements and more
than one thread runs it. This was the 0.017 score difference of OpenVINO packages at
640x232 in batches of 7 or more; the runtime therefore compiles OpenVINO models for a static
shape per batch size (core/deploy/runtime.py). This script builds the one-Gather model,
dynamic and static, and compares with numpy; it exits 1 when the dynamic one is wrong
(then keep the static shapes), 2 when even the static one is wrong.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def check(shape: tuple[int, ...], dynamic: bool, threads: int) -> int:
    import openvino as ov
    import openvino.opset13 as ops

    dims = [-1 if dynamic and i == 0 else s for i, s in enumerate(shape)]
    data = ops.parameter(dims, np.float32, name="d")
    n = shape[-1]
    idx = (np.arange(n - 2)[None, :] + np.arange(3)[:, None]).astype(np.int64)
    gather = ops.gather(data, ops.constant(idx), ops.constant(np.int64(len(shape) - 1)))
    compiled = ov.Core().compile_model(ov.Model([gather], [data]), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    return int(np.count_nonzero(compiled([x])[0] != np.take(x, idx, axis=len(shape) - 1)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import openvino as ov

    print(f"OpenVINO {ov.__version__}, {args.threads} thread(s)\n")
    print("| data shape | output elements | batch | wrong values |")
    print("|---|---:|---|---:|")
    worst = 0
    for shape in ((6, 256, 3, 29, 82), (8, 256, 3, 29, 82), (1, 2048, 3, 29, 82)):
        out = int(np.prod(shape)) // 82 * 80 * 3
        for dynamic in (True, False):
            bad = check(shape, dynamic, args.threads)
            print(f"| {list(shape)} | {out} | {'dynamic' if dynamic else 'static'} | {bad} |")
            if bad:
                worst = max(worst, 1 if dynamic else 2)
    return worst


if __name__ == "__main__":
    sys.exit(main())
