"""Deploying a trained run to the line: export packages and the runtime without torch.

- ``core.deploy.export`` (needs torch): ``export_model(run_dir, out_dir, fmt)`` writes a
  self-contained package (ONNX or OpenVINO IR + package.json) of a run.
- ``core.deploy.package`` and ``core.deploy.runtime`` (numpy, OpenCV, onnxruntime or
  openvino; never torch): ``load_package(dir)`` verifies a package and returns a
  ``PackagePredictor`` with the interface of core.inference.predictor.Predictor.
- ``core.deploy.watch``: the watch folder that scores images as they land.

Nothing here imports torch at module level; only the exporter does, when called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_package", "PackagePredictor", "export_model", "is_package"]


def __getattr__(name: str) -> Any:
    if name in ("load_package", "PackagePredictor"):
        from core.deploy import runtime

        return getattr(runtime, name)
    if name == "is_package":
        from core.deploy.package import is_package

        return is_package
    if name == "export_model":
        from core.deploy.export import export_model

        return export_model
    raise AttributeError(f"module 'core.deploy' has no attribute {name!r}")
