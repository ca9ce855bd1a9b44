"""Scoring images with an export package: ONNX Runtime or OpenVINO, never torch.

``load_package(dir)`` verifies the package (defect_studio.deploy.package) and returns a
``PackagePredictor`` with the interface of the kind's torch predictor (``predict``,
``predict_many``, ``threshold``, ``run_id``), so the predict command, the review page
and the watch folder use either one. Preprocessing and the heatmap mapping are
defect_studio.preprocess, the code training used. Every kind of
defect_studio.deploy.package.runtime_kinds() runs here: a kind without boxes (segdec,
anomaly) gives a Prediction; a kind with boxes (the detector) gives a DetectionPrediction
whose boxes are scaled to the image and whose heatmap is drawn from them, as its torch
predictor does.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from defect_studio.deploy.package import (
    INPUT_NAME,
    OPENVINO_CONFIG,
    OUTPUT_NAMES,
    PackageError,
    PackageInfo,
    check_graph_input,
    check_graph_manifest,
    read_package,
)
from defect_studio.errors import UserError
from defect_studio.inference.prediction import (
    BatchScorer,
    DetectedBox,
    DetectionPrediction,
    Prediction,
    boxes_heatmap,
    check_image_array,
    check_threshold,
    predictions_from_maps,
)
from defect_studio.preprocess import preprocess_array

DEFAULT_CPU_THREADS = 4
DEVICES = ("auto", "cpu", "cuda", "gpu")
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
# compiled OpenVINO models kept, one per batch size (each compiled for a static shape)
OPENVINO_SHAPES_KEPT = 2


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r} for an export package; choose one of: "
                        f"{', '.join(DEVICES)}")
    return device


def onnx_providers(device: str, available: list[str]) -> tuple[list[str], str | None]:
    """ONNX Runtime execution providers for ``device`` given the ``available`` ones, and the
    one-line note to show when a GPU was asked for and is not there (CPU fallback)."""
    if device == "cpu":
        return [CPU_PROVIDER], None
    if CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER], None
    if device == "auto":
        return [CPU_PROVIDER], None
    return [CPU_PROVIDER], (f"--device {device}: this ONNX Runtime has no CUDA provider "
                            "(install onnxruntime-gpu and a CUDA driver); scoring on the CPU")


def openvino_device(device: str, available: list[str]) -> tuple[str, str | None]:
    """The OpenVINO device for ``device`` given ``Core().available_devices``, and the
    one-line note when a GPU was asked for and is not there (CPU fallback). ``cuda`` means
    the GPU too: OpenVINO's GPU plugin runs on Intel GPUs."""
    if device == "cpu":
        return "CPU", None
    if any(d == "GPU" or d.startswith("GPU.") for d in available):
        return "GPU", None
    if device == "auto":
        return "CPU", None
    return "CPU", (f"--device {device}: OpenVINO finds no GPU here (it has: "
                   f"{', '.join(available) or 'none'}); scoring on the CPU")


class _OnnxBackend:
    name = "onnxruntime"

    def __init__(self, info: PackageInfo, threads: int, device: str = "cpu") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise PackageError("onnxruntime is not installed: pip install onnxruntime "
                               "(or use an OpenVINO package)") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        _quiet_threads(opts)
        providers, self.note = onnx_providers(device, list(ort.get_available_providers()))
        try:
            self.session = ort.InferenceSession(str(info.model_file), sess_options=opts,
                                                providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated types
            if providers[0] == CPU_PROVIDER:
                raise PackageError(f"ONNX Runtime cannot load {info.model_file}: "
                                   f"{_first(e)}") from None
            self.session = None  # the GPU session failed: the CPU below, with a note
            self.note = f"--device {device}: CUDA failed ({_first(e)}); scoring on the CPU"
        if self.session is None or self.session.get_providers()[0] != providers[0]:
            if self.session is not None:  # ONNX Runtime fell back by itself (no CUDA libs)
                self.note = (f"--device {device}: ONNX Runtime could not start CUDA (its CUDA "
                             "libraries or driver are missing); scoring on the CPU")
            try:
                self.session = ort.InferenceSession(str(info.model_file), sess_options=opts,
                                                    providers=[CPU_PROVIDER])
            except Exception as e:  # noqa: BLE001
                raise PackageError(f"ONNX Runtime cannot load {info.model_file}: "
                                   f"{_first(e)}") from None
        self.device = "CUDA" if self.session.get_providers()[0] == CUDA_PROVIDER else "CPU"
        inputs = {i.name: i for i in self.session.get_inputs()}
        outs = {o.name for o in self.session.get_outputs()}
        self.output_names = list(info.output_names)
        if INPUT_NAME not in inputs or not set(self.output_names) <= outs:
            raise PackageError(f"{info.model_file} has inputs {sorted(inputs)} and outputs "
                               f"{sorted(outs)}, not '{INPUT_NAME}' -> {self.output_names}")
        batch = inputs[INPUT_NAME].shape[0] if inputs[INPUT_NAME].shape else None
        self.max_batch = batch if isinstance(batch, int) and batch > 0 else None
        self.precision = "f32"

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {INPUT_NAME: x})


class _OpenVinoBackend:
    """An OpenVINO model compiled for a static input shape per batch size.

    The CPU plugin (2026.4) computes parts of a Gather on the last axis wrongly when its
    input shape is dynamic, the output has more than about 2**25 elements and it runs on
    more than one thread: MFFPA's unfold at 640x232 in batches of 7 or more moved scores
    by up to 0.017. With static shapes the same graph matches ONNX Runtime (docs/
    benchmarks.md, "OpenVINO parity"), so every batch size gets its own compiled model
    (the last OPENVINO_SHAPES_KEPT kept)."""

    name = "openvino"

    def __init__(self, info: PackageInfo, threads: int, device: str = "cpu") -> None:
        try:
            import openvino as ov
        except ImportError:
            raise PackageError("OpenVINO is not installed: pip install openvino "
                               "(or use an ONNX package)") from None
        self._ov = ov
        self._core = ov.Core()
        self._file = info.model_file
        config = dict(OPENVINO_CONFIG)
        config.update(info.manifest.get("runtime", {}).get("openvino", {}) or {})
        config["INFERENCE_PRECISION_HINT"] = "f32"  # whatever the file says: fp32 thresholds
        self._device, self.note = openvino_device(device, list(self._core.available_devices))
        if self._device == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        self._config = config
        try:
            self._model = self._core.read_model(str(info.model_file))
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError and friends
            raise PackageError(f"OpenVINO cannot load {info.model_file}: {_first(e)}") from None
        self._names = list(info.output_names)
        outs = {n for o in self._model.outputs for n in o.get_names()}
        if not set(self._names) <= outs:
            raise PackageError(f"{info.model_file} has outputs {sorted(outs)}, "
                               f"not {self._names}")
        shape = self._model.inputs[0].get_partial_shape()
        batch = shape[0]
        self.max_batch = batch.get_length() if batch.is_static else None
        if not shape[1:].is_static:
            raise PackageError(f"{info.model_file} has the input shape {shape}; only the batch "
                               "may be dynamic")
        self._compiled: dict[int, tuple] = {}
        self._compile(self.max_batch or 1)  # fail at load, not at the first image
        self.device = self._device
        self.precision = "f32"

    def _compile(self, n: int) -> tuple:
        if n in self._compiled:
            return self._compiled[n]
        ov = self._ov
        model = self._model.clone()
        if not model.inputs[0].get_partial_shape().is_static:
            shape = model.inputs[0].get_partial_shape()
            model.reshape({INPUT_NAME: ov.PartialShape([n, *shape[1:]])})
        try:
            compiled = self._core.compile_model(model, self._device, self._config)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError and friends
            raise PackageError(f"OpenVINO cannot load {self._file} on {self._device}: "
                               f"{_first(e)}") from None
        precision = compiled.get_property("INFERENCE_PRECISION_HINT")
        if precision != ov.Type.f32:
            raise PackageError(f"OpenVINO runs {self._file} in {precision}, not f32; "
                               "the threshold was calibrated in f32")
        outs = {name: o for o in compiled.outputs for name in o.get_names()}
        entry = (compiled.create_infer_request(), [outs[name] for name in self._names])
        while len(self._compiled) >= OPENVINO_SHAPES_KEPT:
            self._compiled.pop(next(iter(self._compiled)))
        self._compiled[n] = entry
        return entry

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        request, outs = self._compile(int(x.shape[0]))
        result = request.infer({INPUT_NAME: x})
        return [np.array(result[o]) for o in outs]


_BACKENDS = {"onnx": _OnnxBackend, "openvino": _OpenVinoBackend}


def check_tiling(manifest: dict, where: object) -> None:
    """How the package covers a part (issue 18): this runtime runs one pass over the whole
    image at the input size (also for a run trained on crops); a package without "tiling"
    predates it and means the same. Another mode is a PackageError, never a silent guess."""
    tiling = manifest.get("tiling")
    if tiling is None:
        return
    mode = tiling.get("mode") if isinstance(tiling, dict) else tiling
    if mode != "whole_image":
        raise PackageError(f"{where}: the package asks for tiling {mode!r}; this runtime "
                           "predicts whole images only (export it again with this version)")


def _quiet_threads(opts: object) -> None:
    """Idle ONNX Runtime threads sleep instead of spinning (defect_studio.threads): a line
    PC that also runs other programs slows in proportion, not several-fold."""
    from defect_studio.threads import quiet_onnx_options

    quiet_onnx_options(opts)


def _first(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


class PackagePredictor(BatchScorer):
    """An export package ready to score images (same interface as the kind's torch
    predictor; a detector package also has ``classes``, its defect type names, and gives
    DetectionPrediction).

    Not thread-safe: one predictor per worker thread.
    """

    def __init__(self, package_dir: str | os.PathLike, num_threads: int | None = None,
                 device: str = "cpu", int8_recheck: str | None = None) -> None:
        check_device(device)
        check_recheck_mode(int8_recheck)
        self.info = read_package(package_dir)
        self.package_dir = self.info.path
        self.config = self.info.preprocessing
        self.manifest = self.info.manifest
        check_tiling(self.manifest, self.package_dir)
        threads = num_threads or min(DEFAULT_CPU_THREADS, os.cpu_count() or 1)
        self._backend = _BACKENDS[self.info.format](self.info, max(1, int(threads)), device)
        _check_against_graph(self.info, self._backend)
        self.backend = self._backend.name
        self.device = self._backend.device  # where it runs: "CPU", "CUDA" or "GPU"
        self.device_note = self._backend.note  # the CPU fallback of a missing GPU, or None
        if self.device_note:
            from defect_studio.notices import tell

            tell(self.device_note)
        # "int8" for a package quantized by export-model --int8 (its non-quantized layers f32)
        self.inference_precision = ("int8" if self.manifest.get("precision") == "int8"
                                    else self._backend.precision)
        self.threshold_source = self.info.threshold_source
        self._threshold = self.info.threshold
        self.classes = list(self.info.box_types)
        # INT8 with its float32 re-check (defect_studio.deploy.recheck): the f32 network
        # re-scores the images whose INT8 score lies within the band around the threshold
        self.recheck_band: float | None = None
        self.recheck_note = _recheck_note(self.info, int8_recheck)
        self.recheck_counts = {"scored": 0, "rechecked": 0}
        self._f32 = None
        if self.info.recheck is not None and int8_recheck != "off":
            f32_info = SimpleNamespace(model_file=self.info.path / self.info.recheck["model"],
                                       manifest=self.manifest,
                                       output_names=self.info.output_names)
            self._f32 = _BACKENDS[self.info.format](f32_info, max(1, int(threads)), device)
            self.recheck_band = float(self.info.recheck["band_logit"])

    @property
    def threshold(self) -> float:
        """Scores at or above this are NG."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = check_threshold(value)

    @property
    def run_id(self) -> str:
        return self.info.run_id

    # -- scoring ---------------------------------------------------------------------
    def _prepare(self, image: np.ndarray) -> np.ndarray:
        return preprocess_array(check_image_array(image), self.config)

    def _run(self, batch: list[np.ndarray], shapes: list[tuple[int, int]]) -> list[Prediction]:
        # a box graph (and any graph of a fixed batch 1) takes one image a call
        step = 1 if self.info.outputs_boxes else (self._backend.max_batch or len(batch))
        out: list[Prediction] = []
        for i in range(0, len(batch), step):
            x = np.ascontiguousarray(np.stack(batch[i:i + step]), dtype=np.float32)
            outputs = _call(self._backend, x)
            if self._f32 is not None:
                outputs = self._recheck(x, outputs)
            if self.info.outputs_boxes:
                out.append(self._boxes(outputs, shapes[i]))
            else:
                out.extend(self._maps(outputs, shapes[i:i + step]))
        return out

    def _recheck(self, x: np.ndarray, outputs: list[np.ndarray]) -> list[np.ndarray]:
        """The INT8 ``outputs`` of the batch ``x`` with the images inside the band re-scored
        in float32 (score and heatmap), one image a call: the f32 network stays compiled
        for batch 1 whatever the share in the band."""
        from defect_studio.deploy.recheck import in_band

        scores = np.array(outputs[0], dtype=np.float32).reshape(-1)
        self.recheck_counts["scored"] += len(scores)
        idx = in_band(scores, self._threshold, self.recheck_band)
        if not len(idx):
            return outputs
        heat = np.array(outputs[1], dtype=np.float32)
        for i in idx:
            f32 = _call(self._f32, np.ascontiguousarray(x[i:i + 1]), " (float32 re-check)")
            scores[i] = np.asarray(f32[0], dtype=np.float32).reshape(-1)[0]
            heat[i] = np.asarray(f32[1], dtype=np.float32)[0]
        self.recheck_counts["rechecked"] += len(idx)
        return [scores, heat, *outputs[2:]]

    def _maps(self, outputs: list[np.ndarray], shapes: list[tuple[int, int]]) -> list[Prediction]:
        scores = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
        return predictions_from_maps(scores, outputs[1], self.config, shapes, self._threshold)

    def _boxes(self, outputs: list[np.ndarray], shape: tuple[int, int]) -> DetectionPrediction:
        """One image's boxes (input pixels -> image pixels), its score and box heatmap."""
        _, _, xyxy, box_scores, labels = outputs
        W, H = self.config.input_size
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4).copy()
        xyxy[:, 0::2] *= shape[1] / W
        xyxy[:, 1::2] *= shape[0] / H
        types = self.info.box_types
        boxes = tuple(DetectedBox(types[int(c)], float(x0), float(y0), float(x1 - x0),
                                  float(y1 - y0), float(s))
                      for (x0, y0, x1, y1), s, c in zip(xyxy, np.asarray(box_scores).reshape(-1),
                                                        np.asarray(labels).reshape(-1))
                      if 0 <= int(c) < len(types))
        boxes = tuple(sorted(boxes, key=lambda b: -b.score))
        score = boxes[0].score if boxes else 0.0
        return DetectionPrediction(score=score, is_ng=score >= self._threshold,
                                   heatmap=boxes_heatmap(list(boxes), shape), boxes=boxes)


def _call(backend: object, x: np.ndarray, what: str = "") -> list[np.ndarray]:
    """The backend's outputs for the batch ``x``; its own errors as one-line RuntimeErrors."""
    try:
        return backend(x)
    except (RuntimeError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - ONNX Runtime's errors (InvalidArgument
        # ...) are not RuntimeErrors: one failed part is a failed part, never a crash
        raise RuntimeError(f"{backend.name}{what}: {_first(e)}") from None


def check_recheck_mode(mode: str | None) -> str | None:
    """``--int8-recheck``: "on", "off" or None (what the package holds)."""
    from defect_studio.deploy.recheck import RECHECK_MODES

    if mode is not None and mode not in RECHECK_MODES:
        raise UserError(f"--int8-recheck must be one of: {', '.join(RECHECK_MODES)}; "
                        f"got {mode!r}")
    return mode


def _recheck_note(info: PackageInfo, mode: str | None) -> str | None:
    """Why an INT8 package runs without the float32 re-check (None when it runs with it,
    or the package is float32); PackageError when "on" was asked of a package without."""
    if info.manifest.get("precision") != "int8":
        if mode == "on":
            raise PackageError(f"--int8-recheck on: {info.path} is a float32 package "
                               "(nothing to re-check)")
        return None
    if info.recheck is None:
        if mode == "on":
            raise PackageError(f"--int8-recheck on: the INT8 package {info.path} holds no "
                               "float32 model (exported before the re-check, or with "
                               "--int8-recheck off); export it again")
        return "no re-check: the package holds no float32 model"
    if mode == "off":
        return "no re-check: turned off (--int8-recheck off)"
    return None


def _check_against_graph(info: PackageInfo, backend: object) -> None:
    """The package's preprocessing against its network's input (and, for ONNX, against the
    settings stamped into the network at export): PackageError before the first part."""
    session = getattr(backend, "session", None)
    if session is not None:  # ONNX Runtime
        inputs = {i.name: i for i in session.get_inputs()}
        check_graph_input(info, list(inputs[INPUT_NAME].shape or []))
        try:
            stamped = dict(session.get_modelmeta().custom_metadata_map)
        except Exception:  # noqa: BLE001 - a graph without metadata: nothing to compare
            stamped = {}
        check_graph_manifest(info, stamped)
        return
    model = getattr(backend, "_model", None)
    if model is not None:  # OpenVINO (the read model, before it is compiled per batch size)
        shape = model.inputs[0].get_partial_shape()
        if shape.rank.is_static:
            check_graph_input(info, [d.get_length() if d.is_static else None for d in shape])


def load_package(package_dir: str | os.PathLike, num_threads: int | None = None,
                 device: str = "cpu", int8_recheck: str | None = None) -> PackagePredictor:
    """The verified package in ``package_dir`` ready to score (PackageError if unusable).

    ``device``: "cpu", "cuda"/"gpu" (ONNX Runtime's CUDA provider, OpenVINO's GPU; the CPU
    with a one-line notice when there is none) or "auto" (the GPU when there is one).
    ``int8_recheck``: "off" scores an INT8 package with INT8 alone; "on" requires its float32
    re-check; None (default) re-checks when the package holds the float32 model."""
    return PackagePredictor(Path(package_dir), num_threads=num_threads, device=device,
                            int8_recheck=int8_recheck)


def graph_scores(model_file: Path, fmt: str, images: list[np.ndarray], threads: int = 2,
                 batch: int = 4) -> np.ndarray:
    """The "score" output of the network in ``model_file`` (a package's ``fmt``) for the
    preprocessed ``images`` ([C, H, W] float32 each), run as the runtime runs it (the INT8
    re-check band is calibrated on these, defect_studio.deploy.recheck)."""
    info = SimpleNamespace(model_file=Path(model_file), manifest={},
                           output_names=OUTPUT_NAMES)
    backend = _BACKENDS[fmt](info, threads)
    out = []
    for i in range(0, len(images), batch):
        x = np.ascontiguousarray(np.stack(images[i:i + batch]), dtype=np.float32)
        out.append(np.asarray(backend(x)[0], dtype=np.float64).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)
