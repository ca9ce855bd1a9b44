"""Draft masks for a project with image labels only (issue 18, the "none" case).

With no mask and no box in the project, nothing tells the network where a defect of a
defective training image is, and image-level training of the segmentation network does not
find small defects on large parts (docs/benchmarks.md, "Large parts with small defects":
whole images at 128 and 256 px and multiple-instance crops stayed at chance on the
demo-1024 case). So before training, each defective training image gets a *draft* mask
where it differs from its own surface:

- the image is read at its own resolution (never enlarged, never made smaller than the
  run's input; at most DRAFT_MAX_PIXELS, which bounds the time), the frozen ImageNet
  EfficientNet-Lite0 (defect_studio.backbones, the anomaly model's teacher) gives
  features at 1/4 and 1/8 of it (1/8 upsampled to 1/4, averaged over 3x3 cells), after
  reflecting PAD_PX pixels at the image's edges (with zero padding the network's border
  cells are the most unusual of every image);
- one Gaussian (mean and covariance) of those features over the image's *own* cells: the
  drafts are made only for large parts with small defects (sizing.ASSUMED_FLOOR_PX), where
  a defect covers a small share of its image, so the image's surface is its reference (one
  Gaussian over the OK images of a project with several surface types flags the rarer
  surfaces instead: measured in docs/benchmarks.md, "Draft masks from the image's own
  surface");
- the map is the Mahalanobis distance of each cell (smoothed, sigma 2 cells); the level is
  the median, over at most LEVEL_OK_IMAGES OK training images (evenly spaced), of their own
  map's maximum (half of the OK images reach it somewhere); the draft is every cell at or
  above ``max(level, DRAFT_SHARE x the image's maximum)``; an image whose maximum stays
  under the level gets no draft and trains with its image label only (whole image).

Drafts live in memory for the run (never written to the project), at the input's size.
In a data-parallel run (`train --gpus N`) each process maps its share of the images and
the figures and drafts are gathered, so drafting takes 1/N of the time on every process.
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
PAD_PX = 32         # reflected at the image's edges before the features (fewer if smaller)
# Drafting resolution: the image's own (a 3 px defect keeps 3 px, 0.75 of a 1/4 cell; at
# half of it, as the run's input sees it, a cell spans 8 px of the part and a 3 px scratch
# is lost among them: measured), unless its area is larger than this: then scaled down to
# it (never below the input). 1024 x 1024: ~2.4 s per image on one loaded thread (measured).
DRAFT_MAX_PIXELS = 1024 * 1024
# OK images whose own maxima set the level (evenly spaced): the median of 32 maxima is
# well estimated, and drafting time stays bounded on a large project (it counts in the
# run's time budget)
LEVEL_OK_IMAGES = 32
# an image's own Gaussian needs many more cells than features (64): with 8 per feature
# every cell was about as far from it as any other (seen on 128x64 px test images), so an
# image with fewer than this many per feature (2048 cells: 256x128 px) gets no map (zeros:
# no draft). Drafts are made for large parts only (the demo-1024 case: 65536 cells).
MIN_CELLS_PER_FEATURE = 32


def ok_subset(indices: list[int]) -> list[int]:
    """At most LEVEL_OK_IMAGES of ``indices``, evenly spaced."""
    if len(indices) <= LEVEL_OK_IMAGES:
        return list(indices)
    step = len(indices) / LEVEL_OK_IMAGES
    return [indices[int(i * step)] for i in range(LEVEL_OK_IMAGES)]


def draft_size(image: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """The size (W, H) an image of ``image`` (W, H) is drafted at, for a run whose input is
    ``size`` (W, H): the input's shape at the image's own resolution (the input enlarged
    by the smaller of the two side ratios, so the image is never enlarged), at most
    DRAFT_MAX_PIXELS in area and never smaller than the input. Bad sizes (zero, negative,
    not finite) give the input size."""
    W, H = (int(v) for v in size)
    try:
        iw, ih = float(image[0]), float(image[1])
    except (TypeError, ValueError, IndexError):
        return W, H
    if W <= 0 or H <= 0 or not (np.isfinite(iw) and np.isfinite(ih)) or iw <= 0 or ih <= 0:
        return W, H
    f = min(iw / W, ih / H, (DRAFT_MAX_PIXELS / (W * H)) ** 0.5)
    if not f > 1.0:
        return W, H
    return max(W, int(round(W * f))), max(H, int(round(H * f)))


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
                "images where each differs from its own surface (pretrained "
                f"EfficientNet-Lite0 features; {self.checked - n} without a draft train with "
                "their image label)")


class Surface:
    """The distance map of an image from its own surface (module docstring)."""

    def __init__(self) -> None:
        from defect_studio.backbones.efficientnet_lite import load_efficientnet_lite0

        self.net = load_efficientnet_lite0(pretrained=True)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[C, H, W] in [0, 1] -> [D, H/4, W/4] (edges reflected before, cut after)."""
        from defect_studio.backbones.efficientnet_lite import normalize

        y = normalize(x[None].float())
        h, w = y.shape[-2:]
        pad = max(0, min(PAD_PX, h - 1, w - 1)) // 4 * 4  # whole 1/4 cells
        if pad:
            y = F.pad(y, (pad, pad, pad, pad), mode="reflect")
        f4, f8 = self.net.features(y, ("1/4", "1/8"))
        f8 = F.interpolate(f8, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        e = F.avg_pool2d(torch.cat([f4, f8], 1), 3, 1, 1)[0]
        c = pad // 4
        return e[:, c:e.shape[1] - c, c:e.shape[2] - c] if c else e

    def distance(self, x: torch.Tensor) -> np.ndarray:
        """The smoothed distance map [H/4, W/4] of one image from its own cells' Gaussian."""
        e = self.features(x)
        _, h, w = e.shape
        flat = e.flatten(1).double()
        n = flat.shape[1]
        if n < MIN_CELLS_PER_FEATURE * flat.shape[0]:
            return np.zeros((h, w), np.float32)
        mean = flat.mean(1)
        cov = (flat @ flat.T) / n - torch.outer(mean, mean)
        cov += COV_EPS * torch.eye(cov.shape[0], dtype=cov.dtype)
        try:
            inv = torch.linalg.inv(cov).float()
        except RuntimeError:  # NaN features: not invertible
            return np.zeros((h, w), np.float32)
        d = flat.T.float() - mean.float()
        m = ((d @ inv) * d).sum(1).clamp_min(0).sqrt().reshape(h, w).numpy()
        m = np.nan_to_num(m, nan=0.0, posinf=0.0).astype(np.float32)
        return cv2.GaussianBlur(m, (0, 0), SMOOTH_CELLS)


def draft_from_map(m: np.ndarray, level: float, size: tuple[int, int],
                   content: tuple[int, int] | None = None) -> np.ndarray | None:
    """The draft (bool, input size (H, W)) of an image whose distance map is ``m``, cut at
    ``level`` (see the module docstring); None when its maximum stays under the level.
    ``content`` (w, h): where the image lies in the input (default the whole input)."""
    W, H = size
    top = float(m.max())
    if not np.isfinite(top) or not np.isfinite(level) or top <= 0 or top < level:
        return None
    cells = (m >= max(level, DRAFT_SHARE * top)).astype(np.uint8)
    cw, ch = content or (W, H)
    cw, ch = max(1, min(int(cw), W)), max(1, min(int(ch), H))
    draft = np.zeros((H, W), bool)
    draft[:ch, :cw] = cv2.resize(cells, (cw, ch), interpolation=cv2.INTER_NEAREST) > 0
    return draft


def draft_level(ok_maxima: list[float]) -> float:
    """The level drafts are cut at: the median of the OK images' own map maxima (half of
    the OK images reach it somewhere)."""
    return float(np.median(ok_maxima))


def draft_masks(ok_images: list[torch.Tensor], defective: dict[int, torch.Tensor],
                size: tuple[int, int], content: dict[int, tuple[int, int]] | None = None
                ) -> Drafts:
    """Drafts of the ``defective`` images ({id: [C, H, W]}, each at its drafting size,
    see draft_size) at the input size ``size`` (W, H); the level from ``ok_images`` (at
    least 2, any sizes). ``content`` ({id: (w, h)}, default the whole input) is where an
    image lies in the input (resize mode "pad": top-left, zero padding beyond); the
    images given are that content only. See the module docstring."""
    where = content or {}
    return _drafts([(None, x) for x in ok_images], list(defective.items()),
                   lambda item: (item[1], where.get(item[0])), size)


def _drafts(ok: list[tuple[None, Any]], defective: list[tuple[int, Any]],
            read: Any, size: tuple[int, int]) -> Drafts:
    """The drafts of ``defective`` [(image id, source)], the level from ``ok`` [(None,
    source)]; ``read(item)`` gives an item's image ([C, H, W] at its drafting size) and its content
    size in the input (None: the whole input). In a data-parallel run
    (defect_studio.training.distributed) each process reads and maps its share of the
    images only, and all get every figure and draft (they are the same on every process)."""
    from defect_studio.training.distributed import this_process

    if len(ok) < 2:
        return Drafts({}, float("nan"), len(defective))
    shard, surface = this_process(), Surface()
    maxima = shard.gather(ok, lambda share: [float(surface.distance(read(item)[0]).max())
                                             for item in share])
    level = draft_level(maxima)

    def cut(share: list[tuple[int, Any]]) -> list[np.ndarray | None]:
        out = []
        for item in share:
            x, where = read(item)
            out.append(draft_from_map(surface.distance(x), level, size, where))
        return out

    found = shard.gather(defective, cut)
    masks = {image_id: d for (image_id, _), d in zip(defective, found) if d is not None}
    return Drafts(masks, level, len(defective))


def drafts_for(data: Any) -> Drafts:
    """Drafts for the defective training images of ``data`` (segdec TrainingData whose
    config has its input size and channels), each read at its drafting size
    (draft_size), the level from at most LEVEL_OK_IMAGES of its OK training images."""
    from defect_studio.preprocess import fit_geometry
    from defect_studio.training.data import preprocess_image

    config = data.config
    size = tuple(config.input_size)

    def read(item: tuple[int | None, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        image_id = data.train[item[1]].image_id
        img = data.project.read_image(data.project.image(image_id))
        at = config.replace(input_size=draft_size((img.shape[1], img.shape[0]), size))
        x = preprocess_image(img, at)
        cw, ch = fit_geometry(img.shape[:2], at)
        # "pad": the image's part of the input
        return x[:, :ch, :cw], fit_geometry(img.shape[:2], config)

    positives = [(data.train[i].image_id, i) for i in data.positives]
    return _drafts([(None, i) for i in ok_subset(data.negatives)], positives, read, size)
