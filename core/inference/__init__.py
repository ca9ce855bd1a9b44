"""Scoring images with a trained run (Predictor) and rendering heatmap overlays.

``Predictor`` and ``Prediction`` are imported lazily: ``overlay`` is used by the GUI
and must not pull in torch.
"""

from __future__ import annotations

from typing import Any

from defect_studio.inference.overlay import COLORMAPS, colorize, decision_overlay, overlay

__all__ = ["Predictor", "Prediction", "load_predictor", "overlay", "colorize", "decision_overlay", "COLORMAPS"]


def load_predictor(run_dir: Any, device: str = "auto", num_threads: int | None = None) -> Any:
    """The predictor of a run of any model kind (defect_studio.kinds), or of an export package
    folder (defect_studio.deploy, without torch): ``.predict(image)``,
    ``.predict_many(...)``, ``.threshold``, ``.run_id`` as defect_studio.kinds.segdec.predictor.Predictor."""
    from defect_studio.deploy.package import is_package

    if is_package(run_dir):  # an export package: the torch-free runtime (defect_studio.deploy)
        from defect_studio.deploy.runtime import load_package

        return load_package(run_dir, num_threads=num_threads)
    from defect_studio.kinds import kind_of_run

    return kind_of_run(run_dir).load("predictor")(run_dir, device=device, num_threads=num_threads)


def __getattr__(name: str) -> Any:
    if name in ("Predictor", "Prediction"):
        from defect_studio.kinds.segdec import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'defect_studio.inference' has no attribute {name!r}")
