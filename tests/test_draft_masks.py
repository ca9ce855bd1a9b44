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


def _texture(rng, h=128, w=256):
    return torch.from_numpy((rng.random((3, h, w)) * 0.25 + 0.4).astype(np.float32))


def test_drafts_land_on_the_defect_and_a_plain_image_gets_none():
    rng = np.random.default_rng(0)
    ok = [_texture(rng) for _ in range(4)]
    spot = _texture(rng)
    spot[:, 32:42, 160:170] = 1.0  # a bright 10x10 defect (drafted at 4x the input)
    drafts = draft_masks(ok, {7: spot}, (64, 32))
    assert set(drafts.masks) == {7} and drafts.checked == 1
    m = drafts.masks[7]
    assert m.shape == (32, 64) and m.dtype == bool
    ys, xs = np.nonzero(m)
    assert 4 <= ys.mean() <= 15 and 36 <= xs.mean() <= 47  # around the defect
    assert m.sum() < m.size / 4  # not the whole image
    from defect_studio.kinds.segdec.drafts import Surface

    s = Surface()
    maxima = [float(s.distance(x).max()) for x in ok]
    # the twin of the plainest OK image stays under the OK images' median maximum: no draft
    plainest = ok[int(np.argmin(maxima))].clone()
    none = draft_masks(ok, {3: plainest}, (64, 32))
    assert none.masks == {} and "draft masks for 0 of 1" in none.note()


def test_the_reference_is_the_image_own_surface_not_the_ok_images_texture():
    # OK images of another surface (a project of several part types): the defect of a
    # defective image is still found against its own surface
    rng = np.random.default_rng(2)
    ok = [torch.from_numpy(np.tile(np.linspace(0, 1, 256, dtype=np.float32), (3, 128, 1)))
          for _ in range(3)]  # smooth gradients
    spot = _texture(rng)
    spot[:, 80:90, 40:50] = 0.0  # a dark 10x10 defect on a noisy surface
    m = draft_masks(ok, {1: spot}, (64, 32)).masks[1]
    ys, xs = np.nonzero(m)
    assert 16 <= ys.mean() <= 26 and 6 <= xs.mean() <= 16 and m.sum() < m.size / 4


def test_a_padded_input_gets_its_draft_inside_the_image_part():
    rng = np.random.default_rng(3)
    ok = [_texture(rng, 192, 256) for _ in range(3)]
    spot = _texture(rng, 192, 256)
    spot[:, 16:26, 120:130] = 1.0
    # resize mode "pad": the 256x192 image is the top-left 43x32 of a 64x32 input
    m = draft_masks(ok, {5: spot}, (64, 32), content={5: (43, 32)}).masks[5]
    assert m.shape == (32, 64) and m.any() and not m[:, 43:].any()
    ys, xs = np.nonzero(m)
    assert ys.mean() <= 8 and 15 <= xs.mean() <= 27


def test_data_parallel_processes_map_only_their_share_and_get_every_draft(monkeypatch):
    # `train --gpus N`: each process maps its share of the images; all get the same drafts,
    # the drafts of one process. Two threads stand for the two processes; the real
    # Shard.gather runs, with all_gather_object exchanging the shares between them.
    import threading

    import torch.distributed as dist

    from defect_studio.kinds.segdec import drafts as mod
    from defect_studio.training import distributed

    rng = np.random.default_rng(5)
    ok = [_texture(rng) for _ in range(5)]
    defective = {}
    for i in range(5):
        img = _texture(rng)
        img[:, 10 + 20 * i:20 + 20 * i, 100:110] = 1.0
        defective[10 + i] = img
    one = draft_masks(ok, defective, (64, 32))
    assert len(one.masks) >= 4

    local, board, barrier = threading.local(), {}, threading.Barrier(2, timeout=60)
    monkeypatch.setattr(distributed, "this_process", lambda: local.shard)

    def all_gather_object(parts, mine):
        board[local.shard.rank] = mine
        barrier.wait()
        parts[:] = [board[r] for r in range(2)]
        barrier.wait()

    monkeypatch.setattr(dist, "all_gather_object", all_gather_object)
    maps, distance = {0: 0, 1: 0}, mod.Surface.distance

    def counted(self, x):
        maps[local.shard.rank] += 1
        return distance(self, x)

    monkeypatch.setattr(mod.Surface, "distance", counted)
    out = {}

    def rank(r):
        local.shard = distributed.Shard(r, 2)
        out[r] = draft_masks(ok, defective, (64, 32))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert maps == {0: 3 + 3, 1: 2 + 2}  # of 5 OK and 5 defective images: 3 and 2 each
    for r in range(2):
        assert out[r].level == pytest.approx(one.level)
        assert out[r].checked == one.checked and out[r].masks.keys() == one.masks.keys()
        for image_id, m in one.masks.items():
            assert np.array_equal(out[r].masks[image_id], m)


def test_the_drafting_size_is_the_image_own_resolution_within_bounds():
    from defect_studio.kinds.segdec.drafts import DRAFT_MAX_PIXELS, draft_size

    assert draft_size((1024, 1024), (512, 512)) == (1024, 1024)  # the part's own pixels
    assert draft_size((1024, 768), (512, 512)) == (768, 768)  # never enlarged on a side
    assert draft_size((100, 100), (512, 512)) == (512, 512)  # never under the input
    w, h = draft_size((8000, 4000), (512, 256))  # bounded: the area cap
    assert w * h <= DRAFT_MAX_PIXELS * 1.01 and w / h == 2 and w >= 512
    for bad in [(float("nan"), 10), (-5, 100), (0, 0), (float("inf"), 9), ("x", 3), (7,),
                None, (1e300, 1e300)]:
        got = draft_size(bad, (64, 32))
        assert got[0] >= 64 and got[1] >= 32 and got[0] * got[1] <= DRAFT_MAX_PIXELS * 1.01


def test_hostile_inputs_give_no_draft_not_an_error():
    rng = np.random.default_rng(1)
    ok = [_texture(rng) for _ in range(3)]
    bad = torch.full((3, 128, 256), float("nan"))
    assert draft_masks(ok, {1: bad}, (64, 32)).masks == {}  # NaN pixels: no draft
    small = [_texture(rng, 64, 128) for _ in range(3)]  # too few cells for a Gaussian
    small[0][:, 20:30, 20:30] = 1.0
    assert draft_masks(small, {1: small[0]}, (64, 32)).masks == {}
    assert draft_masks(ok[:1], {1: ok[0]}, (64, 32)).masks == {}  # one OK image: too few
    assert draft_masks(ok, {}, (64, 32)).masks == {}


def _project(tmp_path, n_def=3, n_ok=5, mask_first=False):
    from defect_studio.project import Project

    p = Project.create(tmp_path / "p")
    rng = np.random.default_rng(0)
    for i in range(n_def + n_ok):
        img = (rng.random((128, 256, 3)) * 60 + 100).astype(np.uint8)
        mask = None
        if i < n_def:
            y, x = 20 + 24 * i, 40 + 60 * i
            img[y:y + 10, x:x + 10] = 250
            if mask_first and i == 0:
                mask = np.zeros((128, 256), np.uint8)
                mask[y:y + 10, x:x + 10] = 255
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
        # the assumed width sizes it (scale 0.5 of 256x128), crops follow
        assert c.input_size == (128, 64) and c.crop_size == (32, 32)
        assert len(data.drafts) == 3 and any("draft masks for 3 of 3" in n for n in data.notes)
        assert all(s.pixel for s in data.train)
        for i in data.positives:
            _, mask, weights = data.item(i)
            assert mask is not None and float(mask.max()) > 0 and weights is not None
            # the target's peak lies on the defect (10x10 at y 20+24k, x 40+60k of 256x128)
            k = data.positives.index(i)
            y, x = divmod(int(mask[0].argmax()), mask.shape[-1])
            sy, sx = 128 / mask.shape[-2], 256 / mask.shape[-1]
            assert abs(y - (25 + 24 * k) / sy) <= 1.5 and abs(x - (45 + 60 * k) / sx) <= 1.5
        assert not any(r.has_mask for r in p.images())  # nothing written to the project
        # the time probe plans the drafted run without computing the drafts
        plan = build_training_data(p, _quick(), drafts=False)
        assert plan.drafts == {} and all(s.pixel for s in plan.train)
        assert plan.config.crop_size == (32, 32)
        from defect_studio.kinds.segdec.probe import plan_run

        steps = {k.key.split("|")[-2]: k for k in plan_run(p, _quick()).steps}
        assert steps["draft"].count == 5 + 3  # each OK and each defective image once
        assert steps["draft"].phase == "before"  # once, in the budget's time


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


def test_the_level_is_set_on_at_most_level_ok_images_evenly_spaced():
    from defect_studio.kinds.segdec.drafts import LEVEL_OK_IMAGES, ok_subset

    few = list(range(5))
    assert ok_subset(few) == few
    many = list(range(10 * LEVEL_OK_IMAGES + 7))
    chosen = ok_subset(many)
    assert len(chosen) == LEVEL_OK_IMAGES == len(set(chosen))
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
