"""Training on crops of large parts (issue 18): which part of an image a training step sees.

When the defects need a scale at which whole images are too large for the preset's cost
per step, the size rule (defect_studio.training.sizing) sets ``crop_size`` and each
training step sees one crop of the image at the run's input scale:

- a pixel-labelled defective image: a crop centred on a random defect cell of its 1/8
  target mask, so the crop holds the defect and its image label (1) stays true; its
  decision target follows ``dec_target`` over the cropped mask;
- an OK image: a random crop, label 0 (every crop of an OK part is OK);
- an image-label-only defective image (no mask, or a mask empty at the input scale): a
  random crop may miss the defect, and its label would then be wrong. By default it is not
  cropped: the whole image at the input scale keeps the label true (``crop_batch``). With
  the ``mil_crops`` setting the training step scores every crop-size tile of the image
  without gradient and trains the top-scoring tile as defective, decision loss only
  (multiple-instance learning: ``tiles.top_tile``; at least one tile holds the defect, and
  the image is scored by its highest tile).

Crops start on the 1/8 grid so the image, its target mask and its loss weights stay
aligned. The draws use torch's seeded generator: a run is reproducible and a resumed run
continues the sequence.

Several crops per step (``crops_per_step``, ``crop_batch``): a croppable image gives k crops
stacked as one batch in one forward pass (on CPU, 4 crops of 128x128 took ~2.7x one crop,
not 4x, on a loaded machine; docs/benchmarks.md). The step's loss is the crops' mean.
Of a masked defective image, the first ceil(k/2) crops are
centred on random defect cells; the others are random crops whose label comes from the
crop's own 1/8 target mask (1 when it holds target cells, else 0: exact up to the mask's
dilation, which is what the segmentation target says too). An OK image gives k random crops
(label 0). Validation and prediction score crop-size tiles of the whole image
(segdec/tiles.py).
"""

from __future__ import annotations

import math

import torch

STRIDE = 8  # the segmentation output's stride: crop offsets are multiples of it
AUTO_CROPS_MAX = 4  # the rule's cap on crops per step (cost per step ~2.7x one crop on CPU)
AREA_EPOCHS_MAX = 16  # the epochs rule raises a preset's epochs at most this many times


def crops_per_step(config) -> int:
    """Crops per training step: the config's ``crops_per_step`` when set; else as many as
    the input at its scale holds crop areas (floor(input area / crop area)), 1 to
    AUTO_CROPS_MAX; 1 without crops."""
    set_k = getattr(config, "crops_per_step", None)
    if set_k is not None:
        return int(set_k)
    crop = getattr(config, "crop_size", None)
    if crop is None or config.input_size is None:
        return 1
    W, H = config.input_size
    cw, ch = min(int(crop[0]), int(W)), min(int(crop[1]), int(H))
    return max(1, min(AUTO_CROPS_MAX, (int(W) * int(H)) // (cw * ch)))


def area_epochs(epochs: int, input_size: tuple[int, int], crop: tuple[int, int], k: int
                ) -> tuple[int, float]:
    """Epochs as passes over the image area (issue 18): a crop run of ``k`` crops per step
    sees ``k x crop area / input area`` of each image per epoch (``fraction``, at most 1), so
    ``epochs / fraction`` epochs (rounded up; at most AREA_EPOCHS_MAX x ``epochs``) see as
    much image area as ``epochs`` epochs of whole images. Returns (epochs, fraction)."""
    W, H = int(input_size[0]), int(input_size[1])
    cw, ch = min(int(crop[0]), W), min(int(crop[1]), H)
    fraction = min(1.0, max(1, int(k)) * cw * ch / float(W * H))
    raised = math.ceil(int(epochs) / fraction - 1e-9)
    return max(int(epochs), min(raised, AREA_EPOCHS_MAX * int(epochs))), fraction


def _offset(length: int, crop: int, centre: int | None) -> int:
    """A crop start (input px, multiple of STRIDE) along one axis: random, or around the
    1/8 cell ``centre``, always inside [0, length - crop]."""
    room = max(0, length - crop)
    if room == 0:
        return 0
    cells = room // STRIDE
    if centre is None:
        return STRIDE * int(torch.randint(0, cells + 1, (1,)))
    start = centre * STRIDE + STRIDE // 2 - crop // 2
    return min(max(0, (start // STRIDE) * STRIDE), cells * STRIDE)


def croppable(x: torch.Tensor, mask: torch.Tensor | None, label: int,
              crop: tuple[int, int]) -> bool:
    """Whether a training image is cropped: larger than the crop, and not a defective image
    without target mask cells (its label would be wrong on a crop that misses the defect)."""
    if int(crop[0]) >= int(x.shape[-1]) and int(crop[1]) >= int(x.shape[-2]):
        return False
    return not (label == 1 and (mask is None or not bool((mask > 0).any())))


def mask_free(x: torch.Tensor, mask: torch.Tensor | None, crop: tuple[int, int]) -> bool:
    """Whether a defective training image larger than the crop has no target mask cells
    (image label only): it trains through ``tiles.top_tile``."""
    if int(crop[0]) >= int(x.shape[-1]) and int(crop[1]) >= int(x.shape[-2]):
        return False
    return mask is None or not bool((mask > 0).any())


Crop = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, int]


def crop_batch(x: torch.Tensor, mask: torch.Tensor | None, weights: torch.Tensor | None,
               label: int, crop: tuple[int, int], k: int) -> list[Crop]:
    """The (image, mask, weights, label) crops one training step sees of image ``x``: k
    crops of a croppable image (module doc), else the image itself once."""
    if k <= 1 or not croppable(x, mask, label, crop):
        return [(*crop_sample(x, mask, weights, label, crop), label)]
    out: list[Crop] = []
    centred = -(-k // 2) if label == 1 else 0
    for i in range(k):
        if i < centred:
            out.append((*crop_sample(x, mask, weights, label, crop), 1))
        else:
            cx, cm, cw_ = crop_sample(x, mask, weights, 0, crop)  # random placement
            hit = label == 1 and cm is not None and bool((cm > 0).any())
            out.append((cx, cm, cw_, int(hit)))
    return out


def crop_sample(x: torch.Tensor, mask: torch.Tensor | None, weights: torch.Tensor | None,
                label: int, crop: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The crop (W, H) that one training step sees of image ``x`` [C, H, W] with its 1/8
    ``mask`` and ``weights`` [1, H/8, W/8] (see the module doc for which images are cropped);
    ``label`` 0 places it at random, 1 around a random target cell."""
    cw, ch = int(crop[0]), int(crop[1])
    H, W = int(x.shape[-2]), int(x.shape[-1])
    if cw >= W and ch >= H:
        return x, mask, weights
    if label == 1 and (mask is None or not bool((mask > 0).any())):
        return x, mask, weights  # image label only: the whole image keeps the label true
    cy = cx = None
    if label == 1 and mask is not None:
        cells = torch.nonzero(mask[0] > 0)
        pick = cells[int(torch.randint(0, len(cells), (1,)))]
        cy, cx = int(pick[0]), int(pick[1])
    y0, x0 = _offset(H, min(ch, H), cy), _offset(W, min(cw, W), cx)
    y1, x1 = y0 + min(ch, H), x0 + min(cw, W)

    def small(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        return t[..., y0 // STRIDE:y1 // STRIDE, x0 // STRIDE:x1 // STRIDE]

    return x[..., y0:y1, x0:x1], small(mask), small(weights)
