"""Fault matrix, "runs" rows: kill -9 during training and import, second resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from fault_helpers import REPO, png

from defect_studio.errors import ProjectError
from defect_studio.project import Project
from defect_studio.project.runs import hold_run, read_run


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _state(root, run_id):
    return read_run(root / "runs" / run_id).state


@pytest.mark.slow
def test_killed_training_is_interrupted_and_a_live_run_cannot_be_resumed_twice(
        tmp_path, qtbot, capsys):
    from fault_helpers import tiny_project

    root = tiny_project(tmp_path / "p", n=8)
    run_dir = root / "runs" / "r1"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "defect_studio", "train", "--project", str(root), "--run-id", "r1",
         "--epochs", "200", "--size", "32x32", "--threads", "1", "--device", "cpu"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait(lambda: (run_dir / "checkpoint.pt").is_file(), 90, "the first checkpoint")
        assert _state(root, "r1") == "running"
        # a second process may not resume (and write into) the live run
        from defect_studio.training import train

        with pytest.raises(ProjectError, match="being trained by another process"):
            train(root, run_id="r1", resume=True)
        with pytest.raises(ProjectError, match=f"pid {proc.pid}"):
            hold_run(run_dir)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"
    assert _state(root, "r1") == "interrupted"
    from defect_studio.cli import main

    assert main(["runs", "--project", str(root)]) == 0
    assert "interrupted" in capsys.readouterr().out
    hold_run(run_dir).release()  # the lock is free again: it can be resumed

    # the app shows it as interrupted, with a Resume action that asks for that run
    from defect_studio.app.train.run_history import RunHistory

    w = RunHistory()
    qtbot.addWidget(w)
    with Project.open(root, readonly=True) as p:
        w.set_project(p)
        w.select_run("r1")
        row = w.run_ids().index("r1")
        from defect_studio.app.train.run_history import COLUMNS

        assert w.table.item(row, COLUMNS.index("State")).text() == "interrupted"
        assert w.resume_button.isEnabled()
        with qtbot.waitSignal(w.resume_requested, timeout=1000) as sig:
            w.resume_button.click()
        assert sig.args == ["r1"]


def test_resume_request_builds_a_resume_command(tmp_path):
    from defect_studio.app.common.train_request import TrainRequest

    args = TrainRequest(project_root=tmp_path, resume="r1").to_args()
    i = args.index("--resume")
    assert args[i + 1] == "r1" and "--run-id" not in args and "--model" not in args


def test_killed_import_leaves_no_orphans_on_the_next_open(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    png(src / "a.png", seed=1)
    root = tmp_path / "p"
    Project.create(root).close()
    script = textwrap.dedent(f"""
        import os, signal
        from defect_studio.project import Project
        p = Project.open({str(root)!r})
        with p.batch():
            p.add_image({str(src / 'a.png')!r})   # copied into images/, not committed
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)},
                       cwd=REPO, capture_output=True, timeout=60)
    assert r.returncode == -signal.SIGKILL
    assert (root / "images" / "a.png").is_file()  # the orphan copy
    with Project.open(root) as p:
        assert p.orphans_moved == ["images/a.png"]
        assert p.counts()["images"] == 0
        p.add_image(src / "a.png")
        assert [rec.path for rec in p.images()] == ["images/a.png"]  # not a_1.png
    assert list((root / "orphans").glob("*/images/a.png"))  # moved aside, not deleted
