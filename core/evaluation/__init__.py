"""Evaluation of trained runs: image/pixel metrics (metrics.py) and evaluate_run (evaluate.py).

``evaluate_run`` is imported lazily so that ``defect_studio.evaluation.metrics`` (used by
training and by the GUI's threshold slider) does not pull in torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate_run", "image_metrics", "pixel_metrics", "confusion_at", "ThresholdSweep"]


def _evaluate_any(project_root: Any, run_id: str, split: str = "test", **kwargs: Any) -> dict:
    """evaluate_run for a run of any model kind: the ``evaluate`` entry of the run's kind
    (defect_studio.kinds), ``(project_root, run_id, split="test", *, device="auto",
    batch_size=8, progress=None) -> dict`` with at least the keys of
    defect_studio.evaluation.evaluate.evaluate_run ("ap_sklearn", "auc", ...)."""
    from pathlib import Path

    from defect_studio.kinds import kind_of_run

    kind = kind_of_run(Path(project_root) / "runs" / str(run_id))
    return kind.load("evaluate")(project_root, run_id, split, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "evaluate_run":
        return _evaluate_any
    if name in ("image_metrics", "pixel_metrics", "confusion_at", "ThresholdSweep"):
        from defect_studio.evaluation import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'defect_studio.evaluation' has no attribute {name!r}")
