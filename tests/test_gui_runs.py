"""Runs you can manage (issue 11): only runs with a model become active, interrupted runs
resume (a real training process), delete asks, two runs compare, past curves come back;
switching project during training asks and resets every page; Save threshold refreshes."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from gui_support import copy_project
from PySide6.QtWidgets import QMessageBox

from defect_studio.app.train.page import TrainPage
from defect_studio.app.train.run_history import COLUMNS
from defect_studio.project.runs import hold_run, release_run

pytestmark = pytest.mark.usefixtures("isolated_qsettings")


def fake_run(project, src: str, new: str, state: str, *, model: bool, age_s: float = 0) -> None:
    """A copy of run `src` that stopped in `state` (with or without its model file)."""
    d = project.runs_dir / new
    shutil.copytree(project.runs_dir / src, d)
    (d / "status.json").write_text(json.dumps({"state": state, "epoch": 0, "message": ""}))
    for f in ("metrics.json", "threshold.json", "scores.csv"):
        (d / f).unlink(missing_ok=True)
    if not model:
        (d / "model.pt").unlink()
        (d / "model.pt.sha256").unlink(missing_ok=True)
    if age_s:
        old = time.time() - age_s
        for f in d.iterdir():
            os.utime(f, (old, old))


@pytest.fixture
def panel(qtbot, trained_project):
    fake_run(trained_project, "tiny", "stopped", "cancelled", model=False)
    fake_run(trained_project, "tiny", "killed", "running", model=False, age_s=3600)
    fake_run(trained_project, "tiny", "busy", "running", model=False)
    # "busy" is being trained by a live process: it holds the run's lock
    lock = hold_run(trained_project.runs_dir / "busy")
    p = TrainPage()
    qtbot.addWidget(p)
    p.set_project(trained_project)
    p.resize(1000, 700)
    p.show()
    yield p
    release_run(lock)


def cell(panel, run_id, column):
    row = panel.history.run_ids().index(run_id)
    return panel.history.table.item(row, COLUMNS.index(column)).text()


def test_only_runs_with_a_model_can_be_activated(qtbot, panel, trained_project, dialogs):
    h = panel.history
    for run_id, can_activate, can_resume in (("tiny", True, False), ("stopped", False, True),
                                             ("killed", False, True), ("busy", False, False)):
        h.select_run(run_id)
        assert h.set_active_button.isEnabled() is can_activate, run_id
        assert h.resume_button.isEnabled() is can_resume, run_id
    assert cell(panel, "killed", "State") == "interrupted"  # nothing wrote to it for an hour
    assert cell(panel, "busy", "State") == "running"  # another process may be training it
    h.select_run("stopped")
    h.set_active()  # double-click does this too
    assert trained_project.active_run() == "tiny"
    assert dialogs and "Resume" in dialogs[-1][1]


def test_resume_starts_the_run_again_with_its_saved_settings(qtbot, panel, trained_project,
                                                               monkeypatch):
    # The training process itself (`train --resume`) is covered by test_training_loop and
    # test_training_cli; here: the button starts it for the right run and shows it running.
    from defect_studio.app.common.jobs import TrainingJob

    started = []
    monkeypatch.setattr(TrainingJob, "start", lambda self, request: started.append(request))
    monkeypatch.setattr(TrainingJob, "is_running", lambda self: bool(started))
    h = panel.history
    h.select_run("stopped")
    h.resume_button.click()
    (request,) = started
    args = request.to_args()
    assert args[args.index("--resume") + 1] == "stopped"
    assert "--model" not in args and "--epochs" not in args  # the run's own settings
    assert args[args.index("--project") + 1] == str(trained_project.root)
    assert panel.is_running() and h.running_run == "stopped"
    h.select_run("stopped")
    assert not h.resume_button.isEnabled() and not h.delete_button.isEnabled()
    xs, _ = panel.curve_total.getData()  # the curves so far, to be continued live
    assert xs is not None and len(xs) > 0
    started.clear()
    panel._on_ended("cancelled")
    assert h.running_run is None


def test_delete_asks_and_removes_folder_and_predictions(qtbot, panel, trained_project,
                                                        monkeypatch):
    trained_project.save_predictions("tiny", [(trained_project.images()[0].id, 0.5, False)])
    answers = [QMessageBox.StandardButton.No]
    asked = []
    monkeypatch.setattr(QMessageBox, "question", staticmethod(
        lambda *a, **k: (asked.append(a[2]), answers[0])[1]))
    h = panel.history
    h.select_run("tiny")
    assert not h.delete_selected()
    assert (trained_project.runs_dir / "tiny").is_dir() and "active run" in asked[0]
    answers[0] = QMessageBox.StandardButton.Yes
    with qtbot.waitSignal(h.run_deleted):
        assert h.delete_selected()
    assert not (trained_project.runs_dir / "tiny").exists()
    assert trained_project.predictions("tiny") == {}
    assert trained_project.active_run() is None
    assert "tiny" not in h.run_ids()


def test_compare_two_runs_and_reopen_past_curves(qtbot, panel, trained_project):
    h = panel.history
    h.select_runs(["tiny", "stopped"])
    assert h.compare_button.isEnabled()
    dlg = h.compare_selected()
    qtbot.addWidget(dlg)
    rows = {dlg.table.verticalHeaderItem(r).text(): (dlg.table.item(r, 0).text(),
                                                      dlg.table.item(r, 1).text())
            for r in range(dlg.table.rowCount())}
    assert {dlg.table.horizontalHeaderItem(c).text() for c in range(2)} == {"tiny", "stopped"}
    assert set(rows["State"]) == {"finished", "cancelled"}
    ap = trained_project.run("tiny").metrics["ap"]
    assert f"{ap:.4f}" in rows["AP"]
    assert all(len(c.loss_x) > 0 for c in dlg.curves.values())
    # a past run's curves come back on the Train page when it is selected
    panel._reset_curves()
    h.select_run("tiny")
    xs, ys = panel.curve_total.getData()
    assert xs is not None and len(xs) > 0
    assert list(panel.final_ap.getData()[1]) == [pytest.approx(ap)]


def test_switching_project_during_training_asks_and_resets(qtbot, trained_project, tmp_path,
                                                           _trained_template, monkeypatch):
    from defect_studio.app.shell.window import MainWindow

    other = copy_project(_trained_template, tmp_path / "other")
    root = trained_project.root
    trained_project.close()
    win = MainWindow()
    qtbot.addWidget(win)
    assert win.open_project(root)
    train, review = win.pages["Train"], win.pages["Review"]
    # a run in progress on this project: its progress, curves and log are on the page
    stopped = []
    monkeypatch.setattr(TrainPage, "is_running", lambda self: True)
    monkeypatch.setattr(TrainPage, "shutdown", lambda self, timeout_ms=0: stopped.append(1))
    train.job = object()
    train._job_visible = True
    train._run_id = "r-old"
    train._on_progress({"epoch": 1, "epochs": 4, "step": 3, "steps": 6, "loss": 0.7})
    train.status_label.setText("Run r-old on cpu")
    review.status_label.setText("Scored 12 images.")
    answers = [QMessageBox.StandardButton.No]
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: answers[0]))
    assert not win.open_project(other)
    assert win.project.root == root and not stopped
    answers[0] = QMessageBox.StandardButton.Yes
    assert win.open_project(other)
    assert win.project.root == other and stopped == [1]
    xs, _ = train.curve_total.getData()
    assert xs is None or len(xs) == 0
    assert train.status_label.text() == "" and train.progress_bar.format() == "ready"
    assert review.status_label.text() == ""
    # what the old run still reports does not reach the new project's page
    train._on_progress({"epoch": 2, "epochs": 4, "step": 1, "steps": 6, "loss": 0.5})
    xs, _ = train.curve_total.getData()
    assert xs is None or len(xs) == 0
    monkeypatch.undo()
    train.job = None
    win.close()


def test_save_threshold_refreshes_runs_table_and_status(qtbot, trained_project):
    from defect_studio.app.shell.window import MainWindow

    root = trained_project.root
    trained_project.close()
    win = MainWindow()
    qtbot.addWidget(win)
    assert win.open_project(root)
    ev, train = win.pages["Evaluate"], win.pages["Train"]
    assert ev.current_run() == "tiny"
    ev.spin.setValue(0.123456)
    ev.save_threshold()
    # the runs table and the status bar show the saved value with Evaluate's six digits
    assert cell(train, "tiny", "Threshold") == "0.123456"
    assert "threshold 0.123456 saved" in win.statusBar().currentMessage()
    assert json.loads((root / "runs" / "tiny" / "threshold.json").read_text())["threshold"] \
        == pytest.approx(0.123456)
    win.close()


def test_evaluate_page_rereads_a_run_of_the_same_name_in_another_project(
        qtbot, trained_project, tmp_path, _trained_template, dialogs):
    from defect_studio.app.evaluate.page import EvaluatePage

    other = copy_project(_trained_template, tmp_path / "other")
    for root, thr in ((trained_project.root, 0.25), (other, 0.75)):
        (root / "runs" / "tiny" / "scores.csv").write_text(
            "image_id,path,label,score,decision,split\n1,a.png,defective,0.9,NG,test\n"
            "2,b.png,ok,0.1,OK,test\n")
        (root / "runs" / "tiny" / "pr_curve.csv").write_text(
            "precision,recall,threshold\n1,1,0.5\n")
        (root / "runs" / "tiny" / "roc_curve.csv").write_text("fpr,tpr,threshold\n0,1,0.5\n")
        (root / "runs" / "tiny" / "threshold.json").write_text(
            json.dumps({"threshold": thr, "source": "user"}))
    v = EvaluatePage()
    qtbot.addWidget(v)
    v.set_project(trained_project)
    assert "0.2500" in v.summary_label.text()
    from defect_studio.project import Project

    with Project.open(other) as p2:
        v.set_project(p2)
        assert "0.7500" in v.summary_label.text()
        v.set_project(None)


def test_runs_table_shows_epochs_while_training(qtbot, panel):
    panel._run_id = "busy"
    panel.history.running_run = "busy"
    panel.history.refresh()
    panel._on_progress({"epoch": 1, "epochs": 4, "step": 2, "steps": 6, "loss": 0.9})
    assert cell(panel, "busy", "Epochs") == "0/4"
    panel._on_progress({"epoch": 2, "epochs": 4, "step": 6, "steps": 6, "loss": 0.8})
    assert cell(panel, "busy", "Epochs") == "2/4"
    panel.history.refresh()  # status.json lags behind: the live count stays
    assert cell(panel, "busy", "Epochs") == "2/4"
