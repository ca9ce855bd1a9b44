"""Mixed-supervision training of the segmentation + decision networks.

``train`` runs one training job (see core/training/loop.py); ``TrainConfig`` holds its
settings; ``load_run_model`` and ``preprocess_image`` give the predictor the trained
network and the exact preprocessing used in training.
"""

from __future__ import annotations

from typing import Any

from defect_studio.kinds.segdec.config import TrainConfig, TrainConfigError

__all__ = ["TrainConfig", "TrainConfigError", "train", "load_run_model", "preprocess_image"]


def train(project_root: Any, config: Any = None, *, run_id: str | None = None,
          resume: bool = False, **kwargs: Any) -> str:
    """Train a model of any kind on a project (see defect_studio.kinds.segdec.train.train for the contract).

    The model kind (defect_studio.kinds) is taken from ``config.model``, or on resume from the
    run's saved config; each kind has its own training function with the same signature.
    """
    from pathlib import Path

    from defect_studio.kinds import kind_of_model, kind_of_run

    if resume and run_id is not None:  # every kind: never a folder outside runs/
        from defect_studio.project.runs import require_run_id

        require_run_id(run_id)
    if resume and run_id and "/" not in str(run_id) and "\\" not in str(run_id):
        kind = kind_of_run(Path(project_root) / "runs" / str(run_id))
    else:
        kind = kind_of_model(getattr(config, "model", None) or "mffpa")
    return kind.load("train")(project_root, config, run_id=run_id, resume=resume, **kwargs)


def __getattr__(name: str) -> Any:
    # Loaded on first use so `import defect_studio.training` stays light for the CLI parser.
    if name == "load_run_model":
        from defect_studio.training.checkpoint import load_run_model

        return load_run_model
    if name == "preprocess_image":
        from defect_studio.kinds.segdec.data import preprocess_image

        return preprocess_image
    raise AttributeError(name)
