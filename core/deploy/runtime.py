"""Scoring images with an export package: ONNX Runtime or OpenVINO, never torch.

``load_package(dir)`` verifies the package (defect_studio.deploy.package) and returns a
``PackagePredictor`` with the interface of defect_studio.kinds.segdec.predictor.Predictor
(``predict``, ``predict_many``, ``threshold``, ``run_id``), so the predict command,
the review page and the watch folder use either one. Preprocessing and the heatmap
mapping are defect_studio.preprocess, the code training used.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from defect_studio.deploy.package import (
    INPUT_NAME, OPENVINO_CONFIG, OUTPUT_NAMES, PackageError, PackageInfo, read_package,
)
from defect_studio.errors import UserError
from defect_studio.inference.prediction import BatchScorer, Prediction, check_image_array, check_threshold
from defect_studio.preprocess import heatmap_to_image, preprocess_array

DEFAULT_CPU_THREADS = 4


class _OnnxBackend:
    name = "onnxruntime"

    def __init__(self, info: PackageInfo, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise PackageError("onnxruntime is not installed: pip install onnxruntime "
                               "(or use an OpenVINO package)") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(info.model_file), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own unrelated types
            raise PackageError(f"ONNX Runtime cannot load {info.model_file}: {_first(e)}") from None
        names = {i.name for i in self.session.get_inputs()}
        outs = {o.name for o in self.session.get_outputs()}
        if INPUT_NAME not in names or not set(OUTPUT_NAMES) <= outs:
            raise PackageError(f"{info.model_file} has inputs {sorted(names)} and outputs "
                               f"{sorted(outs)}, not '{INPUT_NAME}' -> {OUTPUT_NAMES}")
        self.precision = "f32"

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score, heat = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        return score, heat


class _OpenVinoBackend:
    name = "openvino"

    def __init__(self, info: PackageInfo, threads: int) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise PackageError("OpenVINO is not installed: pip install openvino "
                               "(or use an ONNX package)") from None
        core = ov.Core()
        config = dict(OPENVINO_CONFIG)
        config.update(info.manifest.get("runtime", {}).get("openvino", {}) or {})
        config["INFERENCE_PRECISION_HINT"] = "f32"  # whatever the file says: fp32 thresholds
        config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.model = core.compile_model(core.read_model(str(info.model_file)), "CPU", config)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError and friends
            raise PackageError(f"OpenVINO cannot load {info.model_file}: {_first(e)}") from None
        precision = self.model.get_property("INFERENCE_PRECISION_HINT")
        if precision != ov.Type.f32:
            raise PackageError(f"OpenVINO runs {info.model_file} in {precision}, not f32; "
                               "the threshold was calibrated in f32")
        self.precision = "f32"
        outs = {o.get_any_name(): o for o in self.model.outputs}
        if not set(OUTPUT_NAMES) <= set(outs):
            raise PackageError(f"{info.model_file} has outputs {sorted(outs)}, not {OUTPUT_NAMES}")
        self._outs = [outs[n] for n in OUTPUT_NAMES]
        self.request = self.model.create_infer_request()

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = self.request.infer({INPUT_NAME: x})
        return np.array(result[self._outs[0]]), np.array(result[self._outs[1]])


_BACKENDS = {"onnx": _OnnxBackend, "openvino": _OpenVinoBackend}


def _first(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


class PackagePredictor(BatchScorer):
    """An export package ready to score images (same interface as Predictor).

    Not thread-safe: one predictor per worker thread.
    """

    def __init__(self, package_dir: str | os.PathLike, num_threads: int | None = None,
                 device: str = "cpu") -> None:
        if device not in ("auto", "cpu"):
            raise UserError(f"an export package runs on the CPU, not on {device!r}")
        self.info = read_package(package_dir)
        self.package_dir = self.info.path
        self.config = self.info.preprocessing
        self.manifest = self.info.manifest
        threads = num_threads or min(DEFAULT_CPU_THREADS, os.cpu_count() or 1)
        self._backend = _BACKENDS[self.info.format](self.info, max(1, int(threads)))
        self.backend = self._backend.name
        self.inference_precision = self._backend.precision
        self.threshold_source = self.info.threshold_source
        self._threshold = self.info.threshold

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
        scores, heat = self._backend(np.ascontiguousarray(np.stack(batch), dtype=np.float32))
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        out = []
        for i, shape in enumerate(shapes):
            h = np.clip(heatmap_to_image(heat[i], self.config, shape), 0.0, 1.0)
            score = float(scores[i])
            out.append(Prediction(score=score, is_ng=score >= self._threshold, heatmap=h))
        return out


def load_package(package_dir: str | os.PathLike, num_threads: int | None = None
                 ) -> PackagePredictor:
    """The verified package in ``package_dir`` ready to score (PackageError if unusable)."""
    return PackagePredictor(Path(package_dir), num_threads=num_threads)
