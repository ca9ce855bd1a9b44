"""Issue 18: epochs as passes over the image area for crop runs, and multiple-instance
learning for image-label-only defective images trained on crops."""

import argparse
import json

import cv2
import numpy as np
import pytest
import torch

from defect_studio.kinds.segdec.config import TrainConfig
from defect_studio.kinds.segdec.crops import AREA_EPOCHS_MAX, area_epochs, mask_free
from defect_studio.kinds.segdec.tiles import top_tile
from defect_studio.training.config import TrainConfigError
from defect_studio.training.estimate import RunPlan, TimeEstimate, within_budget
from defect_studio.training.sizing import ASSUMED_DEFECT_PX, DefectRule, size_from_data


def _line(h, w, y):
    m = np.zeros((h, w), np.uint8)
    m[y:y + 2, w // 8:w - w // 8] = 255
    return m


def _project(tmp_path, masks, size=(256, 64)):
    from defect_studio.project import Project

    p = Project.create(tmp_path / "p")
    rng = np.random.default_rng(0)
    for i, m in enumerate(masks):
        path = tmp_path / f"img{i}.png"
        cv2.imwrite(str(path), (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8))
        label = "defective" if m is not None else "ok"  # False: defective, no mask
        rec = p.add_image(path, label=label, mask=m if m is not False else None)
        p.set_split(rec.id, "train")
    return p


# -- the epochs rule ----------------------------------------------------------------------------

def test_area_epochs_rule():
    # the demo-1024 case: 440x440 input, 4 crops of 128x128 per step see 1/2.95 of it
    assert area_epochs(8, (440, 440), (128, 128), 4) == (24, pytest.approx(4 * 128 * 128 / 440**2))
    assert area_epochs(8, (128, 128), (128, 128), 1) == (8, 1.0)  # whole image: unchanged
    assert area_epochs(8, (136, 160), (128, 128), 1)[0] == 11
    assert area_epochs(8, (4096, 4096), (128, 128), 4)[0] == AREA_EPOCHS_MAX * 8  # capped
    assert area_epochs(3, (64, 32), (128, 128), 9)[0] == 3  # never fewer


def test_crop_run_gets_more_epochs_explicit_epochs_win_and_the_budget_caps(tmp_path):
    from defect_studio.kinds.segdec.data import build_training_data

    masks = [_line(64, 256, 10 + 8 * i) for i in range(3)] + [None] * 3
    with _project(tmp_path, masks) as p:
        data = build_training_data(p, TrainConfig.preset("quick", max_side=32, cpu_bf16=False))
        c = data.config
        assert c.crop_size == (32, 32) and c.epochs > 8 and c.max_minutes == 12.0
        expected, _ = area_epochs(8, c.input_size, (32, 32), c.crops_per_step)
        assert c.epochs == expected
        assert data.epochs_note.startswith(f"{c.epochs} epochs: crops see 1/")
        assert "12 min budget" in data.epochs_note and data.epochs_note in data.notes
        # an explicit epoch count wins (the API's override, `train --epochs`, a config file)
        fixed = build_training_data(p, TrainConfig.preset("quick", epochs=8, max_side=32))
        assert fixed.config.epochs == 8 and fixed.config.max_minutes is None
        assert fixed.epochs_note == ""
        # the run's own budget wins over the preset's crop budget
        own = build_training_data(p, TrainConfig.preset("quick", max_side=32, max_minutes=3))
        assert own.config.max_minutes == 3 and "3 min budget" in own.epochs_note
        # no budget at all: the epochs stay, and the note says why
        none = build_training_data(p, TrainConfig.preset("quick", max_side=32,
                                                          crop_budget_minutes=None))
        assert none.config.epochs == 8 and "no time budget" in none.epochs_note
        # whole images (no crops): the preset's epochs
        whole = build_training_data(p, TrainConfig.preset("quick", max_side=512))
        assert whole.config.crop_size is None and whole.config.epochs == 8


def test_train_options_turn_the_rule_off(tmp_path):
    def args(**kw):
        base = dict(preset="quick", config=None, model=None, epochs=None, device=None, seed=None,
                    lr=None, threads=None, size=None, pixel_labels=None, augment=None,
                    cpu_bf16=None)
        return argparse.Namespace(**{**base, **kw})

    assert TrainConfig.from_args(args()).area_epochs is True
    assert TrainConfig.from_args(args(epochs=8)).area_epochs is False
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"epochs": 5}))
    assert TrainConfig.from_args(args(config=str(f))).area_epochs is False
    f.write_text(json.dumps({"lr": 0.01}))
    assert TrainConfig.from_args(args(config=str(f))).area_epochs is True


@pytest.mark.parametrize("bad", [float("nan"), -1, 0, True, "12", 1e9, float("inf")])
def test_bad_crop_budgets_are_refused(bad):
    with pytest.raises(TrainConfigError, match="crop_budget_minutes"):
        TrainConfig(crop_budget_minutes=bad)


@pytest.mark.parametrize("key", ["area_epochs", "mil_crops"])
@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_bad_switches_are_refused(key, bad):
    with pytest.raises(TrainConfigError, match=key):
        TrainConfig(**{key: bad})


def test_old_runs_keep_their_epochs():
    saved = TrainConfig.preset("quick").to_dict()
    for key in ("area_epochs", "crop_budget_minutes", "mil_crops"):
        saved.pop(key)
    old = TrainConfig.from_saved(saved)
    assert old.area_epochs is False and old.crop_budget_minutes is None
    assert old.mil_crops is False


def test_estimate_shows_the_epochs_why_and_where_the_budget_stops():
    assert within_budget(600.0, 24, 5) == (pytest.approx(300.0), 12)
    assert within_budget(200.0, 24, 5) == (200.0, 24)
    assert within_budget(600.0, 24, None) == (600.0, 24)
    assert within_budget(6000.0, 2, 1)[1] == 1  # at least one epoch
    # work before the first epoch (draft masks) counts in the budget, the final scoring
    # after the last epoch does not: 60 s first leave 240 s of the 300 for 25 s epochs
    assert within_budget(600.0, 24, 5, before_s=60.0, after_s=30.0) == (
        pytest.approx(60 + 9 * 25 + 30), 9)
    assert within_budget(200.0, 24, 5, before_s=60.0, after_s=30.0) == (
        pytest.approx(290.0), 24)
    assert within_budget(600.0, 24, None, before_s=60.0, after_s=30.0) == (
        pytest.approx(690.0), 24)
    assert within_budget(600.0, 24, 1, before_s=90.0)[1] == 1  # the budget spent before
    plan = RunPlan(steps=[], device="cpu", size=(440, 440), epochs=24, crop=(128, 128),
                   budget_min=5, epochs_reason="24 epochs: crops see 1/2.95 of each image")
    text = TimeEstimate(300.0, plan, {}, [], 12).text()
    assert "24 epochs at 440x440 (crops 128x128)" in text
    assert "24 epochs: crops see 1/2.95" in text and "stops it after ~12 of 24 epochs" in text


# -- no masks: the assumed defect width --------------------------------------------------------

def test_without_masks_small_defects_are_assumed_and_the_reason_says_so():
    rule = DefectRule(assumed_width=ASSUMED_DEFECT_PX)
    c = size_from_data([(1024, 1024)] * 3, 128, rule=rule)
    assert c.size == (512, 512) and c.crop == (128, 128) and c.defects is None
    assert "assumed at least 3 px wide" in c.reason
    small = size_from_data([(200, 100)] * 3, 128, rule=rule)  # scale >= 0.5 already
    assert small.crop is None and "sized from the images only" in small.reason
    plain = size_from_data([(1024, 1024)] * 3, 128)  # other kinds: the image rule
    assert plain.size == (128, 128) and plain.crop is None
    # the segmentation kind assumes the width with mil_crops or draft masks (the default)
    assert TrainConfig(mil_crops=True, draft_masks=False).defect_rule().assumed_width \
        == ASSUMED_DEFECT_PX
    assert TrainConfig(draft_masks=False).defect_rule().assumed_width is None


# -- multiple-instance learning -----------------------------------------------------------------

def test_top_tile_is_the_highest_scoring_tile():
    x = torch.zeros(1, 96, 160)
    x[0, 70:78, 130:138] = 1.0  # the defect: near the bottom-right corner
    tile, i = top_tile(x, (32, 32), lambda b: b.flatten(1).sum(1), chunk=3)
    assert tile.shape == (1, 32, 32) and float(tile.sum()) == 64.0
    nan = top_tile(x, (32, 32), lambda b: torch.full((len(b),), float("nan")))
    assert nan[0].shape == (1, 32, 32)  # NaN scores never break the choice
    assert mask_free(x, None, (32, 32)) and mask_free(x, torch.zeros(1, 12, 20), (32, 32))
    assert not mask_free(x, torch.ones(1, 12, 20), (32, 32))
    assert not mask_free(x, None, (160, 96))  # not larger than the crop: trains whole


def test_label_only_defectives_train_their_top_tile_and_ok_images_their_crops(tmp_path,
                                                                            monkeypatch):
    from defect_studio.kinds.segdec import train as train_mod

    # image labels only (no mask anywhere): the assumed width raises the scale, crops follow
    with _project(tmp_path, [False] * 2 + [None] * 2, size=(128, 64)) as p:
        assert not any(r.has_mask for r in p.images())
        root = p.root
    tiles, losses = [], []
    real_top, real_loss = train_mod.top_tile, train_mod.mixed_loss

    def top(x, crop, score, chunk=16):
        out = real_top(x, crop, score, chunk)
        tiles.append((tuple(x.shape), tuple(out[0].shape)))
        return out

    def loss(seg, dec, *, label, mask, weights, lw):
        losses.append((label, mask is None or float(mask.max()), tuple(seg.shape)))
        return real_loss(seg, dec, label=label, mask=mask, weights=weights, lw=lw)

    monkeypatch.setattr(train_mod, "top_tile", top)
    monkeypatch.setattr(train_mod, "mixed_loss", loss)
    cfg = TrainConfig.preset("quick", max_side=32, cpu_bf16=False, epochs=1, mil_crops=True,
                             draft_masks=False)
    run_id = train_mod.train(root, cfg)
    saved = json.loads((root / "runs" / run_id / "config.json").read_text())
    W, H = saved["input_size"]
    assert saved["crop_size"] == [32, 32] and W > 32
    # each defective step scored the whole input's tiles and trained one 32x32 tile,
    # label 1, decision loss only (no mask)
    assert len(tiles) == 2 and all(t == ((3, H, W), (3, 32, 32)) for t in tiles)
    positives = [e for e in losses if e[0] == 1.0]
    assert len(positives) == 2 and all(m is True and s[-1] == 32 // 8 for _, m, s in positives)
    # OK images: crops labelled 0 with an all-OK target mask
    negatives = [e for e in losses if e[0] == 0.0]
    assert negatives and all(m == 0.0 and s[-1] == 32 // 8 for _, m, s in negatives)
