"""`defect-studio export-model` and `defect-studio watch`.

``add_commands(sub)`` adds both sub-commands to the CLI parser (core/cli.py), so their
options live here with their code.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from defect_studio.errors import UserError

MAX_THREADS = 256  # more is never faster, and 100,000 made the runtime allocate for minutes


def add_commands(sub: argparse._SubParsersAction, line: bool = False) -> None:
    """export-model (not in the line runtime: it needs torch) and watch."""
    if not line:
        _add_export_model(sub)
    _add_watch(sub)


def _add_export_model(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("export-model",
                       help="export a trained run as a package for the line (ONNX or OpenVINO)")
    s.add_argument("--run", required=True, help="run folder, or RUN with --project")
    s.add_argument("--project", help="project folder (when --run is a run id)")
    s.add_argument("--format", default="onnx", choices=["onnx", "openvino"])
    s.add_argument("--out", required=True, help="new (or empty) folder for the package, "
                   "outside the project")
    s.add_argument("--int8", action="store_true",
                   help="quantize to INT8 with NNCF, calibrated on the run's training images")
    s.add_argument("--calibration-images", dest="calibration_images", type=int, default=None,
                   metavar="N", help="training images for the INT8 calibration (default 300)")
    s.add_argument("--int8-recheck", dest="int8_recheck", default="on", choices=["on", "off"],
                   help="with --int8: keep the float32 network in the package and re-score in "
                   "float32 the images whose INT8 score is near the threshold (default on)")
    s.add_argument("--json", action="store_true", help="print the package's manifest as JSON")


def _add_watch(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("watch", help="score each image that lands in a folder (torch-free)")
    s.add_argument("folder", metavar="DIR", help="folder the camera writes images into")
    s.add_argument("--model", required=True, metavar="PACKAGE",
                   help="package folder made by export-model")
    s.add_argument("--out", required=True, help="folder for results.jsonl and NG overlays")
    s.add_argument("--move-to", dest="move_to", help="move processed images to this folder")
    s.add_argument("--threshold", type=float, help="override the package's threshold")
    s.add_argument("--settle", type=float, default=1.0,
                   help="seconds a file must stay unchanged before it is scored (default 1)")
    s.add_argument("--threads", type=int, default=None,
                   help=f"CPU threads for the runtime (1 to {MAX_THREADS})")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "gpu"],
                   help="ONNX Runtime's CUDA provider or OpenVINO's GPU (cuda/gpu), else the "
                   "CPU with a message (default auto: the GPU when there is one)")
    s.add_argument("--no-overlays", action="store_true")
    add_recheck_option(s)
    s.add_argument("--station", help="this station's name in the results (default: the host "
                   "name); any number of stations may watch one inbox, each part is scored once")
    s.add_argument("--lease", type=float, default=30.0, metavar="SECONDS",
                   help="a station whose heartbeat is still this long is taken as dead and its "
                   "part is scored by another (default 30)")
    s.add_argument("--rescan", type=float, default=10.0, metavar="SECONDS",
                   help="list the inbox this often besides file events (network shares; "
                   "default 10)")


def add_recheck_option(s: argparse.ArgumentParser) -> None:
    s.add_argument("--int8-recheck", dest="int8_recheck", default=None, choices=["on", "off"],
                   help="an INT8 package: re-score in float32 the images near the threshold "
                   "(on), or INT8 alone (off); default: on when the package holds the float32 "
                   "model")


def cmd_export_model(args: argparse.Namespace) -> int:
    import json

    from defect_studio.deploy.export import export_model
    from defect_studio.deploy.package import read_package
    from defect_studio.inference.predictor import resolve_run_dir

    run_dir = resolve_run_dir(args.run, args.project)
    out = export_model(run_dir, Path(args.out), args.format, project_root=args.project,
                       progress=lambda m: print(m, file=sys.stderr, flush=True),
                       int8=args.int8, calibration_images=args.calibration_images,
                       int8_recheck=args.int8_recheck)
    info = read_package(out)
    if args.json:
        print(json.dumps(info.manifest, indent=2))
        return 0
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    precision = info.manifest.get("precision", "f32")
    if info.recheck is not None:
        precision += (f", float32 re-check within {info.recheck['band_logit']:.3f} logit of "
                      "the threshold")
    print(f"exported run {info.run_id} ({info.model}, {info.format}, {precision}) to {out}: "
          f"{size / 1e6:.1f} MB, threshold {info.threshold:.4f} ({info.threshold_source}), "
          f"input {info.preprocessing.input_size[0]}x{info.preprocessing.input_size[1]}x"
          f"{info.preprocessing.channels} ({info.preprocessing.resize})")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from defect_studio.deploy.runtime import load_package
    from defect_studio.deploy.watch import Watcher

    if args.settle is None or not (0 <= args.settle <= 3600):
        raise UserError(f"--settle must be between 0 and 3600 seconds, got {args.settle}")
    if args.threads is not None and not (1 <= args.threads <= MAX_THREADS):
        raise UserError(f"--threads must be between 1 and {MAX_THREADS}, got {args.threads}")
    for name, value, low in (("--lease", args.lease, 1.0), ("--rescan", args.rescan, 0.1)):
        if value is None or not (low <= value <= 3600):
            raise UserError(f"{name} must be between {low:g} and 3600 seconds, got {value}")
    if args.station is not None:
        from defect_studio.deploy.claim import check_station_name

        check_station_name(args.station)
    if args.threshold is not None:  # checked before the package is loaded
        from defect_studio.inference.prediction import check_threshold

        check_threshold(args.threshold)
    predictor = load_package(args.model, num_threads=args.threads, device=args.device,
                             int8_recheck=args.int8_recheck)
    if args.threshold is not None:
        predictor.threshold = args.threshold
    watcher = Watcher(args.folder, predictor, args.out, args.move_to, settle_s=args.settle,
                      overlays=not args.no_overlays, station=args.station,
                      lease_s=args.lease, rescan_s=args.rescan)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if threading.current_thread() is threading.main_thread():
        def on_signal(_sig: int, _frame: object) -> None:
            watcher.stop()  # sets a flag only: no lock, no I/O in a signal handler

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
    print(f"station {watcher.station or '-'} watching {watcher.folder} with run "
          f"{predictor.run_id} ({predictor.backend}, {predictor.device}) at "
          f"threshold {predictor.threshold:.4f}; results in {watcher.results_path}; "
          f"{len(watcher.done)} part(s) already done; Ctrl+C stops", file=sys.stderr, flush=True)
    watcher.run()
    if threading.current_thread() is threading.main_thread():
        # stopping: more signals are ignored (at exit Python puts back the default handler,
        # and a second SIGTERM then would end the process mid-way with -15)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    c = watcher.counts
    print(f"stopped: {c['OK']} OK, {c['NG']} NG, {c['rejected']} rejected", file=sys.stderr)
    if predictor.recheck_band is not None:
        r = predictor.recheck_counts
        print(f"INT8: {r['rechecked']} of {r['scored']} part(s) re-checked in float32",
              file=sys.stderr)
    return 0
