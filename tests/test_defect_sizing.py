"""Issue 18: the input size from the defects, crops of large parts, the time estimate, threads."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from defect_studio.demo.generator import DemoSettingsError, check_defect_scale, render_demo_image
from defect_studio.kinds.segdec.config import TrainConfig
from defect_studio.kinds.segdec.crops import crop_sample
from defect_studio.training.config import TrainConfigError
from defect_studio.training.sizing import (
    MAX_INPUT_SIDE,
    MIN_DEFECT_PX,
    DefectWidths,
    box_defect_widths,
    choose_input_size,
    mask_defect_widths,
    size_from_data,
)


def line_mask(h, w, width, y=None):
    m = np.zeros((h, w), np.uint8)
    y = h // 2 if y is None else y
    m[y:y + width, w // 8: w - w // 8] = 255
    return m


# -- widths of the defects ----------------------------------------------------------------

@pytest.mark.parametrize("width", [1, 3, 5, 9])
def test_line_width_is_measured_at_its_widest_point(width):
    assert mask_defect_widths(line_mask(64, 200, width)) == [pytest.approx(width, abs=1.01)]


def test_each_component_is_one_defect_and_specks_are_skipped():
    m = line_mask(100, 200, 3, y=10) | line_mask(100, 200, 7, y=60)
    m[90, 5] = m[90, 6] = 255  # a 2-pixel speck: not a defect
    assert sorted(mask_defect_widths(m)) == [pytest.approx(3, abs=1.01), pytest.approx(7, abs=1.01)]


@pytest.mark.parametrize("mask", [
    np.zeros((50, 50), np.uint8),                    # empty
    np.zeros((0, 0), np.uint8),                      # no pixels at all
    np.ones((1, 1), np.uint8),                       # a 1-px image
    np.full((3, 3), np.nan, np.float32),             # NaN is not a defect
    np.zeros((4,), np.uint8),                        # not an image
])
def test_degenerate_masks_have_no_defects(mask):
    assert mask_defect_widths(mask) == []


def test_all_ones_and_one_row_masks():
    assert mask_defect_widths(np.ones((40, 60), np.uint8)) == [pytest.approx(40, abs=1.01)]
    assert mask_defect_widths(np.ones((1, 30), np.uint8)) == [1.0]  # a 1-px tall image
    assert mask_defect_widths(np.full((6, 6, 3), 255, np.uint8)) == [pytest.approx(6, abs=1.01)]
    assert mask_defect_widths(np.full((20, 20), -3.0)) == []  # negative: background


def test_box_short_sides_skip_bad_boxes():
    class B:
        def __init__(self, w, h):
            self.w, self.h = w, h

    boxes = [B(4, 40), B(30, 12), B(float("nan"), 5), B(-3, 5), B(float("inf"), float("inf")),
             B("x", 5), B(0, 9), object()]
    assert box_defect_widths(boxes) == [4.0, 12.0]


# -- the rule -------------------------------------------------------------------------------

def test_thin_defects_on_large_parts_raise_the_scale_and_crop():
    d = DefectWidths((3.0,) * 20, "masked defects")
    c = size_from_data([(1250, 500)] * 5, max_side=128, multiple=8, min_side=16, defects=d)
    W, H = c.size
    scale = MIN_DEFECT_PX / 3.0
    assert W == pytest.approx(1250 * scale, abs=8) and H == pytest.approx(500 * scale, abs=8)
    assert c.crop == (128, 128)
    assert c.reason.startswith(f"input {W}x{H}: smallest masked defects ~3 px wide: scale 0.5")
    # how the kind scores a crop-trained run is its own note (segdec: tiles), not the rule's
    assert "128x128 crops" in c.reason and "whole image" not in c.reason


def test_tiny_defects_stop_at_full_resolution_and_huge_parts_at_the_side_cap():
    d = DefectWidths((1.0,) * 10, "boxes")
    c = size_from_data([(800, 600)], max_side=256, defects=d)
    assert c.size == (800, 600) and "scale 1" in c.reason and "boxes" in c.reason
    c = size_from_data([(8000, 8000)], max_side=256, defects=d)
    assert max(c.size) <= MAX_INPUT_SIDE and f"capped at {MAX_INPUT_SIDE}" in c.reason
    assert c.crop == (256, 256)


def test_wide_defects_keep_the_image_rule_and_say_so():
    plain = size_from_data([(256, 256)] * 3, max_side=128)
    d = DefectWidths((40.0, 60.0, 80.0), "masked defects")
    c = size_from_data([(256, 256)] * 3, max_side=128, defects=d)
    assert c.size == plain.size == (128, 128) and c.crop is None
    assert "smallest masked defects ~" in c.reason and "at scale 0.5" in c.reason


def test_no_masks_fall_back_to_the_image_rule_and_say_so():
    c = size_from_data([(1250, 500)] * 3, max_side=128)
    assert c.crop is None and max(c.size) == 128
    assert "no masks or boxes" in c.reason and "images only" in c.reason
    # what shrinking 1250 -> 128 costs (9.77x: 1.5 px at the input = ~15 px in the image)
    assert "shrunk 9.77x, a defect must be at least ~15 px wide" in c.reason
    assert "mask a few defects" in c.reason
    small = size_from_data([(100, 60)] * 3, max_side=128)  # not shrunk: nothing to say
    assert "shrunk" not in small.reason and "images only" in small.reason


def _project_with(tmp_path, masks, size=(256, 64)):
    from defect_studio.project import Project

    p = Project.create(tmp_path / "p")
    rng = np.random.default_rng(0)
    for i, m in enumerate(masks):
        img = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
        path = tmp_path / f"img{i}.png"
        import cv2

        cv2.imwrite(str(path), img)
        label = "defective" if m is not None else "ok"
        rec = p.add_image(path, label=label, mask=m)
        p.set_split(rec.id, "train")
    return p


def test_project_masks_choose_the_size_and_crop(tmp_path):
    masks = [line_mask(64, 256, 2, y=10 + 8 * i) for i in range(4)] + [None] * 4
    with _project_with(tmp_path, masks) as p:
        c = choose_input_size(p, TrainConfig(max_side=32))
        assert c.crop == (32, 32) and c.size[0] > 32
        assert "smallest masked defects ~" in c.reason
        # a run with fewer masks (a sweep level) is sized the same: the masks tell the size
        assert choose_input_size(p, TrainConfig(max_side=32, pixel_labels=0)) == c
        from defect_studio.kinds.segdec.data import build_training_data

        data = build_training_data(p, TrainConfig(max_side=32, pixel_labels=0))
        assert data.config.crop_size is None  # no mask kept: a crop could miss the defect
        assert any(n.startswith("no crops") for n in data.notes)
        assert build_training_data(p, TrainConfig(max_side=32)).config.crop_size == (32, 32)


def test_unreadable_and_empty_masks_fall_back(tmp_path):
    masks = [np.zeros((64, 256), np.uint8), line_mask(64, 256, 2), line_mask(64, 256, 2, 9)]
    with _project_with(tmp_path, masks + [None] * 2) as p:
        recs = [r for r in p.images() if r.has_mask and r.label == "defective"]
        (p.masks_dir / f"{recs[0].id}.png").write_bytes(b"not a png")  # damaged file
        c = choose_input_size(p, TrainConfig(max_side=32))
        assert c.size[0] > 32 and c.crop  # the readable mask still counts
        (p.masks_dir / f"{recs[1].id}.png").unlink()  # no readable mask left
        c = choose_input_size(p, TrainConfig(max_side=32))
        assert c.crop is None and "no masks" in c.reason


# -- crops ------------------------------------------------------------------------------------

def _marked_image(H=96, W=160):
    x = torch.zeros(1, H, W)
    mask = torch.zeros(1, H // 8, W // 8)
    mask[0, 9, 15] = 1.0  # one defect cell near the bottom-right corner
    x[0, 72:80, 120:128] = 1.0  # the same place at input resolution
    return x, mask, torch.ones_like(mask)


def test_masked_defective_crops_hold_the_defect_aligned():
    torch.manual_seed(0)
    x, mask, w = _marked_image()
    for _ in range(10):
        cx, cm, cw = crop_sample(x, mask, w, 1, (32, 32))
        assert cx.shape[-2:] == (32, 32) and cm.shape[-2:] == (4, 4) and cw.shape == cm.shape
        assert cm.max() == 1.0
        iy, ix = (int(v) for v in torch.nonzero(cm[0])[0])
        assert float(cx[0, iy * 8:iy * 8 + 8, ix * 8:ix * 8 + 8].min()) == 1.0


def test_ok_crops_are_random_and_label_only_defectives_stay_whole():
    torch.manual_seed(0)
    x, mask, w = _marked_image()
    seen = set()
    for _ in range(20):
        cx, cm, _ = crop_sample(x, torch.zeros_like(mask), w, 0, (32, 40))
        assert cx.shape[-2:] == (40, 32) and cm.shape[-2:] == (5, 4)
        seen.add(float(cx.sum()))
    assert len(seen) > 1  # different places
    whole = crop_sample(x, None, None, 1, (32, 32))
    assert whole[0].shape == x.shape and whole[1] is None
    empty = crop_sample(x, torch.zeros_like(mask), w, 1, (32, 32))  # empty at the input scale
    assert empty[0].shape == x.shape
    small = crop_sample(x[..., :16, :24], mask[..., :2, :3], None, 0, (32, 32))
    assert small[0].shape[-2:] == (16, 24)  # a crop larger than the image: the image


@pytest.mark.parametrize("bad", [[12, 32], [-8, 32], [float("nan"), 8], "32x32", [True, 8],
                                 [8], [0, 0], [16384, 8]])
def test_bad_crop_sizes_are_refused(bad):
    with pytest.raises(TrainConfigError, match="crop_size"):
        TrainConfig(crop_size=bad)


def test_training_on_crops_predicts_whole_images(tmp_path, monkeypatch):
    from defect_studio import load_predictor
    from defect_studio.kinds.segdec.train import train

    masks = ([line_mask(32, 128, 2, y=4 + 6 * i) for i in range(4)] + [None] * 4)
    with _project_with(tmp_path, masks, size=(128, 32)) as p:
        recs = p.images()
        for r in recs[:2] + recs[4:6]:
            p.set_split(r.id, "val")
        root = p.root
    events = []
    cfg = TrainConfig.preset("quick", epochs=1, max_side=32, cpu_bf16=False)
    run_id = train(root, cfg, on_event=events.append)
    saved = json.loads((root / "runs" / run_id / "config.json").read_text())
    assert saved["crop_size"] == [32, 32] and saved["input_size"][0] > 32
    W, H = saved["input_size"]  # several crops per step: the rule of segdec/crops.py
    assert saved["crops_per_step"] == max(1, min(4, W * H // (32 * 32)))
    notes = next(e for e in events if e["event"] == "started")["notes"]
    assert any("crops" in n and "train whole" in n for n in notes)
    pred = load_predictor(root / "runs" / run_id)
    # validation scored the tiles that the Predictor (evaluate, predict) scores: the same AP
    from defect_studio.evaluation.metrics import image_metrics
    from defect_studio.project import Project

    val_ap = json.loads((root / "runs" / run_id / "metrics.json").read_text())["ap"]
    with Project.open(root, readonly=True) as p:
        val = p.images(split="val")
        scores = [pred.predict(p.read_image(r)).score for r in val]
    labels = [int(r.label == "defective") for r in val]
    assert val_ap is not None and 0 < sum(labels) < len(labels)
    assert image_metrics(labels, np.asarray(scores))["ap_sklearn"] == pytest.approx(val_ap)
    import cv2

    img = cv2.imread(str(tmp_path / "img0.png"))
    out = pred.predict(img)
    assert out.heatmap.shape == img.shape[:2] and 0.0 <= out.score <= 1.0
    # the package's manifest says how it covers a part (the ONNX graph itself is skipped
    # here: the export and the runtime's parity are tests/test_deploy*.py's)
    import defect_studio.deploy.onnx_export as onnx_export
    from defect_studio.kinds.segdec.export import export_onnx

    monkeypatch.setattr(onnx_export, "export_graph", lambda *a, **k: None)
    fields = export_onnx(root / "runs" / run_id, tmp_path / "model.onnx")
    # a run trained on crops is scored on crop-size tiles, in the graph (segdec/tiles.py)
    from defect_studio.kinds.segdec.tiles import TiledNet, tile_boxes

    assert isinstance(pred.model, TiledNet)
    boxes = tile_boxes(saved["input_size"], (32, 32))
    tiling = fields["tiling"]
    assert tiling["mode"] == "whole_image" and tiling["tiled_in_graph"] is True
    assert tiling["tiles"] == len(boxes) > 1 and tiling["tile"] == [32, 32]
    assert tiling["boxes"] == [list(b) for b in boxes]
    assert tiling["trained_on_crops"] == [32, 32]
    assert fields["preprocess"]["input_size"] == saved["input_size"]
    # the runtime accepts what the package says (it feeds whole images)
    from defect_studio.deploy.runtime import check_tiling

    check_tiling({"tiling": tiling}, "pkg")


def test_highres_benchmark_mask_levels():
    from benchmarks.highres import mask_levels

    assert mask_levels("none,all,none") == ["none", "all"]
    for bad in ("some", "", "all,../x"):
        with pytest.raises(SystemExit):
            mask_levels(bad)


@pytest.mark.parametrize("tiling", [{"mode": "tiles"}, "grid", 3, {"mode": None}])
def test_runtime_refuses_a_tiling_it_does_not_know(tiling):
    from defect_studio.deploy.package import PackageError
    from defect_studio.deploy.runtime import check_tiling

    check_tiling({}, "pkg")  # an older package: whole image
    check_tiling({"tiling": {"mode": "whole_image"}}, "pkg")
    with pytest.raises(PackageError, match="tiling"):
        check_tiling({"tiling": tiling}, "pkg")


# -- time estimate -----------------------------------------------------------------------------

def test_estimate_times_few_steps_and_caches(tmp_path, monkeypatch):
    from defect_studio.training import estimate

    calls = []
    real = estimate.time_step
    monkeypatch.setattr(estimate, "time_step", lambda fn, steps=3: calls.append(1) or real(fn, 1))
    monkeypatch.setattr(estimate, "_MEMORY", {})
    cfg = TrainConfig.preset("quick", epochs=2, input_size=(32, 32))
    masks = [line_mask(32, 64, 3)] * 2 + [None] * 2
    with _project_with(tmp_path, masks, size=(64, 32)) as p:
        est = estimate.estimate_time(p, cfg)
        n = len(calls)
        assert est.seconds > 0 and n >= 2 and est.plan.epochs == 2
        assert "estimated training time on this machine" in est.text()
        estimate._MEMORY.clear()
        again = estimate.estimate_time(p, cfg)  # from the project's cache file
        assert len(calls) == n and again.seconds == pytest.approx(est.seconds)
        assert estimate.estimate_time(p, cfg.replace(epochs=4)).seconds > est.seconds


def _entry(s=0.5, at=None, host=None):
    import socket
    import time

    return json.dumps({"k": {"s": s, "at": time.time() if at is None else at,
                             "host": socket.gethostname() if host is None else host}})


_GARBAGE = [
    '{"k": NaN}', '[1, 2]', "not json", '{"k": -1}', '{"k": "fast"}', '{"k": 1e300}',
    '{"k": 0.5}',  # a file of the version before: no machine, no time
    _entry(s=float("nan")), _entry(s=-1), _entry(s=1e300), _entry(s="fast"), _entry(s=True),
    _entry(at="today"), _entry(at=float("inf")), _entry(at=None) + "x", _entry(host=7),
    '{"k": {"s": 0.5}}', '{"k": [0.5, 1, "h"]}', '"\u0000"']


# the ids are the same in every xdist worker (the entries hold the time of collection)
@pytest.mark.parametrize("garbage", _GARBAGE, ids=[f"case{i}" for i in range(len(_GARBAGE))])
def test_a_damaged_cache_file_is_ignored(tmp_path, garbage):
    from defect_studio.training import estimate

    path = tmp_path / "step_times.json"
    path.write_text(garbage)
    assert estimate._read_cache(path) == {}
    assert estimate._read_cache(tmp_path) == {}  # a folder where the file should be
    assert estimate._read_cache(Path("/dev/null")) == {}


def test_step_times_of_another_machine_or_too_old_are_measured_again(tmp_path):
    """A project folder moves to another PC, or a week passes (drivers, libraries, the
    machine's usual load): the cached figure is not used; a recent one of this machine is,
    and the line says when it was measured."""
    import time

    from defect_studio.training import estimate

    path = tmp_path / "step_times.json"
    now = time.time()
    path.write_text(_entry(at=now - 3 * 3600))
    assert estimate._read_cache(path) == {"k": (0.5, pytest.approx(now - 3 * 3600))}
    for stale in (_entry(host="other-pc"), _entry(at=now - estimate.CACHE_MAX_AGE_S - 60),
                  _entry(at=now + 3600)):  # a clock set back: not "measured in the future"
        path.write_text(stale)
        assert estimate._read_cache(path) == {}
    # writing keeps the other machine's entry and adds this one's
    path.write_text(_entry(host="other-pc").replace('"k"', '"j"'))
    estimate._write_cache(path, {"k": (0.25, now)})
    data = json.loads(path.read_text())
    assert data["j"]["host"] == "other-pc" and data["k"]["s"] == 0.25
    assert estimate._read_cache(path) == {"k": (0.25, now)}
    # entries too old to be used are dropped when the file is written
    path.write_text(_entry(at=now - estimate.CACHE_MAX_AGE_S - 60).replace('"k"', '"old"'))
    estimate._write_cache(path, {"k": (0.25, now)})
    assert set(json.loads(path.read_text())) == {"k"}


def test_the_line_says_whether_the_steps_were_timed_now_or_when(tmp_path, monkeypatch):
    from defect_studio.training import estimate

    monkeypatch.setattr(estimate, "_MEMORY", {})
    cfg = TrainConfig.preset("quick", epochs=1, input_size=(32, 32))
    with _project_with(tmp_path, [line_mask(32, 64, 3)] * 2 + [None] * 2, size=(64, 32)) as p:
        first = estimate.estimate_time(p, cfg)
        assert first.measured_at is None and "from steps timed now" in first.text()
        path = p.cache_dir / estimate.CACHE_FILE
        data = json.loads(path.read_text())
        path.write_text(json.dumps({k: {**v, "at": v["at"] - 3 * 86400}
                                    for k, v in data.items()}))
        estimate._MEMORY.clear()
        cached = estimate.estimate_time(p, cfg)
        assert cached.seconds == pytest.approx(first.seconds)
        assert "from steps timed 3 days ago on this machine" in cached.text()
        path.write_text(json.dumps({k: {**v, "at": v["at"] - 8 * 86400}
                                    for k, v in data.items()}))
        estimate._MEMORY.clear()
        assert estimate.estimate_time(p, cfg).measured_at is None  # too old: timed again


def test_steps_timed_while_the_cpu_was_busy_are_said_so_and_not_kept(tmp_path, monkeypatch):
    """The form's estimate used to keep figures timed while the machine was busy (32 min
    shown for a run of 6 min 39 s): now such figures serve this estimate, which says so,
    and are timed again the next time."""
    from defect_studio.training import estimate

    monkeypatch.setattr(estimate, "_MEMORY", {})
    shares = iter([0.9, 0.5, 0.95, 0.97])  # busy while timing, then quiet
    monkeypatch.setattr(estimate, "cpu_share", lambda threads: next(shares))
    cfg = TrainConfig.preset("quick", epochs=1, input_size=(32, 32), num_threads=2)
    with _project_with(tmp_path, [line_mask(32, 64, 3)] * 2 + [None] * 2, size=(64, 32)) as p:
        busy = estimate.estimate_time(p, cfg)
        assert busy.busy_share == 0.5 and busy.plan.threads == 2
        assert ("from steps timed now while other programs used the CPU (this run's 2 threads "
                "got 50% of their time): a quiet machine trains faster") in busy.text()
        path = p.cache_dir / estimate.CACHE_FILE
        assert not path.exists() and estimate._MEMORY == {}
        quiet = estimate.estimate_time(p, cfg)  # timed again, kept
        assert quiet.busy_share is None and "from steps timed now)" in quiet.text()
        assert set(estimate._read_cache(path)) == set(quiet.step_s)
        assert estimate.estimate_time(p, cfg).measured_at is not None  # cached: no share


@pytest.mark.real_cpu_share
def test_cpu_share_sees_other_programs_on_every_core():
    """cpu_share on as many threads as cores, beside one spinning process per core: the
    process gets about half of its threads' time (the test machine's own load only lowers
    it further)."""
    import os
    import subprocess
    import sys

    from defect_studio.training.estimate import BUSY_SHARE, cpu_share

    n = os.cpu_count() or 1
    spin = [subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\n"
                              "print('spinning', flush=True)\n"
                              "while time.time() - t < 20: pass"], stdout=subprocess.PIPE)
            for _ in range(n)]
    try:
        for p in spin:  # every one has started
            assert p.stdout.readline().strip() == b"spinning"
        assert cpu_share(n, seconds=0.5) < BUSY_SHARE
    finally:
        for p in spin:
            p.kill()
            p.wait()
            p.stdout.close()


def test_free_share_is_what_other_programs_leave():
    from defect_studio.training.estimate import free_share

    assert free_share(0.0, 2.0, 2, 2) == 1.0
    assert free_share(2.0, 2.0, 2, 2) == pytest.approx(0.5)  # one core of two taken
    assert free_share(2.0, 2.0, 1, 2) == 1.0  # one thread still finds a free core
    assert free_share(9.0, 2.0, 2, 2) == 0.0 and free_share(-5.0, 2.0, 2, 2) == 1.0
    assert free_share(1.0, 0.0, 2, 2) == 0.0  # no time at all: nothing left, no division


@pytest.mark.real_cpu_share
def test_busy_watch_sees_load_between_its_two_samples(monkeypatch):
    """Load that starts after the first sample and ends before the second: the samples
    read a quiet CPU, the other programs' CPU time over the whole timing (Linux) does not."""
    import os
    import subprocess
    import sys
    import time

    from defect_studio.training import estimate

    if estimate._system_busy_s() is None:
        pytest.skip("the OS does not count every program's CPU time (/proc/stat)")
    monkeypatch.setattr(estimate, "cpu_share", lambda threads, seconds=0.2: 1.0)
    n = os.cpu_count() or 1
    done = estimate.busy_watch(n)
    spin = [subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\n"
                              "print('spinning', flush=True)\n"
                              "while time.time() - t < 20: pass"], stdout=subprocess.PIPE)
            for _ in range(n)]
    try:
        for p in spin:
            assert p.stdout.readline().strip() == b"spinning"
        time.sleep(1.5)
    finally:
        for p in spin:
            p.kill()
            p.wait()
            p.stdout.close()
    assert done() < estimate.BUSY_SHARE


def test_long_runs_get_advice():
    from defect_studio.training.estimate import RunPlan, advice, fmt_duration

    plan = RunPlan(steps=[], device="cpu", size=(1024, 1024), epochs=50)
    tips = advice(3600, plan)
    assert any("fewer epochs" in t for t in tips) and any("GPU" in t for t in tips)
    assert advice(60, plan) == []
    assert fmt_duration(45) == "45 s" and fmt_duration(600) == "10 min"
    assert fmt_duration(3 * 3600 + 300) == "3 h 05 min"


def test_the_advice_for_a_long_run_says_how_far_the_defects_let_the_size_shrink():
    """A long run used to be told "a smaller input size ... or crops" whatever the defects:
    on the magnetic tiles (median 267x324, small defects ~4.66 px, quick's cap 128) the
    input is 104x128, where crops of the preset's 128 px cannot help and the defects allow
    only 88x112."""
    from defect_studio.training.estimate import RunPlan, advice
    from defect_studio.training.sizing import DefectWidths, size_from_data

    def plan_for(width_px, sizes=((267, 324),), max_side=128):
        c = size_from_data(list(sizes) * 5, max_side, 8, 16,
                           DefectWidths((width_px,) * 10, "masked defects"))
        return c, RunPlan(steps=[], device="cpu", size=c.size, epochs=8, crop=c.crop,
                          smallest=c.smallest, max_side=max_side)

    c, plan = plan_for(4.66)
    assert (c.size, c.smallest) == ((104, 128), (88, 112))
    tips = advice(3600, plan)
    assert ("a smaller input size, down to 88x112 (now 104x128; below it the small defects "
            "get thinner than the model needs; time grows with the pixels)") in tips
    assert not any("crops" in t for t in tips) and "a GPU (device cuda)" in tips
    # defects that need the scale as it is: no smaller size advised
    c, plan = plan_for(1.5 / (128 / 324))
    assert c.smallest == c.size and not any("input size" in t for t in advice(3600, plan))
    # large defects: at most half the sides (what else the picture loses is the user's call)
    c, plan = plan_for(40.0, sizes=((100, 60),))
    assert (c.size, c.smallest) == ((104, 64), (56, 32))
    # nothing measured, or a size set by hand: the general advice; crops only above max_side
    assert size_from_data([(267, 324)] * 5, 128, 8, 16, None).smallest is None
    hand = RunPlan(steps=[], device="cpu", size=(1024, 1024), epochs=8, max_side=128)
    assert any(t.endswith("or crops") for t in advice(3600, hand))
    small = RunPlan(steps=[], device="cpu", size=(104, 128), epochs=8, max_side=128)
    assert not any("crops" in t for t in advice(3600, small))
    assert advice(60, plan) == []


def test_cli_train_prints_the_estimate_before_training(tmp_path, capsys, monkeypatch):
    import defect_studio.training as training
    from defect_studio.cli import main

    with _project_with(tmp_path, [line_mask(32, 64, 3)] * 2 + [None] * 2, size=(64, 32)) as p:
        root = p.root
    started = []
    monkeypatch.setattr(training, "train", lambda *a, **k: started.append(
        capsys.readouterr().out))
    args = ["train", "--project", str(root), "--preset", "quick", "--epochs", "1", "--size",
            "32x32"]
    assert main(args) == 0
    assert "estimated training time on this machine" in started[0]
    assert "1 epoch at 32x32 on cpu" in started[0]
    assert main(args + ["--no-estimate"]) == 0 and "estimated" not in started[1]
    from defect_studio.training.cli import print_estimate

    assert print_estimate(tmp_path / "none", TrainConfig(), __import__("sys").stdout) is False


def test_train_estimate_only_times_afresh_and_trains_nothing(tmp_path, capsys, monkeypatch):
    """`train --estimate-only`: the Train page's Estimate button on the command line."""
    import defect_studio.training as training
    from defect_studio.cli import main
    from defect_studio.training import estimate

    monkeypatch.setattr(estimate, "_MEMORY", {})
    with _project_with(tmp_path, [line_mask(32, 64, 3)] * 2 + [None] * 2, size=(64, 32)) as p:
        root, cache = p.root, p.cache_dir / estimate.CACHE_FILE
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("it trained"))
    args = ["train", "--project", str(root), "--epochs", "2", "--size", "32x32",
            "--estimate-only"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("estimated training time on this machine: ")
    assert "2 epochs at 32x32 on cpu, from steps timed now" in out
    assert not (root / "runs").exists() or not any((root / "runs").iterdir())
    # figures from a busy hour are replaced, not reused
    data = json.loads(cache.read_text())
    cache.write_text(json.dumps({k: {**v, "s": 5000.0} for k, v in data.items()}))
    estimate._MEMORY.clear()
    assert main(args + ["--events"]) == 0
    event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert event["event"] == "estimate" and event["epochs"] == 2 and event["device"] == "cpu"
    assert 0 < event["seconds"] < 5000 and "from steps timed now" in event["text"]
    assert all(v["s"] < 5000 for v in json.loads(cache.read_text()).values())
    # what cannot be estimated here: a clear line, exit 2, nothing trained
    for extra, says in ((["--resume", "r1"], "cannot go with --resume"),
                        (["--cluster", "127.0.0.1:1"], "cannot go with --cluster"),
                        (["--model", "relational", "--size", "64x64"], "boxes"),
                        (["--epochs", "0"], "epochs"),
                        (["--size", "10x10"], "10x10")):
        assert main(args + extra) == 2, extra
        assert says in capsys.readouterr().err, extra
    with pytest.raises(SystemExit):
        main(args + ["--epochs", "nan"])
    assert main(["train", "--project", str(tmp_path / "none"), "--estimate-only"]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- threads -----------------------------------------------------------------------------------

def test_wait_policy_is_passive_unless_the_user_chose():
    from defect_studio.threads import child_env, quiet_env

    assert quiet_env({})["OMP_WAIT_POLICY"] == "PASSIVE"
    assert quiet_env({"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"
    assert "OMP_WAIT_POLICY" not in quiet_env({"DEFECT_STUDIO_OMP": "default"})
    assert child_env({"PATH": "/bin"}) == {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE"}


def test_onnx_sessions_do_not_spin():
    ort = pytest.importorskip("onnxruntime")
    from defect_studio.threads import quiet_onnx_options

    opts = quiet_onnx_options(ort.SessionOptions())
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_the_command_line_and_the_gui_training_process_get_the_policy():
    import os
    import subprocess
    import sys

    from PySide6.QtCore import QProcessEnvironment

    from defect_studio.app.common.jobs import _insert_thread_policy

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = ("import os\nfrom defect_studio.cli import main\ntry:\n    main(['--version'])\n"
            "except SystemExit:\n    pass\nprint(os.environ.get('OMP_WAIT_POLICY'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "PASSIVE"
    qenv = QProcessEnvironment()
    qenv.insert("PATH", "/bin")
    _insert_thread_policy(qenv)
    assert qenv.value("OMP_WAIT_POLICY") == "PASSIVE" and qenv.value("PATH") == "/bin"


# -- the demo's small defects ------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), 0, -1, 0.01, 1e9, "x", True, None])
def test_bad_defect_scales_are_refused(bad):
    with pytest.raises(DemoSettingsError, match="defect scale"):
        check_defect_scale(bad)


def test_small_defects_on_a_large_demo_part():
    widths = []
    for i in range(6):
        img = render_demo_image(i, True, (384, 384), seed=2, defect_scale=1.0)
        widths += mask_defect_widths(img.mask)
    assert widths and 1 <= np.percentile(widths, 10) <= 6
    grown = []  # default: the defects grow with the part (1.5x at 384 px)
    for i in range(6):
        grown += mask_defect_widths(render_demo_image(i, True, (384, 384), seed=2).mask)
    assert np.median(grown) > np.median(widths)


def test_time_probe_plans_several_crops_per_step_and_tiled_validation(tmp_path):
    from defect_studio.kinds.segdec.probe import plan_run

    cfg = TrainConfig.preset("quick", epochs=2, input_size=(64, 32), crop_size=(32, 32),
                             num_threads=1)
    masks = [line_mask(32, 64, 3)] * 2 + [None] * 2
    with _project_with(tmp_path, masks, size=(64, 32)) as p:
        plan = plan_run(p, cfg)
        train, *rest = plan.steps
        # 2 crops per step (64x32 holds two 32x32 crop areas), timed as one batch of 2
        assert train.key.endswith("|train|32x32x2") and train.count == 2 * (2 + 2)
        assert not any("|train|" in s.key for s in rest)  # every defective image is masked
        assert rest[-1].key.endswith("|eval|64x32|tiles32x32")
        assert rest[-1].phase == "after"  # the final scoring, once past the epochs
        train.measure()  # runs: a batch of 2 crops through the network and back
