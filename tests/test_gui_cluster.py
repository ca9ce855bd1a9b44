"""Train page, "Run on: cluster at ...": the connection test and a run trained on a Ray
head on 127.0.0.1 (conftest.ray_head) with its live curves, like a local run."""

from __future__ import annotations

import json
import os

from cluster_support import free_port
from gui_support import shrink_train_split
from PySide6.QtCore import Qt

from defect_studio.app.train.page import TrainPage
from defect_studio.project import Project


def test_train_page_runs_on_a_cluster(qtbot, ray_head, demo_project_dir, dialogs,
                                      isolated_qsettings):
    project = Project.open(demo_project_dir)
    try:
        shrink_train_split(project)
        panel = TrainPage()
        qtbot.addWidget(panel)
        panel.set_project(project)
        panel.resize(1280, 800)
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

        # live progress on the cluster, then Cancel stops the job there (8 epochs of ~1 s:
        # with 4, a loaded machine's cancel could arrive after the last one, a finished run)
        panel.epochs_spin.setValue(8)
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
        assert panel.is_running()
        qtbot.waitUntil(lambda: panel._run_id is not None and
                        (project.root / "runs" / panel._run_id / "checkpoint.pt").is_file(),
                        timeout=300_000)
        run_id = panel._run_id
        run_dir = project.root / "runs" / run_id
        assert _points(panel.curve_total) >= 1  # live curves and progress from the cluster
        assert panel.progress_bar.format().startswith("epoch ") and "/8" in \
            panel.progress_bar.format()
        shot = os.environ.get("DS_SCREENSHOTS")
        if shot:  # look at it: DS_SCREENSHOTS=/tmp pytest tests/test_gui_cluster.py
            panel.grab().save(os.path.join(shot, "train_on_cluster_live.png"))
        with qtbot.waitSignal(panel.job_ended, timeout=120_000) as ended:
            qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
        assert ended.args[0] == "cancelled", panel.log_view.toPlainText()
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == "cancelled" and status["epoch"] < 8
        assert json.loads((run_dir / "cluster.json").read_text())["outcome"] == "cancelled"
        pid = json.loads((run_dir / "cluster.json").read_text())["pid"]
        qtbot.waitUntil(lambda: not _alive(pid), timeout=30_000)  # its worker on the head ended
        assert dialogs == []

        # Resume on the cluster; the window closes meanwhile: the job goes on there
        assert panel.history.can_resume(run_id)
        panel.resume_training(run_id)
        assert panel.is_running()
        qtbot.waitUntil(lambda: json.loads((run_dir / "cluster.json").read_text())["state"]
                        == "training", timeout=300_000)
        panel.shutdown()
        assert not panel.is_running()
        record = json.loads((run_dir / "cluster.json").read_text())
        assert record["state"] == "training" and record["events_before"] > 0
        assert json.loads((run_dir / "status.json").read_text())["state"] != "failed"
        assert dialogs == []  # the follower was killed: no "Training failed" at close
        # two runs whose job cannot be followed: an unreachable cluster, a job gone
        for name, address in (("zdown", f"127.0.0.1:{free_port()}"), ("zlost", ray_head.address)):
            (project.root / "runs" / name).mkdir()
            (project.root / "runs" / name / "status.json").write_text('{"state": "running"}')
            (project.root / "runs" / name / "cluster.json").write_text(json.dumps(
                {**record, "address": address, "actor": f"ds-train-none-{name}"}))

        # the project opens again: the run is followed again by itself and comes home
        panel = TrainPage()
        qtbot.addWidget(panel)
        panel.resize(1280, 800)
        with qtbot.waitSignal(panel.run_finished, timeout=300_000) as done:
            panel.set_project(project)
            assert panel.is_running() and panel._run_id == run_id
            assert panel.reattaching() == ["zdown", "zlost"]
            assert "Following run" in panel.status_label.text()
        assert done.args[0] == run_id
        assert _points(panel.curve_total) >= 2  # the loss curve filled from the events
        run = project.run(run_id)
        assert run.state == "finished" and isinstance(run.metrics.get("ap"), float)
        record = json.loads((run.path / "cluster.json").read_text())
        assert record["address"] == ray_head.address and record["outcome"] == "finished"
        assert project.active_run() == run_id
        # then the two runs that cannot be followed: a note each, no dialog, nothing blocks
        qtbot.waitUntil(lambda: not panel.is_running() and not panel.reattaching(),
                        timeout=120_000)
        assert dialogs == []
        assert _state_cell(panel, "zdown") == "cluster unreachable"
        assert _state_cell(panel, "zlost") == "job lost"
        assert json.loads((project.root / "runs" / "zlost" / "cluster.json").read_text())[
            "state"] == "lost"
        assert json.loads((project.root / "runs" / "zdown" / "cluster.json").read_text())[
            "state"] == "training"  # tried again at the next open
        assert "Resume" in panel.status_label.text()
        if shot:  # the run re-attached and home; the two that could not be followed
            panel.history.select_run(run_id)
            panel.grab().save(os.path.join(shot, "reattached_after_reopen.png"))
        # it evaluates like a local run
        from defect_studio.app.evaluate.page import EvaluatePage

        ev = EvaluatePage()
        qtbot.addWidget(ev)
        ev.set_project(project)
        assert ev.current_run() == run_id
        assert ev.evaluate("test")
        qtbot.waitUntil(lambda: not ev.is_busy(), timeout=120_000)
        assert ev.counts() is not None, ev.summary_label.text()
        assert dialogs == []
    finally:
        _end_leftover_jobs(project.root)
        project.close()


def test_the_evaluate_pages_sweep_runs_its_levels_in_parallel_on_the_cluster(
        qtbot, ray_head, _trained_template, tmp_path, dialogs, isolated_qsettings):
    """"How many masks do I need?" with Run on: cluster at ...: `sweep --cluster --seeds` in
    the page's child process, one job per level at once, the same record and plot."""
    import calendar
    import time

    from gui_support import copy_project

    from defect_studio.app.evaluate.page import EvaluatePage
    from defect_studio.training.sweep import list_sweeps, mean_points

    root = copy_project(_trained_template, tmp_path / "proj")
    project = Project.open(root)
    try:
        page = EvaluatePage()
        qtbot.addWidget(page)
        page.set_project(project)
        page.resize(1280, 800)
        view = page.sweep_view
        page.lower_tabs.setCurrentWidget(view)
        view.epochs, view.size, view.device = 1, (32, 32), "cpu"
        view.low_priority = False
        view.levels_edit.setText("0,all")
        view.seeds_edit.setText("3")  # a seed list of one: 2 runs, the seed passed to both
        view.run_on.set_cluster("not an address")  # refused before anything starts
        qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
        assert not view.is_running() and "cannot run" in view.status.text()
        view.run_on.set_cluster(ray_head.address)
        progress = []
        view.progress.valueChanged.connect(progress.append)
        shot = os.environ.get("DS_SCREENSHOTS")
        with qtbot.waitSignal(view.sweep_ended, timeout=300_000) as ended:
            qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
            assert view.is_running() and not view.run_on.isEnabled()
            if shot:
                qtbot.waitUntil(lambda: 0 < view.progress.value() or not view.is_running(),
                                timeout=300_000)
                page.grab().save(os.path.join(shot, "sweep_on_cluster.png"))
        assert ended.args == ["finished"], view.status.text()
        assert progress == sorted(progress) and progress[-1] == 1000
        record = list_sweeps(root)[-1]
        assert record["state"] == "finished" and record["seeds"] == [3]
        assert [(p["n"], p["seed"]) for p in record["points"]] == [(n, 3) for n in record["n"]]
        assert len(record["n"]) == 2
        assert all(isinstance(p["ap"], float) and p["train_s"] > 0 for p in record["points"])
        xs, ys = view.curve.getData()  # the same plot as a local sweep
        assert list(xs) == [m["n"] for m in mean_points(record["points"])]
        spans = []
        for p in record["points"]:  # each run came home as a finished run of the project
            run = root / "runs" / p["run_id"]
            assert (run / "model.pt").is_file()
            rec = json.loads((run / "cluster.json").read_text())
            lines = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
            assert rec["outcome"] == "finished" and lines[-1]["event"] == "finished"
            assert json.loads((run / "config.json").read_text())["seed"] == 3
            spans.append((rec["started"], (run / "model.pt").stat().st_mtime))
        # two runs at a time (2 CPUs): the second job started before the first one's model
        # came home
        starts = sorted(calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))
                        for s, _ in spans)
        assert starts[1] <= min(end for _, end in spans) + 1
        assert dialogs == []
    finally:
        project.close()


def _state_cell(panel, run_id: str) -> str:
    table = panel.history.table
    col = next(c for c in range(table.columnCount())
               if table.horizontalHeaderItem(c).text().lower() == "state")
    return table.item(panel.history.run_ids().index(run_id), col).text()


def _end_leftover_jobs(root) -> None:
    """A failure above must not leave a job training on the shared head: the next test's
    sweep would find one CPU free and run its levels one after the other."""
    import signal

    for path in (root / "runs").glob("*/cluster.json"):
        record = json.loads(path.read_text())
        pid = record.get("pid")
        if record.get("state") != "done" and isinstance(pid, int) and _alive(pid):
            try:  # only the head's worker, never a process that got its pid since
                cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                continue
            if b"ray" in cmd:
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _points(curve) -> int:
    xs = curve.getData()[0]
    return 0 if xs is None else len(xs)
