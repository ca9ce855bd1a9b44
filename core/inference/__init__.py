"""Scoring images with a trained run (Predictor) and rendering heatmap overlays.

``Predictor`` and ``Prediction`` are imported lazily: ``overlay`` is used by the GUI
and must not pull in torch.
"""

from __future__ import annotations

from typing import Any

from core.inference.overlay import COLORMAPS, colorize, decision_overlay, overlay

__all__ = ["Predictor", "Prediction", "overlay", "colorize", "decision_overlay", "COLORMAPS"]


def __getattr__(name: str) -> Any:
    if name in ("Predictor", "Prediction"):
        from core.inference import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'core.inference' has no attribute {name!r}")
