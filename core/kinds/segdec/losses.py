"""The mixed-supervision loss (the seed paper's MixSup loss; see docs/models.md):
distance-transform weights, mask downsampling to 1/8, the per-image loss and dynamic balancing."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def dilate_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Grow a bool mask with a size x size square (labels are rough); size <= 1: unchanged."""
    mask = np.asarray(mask, dtype=bool)
    if size <= 1 or not mask.any():
        return mask
    kernel = np.ones((size, size), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def distance_weights(mask: np.ndarray, w_max: float, p: float) -> np.ndarray:
    """Loss weights for a bool mask: background 1, a defect pixel w_max * (d / d_max)^p.

    d is the Euclidean distance of the pixel to the nearest background pixel, d_max
    the largest d within the pixel's own connected defect region, so a thin scratch
    gets the same peak weight as a large stain. Pixels outside the image do not count
    as background: a defect touching the border is weighted as if it went on.
    """
    mask = np.asarray(mask, dtype=bool)
    weights = np.ones(mask.shape, np.float32)
    if not mask.any():
        return weights
    # Pad with defect (replicate) so the image edge is not a border of the region.
    padded = np.pad(mask.astype(np.uint8), 1, mode="edge")
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    for region in range(1, n):
        inside = labels == region
        d_max = float(dist[inside].max())
        if d_max <= 0:  # cannot happen for a non-empty region, but never divide by zero
            continue
        weights[inside] = w_max * (dist[inside] / d_max) ** p
    return weights


def downsample8(x: torch.Tensor) -> torch.Tensor:
    """Bring a [..., H, W] map to 1/8: reflect-pad 8, average-pool k=17, stride 8."""
    squeeze = x.dim() == 2
    t = x[None, None] if squeeze else x
    while t.dim() < 4:
        t = t.unsqueeze(0)
    t = F.pad(t, (8, 8, 8, 8), mode="reflect")
    t = F.avg_pool2d(t, kernel_size=17, stride=8)
    if squeeze:
        return t[0, 0]
    return t.reshape(*x.shape[:-2], *t.shape[-2:])


def seg_targets(mask: np.ndarray, *, dilate: int, dist_weight: bool, w_max: float,
                p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask and loss-weight maps at 1/8 of the mask's size, each [1, H/8, W/8] float32.

    The mask is dilated with ``dilate`` here (0 when the caller dilated it already, at
    image resolution), then the distance weights are computed and both maps downsampled.
    """
    m = dilate_mask(mask, dilate)
    w = distance_weights(m, w_max, p) if dist_weight else np.ones(m.shape, np.float32)
    mt = downsample8(torch.from_numpy(m.astype(np.float32)))
    wt = downsample8(torch.from_numpy(w))
    return mt[None], wt[None]


@dataclass(frozen=True)
class LossWeights:
    """w_seg and w_dec of one epoch."""

    seg: float
    dec: float


def decision_target(label: int, mask: torch.Tensor | None, mode: str) -> float:
    """Target of the decision output: 0 for an OK image, 1 for an image-level defect, and
    for a pixel-labelled defect either 1 (``mode="label"``) or, as in the MixSup code,
    the maximum of its 1/8 target mask (``"mask_max"``: below 1 for a defect so thin
    that no 17x17 pooling window is full of it)."""
    if label == 0:
        return 0.0
    if mode == "mask_max" and mask is not None:
        return float(mask.max())
    return 1.0


def accumulated_loss(total: torch.Tensor, batch: int, reduction: str) -> torch.Tensor:
    """One image's share of an accumulated batch: itself ("sum", as the MixSup code, whose
    learning rate is per image) or divided by the batch ("mean": an average)."""
    return total if reduction == "sum" else total / batch


def balance_epochs(done: int, epochs: int, budget_s: float | None, used_s: float,
                   epoch_times: list[float]) -> int:
    """The number of epochs a run will actually complete, for the balancing weight.

    All ``epochs`` without a time budget; with one, the ``done`` epochs plus as many more
    as fit in the budget left at the slowest epoch time so far (the rule that stops the
    run), never fewer than ``done``."""
    if budget_s is None or not epoch_times:
        return epochs
    more = int(max(0.0, budget_s - used_s) // max(epoch_times))
    return max(done, min(epochs, done + more))


def balance_weights(epoch: int, epochs: int, delta: float, dynamic: bool) -> LossWeights:
    """Dynamic balancing: w_seg = 1 - e/E, w_dec = delta * e/E (e 0-based); off: 1 and delta."""
    if not dynamic:
        return LossWeights(1.0, float(delta))
    frac = epoch / epochs
    return LossWeights(1.0 - frac, float(delta) * frac)


@dataclass
class LossTerms:
    """The total loss of one image and its two (unweighted) parts, for reporting."""

    total: torch.Tensor
    seg: torch.Tensor | None  # None: an image-level-only defect has no segmentation term
    dec: torch.Tensor


def mixed_loss(seg_logits: torch.Tensor, dec_logit: torch.Tensor, *, label: float,
               mask: torch.Tensor | None, weights: torch.Tensor | None,
               lw: LossWeights) -> LossTerms:
    """Loss of one image.

    seg_logits [1, h, w] (or [1, 1, h, w]), dec_logit a scalar or [1]; mask/weights the
    1/8 maps for a pixel-labelled image, or None for an image-level-only defect, which
    then contributes only w_dec * BCE(dec, 1).
    """
    dec_logit = dec_logit.reshape(()).float()
    target = torch.tensor(float(label), device=dec_logit.device)
    loss_dec = F.binary_cross_entropy_with_logits(dec_logit, target)
    if mask is None:
        return LossTerms(lw.dec * loss_dec, None, loss_dec)
    seg = seg_logits.reshape(mask.shape).float()
    per_pixel = F.binary_cross_entropy_with_logits(seg, mask, reduction="none")
    if weights is not None:
        per_pixel = per_pixel * weights
    loss_seg = per_pixel.mean()
    return LossTerms(lw.seg * loss_seg + lw.dec * loss_dec, loss_seg, loss_dec)
