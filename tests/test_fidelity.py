"""The fidelity switches of training (docs/models.md, "Training switches"): each formula
checked by hand on a tiny tensor, plus the heatmap cell convention."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from defect_studio.kinds.segdec.blocks import FeatureNorm
from defect_studio.kinds.segdec.losses import (
    LossWeights,
    accumulated_loss,
    balance_epochs,
    balance_weights,
    decision_target,
    dilate_mask,
    downsample8,
    mixed_loss,
    seg_targets,
)
from defect_studio.kinds.segdec.models import build_from_spec, build_model
from defect_studio.training import TrainConfig

X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # one sample, one channel, mean 2.5


def test_norm_original_divides_by_sqrt_of_unbiased_std():
    norm = FeatureNorm(1, mode="original")
    std = math.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 3)  # unbiased: n - 1 = 3
    want = (X - 2.5) / math.sqrt(std + 1e-3)
    assert torch.allclose(norm(X), want, atol=1e-6)
    # the output spread is about the square root of the input spread
    big = FeatureNorm(1, mode="original")(X * 100)
    assert float(big.detach().std()) == pytest.approx(math.sqrt(100) * float(want.std()), rel=1e-3)


def test_norm_instance_is_population_instance_norm():
    norm = FeatureNorm(1, mode="instance")
    var = (1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 4
    assert torch.allclose(norm(X), (X - 2.5) / math.sqrt(var + 1e-3), atol=1e-6)


@pytest.mark.parametrize("mode", ["instance", "original"])
def test_norm_scale_shift_and_one_pixel_map(mode):
    norm = FeatureNorm(1, mode=mode)
    with torch.no_grad():
        norm.scale.fill_(2.0)
        norm.shift.fill_(0.5)
    base = FeatureNorm(1, mode=mode)(X)
    assert torch.allclose(norm(X), base * 2 + 0.5, atol=1e-6)
    one = torch.tensor([[[[7.0]]]], requires_grad=True)
    out = norm(one)
    assert float(out) == pytest.approx(0.5)  # a 1x1 map gives the shift, not NaN
    out.backward()
    assert torch.isfinite(one.grad).all()


def test_norm_switch_builds_the_seg_output_norm_and_old_specs_stay_instance():
    torch.manual_seed(0)
    orig = build_model("mffpa", in_channels=1, norm="original")
    inst = build_model("mffpa", in_channels=1, norm="instance")
    assert orig.seg_norm is not None and inst.seg_norm is None
    assert all(m.mode == "original" for m in orig.modules() if isinstance(m, FeatureNorm)
               and m is not orig.dec_body.body[2].weight.norm)
    x = torch.rand(2, 1, 32, 32)
    seg, _ = orig(x)
    # normalised per image: mean = shift (0 at init) over the 4x4 map
    assert torch.allclose(seg.mean(dim=(2, 3)), torch.zeros(2, 1), atol=1e-5)
    spec = json.loads(json.dumps(orig.spec()))
    assert spec["switches"]["norm"] == "original"
    assert build_from_spec(spec).seg_norm is not None
    old = {"name": "mffpa", "in_channels": 1, "switches": {"mff": True, "pa": True}}
    assert build_from_spec(old).norm == "instance"  # a run saved before the switch


def test_decision_target_is_max_of_downsampled_mask():
    mask = torch.zeros(1, 4, 4)
    mask[0, 1, 2] = 0.4
    mask[0, 2, 2] = 0.25
    assert decision_target(1, mask, "mask_max") == pytest.approx(0.4)
    assert decision_target(1, mask, "label") == 1.0
    assert decision_target(1, None, "mask_max") == 1.0  # image-level defect
    assert decision_target(0, torch.zeros(1, 4, 4), "mask_max") == 0.0
    # a 2-pixel-wide line: at most 2 * 17 of the 17 * 17 pooled pixels are defect
    full = np.zeros((64, 64), bool)
    full[:, 30:32] = True
    m, _ = seg_targets(full, dilate=0, dist_weight=False, w_max=1, p=1)
    assert decision_target(1, m, "mask_max") == pytest.approx(2 / 17, abs=1e-6)
    terms = mixed_loss(torch.zeros(1, 8, 8), torch.tensor([0.3]), label=2 / 17, mask=m,
                       weights=None, lw=LossWeights(0.0, 1.0))
    want = F.binary_cross_entropy_with_logits(torch.tensor(0.3), torch.tensor(2 / 17))
    assert float(terms.dec) == pytest.approx(float(want), rel=1e-6)


def test_dynamic_balancing_turns_off_without_masks(demo_project_dir):
    from defect_studio.kinds.segdec.data import build_training_data
    from defect_studio.project import Project

    with Project.open(demo_project_dir, readonly=True) as p:
        none = build_training_data(p, TrainConfig(pixel_labels=0, input_size=(32, 32)))
        some = build_training_data(p, TrainConfig(pixel_labels=2, input_size=(32, 32)))
        kept = build_training_data(p, TrainConfig(pixel_labels=0, input_size=(32, 32),
                                                  auto_dyn_balance=False))
    assert none.config.dyn_balance is False
    assert any("dynamic balancing off" in n for n in none.notes)
    assert some.config.dyn_balance is True and kept.config.dyn_balance is True


def test_accumulated_losses_are_summed():
    w = torch.tensor(1.0, requires_grad=True)
    losses = [w * 2.0, w * 3.0]
    for loss in losses:
        accumulated_loss(loss, 2, "sum").backward(retain_graph=True)
    assert float(w.grad) == pytest.approx(5.0)  # the original: lr applies per image
    w.grad = None
    for loss in losses:
        accumulated_loss(loss, 2, "mean").backward(retain_graph=True)
    assert float(w.grad) == pytest.approx(2.5)


def test_balance_weight_runs_over_the_epochs_that_fit_the_budget():
    # 10 epochs planned, 60 s each, a 5-minute budget: after epoch 1 about 5 will run
    assert balance_epochs(1, 10, 300.0, 60.0, [60.0]) == 5
    assert balance_epochs(1, 10, None, 60.0, [60.0]) == 10
    assert balance_epochs(3, 10, 300.0, 290.0, [60.0, 50.0, 70.0]) == 3  # no time left
    assert balance_epochs(1, 3, 1e6, 60.0, [60.0]) == 3  # never more than planned
    lw = balance_weights(4, 5, 1.0, True)  # the last epoch that runs
    assert (lw.seg, lw.dec) == pytest.approx((0.2, 0.8))


def test_dilation_at_image_resolution_before_resizing():
    from defect_studio.kinds.segdec.data import mask_targets, preprocess_mask

    full = np.zeros((64, 64), bool)
    full[20, 10:50] = True  # a 1-pixel scratch
    at_image = TrainConfig(input_size=(32, 32), dilate=5, dist_weight=False, dilate_at="image")
    at_input = at_image.replace(dilate_at="input")
    m_img, _ = mask_targets(full, at_image)
    want = downsample8(torch.from_numpy(
        preprocess_mask(dilate_mask(full, 5), at_image).astype(np.float32)))
    assert torch.allclose(m_img[0], want)
    m_in, _ = mask_targets(full, at_input)
    want_in = downsample8(torch.from_numpy(
        dilate_mask(preprocess_mask(full, at_input), 5).astype(np.float32)))
    assert torch.allclose(m_in[0], want_in)
    # 5 image pixels are 2.5 input pixels: the band is thinner than 5 input pixels
    assert float(m_img.sum()) < float(m_in.sum())


def test_target_cell_i_is_centred_on_input_pixel_8i():
    """The training target's convention: cell i averages input pixels 8i-8 .. 8i+8."""
    for c in (16, 24, 40):
        full = np.zeros((64, 64), np.float32)
        full[c - 3:c + 4, c - 3:c + 4] = 1.0  # a 7x7 square centred on pixel (c, c)
        t = downsample8(torch.from_numpy(full))
        i = c // 8
        assert int(t.argmax()) == i * 8 + i  # cell (i, i) of the 8x8 map
        assert float(t[i, i - 1]) == pytest.approx(float(t[i, i + 1]))  # symmetric about i
        assert float(t[i - 1, i]) == pytest.approx(float(t[i + 1, i]))


@pytest.mark.parametrize("resize,shape", [("resize", (64, 64)), ("resize", (96, 128)),
                                          ("resize", (32, 40)), ("pad", (40, 64))])
def test_heatmap_cell_maps_back_to_the_pixel_it_stands_for(resize, shape):
    """One hot cell (i, j) of the 1/8 map, mapped back to the image, is centred where input
    pixel (8i, 8j) is: continuous image coordinate (8i + 0.5) * h / content height (pixel
    index that minus 0.5); the old convention put it 3.5 input pixels further."""
    from defect_studio.preprocess import fit_geometry, heatmap_to_image

    cfg = TrainConfig(input_size=(64, 64), resize=resize)
    h, w = shape
    cw, ch = fit_geometry((h, w), cfg)
    ys, xs = np.mgrid[0:h, 0:w]
    for i, j in ((2, 3), (4, 2)):
        cell = np.zeros((8, 8), np.float32)
        cell[i, j] = 1.0
        back = heatmap_to_image(cell, cfg, (h, w))
        want_y = (8 * i + 0.5) * h / ch - 0.5
        want_x = (8 * j + 0.5) * w / cw - 0.5
        gy, gx = (back * ys).sum() / back.sum(), (back * xs).sum() / back.sum()
        assert (abs(gy - want_y) < 0.05 * h / ch + 1e-3
                and abs(gx - want_x) < 0.05 * w / cw + 1e-3), (gy, gx, want_y, want_x)


def test_best_epoch_rule():
    from defect_studio.kinds.segdec.train import better_epoch

    assert better_epoch(0.5, 1.0, None)
    best = {"epoch": 2, "ap": 0.8, "loss": 0.4}
    assert better_epoch(0.81, 9.0, best)  # higher AP wins whatever the loss
    assert not better_epoch(0.79, 0.1, best)
    assert better_epoch(0.8, 0.3, best)  # a tie goes to the lower loss
    assert not better_epoch(0.8, 0.4, best)  # a full tie keeps the earlier epoch


def test_run_record_says_which_epoch_and_where_the_threshold_came_from(demo_project_dir):
    from gui_support import shrink_train_split

    from defect_studio.project import Project
    from defect_studio.training import train

    with Project.open(demo_project_dir) as p:
        shrink_train_split(p)  # 6 steps per epoch

    cfg = TrainConfig(model="mffpa", epochs=2, input_size=(32, 32), val_every=1, device="cpu",
                      lr=0.01, seed=0)
    events: list[dict] = []
    run = train(demo_project_dir, cfg, run_id="kb", on_event=events.append)
    m = json.loads((demo_project_dir / "runs" / run / "metrics.json").read_text())
    val = [e for e in events if e["event"] == "validation"]
    assert len(val) == 2
    best = max(val, key=lambda e: (e["ap"], -e["loss"]))
    assert m["selection"] == "best_val_ap" and m["best_epoch"] == best["epoch"]
    assert m["split"] == "val" and m["ap"] == pytest.approx(best["ap"])
    # 2 defective / 6 good validation images at ROC AUC 11/12: p = 0.071 in the rank test,
    # not beyond chance, so the threshold stays the decision head's 0.5 and the note says why
    # (a run that separates takes the best-F1 point: test_training_loop)
    sep = m["separation"]
    assert (sep["n_pos"], sep["n_neg"]) == (m["n_pos"], m["n"] - m["n_pos"])
    assert sep["auc"] == pytest.approx(m["auc"]) and not sep["separates"], sep
    assert sep["p_value"] >= 0.05
    assert m["threshold_source"].startswith("default (0.5): validation does not separate")
    thr = json.loads((demo_project_dir / "runs" / run / "threshold.json").read_text())
    assert thr == {"threshold": 0.5, "source": "default"}
    assert "validation does not show the model separating" in events[-1]["note"]
    assert not (demo_project_dir / "runs" / run / "best.pt").exists()
    # without a defective validation image the threshold is not taken from training images
    with Project.open(demo_project_dir) as p:
        for r in p.images(split="val", label="defective"):
            p.set_split(r.id, "test")
    run = train(demo_project_dir, cfg.replace(epochs=1), run_id="noval")
    m = json.loads((demo_project_dir / "runs" / run / "metrics.json").read_text())
    thr = json.loads((demo_project_dir / "runs" / run / "threshold.json").read_text())
    assert m["selection"] == "last_epoch" and thr == {"threshold": 0.5, "source": "default"}
    assert m["threshold_source"].startswith("default")


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_trains_in_bfloat16_and_validates_in_float32(demo_project_dir, monkeypatch,
                                                              native):
    """cpu_bf16: the training forward pass runs under bf16 autocast when the CPU has native
    bf16 (else float32, with a note); validation and the threshold always see float32."""
    from gui_support import shrink_train_split

    import defect_studio.kinds.segdec.train as loop
    from defect_studio.project import Project
    from defect_studio.training import train

    with Project.open(demo_project_dir) as p:
        shrink_train_split(p)
    monkeypatch.setattr(loop, "cpu_bf16_supported", lambda: native)
    seen: list[tuple[bool, torch.dtype]] = []  # (training?, dtype of the first conv's output)
    build = loop.build_run_model

    def spying_build(config):
        model = build(config)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda mod, inp, out: seen.append((mod.training, out.dtype)))
        return model

    monkeypatch.setattr(loop, "build_run_model", spying_build)
    cfg = TrainConfig(model="mffpa", epochs=1, input_size=(32, 32), val_every=1, device="cpu",
                      seed=0, cpu_bf16=True)
    events: list[dict] = []
    run = train(demo_project_dir, cfg, run_id="bf", on_event=events.append)
    train_dtypes = {d for training, d in seen if training}
    eval_dtypes = {d for training, d in seen if not training}
    want = torch.bfloat16 if native else torch.float32
    assert train_dtypes == {want} and eval_dtypes == {torch.float32}
    m = json.loads((demo_project_dir / "runs" / run / "metrics.json").read_text())
    started = next(e for e in events if e["event"] == "started")
    label = "bfloat16 autocast" if native else "float32"
    assert m["train_precision"] == started["precision"] == label
    assert any("no native bf16" in n for n in started["notes"]) is (not native)
    with pytest.raises(Exception, match="cpu_bf16"):
        TrainConfig(cpu_bf16="yes")
