"""Run history: "Export model…" writes a package for the line through the export dialog."""

import json
from pathlib import Path

from PySide6.QtCore import Qt


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.name != "project.lock"}


def test_export_model_from_run_history(qtbot, trained_project, tmp_path, dialogs):
    from defect_studio.app.train.export_model_dialog import ExportModelDialog
    from defect_studio.app.train.run_history import RunHistory
    from defect_studio.deploy.package import read_package
    from defect_studio.io.atomic import sha256_file

    history = RunHistory()
    qtbot.addWidget(history)
    history.set_project(trained_project)
    assert not history.export_button.isEnabled()  # nothing selected yet
    history.select_run("tiny")
    assert history.export_button.isEnabled()
    before = _files(trained_project.root)
    qtbot.mouseClick(history.export_button, Qt.MouseButton.LeftButton)
    dialog = history.findChild(ExportModelDialog)
    assert dialog is not None and dialog.isVisible() and dialog.run_id == "tiny"
    # the proposed folder lies beside the project, never inside it
    proposed = Path(dialog.out_edit.text())
    assert trained_project.root.resolve() not in proposed.resolve().parents

    # a folder inside the project is refused with a message, and nothing is written
    dialog.out_edit.setText(str(trained_project.root / "exports" / "pkg"))
    qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(dialogs), timeout=30000)
    assert "inside the project" in dialogs[-1][1]
    assert dialog.package_dir is None

    out = tmp_path / "line" / "tiny-onnx"
    dialog.out_edit.setText(str(out))
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("onnx"))
    with qtbot.waitSignal(dialog.exported, timeout=240000) as blocker:
        qtbot.mouseClick(dialog.export_button, Qt.MouseButton.LeftButton)
        assert not dialog.export_button.isEnabled()  # one export at a time
    assert blocker.args == [str(out)] and dialog.package_dir == out
    assert "Exported to" in dialog.status.text()
    info = read_package(out)
    manifest = json.loads((out / "package.json").read_text())
    assert manifest["run_id"] == "tiny" and manifest["format"] == "onnx"
    assert manifest["files"]["model.onnx"] == sha256_file(out / "model.onnx")
    thr = json.loads((trained_project.root / "runs" / "tiny" / "threshold.json").read_text())
    assert info.threshold == thr["threshold"]
    assert _files(trained_project.root) == before  # the project folder is untouched
    dialog.close()
