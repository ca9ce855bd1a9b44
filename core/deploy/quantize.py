"""INT8 post-training quantization of an exported network with NNCF (``export-model --int8``).

``calibration_images(run_dir, preprocessing, count)`` reads the run's training images from
its project (opened read-only) and preprocesses them exactly as the runtime does
(defect_studio.preprocess.preprocess_array); ``quantize(onnx_path, fmt, images, out)``
quantizes the f32 ONNX graph with ``nncf.quantize`` (min-max statistics over the images,
the "mixed" preset: asymmetric activations, which kept the scores of a trained MFFPA run
4x closer to f32 than the symmetric "performance" preset and ran as fast
(benchmarks/int8_variants.py, docs/benchmarks.md); fast bias correction; the layers that
read the input image kept in float32, which removed most of the flipped decisions; the inputs of
normalization layers (instance and layer norm) kept in float32, which removed most of the rest)
and writes an
OpenVINO IR (format "openvino": INT8 weights and activations, run by the CPU plugin's VNNI
kernels) or an ONNX graph with
QuantizeLinear/DequantizeLinear pairs (format "onnx"). The returned dict goes into
package.json as ``quantization``. Needs nncf (the ``int8`` extra); the runtime does not.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from defect_studio.deploy.package import INPUT_NAME
from defect_studio.errors import ModelFileError, UserError

DEFAULT_CALIBRATION_IMAGES = 300  # NNCF's default subset size
MAX_CALIBRATION_IMAGES = 10_000
CALIBRATION_LABELS = ("ok", "defective")


class QuantizeError(UserError):
    """A run or a setting that cannot give an INT8 package."""


def check_calibration(run_dir: Path, count: int) -> Path:
    """The project of the run (ready to calibrate on ``count`` images), before anything is
    exported; QuantizeError naming what is wrong."""
    from defect_studio.project.store import is_project

    if isinstance(count, bool) or not isinstance(count, int) or \
            not 1 <= count <= MAX_CALIBRATION_IMAGES:
        raise QuantizeError(f"--calibration-images must be a whole number from 1 to "
                            f"{MAX_CALIBRATION_IMAGES}, got {count!r}")
    runs = Path(run_dir).resolve().parent
    if runs.name != "runs" or not is_project(runs.parent):
        raise QuantizeError(f"--int8 calibrates on the run's training images, but the run "
                            f"{run_dir} is not inside its project (PROJECT/runs/RUN)")
    _nncf()
    return runs.parent


def calibration_images(run_dir: Path, preprocessing: Any, count: int
                       ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Up to ``count`` of the run's training images (split "train", labelled OK or
    defective, evenly spaced by image id), preprocessed as the runtime does, and what
    was used (for package.json). Unreadable files are skipped and counted."""
    from defect_studio.preprocess import preprocess_array
    from defect_studio.project import Project

    root = check_calibration(run_dir, count)
    with Project.open(root, readonly=True) as project:
        recs = sorted((r for r in project.images(split="train")
                       if r.label in CALIBRATION_LABELS), key=lambda r: r.id)
        if not recs:
            raise QuantizeError(f"the project {root} has no labelled training images "
                                "to calibrate INT8 on")
        step = len(recs) / min(count, len(recs))
        chosen = [recs[int(i * step)] for i in range(min(count, len(recs)))]
        images, unreadable = [], 0
        for rec in chosen:
            try:
                img = project.read_image(rec)
            except (UserError, OSError):
                unreadable += 1
                continue
            images.append(np.ascontiguousarray(preprocess_array(img, preprocessing),
                                               dtype=np.float32))
    if not images:
        raise QuantizeError(f"none of the {len(chosen)} training images chosen for the INT8 "
                            "calibration could be read")
    used = {"split": "train", "labels": list(CALIBRATION_LABELS),
            "images": len(images), "train_images": len(recs), "unreadable": unreadable,
            "selection": "evenly spaced by image id",
            "preprocess": "defect_studio.preprocess.preprocess_array (as the runtime)"}
    return images, used


def _nncf() -> Any:
    # NNCF imports torch, whose extension loader warns about CUDA on a CPU machine
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        import nncf
    except ImportError:
        raise QuantizeError("--int8 needs NNCF: pip install nncf (the 'int8' extra)") from None
    return nncf


def method(fmt: str) -> dict[str, Any]:
    """How ``quantize`` quantizes (for package.json's ``quantization``)."""
    nncf = _nncf()
    return {"precision": "int8", "tool": "nncf", "nncf_version": nncf.__version__,
            "method": "nncf.quantize post-training: min-max statistics, preset mixed "
                      "(symmetric weights, asymmetric activations), fast bias correction; "
                      "the layers that read the input image and the inputs of normalization "
                      "layers stay float32",
            "input_layers_f32": True,
            "norm_inputs_f32": True,
            "graph": "OpenVINO IR with INT8 FakeQuantize" if fmt == "openvino" else
                     "ONNX QuantizeLinear/DequantizeLinear (QDQ)"}


def quantize(onnx_path: Path, fmt: str, images: list[np.ndarray], out_path: Path,
             manifest: dict[str, Any], keep_modules: tuple[str, ...] = (),
             options: dict[str, Any] | None = None, input_layers_f32: bool = True,
             norm_inputs_f32: bool = True) -> None:
    """Quantize the f32 graph in ``onnx_path`` on ``images`` ([C, H, W] float32 each) and
    write it to ``out_path`` (model.xml for "openvino", with the ``manifest`` fields as
    rt_info under "defect_studio"; model.onnx for "onnx", stamped by the caller).
    ``keep_modules``: names of the network's submodules (e.g. "dec_fc") whose layers stay in f32
    (benchmarks/int8_variants.py compares such choices; ``export-model --int8`` keeps none: the
    decision head in f32 did not help, docs/benchmarks.md). ``options``: nncf.quantize arguments
    that replace the defaults (compared there too). ``input_layers_f32``: the weighted layers
    that read the network's input (MFFPA's stem convolution) stay f32: in INT8 they were the
    largest source of flipped decisions (docs/benchmarks.md, "INT8: which layers flip the
    decisions"). ``norm_inputs_f32``: the inputs of normalization layers (instance and layer
    norm: OpenVINO's MVN) are not quantized. A normalization divides by its input's own
    spread, so one INT8 step of a range fixed on the calibration images grows, after it, by
    that range over the image's spread: on parts whose activations vary little, a few
    images moved by up to 10 logits (docs/benchmarks.md, "INT8: the normalization
    inputs"). The layers left in f32 go into ``manifest["quantization"]["kept_f32"]``, the
    op types into ``kept_f32_types``."""
    import json

    nncf = _nncf()
    nncf.set_log_level(logging.ERROR)
    ignored: list[str] = []
    keep = sorted(set(module_layers(onnx_path, keep_modules))
                  | set(input_layers(onnx_path) if input_layers_f32 else ()))
    if fmt == "openvino":
        import openvino as ov

        model: Any = ov.convert_model(str(onnx_path))
        dataset = nncf.Dataset(images, lambda x: x[None])
        ignored = sorted(set(feeding_gather(model))
                         | set(openvino_names(model, keep)))
        present = {op.get_type_name() for op in model.get_ops()}
    else:
        import onnx

        model = onnx.load(str(onnx_path))
        dataset = nncf.Dataset(images, lambda x: {INPUT_NAME: x[None]})
        ignored = keep
        present = {node.op_type for node in model.graph.node}
    # NNCF refuses an ignored type the graph lacks (the anomaly model has no normalization)
    types = sorted(set(NORM_TYPES[fmt]) & present) if norm_inputs_f32 else []
    manifest["quantization"]["kept_f32"] = ignored
    manifest["quantization"]["kept_f32_modules"] = list(keep_modules)
    manifest["quantization"]["kept_f32_types"] = types
    try:
        # NNCF draws progress bars on stdout: keep stdout for the command's own output
        with contextlib.redirect_stdout(sys.stderr):
            settings = dict(subset_size=len(images),
                            preset=nncf.QuantizationPreset.MIXED,
                            fast_bias_correction=True)
            settings.update(options or {})
            qmodel = nncf.quantize(model, dataset, **settings,
                                   ignored_scope=nncf.IgnoredScope(names=ignored,
                                                                   types=types))
    except Exception as e:  # noqa: BLE001 - NNCF and its backends raise many types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelFileError(f"NNCF could not quantize the network: {first}") from None
    if fmt == "openvino":
        import openvino as ov

        for key, value in manifest.items():
            qmodel.set_rt_info(value if isinstance(value, str) else json.dumps(value),
                               ["defect_studio", key])
        ov.save_model(qmodel, str(out_path), compress_to_fp16=False)
    else:
        import onnx

        onnx.save(qmodel, str(out_path))


# normalization op types per graph format: their inputs are not quantized (quantize's
# norm_inputs_f32); OpenVINO converts ONNX's InstanceNormalization and LayerNormalization to MVN
NORM_TYPES = {"openvino": ("MVN",),
              "onnx": ("InstanceNormalization", "LayerNormalization", "GroupNormalization")}
_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# ops that move or select values without arithmetic: a tiled graph (segdec/tiles.py)
# slices the image into tiles and concatenates them before the first convolution
_LAYOUT = ("Pad", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Cast",
           "Slice", "Concat", "Split", "Flatten")


def input_layers(onnx_path: Path) -> list[str]:
    """Names of the ONNX graph's weighted nodes (Conv, Gemm, MatMul) that read one of the
    graph's inputs, directly or through layout-only ops (Pad, Reshape, Transpose, and the
    Slice/Concat of a tiled graph ...)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    init = {t.name for t in graph.initializer}
    reach = {i.name for i in graph.input if i.name not in init}
    names = []
    for node in graph.node:  # ONNX nodes are in topological order
        first = node.input[0] if node.input else ""
        if first not in reach:
            continue
        if node.op_type in _WEIGHTED:
            names.append(node.name)
        elif node.op_type in _LAYOUT:
            reach.update(node.output)
    return sorted(names)


def module_layers(onnx_path: Path, modules: tuple[str, ...]) -> list[str]:
    """Names of the ONNX graph's weighted nodes (Conv, Gemm, MatMul) that belong to one of
    the network's submodules ``modules`` (e.g. "dec_body"), found from the module path the
    torch exporter writes into each node's "namespace" metadata."""
    if not modules:
        return []
    import re

    import onnx

    pattern = re.compile(r"(^|\.)(" + "|".join(re.escape(m) for m in modules) + r")(\.|$)")
    names = []
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        if node.op_type not in _WEIGHTED:
            continue
        meta = {p.key: p.value for p in node.metadata_props}
        paths = [part.split(":")[0].strip() for part in meta.get("namespace", "").split("/")]
        if any(pattern.search(path) for path in paths if path):
            names.append(node.name)
    return sorted(names)


def openvino_names(model: Any, onnx_names: list[str]) -> list[str]:
    """The OpenVINO layers converted from the ONNX nodes ``onnx_names`` (OpenVINO keeps the
    node's name, or adds "/WithoutBiases" when it splits off the bias)."""
    wanted = set(onnx_names)
    found = []
    for op in model.get_ops():
        name = op.get_friendly_name()
        if name in wanted or name.split("/")[0] in wanted:
            if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul"):
                found.append(name)
    return sorted(found)


_THROUGH = {"Pad", "Reshape", "Transpose", "Gather", "Squeeze", "Unsqueeze"}


def feeding_gather(model: Any) -> list[str]:
    """Names of the layers (convolutions, matmuls) whose output reaches a Gather through
    layout-only ops: kept in f32. OpenVINO 2026.4's low-precision GatherTransformation
    fails to compile a per-channel INT8 dequantization moved into a Gather that is not on
    the channel axis (MFFPA's unfold: "Argument shapes are inconsistent")."""
    names: set[str] = set()
    for op in model.get_ops():
        if op.get_type_name() != "Gather":
            continue
        stack = [op.input_value(0).get_node()]
        while stack:
            node = stack.pop()
            kind = node.get_type_name()
            if kind in ("Convolution", "GroupConvolution", "MatMul"):
                names.add(node.get_friendly_name())
            elif kind in _THROUGH:
                stack.append(node.input_value(0).get_node())
    return sorted(names)
