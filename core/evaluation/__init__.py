"""Evaluation of trained runs: image/pixel metrics (metrics.py) and evaluate_run (evaluate.py).

``evaluate_run`` is imported lazily so that ``core.evaluation.metrics`` (used by
training and by the GUI's threshold slider) does not pull in torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate_run", "image_metrics", "pixel_metrics", "confusion_at", "ThresholdSweep"]


def __getattr__(name: str) -> Any:
    if name == "evaluate_run":
        from core.evaluation.evaluate import evaluate_run

        return evaluate_run
    if name in ("image_metrics", "pixel_metrics", "confusion_at", "ThresholdSweep"):
        from core.evaluation import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'core.evaluation' has no attribute {name!r}")
