"""`defect-studio predict`: score image files/folders with a run (``--run``) or an
export package (``--model``, the torch-free runtime); CSV + overlay PNGs (+ ``--json``).

Unreadable files are listed in the CSV (error column) and on stderr and do not
stop the job; the exit code is 0 when at least one image was scored, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from defect_studio.errors import UserError
from defect_studio.inference.results import PREDICT_COLUMNS, ResultsWriter

CSV_NAME = "predictions.csv"
MAX_BATCH = 1024  # images in memory at once
CSV_HEADER = list(PREDICT_COLUMNS)


def collect_inputs(inputs: list[str], exclude: Path | None = None
                   ) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files to score from files and folders (recursive, image extensions only, sorted).

    Returns (files, problems): a missing INPUT is a problem, not a crash. Overlays
    (``*_overlay.png``) under ``exclude`` (the output folder) are skipped, so re-running
    into an output folder inside the input folder does not score its own overlays.
    """
    from defect_studio.io.images import is_image_file

    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    ex = exclude.resolve() if exclude is not None else None

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)

    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*")
                           if q.is_file() and is_image_file(q) and not q.name.startswith(".")
                           and not _is_own_output(q, ex))
            if not found:
                problems.append((p, "folder holds no image files (.png, .jpg, .bmp, .tif)"))
            for q in found:
                add(q)
        elif p.exists():
            add(p)  # named explicitly: tried whatever its extension; a bad one is reported
        else:
            problems.append((p, "file or folder not found"))
    return files, problems


def _is_own_output(path: Path, out: Path | None) -> bool:
    return (out is not None and path.name.endswith("_overlay.png")
            and out in path.resolve().parents)


def progress_printer(label: str = "scoring") -> Callable[[int, int], None]:
    """A progress(done, total) callback on stderr (defect_studio.progress: a bar on a terminal,
    about ten plain lines otherwise)."""
    from defect_studio.progress import progress_bar

    return progress_bar(label)


def _chunks(seq: list[Path], n: int) -> Iterator[list[Path]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _heat_range(run_dir: Path | None, predictor) -> float | None:
    """The run's heat range for the overlays (defect_studio.inference.heat_range): stored
    with the run, or measured on its project's defective images; None for a package or a
    run outside a project."""
    if run_dir is None:
        return None
    from defect_studio.inference.heat_range import read_heat_range, run_heat_range, sample_paths
    from defect_studio.project import Project, is_project

    stored = read_heat_range(run_dir)
    root = Path(run_dir).parent.parent
    if stored is not None or not is_project(root):
        return stored
    try:
        with Project.open(root, readonly=True) as project:
            paths = sample_paths(project)
        return run_heat_range(run_dir, predictor, paths)
    except (UserError, OSError):
        return None


def cmd_predict(args: argparse.Namespace) -> int:
    """Score INPUTs with --run or --model; write predictions.csv and overlays into --out."""
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise UserError(f"--batch-size must be between 1 and {MAX_BATCH}, got {args.batch_size}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the predictions")
    package = getattr(args, "model", None)
    if package is not None and args.project:
        raise UserError("--project goes with --run; --model takes a package folder")
    run_dir = None
    if package is None:
        from defect_studio.inference.predictor import resolve_run_dir

        run_dir = resolve_run_dir(args.run, args.project)
    files, problems = collect_inputs(args.inputs, exclude=out)
    if not files:
        detail = "; ".join(f"{p}: {why}" for p, why in problems)
        raise UserError(f"no images to score ({detail})" if detail else "no images to score")
    cluster = getattr(args, "cluster", None)
    if cluster and package is None:
        raise UserError("--cluster scores with an export package: give --model PACKAGE "
                        "(defect-studio export-model)")
    if package is not None:  # the line's runtime: no torch imported
        from defect_studio.deploy.runtime import load_package

        if args.device == "mps":
            raise UserError("--device mps applies to --run; an export package runs on "
                            "auto, cpu, cuda or gpu")
        predictor = load_package(package, device=args.device,
                                 int8_recheck=getattr(args, "int8_recheck", None))
    else:
        if getattr(args, "int8_recheck", None) is not None:
            raise UserError("--int8-recheck applies to an INT8 package (--model PACKAGE)")
        from defect_studio.inference import load_predictor

        device = "cuda" if args.device == "gpu" else args.device
        predictor = load_predictor(run_dir, device=device)
    heat_vmax = None if args.no_overlays else _heat_range(run_dir, predictor)
    if args.threshold is not None:
        predictor.threshold = args.threshold
    # predictions.csv + <stem>_overlay.png (defect_studio.inference.results); each row is
    # flushed as it is written, so partial results survive an interrupted job; a file that
    # cannot be written (a full disk) ends the job with its name, and no partial CSV is kept
    try:
        writer = ResultsWriter(out, CSV_NAME, CSV_HEADER)
    except OSError as e:
        raise _write_failed(out / CSV_NAME, e) from None
    try:
        return _score_all(args, files, problems, predictor, writer, out, package, run_dir,
                          heat_vmax)
    except _WriteError as e:
        with contextlib.suppress(OSError):
            writer.table.path.unlink()
        raise _write_failed(writer.table.path, e.args[0]) from None


def _recheck_summary(predictor: Any) -> dict:
    """{"int8_recheck": ...} for an INT8 package (how many images float32 re-checked, or
    why none), {} otherwise."""
    if getattr(predictor, "inference_precision", None) != "int8":
        return {}
    band = predictor.recheck_band
    return {"int8_recheck": {"band_logit": band, **predictor.recheck_counts,
                             "note": predictor.recheck_note}}


class _WriteError(Exception):
    """The results file could not be written (args[0]: the OSError)."""


def _write_failed(path: Path, e: OSError) -> UserError:
    why = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
    return UserError(f"could not write {path}: {why}; the incomplete results file was removed, "
                     "make room and run predict again")


def _score_all(args: argparse.Namespace, files: list[Path], problems: list, predictor,
               writer: ResultsWriter, out: Path, package, run_dir,
               heat_vmax: float | None = None) -> int:
    import json

    from defect_studio.io.images import read_image

    cluster = getattr(args, "cluster", None)
    n_ok = n_ng = 0
    errors: list[tuple[Path, str]] = list(problems)
    total = len(files)
    done = 0
    show_progress = progress_printer()
    csv_path = writer.table.path
    run_id, thr = predictor.run_id, repr(float(predictor.threshold))
    rows: list[dict] = []

    def write_row(row: list) -> None:  # into the CSV, and kept for --json
        record = dict(zip(CSV_HEADER, row + [run_id, thr]))
        try:
            writer.add(record)
        except OSError as e:
            raise _WriteError(e) from None
        rows.append(record)

    for p, why in problems:
        write_row([str(p), "", "", why, ""])

    def add_result(p: Path, image: Any, pred: Any) -> None:
        nonlocal n_ok, n_ng
        if isinstance(pred, str):
            errors.append((p, pred))
            write_row([str(p), "", "", pred, ""])
            return
        n_ng += pred.is_ng
        n_ok += not pred.is_ng
        overlay_name = ""
        if not args.no_overlays:
            if image is None:
                try:
                    image = read_image(p)
                except UserError as e:
                    writer.problems.append((p, str(e)))
            if image is not None:
                overlay_name = writer.write_overlay(p, image, pred.heatmap, pred.score,
                                                    pred.is_ng, vmax=heat_vmax)
        write_row([str(p), f"{pred.score:.6f}", "NG" if pred.is_ng else "OK", "", overlay_name])

    if cluster:  # Ray tasks over the torch-free runtime (defect_studio.cluster.predict)
        from defect_studio.cluster.predict import score_on_cluster

        for p, pred in score_on_cluster(cluster, Path(package), files,
                                        threshold=float(predictor.threshold),
                                        chunk=args.batch_size, heatmaps=not args.no_overlays,
                                        progress=show_progress):
            add_result(p, None, pred)
        files = []
    for chunk in _chunks(files, args.batch_size):
        images = {}
        for p in chunk:
            try:
                images[p] = read_image(p)
            except UserError as e:
                errors.append((p, str(e)))
                write_row([str(p), "", "", str(e), ""])
        ready = list(images)
        results = predictor.predict_many([images[p] for p in ready], batch_size=len(chunk))
        for p, (_, pred) in zip(ready, results):
            add_result(p, images[p], pred)
        done += len(chunk)
        show_progress(done, total)
    writer.close()

    for p, why in errors:
        print(f"could not score {p}: {why}", file=sys.stderr)
    for p, why in writer.problems:  # scored, but its overlay could not be written
        print(f"could not write the overlay of {p}: {why}", file=sys.stderr)
    if getattr(args, "json", False):
        for r in rows:
            r["score"] = float(r["score"]) if r["score"] else None
            r["threshold"] = float(r["threshold"])
        print(json.dumps({"run_id": run_id, "threshold": predictor.threshold,
                          "model": str(package) if package is not None else str(run_dir),
                          "ok": n_ok, "ng": n_ng, "errors": len(errors), "csv": str(csv_path),
                          **_recheck_summary(predictor), "results": rows}, indent=2))
        return 0 if n_ok + n_ng else 1
    print(f"{n_ok + n_ng} image(s) scored with run {predictor.run_id} at threshold "
          f"{predictor.threshold:.4f}: {n_ok} OK, {n_ng} NG, {len(errors)} error(s)")
    recheck = _recheck_summary(predictor).get("int8_recheck")
    if recheck is not None:
        print(f"INT8: {recheck['rechecked']} of {recheck['scored']} image(s) re-checked in "
              f"float32 (within {recheck['band_logit']:.3f} logit of the threshold)"
              if recheck["band_logit"] is not None else f"INT8: {recheck['note']}")
    print(f"results: {csv_path}" + ("" if args.no_overlays else f"; overlays in {out}{os.sep}"))
    if n_ok + n_ng == 0:
        print("error: no image could be scored", file=sys.stderr)
        return 1
    return 0
