"""Unit tests of the training pieces that need no project: config, losses, sampling,
preprocessing and the model-file checks."""

import json
import pickle

import numpy as np
import pytest
import torch

from defect_studio.errors import ModelFileError
from defect_studio.kinds.segdec.config import TrainConfig
from defect_studio.kinds.segdec.data import preprocess_image, preprocess_mask
from defect_studio.kinds.segdec.losses import (
    balance_weights,
    distance_weights,
    downsample8,
    mixed_loss,
    seg_targets,
)
from defect_studio.kinds.segdec.sampling import EpochSampler
from defect_studio.preprocess import heatmap_to_image
from defect_studio.training.checkpoint import load_torch, save_torch
from defect_studio.training.config import TrainConfigError, parse_size

# -- config -----------------------------------------------------------------------------


def test_config_round_trip_and_file(tmp_path):
    cfg = TrainConfig(model="mixsup", epochs=3, input_size=(64, 32), pixel_labels=2, lr=0.1)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.input_size == (64, 32)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 4, "input_size": "96x48"}))
    from_file = TrainConfig.from_file(path)
    assert from_file.epochs == 4 and from_file.input_size == (96, 48)


@pytest.mark.parametrize("bad, word", [
    ({"epochs": 0}, "epochs"),
    ({"lr": -1}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"resize": "crop"}, "resize"),
    ({"input_size": [64]}, "input_size"),
    ({"neg_sampling": "hard"}, "neg_sampling"),
    ({"dyn_balance": "yes"}, "dyn_balance"),
    ({"augment": 1}, "augment"),
    ({"channels": 2}, "channels"),
    ({"epochz": 3}, "epochz"),
])
def test_config_rejects_bad_values(bad, word):
    with pytest.raises(TrainConfigError, match=word):
        TrainConfig.from_dict(bad)


def test_config_file_errors(tmp_path):
    with pytest.raises(TrainConfigError, match="not found"):
        TrainConfig.from_file(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{epochs: 3")
    with pytest.raises(TrainConfigError, match="cannot read"):
        TrainConfig.from_file(broken)


def test_presets_and_sizes():
    quick, thorough = TrainConfig.preset("quick"), TrainConfig.preset("thorough")
    assert quick.epochs < thorough.epochs
    assert TrainConfig.preset("quick", epochs=2).epochs == 2
    # Augmentation is the user's choice (it stopped the quick preset learning the magnetic
    # tiles, docs/benchmarks.md): off in every preset and by default.
    assert not quick.augment and not thorough.augment and not TrainConfig().augment
    with pytest.raises(TrainConfigError, match="preset"):
        TrainConfig.preset("fast")
    assert parse_size("160x120") == (160, 120) and parse_size("64") == (64, 64)
    with pytest.raises(TrainConfigError, match="WIDTHxHEIGHT"):
        parse_size("big")


def test_augment_moves_image_mask_and_weights_together():
    from defect_studio.kinds.segdec.train import _augment
    torch.manual_seed(0)
    x = torch.zeros(3, 16, 16)
    x[:, 1, 2] = 1.0  # a marked pixel off every symmetry axis
    mask = torch.zeros(1, 16, 16)
    mask[0, 1, 2] = 1.0
    weights = mask * 3 + 1
    seen = set()
    for _ in range(40):
        xa, ma, wa = _augment(x, mask, weights)
        assert xa.shape == x.shape and ma.shape == mask.shape
        pos = tuple(int(v) for v in (xa[0] == 1).nonzero()[0])
        assert tuple(int(v) for v in (ma[0] == 1).nonzero()[0]) == pos
        assert float(wa[0][pos]) == 4.0 and float(wa.sum()) == float(weights.sum())
        seen.add(pos)
    assert len(seen) == 8  # all flips and turns of the square occur
    # Non-square inputs are only flipped (a turn would change the shape); no mask is fine.
    xr, mr, wr = _augment(torch.zeros(1, 8, 16), None, None)
    assert xr.shape == (1, 8, 16) and mr is None and wr is None


# -- losses -----------------------------------------------------------------------------


def test_distance_weights_of_a_rectangle_by_hand():
    mask = np.zeros((12, 12), bool)
    mask[3:8, 2:9] = True  # 5 rows x 7 columns: distances 1 (rim), 2, 3 (centre row)
    w = distance_weights(mask, w_max=2.0, p=2.0)
    assert np.all(w[~mask] == 1.0)
    # d / d_max with d_max = 3, then w_max * (.)^p
    assert w[3, 2] == pytest.approx(2.0 * (1 / 3) ** 2)
    assert w[4, 4] == pytest.approx(2.0 * (2 / 3) ** 2)
    assert w[5, 4] == pytest.approx(2.0)
    assert w[5, 7] == pytest.approx(2.0 * (2 / 3) ** 2)
    # each region is normalised by its own d_max: a 1-pixel-wide line peaks at w_max too
    mask[10, 1:11] = True
    assert np.allclose(distance_weights(mask, 2.0, 2.0)[10, 1:11], 2.0)


def test_downsample_and_targets_shapes():
    assert downsample8(torch.ones(64, 48)).shape == (8, 6)
    assert torch.allclose(downsample8(torch.ones(64, 48)), torch.ones(8, 6))
    mask = np.zeros((64, 64), bool)
    mask[30:34, 30:34] = True
    m, w = seg_targets(mask, dilate=3, dist_weight=True, w_max=3.0, p=2.0)
    assert m.shape == w.shape == (1, 8, 8)
    assert m.max() > 0 and float(m.min()) == 0.0
    m0, w0 = seg_targets(np.zeros((64, 64), bool), dilate=3, dist_weight=True, w_max=3.0, p=2.0)
    assert float(m0.abs().sum()) == 0.0 and torch.allclose(w0, torch.ones_like(w0))


def test_dynamic_balancing_first_and_last_epoch():
    first, last = balance_weights(0, 10, 0.5, True), balance_weights(9, 10, 0.5, True)
    assert (first.seg, first.dec) == (1.0, 0.0)
    assert last.seg == pytest.approx(0.1) and last.dec == pytest.approx(0.45)
    off = balance_weights(9, 10, 0.5, False)
    assert (off.seg, off.dec) == (1.0, 0.5)


def test_image_level_defect_has_no_seg_loss():
    seg = torch.full((1, 4, 4), 3.0, requires_grad=True)
    dec = torch.tensor([0.2], requires_grad=True)
    lw = balance_weights(2, 10, 1.0, True)
    terms = mixed_loss(seg, dec, label=1, mask=None, weights=None, lw=lw)
    assert terms.seg is None
    expected_dec = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(0.2),
                                                                        torch.tensor(1.0))
    assert float(terms.total.detach()) == pytest.approx(lw.dec * float(expected_dec))
    terms.total.backward()
    assert seg.grad is None or float(seg.grad.abs().sum()) == 0.0

    # with a mask both terms count, the seg term weighted per pixel
    mask = torch.zeros(1, 4, 4)
    weights = torch.ones(1, 4, 4)
    weights[0, 0, 0] = 5.0
    t2 = mixed_loss(seg.detach(), dec.detach(), label=0, mask=mask, weights=weights, lw=lw)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(3.0), torch.tensor(0.0))
    assert float(t2.seg) == pytest.approx(float(bce) * (15 + 5) / 16, rel=1e-5)
    assert float(t2.total) == pytest.approx(lw.seg * float(t2.seg) + lw.dec * float(t2.dec),
                                            rel=1e-5)


# -- sampling ---------------------------------------------------------------------------


def test_sampler_each_defective_once_and_least_seen_negatives():
    pos, neg = [0, 1, 2], list(range(10, 20))
    s = EpochSampler(pos, neg, seed=3)
    seen = np.zeros(10, int)
    for _ in range(5):
        items = s.epoch()
        assert sorted(i for i in items if i < 10) == pos
        drawn = [i - 10 for i in items if i >= 10]
        assert len(drawn) == len(set(drawn)) == 3
        seen[drawn] += 1
        # least seen first: the counts never differ by more than one
        assert seen.max() - seen.min() <= 1
    assert list(seen) == list(s.counts)


def test_sampler_is_seeded_and_state_round_trips():
    a, b = (EpochSampler([0, 1], list(range(2, 9)), seed=5),
            EpochSampler([0, 1], list(range(2, 9)), seed=5))
    assert [a.epoch() for _ in range(3)] == [b.epoch() for _ in range(3)]
    state = a.state_dict()
    c = EpochSampler([0, 1], list(range(2, 9)), seed=99)
    c.load_state_dict(state)
    assert [a.epoch() for _ in range(3)] == [c.epoch() for _ in range(3)]
    r = EpochSampler([0], list(range(1, 6)), seed=1, mode="random")
    assert all(len(set(r.epoch())) == 2 for _ in range(4))


# -- preprocessing ------------------------------------------------------------------------


def test_preprocess_image_channels_and_geometry():
    gray = (np.arange(40 * 60) % 256).astype(np.uint8).reshape(40, 60)
    cfg = TrainConfig(input_size=(32, 16), channels=3)
    x = preprocess_image(gray, cfg)
    assert x.shape == (3, 16, 32) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    rgb16 = np.full((20, 20, 3), 65535, np.uint16)
    assert preprocess_image(rgb16,
                            TrainConfig(input_size=(16, 16), channels=1)).shape == (1, 16, 16)
    # "pad": aspect kept, padding zero at the bottom
    padded = preprocess_image(np.full((10, 40), 255, np.uint8),
                              TrainConfig(input_size=(32, 32), channels=1, resize="pad"))
    assert float(padded[0, :8].min()) == pytest.approx(1.0) and float(padded[0, 8:].max()) == 0.0
    back = heatmap_to_image(np.ones((4, 4), np.float32),
                            TrainConfig(input_size=(32, 32), resize="pad"), (10, 40))
    assert back.shape == (10, 40)


def test_preprocess_mask_keeps_tiny_defects():
    mask = np.zeros((256, 256), np.uint8)
    mask[100, 100] = 255  # one pixel: must survive shrinking to 32x32
    small = preprocess_mask(mask, TrainConfig(input_size=(32, 32)))
    assert small.shape == (32, 32) and small.sum() >= 1


# -- model files ----------------------------------------------------------------------------


def _bad_pickle(path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(path, "wb") as f:
        pickle.dump({"w": Evil()}, f)


def test_model_files_are_checked(tmp_path):
    path = save_torch(tmp_path / "model.pt", {"w": torch.arange(1000, dtype=torch.float32)})
    assert torch.equal(load_torch(path)["w"], torch.arange(1000, dtype=torch.float32))

    data = path.read_bytes()
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(tampered))
    with pytest.raises(ModelFileError, match="checksum"):
        load_torch(path)

    path.write_bytes(data[: len(data) // 2])  # truncated, and no checksum to compare with
    (tmp_path / "model.pt.sha256").unlink()
    with pytest.raises(ModelFileError, match="not a readable model file"):
        load_torch(path)

    code = tmp_path / "code.pt"
    _bad_pickle(code)
    with pytest.raises(ModelFileError):
        load_torch(code)
    with pytest.raises(ModelFileError, match="not found"):
        load_torch(tmp_path / "none.pt")
