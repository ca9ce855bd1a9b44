"""Tiled scoring of runs trained on crops and several crops per step (issue 18):
defect_studio.kinds.segdec.tiles and .crops."""

from __future__ import annotations

import math

import pytest
import torch

from defect_studio.kinds.segdec.config import TrainConfig
from defect_studio.kinds.segdec.crops import crop_batch, crops_per_step
from defect_studio.kinds.segdec.runmodel import build_run_model
from defect_studio.kinds.segdec.tiles import (
    TiledNet,
    scoring_model,
    tile_boxes,
    tile_starts,
    tile_stride,
)
from defect_studio.training.config import TrainConfigError


@pytest.mark.parametrize("length,tile", [(440, 128), (64, 32), (80, 32), (96, 32), (40, 32),
                                         (1024, 256), (136, 128)])
def test_tiles_cover_the_input_flush_and_on_the_grid(length, tile):
    starts = tile_starts(length, tile)
    assert starts[0] == 0 and starts[-1] == length - tile  # last tile flush with the border
    assert starts == sorted(set(starts))
    assert all(s % 8 == 0 for s in starts)  # each tile's 1/8 map lands on whole cells
    stride = tile_stride(tile)
    assert stride % 8 == 0 and 8 <= stride <= 0.75 * tile
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))  # overlap, no gap
    covered = set()
    for s in starts:
        covered |= set(range(s, s + tile))
    assert covered == set(range(length))
    assert tile_starts(tile, tile) == tile_starts(tile - 8, tile) == [0]


def test_tiled_net_merges_tiles_by_max():
    torch.manual_seed(0)
    cfg = TrainConfig(input_size=(64, 48), channels=1, crop_size=(32, 32))
    net = build_run_model(cfg).eval()
    tiled = scoring_model(net, cfg)
    assert isinstance(tiled, TiledNet)
    assert tiled.boxes == tile_boxes((64, 48), (32, 32)) and len(tiled.boxes) == 6
    x = torch.rand(2, 1, 48, 64)
    with torch.no_grad():
        seg, dec = tiled(x)
        assert seg.shape == (2, 1, 6, 8) and dec.shape == (2,)
        want_seg = torch.full((2, 1, 6, 8), -math.inf)
        want_dec = torch.full((2,), -math.inf)
        for x0, y0, w, h in tiled.boxes:
            s, d = net(x[:, :, y0:y0 + h, x0:x0 + w])
            want_dec = torch.maximum(want_dec, d)
            cells = want_seg[..., y0 // 8:(y0 + h) // 8, x0 // 8:(x0 + w) // 8]
            want_seg[..., y0 // 8:(y0 + h) // 8, x0 // 8:(x0 + w) // 8] = torch.maximum(cells, s)
        assert torch.isfinite(want_seg).all()  # every cell covered by a tile
        assert torch.allclose(dec, want_dec, atol=1e-5)
        assert torch.allclose(seg, want_seg, atol=1e-5)
        tiled.chunk = 2  # fewer tiles per forward pass: the same result
        seg2, dec2 = tiled(x)
    assert torch.allclose(dec2, dec, atol=1e-5) and torch.allclose(seg2, seg, atol=1e-5)
    from defect_studio.kinds.segdec.network import ModelInputError

    with pytest.raises(ModelInputError, match="64x48"):
        tiled(torch.rand(1, 1, 64, 64))


def test_whole_image_runs_are_scored_as_before():
    net = build_run_model(TrainConfig(input_size=(64, 64), channels=1)).eval()
    assert scoring_model(net, TrainConfig(input_size=(64, 64), channels=1)) is net
    # crops as large as the input: nothing to tile
    assert scoring_model(net, TrainConfig(input_size=(64, 64), channels=1,
                                          crop_size=(64, 64))) is net


def _stripe(h=8, w=8, rows=(0,), cols=(0,)):
    m = torch.zeros(1, h, w)
    for r in rows:
        for c in cols:
            m[0, r, c] = 1.0
    return m


def test_random_crops_take_their_label_from_the_mask():
    torch.manual_seed(1)
    x = torch.rand(3, 64, 64)
    mask = _stripe(rows=(0,), cols=(0,))  # one defect cell in the top-left corner
    weights = torch.ones_like(mask)
    labels = {0: 0, 1: 0}
    for _ in range(40):
        crops = crop_batch(x, mask, weights, 1, (32, 32), 4)
        assert len(crops) == 4
        for i, (cx, cm, cw, lab) in enumerate(crops):
            assert cx.shape == (3, 32, 32) and cm.shape == cw.shape == (1, 4, 4)
            assert lab == int(bool((cm > 0).any()))  # the label is what the crop holds
            if i < 2:  # the first half is centred on a defect cell
                assert lab == 1
            else:
                labels[lab] += 1
    assert labels[0] > 0 and labels[1] > 0  # random crops both miss and hold the defect
    # an OK image: k random crops, all OK
    ok = crop_batch(x, torch.zeros_like(mask), weights, 0, (32, 32), 3)
    assert len(ok) == 3 and all(lab == 0 for *_, lab in ok)
    # an image-label-only defective image stays whole, once
    whole = crop_batch(x, None, None, 1, (32, 32), 4)
    assert len(whole) == 1 and whole[0][0] is x and whole[0][3] == 1
    empty = crop_batch(x, torch.zeros_like(mask), weights, 1, (32, 32), 4)
    assert len(empty) == 1 and empty[0][0] is x


def test_crops_per_step_rule_and_hostile_settings():
    assert crops_per_step(TrainConfig(input_size=(440, 440), crop_size=(128, 128))) == 4
    assert crops_per_step(TrainConfig(input_size=(64, 32), crop_size=(32, 32))) == 2
    assert crops_per_step(TrainConfig(input_size=(48, 32), crop_size=(32, 32))) == 1
    assert crops_per_step(TrainConfig(input_size=(64, 64))) == 1
    assert crops_per_step(TrainConfig(input_size=(440, 440), crop_size=(128, 128),
                                      crops_per_step=7)) == 7
    for bad in (0, -1, 65, 10**9, 1.5, "4", True, float("nan"), [2]):
        with pytest.raises(TrainConfigError, match="crops_per_step"):
            TrainConfig(crops_per_step=bad)
    # a run saved before the setting existed trained on one crop per step
    legacy = TrainConfig(input_size=(440, 440), crop_size=(128, 128)).to_dict()
    legacy.pop("crops_per_step")
    assert TrainConfig.from_saved(legacy).crops_per_step == 1
