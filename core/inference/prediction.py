"""What every predictor returns, and the threshold rule they share (no torch here).

Used by every kind's torch predictor (defect_studio.inference.predictor.RunPredictor) and by
the deployed runtime (defect_studio.deploy), so review, predict and the watch folder treat
both alike. A detector's prediction (``DetectionPrediction``) adds its typed boxes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from defect_studio.errors import ModelFileError, UserError

# Without a saved threshold (an interrupted run) a predictor calls NG at 0.5,
# the point where the decision logit changes sign.
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)  # eq would compare heatmaps element-wise: ambiguous
class Prediction:
    """The model's verdict on one image."""

    score: float  # sigmoid of the decision logit: defect probability in [0, 1]
    is_ng: bool  # score >= the predictor's threshold
    heatmap: np.ndarray  # float32 HxW in [0, 1] at the image's own resolution


def predictions_from_maps(scores: Iterable[float], maps: Iterable[np.ndarray], config: Any,
                          shapes: Iterable[tuple[int, int]],
                          threshold: float) -> list[Prediction]:
    """One Prediction per image from the network's scores and maps (over its input): each
    map back at its image's own size (defect_studio.preprocess.heatmap_to_image), clipped
    to [0, 1]; NG at score >= threshold. The torch predictors and the torch-free runtime
    share it, so they decide alike."""
    from defect_studio.preprocess import heatmap_to_image

    out = []
    for score, m, shape in zip(scores, maps, shapes):
        s = float(score)
        heat = np.clip(heatmap_to_image(m, config, shape), 0.0, 1.0)
        out.append(Prediction(score=s, is_ng=s >= threshold, heatmap=heat))
    return out


@dataclass(frozen=True)
class DetectedBox:
    """A predicted defect box in image pixels (x, y top-left, w, h)."""

    type: str
    x: float
    y: float
    w: float
    h: float
    score: float


@dataclass(frozen=True, eq=False)
class DetectionPrediction(Prediction):
    """A Prediction with the boxes (most confident first, at least the detector's
    minimum box confidence)."""

    boxes: tuple[DetectedBox, ...] = field(default=())

    def boxes_at(self, threshold: float) -> list[DetectedBox]:
        return [b for b in self.boxes if b.score >= threshold]


def boxes_heatmap(boxes: list[DetectedBox], shape: tuple[int, int]) -> np.ndarray:
    """float32 HxW: each box's pixels set to its confidence (max over boxes)."""
    h, w = int(shape[0]), int(shape[1])
    heat = np.zeros((h, w), np.float32)
    for b in sorted(boxes, key=lambda b: b.score):
        x0, y0 = max(0, int(math.floor(b.x))), max(0, int(math.floor(b.y)))
        x1, y1 = min(w, int(math.ceil(b.x + b.w))), min(h, int(math.ceil(b.y + b.h)))
        if x1 > x0 and y1 > y0:
            region = heat[y0:y1, x0:x1]
            np.maximum(region, b.score, out=region)
    return heat


def check_threshold(value: float) -> float:
    """``value`` as a float in [0, 1], or UserError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"a decision threshold must be a number between 0 and 1, "
                        f"got {value!r}") from None
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise UserError(f"a decision threshold must be between 0 and 1, got {value}")
    return v


def read_threshold(run_dir: str | os.PathLike) -> tuple[float | None, str]:
    """(threshold, source) from a run's threshold.json; (None, "missing") without one."""
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
    if not 0.0 <= t <= 1.0:
        raise ModelFileError(f"the threshold file {path} holds {t}, not a threshold between 0 "
                             "and 1: save the threshold again on the Evaluate page, or delete "
                             "the file (the run then uses the default)")
    return t, str(data.get("source", "best_f1"))


def check_image_array(image: Any) -> np.ndarray:
    """``image`` as an array a predictor can score (HxW or HxWx1/3/4), or UserError."""
    img = np.asarray(image)
    bad_channels = img.ndim == 3 and img.shape[2] not in (1, 3, 4)
    if img.ndim not in (2, 3) or img.size == 0 or bad_channels:
        raise UserError(f"cannot score an array of shape {img.shape}: expected HxW or HxWx3")
    return img


class BatchScorer:
    """``predict`` and ``predict_many`` for every predictor (torch, ONNX Runtime, OpenVINO).

    A subclass provides ``_prepare(image) -> network input`` (one image, an array with a
    ``shape``) and ``_run(inputs, shapes) -> list[Prediction]`` (one batch of equal-shaped
    inputs and the images' own HxW).
    """

    def _prepare(self, image: np.ndarray) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self, batch: list[Any], shapes: list[tuple[int, int]]) -> list[Prediction]:
        raise NotImplementedError  # pragma: no cover - abstract

    def predict(self, image: np.ndarray) -> Prediction:
        """Score one image (HxW or HxWx3 array as defect_studio.io.images.read_image returns)."""
        return self._run([self._prepare(image)], [np.asarray(image).shape[:2]])[0]

    def predict_many(
        self,
        items: Iterable[Any],
        batch_size: int = 8,
        progress: Callable[[int, int], Any] | None = None,
    ) -> Iterator[tuple[Any, Prediction | str]]:
        """Score images or image paths; yields (item, Prediction) or (item, error message).

        Items are arrays or paths (str / PathLike, read with defect_studio.io.images.read_image).
        An unreadable image yields its error message instead of raising, so one bad
        file never stops a batch. Results come in input order; at most ``batch_size``
        images are in memory. progress(done, total) is called after every batch
        (total is 0 when ``items`` has no length); it may raise (CancelledError) to
        stop, or the caller simply stops iterating.
        """
        from defect_studio.io.images import read_image

        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        total = len(items) if hasattr(items, "__len__") else 0  # type: ignore[arg-type]
        done = 0
        pending: list[tuple[Any, Any, Any]] = []  # (item, input or None, shape or error)

        def flush() -> Iterator[tuple[Any, Prediction | str]]:
            nonlocal done
            ready = [(x, s) for _, x, s in pending if x is not None]
            preds: list[Prediction] = []
            error: str | None = None
            if ready:
                try:
                    preds = self._run([x for x, _ in ready], [s for _, s in ready])
                except (RuntimeError, MemoryError) as e:  # e.g. out of memory: per image
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    error = f"prediction failed: {first}"
            it = iter(preds)
            for item, x, s in pending:
                yield item, (s if x is None else (error if error is not None else next(it)))
            done += len(pending)
            pending.clear()
            if progress is not None:
                progress(done, total)

        for item in items:
            try:
                img = read_image(item) if isinstance(item, (str, os.PathLike)) else np.asarray(item)
                entry = (item, self._prepare(img), tuple(img.shape[:2]))
            except (UserError, ValueError, OSError) as e:
                entry = (item, None, str(e))
            # a batch holds inputs of one shape only (all have the run's input size
            # today; this keeps batching correct should that ever change)
            if pending and entry[1] is not None:
                first = next((x for _, x, _ in pending if x is not None), None)
                if first is not None and tuple(first.shape) != tuple(entry[1].shape):
                    yield from flush()
            pending.append(entry)
            if len(pending) >= batch_size:
                yield from flush()
        if pending:
            yield from flush()
