"""Labelling through the real widgets: keys, brush, eraser, undo/redo, polygon, corrupt
files. Every check reads what was SAVED (store, mask PNG), reopening the project."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from defect_studio.project import Project

pytestmark = pytest.mark.usefixtures("isolated_qsettings")


def _send(widget, kind, pos, button, buttons):
    ev = QMouseEvent(kind, QPointF(pos), widget.mapToGlobal(pos.toPoint()).toPointF(),
                     button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


def drag(canvas, points, button=Qt.MouseButton.LeftButton):
    """Press at the first image point, move through the rest, release at the last."""
    vp = canvas.viewport()
    pos = [canvas.mapFromScene(QPointF(x, y)).toPointF() for x, y in points]
    _send(vp, QEvent.Type.MouseButtonPress, pos[0], button, button)
    for p in pos[1:]:
        _send(vp, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, button)
    _send(vp, QEvent.Type.MouseButtonRelease, pos[-1], button, Qt.MouseButton.NoButton)


def click(canvas, x, y):
    drag(canvas, [(x, y)])


def saved_mask(project_dir, image_id):
    """The mask PNG on disk as read by a fresh, read-only open of the project."""
    with Project.open(project_dir, readonly=True) as p:
        rec = p.image(image_id)
        m = cv2.imread(str(p.root / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        return rec, m


def select_ok_image(win):
    """Select an OK image without a mask (a clean start for painting)."""
    b = win.label_page.browser
    for image_id in b.model.image_ids():
        rec = b.model.record(image_id)
        if rec.label == "ok" and not rec.has_mask:
            b.select_image(image_id)
            assert win.label_page.current_image_id() == image_id
            return image_id
    raise AssertionError("demo project has no OK image")


def test_keys_label_images_in_store(window, qtbot, demo_project_dir):
    page = window.label_page
    page.auto_next.setChecked(False)
    b = page.browser
    ids = b.model.image_ids()
    b.select_image(ids[0])
    assert not b.model.record(ids[1]).has_mask   # a masked image cannot be unlabeled
    page.canvas.setFocus()
    qtbot.keyClick(page.canvas, Qt.Key.Key_D)
    qtbot.keyClick(page.canvas, Qt.Key.Key_J)            # next
    assert page.current_image_id() == ids[1]
    qtbot.keyClick(page.canvas, Qt.Key.Key_U)            # clear the label
    qtbot.keyClick(page.canvas, Qt.Key.Key_Right)
    qtbot.keyClick(page.canvas, Qt.Key.Key_O)
    qtbot.keyClick(page.canvas, Qt.Key.Key_K)            # previous
    assert page.current_image_id() == ids[1]
    window.close()
    with Project.open(demo_project_dir, readonly=True) as p:
        assert p.image(ids[0]).label == "defective"
        assert p.image(ids[0]).label_source == "user"
        assert p.image(ids[1]).label == "unlabeled"
        assert p.image(ids[2]).label == "ok"


def test_auto_advance_goes_to_next_unlabeled(window, qtbot, demo_project_dir):
    page = window.label_page
    b = page.browser
    ids = [i for i in b.model.image_ids() if not b.model.record(i).has_mask]
    # Make two mask-free images unlabeled in the store and reload the browser.
    for i in (ids[1], ids[4]):
        window.project.set_label(i, "unlabeled")
    page.refresh()
    page.auto_next.setChecked(True)
    b.select_image(ids[1])
    qtbot.keyClick(page.canvas, Qt.Key.Key_O)
    assert page.current_image_id() == ids[4]
    qtbot.keyClick(page.canvas, Qt.Key.Key_N)             # N = defective too
    assert window.project.image(ids[4]).label == "defective"
    assert "0 unlabeled" in window.counts_label.text()


def test_brush_stroke_saved_and_marks_defective(window, demo_project_dir):
    page = window.label_page
    image_id = select_ok_image(window)
    canvas = page.canvas
    canvas.set_tool("brush")
    canvas.set_brush_size(6)
    drag(canvas, [(10, 32), (20, 32), (30, 32), (40, 32)])
    rec, m = saved_mask(demo_project_dir, image_id)
    assert m is not None and m.shape == (64, 64)
    assert m[32, 10:41].min() == 255           # along the stroke
    assert m[5, 5] == 0 and m[60, 60] == 0     # far from it
    assert rec.has_mask and rec.label == "defective"
    # The browser's badge data follows the store.
    assert page.browser.model.record(image_id).label == "defective"


def test_eraser_undo_redo_follow_on_disk(window, qtbot, demo_project_dir):
    page = window.label_page
    image_id = select_ok_image(window)
    canvas = page.canvas
    canvas.set_brush_size(8)
    drag(canvas, [(8, 20), (56, 20)])
    assert saved_mask(demo_project_dir, image_id)[1][20, 30] == 255
    qtbot.keyClick(canvas, Qt.Key.Key_E)        # eraser through the shortcut
    assert canvas.tool == "eraser"
    drag(canvas, [(30, 10), (30, 30)])
    m = saved_mask(demo_project_dir, image_id)[1]
    assert m[20, 30] == 0 and m[20, 12] == 255
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)      # undo erase
    assert saved_mask(demo_project_dir, image_id)[1][20, 30] == 255
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)                           # redo
    assert saved_mask(demo_project_dir, image_id)[1][20, 30] == 0
    # Undo both edits: the image had no mask and was OK, and is so again.
    canvas.undo()
    canvas.undo()
    rec, m = saved_mask(demo_project_dir, image_id)
    assert m is None and not rec.has_mask and rec.label == "ok"


def test_polygon_fill(window, qtbot, demo_project_dir):
    page = window.label_page
    image_id = select_ok_image(window)
    canvas = page.canvas
    qtbot.keyClick(canvas, Qt.Key.Key_L)
    assert canvas.tool == "lasso"
    for x, y in [(10, 10), (50, 10), (50, 40), (10, 40)]:
        click(canvas, x, y)
    assert saved_mask(demo_project_dir, image_id)[1] is None   # not filled before Enter
    qtbot.keyClick(canvas, Qt.Key.Key_Return)
    rec, m = saved_mask(demo_project_dir, image_id)
    assert m[25, 30] == 255 and m[12, 12] == 255
    assert m[45, 30] == 0 and m[25, 55] == 0
    assert rec.label == "defective"


def test_free_lasso_drag_fills_on_release(window, demo_project_dir):
    image_id = select_ok_image(window)
    canvas = window.label_page.canvas
    canvas.set_tool("lasso")
    pts = [(32 + 15 * np.cos(t), 32 + 15 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 40)]
    drag(canvas, pts)
    m = saved_mask(demo_project_dir, image_id)[1]
    assert m[32, 32] == 255 and m[2, 2] == 0


def test_corrupt_image_shows_error_entry(window, qtbot, demo_project_dir):
    page = window.label_page
    b = page.browser
    rec = b.model.record(b.model.image_ids()[3])
    path = window.project.image_path(rec)
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    b.select_image(rec.id)
    err = page.canvas.error_text()
    assert err is not None and rec.name in err
    assert b.model.error(rec.id)                 # marker in the browser
    # Keys on the broken image do nothing harmful; the app goes on to the next image.
    qtbot.keyClick(page.canvas, Qt.Key.Key_B)
    drag(page.canvas, [(5, 5), (20, 20)])
    qtbot.keyClick(page.canvas, Qt.Key.Key_J)
    assert page.current_image_id() != rec.id
    assert page.canvas.error_text() is None and page.canvas.has_image()
