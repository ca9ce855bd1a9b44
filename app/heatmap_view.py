"""An image with its defect heatmap blended over it, plus the model's OK/NG badge."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from core.inference.overlay import NG_COLOR, OK_COLOR, overlay, to_rgb_uint8


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """RGB uint8 HxWx3 -> a QImage that owns its pixels."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class HeatmapView(QWidget):
    """Paints `overlay(image, heatmap, alpha, colormap)` scaled to fit, with a score badge.

    The blend is made by core.inference.overlay (the same one the predict CLI exports),
    so what the user sees matches the exported PNGs.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 120)
        self._image: np.ndarray | None = None  # RGB uint8
        self._heatmap: np.ndarray | None = None  # float32 [0,1], any size
        self._score: float | None = None
        self._is_ng: bool | None = None
        # Weight at full heat; the overlay fades it out over cool areas (see overlay()).
        self._alpha = 0.6
        self._colormap = "jet"
        self._show_heatmap = True
        self._qimage: QImage | None = None
        self._message = "No image"

    # -- content ---------------------------------------------------------------------------
    def set_content(self, image: np.ndarray | None, heatmap: np.ndarray | None = None,
                    score: float | None = None, is_ng: bool | None = None) -> None:
        """Show `image` (any bit depth / channels) with an optional heatmap and decision."""
        self._image = None if image is None else to_rgb_uint8(image)
        self._heatmap = None if heatmap is None else np.asarray(heatmap, dtype=np.float32)
        self._score, self._is_ng = score, is_ng
        self._render()

    def set_heatmap(self, heatmap: np.ndarray | None) -> None:
        self._heatmap = None if heatmap is None else np.asarray(heatmap, dtype=np.float32)
        self._render()

    def set_decision(self, score: float | None, is_ng: bool | None) -> None:
        self._score, self._is_ng = score, is_ng
        self.update()

    def set_message(self, text: str) -> None:
        """Text shown when there is no image (e.g. "Loading...")."""
        self._message = text
        self.update()

    def clear(self) -> None:
        self.set_content(None)

    # -- display options -------------------------------------------------------------------
    def alpha(self) -> float:
        return self._alpha

    def set_alpha(self, alpha: float) -> None:
        self._alpha = float(min(1.0, max(0.0, alpha)))
        self._render()

    def colormap(self) -> str:
        return self._colormap

    def set_colormap(self, name: str) -> None:
        self._colormap = name
        self._render()

    def heatmap_visible(self) -> bool:
        return self._show_heatmap

    def set_heatmap_visible(self, visible: bool) -> None:
        self._show_heatmap = bool(visible)
        self._render()

    def has_heatmap(self) -> bool:
        return self._heatmap is not None

    def displayed_rgb(self) -> np.ndarray | None:
        """The RGB array currently painted (image, or image + heatmap)."""
        if self._image is None:
            return None
        if self._show_heatmap and self._heatmap is not None:
            return overlay(self._image, self._heatmap, alpha=self._alpha, colormap=self._colormap)
        return self._image

    # -- painting --------------------------------------------------------------------------
    def _render(self) -> None:
        rgb = self.displayed_rgb()
        self._qimage = None if rgb is None else rgb_to_qimage(rgb)
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(480, 360)

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(30, 30, 30))
        if self._qimage is None:
            p.setPen(QColor(170, 170, 170))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._message)
            return
        iw, ih = self._qimage.width(), self._qimage.height()
        scale = min(self.width() / iw, self.height() / ih)
        w, h = iw * scale, ih * scale
        target = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
        # Enlarged small parts stay crisp (pixels matter to an inspector); shrunk ones smooth.
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, scale < 1.0)
        p.drawImage(target, self._qimage)
        if self._score is not None and self._is_ng is not None:
            self._paint_badge(p)

    def _paint_badge(self, p: QPainter) -> None:
        text = f"{'NG' if self._is_ng else 'OK'}  {self._score:.3f}"
        font = QFont(self.font())
        font.setBold(True)
        font.setPointSizeF(max(9.0, font.pointSizeF() * 1.3))
        p.setFont(font)
        fm = p.fontMetrics()
        pad = 6
        rect = QRectF(8, 8, fm.horizontalAdvance(text) + 2 * pad, fm.height() + pad)
        color = QColor(*(NG_COLOR if self._is_ng else OK_COLOR))
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(QPen(Qt.PenStyle.NoPen))
        p.setBrush(color)
        p.drawRoundedRect(rect, 5, 5)
        p.setPen(QColor(255, 255, 255))
        p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
