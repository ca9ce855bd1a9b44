"""Icons from resources/icons/*.svg, drawn in the palette's text colour so they
work on light and dark themes."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PySide6.QtCore import QByteArray, QSize, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

from defect_studio.resources import RESOURCE_DIR

ICON_DIR = RESOURCE_DIR / "icons"


def icon_path(name: str) -> Path:
    """Path of an icon's SVG (FileNotFoundError names a missing icon: a bug, not user input)."""
    p = ICON_DIR / f"{name}.svg"
    if not p.is_file():
        raise FileNotFoundError(f"icon {name!r} not found in {ICON_DIR}")
    return p


def icon(name: str, color: str | None = None) -> QIcon:
    """A QIcon of resources/icons/<name>.svg; currentColor becomes `color` or the text colour."""
    if color is None:
        pal = QGuiApplication.palette()
        color = pal.color(QPalette.ColorRole.WindowText).name()
    return _icon(name, color)


@lru_cache(maxsize=256)
def _icon(name: str, color: str) -> QIcon:
    svg = icon_path(name).read_text(encoding="utf-8").replace("currentColor", color)
    renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    result = QIcon()
    for size in (16, 24, 32, 48):
        pm = QPixmap(QSize(size, size))
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        renderer.render(p)
        p.end()
        result.addPixmap(pm)
    return result
