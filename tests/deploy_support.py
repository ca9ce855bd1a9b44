"""What the package-parity tests share: test images beyond the runs' own geometry, and the
comparison of a torch predictor with a package predictor on them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def with_odd_copies(imgs: list[np.ndarray], crop_from: int = 0, gray_from: int = 1
                    ) -> list[np.ndarray]:
    """``imgs`` plus a non-square crop and a copy with the other number of channels."""
    out = list(imgs)
    out.append(np.ascontiguousarray(out[crop_from][5:60, 3:40]))
    g = out[gray_from]
    out.append(g.mean(axis=2).astype(np.uint8) if g.ndim == 3 else
               np.repeat(g[:, :, None], 3, axis=2))
    return out


@dataclass
class Parity:
    want: list  # the torch predictor's predictions
    got: list  # the package's, one image at a time
    d_score: float  # largest score difference, torch vs package
    d_batch: float  # largest score difference, package batched vs one at a time
    d_heat: float  # largest heatmap difference, torch vs package


def compare(ref, pkg, images: list[np.ndarray], threshold: Callable[[list], float],
            batch_size: int = 5) -> Parity:
    """Score ``images`` with the package in batches, set both predictors' threshold to
    ``threshold(those predictions)``, then score with both one by one and compare."""
    batched = [p for _, p in pkg.predict_many(images, batch_size=batch_size)]
    ref.threshold = pkg.threshold = threshold(batched)
    want = [p for _, p in ref.predict_many(images)]
    got = [pkg.predict(img) for img in images]
    assert len(got) == len(want) == len(batched)
    return Parity(
        want, got,
        d_score=max(abs(a.score - b.score) for a, b in zip(want, got)),
        d_batch=max(abs(a.score - b.score) for a, b in zip(batched, got)),
        d_heat=max(float(np.abs(a.heatmap - b.heatmap).max()) for a, b in zip(want, got)))
