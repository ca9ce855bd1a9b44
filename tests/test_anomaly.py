"""The cold-start anomaly model: teacher, blocks, training job (kind "anomaly"), predictor,
evaluation, AUPRO, and bad input. Tiny images (64x64), 1-2 epochs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from defect_studio.errors import CancelledError, DataError, ModelFileError
from defect_studio.kinds.anomaly.aupro import aupro
from defect_studio.kinds.anomaly.config import AnomalyConfig
from defect_studio.project import Project
from defect_studio.training.config import TrainConfigError

REPO = Path(__file__).resolve().parents[1]
# ImageNet classes: buildings a photo of a Chinese temple/palace may be called, and daisy
DAISY = 985
BUILDINGS = {442: "bell cote", 483: "castle", 497: "church", 663: "monastery", 668: "mosque",
             698: "palace", 832: "stupa"}


def tiny(**overrides):
    base = dict(model="anomaly", epochs=2, input_size=(64, 64), batch=8, seed=0, device="cpu",
                num_threads=1, val_every=1, sigma=2.0, width=64)
    base.update(overrides)
    return AnomalyConfig(**base)


# -- teacher ----------------------------------------------------------------------------

def _photo_probs(model, img, mean, std):
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None] / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x).softmax(1)[0]


def test_teacher_weights_and_normalisation_classify_the_sample_photos():
    from sklearn.datasets import load_sample_images

    from defect_studio.backbones.efficientnet_lite import MEAN, STD, load_efficientnet_lite0

    model = load_efficientnet_lite0()
    china, flower = load_sample_images().images
    p_china = _photo_probs(model, china, MEAN, STD)
    p_flower = _photo_probs(model, flower, MEAN, STD)
    top5_china = set(p_china.topk(5).indices.tolist())
    assert top5_china & set(BUILDINGS), top5_china
    assert int(p_flower.argmax()) == DAISY
    # the other usual convention (ImageNet mean/std) is worse on the flower: ours is the right one
    wrong = _photo_probs(model, flower, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert int(wrong.argmax()) != DAISY and float(wrong[DAISY]) < float(p_flower[DAISY])


def test_teacher_taps_and_frozen():
    from defect_studio.kinds.anomaly.teacher import Teacher

    t = Teacher()
    feats = t(torch.rand(1, 1, 64, 96))  # gray input is repeated to RGB
    assert [tuple(f.shape[1:]) for f in feats] == [(24, 16, 24), (40, 8, 12), (112, 4, 6)]
    assert not any(p.requires_grad for p in t.parameters())
    t.train()
    assert not t.training


# -- blocks -----------------------------------------------------------------------------

def test_simam_is_the_published_formula():
    from defect_studio.kinds.anomaly.network import SimAM

    x = torch.randn(2, 3, 5, 7)
    mu = x.mean(dim=(2, 3), keepdim=True)
    var = ((x - mu) ** 2).sum(dim=(2, 3), keepdim=True) / (5 * 7 - 1)
    expected = x * torch.sigmoid((x - mu) ** 2 / (4 * (var + 1e-4)) + 0.5)
    assert torch.allclose(SimAM()(x), expected, atol=1e-6)
    assert not list(SimAM().parameters())


def test_sspcab_does_not_see_the_centre_and_reports_its_loss():
    from defect_studio.kinds.anomaly.network import SSPCAB

    torch.manual_seed(0)
    block = SSPCAB(4, kernel=1, dilation=1).eval()
    x = torch.randn(1, 4, 9, 9)
    y = block(x)
    assert y.shape == x.shape
    assert torch.isclose(block.last_loss, F.mse_loss(y, x))
    x2 = x.clone()
    x2[0, :, 4, 4] += 10.0  # change only the centre pixel
    y2 = block(x2)
    # SE attention pools globally, so compare before it: the corner convs at (4, 4) only
    pre = lambda inp: sum(c(F.pad(inp, [2] * 4)[..., r:r + 9, q:q + 9])  # noqa: E731
                          for c, (r, q) in zip(block.corners, ((0, 0), (0, 4), (4, 0), (4, 4))))
    assert torch.allclose(pre(x)[..., 4, 4], pre(x2)[..., 4, 4])
    assert not torch.allclose(pre(x)[..., 2, 2], pre(x2)[..., 2, 2])  # the diagonal corner sees it
    assert not torch.allclose(y, y2)


def test_anomaly_map_is_zero_where_student_equals_teacher():
    from defect_studio.kinds.anomaly.network import AnomalyNet, disagreement

    t = [torch.randn(2, 24, 16, 16), torch.randn(2, 40, 8, 8), torch.randn(2, 112, 4, 4)]
    same = disagreement(t, t, (64, 64), sigma=2.0)
    assert same.shape == (2, 64, 64) and float(same.abs().max()) < 1e-5
    s = [x.clone() for x in t]
    s[0][:, :, 2, 3] *= -1  # one feature vector flipped at 1/4: a local disagreement of 2
    d = disagreement(t, s, (64, 64), sigma=0.0)
    assert d[0].argmax() // 64 in range(8, 14) and d[0].argmax() % 64 in range(12, 18)
    net = AnomalyNet(sspcab=False, simam=False, width=32)
    out = net(torch.rand(1, 3, 64, 48))
    assert out.shape == (1, 64, 48)
    assert float(net.to_score(net.raw_threshold)) == pytest.approx(0.5)
    assert "teacher.net._conv_stem.weight" not in net.student_state()
    coarse = AnomalyNet(sspcab=False, simam=False, width=32, map_taps=("1/8", "1/16"),
                        teacher=net.teacher)
    coarse.load_student_state(net.student_state())
    x = torch.rand(1, 3, 64, 64)
    net.eval()
    feats = net.teacher(x)
    s = net.student(feats)
    expected = disagreement(feats[1:], s[1:], (64, 64), net.sigma)
    assert torch.allclose(coarse.eval()(x), expected, atol=1e-5)


# -- training job ----------------------------------------------------------------------

def test_train_on_good_parts_then_predict_and_evaluate(demo_project_dir):
    from defect_studio.evaluation import evaluate_run
    from defect_studio.inference import load_predictor
    from defect_studio.io.images import read_image
    from defect_studio.training import train

    events = []
    run_id = train(demo_project_dir, tiny(), run_id="a1", on_event=events.append)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("epoch") == 2 and kinds.count("checkpoint") == 2
    assert kinds.count("validation") == 2
    with Project.open(demo_project_dir, readonly=True) as p:
        n_ok = len(p.images(split="train", label="ok"))
        test_recs = p.images(split="test")
        paths = [p.image_path(r) for r in test_recs]
    assert events[0]["n_train"] == n_ok  # OK images only
    epoch_events = [e for e in events if e["event"] == "epoch"]
    assert [e["teacher_runs"] for e in epoch_events] == [n_ok, n_ok]  # cached: once per run
    for key in ("loss", "loss_seg", "loss_dec", "w_seg", "w_dec"):
        assert np.isfinite(epoch_events[-1][key])
    run = demo_project_dir / "runs" / run_id
    for name in ("config.json", "status.json", "checkpoint.pt", "model.pt", "model.pt.sha256",
                 "metrics.json", "threshold.json", "events.jsonl"):
        assert (run / name).is_file(), name
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert json.loads((run / "threshold.json").read_text())["threshold"] == 0.5
    saved = torch.load(run / "model.pt", weights_only=True)
    assert float(saved["raw_threshold"]) > 0 and not any(k.startswith("teacher.") for k in saved)

    pred = load_predictor(run, device="cpu")
    assert type(pred).__name__ == "AnomalyPredictor" and pred.run_id == "a1"
    img = read_image(paths[0])
    out = pred.predict(img)
    assert out.heatmap.shape == img.shape[:2] and 0 <= out.score < 1
    assert out.heatmap.max() <= out.score + 0.05  # image score = max of the map
    many = list(pred.predict_many([str(paths[0]), "/no/such.png"]))
    assert many[0][1].score == pytest.approx(out.score, abs=1e-5) and isinstance(many[1][1], str)

    result = evaluate_run(demo_project_dir, run_id, "test", device="cpu")
    for key in ("ap_sklearn", "ap_trapz", "auc", "image_auroc", "run_threshold", "best_f1",
                "pr_curve", "roc_curve", "files", "n", "n_pos"):
        assert key in result
    assert result["model"] == "anomaly" and result["n"] == len(test_recs)
    assert result["pixel"]["pixel_auroc"] is not None and 0 <= result["pixel"]["aupro"] <= 1
    assert (run / "evaluation_test.json").is_file() and (run / "scores.csv").is_file()


def test_cancel_and_resume_give_the_uninterrupted_result(demo_project_dir):
    from defect_studio.training import train

    full = []
    train(demo_project_dir, tiny(val_every=0), run_id="full", on_event=full.append)
    calls = {"n": 0}
    steps = next(e["steps"] for e in full if e["event"] == "progress")

    def stop():
        calls["n"] += 1
        return calls["n"] > steps  # during epoch 2

    with pytest.raises(CancelledError, match="--resume part"):
        train(demo_project_dir, tiny(val_every=0), run_id="part", should_stop=stop)
    status = json.loads((demo_project_dir / "runs" / "part" / "status.json").read_text())
    assert status["state"] == "cancelled" and status["epoch"] == 1
    resumed = []
    train(demo_project_dir, None, run_id="part", resume=True, on_event=resumed.append)
    a = [e["loss"] for e in full if e["event"] == "epoch"][-1]
    b = [e["loss"] for e in resumed if e["event"] == "epoch"][-1]
    # teacher features are the same stored float16 values in both runs, from the first epoch on
    assert b == pytest.approx(a, rel=1e-6)
    with pytest.raises(TrainConfigError, match="already finished"):
        train(demo_project_dir, None, run_id="part", resume=True)


def test_no_ok_image_is_a_clear_error_and_unlabeled_can_be_allowed(demo_project_dir):
    from defect_studio.training import train

    with Project.open(demo_project_dir) as p:
        for r in p.images(split="train", label="ok"):
            p.set_label(r.id, "unlabeled")
    events = []
    with pytest.raises(DataError, match="label some good images OK"):
        train(demo_project_dir, tiny(), on_event=events.append)
    assert events[-1]["event"] == "error"
    events = []
    train(demo_project_dir, tiny(include_unlabeled=True, epochs=1), run_id="u",
          on_event=events.append)
    assert events[0]["n_train"] > 0 and "unlabeled" in events[0]["notes"][0]


def test_tampered_model_file_is_refused(demo_project_dir):
    from defect_studio.inference import load_predictor
    from defect_studio.training import train

    train(demo_project_dir, tiny(epochs=1, val_every=0), run_id="t")
    model = demo_project_dir / "runs" / "t" / "model.pt"
    model.write_bytes(model.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="checksum"):
        load_predictor(model.parent, device="cpu")


def test_cli_trains_the_anomaly_model(demo_project_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "defect_studio", "train", "--project", str(demo_project_dir),
           "--model", "anomaly-kd", "--epochs", "1", "--size", "64", "--threads", "1",
           "--device", "cpu", "--run-id", "cli", "--events"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["event"] == "started" and events[-1]["event"] == "finished"
    assert events[0]["config"]["model"] == "anomaly-kd"
    assert (demo_project_dir / "runs" / "cli" / "model.pt").is_file()


# -- config and hostile input --------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    {"lr": float("nan")}, {"lr": -1}, {"epochs": 0}, {"epochs": "3"}, {"epochs": True},
    {"input_size": [60, 64]}, {"input_size": [10**6, 64]}, {"input_size": "../64"},
    {"model": "mffpa"}, {"sspcab": "yes"}, {"ok_percentile": 101}, {"sigma": float("inf")},
    {"cache_mb": -1}, {"no_such_key": 1}, {"include_unlabeled": 1},
    {"map_taps": []}, {"map_taps": ["1/2"]}, {"map_taps": "1/4"}, {"map_taps": ["1/8", "1/8"]},
])
def test_bad_settings_are_refused_with_the_field_name(bad):
    with pytest.raises(TrainConfigError) as e:
        AnomalyConfig.from_dict({**AnomalyConfig().to_dict(), **bad})
    assert next(iter(bad)).replace("input_", "") in str(e.value)


def test_config_roundtrip_switches_and_files(tmp_path):
    c = AnomalyConfig.preset("quick", model="anomaly-sspcab", simam=True,
                             map_taps=["1/16", "1/8"])
    assert c.map_taps == ("1/8", "1/16")
    assert AnomalyConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.switches() == {"sspcab": True, "simam": True}
    assert AnomalyConfig(model="anomaly-kd").switches() == {"sspcab": False, "simam": False}
    import argparse

    args = argparse.Namespace(model="anomaly", preset=None, config=str(tmp_path / "c.json"),
                              epochs=None, size=None, device=None, seed=None, lr=None,
                              threads=None, pixel_labels=None, augment=None)
    with pytest.raises(TrainConfigError, match="not found"):
        AnomalyConfig.from_args(args)
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(TrainConfigError, match="JSON object"):
        AnomalyConfig.from_args(args)
    (tmp_path / "c.json").write_text('{"epochs": -5}')
    with pytest.raises(TrainConfigError, match="epochs"):
        AnomalyConfig.from_args(args)
    (tmp_path / "c.json").write_text('{"epochs": 5, "include_unlabeled": true}')
    got = AnomalyConfig.from_args(args)
    assert got.epochs == 5 and got.include_unlabeled
    args.pixel_labels = 3  # a mixed-supervision option
    with pytest.raises(TrainConfigError, match="does not apply to the anomaly model"):
        AnomalyConfig.from_args(args)
    args.pixel_labels, args.cpu_bf16 = None, True  # a segdec-only option
    with pytest.raises(TrainConfigError, match="--cpu-bf16 does not apply"):
        AnomalyConfig.from_args(args)


def test_kind_registration():
    from defect_studio.kinds import kind_of_model

    for name in ("anomaly", "anomaly-sspcab", "anomaly-kd"):
        kind = kind_of_model(name)
        assert kind.name == "anomaly" and kind.trains_on == "ok_only"
        assert kind.load("config") is AnomalyConfig
        assert callable(kind.load("train")) and callable(kind.load("evaluate"))


# -- AUPRO ------------------------------------------------------------------------------

def test_aupro_perfect_inverted_and_random():
    m = np.zeros((120, 120), np.uint8)
    m[10:40, 10:40] = 1
    m[80:83, 90:93] = 1  # a small region counts as much as the big one
    assert aupro([m], [m.astype(float)]) == pytest.approx(1.0)
    assert aupro([m], [-m.astype(float)]) == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    noise = [rng.random(m.shape), rng.random(m.shape)]
    assert aupro([m, m], noise) == pytest.approx(0.15, abs=0.05)
    big_only = rng.random(m.shape) * 0.5
    big_only[10:40, 10:40] = 1  # finds the big defect; the small one looks like background:
    # PRO = (1 + FPR) / 2, so AUPRO = 0.5 + 0.5 * 0.15
    assert aupro([m], [big_only]) == pytest.approx(0.575, abs=0.03)
    assert aupro([np.zeros_like(m)], [rng.random(m.shape)]) is None


def test_aupro_bad_input():
    m = np.zeros((8, 8))
    with pytest.raises(DataError, match="NaN"):
        aupro([m], [np.full((8, 8), np.nan)])
    with pytest.raises(DataError):
        aupro([m], [np.zeros((8, 9))])
    with pytest.raises(DataError):
        aupro([m], [])


def test_without_cache_room_the_teacher_runs_once_per_image_per_epoch(demo_project_dir):
    from defect_studio.training import train

    events = []
    train(demo_project_dir, tiny(cache_mb=0, val_every=0), run_id="nc", on_event=events.append)
    n = events[0]["n_train"]
    assert [e["teacher_runs"] for e in events if e["event"] == "epoch"] == [n, 2 * n]


# -- the time estimate before a run (issue 18, item 3) -------------------------------------

@pytest.mark.parametrize("cache_mb, crop", [(2048, None), (0, (32, 32))])
def test_time_probe_plans_the_steps_the_run_takes(demo_project_dir, cache_mb, crop):
    """The plan counts what the run does: ceil(n / batch) steps per epoch (the last, smaller
    batch timed as a full one), the teacher once per image in the run's batches when its
    features fit the cache (else inside every step), scoring 8 whole images at a time
    every val_every epochs on val holding both classes and once after the last epoch."""
    from defect_studio.kinds.anomaly.probe import plan_run
    from defect_studio.training import train

    cfg = tiny(epochs=3, batch=7, cache_mb=cache_mb, val_every=2, crop_size=crop)
    with Project.open(demo_project_dir, readonly=True) as p:
        plan = plan_run(p, cfg)
        n = len(p.images(split="train", label="ok"))
        val = [r for r in p.images(split="val") if r.label in ("ok", "defective")]
    assert n % 7 and {r.label for r in val} == {"ok", "defective"}
    ceil = lambda a, b: -(-a // b)  # noqa: E731
    size = f"{crop[0]}x{crop[1]}" if crop else "64x64"
    b = min(8, len(val))
    want = [("train" + ("" if cache_mb else "+teacher"), f"{size}x7", 3 * ceil(n, 7), "epoch")]
    if cache_mb:
        want.append(("teacher", "64x64x7", ceil(n, 7), "before"))
    want += [("eval", f"64x64x{b}", (3 // 2) * ceil(len(val), b), "epoch"),
             ("eval", f"64x64x{b}", ceil(len(val), b), "after")]
    assert [(*s.key.split("|")[-2:], s.count, s.phase) for s in plan.steps] == want
    assert plan.epochs == 3 and plan.crop == crop and plan.size == (64, 64)
    for s in plan.steps:
        s.measure()  # each runs: a real step of the network at the run's size
    # the run does what was planned: its teacher ran on what the plan says
    events = []
    train(demo_project_dir, cfg, run_id=f"plan{cache_mb}{bool(crop)}", on_event=events.append)
    runs = [e["teacher_runs"] for e in events if e["event"] == "epoch"]
    assert runs[-1] == (n if cache_mb else 3 * n)
    assert sum(e["event"] == "validation" for e in events) == 3 // 2


def test_anomaly_estimate_reaches_the_command_line_and_counts_calibration(demo_project_dir,
                                                                          capsys, monkeypatch):
    import defect_studio.training as training
    from defect_studio.cli import main
    from defect_studio.training import estimate

    monkeypatch.setattr(estimate, "_MEMORY", {})
    with Project.open(demo_project_dir) as p:  # no validation image: calibrate on training
        for r in p.images(split="val"):
            p.set_split(r.id, "test")
        n = len(p.images(split="train", label="ok"))
        est = estimate.estimate_time(p, tiny(epochs=2), use_cache=False)
    after = [s for s in est.plan.steps if s.phase == "after"]
    assert [s.count for s in after] == [-(-n // 8)] and est.seconds > 0  # batches of 8
    assert not any(s.key.split("|")[-2] == "eval" and s.phase == "epoch" for s in est.plan.steps)
    started = []
    monkeypatch.setattr(training, "train", lambda *a, **k: started.append(
        capsys.readouterr().out))
    assert main(["train", "--project", str(demo_project_dir), "--model", "anomaly",
                 "--epochs", "1", "--size", "64x64", "--threads", "1"]) == 0
    assert "estimated training time on this machine" in started[0]
    assert "1 epoch at 64x64 on cpu" in started[0]


def test_runs_saved_before_map_taps_keep_their_map(tmp_path):
    from defect_studio.kinds.anomaly.train import read_anomaly_config

    old = AnomalyConfig().to_dict()
    del old["map_taps"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert read_anomaly_config(tmp_path).map_taps == ("1/4", "1/8", "1/16")
    assert AnomalyConfig().map_taps == ("1/8", "1/16")
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(ModelFileError):
        read_anomaly_config(tmp_path)


# -- calibration with few good parts (fault trial: issue 16 part 3 item 5) ----------------

def test_one_good_image_warns_and_is_not_called_ng_by_its_own_threshold(tmp_path):
    """16 identical all-black OK images (imported once) used to give a threshold at the score
    of the one image, so every OK part scored exactly 0.5 and was NG."""
    from PIL import Image

    from defect_studio.inference import load_predictor
    from defect_studio.io.images import read_image
    from defect_studio.training import train

    src = tmp_path / "ok"
    src.mkdir()
    for k in range(16):
        Image.new("L", (64, 64), 0).save(src / f"black_{k:02d}.png")
    with Project.create(tmp_path / "proj") as p:
        ids = {p.add_image(f, label="ok", split="train").id for f in sorted(src.iterdir())}
    assert len(ids) == 1  # the same content is one image
    events = []
    run_id = train(tmp_path / "proj", tiny(epochs=1), run_id="one", on_event=events.append)
    assert any("only 1 good training image" in n for n in events[0]["notes"])
    run = tmp_path / "proj" / "runs" / run_id
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["calibration"] == "ok_max_train"
    assert any("only 1 good" in w for w in metrics["warnings"])
    assert "no OK validation image" in events[-1]["note"]
    pred = load_predictor(run, device="cpu")
    for f in (src / "black_00.png", src / "black_15.png"):
        out = pred.predict(read_image(f))
        assert out.score < 0.45 and not out.is_ng, out.score


@pytest.mark.parametrize("scores, split, source, n_warn", [
    ([0.3], "train", "ok_max_train", 1),
    ([0.2] * 16, "train", "ok_max_train", 1),
    ([0.2] * 5, "val", "ok_max_val", 1),
    ([0.0, 0.0], "val", "ok_max_val", 1),
    ([float("nan"), 0.4, float("inf")], "val", "ok_max_val", 1),
    (list(np.linspace(0.1, 1.0, 100)), "val", "ok_p99_val", 0),
])
def test_ok_only_threshold_is_above_a_few_good_scores(scores, split, source, n_warn):
    from defect_studio.kinds.anomaly.train import ok_only_threshold

    t, src, warnings = ok_only_threshold(np.asarray(scores), 99.0, split)
    assert src == source and len(warnings) == n_warn and t > 0
    finite = [s for s in scores if np.isfinite(s)]
    if n_warn:  # every good score it was set on is strictly below it: none is NG
        assert all(s < t for s in finite)
    else:
        assert t == pytest.approx(np.percentile(finite, 99.0))


@pytest.mark.parametrize("case", ["separates", "noise", "two_defective"])
def test_calibration_takes_best_f1_only_where_validation_separates(monkeypatch, case):
    """The 1024-px demo (val AUC 0.53 on 9 defective images) got a best-F1 threshold that
    flagged 36 of 45 good test parts; a validation split that does not rank defective
    images above good ones beyond chance now calibrates on its good images alone."""
    from types import SimpleNamespace

    import defect_studio.kinds.anomaly.train as loop

    rng = np.random.default_rng(1)
    good = rng.normal(1.0, 0.1, 27)
    bad = {"separates": rng.normal(1.6, 0.1, 9), "noise": rng.normal(1.0, 0.1, 9),
           "two_defective": np.array([1.02, 1.3])}[case]
    scores = np.r_[good, bad]
    labels = [0] * good.size + [1] * bad.size
    data = SimpleNamespace(val=list(zip(range(scores.size), labels)), train=[])
    monkeypatch.setattr(loop, "raw_scores", lambda model, d, ids, device: scores[ids])
    t, source, split, m = loop.calibrate(None, data, "cpu", 99.0)
    assert split == "val" and m["labels"] == labels and m["scores"] == scores.tolist()
    flagged_good = int(np.sum(good >= t))
    if case == "separates":
        assert source == "best_f1" and m["warnings"] == [] and m["separation"]["separates"]
        assert np.all(bad >= t) and flagged_good == 0
    else:
        assert source == "ok_p99_val" and t == pytest.approx(np.percentile(good, 99.0))
        assert not m["separation"]["separates"] and flagged_good <= 1
        assert "does not show the model separating" in m["warnings"][0]
        assert "good validation images' scores alone" in m["warnings"][0]


def test_ok_only_threshold_without_a_finite_score_is_a_clear_error():
    from defect_studio.errors import TrainingError
    from defect_studio.kinds.anomaly.train import ok_only_threshold

    with pytest.raises(TrainingError, match="no finite score"):
        ok_only_threshold(np.asarray([float("nan")]), 99.0, "train")
