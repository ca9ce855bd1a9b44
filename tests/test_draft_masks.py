"""Issue 18, the "none" case: draft masks for a project with image labels only
(segdec/drafts.py): where they land, when they are made, and what they leave alone."""

import cv2
import numpy as np
import pytest
import torch

from defect_studio.kinds.segdec.config import TrainConfig
from defect_studio.kinds.segdec.drafts import draft_masks
from defect_studio.training.config import TrainConfigError
from defect_studio.training.sizing import ASSUMED_DEFECT_PX


def _texture(rng, h=32, w=64):
    return torch.from_numpy((rng.random((3, h, w)) * 0.25 + 0.4).astype(np.float32))


def test_drafts_land_on_the_defect_and_a_plain_image_gets_none():
    rng = np.random.default_rng(0)
    ok = [_texture(rng) for _ in range(6)]
    spot = _texture(rng)
    spot[:, 8:14, 40:46] = 1.0  # a bright 6x6 defect
    drafts = draft_masks(ok, {7: spot}, (64, 32))
    assert set(drafts.masks) == {7} and drafts.checked == 1
    m = drafts.masks[7]
    assert m.shape == (32, 64) and m.dtype == bool
    ys, xs = np.nonzero(m)
    assert 4 <= ys.mean() <= 18 and 36 <= xs.mean() <= 50  # around the defect
    assert m.sum() < m.size / 4  # not the whole image
    from defect_studio.kinds.segdec.drafts import Surface

    s = Surface()
    s.fit(ok)
    maxima = [float(s.distance(x).max()) for x in ok]
    # the twin of the plainest OK image stays under the OK images' median maximum: no draft
    plainest = ok[int(np.argmin(maxima))].clone()
    none = draft_masks(ok, {3: plainest}, (64, 32))
    assert none.masks == {} and "draft masks for 0 of 1" in none.note()


def test_hostile_inputs_give_no_draft_not_an_error():
    rng = np.random.default_rng(1)
    ok = [_texture(rng) for _ in range(3)]
    bad = torch.full((3, 32, 64), float("nan"))
    assert draft_masks(ok, {1: bad}, (64, 32)).masks == {}  # NaN pixels: no draft
    assert draft_masks(ok[:1], {1: ok[0]}, (64, 32)).masks == {}  # one OK image: too few
    assert draft_masks(ok, {}, (64, 32)).masks == {}


def _project(tmp_path, n_def=3, n_ok=5, mask_first=False):
    from defect_studio.project import Project

    p = Project.create(tmp_path / "p")
    rng = np.random.default_rng(0)
    for i in range(n_def + n_ok):
        img = (rng.random((64, 128, 3)) * 60 + 100).astype(np.uint8)
        mask = None
        if i < n_def:
            y, x = 10 + 12 * i, 20 + 30 * i
            img[y:y + 6, x:x + 6] = 250
            if mask_first and i == 0:
                mask = np.zeros((64, 128), np.uint8)
                mask[y:y + 6, x:x + 6] = 255
        path = tmp_path / f"i{i}.png"
        cv2.imwrite(str(path), img)
        rec = p.add_image(path, label="defective" if i < n_def else "ok", mask=mask)
        p.set_split(rec.id, "train")
    return p


def _quick(**kw):
    return TrainConfig.preset("quick", max_side=32, cpu_bf16=False, num_threads=1, **kw)


def test_a_project_without_masks_trains_its_defectives_on_drafts(tmp_path):
    from defect_studio.kinds.segdec.data import build_training_data

    with _project(tmp_path) as p:
        data = build_training_data(p, _quick())
        c = data.config
        # the assumed width sizes it (scale 0.5 of 128x64), crops follow
        assert c.input_size == (64, 32) and c.crop_size == (32, 32)
        assert len(data.drafts) == 3 and any("draft masks for 3 of 3" in n for n in data.notes)
        assert all(s.pixel for s in data.train)
        for i in data.positives:
            _, mask, weights = data.item(i)
            assert mask is not None and float(mask.max()) == 1.0 and weights is not None
        assert not any(r.has_mask for r in p.images())  # nothing written to the project
        # the time probe plans the drafted run without computing the drafts
        plan = build_training_data(p, _quick(), drafts=False)
        assert plan.drafts == {} and all(s.pixel for s in plan.train)
        assert plan.config.crop_size == (32, 32)
        from defect_studio.kinds.segdec.probe import plan_run

        steps = {k.key.split("|")[-2]: k for k in plan_run(p, _quick()).steps}
        assert steps["draft"].count == 2 * 5 + 3  # each OK image twice, each defective once


def test_drafts_only_without_any_mask_and_not_when_switched_off(tmp_path):
    from defect_studio.kinds.segdec.data import build_training_data

    with _project(tmp_path, mask_first=True) as p:  # one real mask: the masked rule
        data = build_training_data(p, _quick())
        assert data.drafts == {} and not any("draft masks" in n for n in data.notes)
        level0 = build_training_data(p, _quick(pixel_labels=0))  # masks withheld on purpose
        assert level0.drafts == {}
    with _project(tmp_path / "b") as p:
        off = build_training_data(p, _quick(draft_masks=False))
        assert off.drafts == {} and off.config.input_size == (32, 16)
        assert off.config.crop_size is None
        assert TrainConfig(draft_masks=False).defect_rule().assumed_width is None
        assert TrainConfig().defect_rule().assumed_width == ASSUMED_DEFECT_PX


@pytest.mark.parametrize("bad", ["yes", 1, None, float("nan")])
def test_bad_draft_switch_is_refused(bad):
    with pytest.raises(TrainConfigError, match="draft_masks"):
        TrainConfig(draft_masks=bad).validate()


def test_old_runs_train_without_drafts():
    old = TrainConfig.from_saved({"model": "mffpa", "epochs": 2})
    assert old.draft_masks is False


def test_the_assumed_width_raises_the_scale_only_where_the_image_rule_loses_it():
    from defect_studio.training.sizing import ASSUMED_FLOOR_PX, DefectRule, size_from_data

    rule = DefectRule(assumed_width=ASSUMED_DEFECT_PX)
    big = size_from_data([(1024, 1024)] * 3, 128, rule=rule)  # 3 px -> 0.375 px: raised
    assert big.assumed and big.size == (512, 512) and big.crop == (128, 128)
    # the magnetic tiles' median part: 3 px -> 1.19 px by the image rule, kept as it is
    tiles = size_from_data([(266, 324)] * 3, 128, rule=rule)
    assert not tiles.assumed and tiles.size == (104, 128) and tiles.crop is None
    assert ASSUMED_FLOOR_PX == 1.0
    edge = size_from_data([(384, 384)] * 3, 128, rule=rule)  # exactly 1 px: not raised
    assert not edge.assumed and edge.size == (128, 128)
    # hostile sizes: zero, negative and huge parts never raise past the side cap
    huge = size_from_data([(100000, 100000), (0, 5), (-3, 7)], 128, rule=rule)
    assert huge.assumed and max(huge.size) <= 4096 and huge.crop == (128, 128)


def test_the_surface_is_fitted_on_at_most_max_ok_images_evenly_spaced():
    from defect_studio.kinds.segdec.drafts import MAX_OK_IMAGES, ok_subset

    few = list(range(5))
    assert ok_subset(few) == few
    many = list(range(10 * MAX_OK_IMAGES + 7))
    chosen = ok_subset(many)
    assert len(chosen) == MAX_OK_IMAGES == len(set(chosen))
    assert chosen[0] == 0 and chosen[-1] >= len(many) - 11  # spread to the end
    assert ok_subset([]) == []


def test_the_reason_says_the_defectives_get_draft_masks_only_when_they_will():
    from defect_studio.training.sizing import size_from_data

    drafting = size_from_data([(1024, 1024)] * 3, 128, rule=TrainConfig().defect_rule())
    assert "draft mask" in drafting.reason and "assumed at least 3 px" in drafting.reason
    off = TrainConfig(draft_masks=False, mil_crops=True).defect_rule()
    mil = size_from_data([(1024, 1024)] * 3, 128, rule=off)
    assert "draft mask" not in mil.reason and "top-scoring tile" in mil.reason
    withheld = TrainConfig(pixel_labels=0).defect_rule()  # masks withheld: no assumption
    assert withheld.assumed_width is None and withheld.assumed_then == ""
