"""Evaluate page: the label-efficiency sweep runs as a background job and plots test AP."""

from __future__ import annotations

import json

import pytest
from gui_support import shrink_train_split
from PySide6.QtCore import Qt

from defect_studio.app.evaluate.page import EvaluatePage
from defect_studio.project import Project


@pytest.fixture
def project(demo_project_dir):
    p = Project.open(demo_project_dir)
    yield p
    p.close()


def test_sweep_runs_in_the_background_and_plots_ap_vs_masks(qtbot, project, dialogs):
    shrink_train_split(project, n_defective=2)
    page = EvaluatePage()
    qtbot.addWidget(page)
    page.set_project(project)
    view = page.sweep_view
    assert "No sweep yet" in view.status.text()
    view.epochs, view.size, view.device = 1, (32, 32), "cpu"
    view.low_priority = False  # not niced: the test should not wait behind other jobs
    assert view.epochs_spin.value() == 1 and view.size_combo.currentText() == "32x32"
    view.levels_edit.setText("0,all")
    progress, formats = [], []
    view.progress.valueChanged.connect(lambda v: (progress.append(v),
                                                  formats.append(view.progress.format())))
    with qtbot.waitSignal(view.sweep_ended, timeout=900_000) as blocker:
        qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
        assert view.is_running() and view.cancel_button.isEnabled()
        assert not view.run_button.isEnabled() and not view.progress.isHidden()
    assert blocker.args == ["finished"], view.status.text()
    # overall progress over both runs, with an ETA, up to the end
    assert progress == sorted(progress) and progress[-1] == 1000
    assert any(0 < v < 1000 for v in progress) and any("ETA" in f for f in formats)
    assert view.progress.isHidden()
    xs, ys = view.curve.getData()
    assert list(xs) == [0, 2] and all(0.0 <= y <= 1.0 for y in ys)
    (x0, x1), _ = view.plot.getViewBox().viewRange()
    assert x0 < 0 and 2 < x1 < 5  # the points, not a 1e-306 axis
    # what was saved: the sweep record and its two runs
    sweeps = sorted((project.root / "runs" / ".sweeps").iterdir())
    record = json.loads((sweeps[0] / "sweep.json").read_text())
    assert record["state"] == "finished" and [p["n"] for p in record["points"]] == [0, 2]
    assert record["config"]["epochs"] == 1 and record["config"]["input_size"] == [32, 32]
    assert {p["run_id"] for p in record["points"]} <= {r.id for r in project.runs()}
    # a fresh page on the same project shows the last sweep again
    again = EvaluatePage()
    qtbot.addWidget(again)
    again.set_project(project)
    assert list(again.sweep_view.curve.getData()[0]) == [0, 2]
    assert dialogs == []


def test_bad_levels_are_reported_not_run(qtbot, project):
    page = EvaluatePage()
    qtbot.addWidget(page)
    page.set_project(project)
    view = page.sweep_view
    view.levels_edit.setText("0,abc")
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert not view.is_running() and "abc" in view.status.text()
    assert not (project.root / "runs" / ".sweeps").exists()


def test_a_sweep_that_cannot_run_says_why(qtbot, project, dialogs):
    for rec in project.images():
        if rec.has_mask:
            project.delete_mask(rec.id)
    page = EvaluatePage()
    qtbot.addWidget(page)
    page.set_project(project)
    view = page.sweep_view
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert not view.is_running()
    assert "cannot run" in view.status.text() and "mask" in view.status.text()
    assert not (project.root / "runs" / ".sweeps").exists()
    # no point: the axis is the mask counts', not autorange's 1e-306
    (x0, x1), _ = view.plot.getViewBox().viewRange()
    assert -1 <= x0 < 0 < 1 <= x1 < 10


def test_a_sweep_failing_in_its_process_shows_the_reason(qtbot, project, dialogs):
    folder = project.root / "runs" / ".sweeps" / "s0"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({
        "id": "s0", "state": "cancelled", "n": [0, 1], "n_masked": 1, "points": [],
        "runs": {"0": {"run_id": "s0-N0", "state": "cancelled"}},
        "config": {"model": "no-such-model"}, "created": "2026-01-01T00:00:00Z"}))
    page = EvaluatePage()
    qtbot.addWidget(page)
    page.set_project(project)
    view = page.sweep_view
    # the cancelled sweep and its cancelled run are named; Resume offers to continue it
    assert "Sweep s0 (cancelled)" in view.status.text()
    assert "run s0-N0 was cancelled" in view.status.text() and view.resume_button.isEnabled()
    with qtbot.waitSignal(view.sweep_ended, timeout=120_000) as blocker:
        qtbot.mouseClick(view.resume_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["failed"]
    text = view.status.text()
    assert "failed" in text and "damaged" in text and "running" not in text.lower()
    assert view.progress.isHidden() and view.run_button.isEnabled()
    record = json.loads((folder / "sweep.json").read_text())
    assert record["state"] == "cancelled" and record["points"] == []  # left as it was


def test_closing_the_window_during_a_sweep_asks_then_cancels_it(qtbot, window, monkeypatch,
                                                                 dialogs):
    """Quit while "How many masks?" runs: the window asks; No keeps it running, Yes cancels
    it as the Cancel button does (the record says "cancelled", Resume continues it) and no
    sweep process is left behind."""
    from PySide6.QtWidgets import QMessageBox

    project = window.project
    shrink_train_split(project, n_defective=2)
    page = window.pages["Evaluate"]
    window.tabs.setCurrentWidget(page)
    view = page.sweep_view
    view.epochs, view.size, view.device = 30, (32, 32), "cpu"  # long enough to be caught
    view.low_priority = False
    view.levels_edit.setText("0,all")
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert view.is_running()
    qtbot.waitUntil(lambda: 0 < view.progress.value() or not view.is_running(),
                    timeout=300_000)
    assert view.is_running(), view.status.text()  # a run of the sweep is training
    asked, answers = [], [QMessageBox.StandardButton.No]

    def question(parent, title, text, *args, **kwargs):
        asked.append(text)
        return answers[0]

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    window.close()
    assert window.isVisible() and view.is_running() and window.project is project
    assert "a mask sweep is running" in asked[0].lower()
    answers[0] = QMessageBox.StandardButton.Yes
    window.close()
    assert not window.isVisible() and not view.is_running() and window.project is None
    pid = view.job._proc.processId() if view.job._proc is not None else 0
    assert pid == 0  # the process ended before the window closed
    sweeps = sorted((project.root / "runs" / ".sweeps").iterdir())
    record = json.loads((sweeps[-1] / "sweep.json").read_text())
    assert record["state"] == "cancelled", record["state"]
    assert dialogs == []
