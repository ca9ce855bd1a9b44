"""The kind-neutral training framework every model kind (defect_studio.kinds) trains on.

- ``train(project_root, config, ...)``: one training job of any kind; the kind comes from
  ``config.model`` (or, on resume, the run's saved config) through the registry.
- ``defect_studio.training.runjob``: run folder (``RunFolder``), run lock, events,
  checkpoint save/restore, resume, cancel, progress (``StepProgress``), seeding, and
  ``run_training_job`` which every kind's ``train`` wraps its job in.
- ``defect_studio.training.config``: ``KindConfig``, the base of every kind's config
  class, its validation helpers and ``TrainConfigError``.
- ``defect_studio.training.checkpoint``: safe saving and loading of weights.
- ``defect_studio.training.device``, ``.data`` (``preprocess_image``), ``.sizing``
  (the input size from the data), ``.cli`` and ``.sweep``.

This package never imports a kind's modules: it dispatches through the registry's
entry points (``kind.load("train")``...). ``TrainConfig`` here is the config class of
the default kind (``defect_studio.kinds.default_model()``), kept for older callers.
"""

from __future__ import annotations

from typing import Any

from defect_studio.training.config import KindConfig, TrainConfigError

__all__ = ["KindConfig", "TrainConfig", "TrainConfigError", "train", "preprocess_image"]


def train(project_root: Any, config: Any = None, *, run_id: str | None = None,
          resume: bool = False, **kwargs: Any) -> str:
    """Train a model of any kind on a project; returns the run id.

    The model kind (defect_studio.kinds) is taken from ``config.model`` (the default
    model without a config), or on resume from the run's saved config; each kind's
    ``train`` entry has this signature: ``(project_root, config, *, run_id=None,
    resume=False, on_event=None, should_stop=None) -> run_id``. ``resume=True``
    continues run ``run_id`` from its last checkpoint with its saved config. Raises
    DataError / TrainConfigError for unusable input, TrainingError when training breaks
    down and CancelledError when ``should_stop()`` turned true; each is also reported as
    an ``error`` or ``cancelled`` event.
    """
    from pathlib import Path

    from defect_studio.kinds import default_model, kind_of_model, kind_of_run

    if resume and run_id is not None:  # every kind: never a folder outside runs/
        from defect_studio.project.runs import require_run_id

        require_run_id(run_id)
    if resume and run_id and "/" not in str(run_id) and "\\" not in str(run_id):
        kind = kind_of_run(Path(project_root) / "runs" / str(run_id))
    else:
        kind = kind_of_model(getattr(config, "model", None) or default_model())
    return kind.load("train")(project_root, config, run_id=run_id, resume=resume, **kwargs)


def __getattr__(name: str) -> Any:
    # Loaded on first use so `import defect_studio.training` stays light for the CLI parser.
    if name == "TrainConfig":
        from defect_studio.kinds import default_model, kind_of_model

        return kind_of_model(default_model()).load("config")
    if name == "preprocess_image":
        from defect_studio.training.data import preprocess_image

        return preprocess_image
    raise AttributeError(f"module 'defect_studio.training' has no attribute {name!r}")
