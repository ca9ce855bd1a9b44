"""An image pane with zoom and pan like the mask canvas (wheel zooms at the cursor, drag
pans, double-click or F fits), markers in image coordinates, and panes that move together."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

MIN_ZOOM, MAX_ZOOM = 0.05, 64.0


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """RGB uint8 HxWx3 -> a QImage that owns its pixels."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ZoomImage(QWidget):
    """Paints an RGB image fitted or zoomed. `view_changed(zoom, cx, cy)` after the user
    zooms or pans (zoom 0 = fit); link panes with link_views()."""

    view_changed = Signal(float, float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 90)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self._qimage: QImage | None = None
        self._zoom = 0.0  # 0: fit to the pane
        self._center = QPointF(0, 0)  # image point at the pane's centre when zoomed
        self._drag: QPointF | None = None
        self._message = "No image"
        self.markers: list[tuple[float, float]] = []  # image (x, y) to point at
        self.caption = ""

    # -- content ---------------------------------------------------------------------------
    def set_rgb(self, rgb: np.ndarray | None) -> None:
        old = None if self._qimage is None else (self._qimage.width(), self._qimage.height())
        self._qimage = None if rgb is None else rgb_to_qimage(rgb)
        new = None if self._qimage is None else (self._qimage.width(), self._qimage.height())
        if new != old:  # another image size: start fitted
            self._zoom = 0.0
        self.update()

    def set_message(self, text: str) -> None:
        self._message = text
        self.update()

    # -- view ------------------------------------------------------------------------------
    def fit_scale(self) -> float:
        if self._qimage is None:
            return 1.0
        return min(self.width() / self._qimage.width(), self.height() / self._qimage.height())

    def scale(self) -> float:
        return self._zoom if self._zoom > 0 else self.fit_scale()

    def zoom(self) -> float:
        """The zoom factor (screen pixels per image pixel)."""
        return self.scale()

    def is_fitted(self) -> bool:
        return self._zoom <= 0

    def fit(self) -> None:
        self._zoom = 0.0
        self.update()
        self._emit_view()

    def set_view(self, zoom: float, cx: float, cy: float) -> None:
        """Zoom (0: fit) and the image point at the centre; no signal (for linked panes)."""
        self._zoom = 0.0 if zoom <= 0 else float(min(MAX_ZOOM, max(MIN_ZOOM, zoom)))
        self._center = QPointF(cx, cy)
        self.update()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the image point under `anchor` (widget pixels) where it is."""
        if self._qimage is None:
            return
        anchor = anchor if anchor is not None else QPointF(self.width() / 2, self.height() / 2)
        before = self.to_image(anchor)
        s = self.scale()
        if self._zoom <= 0:
            self._center = QPointF(self._qimage.width() / 2, self._qimage.height() / 2)
        self._zoom = float(min(MAX_ZOOM, max(MIN_ZOOM, s * factor)))
        after = self.to_image(anchor)
        self._center += before - after
        self.update()
        self._emit_view()

    def target_rect(self) -> QRectF:
        """Where the whole image is painted, in widget pixels."""
        iw, ih = self._qimage.width(), self._qimage.height()
        s = self.scale()
        if self._zoom <= 0:
            return QRectF((self.width() - iw * s) / 2, (self.height() - ih * s) / 2, iw * s, ih * s)
        return QRectF(self.width() / 2 - self._center.x() * s,
                      self.height() / 2 - self._center.y() * s, iw * s, ih * s)

    def to_image(self, p: QPointF) -> QPointF:
        if self._qimage is None:
            return QPointF(p)
        r = self.target_rect()
        s = self.scale()
        return QPointF((p.x() - r.x()) / s, (p.y() - r.y()) / s)

    def to_widget(self, x: float, y: float) -> QPointF:
        r = self.target_rect()
        s = self.scale()
        return QPointF(r.x() + x * s, r.y() + y * s)

    def _emit_view(self) -> None:
        self.view_changed.emit(self._zoom, self._center.x(), self._center.y())

    # -- input -----------------------------------------------------------------------------
    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt API
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25 ** steps, event.position())

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton):
            self._drag = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self._drag is None or self._qimage is None:
            return
        delta = event.position() - self._drag
        self._drag = event.position()
        if self._zoom <= 0:  # panning a fitted image: hold its scale from now on
            self._center = QPointF(self._qimage.width() / 2, self._qimage.height() / 2)
            self._zoom = self.fit_scale()
        s = self.scale()
        self._center -= QPointF(delta.x() / s, delta.y() / s)
        self.update()
        self._emit_view()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._drag = None
        self.unsetCursor()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.fit()

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        key = event.key()
        if key == Qt.Key.Key_F:
            self.fit()
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_by(1.25)
        elif key == Qt.Key.Key_Minus:
            self.zoom_by(0.8)
        elif key == Qt.Key.Key_1:
            self.zoom_by(1.0 / self.scale())
        else:
            super().keyPressEvent(event)

    # -- painting --------------------------------------------------------------------------
    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(480, 360)

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(30, 30, 30))
        if self._qimage is None:
            p.setPen(QColor(170, 170, 170))
            p.drawText(self.rect().adjusted(8, 8, -8, -8),
                       Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
            return
        # Enlarged small parts stay crisp (pixels matter to an inspector); shrunk ones smooth.
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.scale() < 1.0)
        p.drawImage(self.target_rect(), self._qimage)
        self._paint_markers(p)
        if self.caption:
            p.setPen(QColor(235, 235, 235))
            fm = p.fontMetrics()
            r = QRectF(6, self.height() - fm.height() - 6, fm.horizontalAdvance(self.caption) + 10,
                       fm.height() + 4)
            p.fillRect(r, QColor(0, 0, 0, 150))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, self.caption)
        self.paint_extra(p)

    def _paint_markers(self, p: QPainter) -> None:
        """A ring and cross-hair of fixed screen size: visible however weak the heat."""
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for x, y in self.markers:
            c = self.to_widget(x + 0.5, y + 0.5)
            for color, width in ((QColor(0, 0, 0), 4), (QColor(255, 255, 255), 2)):
                p.setPen(QPen(color, width))
                p.setBrush(Qt.BrushStyle.NoBrush)
                p.drawEllipse(c, 12, 12)
                for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    p.drawLine(c + QPointF(dx * 16, dy * 16), c + QPointF(dx * 24, dy * 24))

    def paint_extra(self, p: QPainter) -> None:
        """Subclasses paint badges or legends on top."""


def link_views(panes: list[ZoomImage]) -> None:
    """Zooming or panning one pane moves the others the same way."""
    for pane in panes:
        others = [q for q in panes if q is not pane]
        pane.view_changed.connect(
            lambda z, x, y, others=others: [q.set_view(z, x, y) for q in others])
