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
