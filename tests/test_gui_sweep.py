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
    view.levels_edit.setText("0,all")
    with qtbot.waitSignal(view.sweep_ended, timeout=900_000) as blocker:
        qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
        assert view.is_running() and view.cancel_button.isEnabled()
        assert not view.run_button.isEnabled()
    assert blocker.args == ["finished"], view.status.text()
    xs, ys = view.curve.getData()
    assert list(xs) == [0, 2] and all(0.0 <= y <= 1.0 for y in ys)
    # what was saved: the sweep record and its two runs
    sweeps = sorted((project.root / "runs" / ".sweeps").iterdir())
    record = json.loads((sweeps[0] / "sweep.json").read_text())
    assert record["state"] == "finished" and [p["n"] for p in record["points"]] == [0, 2]
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
