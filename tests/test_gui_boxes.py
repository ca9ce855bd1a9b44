"""The box tool, types panel and type filter of the Label page, through real widgets;
every check reads what was SAVED (a fresh read-only open of the project)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication
from test_gui_label import drag, select_ok_image

from defect_studio.project import Project
from defect_studio.project.boxes import Box

pytestmark = pytest.mark.usefixtures("isolated_qsettings")


@pytest.fixture
def window(demo_project_dir, label_window_on):
    with Project.open(demo_project_dir) as p:
        p.add_type("scratch")
        p.add_type("pit", hotkey="Alt+2")
    return label_window_on(demo_project_dir, size=(1100, 700))


def saved_boxes(project_dir, image_id):
    with Project.open(project_dir, readonly=True) as p:
        return p.image(image_id), p.boxes(image_id), p.box_counts()


def key(widget, k, mods=Qt.KeyboardModifier.NoModifier):
    QApplication.sendEvent(widget, QKeyEvent(QEvent.Type.KeyPress, k, mods))


def test_draw_move_resize_retype_delete(window, demo_project_dir):
    page = window.label_page
    canvas, tool = page.canvas, page.boxes.tool
    image_id = select_ok_image(window)
    assert [page.boxes.panel.list.item(i).text().split()[0]
            for i in range(page.boxes.panel.list.count())] == ["scratch", "pit"]
    page.boxes.action.trigger()  # box mode on
    assert tool.active
    drag(canvas, [(10, 10), (20, 18), (30, 25)])  # draw
    rec, boxes, counts = saved_boxes(demo_project_dir, image_id)
    assert boxes == [Box("scratch", 10, 10, 20, 15)]
    assert rec.label == "defective" and counts["scratch"] == {"boxes": 1, "images": 1}
    drag(canvas, [(15, 15), (20, 20), (25, 20)])  # move by (10, 5)
    assert saved_boxes(demo_project_dir, image_id)[1] == [Box("scratch", 20, 15, 20, 15)]
    drag(canvas, [(40, 30), (45, 35), (50, 40)])  # bottom-right corner of the selected box
    assert saved_boxes(demo_project_dir, image_id)[1] == [Box("scratch", 20, 15, 30, 25)]
    key(canvas, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)  # pit's hotkey
    assert saved_boxes(demo_project_dir, image_id)[1] == [Box("pit", 20, 15, 30, 25)]
    drag(canvas, [(60, 60), (70, 70), (90, 90)])  # drawn past the 64x64 image: clipped
    assert saved_boxes(demo_project_dir, image_id)[1][1] == Box("scratch", 60, 60, 4, 4)
    key(canvas, Qt.Key.Key_Delete)
    rec, boxes, counts = saved_boxes(demo_project_dir, image_id)
    assert boxes == [Box("pit", 20, 15, 30, 25)] and counts["scratch"]["boxes"] == 0
    page.boxes.action.trigger()  # box mode off: a drag paints the mask again
    assert not tool.active


def test_types_panel_adds_a_type_and_filters_the_browser(window, demo_project_dir):
    page = window.label_page
    panel = page.boxes.panel
    panel.name_edit.setText("crack")
    panel.add_button.click()
    with Project.open(demo_project_dir, readonly=True) as p:
        assert [t.name for t in p.defect_types()] == ["scratch", "pit", "crack"]
    assert panel.current_type() == "crack" and page.boxes.tool.current_type == "crack"
    panel.name_edit.setText("bad\x01name")
    panel.add_button.click()  # refused with a message, nothing saved
    with Project.open(demo_project_dir, readonly=True) as p:
        assert len(p.defect_types()) == 3
    image_id = select_ok_image(window)
    page.boxes.action.trigger()
    drag(page.canvas, [(5, 5), (30, 30)])
    assert saved_boxes(demo_project_dir, image_id)[1] == [Box("crack", 5, 5, 25, 25)]
    assert "1 box / 1 image" in panel.list.currentItem().text()
    panel.filter_check.setChecked(True)
    assert page.browser.model.image_ids() == [image_id]
    panel.select_type("pit")
    assert page.browser.model.image_ids() == []
    panel.filter_check.setChecked(False)
    assert len(page.browser.model.image_ids()) == 48


def test_review_shows_predicted_boxes_filters_by_type_and_accepts_one(qtbot, tmp_path):
    """A tiny detector run on the Review page: its boxes are listed and drawn, the type
    filter hides parts, and an accepted (corrected) box is saved as a label."""
    from detection_fixtures import make_box_project

    from defect_studio.app.review.page import ReviewPage
    from defect_studio.kinds.detector.config import DetectorConfig
    from defect_studio.kinds.detector.predictor import DetectorPredictor
    from defect_studio.training import train

    root = make_box_project(tmp_path / "proj")
    train(root, DetectorConfig(model="relational", epochs=1, input_size=(64, 64),
                               num_threads=1, val_every=0, pretrained=False), run_id="det")
    (root / "runs" / "det" / "threshold.json").write_text('{"threshold": 0.0}')
    pred = DetectorPredictor(root / "runs" / "det", device="cpu")
    with Project.open(root) as p:
        ok_id = next(r.id for r in p.images() if r.label == "ok")
        rows = []
        for r in p.images():
            out = pred.predict(p.read_image(r))
            rows.append((r.id, out.score, out.is_ng))
        p.save_predictions("det", rows)
        p.set_active_run("det")
    project = Project.open(root)
    try:
        panel = ReviewPage()
        qtbot.addWidget(panel)
        panel.set_project(project)
        panel.resize(900, 700)
        panel.show()
        qtbot.waitExposed(panel)
        row = next(i for i, it in enumerate(panel.model.items()) if it.image_id == ok_id)
        panel.select_row(row)
        boxes = panel.boxes
        assert boxes.widget.isVisible() and boxes.list.count() >= 1
        shown = boxes._shown_boxes[0]
        assert boxes.list.item(0).text().startswith(f"{shown.type}  {shown.score:.2f}")
        assert panel.view.displayed_rgb() is not None
        other = "bar" if shown.type == "spot" else "spot"
        boxes.list.setCurrentRow(0)
        boxes.as_type.setCurrentText(other)  # correct the type, then accept
        boxes.accept_one.click()
        with Project.open(root, readonly=True) as p:
            rec = p.image(ok_id)
            assert [b.type for b in p.boxes(ok_id)] == [other]
            assert (rec.label, rec.label_source) == ("defective", "prediction")
            got = p.boxes(ok_id)[0]
            assert (got.x, got.y) == pytest.approx((max(shown.x, 0), max(shown.y, 0)), abs=1e-3)
        types = {b.type for it in panel.model.items()
                 for b in boxes.prediction(it.path).boxes_at(0.0)}
        for name in ("spot", "bar"):
            boxes.type_filter.setCurrentIndex(boxes.type_filter.findData(name))
            visible = [it for r, it in enumerate(panel.model.items())
                       if not panel.queue_view.isRowHidden(r)]
            assert all(any(b.type == name for b in boxes.prediction(it.path).boxes_at(0.0))
                       for it in visible)
            assert bool(visible) == (name in types)
        boxes.type_filter.setCurrentIndex(0)
        assert not any(panel.queue_view.isRowHidden(r) for r in range(panel.model.rowCount()))
        # the page's own heatmap worker scores the shown part with the detector too
        qtbot.waitUntil(lambda: panel._heatmap_worker is None, timeout=120_000)
        assert panel.current_item().heatmap is not None
    finally:
        panel.shutdown()
        project.close()
