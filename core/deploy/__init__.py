"""Deploying a trained run to the line: export packages and the runtime without torch.

- ``defect_studio.deploy.export`` (needs torch): ``export_model(run_dir, out_dir, fmt)`` writes a
  self-contained package (ONNX or OpenVINO IR + package.json) of a run.
- ``defect_studio.deploy.package`` and ``defect_studio.deploy.runtime`` (numpy, OpenCV,
  onnxruntime or openvino; never torch): ``load_package(dir)`` verifies a package and returns a
  ``PackagePredictor`` with the interface of defect_studio.inference.predictor.RunPredictor.
- ``defect_studio.deploy.watch``: the watch folder that scores images as they land.

Nothing here imports torch at module level; only the exporter does, when called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_package", "PackagePredictor", "export_model", "is_package"]


def __getattr__(name: str) -> Any:
    if name in ("load_package", "PackagePredictor"):
        from defect_studio.deploy import runtime

        return getattr(runtime, name)
    if name == "is_package":
        from defect_studio.deploy.package import is_package

        return is_package
    if name == "export_model":
        from defect_studio.deploy.export import export_model

        return export_model
    raise AttributeError(f"module 'defect_studio.deploy' has no attribute {name!r}")
