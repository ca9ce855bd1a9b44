"""Look of the app: Fusion style that follows the system light/dark scheme, and the
colours used on top of images (mask overlay, badges) for either scheme."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("system", "light", "dark")
THEME_KEY = "ui/theme"
_choice = "system"


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
    if _choice != "system":
        return _choice == "dark"
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


def apply_theme(app: QApplication, choice: str | None = None) -> str:
    """Fusion style in the chosen scheme: "system" follows the desktop, "light" / "dark"
    force one. The choice is remembered (QSettings); returns the one applied."""
    global _choice
    app.setStyle("Fusion")
    if choice is None:
        choice = str(QSettings().value(THEME_KEY, "system"))
    if choice not in THEMES:
        choice = "system"
    _choice = choice
    hints = QGuiApplication.styleHints()
    scheme = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(
        choice, Qt.ColorScheme.Unknown)
    if hasattr(hints, "setColorScheme"):
        hints.setColorScheme(scheme)
    if choice == "dark":
        app.setPalette(dark_palette())
    else:
        app.setPalette(app.style().standardPalette())
    QSettings().setValue(THEME_KEY, choice)
    return choice


def theme_choice() -> str:
    return _choice


def dark_palette() -> QPalette:
    """A dark Fusion palette (used when the desktop does not switch Qt's palette itself)."""
    p = QPalette()
    window, base, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(230, 230, 230)
    for role, color in (
        (QPalette.ColorRole.Window, window), (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base), (QPalette.ColorRole.AlternateBase, window),
        (QPalette.ColorRole.ToolTipBase, window), (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Text, text), (QPalette.ColorRole.Button, window),
        (QPalette.ColorRole.ButtonText, text), (QPalette.ColorRole.BrightText, QColor("red")),
        (QPalette.ColorRole.Highlight, QColor(42, 130, 218)),
        (QPalette.ColorRole.HighlightedText, QColor("white")),
        (QPalette.ColorRole.Link, QColor(80, 170, 255)),
        (QPalette.ColorRole.PlaceholderText, QColor(150, 150, 150)),
    ):
        p.setColor(role, color)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText,
                 QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(127, 127, 127))
    return p
