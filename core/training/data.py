"""Data helpers every model kind shares (torch tensors over defect_studio.preprocess)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from defect_studio.preprocess import preprocess_array


def preprocess_image(img: np.ndarray, config: Any) -> torch.Tensor:
    """An image as read by defect_studio.io.images -> float tensor [C, H, W] in [0, 1] at the
    run's input size; exactly what the network saw in training. ``config`` is anything
    with ``input_size`` (W, H), ``resize`` and ``channels`` (every kind's config)."""
    return torch.from_numpy(preprocess_array(img, config))
