"""The labelling canvas: an image with a paintable defect-mask overlay (QGraphicsView).

The mask lives in a numpy array; the overlay is a QImage that shares memory with
an RGBA numpy buffer, and each edit rewrites and repaints only its dirty rect, so
painting stays smooth on 2000x2000 images (no full-image conversion per mouse move).
Scene coordinates are image pixel coordinates.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsTextItem,
    QGraphicsView,
)

from defect_studio.app.label import mask_tools as mt
from defect_studio.app.shell.theme import colors

TOOLS = ("brush", "eraser", "lasso", "grabcut", "pan")
MIN_SCALE, MAX_SCALE = 0.02, 64.0
MIN_BRUSH, MAX_BRUSH = 1, 200


def array_to_qimage(img: np.ndarray) -> QImage:
    """An image array (HxW or HxWx3, uint8 or uint16) as an 8-bit QImage (copied once)."""
    a = img
    if a.dtype != np.uint8:
        # 16-bit and float images: stretch the used range to 8 bit for display only.
        a = a.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        a = ((a - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)).astype(np.uint8)
    a = np.ascontiguousarray(a)
    h, w = a.shape[:2]
    if a.ndim == 2:
        q = QImage(a.data, w, h, a.strides[0], QImage.Format.Format_Grayscale8)
    else:
        q = QImage(a.data, w, h, a.strides[0], QImage.Format.Format_RGB888)
    return q.copy()  # detach from the numpy buffer


class _OverlayItem(QGraphicsItem):
    """Draws the mask overlay QImage; repaints only what Qt marks as exposed."""

    def __init__(self, image: QImage) -> None:
        super().__init__()
        self.image = image
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self.image.width(), self.image.height())

    def paint(self, painter: QPainter, option, widget=None) -> None:
        r = option.exposedRect.toAlignedRect().intersected(self.image.rect())
        if not r.isEmpty():
            painter.drawImage(r, self.image, r)


class MaskCanvas(QGraphicsView):
    """Shows one image and edits its mask with brush, eraser, lasso and GrabCut.

    Signals: mask_changed() after each finished edit (stroke end, fill, undo, redo),
    for the owner to save; zoom_changed(float); brush_size_changed(int);
    tool_changed(str); undo_state_changed(bool can_undo, bool can_redo).
    """

    mask_changed = Signal()
    zoom_changed = Signal(float)
    brush_size_changed = Signal(int)
    tool_changed = Signal(str)
    undo_state_changed = Signal(bool, bool)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        # Panning is ours (middle/space drag); hidden scroll bars keep the view clean.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setBackgroundBrush(colors().canvas_bg)

        self._image: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._rgba: np.ndarray | None = None
        self._image_item: QGraphicsPixmapItem | None = None
        self._overlay: _OverlayItem | None = None
        self._error_item: QGraphicsTextItem | None = None
        self._cursor_item: QGraphicsEllipseItem | None = None
        self._path_item: QGraphicsPathItem | None = None
        self._box_item: QGraphicsRectItem | None = None

        self.undo_stack = mt.UndoStack()
        self._tool = "brush"
        self._brush = 12
        self._opacity = 0.5
        self._mask_visible = True
        self._fit_mode = True
        self._edit_before: np.ndarray | None = None
        self._edit_rect: mt.Rect | None = None
        self._last_point: QPointF | None = None
        self._poly: list[tuple[float, float]] = []
        self._poly_dragged = False
        self._gc_points: list[tuple[float, float]] = []
        self._gc_stroke = False
        self._pan_last = None
        self._space = False
        self._stroke_active = False
        # defect_studio.app.label.box_tool.BoxTool: gets the mouse and keys first when on
        self.box_tool = None

    # ------------------------------------------------------------------ content
    def set_image(self, image: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Show an image (HxW or HxWx3) and its mask (uint8/bool HxW, None = empty)."""
        self._finish_stroke()
        self._reset_scene()
        h, w = image.shape[:2]
        self._image = image
        self._mask = np.zeros((h, w), np.uint8)
        if mask is not None:
            self._mask[mask > 0] = mt.MASK_ON
        self._image_item = QGraphicsPixmapItem(QPixmap.fromImage(array_to_qimage(image)))
        self._image_item.setTransformationMode(Qt.TransformationMode.FastTransformation)
        self._scene.addItem(self._image_item)
        self._rgba = np.zeros((h, w, 4), np.uint8)
        qimg = QImage(self._rgba.data, w, h, w * 4, QImage.Format.Format_ARGB32_Premultiplied)
        self._overlay = _OverlayItem(qimg)
        self._overlay.setOpacity(self._opacity)
        self._overlay.setVisible(self._mask_visible)
        self._scene.addItem(self._overlay)
        self._refresh_overlay((0, 0, w, h))
        # A wide scene rect lets the view pan past the edges and zoom exactly at the cursor.
        m = max(w, h) * 4
        self._scene.setSceneRect(QRectF(-m, -m, w + 2 * m, h + 2 * m))
        self._make_cursor_item()
        self.undo_stack.clear()
        self._emit_undo_state()
        self.fit()

    def show_error(self, message: str) -> None:
        """Show an error entry instead of an image (e.g. a corrupt file); editing is off."""
        self._finish_stroke()
        self._reset_scene()
        self._image = None
        self._mask = None
        self._error_item = QGraphicsTextItem()
        self._error_item.setDefaultTextColor(colors().error)
        self._error_item.setTextWidth(420)
        self._error_item.setPlainText(message)
        self._scene.addItem(self._error_item)
        self._scene.setSceneRect(self._error_item.boundingRect().adjusted(-20, -20, 20, 20))
        self.resetTransform()
        self.centerOn(self._error_item)

    def clear(self) -> None:
        """Show nothing."""
        self._finish_stroke()
        self._reset_scene()
        self._image = None
        self._mask = None

    def error_text(self) -> str | None:
        """The error shown instead of an image, if any."""
        return self._error_item.toPlainText() if self._error_item is not None else None

    def has_image(self) -> bool:
        return self._mask is not None

    def mask(self) -> np.ndarray | None:
        """The current mask (uint8 HxW 0/255); a view, not a copy."""
        return self._mask

    def _reset_scene(self) -> None:
        self._scene.clear()
        self._image_item = self._overlay = self._error_item = None
        self._cursor_item = self._path_item = self._box_item = None
        self._rgba = None
        self._poly = []
        self._gc_points = []
        self.undo_stack.clear()
        if self.box_tool is not None:
            self.box_tool.scene_reset()

    def _make_cursor_item(self) -> None:
        c = colors().brush_cursor
        self._cursor_item = QGraphicsEllipseItem()
        pen = QPen(c, 1.5)
        pen.setCosmetic(True)
        self._cursor_item.setPen(pen)
        self._cursor_item.setZValue(10)
        self._cursor_item.setVisible(False)
        self._scene.addItem(self._cursor_item)
        self._path_item = QGraphicsPathItem()
        pen = QPen(colors().polygon, 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._path_item.setPen(pen)
        self._path_item.setZValue(9)
        self._scene.addItem(self._path_item)
        self._box_item = QGraphicsRectItem()
        self._box_item.setPen(pen)
        self._box_item.setZValue(9)
        self._box_item.setVisible(False)
        self._scene.addItem(self._box_item)

    def _refresh_overlay(self, rect: mt.Rect | None) -> None:
        """Rewrite the RGBA overlay in `rect` from the mask and repaint just that rect."""
        if rect is None or self._rgba is None or self._overlay is None:
            return
        x0, y0, x1, y1 = rect
        c = colors().mask
        bgra = np.array([c.blue(), c.green(), c.red(), 255], np.uint8)
        on = self._mask[y0:y1, x0:x1] > 0
        region = self._rgba[y0:y1, x0:x1]
        region[...] = 0
        region[on] = bgra
        self._overlay.update(QRectF(x0, y0, x1 - x0, y1 - y0))

    # ------------------------------------------------------------------ settings
    @property
    def tool(self) -> str:
        return self._tool

    def set_tool(self, tool: str) -> None:
        """Choose brush, eraser, lasso, grabcut or pan."""
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        self._finish_stroke()
        self._cancel_polygon()
        self._tool = tool
        self._update_cursor_shape()
        self.tool_changed.emit(tool)

    @property
    def brush_size(self) -> int:
        return self._brush

    def set_brush_size(self, size: int) -> None:
        """Brush / eraser diameter in image pixels."""
        size = int(max(MIN_BRUSH, min(MAX_BRUSH, size)))
        if size != self._brush:
            self._brush = size
            self.brush_size_changed.emit(size)
        if self._cursor_item is not None and self._last_cursor_scene is not None:
            self._move_cursor(self._last_cursor_scene)

    def change_brush_size(self, step: int) -> None:
        """[ and ]: grow or shrink by ~15 % (at least one pixel)."""
        delta = max(1, round(self._brush * 0.15))
        self.set_brush_size(self._brush + (delta if step > 0 else -delta))

    def set_mask_opacity(self, opacity: float) -> None:
        self._opacity = float(max(0.0, min(1.0, opacity)))
        if self._overlay is not None:
            self._overlay.setOpacity(self._opacity)

    def mask_opacity(self) -> float:
        return self._opacity

    def set_mask_visible(self, visible: bool) -> None:
        self._mask_visible = bool(visible)
        if self._overlay is not None:
            self._overlay.setVisible(self._mask_visible)

    def mask_visible(self) -> bool:
        return self._mask_visible

    # ------------------------------------------------------------------ zoom / pan
    def zoom(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        """Fit the whole image in the window (F)."""
        if self._image_item is None:
            return
        self._fit_mode = True
        r = self._image_item.boundingRect()
        vp = self.viewport().rect()
        if vp.width() < 2 or vp.height() < 2 or r.isEmpty():
            return
        s = min(vp.width() / r.width(), vp.height() / r.height()) * 0.98
        self._set_scale(s)
        self.centerOn(r.center())

    def set_zoom(self, scale: float, anchor=None) -> None:
        """Zoom to `scale` keeping the scene point under `anchor` (viewport pos) in place."""
        self._fit_mode = False
        if anchor is None:
            anchor = self.viewport().rect().center()
        anchor = QPointF(anchor)
        before = self._map_to_scene_f(anchor)
        self._set_scale(scale)
        self._scroll_by_scene(self._map_to_scene_f(anchor) - before)

    def zoom_by(self, factor: float, anchor=None) -> None:
        self.set_zoom(self.zoom() * factor, anchor)

    def _set_scale(self, s: float) -> None:
        s = max(MIN_SCALE, min(MAX_SCALE, s))
        self.setTransform(self.transform().fromScale(s, s))
        self.zoom_changed.emit(s)

    def _map_to_scene_f(self, p: QPointF) -> QPointF:
        """Sub-pixel mapping of a viewport point to the scene (mapToScene rounds to ints)."""
        inv, _ok = self.viewportTransform().inverted()
        return inv.map(p)

    def _scroll_by_scene(self, delta: QPointF) -> None:
        """Shift the view so scene content moves by -delta (scene units)."""
        s = self.zoom()
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(h.value() - round(delta.x() * s))
        v.setValue(v.value() - round(delta.y() * s))

    def _pan_pixels(self, dx: float, dy: float) -> None:
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(h.value() - round(dx))
        v.setValue(v.value() - round(dy))

    def wheelEvent(self, event: QWheelEvent) -> None:
        dy = event.angleDelta().y()
        if dy == 0:
            return
        self.zoom_by(1.0015 ** dy, event.position())
        event.accept()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    # ------------------------------------------------------------------ mouse
    _last_cursor_scene: QPointF | None = None

    def _scene_pos(self, event) -> QPointF:
        return self._map_to_scene_f(event.position())

    def _panning_press(self, event: QMouseEvent) -> bool:
        return (event.button() == Qt.MouseButton.MiddleButton
                or (event.button() == Qt.MouseButton.LeftButton
                    and (self._space or self._tool == "pan")))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self._panning_press(event):
            self._pan_last = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if event.button() != Qt.MouseButton.LeftButton or self._mask is None:
            super().mousePressEvent(event)
            return
        p = self._scene_pos(event)
        if self.box_tool is not None and self.box_tool.mouse_press(p, event):
            event.accept()
            return
        if self._tool in ("brush", "eraser"):
            self._edit_before = self._mask.copy()
            self._edit_rect = None
            self._stroke_active = True
            self._last_point = p
            self._paint(p, p)
        elif self._tool == "lasso":
            self._poly_dragged = False
            self._poly_drag_start = len(self._poly)
            self._poly.append((p.x(), p.y()))
            self._last_point = p
            self._update_path_preview()
        elif self._tool == "grabcut":
            self._gc_stroke = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            self._gc_points = [(p.x(), p.y())]
            self._update_grabcut_preview()
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        p = self._scene_pos(event)
        self._last_cursor_scene = p
        self._move_cursor(p)
        if self._pan_last is not None:
            d = event.position() - self._pan_last
            self._pan_last = event.position()
            self._pan_pixels(d.x(), d.y())
            self._fit_mode = False
            event.accept()
            return
        if self.box_tool is not None and self.box_tool.mouse_move(p, event):
            event.accept()
            return
        left = bool(event.buttons() & Qt.MouseButton.LeftButton)
        if not left or self._mask is None:
            return
        if self._stroke_active and self._last_point is not None:
            self._paint(self._last_point, p)
            self._last_point = p
        elif self._tool == "lasso" and self._poly and self._last_point is not None:
            # Drag = free lasso: add points every ~2 screen pixels.
            if (event.position() - self.mapFromScene(self._last_point).toPointF()
                    ).manhattanLength() >= 2:
                self._poly.append((p.x(), p.y()))
                self._last_point = p
                self._poly_dragged = True
                self._update_path_preview()
        elif self._tool == "grabcut" and self._gc_points:
            if self._gc_stroke:
                self._gc_points.append((p.x(), p.y()))
            else:
                self._gc_points = [self._gc_points[0], (p.x(), p.y())]
            self._update_grabcut_preview()
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_last is not None and event.button() in (
                Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_last = None
            self._update_cursor_shape()
            event.accept()
            return
        if event.button() != Qt.MouseButton.LeftButton or self._mask is None:
            super().mouseReleaseEvent(event)
            return
        if self.box_tool is not None and self.box_tool.mouse_release(self._scene_pos(event),
                                                                     event):
            event.accept()
            return
        if self._stroke_active:
            self._finish_stroke()
        elif self._tool == "lasso" and self._poly_dragged and self._poly_drag_start == 0:
            # A free lasso drawn in one drag closes itself on release.
            self.close_polygon()
        elif self._tool == "grabcut" and self._gc_points:
            self._apply_grabcut()
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self._tool == "lasso" and event.button() == Qt.MouseButton.LeftButton:
            self.close_polygon()
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def leaveEvent(self, event) -> None:
        if self._cursor_item is not None:
            self._cursor_item.setVisible(False)
        super().leaveEvent(event)

    # ------------------------------------------------------------------ keys
    def keyPressEvent(self, event) -> None:
        if self.box_tool is not None and self.box_tool.key_press(event):
            event.accept()
            return
        key = event.key()
        if key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self._tool == "lasso":
            self.close_polygon()
        elif key == Qt.Key.Key_Escape and self._tool == "lasso":
            self._cancel_polygon()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._update_cursor_shape()
        else:
            super().keyReleaseEvent(event)

    # ------------------------------------------------------------------ editing
    def _paint(self, a: QPointF, b: QPointF) -> None:
        value = mt.MASK_ON if self._tool == "brush" else 0
        # Scene x covers pixel floor(x); cv2 puts pixel centres on integers.
        rect = mt.paint_segment(self._mask, (a.x() - 0.5, a.y() - 0.5),
                                (b.x() - 0.5, b.y() - 0.5), self._brush / 2.0, value)
        self._edit_rect = mt.union_rect(self._edit_rect, rect)
        self._refresh_overlay(rect)

    def _finish_stroke(self) -> None:
        """End a brush/eraser stroke: record undo, tell the owner to save."""
        if not self._stroke_active:
            return
        self._stroke_active = False
        self._last_point = None
        before, rect = self._edit_before, self._edit_rect
        self._edit_before = self._edit_rect = None
        if before is not None and self._mask is not None and self.undo_stack.push(
                before, self._mask, rect):
            self._emit_undo_state()
            self.mask_changed.emit()

    def finish_edit(self) -> None:
        """End any stroke in progress (before switching images), so it is saved."""
        self._finish_stroke()

    def _apply_region(self, before: np.ndarray, rect: mt.Rect | None) -> None:
        self._refresh_overlay(rect)
        if self.undo_stack.push(before, self._mask, rect):
            self._emit_undo_state()
            self.mask_changed.emit()

    def close_polygon(self) -> None:
        """Fill the polygon / lasso drawn so far (Enter, double-click, end of a drag)."""
        if self._mask is None:
            return
        pts, self._poly = self._poly, []
        self._update_path_preview()
        if len(pts) < 3:
            return
        before = self._mask.copy()
        rect = mt.fill_polygon(self._mask, [(x - 0.5, y - 0.5) for x, y in pts])
        self._apply_region(before, rect)

    def _cancel_polygon(self) -> None:
        self._poly = []
        self._gc_points = []
        self._update_path_preview()
        if self._box_item is not None:
            self._box_item.setVisible(False)

    def _apply_grabcut(self) -> None:
        pts, self._gc_points = self._gc_points, []
        self._update_grabcut_preview()
        if self._image is None or self._mask is None:
            return
        local = [(x - 0.5, y - 0.5) for x, y in pts]
        res = mt.grabcut_region(self._image, local, is_box=not self._gc_stroke,
                                stroke_radius=max(2.0, self._brush / 2.0))
        if res is None:
            return
        region, (x0, y0, x1, y1) = res
        before = self._mask.copy()
        self._mask[y0:y1, x0:x1][region] = mt.MASK_ON
        self._apply_region(before, (x0, y0, x1, y1))

    def clear_mask(self) -> None:
        """Erase the whole mask (undoable)."""
        if self._mask is None or not self._mask.any():
            return
        before = self._mask.copy()
        self._mask[...] = 0
        h, w = self._mask.shape
        self._apply_region(before, (0, 0, w, h))

    def merge_mask(self, mask: np.ndarray, *, notify: bool = True) -> bool:
        """Add the nonzero pixels of `mask` (HxW of the image) as one undoable edit, e.g. a
        proposed mask. notify=False leaves out mask_changed (the caller decides on saving).
        False when there is no image, the shape differs or nothing changed."""
        m = np.asarray(mask)
        if self._mask is None or m.shape != self._mask.shape:
            return False
        self._finish_stroke()
        before = self._mask.copy()
        self._mask[m > 0] = mt.MASK_ON
        h, w = self._mask.shape
        self._refresh_overlay((0, 0, w, h))
        if not self.undo_stack.push(before, self._mask, (0, 0, w, h)):
            return False
        self._emit_undo_state()
        if notify:
            self.mask_changed.emit()
        return True

    def undo(self) -> None:
        if self._mask is None:
            return
        self._finish_stroke()
        rect = self.undo_stack.undo(self._mask)
        if rect is not None:
            self._refresh_overlay(rect)
            self._emit_undo_state()
            self.mask_changed.emit()

    def redo(self) -> None:
        if self._mask is None:
            return
        rect = self.undo_stack.redo(self._mask)
        if rect is not None:
            self._refresh_overlay(rect)
            self._emit_undo_state()
            self.mask_changed.emit()

    def _emit_undo_state(self) -> None:
        self.undo_state_changed.emit(self.undo_stack.can_undo(), self.undo_stack.can_redo())

    # ------------------------------------------------------------------ previews
    def _move_cursor(self, p: QPointF) -> None:
        item = self._cursor_item
        if item is None:
            return
        show = self._tool in ("brush", "eraser") and self._mask is not None and not self._space
        item.setVisible(show)
        if show:
            r = self._brush / 2.0
            item.setRect(QRectF(p.x() - r, p.y() - r, 2 * r, 2 * r))

    def _update_cursor_shape(self) -> None:
        shape = {
            "brush": Qt.CursorShape.CrossCursor, "eraser": Qt.CursorShape.CrossCursor,
            "lasso": Qt.CursorShape.CrossCursor, "grabcut": Qt.CursorShape.CrossCursor,
            "pan": Qt.CursorShape.OpenHandCursor,
        }[self._tool]
        self.viewport().setCursor(shape)
        if self._cursor_item is not None and self._tool not in ("brush", "eraser"):
            self._cursor_item.setVisible(False)

    def _update_path_preview(self) -> None:
        if self._path_item is None:
            return
        path = QPainterPath()
        pts = self._poly if self._tool == "lasso" else self._gc_points
        if pts:
            path.moveTo(*pts[0])
            for x, y in pts[1:]:
                path.lineTo(x, y)
        self._path_item.setPath(path)

    def _update_grabcut_preview(self) -> None:
        if self._box_item is None:
            return
        if self._gc_stroke or len(self._gc_points) < 2:
            self._box_item.setVisible(False)
            self._update_path_preview()
            return
        (ax, ay), (bx, by) = self._gc_points[0], self._gc_points[-1]
        self._box_item.setRect(QRectF(min(ax, bx), min(ay, by), abs(bx - ax), abs(by - ay)))
        self._box_item.setBrush(QBrush(QColor(0, 0, 0, 0)))
        self._box_item.setVisible(True)
