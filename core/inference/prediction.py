"""What every predictor returns, and the threshold rule they share (no torch here).

Used by the torch ``Predictor`` (core.inference.predictor) and by the deployed runtime
(core.deploy), so review, predict and the watch folder treat both alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import UserError

# Without a saved threshold (an interrupted run) a predictor calls NG at 0.5,
# the point where the decision logit changes sign.
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)  # eq would compare heatmaps element-wise: ambiguous
class Prediction:
    """The model's verdict on one image."""

    score: float  # sigmoid of the decision logit: defect probability in [0, 1]
    is_ng: bool  # score >= the predictor's threshold
    heatmap: np.ndarray  # float32 HxW in [0, 1] at the image's own resolution


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
