"""defect_studio.app.train.run_curves: curves read back from events.jsonl survive damaged and
hostile lines."""

import json
import os
import time
from types import SimpleNamespace

from defect_studio.app.train.run_curves import read_curves
from defect_studio.app.train.state import has_model, is_interrupted


def test_curves_from_events_skip_bad_lines(tmp_path):
    lines = [
        json.dumps({"event": "progress", "epoch": 1, "epochs": 2, "step": 5, "steps": 10,
                    "loss": 1.0, "loss_seg": 0.5, "loss_dec": 0.5}),
        json.dumps({"event": "progress", "epoch": "x", "step": 1, "steps": 10}),  # wrong type
        json.dumps({"event": "progress", "epoch": 1, "step": 1, "steps": 0}),  # no steps
        json.dumps({"event": "progress", "epoch": 2, "epochs": 2, "step": 10, "steps": 10,
                    "loss": "NaN"}),
        json.dumps({"event": "validation", "epoch": 2, "ap": 0.8, "auc": None}),
        json.dumps({"event": "validation", "epoch": float("nan"), "ap": 0.1}),
        json.dumps([1, 2, 3]),
        "not json at all",
        json.dumps({"event": "finished", "metrics": {"ap": 0.9}}),
        '{"event": "progress", "epoch": 3, "ste',  # cut short by a kill
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(lines), encoding="utf-8")
    c = read_curves(tmp_path)
    assert c.loss_x == [0.5, 2.0] and c.loss[0] == 1.0 and c.loss[1] != c.loss[1]  # NaN kept
    assert c.val_x == [2.0] and c.val_ap == [0.8] and c.val_auc[0] != c.val_auc[0]
    assert c.final == {"ap": 0.9} and c.epochs == 2
    assert read_curves(tmp_path / "missing").empty()
    big = tmp_path / "big"
    big.mkdir()
    (big / "events.jsonl").write_bytes(b"x" * 2000)
    assert read_curves(big, max_bytes=1000).empty()


def test_a_resumed_run_replaces_the_points_past_its_checkpoint(tmp_path):
    def progress(epoch, step, loss):
        return json.dumps({"event": "progress", "epoch": epoch, "epochs": 3, "step": step,
                           "steps": 2, "loss": loss, "loss_seg": loss / 2, "loss_dec": loss / 2})

    lines = [progress(1, 1, 9.0), progress(1, 2, 8.0),
             json.dumps({"event": "validation", "epoch": 1, "ap": 0.1, "auc": 0.2}),
             progress(2, 1, 7.0), progress(2, 2, 6.0),  # epoch 2 done, no checkpoint kept
             json.dumps({"event": "validation", "epoch": 2, "ap": 0.3, "auc": 0.4}),
             progress(3, 1, 5.0),  # cancelled here; resumed from the checkpoint of epoch 1
             progress(2, 1, 6.5), progress(2, 2, 5.5),
             json.dumps({"event": "validation", "epoch": 2, "ap": 0.5, "auc": 0.6}),
             progress(3, 1, 4.0), progress(3, 2, 3.0)]
    (tmp_path / "events.jsonl").write_text("\n".join(lines), encoding="utf-8")
    c = read_curves(tmp_path)
    assert c.loss_x == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]  # always forward in time
    assert c.loss == [9.0, 8.0, 6.5, 5.5, 4.0, 3.0]  # the resumed attempt's values
    assert c.loss_seg == [v / 2 for v in c.loss] and c.loss_dec == c.loss_seg
    assert c.val_x == [1.0, 2.0] and c.val_ap == [0.1, 0.5] and c.val_auc == [0.2, 0.6]


def test_model_and_interrupted_states(tmp_path):
    run = SimpleNamespace(id="r", path=tmp_path, state="finished")
    assert not has_model(run)
    (tmp_path / "model.pt").write_bytes(b"0")
    assert has_model(run)
    run.state = "cancelled"
    assert not has_model(run) and not is_interrupted(run)  # no checkpoint to go on from
    (tmp_path / "checkpoint.pt").write_bytes(b"0")
    assert is_interrupted(run) and not is_interrupted(run, running_here="r")
    run.state = "running"
    (tmp_path / "status.json").write_text("{}")
    assert not is_interrupted(run)  # fresh: maybe another process is training it
    old = time.time() - 3600
    os.utime(tmp_path / "status.json", (old, old))
    assert is_interrupted(run)
    run.state = "finished"
    assert not is_interrupted(run)
