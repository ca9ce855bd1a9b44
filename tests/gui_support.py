"""Helpers of the GUI tests: one tiny trained run shared by the test modules of a session."""

from __future__ import annotations

import shutil
from pathlib import Path

_TRAINED: dict[str, Path] = {}

# The smallest run that still exercises the whole path: 64x64 images, one epoch, CPU.
TINY = dict(model="mffpa", epochs=1, input_size=(64, 64), device="cpu", num_threads=2,
            lr=0.05, dilate=3, val_every=0, seed=0)


def trained_template(demo_template: Path, tmp_path_factory) -> Path:
    """A copy of the demo project with one finished tiny run (trained once per session)."""
    if "root" not in _TRAINED:
        from defect_studio.project import Project
        from defect_studio.training import TrainConfig, train

        root = tmp_path_factory.mktemp("gui_trained") / "demo"
        shutil.copytree(demo_template, root, ignore=shutil.ignore_patterns("project.lock"))
        with Project.open(root) as project:
            shrink_train_split(project)
        run_id = train(root, TrainConfig(**TINY), run_id="tiny")
        assert (root / "runs" / run_id / "status.json").is_file()
        _TRAINED["root"] = root
    return _TRAINED["root"]


def copy_project(src: Path, dst: Path) -> Path:
    """A private copy of a project folder (without a stale lock file)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("project.lock"))
    return dst


def shrink_train_split(project, n_defective: int = 3) -> None:
    """Move all but n defective training images to the test split: an epoch (every defective
    image once + as many OK ones) then takes a few steps, and the test split gets bigger."""
    defective = [r for r in project.images(split="train", label="defective")]
    for rec in defective[n_defective:]:
        project.set_split(rec.id, "test")


def train_one_tiny_epoch(qtbot, panel, dialogs: list, *, size: int = 64):
    """Press Train on a TrainPage set to 1 epoch at size x size on the CPU; wait until the
    job ends, check it finished without a dialog; returns the project's new active run."""
    from PySide6.QtCore import Qt

    panel.epochs_spin.setValue(1)
    panel.width_spin.setValue(size)
    panel.height_spin.setValue(size)
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("cpu"))
    with qtbot.waitSignal(panel.job_ended, timeout=240_000) as ended:
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    assert ended.args == ["finished"], (dialogs, panel.log_view.toPlainText()[-2000:])
    assert dialogs == []
    project = panel.state.project
    return project.run(project.active_run())
