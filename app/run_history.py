"""The table of a project's training runs, with "Set active"."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QMessageBox, QPushButton,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

COLUMNS = ("Run", "Model", "Date", "Epochs", "State", "AP", "AUC", "Threshold")
ACTIVE_MARK = "\u25cf "  # shown before the active run's id


def metric_value(metrics: dict | None, name: str) -> float | None:
    """`metrics["ap"]`, or the first nested dict's value ("test"/"val" blocks), or None."""
    if not isinstance(metrics, dict):
        return None
    v = metrics.get(name)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    for key in ("test", "val", "validation"):
        sub = metrics.get(key)
        if isinstance(sub, dict) and isinstance(sub.get(name), (int, float)):
            return float(sub[name])
    return None


def _fmt_created(created: Any) -> str:
    if isinstance(created, (int, float)):
        return _dt.datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M")
    text = str(created or "")
    try:
        return _dt.datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return text


def _fmt(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


class RunHistory(QWidget):
    """Lists `project.runs()` newest first; marks and sets the active run."""

    active_run_changed = Signal(str)
    selection_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._project = None
        self._run_ids: list[str] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemDoubleClicked.connect(lambda _item: self.set_active())

        self.active_label = QLabel("Active run: none")
        self.set_active_button = QPushButton("Set active")
        self.set_active_button.setToolTip("Use the selected run for review and prediction")
        self.set_active_button.clicked.connect(self.set_active)
        self.export_button = QPushButton("Export model…")
        self.export_button.setToolTip("Write the selected run as a package for the line "
                                      "(ONNX or OpenVINO): defect-studio watch / predict --model")
        self.export_button.clicked.connect(self.open_export_dialog)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)

        buttons = QHBoxLayout()
        buttons.addWidget(self.active_label, 1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.set_active_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table)
        lay.addLayout(buttons)
        self._update_buttons()

    def set_project(self, project) -> None:
        self._project = project
        self.refresh()

    def run_ids(self) -> list[str]:
        return list(self._run_ids)

    def selected_run(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self._run_ids[rows[0].row()]

    def select_run(self, run_id: str) -> None:
        if run_id in self._run_ids:
            self.table.selectRow(self._run_ids.index(run_id))

    def refresh(self) -> None:
        """Re-read the runs folder (cheap: a few small JSON files per run)."""
        selected = self.selected_run()
        self.table.setRowCount(0)
        self._run_ids = []
        if self._project is None:
            self.active_label.setText("Active run: none")
            self._update_buttons()
            return
        runs = sorted(self._project.runs(), key=lambda r: str(r.created or ""), reverse=True)
        active = self._project.active_run()
        bold = QFont()
        bold.setBold(True)
        self.table.setRowCount(len(runs))
        for row, r in enumerate(runs):
            self._run_ids.append(r.id)
            thr = r.threshold
            cells = (
                (ACTIVE_MARK if r.id == active else "") + r.id,
                str(r.model or ""),
                _fmt_created(r.created),
                "" if r.epochs is None else str(r.epochs),
                str(r.state or ""),
                _fmt(metric_value(r.metrics, "ap")),
                _fmt(metric_value(r.metrics, "auc")),
                _fmt(thr, 4) if isinstance(thr, (int, float)) else "",
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, r.id)
                if r.id == active:
                    item.setFont(bold)
                    item.setToolTip("active run: used for review and prediction")
                self.table.setItem(row, col, item)
        self.active_label.setText(
            f"Active run: {active}" if active else
            "No runs yet: choose the settings above and press Train." if not runs else
            "Active run: none (select a finished run and press Set active)")
        if selected in self._run_ids:
            self.select_run(selected)
        self._update_buttons()

    def set_active(self) -> None:
        """Make the selected run the project's active run."""
        run_id = self.selected_run()
        if self._project is None or run_id is None:
            return
        from core.errors import UserError

        try:
            self._project.set_active_run(run_id)
        except UserError as e:
            QMessageBox.warning(self, "Cannot use this run", str(e))
            return
        self.refresh()
        self.active_run_changed.emit(run_id)

    def open_export_dialog(self):
        """Open the export dialog for the selected run (app/export_dialog.py); returns it."""
        run_id = self.selected_run()
        if self._project is None or run_id is None:
            return None
        from app.export_dialog import ExportDialog

        dialog = ExportDialog(self._project.root, run_id, self)
        dialog.open()
        return dialog

    def _on_selection(self) -> None:
        self._update_buttons()
        run_id = self.selected_run()
        if run_id:
            self.selection_changed.emit(run_id)

    def _update_buttons(self) -> None:
        self.set_active_button.setEnabled(self._project is not None and self.selected_run() is not None)
        self.export_button.setEnabled(self.set_active_button.isEnabled())
        self.refresh_button.setEnabled(self._project is not None)
