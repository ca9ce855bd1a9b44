"""Tiled scoring of runs trained on crops (issue 18): the same everywhere a run scores.

A network trained on crops (segdec/crops.py) has only seen inputs of ``crop_size``; on a
whole image its instance-norm statistics and its globally pooled decision head differ, and
its scores are useless (measured: every whole image ~1.0, AP at chance). So a run with
``crop_size`` smaller than its input scores the image as overlapping tiles of exactly the
crop size:

- tile starts along each axis: 0, stride, 2*stride, ... and a last tile flush with the
  border (``length - tile``); stride = 3/4 of the tile rounded down to the 1/8 grid, so
  every start is a multiple of 8 and each tile's 1/8 map lands on whole output cells;
- all tiles of an image go through the network as one batch (at most ``TILE_CHUNK`` tiles
  per forward pass, to bound memory);
- score = the highest tile decision logit (the sigmoid is monotone: the highest tile
  probability), heatmap = per 1/8 cell the highest logit of the tiles that cover it.

Input size and crop size are fixed per run, so the tile coordinates are static: the same
module is what validation, Predictor and the ONNX export run, and the torch-free runtime
needs no change (the exported graph takes whole images and does the tiling itself).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from defect_studio.kinds.segdec.crops import STRIDE  # tile starts are multiples of it

OVERLAP = 0.75  # tile stride as a fraction of the tile
TILE_CHUNK = 16  # tiles per forward pass (x batch size): bounds peak memory
_LOW = -1.0e4  # "no tile here" in the merged logit map (every cell is covered in the end)


def tile_stride(tile: int) -> int:
    """The stride between tile starts for a tile side: 3/4 of it on the 1/8 grid (>= 8)."""
    return max(STRIDE, int(tile * OVERLAP) // STRIDE * STRIDE)


def tile_starts(length: int, tile: int) -> list[int]:
    """Tile starts along one axis: every ``tile_stride(tile)``, the last one flush with the
    border; one start at 0 when the tile covers the whole length."""
    if tile >= length:
        return [0]
    step = tile_stride(tile)
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_boxes(input_size: tuple[int, int], crop_size: tuple[int, int]
               ) -> list[tuple[int, int, int, int]]:
    """(x0, y0, w, h) of the tiles covering an input (W, H) with tiles of crop (W, H)."""
    W, H = int(input_size[0]), int(input_size[1])
    tw, th = min(int(crop_size[0]), W), min(int(crop_size[1]), H)
    return [(x0, y0, tw, th) for y0 in tile_starts(H, th) for x0 in tile_starts(W, tw)]


@torch.no_grad()
def top_tile(x: torch.Tensor, crop: tuple[int, int], score: Callable[[torch.Tensor], torch.Tensor],
             chunk: int = TILE_CHUNK) -> tuple[torch.Tensor, int]:
    """Multiple-instance learning for an image-label-only defective image (issue 18): of the
    crop-size tiles that cover image ``x`` [C, H, W] (the tiles validation and prediction
    score, segdec/tiles.py), the one whose decision logit ``score(batch [B, C, h, w]) -> [B]``
    is highest, and its index. At least one tile holds the defect, and the image's score is
    the highest tile's, so training that tile as defective trains what is scored; the tiles
    are scored without gradient, ``chunk`` at a time."""
    H, W = int(x.shape[-2]), int(x.shape[-1])
    boxes = tile_boxes((W, H), crop)
    best, best_i = -math.inf, 0
    for i in range(0, len(boxes), max(1, chunk)):
        part = boxes[i:i + max(1, chunk)]
        batch = torch.stack([x[..., y0:y0 + h, x0:x0 + w] for x0, y0, w, h in part])
        logits = score(batch).detach().float().reshape(-1)
        logits = torch.nan_to_num(logits, nan=-math.inf)
        j = int(torch.argmax(logits))
        if float(logits[j]) > best or i == 0:
            best, best_i = float(logits[j]), i + j
    x0, y0, w, h = boxes[best_i]
    return x[..., y0:y0 + h, x0:x0 + w], best_i


def needs_tiles(config: Any) -> bool:
    """Whether a run scores on tiles: trained on crops smaller than its input."""
    crop = getattr(config, "crop_size", None)
    if crop is None:
        return False
    W, H = config.input_size
    return int(crop[0]) < int(W) or int(crop[1]) < int(H)


class TiledNet(torch.nn.Module):
    """A SegDecNet that scores inputs of ``input_size`` as tiles of ``crop_size``.

    ``forward(x)`` takes [B, C, H, W] at the run's input size and returns what the network
    returns for a whole image: seg logits [B, 1, H/8, W/8] (per-cell max over the tiles)
    and decision logits [B] (max over the tiles)."""

    def __init__(self, net: torch.nn.Module, input_size: tuple[int, int],
                 crop_size: tuple[int, int], chunk: int = TILE_CHUNK) -> None:
        super().__init__()
        self.net = net
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.boxes = tile_boxes(self.input_size, crop_size)
        self.chunk = max(1, int(chunk))
        self.input_multiple = getattr(net, "input_multiple", STRIDE)
        self.min_input_size = getattr(net, "min_input_size", 0)

    def tiling(self) -> dict[str, Any]:
        """How this module covers an image (the export package's metadata "tiling"): the
        runtime still feeds one whole image at input_size ("mode": "whole_image", what
        defect_studio.deploy.runtime.check_tiling accepts); the graph tiles and merges."""
        _, _, tw, th = self.boxes[0]
        return {"mode": "whole_image", "tiles": len(self.boxes), "tile": [tw, th],
                "stride": [tile_stride(tw), tile_stride(th)],
                "boxes": [list(b) for b in self.boxes],
                "score": "max of the tiles' decision probabilities",
                "heatmap": "per 1/8 cell, max of the tiles' probabilities covering it",
                "tiled_in_graph": True}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W, H = self.input_size
        if int(x.shape[-1]) != W or int(x.shape[-2]) != H:
            from defect_studio.kinds.segdec.network import ModelInputError

            raise ModelInputError(f"a run scored on tiles takes inputs of {W}x{H}, "
                                  f"got {int(x.shape[-1])}x{int(x.shape[-2])}")
        B = x.shape[0]
        hc, wc = -(-H // STRIDE), -(-W // STRIDE)
        seg_out: torch.Tensor | None = None
        dec_out: torch.Tensor | None = None
        for i in range(0, len(self.boxes), self.chunk):
            boxes = self.boxes[i:i + self.chunk]
            tiles = torch.cat([x[:, :, y0:y0 + th, x0:x0 + tw] for x0, y0, tw, th in boxes], 0)
            seg, dec = self.net(tiles)  # tile j of image b is row j * B + b
            dec = dec.reshape(len(boxes), B)
            d = dec.amax(0)
            dec_out = d if dec_out is None else torch.maximum(dec_out, d)
            for j, (x0, y0, _, _) in enumerate(boxes):
                s = seg[j * B:(j + 1) * B]
                cy, cx = y0 // STRIDE, x0 // STRIDE
                s = F.pad(s, (cx, wc - cx - s.shape[-1], cy, hc - cy - s.shape[-2]),
                          value=_LOW)
                seg_out = s if seg_out is None else torch.maximum(seg_out, s)
        assert seg_out is not None and dec_out is not None
        return seg_out, dec_out

    def spec(self) -> dict:
        return self.net.spec()


def scoring_model(net: torch.nn.Module, config: Any) -> torch.nn.Module:
    """The module that scores whole inputs of a run: ``net`` itself, or ``TiledNet`` around
    it for a run trained on crops smaller than its input (module doc)."""
    if not needs_tiles(config):
        return net
    return TiledNet(net, tuple(config.input_size), tuple(config.crop_size))
