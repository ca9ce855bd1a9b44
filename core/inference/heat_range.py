"""The heat range of a run, for showing its heatmaps (issue 16).

A model's heat need not reach 1 on a defect: on real data a segmentation map peaked at
0.19 inside the defects, below the overlay's floor, so NG parts looked clean. Heatmaps
are therefore shown relative to the run's range: the highest heat the run gives on its
defective validation images (kept in ``RUN/heat_range.json``). The colour bar says so,
and the peak is always marked. numpy only: the predictor is passed in.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

HEAT_RANGE_FILE = "heat_range.json"
MIN_RANGE = 0.02  # below this a map is noise: it is not stretched further
SAMPLE = 16  # defective images scored to find a run's range


def clean_range(value: object) -> float | None:
    """A heat range read from a file or given by a caller: a number in (0, 1], else None
    (bounded below by MIN_RANGE)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    if not math.isfinite(v) or v <= 0.0:
        return None
    return min(1.0, max(MIN_RANGE, v))


def read_heat_range(run_dir: str | os.PathLike) -> float | None:
    """The run's stored heat range, None when it has none (or the file is not valid)."""
    path = Path(run_dir) / HEAT_RANGE_FILE
    try:
        if path.is_symlink() or path.stat().st_size > 4096:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return clean_range(data.get("vmax")) if isinstance(data, dict) else None


def range_from_peaks(peaks: Iterable[float]) -> float | None:
    """The range that shows every one of these peaks at full colour: their maximum."""
    good = [float(p) for p in peaks if isinstance(p, (int, float)) and math.isfinite(p)]
    return clean_range(max(good)) if good else None


def heat_peak_value(heatmap: np.ndarray) -> float:
    h = np.asarray(heatmap, dtype=np.float32)
    return float(np.nanmax(h)) if h.size and np.isfinite(h).any() else 0.0


def sample_paths(project, limit: int = SAMPLE) -> list[Path]:
    """Up to `limit` defective images of a project, validation split first."""
    recs = project.images(label="defective")
    order = {"val": 0, "test": 1, "train": 2}
    recs = sorted(recs, key=lambda r: (order.get(r.split, 3), r.id))[:limit]
    return [Path(project.image_path(r)) for r in recs]


def run_heat_range(run_dir: str | os.PathLike, predictor, paths: list[Path]) -> float | None:
    """The run's heat range: stored, or measured on `paths` (defective images) with the
    run's predictor and stored with the run. None when there is nothing to measure."""
    stored = read_heat_range(run_dir)
    if stored is not None or not paths:
        return stored
    peaks = [heat_peak_value(pred.heatmap) for _item, pred in predictor.predict_many(
        [str(p) for p in paths], batch_size=4) if hasattr(pred, "heatmap")]
    vmax = range_from_peaks(peaks)
    if vmax is None:
        return None
    from defect_studio.io.atomic import write_json_atomic

    try:
        write_json_atomic(Path(run_dir) / HEAT_RANGE_FILE, {
            "vmax": vmax, "n": len(peaks),
            "how": "highest heat on the run's defective images (validation first)"})
    except OSError:
        pass  # shown all the same; measured again next time
    return vmax


def scale_heat(heatmap: np.ndarray, vmax: float | None) -> np.ndarray:
    """Heat divided by the range (1 = the top of the range), clipped to [0, 1]."""
    h = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
    v = clean_range(vmax)
    if v is None or v >= 1.0:
        return np.clip(h, 0.0, 1.0)
    return np.clip(h / v, 0.0, 1.0)
