"""Look of the app: Fusion style that follows the system light/dark scheme, and the
colours used on top of images (mask overlay, badges) for either scheme."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class Colors:
    """Colours the widgets draw themselves (the palette covers the rest)."""

    ok: QColor
    defective: QColor
    unlabeled: QColor
    mask: QColor          # defect overlay; alpha comes from the opacity slider
    brush_cursor: QColor
    polygon: QColor
    error: QColor
    canvas_bg: QColor


LIGHT = Colors(QColor(30, 150, 70), QColor(210, 45, 45), QColor(140, 140, 140),
               QColor(255, 40, 40), QColor(20, 20, 20), QColor(0, 120, 215),
               QColor(200, 40, 40), QColor(222, 222, 222))
DARK = Colors(QColor(70, 190, 100), QColor(240, 80, 80), QColor(150, 150, 150),
              QColor(255, 60, 60), QColor(250, 250, 250), QColor(80, 170, 255),
              QColor(255, 110, 110), QColor(38, 38, 40))


def is_dark() -> bool:
    """True when the system (or the palette) is dark."""
    app = QGuiApplication.instance()
    if app is None:
        return False
    scheme = QGuiApplication.styleHints().colorScheme()
    if scheme == Qt.ColorScheme.Dark:
        return True
    if scheme == Qt.ColorScheme.Light:
        return False
    # Unknown scheme (offscreen, some X11 desktops): judge by the window colour.
    return QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128


def colors() -> Colors:
    """The colour set of the current scheme."""
    return DARK if is_dark() else LIGHT


def apply_theme(app: QApplication) -> None:
    """Fusion style: looks the same everywhere and follows the system's light/dark palette."""
    app.setStyle("Fusion")
