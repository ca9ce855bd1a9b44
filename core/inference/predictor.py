"""Scoring images with a trained run: decision score, OK/NG and a defect heatmap.

The predictor preprocesses with core.training.data.preprocess_image, the code
training uses, so a run scores an image exactly as it was validated; the
heatmap is mapped back with the same geometry (core.training.data.fit_geometry).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from core.errors import ModelFileError, UserError

# Without a saved threshold (an interrupted run) the predictor calls NG at 0.5,
# the point where the decision logit changes sign.
DEFAULT_THRESHOLD = 0.5
# CPU threads for inference unless told otherwise: enough for speed, few enough to
# leave the GUI (and other jobs on a small machine) responsive.
DEFAULT_CPU_THREADS = 4


@dataclass(frozen=True, eq=False)  # eq would compare heatmaps element-wise: ambiguous
class Prediction:
    """The model's verdict on one image."""

    score: float  # sigmoid of the decision logit: defect probability in [0, 1]
    is_ng: bool  # score >= the predictor's threshold
    heatmap: np.ndarray  # float32 HxW in [0, 1] at the image's own resolution


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


def heatmap_to_image(map2d: np.ndarray, config: Any, shape: tuple[int, int]) -> np.ndarray:
    """A map over the network input (any resolution, e.g. the 1/8 segmentation) at the
    image's own HxW, undoing the resize or the scale-and-pad of preprocessing.

    Cells are placed where the training targets put them: the 1/8
    target of cell i is the mean of input pixels 8i-8 .. 8i+8 (reflect-pad 8, average
    pool k=17, stride 8), so cell i stands for input pixel 8i, whose centre is at
    continuous coordinate 8i + 0.5 (pixel j covers [j, j+1)). One affine warp with
    fractional coordinates, bilinear; edges replicate.
    """
    from core.training.data import fit_geometry

    W, H = config.input_size
    h, w = int(shape[0]), int(shape[1])
    cw, ch = fit_geometry((h, w), config)
    mh, mw = map2d.shape[:2]
    sx, ox = _cell_axis(w, cw, W, mw)
    sy, oy = _cell_axis(h, ch, H, mh)
    m = np.array([[sx, 0.0, ox], [0.0, sy, oy]], dtype=np.float64)
    return cv2.warpAffine(np.ascontiguousarray(map2d, dtype=np.float32), m, (w, h),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _cell_axis(n_img: int, n_content: int, n_input: int, n_map: int) -> tuple[float, float]:
    """(scale, offset) with map index u = scale * x + offset for image pixel index x.

    Image pixel x has its centre at x + 0.5; in the input it sits at x' = (x + 0.5) *
    n_content / n_img. Map cell u is centred on input pixel stride * u, i.e. at x' =
    stride * u + 0.5, so u = (x' - 0.5) / stride."""
    stride = n_input / n_map
    scale = n_content / n_img / stride
    return scale, 0.5 * scale - 0.5 / stride


class Predictor:
    """A trained run ready to score images.

    ``Predictor(run_dir, device="auto")`` loads the run's config and weights (via
    core.training.checkpoint.load_run_model) and its threshold. ``threshold`` can be
    changed afterwards (a user's operating point). Not thread-safe: one predictor
    per worker thread.
    """

    def __init__(self, run_dir: str | os.PathLike, device: str = "auto",
                 num_threads: int | None = None):
        from core.training.checkpoint import MODEL_FILE, load_run_model
        from core.training.device import select_device

        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ModelFileError(f"run folder not found: {self.run_dir}")
        self.device = select_device(device)
        if self.device.type == "cpu":
            wanted = num_threads or min(DEFAULT_CPU_THREADS, os.cpu_count() or 1)
            # never raise the count: the caller (a test, the GUI) may have bounded it lower
            torch.set_num_threads(max(1, min(wanted, torch.get_num_threads())))
        if not (self.run_dir / MODEL_FILE).is_file() and (self.run_dir / "config.json").is_file():
            from core.project.runs import read_run

            state = read_run(self.run_dir).state
            raise ModelFileError(f"run '{self.run_dir.name}' has no trained model yet (its state is "
                                 f"'{state}'): wait until it finishes, or pick a finished run")
        self.model, self.config = load_run_model(self.run_dir, self.device)
        self.model.eval()
        t, source = read_threshold(self.run_dir)
        self.threshold_source = source if t is not None else "default"
        self._threshold = DEFAULT_THRESHOLD if t is None else t

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
        from core.training.data import preprocess_image

        img = np.asarray(image)
        bad_channels = img.ndim == 3 and img.shape[2] not in (1, 3, 4)
        if img.ndim not in (2, 3) or img.size == 0 or bad_channels:
            raise UserError(f"cannot score an array of shape {img.shape}: expected HxW or HxWx3")
        return preprocess_image(img, self.config)

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

    def predict(self, image: np.ndarray) -> Prediction:
        """Score one image (HxW or HxWx3 array as core.io.images.read_image returns)."""
        return self._run([self._prepare(image)], [np.asarray(image).shape[:2]])[0]

    def predict_many(
        self,
        items: Iterable[Any],
        batch_size: int = 8,
        progress: Callable[[int, int], Any] | None = None,
    ) -> Iterator[tuple[Any, Prediction | str]]:
        """Score images or image paths; yields (item, Prediction) or (item, error message).

        Items are arrays or paths (str / PathLike, read with core.io.images.read_image).
        An unreadable image yields its error message instead of raising, so one bad
        file never stops a batch. Results come in input order; at most ``batch_size``
        images are in memory. progress(done, total) is called after every batch
        (total is 0 when ``items`` has no length); it may raise (CancelledError) to
        stop, or the caller simply stops iterating.
        """
        from core.io.images import read_image

        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        total = len(items) if hasattr(items, "__len__") else 0  # type: ignore[arg-type]
        done = 0
        # pending: (item, tensor or None, shape or error)
        pending: list[tuple[Any, torch.Tensor | None, Any]] = []

        def flush() -> Iterator[tuple[Any, Prediction | str]]:
            nonlocal done
            ready = [(t, s) for _, t, s in pending if t is not None]
            preds: list[Prediction] = []
            error: str | None = None
            if ready:
                try:
                    preds = self._run([t for t, _ in ready], [s for _, s in ready])
                except RuntimeError as e:  # e.g. out of memory: report it per image
                    error = f"prediction failed: {e}"
            it = iter(preds)
            for item, t, s in pending:
                if t is None:
                    yield item, s
                else:
                    yield item, (error if error is not None else next(it))
            done += len(pending)
            pending.clear()
            if progress is not None:
                progress(done, total)

        for item in items:
            try:
                img = read_image(item) if isinstance(item, (str, os.PathLike)) else np.asarray(item)
                tensor = self._prepare(img)
                entry = (item, tensor, tuple(img.shape[:2]))
            except (UserError, ValueError, OSError) as e:
                entry = (item, None, str(e))
            # a batch holds tensors of one shape only (they all have the run's input
            # size today; this keeps batching correct should that ever change)
            if pending and entry[1] is not None:
                first = next((t for _, t, _ in pending if t is not None), None)
                if first is not None and first.shape != entry[1].shape:
                    yield from flush()
            pending.append(entry)
            if len(pending) >= batch_size:
                yield from flush()
        if pending:
            yield from flush()


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
    from core.project import Project
    from core.project.runs import list_runs, valid_run_id

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
