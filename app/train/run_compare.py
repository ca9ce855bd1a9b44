"""Two runs side by side: their settings and metrics in one table, their loss and
validation curves in one plot each."""

from __future__ import annotations

import json
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from defect_studio.app.common.plot_style import SERIES, style_plot
from defect_studio.app.train.run_curves import read_curves
from defect_studio.app.train.state import metric_value

ROWS = (
    ("State", lambda r, c: str(r.state)),
    ("Model", lambda r, c: str(r.model or "")),
    ("Created", lambda r, c: str(r.created)),
    ("Epochs", lambda r, c: str(r.epochs)),
    ("Input size", lambda r, c: "\u00d7".join(str(v) for v in c.get("input_size", []) or [])),
    ("Learning rate", lambda r, c: _g(c.get("lr"))),
    ("Seed", lambda r, c: _g(c.get("seed"))),
    ("AP", lambda r, c: _f(metric_value(r.metrics, "ap"))),
    ("ROC AUC", lambda r, c: _f(metric_value(r.metrics, "auc"))),
    ("Threshold", lambda r, c: _f(r.threshold)),
    ("Evaluated on", lambda r, c: str(r.metrics.get("split", "")) if isinstance(r.metrics, dict)
     else ""),
)
COLORS = (SERIES["blue"], SERIES["orange"])


def _f(v) -> str:
    return "" if v is None else f"{v:.4f}"


def _g(v) -> str:
    return "" if v is None else f"{v:g}" if isinstance(v, (int, float)) else str(v)


def run_config(run_dir: Path) -> dict:
    """config.json of a run ({} when missing or damaged)."""
    try:
        c = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return c if isinstance(c, dict) else {}


def comparison_rows(project, run_a: str, run_b: str) -> list[tuple[str, str, str]]:
    """(what, run a, run b) rows of the table."""
    runs = [project.run(run_a), project.run(run_b)]
    configs = [run_config(r.path) for r in runs]
    return [(name, get(runs[0], configs[0]), get(runs[1], configs[1])) for name, get in ROWS]


class RunCompareDialog(QDialog):
    """Settings, metrics and curves of two runs of a project."""

    def __init__(self, project, run_a: str, run_b: str, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Compare runs: {run_a} | {run_b}")
        self.resize(1000, 640)
        self.runs = (run_a, run_b)
        rows = comparison_rows(project, run_a, run_b)
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels([run_a, run_b])
        self.table.setVerticalHeaderLabels([r[0] for r in rows])
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        for i, (_name, a, b) in enumerate(rows):
            for col, text in enumerate((a, b)):
                item = QTableWidgetItem(text)
                if a != b:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(i, col, item)
        self.loss_plot = pg.PlotWidget(title="Training loss")
        self.val_plot = pg.PlotWidget(title="Validation AP (\u2605 = final model)")
        for p in (self.loss_plot, self.val_plot):
            p.setLabel("bottom", "epoch")
            p.showGrid(x=True, y=True, alpha=0.3)
            p.addLegend(offset=(-10, 10))
        self.val_plot.setYRange(0, 1.02)
        self.curves = {}
        for run_id, color in zip(self.runs, COLORS):
            c = read_curves(project.run_dir(run_id))
            self.curves[run_id] = c
            pen = pg.mkPen(color, width=2)
            self.loss_plot.plot(c.loss_x, c.loss, pen=pen, name=run_id)
            self.val_plot.plot(c.val_x, c.val_ap, pen=pen, symbol="o", symbolSize=6,
                               symbolBrush=color, name=run_id)
            ap = metric_value(project.run(run_id).metrics, "ap")
            if ap is not None:
                x = c.epochs or (c.loss_x[-1] if c.loss_x else 1.0)
                self.val_plot.plot([x], [ap], pen=None, symbol="star", symbolSize=16,
                                   symbolBrush=color, symbolPen=color)
        for p in (self.loss_plot, self.val_plot):
            style_plot(p)
        plots = QHBoxLayout()
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.val_plot)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addLayout(plots, 1)
        lay.addWidget(buttons)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
