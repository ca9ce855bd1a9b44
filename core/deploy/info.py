"""`defect-studio model-info --model PACKAGE`: what an export package holds and whether it
runs here, without torch (the line runtime's model-info; a model variant's size figures
are the segdec kind's model-info, in the full install).
"""

from __future__ import annotations

import argparse
import json

from defect_studio.errors import UserError


def package_summary(folder: str) -> dict:
    """The verified package's manifest fields a line integrator checks, and the runtime that
    loads it here (PackageError, one line, when it cannot: e.g. OpenVINO not installed)."""
    from defect_studio.deploy.package import is_package
    from defect_studio.deploy.runtime import load_package

    if not is_package(folder):
        raise UserError(f"{folder} is not an export package (no package.json); make one with "
                        "defect-studio export-model")
    # verifies every file's sha256 and loads the network: it runs here
    predictor = load_package(folder, num_threads=1)
    info = predictor.info
    pre = info.preprocessing
    size = sum(f.stat().st_size for f in info.path.iterdir() if f.is_file())
    return {
        "package": str(info.path),
        "run_id": info.run_id,
        "kind": info.kind,
        "model": info.model,
        "format": info.format,
        "backend": predictor.backend,
        "precision": predictor.inference_precision,
        "input": {"width": pre.input_size[0], "height": pre.input_size[1],
                  "channels": pre.channels, "resize": pre.resize},
        "threshold": info.threshold,
        "threshold_source": info.threshold_source,
        "box_types": list(info.box_types),
        "tiling": info.manifest.get("tiling"),
        "size_bytes": size,
        "int8_recheck": _recheck_info(predictor),
        "quantization": info.manifest.get("quantization"),
        "exported": info.manifest.get("exported"),
        "exported_by": info.manifest.get("package_version"),  # Defect Studio's version
    }


def tiling_text(tiling: object) -> str:
    """One line on how the package covers a part ("" for a package without the field)."""
    if not isinstance(tiling, dict):
        return ""
    n, tile = tiling.get("tiles"), tiling.get("tile")
    if isinstance(n, int) and n > 1 and isinstance(tile, list) and len(tile) == 2:
        stride = tiling.get("stride")
        st = (f", stride {stride[0]}x{stride[1]}" if isinstance(stride, list)
              and len(stride) == 2 else "")
        return (f"{n} tiles of {tile[0]}x{tile[1]}{st} in the graph (trained on crops); "
                "score = max over tiles, heatmap = per-cell max")
    crops = tiling.get("trained_on_crops")
    extra = (f" (trained on {crops[0]}x{crops[1]} crops)" if isinstance(crops, list)
             and len(crops) == 2 else "")
    return "whole image in one pass" + extra


def quantization_text(q: object) -> str:
    """One line on how an INT8 package was quantized ("" for one without the field)."""
    if not isinstance(q, dict):
        return ""
    cal = q.get("calibration") if isinstance(q.get("calibration"), dict) else {}
    n = cal.get("images")
    parts = [f"NNCF {q['nncf_version']}" if isinstance(q.get("nncf_version"), str) else "NNCF",
             f"calibrated on {n} training image(s)" if isinstance(n, int) else ""]
    kept = []
    if q.get("input_layers_f32") is True:
        kept.append("the input layer")
    types = q.get("kept_f32_types")
    if q.get("norm_inputs_f32") is True and isinstance(types, list) and types:
        kept.append("the inputs of " + "/".join(str(t) for t in types))
    if kept:
        parts.append("float32 kept: " + ", ".join(kept))
    return "; ".join(p for p in parts if p)


def _recheck_info(predictor: object) -> dict | None:
    """An INT8 package's float32 re-check: its band and calibration, or why it has none."""
    if getattr(predictor, "inference_precision", None) != "int8":
        return None
    recheck = predictor.info.recheck
    if recheck is None:
        return {"band_logit": None, "note": predictor.recheck_note}
    return {"band_logit": recheck["band_logit"], "model": recheck.get("model"),
            "rule": recheck.get("rule"), "calibration": recheck.get("calibration")}


def _num(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "?"


def cmd_package_info(args: argparse.Namespace) -> int:
    """Print the summary of the package folder --model (table or --json)."""
    import os

    folder = getattr(args, "model", None)
    if not folder or not os.path.isdir(folder):
        raise UserError(f"model-info --model takes an export package folder here (no folder "
                        f"{folder!r}); the figures of a model variant need the full install")
    s = package_summary(folder)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    i = s["input"]
    rows = [
        ("package", s["package"]),
        ("run", s["run_id"]),
        ("model", f"{s['model'] or '?'} (kind {s['kind']})"),
        ("format", f"{s['format']}, runs here with {s['backend']} ({s['precision']})"),
        ("input", f"{i['width']}x{i['height']}x{i['channels']} ({i['resize']})"),
        ("threshold", f"{s['threshold']:.4f} ({s['threshold_source']})"),
        ("size", f"{s['size_bytes'] / 1e6:.1f} MB"),
    ]
    r = s["int8_recheck"]
    how = quantization_text(s["quantization"]) if s["precision"] == "int8" else ""
    if how:
        rows.append(("int8", how))
    if r is not None:
        cal = r.get("calibration") if isinstance(r.get("calibration"), dict) else {}
        rows.append(("int8 re-check", (
            f"float32 ({r['model']}) re-scores INT8 scores within {r['band_logit']:.3f} "
            f"logit of the threshold (calibrated on {cal.get('images', '?')} image(s): "
            f"|logit diff| up to {_num(cal.get('abs_logit_diff_max_reaching_or_nearest'))} "
            f"near the threshold, {_num(cal.get('abs_logit_diff_max'))} overall)")
            if r["band_logit"] is not None else r["note"]))
    if s["box_types"]:
        rows.append(("defect types", ", ".join(s["box_types"])))
    scoring = tiling_text(s["tiling"])
    if scoring:
        rows.append(("scoring", scoring))
    if s["exported"]:
        by = f" by Defect Studio {s['exported_by']}" if s["exported_by"] else ""
        rows.append(("exported", f"{s['exported']}{by}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
