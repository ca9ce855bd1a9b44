"""Draft masks for a project with image labels only (issue 18, the "none" case).

With no mask and no box in the project, nothing tells the network where a defect of a
defective training image is, and image-level training of the segmentation network does not
find small defects on large parts (docs/benchmarks.md, "Large parts with small defects":
whole images at 128 and 256 px and multiple-instance crops stayed at chance on the
demo-1024 case). So before training, each defective training image gets a *draft* mask
from what its OK neighbours look like:

- the frozen ImageNet EfficientNet-Lite0 (defect_studio.backbones, the anomaly model's
  teacher) gives features at 1/4 and 1/8 of the run's input (1/8 upsampled to 1/4,
  averaged over 3x3 cells);
- one Gaussian (mean and covariance) of those features over every cell of every OK
  training image: the parts' surface, wherever it is in the image (a texture model, not
  PaDiM's per-location model, which needs aligned parts);
- a defective image's map is the Mahalanobis distance of each cell (smoothed, sigma 2
  cells); the level is the median over the OK training images of their map's maximum
  (half of the OK images reach it somewhere); the draft is every cell at or above
  ``max(level, DRAFT_SHARE x the image's maximum)``; an image whose maximum stays under
  the level gets no draft and trains with its image label only (whole image).

Drafts live in memory for the run (never written to the project), at the input's size.
Validation, the threshold and every score use image labels only, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

DRAFT_SHARE = 0.7   # a draft: cells at >= this share of the image's highest distance
SMOOTH_CELLS = 2.0  # Gaussian smoothing of the distance map, in 1/4 cells
COV_EPS = 0.01      # added to the covariance's diagonal (features are not independent)
# OK images the surface is fitted on (evenly spaced): a texture Gaussian of 64 features is
# well estimated from far fewer cells than 200 images give, and drafting time stays bounded
# on a large project (it counts in the run's time budget)
MAX_OK_IMAGES = 200


def ok_subset(indices: list[int]) -> list[int]:
    """At most MAX_OK_IMAGES of ``indices``, evenly spaced."""
    if len(indices) <= MAX_OK_IMAGES:
        return list(indices)
    step = len(indices) / MAX_OK_IMAGES
    return [indices[int(i * step)] for i in range(MAX_OK_IMAGES)]


@dataclass
class Drafts:
    """Draft masks (bool, input size (H, W)) of defective training images, by image id,
    and the level they were cut at."""

    masks: dict[int, np.ndarray]
    level: float
    checked: int  # defective images looked at

    def note(self) -> str:
        n = len(self.masks)
        return (f"no masks or boxes: draft masks for {n} of {self.checked} defective training "
                "images from the OK images' surface (pretrained EfficientNet-Lite0 features; "
                f"{self.checked - n} without a draft train with their image label)")


class Surface:
    """The feature Gaussian of the OK images and the distance map of any image."""

    def __init__(self) -> None:
        from defect_studio.backbones.efficientnet_lite import load_efficientnet_lite0

        self.net = load_efficientnet_lite0(pretrained=True)
        self.mean: torch.Tensor | None = None
        self.inv: torch.Tensor | None = None

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[C, H, W] in [0, 1] -> [D, H/4, W/4]."""
        from defect_studio.backbones.efficientnet_lite import normalize

        f4, f8 = self.net.features(normalize(x[None].float()), ("1/4", "1/8"))
        f8 = F.interpolate(f8, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        return F.avg_pool2d(torch.cat([f4, f8], 1), 3, 1, 1)[0]

    def fit(self, images: list[torch.Tensor]) -> None:
        s1: torch.Tensor | None = None
        s2: torch.Tensor | None = None
        n = 0
        for x in images:
            e = self.features(x).flatten(1).double()
            s1 = e.sum(1) if s1 is None else s1 + e.sum(1)
            s2 = e @ e.T if s2 is None else s2 + e @ e.T
            n += e.shape[1]
        assert s1 is not None and s2 is not None and n > 1
        mean = s1 / n
        cov = s2 / n - torch.outer(mean, mean)
        cov += COV_EPS * torch.eye(cov.shape[0], dtype=cov.dtype)
        self.mean, self.inv = mean.float(), torch.linalg.inv(cov).float()

    def distance(self, x: torch.Tensor) -> np.ndarray:
        """The smoothed distance map [H/4, W/4] of one image."""
        assert self.mean is not None and self.inv is not None
        e = self.features(x)
        _, h, w = e.shape
        d = e.flatten(1).T - self.mean
        m = ((d @ self.inv) * d).sum(1).clamp_min(0).sqrt().reshape(h, w).numpy()
        m = np.nan_to_num(m, nan=0.0, posinf=0.0)
        return cv2.GaussianBlur(m, (0, 0), SMOOTH_CELLS)


def draft_masks(ok_images: list[torch.Tensor], defective: dict[int, torch.Tensor],
                size: tuple[int, int]) -> Drafts:
    """Drafts of the ``defective`` images ({id: [C, H, W]} at the input size (W, H)) from
    the surface of ``ok_images`` (at least 2). See the module docstring."""
    if len(ok_images) < 2:
        return Drafts({}, float("nan"), len(defective))
    W, H = size
    surface = Surface()
    surface.fit(ok_images)
    level = float(np.median([surface.distance(x).max() for x in ok_images]))
    out: dict[int, np.ndarray] = {}
    for image_id, x in defective.items():
        m = surface.distance(x)
        top = float(m.max())
        if not np.isfinite(top) or top < level:
            continue
        cells = (m >= max(level, DRAFT_SHARE * top)).astype(np.uint8)
        out[image_id] = cv2.resize(cells, (W, H), interpolation=cv2.INTER_NEAREST) > 0
    return Drafts(out, level, len(defective))


def drafts_for(data: Any) -> Drafts:
    """Drafts for the defective training images of ``data`` (segdec TrainingData whose
    config has its input size and channels), from its OK training images (at most
    MAX_OK_IMAGES of them)."""
    ok = [data.item(i)[0] for i in ok_subset(data.negatives)]
    defective = {data.train[i].image_id: data.item(i)[0] for i in data.positives}
    return draft_masks(ok, defective, tuple(data.config.input_size))

