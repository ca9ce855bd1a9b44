"""Train page, "Run on: cluster at ...": the connection test and a run trained on a Ray
head on 127.0.0.1 (conftest.ray_head) with its live curves, like a local run."""

from __future__ import annotations

import json
import os

import pytest
from gui_support import shrink_train_split
from PySide6.QtCore import Qt

from defect_studio.app.train.page import TrainPage
from defect_studio.project import Project

pytestmark = pytest.mark.xdist_group("ray")  # the session's Ray head lives in one worker


def test_train_page_runs_on_a_cluster(qtbot, ray_head, demo_project_dir, dialogs,
                                      isolated_qsettings):
    project = Project.open(demo_project_dir)
    try:
        shrink_train_split(project)
        panel = TrainPage()
        qtbot.addWidget(panel)
        panel.set_project(project)
        panel.resize(1100, 750)
        panel.epochs_spin.setValue(2)
        panel.width_spin.setValue(32)
        panel.height_spin.setValue(32)
        panel.device_combo.setCurrentIndex(panel.device_combo.findData("cpu"))
        assert not panel.run_on.address_edit.isVisible() or not panel.isVisible()
        assert panel.run_on.address() is None  # this computer by default

        # a bad address: a message, no job
        panel.run_on.set_cluster("not an address")
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
        assert not panel.is_running() and "Cannot start training" in panel.status_label.text()

        # the connection test shows the nodes, CPUs, GPUs and memory
        panel.run_on.set_cluster(ray_head.address)
        with qtbot.waitSignal(panel.run_on.tested, timeout=120_000) as tested:
            qtbot.mouseClick(panel.run_on.test_button, Qt.MouseButton.LeftButton)
        ok, text = tested.args
        assert ok, text
        assert "1 node(s), 2 CPUs" in text and "0 GPUs" in text and "GB memory free" in text

        # the window closes during the first epoch: the job goes on on the cluster
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
        assert panel.is_running()
        qtbot.waitUntil(lambda: panel._run_id is not None and
                        (project.root / "runs" / panel._run_id / "cluster.json").is_file(),
                        timeout=300_000)
        run_id = panel._run_id
        panel.shutdown()
        assert not panel.is_running()
        record = json.loads((project.root / "runs" / run_id / "cluster.json").read_text())
        assert record["state"] == "training"  # not cancelled: only the follower ended
        dialogs.clear()
        # reopened: Resume follows the job again and brings the finished run home
        with qtbot.waitSignal(panel.run_finished, timeout=300_000) as done:
            panel.resume_training(run_id)
            assert panel.is_running()
        assert done.args[0] == run_id
        assert dialogs == []
        run = project.run(run_id)
        assert run.state == "finished" and isinstance(run.metrics.get("ap"), float)
        record = json.loads((run.path / "cluster.json").read_text())
        assert record["address"] == ray_head.address and record["outcome"] == "finished"
        assert "--cluster" in panel.log_view.toPlainText()
        xs, ys = panel.curve_total.getData()
        assert xs is not None and len(xs) >= 2  # the loss curve filled live from the events
        assert project.active_run() == run_id
        shot = os.environ.get("DS_SCREENSHOTS")
        if shot:  # look at it: DS_SCREENSHOTS=/tmp pytest tests/test_gui_cluster.py
            panel.grab().save(os.path.join(shot, "train_on_cluster.png"))
    finally:
        project.close()
