"""Evaluate page: curves from evaluate_run, the threshold slider drives the confusion numbers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PySide6.QtCore import Qt

from defect_studio.app.evaluate.page import SLIDER_STEPS, EvaluatePage
from defect_studio.evaluation.metrics import confusion_at
from defect_studio.kinds.segdec.predictor import Predictor


@pytest.fixture
def project(trained_project):
    return trained_project


def scores_csv(project, run_id="tiny"):
    with open(project.runs_dir / run_id / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    y = np.array([r["label"] == "defective" for r in rows], dtype=int)
    s = np.array([float(r["score"]) for r in rows])
    return y, s


def shown_counts(view: EvaluatePage) -> dict:
    t = view.confusion
    return {"tp": int(t.item(0, 0).text()), "fn": int(t.item(0, 1).text()),
            "fp": int(t.item(1, 0).text()), "tn": int(t.item(1, 1).text())}


@pytest.fixture
def view(qtbot, project, dialogs):
    assert not (project.runs_dir / "tiny" / "scores.csv").exists()
    v = EvaluatePage()
    qtbot.addWidget(v)
    v.set_project(project)
    assert not v.is_busy()  # not evaluated before the page is shown
    assert "not been evaluated" in v.summary_label.text()
    with qtbot.waitSignal(v.evaluation_loaded, timeout=120_000):
        v.show()  # no curves yet: evaluated in the background
        assert v.is_busy() and not v.busy.isHidden()  # the busy indicator is on
    qtbot.waitUntil(lambda: not v.is_busy(), timeout=10_000)
    assert dialogs == []
    return v


def test_curves_and_metrics_from_evaluate_run(view, project):
    assert view.current_run() == "tiny"
    y, s = scores_csv(project)
    assert len(y) == len([r for r in project.images(split="test") if r.label != "unlabeled"])
    x, _ = view.pr_curve.getData()
    assert x is not None and len(x) >= 2
    # one AP in the header, both variants on hover
    text = view.summary_label.text()
    assert text.count("AP ") == 1 and "ROC AUC" in text
    tip = view.summary_label.toolTip()
    assert "scikit-learn" in tip and "trapezoidal" in tip
    # starts at the run's own threshold
    assert view.threshold() == pytest.approx(project.run("tiny").threshold, abs=1e-4)


def test_slider_updates_confusion_live(qtbot, view, project):
    y, s = scores_csv(project)
    seen = set()
    for value in (0, 250, 500, 750, SLIDER_STEPS):
        view.slider.setValue(value)
        t = value / SLIDER_STEPS
        expect = confusion_at(y, s, t)
        got = shown_counts(view)
        assert got == {k: expect[k] for k in ("tp", "fn", "fp", "tn")}
        assert view.spin.value() == pytest.approx(t)
        assert f"Recall {expect['recall']:.3f}" in view.rates_label.text()
        seen.add(tuple(got.values()))
        mx, my = view.pr_marker.getData()
        assert mx[0] == pytest.approx(expect["recall"])
    assert len(seen) >= 2  # the numbers really change along the slider
    assert shown_counts(view)["tp"] + shown_counts(view)["fp"] == int(np.sum(s >= 1.0))
    # the spin box drives the slider too
    view.spin.setValue(0.3)
    assert view.slider.value() == 300


def test_save_threshold_is_used_by_prediction(qtbot, view, project):
    view.spin.setValue(0.4242)
    with qtbot.waitSignal(view.threshold_saved) as blocker:
        qtbot.mouseClick(view.save_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["tiny", pytest.approx(0.4242)]
    data = json.loads((project.runs_dir / "tiny" / "threshold.json").read_text())
    assert data == {"threshold": pytest.approx(0.4242), "source": "user"}
    assert Predictor(project.runs_dir / "tiny", device="cpu").threshold == pytest.approx(0.4242)
    assert project.run("tiny").threshold == pytest.approx(0.4242)


def test_damaged_curves_give_a_message(qtbot, project, dialogs):
    run = project.runs_dir / "tiny"
    for name, text in (("scores.csv", "image_id,score\n1,abc\n"), ("pr_curve.csv", "x\n"),
                       ("roc_curve.csv", "x\n")):
        (run / name).write_text(text)
    v = EvaluatePage()
    qtbot.addWidget(v)
    v.set_project(project)
    assert "damaged" in v.summary_label.text() and "Evaluate" in v.summary_label.text()
    assert not v.slider.isEnabled() and v.evaluate_button.isEnabled()
