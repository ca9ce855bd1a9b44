"""Review page: predict in the background, worst-first queue, A/O/D keys write labels, export."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from gui_support import copy_project
from PySide6.QtCore import Qt

from defect_studio.app.review.page import ReviewPage
from defect_studio.project import Project


@pytest.fixture
def project(trained_project):
    return trained_project


def make_panel(qtbot, project) -> ReviewPage:
    panel = ReviewPage()
    qtbot.addWidget(panel)
    panel.set_project(project)
    panel.resize(900, 600)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def predict(qtbot, panel, source: str) -> None:
    with qtbot.waitSignal(panel.prediction_ended, timeout=120_000) as blocker:
        assert panel.predict(source)
    assert blocker.args == ["finished"]


def unlabel_unmasked(project, n: int) -> list[int]:
    """n images without a mask made unlabeled, so that O and D may both be written."""
    ids = [r.id for r in project.images(has_mask=False)][:n]
    project.set_labels([(i, "unlabeled") for i in ids])
    return ids


def test_queue_is_worst_first_with_overlay(qtbot, project, dialogs):
    panel = make_panel(qtbot, project)
    assert panel.run_id() == "tiny"
    predict(qtbot, panel, "test")
    items = panel.model.items()
    n_test = len(project.images(split="test"))
    assert len(items) == n_test and dialogs == []
    keys = [(not it.is_ng, -it.score) for it in items]
    assert keys == sorted(keys)  # NG first, then by score descending
    assert all(it.heatmap is not None for it in items)
    # stored for the run
    stored = project.predictions("tiny")
    assert {it.image_id for it in items} == set(stored)
    for it in items:
        assert stored[it.image_id][0] == pytest.approx(it.score, abs=1e-6)
    # the worst part is shown with its heatmap blended in; H hides it
    assert panel.current_item() is items[0]
    assert panel.view.has_heatmap()
    # A 1-epoch model's map may stay below the overlay's heat floor (plain image, by
    # design): toggle and opacity are checked on a known hot map.
    panel.view.set_heatmap(np.full((8, 8), 0.9, np.float32))
    with_heat = panel.view.displayed_rgb().copy()
    assert with_heat.shape == (64, 64, 3) and with_heat.dtype == np.uint8
    panel.queue_view.setFocus()
    qtbot.keyClick(panel.queue_view, Qt.Key.Key_H)
    assert not panel.heatmap_check.isChecked()
    plain = panel.view.displayed_rgb()
    assert not np.array_equal(plain, with_heat)
    qtbot.keyClick(panel.queue_view, Qt.Key.Key_H)
    panel.opacity_slider.setValue(100)
    assert panel.view.alpha() == pytest.approx(1.0)
    assert not np.array_equal(panel.view.displayed_rgb(), with_heat)


def test_keys_write_labels_and_advance(qtbot, project, dialogs):
    ids = unlabel_unmasked(project, 4)
    panel = make_panel(qtbot, project)
    predict(qtbot, panel, "unlabeled")
    items = panel.model.items()
    assert sorted(it.image_id for it in items) == sorted(ids)
    panel.select_row(0)
    panel.queue_view.setFocus()
    labels_changed = []
    panel.labels_changed.connect(lambda: labels_changed.append(1))

    first, second, third = items[0], items[1], items[2]
    qtbot.keyClick(panel.queue_view, Qt.Key.Key_A)  # accept the model's decision
    rec = project.image(first.image_id)
    assert rec.label == ("defective" if first.is_ng else "ok")
    assert rec.label_source == "prediction"
    assert f"{first.name}: labelled {rec.label} (accepted)" in panel.status_label.text()
    assert panel.current_item() is second  # the next part comes up

    qtbot.keyClick(panel.queue_view, Qt.Key.Key_O)
    rec = project.image(second.image_id)
    assert (rec.label, rec.label_source) == ("ok", "user")
    assert panel.current_item() is third

    qtbot.keyClick(panel.queue_view, Qt.Key.Key_D)
    rec = project.image(third.image_id)
    assert (rec.label, rec.label_source) == ("defective", "user")
    assert len(labels_changed) == 3
    assert dialogs == []
    # the queue shows the written labels
    assert panel.model.item(panel.model.row_of(third)).label == "defective"

    with qtbot.waitSignal(panel.edit_mask_requested) as blocker:
        qtbot.mouseClick(panel.mask_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [panel.current_item().image_id]
    with qtbot.waitSignal(panel.retrain_requested):
        qtbot.mouseClick(panel.retrain_button, Qt.MouseButton.LeftButton)


def test_stored_predictions_reload_and_heatmap_is_computed(qtbot, project):
    panel = make_panel(qtbot, project)
    predict(qtbot, panel, "test")
    scores = {it.image_id: it.score for it in panel.model.items()}
    again = make_panel(qtbot, project)  # a new session of the page: from the store
    assert {it.image_id: it.score for it in again.model.items()} == pytest.approx(scores)
    assert again.current_item() is not None
    qtbot.waitUntil(again.view.has_heatmap, timeout=60_000)
    # a label changed elsewhere (the Label page) shows after refresh()
    ok_item = next(it for it in again.model.items() if it.label == "ok")
    project.set_label(ok_item.image_id, "defective")
    again.refresh()
    assert ok_item.label == "defective"
    row = again.model.row_of(ok_item)
    assert again.model.data(again.model.index(row, 3)) == "defective (user)"


def test_folder_of_new_parts_and_export(qtbot, project, tmp_path, dialogs):
    folder = tmp_path / "new_parts"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"new_{i}.png"), rng.integers(0, 255, (64, 64, 3), np.uint8))
    (folder / "broken.png").write_bytes(b"not a png")
    n_before = project.counts()["images"]
    panel = make_panel(qtbot, project)
    with qtbot.waitSignal(panel.prediction_ended, timeout=120_000):
        assert panel.predict_folder(folder)
    items = panel.model.items()
    assert len(items) == 4
    assert items[-1].error and items[-1].name == "broken.png"  # errors go last
    assert project.counts()["images"] == n_before  # scoring adds nothing to the project

    # correcting a new part copies it into the project with the label
    panel.select_row(0)
    panel.queue_view.setFocus()
    part = panel.current_item()
    qtbot.keyClick(panel.queue_view, Qt.Key.Key_D)
    assert project.counts()["images"] == n_before + 1
    rec = project.image(part.image_id)
    assert (rec.label, rec.label_source) == ("defective", "user")
    assert project.predictions("tiny")[rec.id][0] == pytest.approx(part.score)

    out = tmp_path / "export"
    with qtbot.waitSignal(panel.export_finished, timeout=60_000):
        assert panel.export_results(out)
    with open(out / "review.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3  # the unreadable file has no result to export
    assert rows[0]["path"] == part.path and rows[0]["label"] == "defective"
    assert rows[0]["decision"] in ("OK", "NG")
    for r in rows:
        png = out / r["overlay"]
        assert png.is_file()
        assert cv2.imread(str(png)).shape[:2] == (64, 64)
    assert dialogs == []


def test_switching_project_drops_running_prediction(qtbot, project, _trained_template, tmp_path):
    other = Project.open(copy_project(_trained_template, tmp_path / "other"))
    try:
        other.set_active_run("tiny")
        panel = make_panel(qtbot, project)
        assert panel.predict("all")
        panel.set_project(other)  # while the first project's images are being scored
        assert panel.worker is None and panel.model.rowCount() == 0
        # the retired worker is released when its thread ends
        qtbot.waitUntil(lambda: not panel._retired, timeout=60_000)
        qtbot.wait(100)  # queued signals of the old worker would arrive now
        assert other.predictions("tiny") == {}
        assert panel.model.rowCount() == 0
        assert panel.predict_button.isEnabled()
    finally:
        panel.set_project(None)
        other.close()


def test_images_combo_shows_what_was_predicted(qtbot, project, dialogs):
    panel = make_panel(qtbot, project)
    panel.source_combo.setCurrentIndex(panel.source_combo.findData("unlabeled"))
    predict(qtbot, panel, "test")  # called from code, as the screenshot driver does
    assert panel.source_combo.currentData() == "test"
    n_test = len(project.images(split="test"))
    assert panel.model.rowCount() == n_test
    # nothing unlabeled: a hint, and the combo keeps naming the shown predictions
    project.set_labels([(r.id, "ok") for r in project.images(label="unlabeled")])
    assert not panel.predict("unlabeled")
    assert panel.source_combo.currentData() == "test"
    assert "Unlabeled images" in panel.status_label.text()


def test_review_keys_come_from_the_shortcut_table():
    from defect_studio.app.review.page import KEY_ACCEPT, KEY_DEFECTIVE, KEY_HEATMAP, KEY_OK
    from defect_studio.app.shell.shortcuts import SHORTCUTS, help_html

    review = {s.action: s.keys[0] for s in SHORTCUTS if s.group == "Review"}
    assert review == {"review_accept": KEY_ACCEPT, "review_ok": KEY_OK,
                      "review_defective": KEY_DEFECTIVE, "review_heatmap": KEY_HEATMAP,
                      "review_undo": "Ctrl+Z"}
    assert "<h3 style='margin-top:8px'>Review</h3>" in help_html()


def test_empty_page_says_what_to_do(qtbot, project):
    panel = ReviewPage()
    qtbot.addWidget(panel)
    assert "Open a project" in panel.view._message
    project.save_predictions("tiny", [])
    panel.set_project(project)
    assert panel.model.rowCount() == 0
    assert "press Predict" in panel.view._message and "tiny" in panel.view._message
    project.set_active_run(None)
    panel.refresh()
    assert "train one on the Train page" in panel.view._message
