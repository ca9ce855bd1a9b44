"""One way from an image to a score (issue 16, part 2 item 8).

Training's validation (the scores its AP, its threshold and metrics.json come from),
`evaluate`, `predict` and the export package must score the same image the same way.
The run's input (40x40) differs from the images (64x64), so the resize matters: the
training-time scores were once computed from 8-bit rounded resized images."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from defect_studio.project import Project


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_training_validation_evaluate_predict_and_package_score_alike(
        demo_project_dir, tmp_path, monkeypatch):
    from defect_studio.cli import main
    from defect_studio.deploy.export import export_model
    from defect_studio.deploy.runtime import load_package
    from defect_studio.evaluation import evaluate_run
    from defect_studio.io.images import read_image
    from defect_studio.kinds.segdec import train as segdec_train
    from defect_studio.training import TrainConfig, train

    root = demo_project_dir
    with Project.open(root) as p:
        for rec in p.images(split="train", label="defective")[3:]:
            p.set_split(rec.id, "test")
        val = [r for r in p.images(split="val") if r.label in ("ok", "defective")]
        val_files = {r.id: p.image_path(r) for r in val}
    assert {r.label for r in val} == {"ok", "defective"}

    # the scores training itself computed for its metrics and threshold (the last call)
    seen: dict[int, float] = {}
    original = segdec_train.score_samples

    def recording(model, data, samples, device, batch_size=8):
        out = original(model, data, samples, device, batch_size)
        seen.clear()
        seen.update({s.image_id: float(v) for s, v in zip(samples, out)})
        return out

    monkeypatch.setattr(segdec_train, "score_samples", recording)
    train(root, TrainConfig(model="mffpa", epochs=1, input_size=(40, 40), device="cpu",
                            num_threads=2, lr=0.05, seed=0, val_every=0), run_id="r")
    assert set(seen) == set(val_files)
    run_dir = root / "runs" / "r"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    threshold = json.loads((run_dir / "threshold.json").read_text())["threshold"]

    # evaluate (what the Evaluate page and `evaluate` show)
    result = evaluate_run(root, "r", split="val", device="cpu")
    evaluated = {int(r["image_id"]): float(r["score"])
                 for r in _read_csv(run_dir / "scores.csv")}
    assert set(evaluated) == set(seen)

    # predict, as a user runs it, on copies of the validation files
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    by_name = {}
    for image_id, src in val_files.items():
        name = f"{image_id}{src.suffix}"
        shutil.copy(src, inbox / name)
        by_name[name] = image_id
    out = tmp_path / "pred"
    assert main(["predict", "--project", str(root), "--run", "r", "--device", "cpu",
                 "--out", str(out), str(inbox)]) == 0
    predicted = {by_name[r["path"].replace("\\", "/").rsplit("/", 1)[-1]]: float(r["score"])
                 for r in _read_csv(out / "predictions.csv")}

    # the export package on the line, one part at a time
    pkg = load_package(export_model(run_dir, tmp_path / "pkg", "onnx"))
    packaged = {i: float(pkg.predict(read_image(f)).score) for i, f in val_files.items()}

    ids = sorted(seen)
    train_s = np.array([seen[i] for i in ids])
    # predictions.csv rounds to 6 decimals; the ONNX graph computes in its own order
    for name, other, tol in (("evaluate", evaluated, 1e-7), ("predict", predicted, 1e-6),
                             ("package", packaged, 1e-5)):
        got = np.array([other[i] for i in ids])
        assert np.abs(got - train_s).max() <= tol, (name, np.abs(got - train_s).max())
    # the run is judged by the numbers it logged
    assert metrics["split"] == "val"
    assert result["ap_sklearn"] == pytest.approx(metrics["ap_sklearn"], abs=1e-9)
    assert result["auc"] == pytest.approx(metrics["auc"], abs=1e-9)
    # and the threshold calls the same images NG in training and in evaluate
    assert [seen[i] >= threshold for i in ids] == [evaluated[i] >= threshold for i in ids]
