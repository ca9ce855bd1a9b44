"""The base of every model kind's predictor: a trained run ready to score images.

``RunPredictor(run_dir, device="auto", num_threads=None)`` does what every kind's predictor
shares: checks the run folder (a run without a model yet says so), picks the device and
the CPU threads, loads the run's threshold (threshold.json, else DEFAULT_THRESHOLD), and
gives ``predict`` / ``predict_many`` (defect_studio.inference.prediction.BatchScorer),
``threshold`` (settable: a user's operating point) and ``run_id``. A kind's predictor
subclasses it and provides ``_load_model()`` (sets ``self.model`` and ``self.config``)
and ``_run(batch, shapes) -> list[Prediction]``; ``_prepare`` preprocesses with the
code training used (defect_studio.training.data.preprocess_image).

Also here: ``read_threshold``, ``resolve_run_dir`` and the heatmap helper
``heatmap_to_image``. Importing this module does not import torch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from defect_studio.errors import ModelFileError, UserError
from defect_studio.inference.prediction import (  # noqa: F401 - part of this module's interface
    DEFAULT_THRESHOLD,
    BatchScorer,
    Prediction,
    check_image_array,
    read_threshold,
)
from defect_studio.preprocess import heatmap_to_image  # noqa: F401 - re-exported

# CPU threads for inference unless told otherwise: enough for speed, few enough to
# leave the GUI (and other jobs on a small machine) responsive.
DEFAULT_CPU_THREADS = 4

__all__ = ["RunPredictor", "Prediction", "DEFAULT_THRESHOLD", "DEFAULT_CPU_THREADS",
           "read_threshold", "resolve_run_dir", "heatmap_to_image"]


class RunPredictor(BatchScorer):
    """A trained run of any kind ready to score images (see the module doc).

    Not thread-safe: one predictor per worker thread.
    """

    model: Any
    config: Any

    def __init__(self, run_dir: str | os.PathLike, device: str = "auto",
                 num_threads: int | None = None):
        import torch

        from defect_studio.training.checkpoint import MODEL_FILE
        from defect_studio.training.device import select_device

        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ModelFileError(f"run folder not found: {self.run_dir}")
        self.device = select_device(device)
        if self.device.type == "cpu":
            wanted = num_threads or min(DEFAULT_CPU_THREADS, os.cpu_count() or 1)
            # never raise the count: the caller (a test, the GUI) may have bounded it lower
            torch.set_num_threads(max(1, min(wanted, torch.get_num_threads())))
        if not (self.run_dir / MODEL_FILE).is_file() and (self.run_dir / "config.json").is_file():
            from defect_studio.project.runs import read_run

            state = read_run(self.run_dir).state
            raise ModelFileError(
                f"run '{self.run_dir.name}' has no trained model yet (its state is "
                f"'{state}'): wait until it finishes, or pick a finished run")
        self._load_model()
        self.model.to(self.device).eval()
        t, source = read_threshold(self.run_dir)
        self.threshold_source = source if t is not None else "default"
        self._threshold = DEFAULT_THRESHOLD if t is None else t

    def _load_model(self) -> None:  # pragma: no cover - abstract
        """Set ``self.model`` and ``self.config`` from the run folder (each kind)."""
        raise NotImplementedError

    @property
    def threshold(self) -> float:
        """Scores at or above this are NG."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        v = float(value)
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise UserError(f"a decision threshold must be between 0 and 1, got {value}")
        self._threshold = v

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def _prepare(self, image: np.ndarray) -> Any:
        from defect_studio.training.data import preprocess_image

        return preprocess_image(check_image_array(image), self.config)


def resolve_run_dir(run: str | os.PathLike, project_root: str | os.PathLike | None = None) -> Path:
    """The folder of a run given as a run folder, or as a run id within a project.

    With ``project_root`` the run is looked up under the project's runs/ folder;
    an unknown id raises ModelFileError listing the runs there.
    """
    if project_root is None:
        path = Path(run)
        if (path / "config.json").is_file():
            return path
        if path.is_dir():
            raise ModelFileError(f"{path} is not a training run folder (it has no config.json)")
        raise ModelFileError(f"run folder not found: {path}; give a run folder, or a run id "
                             "together with --project")
    from defect_studio.project import Project
    from defect_studio.project.runs import list_runs, valid_run_id

    with Project.open(project_root, readonly=True) as project:
        runs_dir = Path(project.runs_dir)
    run_id = str(run)
    path = runs_dir / run_id
    if valid_run_id(run_id) and (path / "config.json").is_file():
        return path
    known = [r.id for r in list_runs(runs_dir)]
    if not known:
        raise ModelFileError(f"run '{run_id}' not found: the project {project_root} has no "
                             "training runs yet; train one first")
    raise ModelFileError(f"run '{run_id}' not found in {project_root}; its runs are: "
                         f"{', '.join(known)}")
