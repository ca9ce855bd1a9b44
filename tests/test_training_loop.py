"""The training job on the tiny demo project (48 images of 64x64): learning, the run
folder, cancel/resume, determinism, NaN, bad data and model files."""

import json

import numpy as np
import pytest
import torch

from defect_studio.errors import CancelledError, DataError, ModelFileError, TrainingError
from defect_studio.evaluation.metrics import image_metrics
from defect_studio.kinds.segdec.data import build_training_data, preprocess_image
from defect_studio.kinds.segdec.runmodel import load_run_model
from defect_studio.project import Project, read_run
from defect_studio.training import TrainConfig, train
from defect_studio.training.checkpoint import load_torch


def tiny(**overrides):
    """Settings that learn the tiny demo data in a few dozen single-image steps."""
    base = dict(model="mixsup", epochs=3, input_size=(64, 64), lr=0.05, delta=1.0,
                dilate=3, w_max=3.0, val_every=0, seed=0, num_threads=1, device="cpu")
    base.update(overrides)
    return TrainConfig(**base)


def train_scores(root, run_id):
    model, cfg = load_run_model(root / "runs" / run_id, "cpu")
    with Project.open(root, readonly=True) as p:
        recs = [r for r in p.images(split="train")]
        with torch.no_grad():
            x = torch.stack([preprocess_image(p.read_image(r), cfg) for r in recs])
            scores = torch.sigmoid(model(x)[1]).numpy()
    return [int(r.label == "defective") for r in recs], scores


def test_training_learns_and_writes_the_run(demo_project_dir):
    events = []
    # dynamic balancing off: the decision head learns from the first step (4 epochs only)
    cfg = tiny(model="mffpa", lr=0.01, dyn_balance=False, epochs=4)
    run_id = train(demo_project_dir, cfg, run_id="r1", on_event=events.append)
    assert run_id == "r1"
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("epoch") == 4 and kinds.count("checkpoint") == 4
    assert all(e["eta_s"] >= 0 for e in events if e["event"] == "progress")

    y, scores = train_scores(demo_project_dir, run_id)
    ap = image_metrics(y, scores)["ap_sklearn"]
    chance = sum(y) / len(y)
    assert ap >= 0.7 > chance + 0.3, (ap, chance)

    run = demo_project_dir / "runs" / run_id
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["epoch"] == 4
    thr = json.loads((run / "threshold.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert thr["source"] == "best_f1" and 0.0 <= thr["threshold"] <= 1.0
    assert metrics["separation"]["separates"] and metrics["separation"]["p_value"] < 0.05
    assert thr["threshold"] == events[-1]["threshold"] and metrics["ap"] is not None
    saved = TrainConfig.from_file(run / "config.json")
    assert saved.channels == 3 and saved.epochs == 4
    lines = (run / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == kinds

    info = read_run(run)
    assert (info.state, info.model, info.epochs) == ("finished", "mffpa", 4)

    # a damaged weights file is refused, not half-loaded
    weights = run / "model.pt"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x55
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        load_run_model(run, "cpu")


def test_cancel_then_resume_matches_an_uninterrupted_run(demo_project_dir):
    cfg = tiny(model="mffpa", input_size=(32, 32), epochs=2, lr=0.01)  # the cheapest variant
    full = []
    train(demo_project_dir, cfg, run_id="full", on_event=full.append)

    state = {"stop": False, "calls_after": 0}

    def should_stop():
        if state["stop"]:
            state["calls_after"] += 1
        return state["stop"]

    def on_event(e):
        part.append(e)
        if e["event"] == "progress" and e["epoch"] == 2:
            state["stop"] = True

    part = []
    with pytest.raises(CancelledError, match="--resume part"):
        train(demo_project_dir, cfg, run_id="part", on_event=on_event, should_stop=should_stop)
    assert state["calls_after"] == 1  # stopped at the first check after the request
    assert part[-1] == {"event": "cancelled", "run_id": "part", "epoch": 1}
    run = demo_project_dir / "runs" / "part"
    assert json.loads((run / "status.json").read_text())["state"] == "cancelled"
    assert load_torch(run / "checkpoint.pt")["epoch"] == 1

    resumed = []
    train(demo_project_dir, None, run_id="part", resume=True, on_event=resumed.append)
    assert resumed[0]["event"] == "started" and resumed[0]["start_epoch"] == 1
    assert [e["epoch"] for e in resumed if e["event"] == "epoch"] == [2]

    # same seed, same data: the same loss sequence and the same final weights
    def losses(evts):
        return [e["loss"] for e in evts if e["event"] == "epoch"]

    assert losses(part) + losses(resumed) == pytest.approx(losses(full), rel=1e-6)
    a = load_torch(demo_project_dir / "runs" / "full" / "model.pt")
    b = load_torch(run / "model.pt")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(Exception, match="already finished"):
        train(demo_project_dir, None, run_id="part", resume=True)


def test_nan_loss_stops_with_an_error_event(demo_project_dir):
    events = []
    with pytest.raises(TrainingError, match="NaN.*learning rate"):
        train(demo_project_dir, tiny(model="mffpa", input_size=(32, 32), lr=1e6, epochs=2),
              run_id="nan", on_event=events.append)
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "TrainingError"
    status = json.loads((demo_project_dir / "runs" / "nan" / "status.json").read_text())
    assert status["state"] == "failed" and "NaN" in status["message"]


def test_one_class_data_is_refused(demo_project_dir):
    with Project.open(demo_project_dir) as p:
        for r in p.images(split="train", label="defective"):
            p.set_split(r.id, "test")
    events = []
    with pytest.raises(DataError, match="label at least one defective image"):
        train(demo_project_dir, tiny(), on_event=events.append)
    assert events == [{"event": "error", "message": events[0]["message"], "kind": "DataError"}]
    assert (not (demo_project_dir / "runs").exists()
            or not any((demo_project_dir / "runs").iterdir()))


def test_pixel_label_choice_leaves_image_level_defects(demo_project_dir):
    with Project.open(demo_project_dir, readonly=True) as p:
        data = build_training_data(p, tiny(pixel_labels=2, seed=4))
        again = build_training_data(p, tiny(pixel_labels=2, seed=4))
        pixel_defects = [s for s in data.train if s.label == 1 and s.pixel]
        assert len(pixel_defects) == 2 and pixel_defects == [
            s for s in again.train if s.label == 1 and s.pixel]
        for i, s in enumerate(data.train):
            _, mask, weights = data.item(i)
            if s.label == 1 and not s.pixel:
                assert mask is None and weights is None  # image label only: no seg loss
            elif s.label == 0:
                assert float(mask.sum()) == 0.0
            else:
                assert float(mask.max()) > 0
        none = build_training_data(p, tiny(pixel_labels=0))
        assert not any(s.pixel for s in none.train if s.label == 1)
        # nested: with one seed, more masks add to the smaller choice (a sweep's curve then
        # adds masks instead of swapping them)
        chosen = [{s.image_id for s in build_training_data(p, tiny(pixel_labels=k, seed=4)).train
                   if s.label == 1 and s.pixel} for k in (1, 2, 3)]
        assert [len(c) for c in chosen] == [1, 2, 3]
        assert chosen[0] < chosen[1] < chosen[2]
        assert np.all([s.pixel for s in none.train if s.label == 0])
