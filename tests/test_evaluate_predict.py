"""Overlays, the Predictor, evaluate_run and the predict CLI."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from defect_studio.errors import ModelFileError, UserError
from defect_studio.inference.overlay import COLORMAPS, decision_overlay, overlay

REPO = Path(__file__).resolve().parents[1]


# -- overlays -------------------------------------------------------------------------

@pytest.mark.parametrize("colormap", sorted(COLORMAPS))
def test_overlay_gray_uint16_image_gives_rgb_uint8(colormap):
    img = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50)
    heat = np.zeros((30, 40), np.float32)
    heat[10:20, 10:20] = 1.0
    out = overlay(img, heat, alpha=0.5, colormap=colormap)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    # the hot region is coloured differently from the cold one at the same image value
    cold = overlay(img, np.zeros_like(heat), colormap=colormap)
    assert not np.array_equal(out[15, 15], cold[15, 15])


def test_overlay_alpha_extremes_and_heatmap_resize():
    img = np.full((16, 24, 3), 100, np.uint8)
    heat = np.ones((2, 3), np.float32)  # a 1/8 map: resized to the image
    assert np.array_equal(overlay(img, heat, alpha=0.0), img)
    jet_red = overlay(img, heat, alpha=1.0)
    assert jet_red.shape == (16, 24, 3)
    assert jet_red[0, 0, 0] > 100 and jet_red[0, 0, 2] < 50  # jet at 1.0 is red (RGB)


def test_overlay_leaves_cold_areas_plain_and_blends_with_heat():
    img = np.full((20, 30, 3), 90, np.uint8)
    heat = np.zeros((20, 30), np.float32)
    heat[:, 10:20] = 0.05  # under the floor: noise of an OK part
    heat[:, 20:] = 1.0
    out = overlay(img, heat, alpha=0.5)
    assert np.array_equal(out[:, :20], img[:, :20])  # OK areas show the plain image
    assert not np.array_equal(out[:, 20:], img[:, 20:])
    weaker = overlay(img, np.where(heat == 1.0, 0.6, heat).astype(np.float32), alpha=0.5)
    # lower heat, lower weight: closer to the plain image than the full-heat blend
    assert np.abs(weaker[0, 25].astype(int) - 90).sum() < np.abs(out[0, 25].astype(int) - 90).sum()


def test_overlay_bad_arguments():
    img = np.zeros((8, 8), np.uint8)
    with pytest.raises(UserError, match="colormap"):
        overlay(img, np.zeros((8, 8)), colormap="rainbowish")
    with pytest.raises(UserError, match="alpha"):
        overlay(img, np.zeros((8, 8)), alpha=1.5)
    with pytest.raises(UserError, match="shape"):
        overlay(np.zeros((8, 8, 2), np.uint8), np.zeros((8, 8)))


def test_decision_overlay_writes_text():
    img = np.full((64, 64), 128, np.uint8)
    plain = overlay(img, np.zeros((64, 64)))
    marked = decision_overlay(img, np.zeros((64, 64)), 0.91, True)
    assert marked.shape == plain.shape
    assert not np.array_equal(marked[:20, :40], plain[:20, :40])
    assert np.array_equal(marked[40:, 40:], plain[40:, 40:])


# -- a run folder with an untrained network (no training needed) ------------------------

@pytest.fixture(scope="module")
def _untrained_run(tmp_path_factory):
    """A run folder (config + weights, no threshold) of an untrained 1-channel mixsup net."""
    import torch

    from defect_studio.kinds.segdec.config import TrainConfig
    from defect_studio.kinds.segdec.runmodel import build_run_model
    from defect_studio.training.checkpoint import save_model_weights

    run_dir = tmp_path_factory.mktemp("runs") / "untrained"
    cfg = TrainConfig(model="mixsup", input_size=(80, 64), channels=1, epochs=1)
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
    torch.manual_seed(0)
    save_model_weights(run_dir, build_run_model(cfg))
    return run_dir


def make_run(template: Path, dst: Path, *, resize="resize", threshold=0.5) -> Path:
    """A copy of the template run with another resize mode and threshold."""
    shutil.copytree(template, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["resize"] = resize
    (dst / "config.json").write_text(json.dumps(cfg))
    if threshold is not None:
        (dst / "threshold.json").write_text(json.dumps({"threshold": threshold, "source": "user"}))
    return dst


def test_predictor_heatmap_at_image_resolution(_untrained_run, tmp_path):
    from defect_studio.inference import Prediction, Predictor

    run = make_run(_untrained_run, tmp_path / "run", resize="pad", threshold=0.25)
    p = Predictor(run, device="cpu")
    assert p.threshold == 0.25 and p.threshold_source == "user"
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (37, 90, 3), dtype=np.uint8)  # other size and channels than the run
    pred = p.predict(img)
    assert isinstance(pred, Prediction)
    assert pred.heatmap.shape == (37, 90) and pred.heatmap.dtype == np.float32
    assert 0.0 <= pred.heatmap.min() and pred.heatmap.max() <= 1.0
    assert 0.0 <= pred.score <= 1.0 and pred.is_ng == (pred.score >= 0.25)
    p.threshold = 1.0
    assert p.predict(img).is_ng == (pred.score >= 1.0)
    with pytest.raises(UserError, match="between 0 and 1"):
        p.threshold = 2


def test_predict_many_batches_match_single_and_report_errors(_untrained_run, tmp_path):
    from defect_studio.inference import Predictor
    from defect_studio.io.images import write_png_atomic

    p = Predictor(make_run(_untrained_run, tmp_path / "run", threshold=None), device="cpu")
    assert p.threshold == 0.5 and p.threshold_source == "default"
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (48 + 8 * i, 64), dtype=np.uint8) for i in range(3)]
    good = tmp_path / "good.png"
    write_png_atomic(good, imgs[0])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    items = [imgs[0], str(bad), imgs[1], good, imgs[2], tmp_path / "missing.png"]
    seen = []
    results = list(p.predict_many(items, batch_size=2, progress=lambda d, t: seen.append((d, t))))
    assert [r[0] is it for r, it in zip(results, items)] == [True] * 6  # input order kept
    kinds = [isinstance(r[1], str) for r in results]
    assert kinds == [False, True, False, False, False, True]
    assert "bad.png" in results[1][1] and "missing.png" in results[5][1]
    single = p.predict(imgs[1])
    assert results[2][1].score == pytest.approx(single.score, abs=1e-5)
    assert np.allclose(results[2][1].heatmap, single.heatmap, atol=1e-5)
    assert results[3][1].score == pytest.approx(results[0][1].score, abs=1e-5)
    assert seen[-1] == (6, 6) and len(seen) == 3


def test_predictor_rejects_missing_or_damaged_runs(_untrained_run, tmp_path):
    from defect_studio.inference import Predictor

    with pytest.raises(ModelFileError, match="not found"):
        Predictor(tmp_path / "nope", device="cpu")
    run = make_run(_untrained_run, tmp_path / "run")
    (run / "threshold.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="threshold"):
        Predictor(run, device="cpu")


class _EchoNet:
    """Stands in for the network: its 'segmentation' is the input's first channel brought
    to 1/8 as the training targets are (reflect-pad 8, 17x17 average, stride 8), so a
    correct predictor returns (a blurred copy of) the image."""

    def __call__(self, x):
        import torch

        from defect_studio.kinds.segdec.losses import downsample8

        small = downsample8(x[:, :1]).clamp(1e-4, 1 - 1e-4)
        return torch.logit(small), torch.logit(small.mean(dim=(1, 2, 3)))

    def eval(self):
        return self


@pytest.mark.parametrize("resize", ["resize", "pad"])
def test_heatmap_geometry_undoes_resize_and_padding(_untrained_run, tmp_path, resize):
    from defect_studio.inference import Predictor

    p = Predictor(make_run(_untrained_run, tmp_path / "run", resize=resize), device="cpu")
    p.model = _EchoNet()
    # 300x80 image into an 80x64 input: "pad" scales it by 4/15 to 80x21 and pads 43
    # rows; the bright top 60 rows end exactly at a 1/8 cell border (input row 16)
    img = np.zeros((80, 300), np.uint8)
    img[:60] = 255
    heat = p.predict(img).heatmap
    assert heat.shape == (80, 300)
    rows = heat.mean(axis=1)
    assert rows[:30].mean() > 0.9 and rows[76:].mean() < 0.3  # 17x17 pooling blurs
    edge = int(np.argmin(np.abs(rows - 0.5)))
    assert abs(edge - 60) <= 2  # the boundary stays where it is in the image


# -- end to end on the tiny demo project ----------------------------------------------

@pytest.fixture(scope="module")
def trained_project(_demo_template, tmp_path_factory):
    """The tiny demo project with one run ("tiny") trained for a few steps.

    All but two defective training images are taken out of the train split first, so
    the one epoch is 4 steps: enough to produce a real run folder in a few seconds.
    """
    from defect_studio.project import Project
    from defect_studio.training import TrainConfig, train

    root = tmp_path_factory.mktemp("trained") / "demo"
    shutil.copytree(_demo_template, root, ignore=shutil.ignore_patterns("project.lock"))
    with Project.open(root) as project:
        for rec in project.images(split="train", label="defective")[2:]:
            project.set_split(rec.id, None)
    cfg = TrainConfig(model="mixsup", epochs=1, input_size=(64, 64), device="cpu",
                      val_every=0, num_threads=2)
    assert train(root, cfg, run_id="tiny") == "tiny"
    return root


def test_evaluate_run_writes_files_and_metrics(trained_project):
    from defect_studio.evaluation import evaluate_run
    from defect_studio.project import Project

    with Project.open(trained_project, readonly=True) as project:
        test_recs = [r for r in project.images(split="test") if r.label != "unlabeled"]
    run_dir = trained_project / "runs" / "tiny"
    calls = []
    r = evaluate_run(trained_project, "tiny", "test", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (len(test_recs), len(test_recs))
    assert r["n"] == len(test_recs) and r["n_errors"] == 0
    assert r["n_pos"] == sum(rec.label == "defective" for rec in test_recs)
    for key in ("ap_sklearn", "ap_trapz"):
        assert 0.0 <= r[key] <= 1.0
    assert r["auc"] is None or 0.0 <= r["auc"] <= 1.0
    saved = json.loads((run_dir / "threshold.json").read_text())["threshold"]
    assert r["run_threshold"]["threshold"] == pytest.approx(saved)
    rt = r["run_threshold"]
    assert rt["tp"] + rt["fp"] + rt["tn"] + rt["fn"] == r["n"]
    assert r["best_f1"]["f1"] >= rt["f1"] - 1e-9  # best F1 on this split is at least as good
    assert "pixel_auroc" in r["pixel"] and "pixel_ap" in r["pixel"]

    with open(run_dir / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == r["n"]
    assert {row["decision"] for row in rows} <= {"OK", "NG"}
    scores = {int(row["image_id"]): float(row["score"]) for row in rows}
    assert set(scores) == {rec.id for rec in test_recs}
    ng = sum(row["decision"] == "NG" for row in rows)
    assert ng == rt["tp"] + rt["fp"]
    with open(run_dir / "pr_curve.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(r["pr_curve"]["precision"])
    assert (run_dir / "roc_curve.csv").is_file()
    on_disk = json.loads((run_dir / "evaluation_test.json").read_text())
    assert on_disk["ap_trapz"] == pytest.approx(r["ap_trapz"]) and "pr_curve" not in on_disk


def test_evaluate_cli_json_and_unknown_run(trained_project, capsys):
    from defect_studio.cli import main

    assert main(["evaluate", "--project", str(trained_project), "--run", "tiny",
                 "--split", "val", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "val" and "roc_curve" not in out and "best_f1" in out
    assert main(["evaluate", "--project", str(trained_project), "--run", "tiny",
                 "--split", "val"]) == 0
    text = capsys.readouterr().out
    assert "AP (trapezoidal PR area)" in text and "run threshold" in text
    assert main(["evaluate", "--project", str(trained_project), "--run", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "tiny" in err  # names the runs there are
    for bad in ("../tiny", "/etc/passwd", ""):
        assert main(["evaluate", "--project", str(trained_project), "--run", bad]) == 2
        assert "run" in capsys.readouterr().err


def test_evaluate_without_run_takes_the_active_else_the_newest_finished(trained_project, tmp_path,
                                                                       capsys):
    import shutil as _shutil

    from defect_studio.cli import main
    from defect_studio.project import Project

    root = tmp_path / "p"
    _shutil.copytree(trained_project, root, ignore=_shutil.ignore_patterns("project.lock"))
    with Project.open(root) as p:
        p.set_active_run(None)
    # a newer run that did not finish is not taken
    _shutil.copytree(root / "runs" / "tiny", root / "runs" / "zz-broken")
    (root / "runs" / "zz-broken" / "status.json").write_text('{"state": "failed", "epoch": 0}')
    assert main(["evaluate", "--project", str(root), "--split", "val", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["run_id"] == "tiny"
    assert "newest finished run tiny" in captured.err
    with Project.open(root) as p:
        p.set_active_run("zz-broken")
    main(["evaluate", "--project", str(root), "--split", "val", "--json"])
    assert "active run zz-broken" in capsys.readouterr().err
    empty = tmp_path / "empty"
    Project.create(empty).close()
    assert main(["evaluate", "--project", str(empty)]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_predict_cli_over_a_folder_with_a_corrupt_file(trained_project, tmp_path):
    import cv2

    from defect_studio.inference import Predictor
    from defect_studio.io.images import read_image, write_png_atomic
    from defect_studio.project import Project

    with Project.open(trained_project, readonly=True) as project:
        recs = project.images(split="test")[:3]
        imgs = [project.read_image(r) for r in recs]
    src = tmp_path / "parts"
    (src / "sub").mkdir(parents=True)
    # 50x70: not the run's 64x64 input size
    for i, img in enumerate(imgs):
        write_png_atomic(src / ("sub" if i == 2 else "") / f"part{i}.png",
                         cv2.resize(img, (50, 70), interpolation=cv2.INTER_AREA))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (src / "notes.txt").write_text("not an image")

    predictor = Predictor(trained_project / "runs" / "tiny", device="cpu")
    pred = predictor.predict(read_image(src / "part0.png"))
    assert pred.heatmap.shape == (70, 50) and pred.heatmap.dtype == np.float32

    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "defect_studio", "predict", "--run", "tiny",
         "--project", str(trained_project), str(src), "--out", str(out),
         "--batch-size", "2", "--device", "cpu"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    with open(out / "predictions.csv", newline="") as f:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(f)}
    assert set(rows) == {"part0.png", "part1.png", "part2.png", "broken.png"}  # no notes.txt
    assert rows["broken.png"]["error"] and rows["broken.png"]["score"] == ""
    for name in ("part0.png", "part1.png", "part2.png"):
        assert rows[name]["error"] == "" and 0.0 <= float(rows[name]["score"]) <= 1.0
        assert rows[name]["decision"] in ("OK", "NG")
        overlay_img = read_image(out / rows[name]["overlay"])
        assert overlay_img.shape == (70, 50, 3)
    assert float(rows["part0.png"]["score"]) == pytest.approx(pred.score, abs=1e-4)
    assert "1 error" in proc.stdout and "broken.png" in proc.stderr


def test_predict_cli_fails_when_nothing_can_be_scored(trained_project, tmp_path, capsys):
    from defect_studio.cli import main

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    run_dir = trained_project / "runs" / "tiny"
    assert main(["predict", "--run", str(run_dir), str(bad), "--out", str(tmp_path / "o"),
                 "--device", "cpu", "--no-overlays"]) == 1
    assert "no image could be scored" in capsys.readouterr().err
    assert main(["predict", "--run", str(tmp_path / "no-run"), str(bad),
                 "--out", str(tmp_path / "o")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_predictor_on_a_run_without_model_says_so(_untrained_run, tmp_path):
    from defect_studio.inference import Predictor

    run = make_run(_untrained_run, tmp_path / "run")
    (run / "model.pt").unlink()
    (run / "status.json").write_text(json.dumps({"state": "running", "epoch": 1}))
    with pytest.raises(ModelFileError, match="no trained model yet.*running"):
        Predictor(run, device="cpu")


def test_collect_inputs_skips_own_overlays_and_reports_missing(tmp_path):
    from defect_studio.inference.cli import collect_inputs

    (tmp_path / "in" / "out").mkdir(parents=True)
    for name in ("a.png", "b.JPG", "c.txt", ".hidden.png", "out/a_overlay.png", "out/new.png"):
        (tmp_path / "in" / name).write_bytes(b"x")
    files, problems = collect_inputs([str(tmp_path / "in"), str(tmp_path / "in" / "a.png"),
                                      str(tmp_path / "gone")], exclude=tmp_path / "in" / "out")
    assert [f.relative_to(tmp_path / "in").as_posix() for f in files] == ["a.png", "b.JPG",
                                                                           "out/new.png"]
    assert problems == [(tmp_path / "gone", "file or folder not found")]


def test_evaluate_lists_a_missing_image_and_scores_the_rest(trained_project, tmp_path):
    from defect_studio.evaluation import evaluate_run
    from defect_studio.project import Project

    root = tmp_path / "demo"
    shutil.copytree(trained_project, root,
                    ignore=shutil.ignore_patterns("project.lock", "checkpoint.pt*"))
    with Project.open(root, readonly=True) as project:
        recs = [r for r in project.images(split="val") if r.label != "unlabeled"]
        project.image_path(recs[0]).unlink()
    r = evaluate_run(root, "tiny", "val")
    assert r["n"] == len(recs) - 1 and r["n_errors"] == 1
    assert r["errors"][0]["image_id"] == recs[0].id and "not found" in r["errors"][0]["error"]
    saved = json.loads((root / "runs" / "tiny" / "evaluation_val.json").read_text())
    assert saved["n_errors"] == 1
