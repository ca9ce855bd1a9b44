"""Scoring images with a trained run and rendering heatmap overlays.

``load_predictor(run_dir)`` gives the predictor of a run of any model kind (through the
kind registry, defect_studio.kinds) or of an export package. Every kind's predictor
subclasses ``RunPredictor`` (defect_studio.inference.predictor) and returns ``Prediction``
(defect_studio.inference.prediction). ``Predictor`` is the predictor class of the default
kind (kept for older callers). These are imported lazily: ``overlay`` is used by the GUI
and must not pull in torch.
"""

from __future__ import annotations

from typing import Any

from defect_studio.inference.overlay import COLORMAPS, colorize, decision_overlay, overlay

__all__ = ["Predictor", "Prediction", "RunPredictor", "load_predictor", "overlay", "colorize",
           "decision_overlay", "COLORMAPS"]


def load_predictor(run_dir: Any, device: str = "auto", num_threads: int | None = None) -> Any:
    """The predictor of a run of any model kind (defect_studio.kinds), or of an export package
    folder (defect_studio.deploy, without torch): ``.predict(image)``,
    ``.predict_many(...)``, ``.threshold``, ``.run_id`` as
    defect_studio.inference.predictor.RunPredictor."""
    from defect_studio.deploy.package import is_package

    if is_package(run_dir):  # an export package: the torch-free runtime (defect_studio.deploy)
        from defect_studio.deploy.runtime import load_package

        return load_package(run_dir, num_threads=num_threads)
    from defect_studio.kinds import kind_of_run

    return kind_of_run(run_dir).load("predictor")(run_dir, device=device, num_threads=num_threads)


def __getattr__(name: str) -> Any:
    if name in ("Prediction", "RunPredictor"):
        from defect_studio.inference import predictor

        return getattr(predictor, name)
    if name == "Predictor":
        from defect_studio.kinds import default_model, kind_of_model

        return kind_of_model(default_model()).load("predictor")
    raise AttributeError(f"module 'defect_studio.inference' has no attribute {name!r}")
