"""pyqtgraph plots that follow the application palette (light or dark).

pyqtgraph draws its own black background with light axes whatever the Qt palette
says; every plot of the app goes through style_plot so all look the same and switch
with the system scheme.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QWidget

# Curve colours that read on both a white and a near-black background.
SERIES = {
    "blue": QColor(31, 119, 200),
    "orange": QColor(230, 125, 0),
    "green": QColor(30, 150, 60),
    "magenta": QColor(190, 50, 170),
    "red": QColor(220, 60, 50),
    "gray": QColor(128, 128, 128),
}
_FG_FLAG = "_ds_foreground_pen"


def plot_colors() -> tuple[QColor, QColor]:
    """(background, foreground) of plots: the palette's Base and Text colours."""
    pal = QGuiApplication.palette()
    return pal.color(QPalette.ColorRole.Base), pal.color(QPalette.ColorRole.Text)


def foreground_curve(item: pg.PlotDataItem, width: float = 2.0) -> pg.PlotDataItem:
    """Mark a curve to be drawn in the text colour (black on light, white on dark)."""
    setattr(item, _FG_FLAG, width)
    item.setPen(pg.mkPen(plot_colors()[1], width=width))
    return item


def style_plot(plot: pg.PlotWidget) -> None:
    """Background, axes, title, legend and foreground curves in the palette's colours."""
    bg, fg = plot_colors()
    plot.setBackground(bg)
    item = plot.getPlotItem()
    for name in ("left", "bottom", "right", "top"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(fg))
        axis.setTextPen(pg.mkPen(fg))
        # "epoch (x0.001)" early in a run reads as a bug: keep plain numbers.
        axis.enableAutoSIPrefix(False)
        if axis.labelText:
            axis.setLabel(axis.labelText, units=axis.labelUnits, color=fg.name())
    title = item.titleLabel
    if title.text:
        title.setText(title.text, color=fg.name())
    legend = item.legend
    if legend is not None:
        legend.setLabelTextColor(fg)  # for entries added later
        for _sample, label in legend.items:  # setLabelTextColor does not redraw existing ones
            label.setText(label.text, color=fg.name())
        fill = QColor(bg)
        fill.setAlpha(200)
        legend.setBrush(pg.mkBrush(fill))
        legend.setPen(pg.mkPen(QColor(128, 128, 128)))
    for data in item.listDataItems():
        width = getattr(data, _FG_FLAG, None)
        if width is not None:
            data.setPen(pg.mkPen(fg, width=width))


def style_all_plots(root: QWidget) -> None:
    """Re-style every plot under `root` (after the light/dark scheme changed)."""
    for plot in root.findChildren(pg.PlotWidget):
        style_plot(plot)
