"""Review viewer (issue 11): zoom and pan, colour bar with the peak, a marker on the peak of a
heatmap too weak to tint any pixel, side by side panes, and one part under two runs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from test_gui_review import make_panel, predict

from defect_studio.app.common.heatmap_view import HeatmapView
from defect_studio.app.review.viewer import SideBySide
from defect_studio.inference.overlay import HEAT_FLOOR


def _img():
    rng = np.random.default_rng(0)
    return rng.integers(60, 120, (64, 80), np.uint8)


def test_weak_peak_is_marked_and_colour_bar_shows_it(qtbot):
    v = HeatmapView()
    qtbot.addWidget(v)
    v.resize(400, 320)
    v.show()
    heat = np.zeros((8, 10), np.float32)
    heat[1, 5] = HEAT_FLOOR * 0.6  # below the blend's floor: the overlay changes no pixel
    v.set_content(_img(), heat, 0.3, True)
    assert np.array_equal(v.displayed_rgb(), np.repeat(_img()[:, :, None], 3, 2))
    value, x, y = v.peak()
    assert value == pytest.approx(HEAT_FLOOR * 0.6) and x == pytest.approx(43.5) and \
        y == pytest.approx(11.5)
    shot = v.grab().toImage()
    c = v.to_widget(x + 0.5, y + 0.5)
    ring = shot.pixelColor(int(c.x()) + 12, int(c.y()))  # on the marker's ring
    assert ring.red() > 200 and ring.green() > 200 and ring.blue() > 200
    # colour bar at the right edge: hot at the top, cold at the bottom (jet: red / blue)
    top = shot.pixelColor(v.width() - 20, 16)
    assert top.red() > top.blue()
    # hiding the heatmap hides marker and bar
    v.set_heatmap_visible(False)
    assert v.markers == []


def test_zoom_at_cursor_pan_and_fit(qtbot):
    v = HeatmapView()
    qtbot.addWidget(v)
    v.resize(400, 320)
    v.show()
    v.set_content(_img(), None)
    anchor = QPointF(150, 120)
    before = v.to_image(anchor)
    fit = v.zoom()
    v.zoom_by(2.0, anchor)
    assert v.zoom() == pytest.approx(2 * fit)
    after = v.to_image(anchor)
    assert (after.x(), after.y()) == pytest.approx((before.x(), before.y()), abs=1e-6)
    qtbot.mousePress(v, Qt.MouseButton.LeftButton, pos=QPoint(200, 160))
    qtbot.mouseMove(v, QPoint(240, 160))
    qtbot.mouseRelease(v, Qt.MouseButton.LeftButton, pos=QPoint(240, 160))
    moved = v.to_image(anchor)
    assert moved.x() == pytest.approx(before.x() - 40 / v.zoom(), abs=1e-6)
    qtbot.mouseDClick(v, Qt.MouseButton.LeftButton, pos=QPoint(10, 10))
    assert v.is_fitted()


def test_side_by_side_panes_and_linked_zoom(qtbot):
    s = SideBySide()
    qtbot.addWidget(s)
    s.resize(800, 600)
    s.show()
    heat = np.zeros((64, 80), np.float32)
    heat[10:20, 30:50] = 0.8
    mask = np.zeros((64, 80), np.uint8)
    mask[12:22, 30:45] = 255
    s.set_content(_img(), heat, mask, "defective")
    assert int(np.count_nonzero(s.predicted_mask())) == 200
    s.mask_threshold.setValue(0.9)
    assert not s.predicted_mask().any()
    s.mask_threshold.setValue(0.5)
    assert "IoU" in s.info.text()
    for name in ("Image", "Heatmap", "True mask", "Predicted mask"):
        assert s.panes[name]._qimage is not None, name
    s.panes["Heatmap"].zoom_by(3.0)
    zooms = {round(p.zoom(), 6) for p in s.panes.values()}
    assert len(zooms) == 1
    # a defective part without a mask says so instead of an empty mask
    s.set_content(_img(), heat, None, "defective")
    assert s.panes["True mask"]._qimage is None
    assert "No mask" in s.panes["True mask"]._message


def test_review_page_side_by_side_and_compare_two_runs(qtbot, trained_project, dialogs):
    project = trained_project
    shutil.copytree(project.runs_dir / "tiny", project.runs_dir / "tiny-copy")
    panel = make_panel(qtbot, project)
    predict(qtbot, panel, "test")
    masked = next(r for r, it in enumerate(panel.model.items())
                  if it.image_id is not None and project.image(it.image_id).has_mask)
    panel.select_row(masked)
    it = panel.current_item()
    panel.viewer.setCurrentWidget(panel.viewer.side)
    side = panel.viewer.side
    assert side.panes["True mask"]._qimage is not None
    assert side.panes["Heatmap"]._qimage is not None
    cmp_ = panel.viewer.compare
    assert [cmp_.run_combo.itemData(i) for i in range(cmp_.run_combo.count())] == \
        [None, "tiny-copy"]
    panel.viewer.setCurrentWidget(cmp_)
    cmp_.run_combo.setCurrentIndex(1)
    qtbot.waitUntil(lambda: "score" in cmp_.right_caption.text(), timeout=60_000)
    # the same weights give the same score as the active run
    assert f"{it.score:.4f}" in cmp_.right_caption.text()
    assert cmp_.right.has_heatmap() and cmp_.left.has_heatmap()
    assert dialogs == []
    panel.shutdown()
