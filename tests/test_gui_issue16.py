"""Issue 16, part 2: the GUI says what it saved (folder corrections, cold start, the active
run, heatmap display, and the smaller items), checked against the SQLite project and files."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import Qt

from defect_studio.project import Project


def _review_panel(qtbot, project):
    from defect_studio.app.review.page import ReviewPage

    panel = ReviewPage()
    qtbot.addWidget(panel)
    panel.set_project(project)
    panel.resize(900, 600)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


# -- item 4: D on a folder part that is already in the project --------------------------------
def test_folder_part_already_in_project_gets_the_correction(qtbot, trained_project, tmp_path,
                                                            dialogs):
    project = trained_project
    ok = [r for r in project.images(label="ok") if not r.has_mask][0]
    folder = tmp_path / "new_parts"
    folder.mkdir()
    shutil.copy(project.image_path(ok), folder / "same_part.png")  # same bytes, other path
    n_before = project.counts()["images"]
    panel = _review_panel(qtbot, project)
    with qtbot.waitSignal(panel.prediction_ended, timeout=120_000):
        assert panel.predict_folder(folder)
    item = panel.model.items()[0]
    assert item.image_id == ok.id and item.label == "ok"  # known by its content
    panel.select_row(0)
    panel.queue_view.setFocus()
    qtbot.keyClick(panel.queue_view, Qt.Key.Key_D)
    assert "labelled defective (corrected)" in panel.status_label.text()
    with Project.open(project.root, readonly=True) as fresh:  # what is saved
        rec = fresh.image(ok.id)
        assert (rec.label, rec.label_source) == ("defective", "user")
        assert fresh.counts()["images"] == n_before
    assert panel.model.items()[0].label == "defective"
    assert dialogs == []
