"""The mask canvas and the mask-editing logic under it (no project needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from defect_studio.app.label import mask_tools as mt
from defect_studio.app.label.canvas import MaskCanvas


# ---------------------------------------------------------------------- pure logic
def test_paint_segment_and_erase_return_dirty_rect():
    m = np.zeros((50, 80), np.uint8)
    rect = mt.paint_segment(m, (10, 25), (60, 25), radius=3)
    x0, y0, x1, y1 = rect
    ys, xs = np.nonzero(m)
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    assert m[25, 10:61].min() == 255 and m[10, 35] == 0
    mt.paint_segment(m, (35, 15), (35, 35), radius=4, value=0)
    assert m[25, 35] == 0 and m[25, 20] == 255


def test_paint_at_edge_is_clipped():
    m = np.zeros((20, 20), np.uint8)
    rect = mt.paint_segment(m, (0, 0), (-5, -5), radius=3)
    assert rect is not None and rect[0] == 0 and rect[1] == 0
    assert m[0, 0] == 255


def test_fill_polygon():
    m = np.zeros((40, 40), np.uint8)
    assert mt.fill_polygon(m, [(1, 1), (5, 5)]) is None and not m.any()
    mt.fill_polygon(m, [(5, 5), (30, 5), (30, 30), (5, 30)])
    assert m[15, 15] == 255 and m[35, 35] == 0


def test_undo_stack_restores_only_dirty_rect_and_is_bounded():
    m = np.zeros((100, 100), np.uint8)
    stack = mt.UndoStack(max_steps=3)
    for i in range(5):
        before = m.copy()
        rect = mt.paint_segment(m, (10 + 15 * i, 50), (10 + 15 * i, 50), radius=3)
        assert stack.push(before, m, rect)
    # Only the last 3 steps are kept.
    assert stack.undo(m) and stack.undo(m) and stack.undo(m)
    assert stack.undo(m) is None
    assert m[50, 10] == 255 and m[50, 25] == 255 and m[50, 40] == 0
    stack.redo(m)
    assert m[50, 40] == 255
    # A no-op edit is not recorded.
    assert not stack.push(m.copy(), m, (0, 0, 10, 10))


def test_grabcut_box_finds_the_blob():
    rng = np.random.default_rng(0)
    img = (rng.normal(60, 8, (80, 80))).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:80, :80]
    blob = (yy - 40) ** 2 + (xx - 40) ** 2 < 10 ** 2
    img[blob] = 220
    img = np.dstack([img] * 3)
    region, (x0, y0, x1, y1) = mt.grabcut_region(img, [(22, 22), (58, 58)], is_box=True)
    full = np.zeros((80, 80), bool)
    full[y0:y1, x0:x1] = region
    iou = (full & blob).sum() / (full | blob).sum()
    assert iou > 0.8


def test_grabcut_stroke_on_flat_image_does_not_crash():
    img = np.full((40, 40), 100, np.uint8)
    res = mt.grabcut_region(img, [(20, 20), (22, 22)], is_box=False, stroke_radius=2)
    assert res is not None
    region, _ = res
    assert region.any()      # at least the stroke itself


# ---------------------------------------------------------------------- widget
@pytest.fixture
def canvas(qtbot):
    c = MaskCanvas()
    qtbot.addWidget(c)
    c.resize(400, 300)
    with qtbot.waitExposed(c):
        c.show()
    img = np.zeros((100, 160, 3), np.uint8)
    img[..., 1] = np.arange(160, dtype=np.uint8)[None, :]
    c.set_image(img)
    yield c
    c.close()


def _wheel(widget, pos: QPoint, delta: int):
    ev = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0),
                     QPoint(0, delta), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                     Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


def test_wheel_zoom_keeps_point_under_cursor(canvas):
    vp = canvas.viewport()
    pos = QPoint(300, 80)
    before = canvas._map_to_scene_f(QPointF(pos))
    z0 = canvas.zoom()
    _wheel(vp, pos, 240)
    assert canvas.zoom() > z0 * 1.3
    after = canvas._map_to_scene_f(QPointF(pos))
    # Within one screen pixel of where it was.
    assert abs(after.x() - before.x()) * canvas.zoom() <= 1.0
    assert abs(after.y() - before.y()) * canvas.zoom() <= 1.0
    _wheel(vp, pos, -480)
    assert canvas.zoom() < z0
    after = canvas._map_to_scene_f(QPointF(pos))
    assert abs(after.x() - before.x()) * canvas.zoom() <= 1.0


def test_fit_shows_whole_image(canvas):
    canvas.set_zoom(5.0)
    canvas.fit()
    tl = canvas.mapFromScene(QPointF(0, 0))
    br = canvas.mapFromScene(QPointF(160, 100))
    r = canvas.viewport().rect()
    assert r.contains(tl) and r.contains(br - QPoint(1, 1))
    z = canvas.zoom()
    assert max(160 * z / r.width(), 100 * z / r.height()) > 0.9   # fills the window


def test_brush_size_keys_and_cursor_circle(canvas, qtbot):
    canvas.set_brush_size(20)
    seen = []
    canvas.brush_size_changed.connect(seen.append)
    canvas.change_brush_size(+1)
    assert canvas.brush_size == 23 and seen == [23]
    canvas.change_brush_size(-1)
    canvas.change_brush_size(-1)
    assert canvas.brush_size < 20
    canvas.set_brush_size(10_000)
    assert canvas.brush_size == 200
    canvas.set_brush_size(10)
    qtbot.mouseMove(canvas.viewport(), canvas.mapFromScene(QPointF(50, 50)))
    item = canvas._cursor_item
    assert item.isVisible()
    assert item.rect().width() == pytest.approx(10)
    assert item.rect().center().x() == pytest.approx(50, abs=1.5)


def test_mask_opacity_and_visibility(canvas):
    canvas.set_mask_opacity(0.8)
    assert canvas._overlay.opacity() == pytest.approx(0.8)
    canvas.set_mask_visible(False)
    assert not canvas._overlay.isVisible()


def test_overlay_updates_only_dirty_rect_on_large_image(qtbot):
    c = MaskCanvas()
    qtbot.addWidget(c)
    c.set_image(np.zeros((2000, 2000), np.uint8))
    c._rgba[...] = 7        # sentinel: anything outside the dirty rect must stay untouched
    c._mask[...] = 0
    c.set_tool("brush")
    c.set_brush_size(10)
    c._edit_before = c._mask.copy()
    c._stroke_active = True
    c._paint(QPointF(1000, 1000), QPointF(1040, 1000))
    c.finish_edit()
    assert c._mask[1000, 1020] == 255
    assert c._rgba[999, 1020, 3] == 255     # painted: opaque overlay pixel
    assert (c._rgba[100, 100] == 7).all()   # far away: not rewritten
    assert c.undo_stack.can_undo()
    c.close()


def test_show_error_disables_editing(canvas):
    canvas.show_error("Cannot show x.png:\nbroken")
    assert canvas.error_text().startswith("Cannot show x.png")
    assert canvas.mask() is None
    canvas.undo()   # nothing to undo, no crash
    canvas.clear_mask()


def _drag(canvas, points, modifiers=Qt.KeyboardModifier.NoModifier,
          button=Qt.MouseButton.LeftButton):
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent

    vp = canvas.viewport()
    pos = [canvas.mapFromScene(QPointF(x, y)).toPointF() for x, y in points]

    def send(kind, p, b, bs):
        QApplication.sendEvent(vp, QMouseEvent(kind, p, vp.mapToGlobal(p.toPoint()).toPointF(),
                                               b, bs, modifiers))

    send(QEvent.Type.MouseButtonPress, pos[0], button, button)
    for p in pos[1:]:
        send(QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, button)
    send(QEvent.Type.MouseButtonRelease, pos[-1], button, Qt.MouseButton.NoButton)


def test_grabcut_tool_box_drag_fills_the_defect(canvas):
    rng = np.random.default_rng(1)
    img = rng.normal(50, 6, (100, 160)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:100, :160]
    blob = (yy - 50) ** 2 + (xx - 80) ** 2 < 12 ** 2
    img[blob] = 210
    canvas.set_image(np.dstack([img] * 3))
    changed = []
    canvas.mask_changed.connect(lambda: changed.append(1))
    canvas.set_tool("grabcut")
    _drag(canvas, [(60, 30), (80, 50), (100, 70)])
    m = canvas.mask() > 0
    assert changed == [1]
    assert (m & blob).sum() / (m | blob).sum() > 0.7
    canvas.undo()
    assert not canvas.mask().any()


def test_space_drag_pans_without_painting(canvas, qtbot):
    canvas.set_zoom(4.0)
    before = canvas._map_to_scene_f(QPointF(100, 100))
    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    _drag(canvas, [(40, 40), (45, 42), (50, 44)])
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    after = canvas._map_to_scene_f(QPointF(100, 100))
    assert abs(after.x() - before.x()) > 5          # the view moved
    assert not canvas.mask().any()                  # nothing painted
    # Middle-drag pans too.
    before = after
    _drag(canvas, [(40, 40), (30, 30)], button=Qt.MouseButton.MiddleButton)
    assert canvas._map_to_scene_f(QPointF(100, 100)) != before
    assert not canvas.mask().any()
