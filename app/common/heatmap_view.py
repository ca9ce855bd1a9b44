"""An image with its defect heatmap blended over it, plus the model's OK/NG badge, a colour
bar with the peak heat value and a marker on the hottest point; zoom and pan as on the
Label page's canvas."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QWidget

from defect_studio.app.common.zoom_image import ZoomImage, rgb_to_qimage
from defect_studio.inference.heat_range import clean_range
from defect_studio.inference.overlay import NG_COLOR, OK_COLOR, colorize, overlay, to_rgb_uint8

__all__ = ["HeatmapView", "rgb_to_qimage", "heat_peak", "HEAT_SCALES"]

# How heat is mapped to colour (issue 16): relative to the run's range (its hottest
# defect), to this part's own peak (auto-contrast), or absolute (0..1).
HEAT_SCALES = (("Run's range", "run"), ("This part (auto-contrast)", "part"),
               ("Absolute 0\u20131", "absolute"))
SCALE_WORDS = {"run": "run's range", "part": "this part", "absolute": "absolute"}


def heat_peak(heatmap: np.ndarray | None,
              shape: tuple[int, int]) -> tuple[float, float, float] | None:
    """(peak value, x, y) of a heatmap in the coordinates of an image of `shape` (H, W)."""
    if heatmap is None or np.size(heatmap) == 0:
        return None
    h = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
    iy, ix = np.unravel_index(int(np.argmax(h)), h.shape[:2])
    sy, sx = shape[0] / h.shape[0], shape[1] / h.shape[1]
    return float(h[iy, ix]), (ix + 0.5) * sx - 0.5, (iy + 0.5) * sy - 0.5


class HeatmapView(ZoomImage):
    """Paints `overlay(image, heatmap, alpha, colormap)` (zoomable), with a score badge,
    a colour bar and the peak marker.

    The blend is made by defect_studio.inference.overlay (the same one the predict CLI exports),
    so what the user sees matches the exported PNGs.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: np.ndarray | None = None  # RGB uint8
        self._heatmap: np.ndarray | None = None  # float32 [0,1], any size
        self._score: float | None = None
        self._is_ng: bool | None = None
        # Weight at full heat; the overlay fades it out over cool areas (see overlay()).
        self._alpha = 0.6
        self._colormap = "jet"
        self._show_heatmap = True
        self._peak: tuple[float, float, float] | None = None
        self._bar = None  # colour bar image of the colormap
        self._scale_mode = "run"
        self._run_range: float | None = None  # the run's heat range (heat_range.json)

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

    def scale_mode(self) -> str:
        return self._scale_mode

    def set_scale_mode(self, mode: str) -> None:
        if mode not in SCALE_WORDS:
            raise ValueError(f"unknown heat scale {mode!r}")
        self._scale_mode = mode
        self._render()

    def run_range(self) -> float | None:
        return self._run_range

    def set_run_range(self, vmax: float | None) -> None:
        """The run's heat range (None: not known, shown absolute until it is)."""
        self._run_range = clean_range(vmax)
        self._render()

    def vmax(self) -> float | None:
        """The heat shown at full colour now (None: 1, absolute)."""
        if self._scale_mode == "run":
            return self._run_range
        if self._scale_mode == "part" and self._heatmap is not None and self._heatmap.size:
            return clean_range(float(np.nanmax(np.nan_to_num(self._heatmap))))
        return None

    def scale_text(self) -> str:
        """What the colour bar says about its range."""
        v = self.vmax()
        words = SCALE_WORDS[self._scale_mode]
        if self._scale_mode == "run" and v is None:
            return "0\u20131 (run's range not measured yet)"
        return f"0\u2013{(v or 1.0):.2g} = {words}"

    def has_heatmap(self) -> bool:
        return self._heatmap is not None

    def displayed_rgb(self) -> np.ndarray | None:
        """The RGB array currently painted (image, or image + heatmap)."""
        if self._image is None:
            return None
        if self._show_heatmap and self._heatmap is not None:
            return overlay(self._image, self._heatmap, alpha=self._alpha, colormap=self._colormap,
                           vmax=self.vmax())
        return self._image

    def peak(self) -> tuple[float, float, float] | None:
        """(peak heat, x, y) in image pixels of the shown heatmap; None without one."""
        return self._peak

    # -- painting --------------------------------------------------------------------------
    def _render(self) -> None:
        rgb = self.displayed_rgb()
        self._peak = (heat_peak(self._heatmap, self._image.shape[:2])
                      if self._image is not None and self._heatmap is not None else None)
        # The hottest point is marked even where the blend changes no pixel (a weak map).
        self.markers = ([self._peak[1:]] if self._peak is not None and self._show_heatmap
                        else [])
        self._bar = rgb_to_qimage(colorize(np.linspace(1, 0, 256)[:, None].repeat(8, 1),
                                           self._colormap))
        self.set_rgb(rgb)

    def paint_extra(self, p: QPainter) -> None:
        if self._score is not None and self._is_ng is not None:
            self._paint_badge(p)
        if self._peak is not None and self._show_heatmap and self._bar is not None:
            self._paint_colorbar(p)

    def _paint_colorbar(self, p: QPainter) -> None:
        """Heat 0..1 bar at the right edge with a tick and label at the peak value."""
        h = max(60.0, min(220.0, self.height() * 0.45))
        bar = QRectF(self.width() - 26, 12, 12, h)
        p.drawImage(bar, self._bar)
        p.setPen(QPen(QColor(230, 230, 230), 1))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(bar)
        fm = p.fontMetrics()
        vmax = self.vmax() or 1.0
        peak_y = bar.bottom() - min(1.0, max(0.0, self._peak[0] / vmax)) * bar.height()
        for value, y in ((vmax, bar.top()), (0.0, bar.bottom())):
            if abs(y - peak_y) < fm.height():
                continue  # the peak's label is there (auto-contrast: the peak is the top)
            text = f"{value:.2g}"
            p.drawText(QRectF(bar.left() - 40, y - fm.height() / 2, 36, fm.height()),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, text)
        # under the bar: what its range is (the run's, this part's, or absolute)
        caption = self.scale_text()
        cw = fm.horizontalAdvance(caption) + 8
        cr = QRectF(bar.right() + 2 - cw, bar.bottom() + 4, cw, fm.height() + 2)
        p.fillRect(cr, QColor(0, 0, 0, 170))
        p.drawText(cr, Qt.AlignmentFlag.AlignCenter, caption)
        peak = min(1.0, max(0.0, self._peak[0] / vmax))
        y = bar.bottom() - peak * bar.height()
        p.setPen(QPen(QColor(255, 255, 255), 2))
        p.drawLine(int(bar.left() - 6), int(y), int(bar.right() + 3), int(y))
        text = f"peak {self._peak[0]:.2f}"
        w = fm.horizontalAdvance(text) + 8
        r = QRectF(bar.left() - 10 - w, y - fm.height() / 2 - 1, w, fm.height() + 2)
        p.fillRect(r, QColor(0, 0, 0, 170))
        p.drawText(r, Qt.AlignmentFlag.AlignCenter, text)

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
        p.setFont(self.font())
