"""Issue 18 item 6: the input size from the data for the anomaly model and the detector
(one rule, defect_studio.training.sizing, with each kind's DefectRule), and real tiny
training runs that record the chosen size and its reason."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from detection_fixtures import make_box_project

from defect_studio.io.images import write_png_atomic
from defect_studio.kinds.anomaly.config import AnomalyConfig
from defect_studio.kinds.detector.config import (
    MIN_BOX_PX,
    RAISED_SIDE_FACTOR,
    DetectorConfig,
    anchor_shapes,
    anchor_warnings,
    best_anchor_iou,
)
from defect_studio.project import Project
from defect_studio.training.config import TrainConfigError
from defect_studio.training.sizing import (
    MAX_INPUT_SIDE,
    DefectWidths,
    box_shapes,
    choose_input_size,
    measure_defects,
    size_from_data,
)

ANOM = AnomalyConfig.preset("quick")
DET = DetectorConfig.preset("quick")


def masks(width, n=10):
    return DefectWidths((float(width),) * n, "masked defects")


def boxes(w, h, n=10):
    return DefectWidths((float(min(w, h)),) * n, "boxes", ((float(w), float(h)),) * n)


# -- the anomaly model's rule ------------------------------------------------------------

def test_anomaly_min_width_comes_from_its_coarsest_map_tap():
    assert ANOM.defect_rule().min_px == 4.0  # a quarter of a 1/16 cell (taps 1/8 and 1/16)
    assert AnomalyConfig(map_taps=["1/4", "1/8"]).defect_rule().min_px == 2.0
    assert AnomalyConfig(map_taps=["1/16"]).defect_rule().min_px == 4.0
    assert ANOM.defect_rule().splits == ("train", "val") and ANOM.defect_rule().crops


def test_anomaly_thin_defects_on_large_parts_crop_ok_images():
    c = size_from_data([(1250, 500)] * 5, 128, 16, 32, masks(3), ANOM.defect_rule())
    assert c.size == (1248, 496) and c.crop == (128, 128)  # 3 px < 4 px: full resolution
    assert c.reason.startswith("input 1248x496: smallest masked defects ~3 px wide: scale 1")
    c = size_from_data([(1250, 500)] * 5, 128, 16, 32, masks(16), ANOM.defect_rule())
    assert c.size == (320, 128) and c.crop == (128, 128)  # scale 4/16 = 0.25
    assert all(v % 16 == 0 for v in c.size + c.crop)


def test_anomaly_tiny_huge_and_wide_defects():
    tiny = size_from_data([(300, 200)], 128, 16, 32, masks(1), ANOM.defect_rule())
    assert tiny.size == (304, 208) and tiny.crop == (128, 128)
    assert "scale 1 " in tiny.reason  # never upsampled
    huge = size_from_data([(20000, 20000)], 128, 16, 32, masks(2), ANOM.defect_rule())
    assert huge.size == (MAX_INPUT_SIDE, MAX_INPUT_SIDE) and huge.crop == (128, 128)
    assert f"capped at {MAX_INPUT_SIDE}" in huge.reason and "under the 4 px" in huge.reason
    wide = size_from_data([(512, 512)], 128, 16, 32, masks(60), ANOM.defect_rule())
    assert wide.size == (128, 128) and wide.crop is None and "at scale 0.25" in wide.reason


def test_anomaly_without_labels_uses_the_parts_size_capped_at_max_side():
    c = size_from_data([(1250, 500)] * 3, 128, 16, 32, None, ANOM.defect_rule())
    assert c.size == (128, 48) and c.crop is None
    assert "long side capped at 128" in c.reason and "no masks or boxes" in c.reason


def _anomaly_project(tmp_path, size=(96, 48), val_line=2, test_line=None):
    """OK train images and, in the validation split, defective images with a thin line."""
    W, H = size
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir(parents=True)
    p = Project.create(tmp_path / "p")
    for i in range(10):
        img = rng.normal(120, 8, (H, W)).clip(0, 255).astype(np.uint8)
        split = "train" if i < 6 else ("val" if i < 9 else "test")
        label, m = "ok", None
        line = val_line if split == "val" and i % 2 else test_line if split == "test" else None
        if line:
            label = "defective"
            m = np.zeros((H, W), np.uint8)
            m[H // 2:H // 2 + line, 10:W - 10] = 255
            img[m > 0] = 250
        f = src / f"i{i}.png"
        write_png_atomic(f, img)
        p.add_image(f, label=label, mask=m, split=split)
    return p


def test_anomaly_measures_train_and_val_defects_not_test(tmp_path):
    cfg = AnomalyConfig(max_side=32)
    with _anomaly_project(tmp_path / "a", val_line=2) as p:
        c = choose_input_size(p, cfg)
        assert c.size == (96, 48) and c.crop == (32, 32) and "masked defects ~" in c.reason
    with _anomaly_project(tmp_path / "b", val_line=None, test_line=2) as p:
        c = choose_input_size(p, cfg)  # only the test split has a mask: not looked at
        assert c.crop is None and "no masks or boxes" in c.reason and c.size == (32, 32)


@pytest.mark.parametrize("bad", [{"max_side": 8}, {"max_side": math.nan}, {"max_side": "9"},
                                 {"crop_size": [40, 32]}, {"crop_size": [-32, 32]},
                                 {"input_size": [0, 64]}])
def test_anomaly_size_settings_refuse_bad_values(bad):
    with pytest.raises(TrainConfigError):
        AnomalyConfig.from_dict(bad)


def test_anomaly_crops_are_aligned_with_and_without_the_teacher_cache(tmp_path):
    from defect_studio.kinds.anomaly.network import AnomalyNet
    from defect_studio.kinds.anomaly.train import GoodImages, TeacherCache

    with _anomaly_project(tmp_path) as p:
        data = GoodImages(p, AnomalyConfig(max_side=32, num_threads=1, epochs=10, val_every=1))
        assert data.config.input_size == (96, 48) and data.config.crop_size == (32, 32)
        assert data.notes[0].startswith("input 96x48:") and data.notes[1].startswith("crops:")
        # whole-image validation passes are bounded: at most 3 in the run
        assert data.config.val_every == 4 and "every 4 epochs" in data.notes[2]
        assert GoodImages(p, AnomalyConfig(max_side=32, val_every=0)).config.val_every == 0
        model = AnomalyNet(width=16)
        torch.manual_seed(0)
        for mb in (1024, 0):
            data.config = data.config.replace(cache_mb=mb)
            cache = TeacherCache(model, data, torch.device("cpu"))
            assert cache.enabled == bool(mb)
            feats = cache.batch(data.train[:3])
            assert [tuple(f.shape) for f in feats] == [(3, 24, 8, 8), (3, 40, 4, 4),
                                                       (3, 112, 2, 2)]
        # a cached crop is the crop of the whole image's features (1/16 grid)
        data.config = data.config.replace(cache_mb=1024)
        cache = TeacherCache(model, data, torch.device("cpu"))
        cache.batch(data.train[:1])
        whole = cache.store[data.train[0]][2].float()
        crop = cache.batch(data.train[:1])[2][0]
        hits = [(y, x) for y in range(whole.shape[1] - 1) for x in range(whole.shape[2] - 1)
                if torch.equal(whole[:, y:y + 2, x:x + 2], crop)]
        assert hits  # the crop is an aligned window of the whole image's 1/16 map


def test_anomaly_run_records_the_chosen_size_and_predicts_whole_images(tmp_path, monkeypatch):
    from defect_studio.kinds.anomaly.predictor import AnomalyPredictor
    from defect_studio.training import train

    with _anomaly_project(tmp_path) as p:
        root = p.root
        img = p.read_image(p.images(split="val")[0])
    events = []
    cfg = AnomalyConfig.preset("quick", epochs=1, max_side=32, width=16, device="cpu",
                               num_threads=1, val_every=0)
    run = train(root, cfg, run_id="a1", on_event=events.append)
    saved = json.loads((root / "runs" / run / "config.json").read_text())
    assert saved["input_size"] == [96, 48] and saved["crop_size"] == [32, 32]
    notes = events[0]["notes"]
    assert notes[0].startswith("input 96x48: smallest masked defects ~") and "crops" in notes[0]
    pred = AnomalyPredictor(root / "runs" / run, device="cpu").predict(img)
    assert pred.heatmap.shape == img.shape[:2] and 0 <= pred.score < 1
    # the export package says it covers a part in one whole-image pass at input_size (the
    # ONNX graph is skipped here: its parity with the predictor is tests/test_deploy_kinds.py's)
    import defect_studio.deploy.onnx_export as onnx_export
    from defect_studio.kinds.anomaly.export import export_onnx

    monkeypatch.setattr(onnx_export, "export_graph", lambda *a, **k: None)
    fields = export_onnx(root / "runs" / run, tmp_path / "model.onnx")
    assert fields["tiling"] == {"mode": "whole_image", "tiles": 1, "trained_on_crops": [32, 32]}
    assert fields["preprocess"]["input_size"] == [96, 48]


# -- the detector's rule -------------------------------------------------------------------

def test_detector_min_box_side_is_its_finest_stride():
    rule = DET.defect_rule()
    assert rule.min_px == MIN_BOX_PX == 8 and not rule.masks and not rule.crops
    assert rule.max_raised_side == RAISED_SIDE_FACTOR * 160


def test_detector_small_boxes_raise_the_size_up_to_its_cap():
    rule = DET.defect_rule()
    c = size_from_data([(400, 300)] * 3, 160, 32, 64, boxes(10, 30), rule)
    assert c.size == (320, 256) and c.crop is None  # scale 0.8 keeps 8 px
    assert c.reason.startswith("input 320x256: smallest boxes ~10 px wide: scale 0.8")
    assert "whole images at this size" in c.reason and "max_side 160" in c.reason
    c = size_from_data([(2000, 2000)] * 3, 160, 32, 64, boxes(4, 40), rule)
    assert c.size == (320, 320) and "sides capped at 320" in c.reason
    assert "keep 0.64 px, under the 8 px" in c.reason


def test_detector_boxes_the_anchors_cannot_match_are_warned():
    rule = DET.defect_rule()
    ok = size_from_data([(200, 200)] * 3, 160, 32, 64, boxes(40, 50), rule)
    assert ok.size == (160, 160) and "warning" not in ok.reason
    # 5 px boxes: raised to full resolution (192), where the smallest anchor is 14 px
    tiny = size_from_data([(200, 200)] * 3, 160, 32, 64, boxes(5, 5), rule)
    assert tiny.size == (192, 192) and "warning: 10 of 10 boxes overlap no anchor" in tiny.reason
    assert "smaller than the smallest anchor (14 px)" in tiny.reason
    assert "under the 8 px the model needs even at full resolution" in tiny.reason
    big = size_from_data([(200, 200)] * 3, 160, 32, 64, boxes(200, 9), rule)
    assert "too large or too elongated" in big.reason
    # the warning's anchors are the network's
    from defect_studio.kinds.detector.network import build_detector

    net = build_detector(DET.replace(input_size=[160, 96], pretrained=False), 1)
    gen = net.rpn.anchor_generator
    made = torch.cat([gen.generate_anchors(s, a) for s, a in zip(gen.sizes, gen.aspect_ratios)])
    wh = sorted((round(float(x1 - x0)), round(float(y1 - y0))) for x0, y0, x1, y1 in made)
    assert wh == sorted((round(w), round(h)) for w, h in anchor_shapes((160, 96)))
    assert best_anchor_iou(anchor_shapes((160, 96))[7], anchor_shapes((160, 96))) == 1.0


def test_detector_without_boxes_uses_the_image_rule():
    c = size_from_data([(1250, 500)] * 3, 160, 32, 64, None, DET.defect_rule())
    assert c.size == (160, 64) and "no boxes to measure" in c.reason


class _Box:
    def __init__(self, w, h):
        self.w, self.h = w, h


class _FakeProject:
    """A store whose boxes are hostile (what a damaged or foreign store could hold)."""

    def __init__(self, bxs):
        self.bxs = bxs

    def all_boxes(self):
        return {1: self.bxs}


def test_hostile_boxes_are_skipped_or_warned():
    bad = [_Box(math.nan, 5), _Box(-3, 5), _Box(0, 9), _Box(5, 0), _Box(math.inf, 4),
           _Box("x", 4), _Box(None, 4), object()]
    assert box_shapes(bad) == []

    class Rec:
        id, label, has_mask, mask_rough = 1, "defective", False, False

    assert measure_defects(_FakeProject(bad), [Rec()], masks=False) is None
    d = measure_defects(_FakeProject(bad + [_Box(1e12, 1e12), _Box(0.2, 30)]), [Rec()], False)
    assert d.shapes == ((1e12, 1e12), (1.0, 30.0)) and d.widths == (1e12, 1.0)
    c = size_from_data([(200, 200)], 160, 32, 64, d, DET.defect_rule())
    assert max(c.size) <= 320 and "warning: 2 of 2 boxes" in c.reason
    assert anchor_warnings(DefectWidths((), "boxes"), (64, 64), (1.0, 1.0)) == []


def test_hostile_masks_leave_the_anomaly_rule_on_the_image_size(tmp_path):
    with _anomaly_project(tmp_path) as p:
        for r in p.images(split="val"):
            if r.has_mask:
                (p.masks_dir / f"{r.id}.png").write_bytes(b"\x00" * 10)  # damaged mask
        c = choose_input_size(p, AnomalyConfig(max_side=32))
        assert c.crop is None and "no masks or boxes" in c.reason


@pytest.mark.parametrize("bad", [{"max_side": 32}, {"max_side": math.inf}, {"max_side": True},
                                 {"input_size": [32, 64]}])
def test_detector_size_settings_refuse_bad_values(bad):
    with pytest.raises(TrainConfigError):
        DetectorConfig.from_dict(bad)


def test_detector_run_records_the_chosen_size_and_reason(tmp_path):
    from defect_studio.training import train

    root = make_box_project(tmp_path / "proj", size=96)  # bars 6 px tall
    events = []
    cfg = DetectorConfig.preset("quick", model="detector", epochs=1, max_side=64,
                                pretrained=False, num_threads=1, val_every=0)
    run = train(root, cfg, run_id="d1", on_event=events.append)
    saved = json.loads((root / "runs" / run / "config.json").read_text())
    assert saved["input_size"] == [96, 96]  # raised from 64 for the 6 px bars (scale 1)
    note = events[0]["notes"][0]
    assert note.startswith("input 96x96: smallest boxes ~6 px wide: scale 1")
    assert "larger than the preset's max_side 64" in note


def test_train_page_shows_the_anomaly_models_size_and_reason(qtbot, tmp_path):
    from defect_studio.app.train.page import TrainPage

    with _anomaly_project(tmp_path) as p:
        panel = TrainPage()
        qtbot.addWidget(panel)
        panel.set_project(p)
        panel.model_combo.setCurrentIndex(panel.model_combo.findData("anomaly"))
        assert panel.model_combo.currentData() == "anomaly"
        assert (panel.width_spin.value(), panel.height_spin.value()) == (96, 48)
        text = panel.size_reason.text()
        # the quick preset's max_side 128 holds the whole 96x48 part: no crops
        assert text.startswith("input 96x48: smallest masked defects ~") and "crops" not in text
        assert "under the 4 px the model needs" in text
        panel.model_combo.setCurrentIndex(panel.model_combo.findData("relational"))
        assert "no boxes to measure the defects" in panel.size_reason.text()
        assert (panel.width_spin.value(), panel.height_spin.value()) == (96, 64)
        panel.resize(900, 700)
        panel.grab().save(str(tmp_path / "train_page.png"))
