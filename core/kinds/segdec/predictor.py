"""Scoring images with a trained run: decision score, OK/NG and a defect heatmap.

The predictor preprocesses with defect_studio.kinds.segdec.data.preprocess_image, the code
training uses, so a run scores an image exactly as it was validated; the
heatmap is mapped back with the same geometry (defect_studio.kinds.segdec.data.fit_geometry).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from defect_studio.errors import ModelFileError, UserError

# Prediction, DEFAULT_THRESHOLD and heatmap_to_image are torch-free and shared with the
# deployed runtime (defect_studio.deploy); they are re-exported here.
from defect_studio.inference.prediction import (  # noqa: E402,F401
    DEFAULT_THRESHOLD, BatchScorer, Prediction, check_image_array,
)
from defect_studio.preprocess import heatmap_to_image  # noqa: E402,F401
# CPU threads for inference unless told otherwise: enough for speed, few enough to
# leave the GUI (and other jobs on a small machine) responsive.
DEFAULT_CPU_THREADS = 4


def read_threshold(run_dir: Path) -> tuple[float | None, str]:
    """(threshold, source) from the run's threshold.json; (None, "missing") without one."""
    path = Path(run_dir) / "threshold.json"
    if not path.is_file():
        return None, "missing"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        t = float(data["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"the threshold file {path} is damaged ({e}); "
                             "re-evaluate the run or delete the file") from None
    if not math.isfinite(t):
        raise ModelFileError(f"the threshold file {path} holds {t}, not a number; delete it")
    return t, str(data.get("source", "best_f1"))


class Predictor(BatchScorer):
    """A trained run ready to score images.

    ``Predictor(run_dir, device="auto")`` loads the run's config and weights (via
    defect_studio.training.checkpoint.load_run_model) and its threshold. ``threshold`` can be
    changed afterwards (a user's operating point). Not thread-safe: one predictor
    per worker thread.
    """

    def __init__(self, run_dir: str | os.PathLike, device: str = "auto",
                 num_threads: int | None = None):
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
            raise ModelFileError(f"run '{self.run_dir.name}' has no trained model yet (its state is "
                                 f"'{state}'): wait until it finishes, or pick a finished run")
        self._load_model()
        self.model.to(self.device).eval()
        t, source = read_threshold(self.run_dir)
        self.threshold_source = source if t is not None else "default"
        self._threshold = DEFAULT_THRESHOLD if t is None else t

    def _load_model(self) -> None:
        """Set ``self.model`` and ``self.config`` from the run folder (model kinds override
        this; the checks before and the threshold after are shared)."""
        from defect_studio.training.checkpoint import load_run_model

        self.model, self.config = load_run_model(self.run_dir, self.device)

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

    # -- scoring -----------------------------------------------------------------------
    def _prepare(self, image: np.ndarray) -> torch.Tensor:
        from defect_studio.kinds.segdec.data import preprocess_image

        return preprocess_image(check_image_array(image), self.config)

    def _run(self, batch: list[torch.Tensor], shapes: list[tuple[int, int]]) -> list[Prediction]:
        x = torch.stack(batch).to(self.device)
        with torch.inference_mode():
            seg_logits, dec_logits = self.model(x)
            scores = torch.sigmoid(dec_logits.float().reshape(-1)).cpu().numpy()
            seg = torch.sigmoid(seg_logits.float()[:, 0]).cpu().numpy()
        out = []
        for i, shape in enumerate(shapes):
            heat = np.clip(heatmap_to_image(seg[i], self.config, shape), 0.0, 1.0)
            score = float(scores[i])
            out.append(Prediction(score=score, is_ng=score >= self._threshold, heatmap=heat))
        return out


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
