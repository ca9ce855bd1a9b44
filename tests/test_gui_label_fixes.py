"""Issue 11 bugs 1-3 through the real widgets: clearing a mask deletes it, Accept never
overrides a person's label without asking, Ctrl+Z undoes labels, new parts get a split.
Every check reads what was saved (SQLite rows, mask files)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from test_gui_review import make_panel, predict

from defect_studio.project import Project

pytestmark = pytest.mark.usefixtures("isolated_qsettings")


def stored(project_dir, image_id):
    with Project.open(project_dir, readonly=True) as p:
        rec = p.image(image_id)
        return rec, p.mask_path(image_id).exists(), p.counts()


def test_clear_mask_deletes_it_and_ok_is_allowed_again(window, qtbot, demo_project_dir):
    page = window.label_page
    page.auto_next.setChecked(False)
    b = page.browser
    masked = next(i for i in b.model.image_ids()
                  if b.model.record(i).label == "defective" and b.model.record(i).has_mask)
    b.select_image(masked)
    _, _, before = stored(demo_project_dir, masked)
    page.canvas.setFocus()
    qtbot.keyClick(page.canvas, Qt.Key.Key_Delete, Qt.KeyboardModifier.ControlModifier)
    rec, file_there, counts = stored(demo_project_dir, masked)
    assert rec.label == "defective" and not rec.has_mask and not file_there
    assert counts["masked"] == before["masked"] - 1
    assert not b.model.record(masked).has_mask  # the M badge goes
    assert "masked" in window.counts_label.text()
    assert f"{counts['masked']} masked" in window.counts_label.text()
    # O now makes a plain OK image, not an "OK with mask"
    qtbot.keyClick(page.canvas, Qt.Key.Key_O)
    rec, file_there, _ = stored(demo_project_dir, masked)
    assert (rec.label, rec.has_mask, file_there) == ("ok", False, False)
    # Ctrl+Z: the cleared mask is still on the canvas's undo stack, so it comes back first
    qtbot.keyClick(page.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    rec, file_there, _ = stored(demo_project_dir, masked)
    assert rec.has_mask and file_there and rec.label == "defective"


def test_ctrl_z_undoes_labels_on_the_label_page(window, qtbot, demo_project_dir):
    page = window.label_page
    page.auto_next.setChecked(True)
    b = page.browser
    ids = [i for i in b.model.image_ids() if not b.model.record(i).has_mask][:2]
    first = ids[0]
    b.select_image(first)
    old = (b.model.record(first).label, b.model.record(first).label_source)
    target = "defective" if old[0] != "defective" else "ok"
    page.canvas.setFocus()
    qtbot.keyClick(page.canvas, Qt.Key.Key_D if target == "defective" else Qt.Key.Key_O)
    assert stored(demo_project_dir, first)[0].label == target
    assert page.current_image_id() != first or not page.auto_next.isChecked()
    qtbot.keyClick(page.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    rec = stored(demo_project_dir, first)[0]
    assert (rec.label, rec.label_source) == old
    assert page.current_image_id() == first  # undo shows the image it changed
    assert not page.actions_by_id["undo"].isEnabled()  # nothing more to undo


def _disagreeing_item(panel, project):
    """A scored part without a mask whose label a person set against the model."""
    for row, it in enumerate(panel.model.items()):
        if it.error or project.image(it.image_id).has_mask:
            continue
        human = "ok" if it.is_ng else "defective"
        project.set_label(it.image_id, human, "user")
        panel.refresh()
        return row, it, human
    raise AssertionError("no scored part without a mask")


def test_accept_asks_before_overriding_a_person_and_undo(qtbot, trained_project, monkeypatch):
    project = trained_project
    panel = make_panel(qtbot, project)
    predict(qtbot, panel, "test")
    row, it, human = _disagreeing_item(panel, project)
    asked: list[str] = []
    answer = [QMessageBox.StandardButton.No]

    def question(parent, title, text, *a, **k):
        asked.append(text)
        return answer[0]

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    panel.select_row(row)
    panel.queue_view.setFocus()
    qtbot.keyClick(panel.queue_view, Qt.Key.Key_A)
    assert len(asked) == 1 and it.name in asked[0] and "by a person" in asked[0]
    assert (project.image(it.image_id).label, project.image(it.image_id).label_source) == \
        (human, "user")  # kept
    answer[0] = QMessageBox.StandardButton.Yes
    qtbot.keyClick(panel.queue_view, Qt.Key.Key_A)
    rec = project.image(it.image_id)
    decision = "defective" if it.is_ng else "ok"
    assert (rec.label, rec.label_source) == (decision, "prediction")
    assert not rec.has_mask
    # Ctrl+Z restores the person's label, source included
    qtbot.keyClick(panel.queue_view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    rec = project.image(it.image_id)
    assert (rec.label, rec.label_source) == (human, "user")
    assert panel.current_item() is it and it.label == human
    # a part already labelled as the model says is not asked about nor rewritten
    project.set_label(it.image_id, decision, "user")
    panel.refresh()
    panel.select_row(panel.model.row_of(it))
    n = len(asked)
    qtbot.keyClick(panel.queue_view, Qt.Key.Key_A)
    assert len(asked) == n
    assert project.image(it.image_id).label_source == "user"


def test_corrections_on_new_parts_get_a_split(qtbot, trained_project, tmp_path, dialogs):
    project = trained_project
    folder = tmp_path / "new_parts"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(2):
        cv2.imwrite(str(folder / f"new_{i}.png"), rng.integers(0, 255, (64, 64, 3), np.uint8))
    panel = make_panel(qtbot, project)
    with qtbot.waitSignal(panel.prediction_ended, timeout=120_000):
        assert panel.predict_folder(folder)
    panel.select_row(0)
    panel.queue_view.setFocus()
    part = panel.current_item()
    qtbot.keyClick(panel.queue_view, Qt.Key.Key_O)
    rec = project.image(part.image_id)
    assert rec.label == "ok" and rec.split in ("train", "val", "test")
    assert project.counts()["unassigned"] == 0


def test_splits_shown_filtered_searched_and_moved(window, qtbot, demo_project_dir):
    page = window.label_page
    page.auto_next.setChecked(False)
    b = page.browser
    project = window.project
    # an image that lost its split is given one as soon as it is labelled
    loose = next(i for i in b.model.image_ids() if not b.model.record(i).has_mask)
    project.set_split(loose, None)
    page.refresh()
    assert "no split 1" in window.counts_label.text() or "no split 1" in b.counts_label.text()
    b.select_image(loose)
    page.canvas.setFocus()
    qtbot.keyClick(page.canvas, Qt.Key.Key_O)
    assert stored(demo_project_dir, loose)[0].split in ("train", "val", "test")

    counts = stored(demo_project_dir, loose)[2]["splits"]
    assert (f"train {counts['train']} / val {counts['val']} / test {counts['test']}"
            in window.counts_label.text())
    b.split_box.setCurrentIndex(b.split_box.findData("test"))
    shown = b.model.image_ids()
    assert len(shown) == counts["test"]
    assert all(b.model.record(i).split == "test" for i in shown)
    # move two test images to validation: pinned in the store, filter and counts follow
    b.view.selectAll()
    two = b.selected_ids()[:2]
    assert b.move_to_split("val", two) == 2
    for i in two:
        rec = stored(demo_project_dir, i)[0]
        assert rec.split == "val" and rec.split_pinned
    assert f"val {counts['val'] + 2}" in window.counts_label.text()
    b.model.refilter()
    assert len(b.model.image_ids()) == counts["test"] - 2
    # file-name search (any case) on top of the split filter
    b.split_box.setCurrentIndex(0)
    name = b.model.record(two[0]).name
    b.search_box.setText(name.upper())
    assert b.model.image_ids() == [two[0]]
    b.search_box.clear()
    assert len(b.model.image_ids()) == stored(demo_project_dir, loose)[2]["images"]


def test_all_labelled_notice(window, qtbot):
    b = window.label_page.browser
    project = window.project
    unl = [r.id for r in project.images(label="unlabeled")]
    if unl:
        project.set_labels([(i, "ok") for i in unl])
        window.label_page.refresh()
    assert "All images are labelled" in b.counts_label.text()
    plain = next(r.id for r in project.images(has_mask=False))
    project.set_label(plain, "unlabeled")
    window.label_page.refresh()
    assert "All images are labelled" not in b.counts_label.text()


def test_long_file_names_wrap_instead_of_being_cut(qtbot):
    from PySide6.QtGui import QFontMetrics
    from PySide6.QtWidgets import QLabel

    from defect_studio.app.label.image_browser import name_lines

    fm = QFontMetrics(QLabel().font())
    name = "MT_Blowhole_exp1_num_4727_and_more.png"
    width = fm.horizontalAdvance(name) * 2 // 3
    text = name_lines(name, fm, width)
    first, second = text.split("\n")
    assert (first + second) == name  # the whole name, on two lines
    assert fm.horizontalAdvance(first) <= width
    short = "part_1.png"
    assert name_lines(short, fm, 500) == short
    very = "x" * 300 + "_0042.png"
    first, second = name_lines(very, fm, 80).split("\n")
    assert second.endswith("0042.png") and "\u2026" in second  # the end stays readable
