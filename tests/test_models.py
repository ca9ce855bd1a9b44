"""The networks: shapes, gradient-flow switch, sizes against the paper, blocks, model-info."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from defect_studio.cli import main as cli_main
from defect_studio.errors import UserError
from defect_studio.kinds.segdec.blocks import (
    CoordWeight,
    FeatureNorm,
    OutlookAttention,
    PyramidSplitAttention,
    SEWeight,
)
from defect_studio.kinds.segdec.complexity import count_macs, count_params, split_params
from defect_studio.kinds.segdec.models import (
    MODEL_NAMES,
    SegDecNet,
    build_from_spec,
    build_model,
    pad_to_multiple,
    padded_size,
)
from defect_studio.kinds.segdec.network import ModelConfigError, ModelInputError

# Seed paper table 9 at 3x640x232 (W=640, H=232) and the tolerance the brief asks for.
PAPER = {
    "mixsup": (15.64e6, 47.99e9, 0.01),
    "mixsup+mff": (8.58e6, 31.79e9, 0.05),
    "mixsup+pa": (10.87e6, 32.35e9, 0.05),
    "mffpa": (11.29e6, 33.32e9, 0.05),
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes_real_forward(name, channels):
    model = build_model(name, in_channels=channels)
    for h, w in [(64, 96), (96, 64), (64, 64)]:
        seg, dec = model(torch.rand(2, channels, h, w))
        assert seg.shape == (2, 1, h // 8, w // 8)
        assert dec.shape == (2,)
        assert torch.isfinite(seg).all() and torch.isfinite(dec).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shapes_large_and_odd_sizes_on_meta(name):
    # Shapes only (meta tensors): the paper's 232x640 has H/8 = 29, not a multiple of 2.
    model = build_model(name).to("meta")
    for h, w in [(232, 640), (640, 232), (1408, 512), (256, 1600), (72, 200)]:
        seg, dec = model(torch.empty(1, 3, h, w, device="meta"))
        assert tuple(seg.shape) == (1, 1, h // 8, w // 8)
        assert tuple(dec.shape) == (1,)


def test_input_multiple_and_bad_inputs():
    model = build_model("mffpa", in_channels=1)
    assert model.input_multiple == 8
    with pytest.raises(ModelInputError, match="1-channel"):
        model(torch.rand(1, 3, 64, 64))
    with pytest.raises(ModelInputError, match="multiples of 8"):
        model(torch.rand(1, 1, 64, 60))
    with pytest.raises(ModelInputError, match=r"\[B, C, H, W\]"):
        model(torch.rand(1, 64, 64))
    baseline = build_model("mixsup")
    assert baseline.min_input_size == 64  # its decision net pools to 1/64
    with pytest.raises(ModelInputError, match="at least 64"):
        baseline(torch.rand(1, 3, 32, 64))


def test_pad_to_multiple_repeats_edges_and_fits_the_model():
    assert padded_size(232, 640) == (232, 640)
    assert padded_size(230, 641) == (232, 648)
    assert padded_size(20, 100, 8, min_size=64) == (64, 104)
    x = torch.arange(2 * 1 * 13 * 21, dtype=torch.float32).reshape(2, 1, 13, 21)
    y = pad_to_multiple(x)
    assert y.shape == (2, 1, 16, 24)
    torch.testing.assert_close(y[..., :13, :21], x)
    torch.testing.assert_close(y[..., 15, :21], x[..., 12, :])  # bottom rows repeat the last
    torch.testing.assert_close(y[..., :13, 23], x[..., :, 20])
    assert pad_to_multiple(y) is y
    model = build_model("mixsup", in_channels=1)
    seg, _ = model(pad_to_multiple(x, model.input_multiple, model.min_input_size))
    assert seg.shape == (2, 1, 8, 8)


def test_train_and_eval_mode_agree_and_samples_are_independent():
    # No batch statistics anywhere: batch-1 training must behave like inference.
    model = build_model("mffpa")
    x = torch.rand(2, 3, 64, 96)
    model.train()
    seg_t, dec_t = model(x)
    model.eval()
    with torch.no_grad():
        seg_e, dec_e = model(x)
        seg_1, dec_1 = model(x[:1])
    torch.testing.assert_close(seg_t, seg_e)
    torch.testing.assert_close(dec_t, dec_e)
    torch.testing.assert_close(seg_1, seg_e[:1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dec_1, dec_e[:1], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- gradient flow

def _grads_after_decision_loss(model: SegDecNet) -> tuple[float, float]:
    seg, dec = model(torch.rand(1, model.in_channels, 64, 64))
    F.binary_cross_entropy_with_logits(dec, torch.ones_like(dec)).backward()

    def total(mods):
        return sum(float(p.grad.abs().sum()) for m in mods for p in m.parameters()
                   if p.grad is not None)
    return total(model.seg_modules()), total(model.dec_modules())


@pytest.mark.parametrize("name", ["mixsup", "mffpa"])
def test_grad_adjust_blocks_decision_loss_from_seg_net(name):
    model = build_model(name, grad_adjust=True)
    seg_grad, dec_grad = _grads_after_decision_loss(model)
    assert seg_grad == 0.0
    assert all(p.grad is None for m in model.seg_modules() for p in m.parameters())
    assert dec_grad > 0.0

    model = build_model(name, grad_adjust=False)
    seg_grad, dec_grad = _grads_after_decision_loss(model)
    assert seg_grad > 0.0 and dec_grad > 0.0


def test_seg_loss_reaches_seg_net_with_grad_adjust():
    model = build_model("mffpa")
    seg, _ = model(torch.rand(1, 3, 64, 64))
    F.binary_cross_entropy_with_logits(seg, torch.zeros_like(seg)).backward()
    assert model.stem[0].weight.grad is not None and model.stem[0].weight.grad.abs().sum() > 0
    assert model.fusion.attn.v.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- sizes

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_params_and_macs_match_paper(name):
    params_ref, macs_ref, tol = PAPER[name]
    model = build_model(name)
    params = count_params(model)
    macs = count_macs(model, (3, 232, 640))
    assert abs(params / params_ref - 1) <= tol, f"{name}: {params} params vs {params_ref}"
    assert abs(macs / macs_ref - 1) <= tol, f"{name}: {macs} MACs vs {macs_ref}"
    seg, dec = split_params(model)
    assert seg + dec == params


def test_count_macs_by_hand():
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, bias=False),          # 8*10*12 * 4*9
        nn.Conv2d(8, 16, 5, padding=2, groups=4),           # 16*10*12 * 2*25
        nn.Flatten(), nn.Linear(16 * 10 * 12, 5),           # 5 * 1920
    )
    expected = 8 * 120 * 36 + 16 * 120 * 50 + 5 * 1920
    assert count_macs(model, (4, 10, 12)) == expected
    assert count_macs(model, (2, 4, 10, 12)) == 2 * expected
    # the caller's model stays on its device with its weights
    assert model[0].weight.device.type == "cpu"


def test_count_macs_includes_outlook_weighted_sum():
    att = OutlookAttention(32, heads=2, kernel=3)
    h, w = 6, 5
    linear = h * w * (32 * 32 + 32 * 2 * 81 + 32 * 32)
    weighted_sum = h * w * 32 * 81
    total, per = count_macs(att, (32, h, w), per_module=True)
    assert total == linear + weighted_sum
    assert per[""] == weighted_sum


def test_count_macs_rejects_bad_shapes():
    with pytest.raises(ModelInputError):
        count_macs(build_model("mffpa"), (3, 232))
    with pytest.raises(ModelInputError, match="multiples of 8"):
        count_macs(build_model("mffpa"), (3, 230, 640))


# ---------------------------------------------------------------- switches, names, spec

def test_weight_module_switch():
    ca = build_model("mffpa", weight_module="ca")
    se = build_model("mffpa", weight_module="se")
    psa_ca = next(m for m in ca.modules() if isinstance(m, PyramidSplitAttention))
    psa_se = next(m for m in se.modules() if isinstance(m, PyramidSplitAttention))
    assert isinstance(psa_ca.weight, CoordWeight)
    assert isinstance(psa_se.weight, SEWeight)
    assert count_params(ca) != count_params(se)
    assert se(torch.rand(1, 3, 64, 64))[1].shape == (1,)
    assert not any(isinstance(m, PyramidSplitAttention) for m in build_model("mixsup").modules())


def test_switches_override_name_and_spec_round_trip():
    model = build_model("mixsup", mff=True, pa=True, weight_module="se", grad_adjust=False)
    assert model.name == "mffpa"
    spec = json.loads(json.dumps(model.spec()))  # as stored in a run's config.json
    assert spec == {"name": "mffpa", "in_channels": 3, "switches": {
        "mff": True, "pa": True, "weight_module": "se", "grad_adjust": False,
        "norm": "instance"}}
    rebuilt = build_from_spec(spec)
    assert rebuilt.spec() == spec
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 64)
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), rebuilt(x))


def test_unknown_name_and_switch_are_user_errors():
    with pytest.raises(UserError) as e:
        build_model("resnet")
    for name in MODEL_NAMES:
        assert name in str(e.value)
    with pytest.raises(ModelConfigError, match="unknown model switch"):
        build_model("mffpa", attention=True)
    with pytest.raises(ModelConfigError, match="weight_module"):
        build_model("mffpa", weight_module="cbam")
    with pytest.raises(ModelConfigError, match="in_channels"):
        build_model("mffpa", in_channels=0)
    with pytest.raises(ModelConfigError, match="malformed"):
        build_from_spec({"in_channels": 3})
    assert build_model(" MFFPA ", pa=None).name == "mffpa"  # None switches keep the default


# ---------------------------------------------------------------- blocks

def test_feature_norm_is_per_sample_and_per_channel():
    norm = FeatureNorm(3)
    x = torch.randn(2, 3, 5, 7) * torch.tensor([1.0, 10.0, 0.1]).view(1, 3, 1, 1) + 4.0
    y = norm(x)
    torch.testing.assert_close(y.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    var = x.var(dim=(2, 3), correction=0)
    expected_std = torch.sqrt(var / (var + norm.eps))  # eps matters for the 0.1-scaled channel
    torch.testing.assert_close(y.std(dim=(2, 3), correction=0), expected_std)
    with torch.no_grad():
        norm.scale.uniform_(0.5, 2.0)
        norm.shift.uniform_(-1.0, 1.0)
    mean, var = x.mean(dim=(2, 3), keepdim=True), x.var(dim=(2, 3), keepdim=True, correction=0)
    by_formula = (x - mean) / torch.sqrt(var + norm.eps) * norm.scale + norm.shift
    y = norm(x)
    torch.testing.assert_close(y, by_formula, rtol=1e-4, atol=1e-4)
    x2 = x.clone()
    x2[1] *= 100.0
    torch.testing.assert_close(norm(x2)[0], y[0])
    one = torch.randn(1, 3, 1, 1, requires_grad=True)
    out = norm.train()(one)  # a 1x1 map: the shift, no NaN, and it still trains
    torch.testing.assert_close(out, norm.shift.expand_as(out))
    out.sum().backward()
    assert norm.shift.grad is not None


def _outlook_reference(att: OutlookAttention, x: torch.Tensor) -> torch.Tensor:
    """Loop version of outlook attention: every window's output scattered back and summed."""
    b, c, h, w = x.shape
    k, heads = att.kernel, att.heads
    hd, r = c // heads, k // 2
    v = F.pad(att.v(x), (r, r, r, r))
    a = att.attn(x)
    out = torch.zeros(b, c, h + 2 * r, w + 2 * r)
    for i in range(h):
        for j in range(w):
            win = v[:, :, i:i + k, j:j + k].reshape(b, heads, hd, k * k)
            wts = (a[:, :, i, j].reshape(b, heads, k * k, k * k) * att.scale).softmax(-1)
            res = torch.einsum("bnoi,bndi->bndo", wts, win).reshape(b, c, k, k)
            out[:, :, i:i + k, j:j + k] += res
    return att.proj(out[:, :, r:r + h, r:r + w])


def test_outlook_attention_matches_loop_reference():
    att = OutlookAttention(8, heads=2, kernel=3)
    x = torch.randn(2, 8, 4, 5)
    torch.testing.assert_close(att(x), _outlook_reference(att, x), rtol=1e-4, atol=1e-5)


def test_attention_weight_shapes_and_psa():
    x = torch.rand(2, 16, 6, 9)
    assert CoordWeight(16)(x).shape == (2, 16, 6, 9)
    assert SEWeight(16)(x).shape == (2, 16, 1, 1)
    for wm in ("ca", "se"):
        psa = PyramidSplitAttention(64, wm)
        y = psa(torch.rand(2, 64, 6, 9))
        assert y.shape == (2, 64, 6, 9)
    with pytest.raises(ValueError):
        PyramidSplitAttention(48)


# ---------------------------------------------------------------- CLI

def test_model_info_cli_json_all(capsys):
    assert cli_main(["model-info", "--model", "all", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == list(MODEL_NAMES)
    for r in rows:
        assert r["input"] == [3, 640, 232]
        assert r["seg_params"] + r["dec_params"] == r["params"]
        tol = 100 * PAPER[r["model"]][2]
        assert abs(r["deviation_pct"]["params"]) <= tol
        assert abs(r["deviation_pct"]["macs"]) <= tol


def test_model_info_cli_table_other_input_and_errors(capsys):
    assert cli_main(["model-info", "--model", "mixsup", "--input", "1x512x256"]) == 0
    out = capsys.readouterr().out
    assert "mixsup" in out and "1x512x256" in out and "n/a" in out
    assert cli_main(["model-info", "--model", "nope"]) == 2
    assert "mixsup+mff" in capsys.readouterr().err
    assert cli_main(["model-info", "--input", "640x232"]) == 2
    assert "CxWxH" in capsys.readouterr().err
    assert cli_main(["model-info", "--input", "3x641x232"]) == 2
    assert "multiples of 8" in capsys.readouterr().err


@pytest.mark.parametrize("wm", ["ca", "se"])
def test_psa_matches_branch_by_branch_definition(wm):
    psa = PyramidSplitAttention(64, wm)
    x = torch.rand(2, 64, 5, 7)
    feats = [branch(x) for branch in psa.branches]
    weights = torch.stack([psa.weight(f) for f in feats], dim=1).softmax(dim=1)
    expected = torch.cat([f * weights[:, i] for i, f in enumerate(feats)], dim=1)
    torch.testing.assert_close(psa(x), expected)
