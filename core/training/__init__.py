"""Mixed-supervision training of the segmentation + decision networks.

``train`` runs one training job (see core/training/loop.py); ``TrainConfig`` holds its
settings; ``load_run_model`` and ``preprocess_image`` give the predictor the trained
network and the exact preprocessing used in training.
"""

from __future__ import annotations

from typing import Any

from core.training.config import TrainConfig, TrainConfigError

__all__ = ["TrainConfig", "TrainConfigError", "train", "load_run_model", "preprocess_image"]


def train(*args: Any, **kwargs: Any) -> str:
    """Train a model on a project; see core.training.loop.train."""
    from core.training.loop import train as _train

    return _train(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # Loaded on first use so `import core.training` stays light for the CLI parser.
    if name == "load_run_model":
        from core.training.checkpoint import load_run_model

        return load_run_model
    if name == "preprocess_image":
        from core.training.data import preprocess_image

        return preprocess_image
    raise AttributeError(name)
