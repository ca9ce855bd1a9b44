"""Exporting a trained run as a self-contained package (ONNX or OpenVINO IR).

``export_model(run_dir, out_dir, fmt)`` checks the run, lets the run's model kind
write its network as ONNX (the kind's ``export`` entry, defect_studio.kinds.base), stamps
the decision settings into the ONNX ``metadata_props``, converts to OpenVINO IR when
asked, and writes package.json with the sha256 of every file. The package is built in a
temp folder beside ``out_dir`` and renamed into place,
so a failed export leaves nothing half-written. Never writes into a project folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from defect_studio.deploy.package import (
    FORMATS,
    INPUT_NAME,
    MODEL_FILES,
    ONNX_OPSET,
    OPENVINO_CONFIG,
    OUTPUT_NAMES,
    PACKAGE_FILE,
    PACKAGE_FORMAT,
)
from defect_studio.errors import ModelFileError, UserError
from defect_studio.io.atomic import sha256_file

# A kind's ``export`` entry (defect_studio.kinds.base.ModelKind) is a function
# (run_dir, onnx_path) -> dict: it writes the network to onnx_path (input "image", outputs
# "score" and "heatmap", dynamic batch, opset >= 18) and returns the manifest fields of
# its kind (at least "model" and "preprocess").


class ExportError(UserError):
    """A run that cannot be exported, or an output folder that cannot be used."""


def package_version() -> str:
    from defect_studio import __version__

    return __version__


def export_model(run_dir: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "onnx", *,
                 project_root: str | os.PathLike | None = None,
                 progress: Callable[[str], Any] | None = None, int8: bool = False,
                 calibration_images: int | None = None, int8_recheck: str = "on") -> Path:
    """Write the package of the run in ``run_dir`` to the new folder ``out_dir``; returns it.

    ``project_root`` (and the project that holds the run) are never written into.
    progress(message) is called at each step. ``int8``: quantize the network with NNCF
    (defect_studio.deploy.quantize), calibrated on up to ``calibration_images`` (default
    300) of the run's training images. ``int8_recheck`` "on" (default): the package also
    holds the float32 network and the re-check band calibrated on the same images
    (defect_studio.deploy.recheck); "off": INT8 only.
    """
    from defect_studio.kinds import kind_of_run
    from defect_studio.project.runs import read_run

    say = progress or (lambda _m: None)
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ExportError(f"{run_dir} is not a training run folder (it has no config.json)")
    run = read_run(run_dir)
    if run.state in ("running", "interrupted", "damaged"):
        why = {"running": "is still training: wait until it finishes",
               "interrupted": "was interrupted before it finished: resume it, or pick a "
                              "finished run",
               "damaged": "has damaged status files: pick another run"}[run.state]
        raise ExportError(f"run '{run.id}' {why}")
    out = _check_out_dir(Path(out_dir), run_dir, project_root)
    from defect_studio.inference.prediction import read_threshold

    read_threshold(run_dir)  # a damaged or out-of-range threshold: said now, before the work
    kind = kind_of_run(run_dir)
    exporter = _exporter(kind)
    if int8 and kind.outputs_boxes:
        raise ExportError(f"--int8 is for models without boxes; export the {kind.title} "
                          "model in float32 (without --int8)")
    if not int8 and calibration_images is not None:
        raise ExportError("--calibration-images goes with --int8")
    if int8_recheck not in ("on", "off"):
        raise ExportError(f"--int8-recheck must be on or off, got {int8_recheck!r}")
    if not int8 and int8_recheck != "on":
        raise ExportError("--int8-recheck goes with --int8")
    if int8:
        from defect_studio.deploy.quantize import DEFAULT_CALIBRATION_IMAGES, check_calibration

        if calibration_images is None:
            calibration_images = DEFAULT_CALIBRATION_IMAGES
        check_calibration(run_dir, calibration_images)

    tmp = _temp_beside(out)
    try:
        onnx_path = tmp / MODEL_FILES["onnx"]
        say("exporting the network to ONNX")
        fields = exporter(run_dir, onnx_path)
        manifest = _manifest(run_dir, run, kind.name, fmt, fields)
        if int8:
            _quantize(run_dir, onnx_path, tmp, fmt, manifest, calibration_images, say,
                      recheck=int8_recheck == "on")
        else:
            _stamp_onnx(onnx_path, manifest)
            if fmt == "openvino":
                say("converting to OpenVINO IR")
                _to_openvino(onnx_path, tmp / MODEL_FILES["openvino"], manifest)
                onnx_path.unlink()
        say("checking the package")
        _finish(tmp, manifest, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _quantize(run_dir: Path, onnx_path: Path, tmp: Path, fmt: str, manifest: dict[str, Any],
              count: int, say: Callable[[str], Any], recheck: bool = True) -> None:
    """Replace the f32 graph in ``tmp`` by the INT8 model of the package's format; with
    ``recheck``, keep the f32 graph beside it (model_f32.*) and calibrate the re-check band
    on the calibration images (package.json's ``recheck``)."""
    from defect_studio.deploy import quantize as q
    from defect_studio.deploy.recheck import F32_MODEL_FILES
    from defect_studio.preprocess import Preprocessing

    pre = manifest["preprocess"]
    preprocessing = Preprocessing(tuple(pre["input_size"]), pre["resize"], pre["channels"])
    fields = q.method(fmt)
    say("reading the run's training images for the INT8 calibration")
    images, used = q.calibration_images(run_dir, preprocessing, count)
    manifest["precision"] = "int8"
    manifest["quantization"] = {**fields, "calibration": used}
    say(f"quantizing to INT8 with NNCF on {len(images)} training image(s)")
    f32 = tmp / "f32.onnx"
    onnx_path.rename(f32)
    if fmt == "openvino":
        manifest["runtime"] = {"openvino": dict(OPENVINO_CONFIG)}
        q.quantize(f32, fmt, images, tmp / MODEL_FILES["openvino"], manifest)
    else:
        q.quantize(f32, fmt, images, onnx_path, manifest)
        _stamp_onnx(onnx_path, manifest)
    if not recheck:
        manifest["quantization"]["recheck"] = "off (export-model --int8-recheck off)"
        f32.unlink()
        return
    say(f"calibrating the float32 re-check band on the {len(images)} image(s)")
    f32_file = tmp / F32_MODEL_FILES[fmt]
    if fmt == "openvino":
        _to_openvino(f32, f32_file, {"precision": "f32", "role": "int8 re-check"})
        f32.unlink()
    else:
        f32.rename(f32_file)
    _calibrate_recheck(tmp, fmt, f32_file, images, manifest)
    warning = recheck_warning(manifest["recheck"])
    if warning:
        say(warning)


# With the re-check, a package scores at 1 / (1/r + s) of the float32 speed (r: INT8's speed
# ratio, ~2.4-2.7 measured; s: the share re-checked): from s = 0.5 on that is under 1.5x,
# from s ~0.6 slower than float32 itself (docs/benchmarks.md, "INT8 re-check band").
RECHECK_SHARE_WARN = 0.5


def recheck_warning(recheck: dict[str, Any]) -> str:
    """A line for the user when the calibrated band re-checks so many images that the INT8
    package gains little or nothing over float32 ("" when it does not)."""
    cal = recheck.get("calibration")
    share = cal.get("share_in_band") if isinstance(cal, dict) else None
    if not isinstance(share, (int, float)) or share < RECHECK_SHARE_WARN:
        return ""
    worst = cal.get("abs_logit_diff_max", 0)
    return (f"warning: INT8 moves this model's scores by up to {worst:.3g} logit ("
            f"{cal.get('decisions_differing', '?')} of {cal.get('images', '?')} "
            f"calibration decisions differ), so the re-check band of "
            f"{recheck.get('band_logit', 0):.3g} logit holds {share:.0%} of the calibration "
            "images: this package will score little or no faster than float32. Export "
            "float32 (without --int8), or --int8-recheck off to accept INT8's decisions")


def _calibrate_recheck(tmp: Path, fmt: str, f32_file: Path, images: list, manifest: dict
                       ) -> None:
    """package.json's ``recheck``: both networks score the calibration images as the
    runtime runs them, and the band follows from their logit differences."""
    from defect_studio.deploy.recheck import calibrate_band
    from defect_studio.deploy.runtime import graph_scores

    threads = max(1, min(4, os.cpu_count() or 1))
    a = graph_scores(f32_file, fmt, images, threads)
    b = graph_scores(tmp / MODEL_FILES[fmt], fmt, images, threads)
    try:
        facts = calibrate_band(a, b, manifest["threshold"])
    except ValueError as e:
        raise ExportError(f"cannot calibrate the INT8 re-check: {e}") from None
    manifest["recheck"] = {"model": f32_file.name, **facts}


def _exporter(kind: Any) -> Callable[[Path, Path], dict]:
    """The kind's ``export`` entry; ExportError when the kind has none (or its module is
    not there yet)."""
    entry = kind.export
    module = entry.partition(":")[0]
    try:
        if entry:
            return kind.load("export")
    except ModuleNotFoundError as e:
        if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
            raise  # a module the exporter itself needs is missing: not this case
    except AttributeError:
        pass
    raise ExportError(f"models of kind '{kind.title}' cannot be exported yet")


def convert_package(package_dir: str | os.PathLike, out_dir: str | os.PathLike,
                    fmt: str = "openvino") -> Path:
    """An ONNX package converted to another format (OpenVINO IR) in the new folder
    ``out_dir``, without torch: the same network, threshold and settings."""
    from defect_studio.deploy.package import read_package

    info = read_package(package_dir)
    if fmt not in FORMATS or fmt == "onnx":
        raise ExportError(f"a package can be converted to: openvino, not {fmt!r}")
    if info.format != "onnx":
        raise ExportError(f"{info.path} is a {info.format} package; convert an ONNX package")
    out = _check_new_folder(Path(out_dir))
    manifest = {k: v for k, v in info.manifest.items() if k not in ("files", "model_sha256")}
    manifest["format"] = fmt
    manifest["runtime"] = {"openvino": dict(OPENVINO_CONFIG)}
    tmp = _temp_beside(out)
    try:
        _to_openvino(info.model_file, tmp / MODEL_FILES[fmt], manifest)
        _finish(tmp, manifest, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


TEMP_MARK = ".dstmp-"
STALE_TEMP_S = 24 * 3600  # a temporary folder without a pid in its name: left by a crash


def _temp_beside(out: Path) -> Path:
    """A new temporary folder beside ``out`` (``.<name>.dstmp-<pid>-<random>``); those of
    exports that were killed (their process is gone) are removed first. Made with mkdir's
    mode 0o777 so the user's umask decides (mkdtemp's 0o700 made every package private,
    which the line's service account could not read; issue 16)."""
    import secrets

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        for _ in range(100):
            tmp = out.parent / f".{out.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(6)}"
            try:
                tmp.mkdir(mode=0o777)
                return tmp
            except FileExistsError:
                continue
        raise FileExistsError(f"no free temporary name beside {out}")
    except OSError as e:
        raise ExportError(f"cannot write the package beside {out}: {e.strerror or e}") from None


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove the temporary folders beside ``out`` that killed exports left behind: their
    pid (in the name) is not running on this host, or, in the older naming without a pid,
    they are more than a day old. Returns what was removed."""
    import time

    from defect_studio.deploy.claim import pid_alive

    prefix = f".{out.name}{TEMP_MARK}"
    removed = []
    try:
        entries = [e for e in os.scandir(out.parent) if e.name.startswith(prefix)]
    except OSError:
        return removed
    for e in entries:
        pid, sep, _ = e.name[len(prefix):].partition("-")
        try:
            if not e.is_dir(follow_symlinks=False):
                continue
            if sep and pid.isdigit():
                stale = int(pid) != os.getpid() and not pid_alive(int(pid))
            else:
                stale = time.time() - e.stat(follow_symlinks=False).st_mtime > STALE_TEMP_S
        except OSError:
            continue
        if stale:
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(Path(e.path))
    return removed


def _check_new_folder(out: Path, empty: bool = True) -> Path:
    """``out`` as a new (or empty) folder for a package, or ExportError now, before any
    work (the package is moved into its place at the end). ``empty``: check that too."""
    if out.is_symlink():
        raise ExportError(f"--out {out} is a link (to {os.readlink(out)}); give the path of a "
                          "new folder, not a link: the package folder is put in its place")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a new (or empty) folder for the package")
    if not empty:
        return out
    try:
        full = out.is_dir() and any(out.iterdir())
    except OSError as e:
        raise ExportError(f"cannot read --out {out}: {e.strerror or e}") from None
    if full:
        raise ExportError(f"--out {out} is not empty; give a new (or empty) folder, so that no "
                          "file of an older export is mixed into the package")
    return out


def _finish(tmp: Path, manifest: dict[str, Any], out: Path) -> None:
    """Hash the files, write package.json, verify, and move the package into place."""
    from defect_studio.deploy.package import read_package

    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    manifest["files"] = files
    manifest["model_sha256"] = files[MODEL_FILES[manifest["format"]]]
    (tmp / PACKAGE_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    read_package(tmp)
    if out.is_dir():  # an empty folder (checked before): replaced by the package
        out.rmdir()
    os.replace(tmp, out)


def _check_out_dir(out: Path, run_dir: Path, project_root: Any) -> Path:
    _check_new_folder(out, empty=False)
    target = out.resolve()
    for root in _project_roots(run_dir, project_root):
        if target == root or root in target.parents:
            raise ExportError(f"--out {out} is inside the project folder {root}; write the "
                              "package outside the project (a project holds only its own files)")
    return _check_new_folder(out)


def _project_roots(run_dir: Path, project_root: Any) -> list[Path]:
    from defect_studio.project.store import is_project

    roots = [Path(project_root).resolve()] if project_root is not None else []
    runs = run_dir.resolve().parent
    if runs.name == "runs" and is_project(runs.parent):
        roots.append(runs.parent)
    return roots


def _training_summary(run_dir: Path, run: Any) -> dict[str, Any]:
    """Counts of the data the run was trained and validated on, and its metrics."""
    summary: dict[str, Any] = {}
    try:
        with open(run_dir / "events.jsonl", encoding="utf-8") as f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if isinstance(ev, dict) and ev.get("event", ev.get("type")) == "started":
                    for key in ("n_train", "n_val", "notes", "device"):
                        if key in ev:
                            summary[key] = ev[key]
    except OSError:
        pass
    m = run.metrics if isinstance(run.metrics, dict) else {}
    keep = ("split", "ap", "auc", "n", "n_pos", "epochs", "elapsed_s")
    summary["metrics"] = {k: m[k] for k in keep if k in m}
    summary["epochs"] = run.epochs
    return summary


def _manifest(run_dir: Path, run: Any, kind: str, fmt: str, fields: dict) -> dict[str, Any]:
    from defect_studio.inference.prediction import DEFAULT_THRESHOLD, read_threshold
    from defect_studio.training.checkpoint import MODEL_FILE

    t, source = read_threshold(run_dir)
    weights = run_dir / MODEL_FILE
    manifest: dict[str, Any] = {
        "package_format": PACKAGE_FORMAT,
        "kind": kind,
        "format": fmt,
        "model": fields.pop("model"),
        "run_id": run.id,
        "run_created": run.created,
        "threshold": DEFAULT_THRESHOLD if t is None else t,
        "threshold_source": source if t is not None else "default (the run has no threshold)",
        "preprocess": fields.pop("preprocess"),
        "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW, batch dynamic"},
        "outputs": {OUTPUT_NAMES[0]: "[batch] defect probability (sigmoid of the decision)",
                    OUTPUT_NAMES[1]: "[batch, h, w] defect probability per cell over the input"},
        "decision": "NG when score >= threshold",
        "training_data": _training_summary(run_dir, run),
        "package_version": package_version(),
        "exported": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "onnx_opset": ONNX_OPSET,
        "source_weights_sha256": sha256_file(weights) if weights.is_file() else None,
    }
    if fmt == "openvino":
        manifest["runtime"] = {"openvino": dict(OPENVINO_CONFIG)}
    manifest.update(fields)
    return manifest


def _meta_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _stamp_onnx(path: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest into the ONNX metadata_props (one entry per key)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in manifest.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, _meta_text(value)
    model.producer_name = "defect-studio"
    model.producer_version = manifest["package_version"]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _to_openvino(onnx_path: Path, xml_path: Path, manifest: dict[str, Any]) -> None:
    try:
        import openvino as ov
    except ImportError:
        raise ExportError("OpenVINO is not installed: pip install openvino") from None
    try:
        model = ov.convert_model(str(onnx_path))
        for key, value in manifest.items():
            model.set_rt_info(_meta_text(value), ["defect_studio", key])
        ov.save_model(model, str(xml_path), compress_to_fp16=False)  # keep f32 weights
    except Exception as e:  # noqa: BLE001 - OpenVINO's own exception types
        raise ModelFileError(f"OpenVINO could not convert the network: {e}") from None
