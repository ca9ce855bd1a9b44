"""Train page: the Train button runs a real (tiny) training process; cancel; failures."""

from __future__ import annotations

import json
import os
import stat

import pytest
from gui_support import shrink_train_split, train_one_tiny_epoch
from PySide6.QtCore import Qt

from defect_studio.app.common.jobs import TrainingJob, format_eta, parse_event
from defect_studio.app.common.train_request import TrainRequest
from defect_studio.app.train.page import TrainPage
from defect_studio.app.train.run_history import ACTIVE_MARK, COLUMNS
from defect_studio.project import Project


@pytest.fixture
def project(demo_project_dir):
    p = Project.open(demo_project_dir)
    yield p
    p.close()


def make_panel(qtbot, project, epochs: int) -> TrainPage:
    panel = TrainPage()
    qtbot.addWidget(panel)
    panel.set_project(project)
    panel.model_combo.setCurrentIndex(panel.model_combo.findData("mixsup"))
    panel.epochs_spin.setValue(epochs)
    panel.width_spin.setValue(64)
    panel.height_spin.setValue(64)
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("cpu"))
    return panel


def cell(panel: TrainPage, run_id: str, column: str) -> str:
    row = panel.history.run_ids().index(run_id)
    return panel.history.table.item(row, COLUMNS.index(column)).text()


def test_train_button_trains_and_lists_the_run(qtbot, project, dialogs):
    shrink_train_split(project)
    panel = make_panel(qtbot, project, epochs=1)
    assert panel.train_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.progress_bar.text() == "ready"
    assert "press Train" in panel.history.active_label.text()  # no runs yet: a hint
    with qtbot.waitSignal(panel.run_finished, timeout=240_000) as blocker:
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
        assert panel.is_running()
        assert not panel.train_button.isEnabled() and panel.cancel_button.isEnabled()
    run_id = blocker.args[0]
    assert dialogs == []
    run = project.run(run_id)
    assert run.state == "finished"
    assert run.model == "mixsup"
    assert isinstance(run.metrics.get("ap"), float)
    # the new run is listed with its metrics and became the active run
    assert project.active_run() == run_id
    assert cell(panel, run_id, "Run") == ACTIVE_MARK + run_id
    assert cell(panel, run_id, "State") == "finished"
    assert cell(panel, run_id, "AP") == f"{run.metrics['ap']:.3f}"
    assert cell(panel, run_id, "Threshold") == f"{run.threshold:.6f}"  # as Evaluate shows it
    # the live curves got the loss of every step, the progress bar is full
    x, y = panel.curve_total.getData()
    assert x is not None and len(x) == len(y) >= 2
    assert max(x) == pytest.approx(1.0)
    assert panel.progress_bar.value() == 1000
    assert "[finished]" in panel.log_view.toPlainText()
    assert panel.train_button.isEnabled() and not panel.cancel_button.isEnabled()
    # the form is remembered with the project
    assert project.get_setting("ui.train_settings")["epochs"] == 1


def test_cancel_stops_the_run(qtbot, project, dialogs):
    panel = make_panel(qtbot, project, epochs=30)
    qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    job = panel.job
    with qtbot.waitSignal(job.progress, timeout=120_000):
        pass
    with qtbot.waitSignal(panel.job_ended, timeout=60_000) as blocker:
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["cancelled"]
    assert dialogs == []
    assert job.run_id
    status = json.loads((project.runs_dir / job.run_id / "status.json").read_text())
    assert status["state"] == "cancelled"
    assert project.run(job.run_id).state == "cancelled"
    assert project.active_run() != job.run_id
    assert panel.progress_bar.format() == "cancelled"
    assert cell(panel, job.run_id, "State") == "cancelled"
    # the page is usable again
    assert panel.train_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.model_combo.isEnabled()


def test_training_error_is_shown_and_project_unchanged(qtbot, tmp_path, dialogs):
    empty = Project.create(tmp_path / "empty")
    try:
        panel = make_panel(qtbot, empty, epochs=1)
        with qtbot.waitSignal(panel.job_ended, timeout=120_000) as blocker:
            qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
        assert blocker.args == ["failed"]
        assert len(dialogs) == 1
        title, text = dialogs[0]
        assert title == "Training failed"
        assert "image" in text.lower()  # the DataError names what is missing
        assert empty.counts()["images"] == 0
        assert all(r.state != "running" for r in empty.runs())
        assert empty.active_run() is None
        assert panel.train_button.isEnabled()
    finally:
        empty.close()


def test_crash_without_event_reports_exit_code_and_stderr(qtbot, tmp_path):
    script = tmp_path / "crash.sh"
    script.write_text("#!/bin/sh\necho 'not an event'\necho 'boom: out of memory' >&2\nexit 7\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    job = TrainingJob()
    logs: list[str] = []
    job.log.connect(logs.append)
    with qtbot.waitSignal(job.failed, timeout=30_000) as blocker:
        job.start(TrainRequest(tmp_path), program=str(script))
    message = blocker.args[0]
    assert "exit code 7" in message and "boom: out of memory" in message
    assert job.state == "failed"
    assert "not an event" in logs


def test_program_that_cannot_start_fails_cleanly(qtbot, tmp_path):
    job = TrainingJob()
    with qtbot.waitSignal(job.ended, timeout=30_000) as blocker:
        job.start(TrainRequest(tmp_path), program=os.fspath(tmp_path / "missing-program"))
    assert blocker.args == ["failed"]
    assert not job.is_running()


def test_event_parsing_and_eta():
    assert parse_event('{"event": "progress", "step": 3}') == {"event": "progress", "step": 3}
    assert parse_event("Epoch 1 ...") is None
    assert parse_event('{"no_event": 1}') is None
    assert parse_event('{"event": "x"') is None
    assert format_eta(65) == "1:05"
    assert format_eta(3725) == "1:02:05"
    assert format_eta(None) == "?"


def test_request_arguments(tmp_path):
    args = TrainRequest(tmp_path, model="mffpa", preset="quick", epochs=3, size=(96, 64),
                        device="cpu").to_args()
    assert args[:3] == ["-m", "defect_studio", "train"]
    assert "--events" in args
    assert args[args.index("--size") + 1] == "96x64"
    assert args[args.index("--epochs") + 1] == "3"
    assert args[args.index("--project") + 1] == str(tmp_path)


def test_unavailable_devices_are_disabled(qtbot):
    import torch

    panel = TrainPage()
    qtbot.addWidget(panel)
    model = panel.device_combo.model()
    cuda = model.item(panel.device_combo.findData("cuda"))
    assert cuda.isEnabled() == torch.cuda.is_available()
    if not cuda.isEnabled():
        assert "CUDA" in panel.device_combo.itemData(panel.device_combo.findData("cuda"),
                                                     Qt.ItemDataRole.ToolTipRole)
    assert not panel.train_button.isEnabled()  # no project yet


def test_cancel_kills_a_stuck_process_and_records_cancelled(qtbot, tmp_path):
    """A child that ignores SIGTERM is killed after the grace period; its run, left
    "running" by the killed child, is recorded as cancelled."""
    run = tmp_path / "runs" / "stuck"
    run.mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"state": "running", "epoch": 0}))
    script = tmp_path / "stuck.sh"
    script.write_text("#!/bin/sh\ntrap '' TERM\n"
                      "echo '{\"event\": \"started\", \"run_id\": \"stuck\"}'\n"
                      "while true; do sleep 0.05; done\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    job = TrainingJob(grace_ms=300)
    with qtbot.waitSignal(job.started, timeout=30_000):
        job.start(TrainRequest(tmp_path), program=str(script))
    with qtbot.waitSignal(job.ended, timeout=30_000) as blocker:
        job.cancel()
    assert blocker.args == ["cancelled"]
    assert json.loads((run / "status.json").read_text())["state"] == "cancelled"


def test_finished_metrics_are_plotted_and_shown_without_validation_events(qtbot):
    panel = TrainPage()
    qtbot.addWidget(panel)
    ev = {"run_id": "r1", "threshold": 0.42, "elapsed_s": 12.0,
          "metrics": {"ap": 0.91, "auc": 0.955, "epochs": 3, "split": "val", "n": 45, "n_pos": 9}}
    panel._on_succeeded("r1", ev)  # val_every=0: the finished event is the only source
    xs, ys = panel.final_ap.getData()
    assert list(xs) == [3.0] and list(ys) == [pytest.approx(0.91)]
    assert list(panel.final_auc.getData()[1]) == [pytest.approx(0.955)]
    text = panel.status_label.text()
    assert "AP 0.910" in text and "ROC AUC 0.955" in text and "validation" in text
    assert "0.420" in text
    # a new run starts with an empty plot
    panel._reset_curves()
    assert panel.final_ap.getData()[0] is None or len(panel.final_ap.getData()[0]) == 0


def test_plots_follow_the_palette(qtbot):
    from PySide6.QtGui import QColor, QGuiApplication, QPalette
    from PySide6.QtWidgets import QApplication

    from defect_studio.app.common.plot_style import style_all_plots

    panel = TrainPage()
    qtbot.addWidget(panel)
    app = QApplication.instance()
    old = QGuiApplication.palette()
    try:
        for base, text in ((QColor(255, 255, 255), QColor(0, 0, 0)),
                           (QColor(30, 30, 30), QColor(240, 240, 240))):
            pal = QPalette(old)
            pal.setColor(QPalette.ColorRole.Base, base)
            pal.setColor(QPalette.ColorRole.Text, text)
            app.setPalette(pal)
            style_all_plots(panel)
            for plot in (panel.loss_plot, panel.val_plot):
                assert plot.backgroundBrush().color() == base
                assert plot.getAxis("bottom").pen().color() == text
            assert panel.curve_total.opts["pen"].color() == text  # the dark/light curve
            _sample, label = panel.loss_plot.getPlotItem().legend.items[0]
            assert label.opts["color"] == text.name()
    finally:
        app.setPalette(old)


def test_model_choice_gets_a_learning_rate_that_works_for_it(qtbot, monkeypatch):
    from defect_studio.training import TrainConfig

    original = TrainConfig.preset.__func__

    def old_presets(cls, name, **overrides):  # quick as it was: MixSup at lr 0.05
        if name != "quick":
            return original(cls, name, **overrides)
        base = dict(model="mixsup", epochs=8, input_size=(96, 96), lr=0.05, val_every=0)
        base.update(overrides)
        return cls.from_dict(base)

    monkeypatch.setattr(TrainConfig, "preset", classmethod(old_presets))
    panel = TrainPage()
    qtbot.addWidget(panel)
    panel.preset_combo.setCurrentText("thorough")
    panel.preset_combo.setCurrentText("quick")
    assert panel.model_combo.currentData() == "mixsup"
    assert panel.lr_spin.value() == pytest.approx(0.05)
    panel.model_combo.setCurrentIndex(panel.model_combo.findData("mffpa"))
    # MFFPA diverged at 0.05: the rate of the preset made for MFFPA is used
    assert panel.lr_spin.value() == pytest.approx(TrainConfig.preset("thorough").lr)
    # a preset without validation still fills the plot as it goes (~5 points per run)
    panel.epochs_spin.setValue(20)
    assert "every 4 epochs" in panel.val_plot.getPlotItem().titleLabel.text


def test_learning_rate_reaches_the_training_process(qtbot, project, monkeypatch):
    started: list[TrainRequest] = []
    monkeypatch.setattr(TrainingJob, "start", lambda self, request: started.append(request))
    panel = make_panel(qtbot, project, epochs=1)
    panel.lr_spin.setValue(0.0123)
    panel.start_training()
    (request,) = started
    args = request.to_args()
    assert args[args.index("--config") + 1] == str(request.config_path)
    # epochs=1: the validation plot gets its point every epoch
    assert json.loads(request.config_path.read_text()) == {"lr": pytest.approx(0.0123),
                                                            "val_every": 1}
    assert project.get_setting("ui.train_settings")["lr"] == pytest.approx(0.0123)
    panel._on_ended("failed")  # the temporary file goes with the job
    assert not request.config_path.exists()


def test_nan_failure_says_what_to_change_in_the_form(qtbot, dialogs):
    panel = TrainPage()
    qtbot.addWidget(panel)
    panel.lr_spin.setValue(0.05)
    panel._on_failed("loss became NaN at epoch 1 step 3; lower the learning rate "
                     "(now 0.05, try 0.005) and train again")
    (title, text), = dialogs
    assert "Learning rate" in text and "0.005" in text


def test_detector_is_offered_and_trains_from_the_page(qtbot, tmp_path, dialogs):
    """The model list comes from the kind registry: the box detector is on it, with its
    kind's presets, and the Train button trains it on a project with boxes."""
    from detection_fixtures import make_box_project

    from defect_studio.kinds import kind_of_model

    root = make_box_project(tmp_path / "boxes")
    with Project.open(root) as project:
        panel = TrainPage()
        qtbot.addWidget(panel)
        panel.set_project(project)
        models = [panel.model_combo.itemData(i) for i in range(panel.model_combo.count())]
        detector = next(m for m in models if kind_of_model(m).trains_on == "boxes")
        assert detector == kind_of_model(detector).default_model
        panel.model_combo.setCurrentIndex(panel.model_combo.findData(detector))
        presets = [panel.preset_combo.itemText(i) for i in range(panel.preset_combo.count())]
        assert presets == list(kind_of_model(detector).presets)
        # the detector's own quick preset: its epochs, size (from the data and its boxes,
        # issue 18) and learning rate
        quick = kind_of_model(detector).load("config").preset("quick")
        assert panel.epochs_spin.value() == quick.epochs
        assert (panel.width_spin.value(), panel.height_spin.value()) == (64, 64)
        assert panel.size_reason.text().startswith("input 64x64: smallest boxes ~")
        assert panel.lr_spin.value() == pytest.approx(quick.lr)
        run = train_one_tiny_epoch(qtbot, panel, dialogs)
        run_id = run.id
        assert run.state == "finished" and run.model == detector
        config = json.loads((project.runs_dir / run_id / "config.json").read_text())
        assert config["epochs"] == 1 and config["input_size"] == [64, 64]
        assert config["lr"] == pytest.approx(quick.lr)
        assert project.get_setting("ui.train_settings")["model"] == detector
