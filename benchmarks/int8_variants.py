"""Which INT8 quantization keeps a run's decisions: NNCF settings compared on one run (not a test).

    .venv/bin/python benchmarks/int8_variants.py --run PROJECT/runs/RUN

The run (a finished segmentation run inside its project) is exported once to a float32
ONNX graph. Each variant quantizes that graph to an OpenVINO INT8 IR with
``defect_studio.deploy.quantize.quantize`` (calibrated on --calibration-images of the
run's training images, as ``export-model --int8`` does) and differs only in the layers
kept in float32 and in the nncf.quantize settings. On --test-count test images (labelled
OK/defective, evenly spread over the test split) every variant and the float32 IR score
each image (static batch 1); printed per variant: max and mean |score - f32 score|,
decisions at the run's threshold that differ from f32, AP and its change, and the speed
ratio to f32 (--count images, --repeats rounds, round-robin in one process: only the
ratio means anything on a loaded machine). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# module groups of MFFPA's network, in graph order: --sensitivity keeps one in f32 at a time
GROUPS = ("stem", "stage1", "stage2", "stage3", "fusion", "large", "seg_out",
          "dec_body", "dec_fc")


def _variants(nncf, sensitivity: bool) -> dict[str, tuple[tuple[str, ...], dict, bool, bool]]:
    """name: (modules kept f32, nncf.quantize options, the input layers kept f32, the
    normalization inputs kept f32)."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters as AQP
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet as R

    mixed = {"preset": nncf.QuantizationPreset.MIXED}
    if sensitivity:  # everything INT8 but one module group (the input layer too)
        return {"all INT8 (before)": ((), mixed, False, False),
                **{f"{g} f32": ((g,), mixed, False, False) for g in GROUPS}}
    return {
        "all INT8, mixed preset (before)": ((), mixed, False, False),
        "all INT8, mean-quantile activation ranges": (
            (), {**mixed, "advanced_parameters": AQP(
                activations_range_estimator_params=R.MEAN_QUANTILE)}, False, False),
        "all INT8, SmoothQuant (model_type transformer)": (
            (), {**mixed, "model_type": nncf.ModelType.TRANSFORMER}, False, False),
        "seg_out + decision head f32": (("seg_out", "dec_body", "dec_fc"), mixed, False, False),
        "input layer f32 (the default before)": ((), mixed, True, False),
        "input layer + stage1 f32": (("stage1",), mixed, True, False),
        "input layer + seg_out + decision head f32": (
            ("seg_out", "dec_body", "dec_fc"), mixed, True, False),
        "input layer f32, full bias correction": (
            (), {**mixed, "fast_bias_correction": False}, True, False),
        "input layer f32, SmoothQuant": (
            (), {**mixed, "model_type": nncf.ModelType.TRANSFORMER}, True, False),
        "input layer + normalization inputs f32 (the default now)": ((), mixed, True, True),
        "all INT8 but the normalization inputs": ((), mixed, False, True),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a finished run folder inside its project")
    p.add_argument("--calibration-images", type=int, default=300)
    p.add_argument("--test-count", type=int, default=200)
    p.add_argument("--count", type=int, default=8, help="images per speed round")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", action="append", help="run only variants whose name has this")
    p.add_argument("--sensitivity", action="store_true",
                   help="keep one module group in f32 at a time instead (which layers flip)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import numpy as np
    import openvino as ov
    from sklearn.metrics import average_precision_score

    from defect_studio.deploy import quantize as q
    from defect_studio.deploy.export import export_model
    from defect_studio.deploy.recheck import calibrate_band, in_band
    from defect_studio.inference.prediction import read_threshold
    from defect_studio.preprocess import Preprocessing, preprocess_array
    from defect_studio.project import Project

    run = Path(args.run).resolve()
    root = run.parent.parent
    nncf = q._nncf()
    variants = {k: v for k, v in _variants(nncf, args.sensitivity).items()
                if not args.only or any(o in k for o in args.only)}
    core = ov.Core()
    cfg = {"INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": "f32"}
    with tempfile.TemporaryDirectory(prefix="int8v-") as tmp:
        pkg = export_model(run, Path(tmp) / "f32", "onnx")
        import json

        manifest = json.loads((pkg / "package.json").read_text())
        pre = manifest["preprocess"]
        prep = Preprocessing(tuple(pre["input_size"]), pre["resize"], pre["channels"])
        onnx_path = pkg / "model.onnx"
        calib, used = q.calibration_images(run, prep, args.calibration_images)
        with Project.open(root, readonly=True) as project:
            recs = [r for r in project.images(split="test") if r.label in ("ok", "defective")]
            step = len(recs) / max(1, min(args.test_count, len(recs)))
            recs = [recs[int(i * step)] for i in range(min(args.test_count, len(recs)))]
            xs = [preprocess_array(project.read_image(r), prep)[None].astype(np.float32)
                  for r in recs]
            labels = [int(r.label == "defective") for r in recs]
        thr = read_threshold(run)[0]
        if thr is None:
            sys.exit(f"{run} has no threshold.json")

        def compiled(model):
            model.reshape({0: ov.PartialShape(list(xs[0].shape))})
            return core.compile_model(model, "CPU", cfg)

        nets = {"f32": compiled(ov.convert_model(str(onnx_path)))}
        quant_s: dict[str, float] = {}
        kept: dict[str, int] = {}
        for name, (keep, options, first, norm) in variants.items():
            out = Path(tmp) / f"v{len(nets)}.xml"
            info = {"quantization": {}}
            t = time.perf_counter()
            q.quantize(onnx_path, "openvino", calib, out, info, keep_modules=keep,
                       options=options, input_layers_f32=first, norm_inputs_f32=norm)
            quant_s[name] = time.perf_counter() - t
            kept[name] = len(info["quantization"]["kept_f32"])
            nets[name] = compiled(core.read_model(str(out)))
            print(f"quantized: {name} ({quant_s[name]:.0f} s)", file=sys.stderr)
        scores = {n: np.array([float(np.asarray(net(x)[0]).reshape(-1)[0]) for x in xs])
                  for n, net in nets.items()}
        # the re-check band each variant would get at export (calibration images, both nets)
        cal = {n: np.array([float(np.asarray(net(c[None])[0]).reshape(-1)[0]) for c in calib])
               for n, net in nets.items()}
        rates: dict[str, list[float]] = {n: [] for n in nets}
        for rnd in range(args.repeats + 1):
            for n, net in nets.items():
                t = time.perf_counter()
                for x in xs[:args.count]:
                    net(x)
                if rnd:
                    rates[n].append(min(args.count, len(xs)) / (time.perf_counter() - t))

    def ap(s):
        return float(average_precision_score(labels, s)) if 0 < sum(labels) < len(labels) \
            else float("nan")

    load = os.getloadavg()[0]
    W, H = pre["input_size"]
    print(f"run {run.name}: input {W}x{H}x{pre['channels']}; {len(xs)} test images "
          f"({sum(labels)} defective); threshold {thr:.4f}; calibrated on {used['images']} "
          f"training images; {args.threads} threads; load average {load:.1f} at the end\n")
    print("| variant | layers kept f32 | max abs diff to f32 | mean abs diff | decisions "
          "differing from f32 | AP | AP change | speed vs f32 | quantize s | re-check band "
          "(logit) | test images in band | decisions equal with re-check | AP change with "
          "re-check |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    f32 = scores["f32"]
    bands, inside, rechecked = {}, {}, {}
    for n in variants:  # the images in the band take the f32 score, as the runtime does
        bands[n] = calibrate_band(cal["f32"], cal[n], thr)["band_logit"]
        inside[n] = in_band(scores[n], thr, bands[n])
        rechecked[n] = scores[n].copy()
        rechecked[n][inside[n]] = f32[inside[n]]
    base = statistics.median(rates["f32"])
    print(f"| f32 | | | | | {ap(f32):.4f} | | 1.00x | | | | | |")
    for n in variants:
        s = scores[n]
        flips = int(np.sum((s >= thr) != (f32 >= thr)))
        print(f"| {n} | {kept[n]} | {np.max(np.abs(s - f32)):.4f} | "
              f"{np.mean(np.abs(s - f32)):.4f} | {flips} of {len(s)} "
              f"({100 * (1 - flips / len(s)):.1f} % equal) | {ap(s):.4f} | "
              f"{ap(s) - ap(f32):+.4f} | {statistics.median(rates[n]) / base:.2f}x | "
              f"{quant_s[n]:.0f} | {bands[n]:.3f} | {100 * len(inside[n]) / len(s):.1f} % | "
              f"{100 * np.mean((rechecked[n] >= thr) == (f32 >= thr)):.1f} % | "
              f"{ap(rechecked[n]) - ap(f32):+.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
