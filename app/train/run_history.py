"""The table of a project's training runs: set active (runs with a model only), resume an
interrupted run, compare two runs, delete a run."""

from __future__ import annotations

import datetime as _dt
import shutil
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from defect_studio.app.common.actions import action, warn_user
from defect_studio.app.train.state import has_model, is_interrupted, metric_value

COLUMNS = ("Run", "Model", "Date", "Epochs", "State", "AP", "AUC", "Threshold")
ACTIVE_MARK = "\u25cf "  # shown before the active run's id
MIN_ROWS = 4


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
    resume_requested = Signal(str)
    run_deleted = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._project = None
        self._run_ids: list[str] = []
        self._runs: dict = {}
        self.running_run: str | None = None  # the run this window is training now
        self._live: dict[str, str] = {}  # run id -> epochs text while it trains
        self._notes: dict[str, tuple[str, str]] = {}  # run id -> (state shown, tooltip)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # Two rows (Ctrl+click) to compare.
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemDoubleClicked.connect(lambda _item: self.set_active())
        # at least MIN_ROWS rows stay visible whatever the window's height (issue 16: 1.5
        # rows at 1380x860)
        self.table.setMinimumHeight(self.rows_height(MIN_ROWS))

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
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Go on training an interrupted run from its last epoch")
        self.resume_button.clicked.connect(self._on_resume)
        self.compare_button = QPushButton("Compare\u2026")
        self.compare_button.setToolTip("Select two runs (Ctrl+click) to compare their curves "
                                       "and metrics")
        self.compare_button.clicked.connect(self.compare_selected)
        self.delete_button = QPushButton("Delete\u2026")
        self.delete_button.setToolTip("Delete the selected run's folder (asks first)")
        self.delete_button.clicked.connect(self.delete_selected)

        buttons = QHBoxLayout()
        buttons.addWidget(self.active_label, 1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.compare_button)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.set_active_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table)
        lay.addLayout(buttons)
        self._update_buttons()

    def rows_height(self, rows: int) -> int:
        """Pixels the table needs to show its header and `rows` rows."""
        t = self.table
        return (t.horizontalHeader().sizeHint().height()
                + rows * t.verticalHeader().defaultSectionSize() + 2 * t.frameWidth() + 2)

    def visible_rows(self) -> float:
        """How many rows the table has room for now."""
        t = self.table
        room = t.viewport().height()
        return room / max(1, t.verticalHeader().defaultSectionSize())

    def set_project(self, project) -> None:
        self._project = project
        self._live.clear()
        self._notes.clear()
        self.refresh()

    def run_ids(self) -> list[str]:
        return list(self._run_ids)

    def selected_run(self) -> str | None:
        runs = self.selected_runs()
        return runs[0] if len(runs) == 1 else None

    def selected_runs(self) -> list[str]:
        rows = sorted(r.row() for r in self.table.selectionModel().selectedRows())
        return [self._run_ids[r] for r in rows if r < len(self._run_ids)]

    def run_info(self, run_id: str):
        return self._runs.get(run_id)

    def can_activate(self, run_id: str | None) -> bool:
        r = self._runs.get(run_id) if run_id else None
        return r is not None and has_model(r)

    def can_resume(self, run_id: str | None) -> bool:
        r = self._runs.get(run_id) if run_id else None
        return r is not None and is_interrupted(r, self.running_run)

    def set_live(self, run_id: str, text: str) -> None:
        """Show the epochs of the run being trained as they go (status.json lags)."""
        self._live[run_id] = text
        if run_id in self._run_ids:
            item = self.table.item(self._run_ids.index(run_id), COLUMNS.index("Epochs"))
            if item is not None:
                item.setText(text)

    def set_note(self, run_id: str, state: str | None, tooltip: str = "") -> None:
        """Show ``state`` (e.g. "cluster unreachable") for a run instead of its own state,
        with ``tooltip`` (None: its own state again)."""
        if state is None:
            self._notes.pop(run_id, None)
        else:
            self._notes[run_id] = (state, tooltip)
        self.refresh()

    def select_run(self, run_id: str) -> None:
        if run_id in self._run_ids:
            self.table.selectRow(self._run_ids.index(run_id))

    def refresh(self) -> None:
        """Re-read the runs folder (cheap: a few small JSON files per run)."""
        selected = self.selected_runs()
        self.table.setRowCount(0)
        self._run_ids = []
        self._runs = {}
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
            self._runs[r.id] = r
            thr = r.threshold
            state = str(r.state or "")
            if is_interrupted(r, self.running_run) and state == "running":
                state = "interrupted"
            note = self._notes.get(r.id) if r.id != self.running_run else None
            if note is not None:
                state = note[0]
            if r.id == self.running_run and r.id in self._live:
                epochs = self._live[r.id]
            else:
                epochs = "" if r.epochs is None else str(r.epochs)
            cells = (
                (ACTIVE_MARK if r.id == active else "") + r.id,
                str(r.model or ""),
                _fmt_created(r.created),
                epochs,
                state,
                _fmt(metric_value(r.metrics, "ap")),
                _fmt(metric_value(r.metrics, "auc")),
                _fmt(thr, 6) if isinstance(thr, (int, float)) else ""  # as Evaluate shows it,
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, r.id)
                if r.id == active:
                    item.setFont(bold)
                    item.setToolTip("active run: used for review and prediction")
                if note is not None and col == 4:
                    item.setToolTip(note[1])
                self.table.setItem(row, col, item)
        self.active_label.setText(
            f"Active run: {active}" if active else
            "No runs yet: choose the settings above and press Train." if not runs else
            "Active run: none (select a finished run and press Set active)")
        keep = [run_id for run_id in selected if run_id in self._run_ids]
        if keep:
            self.select_runs(keep)
        self._update_buttons()

    def select_runs(self, run_ids: list[str]) -> None:
        from PySide6.QtCore import QItemSelectionModel

        sm = self.table.selectionModel()
        sm.clearSelection()
        for run_id in run_ids:
            if run_id in self._run_ids:
                idx = self.table.model().index(self._run_ids.index(run_id), 0)
                sm.select(idx, QItemSelectionModel.SelectionFlag.Select
                          | QItemSelectionModel.SelectionFlag.Rows)

    def set_active(self) -> None:
        """Make the selected run the project's active run."""
        run_id = self.selected_run()
        if self._project is None or run_id is None:
            return
        if not self.can_activate(run_id):
            r = self._runs.get(run_id)
            state = r.state if r is not None else "unknown"
            hint = (" It stopped early: press Resume to finish it." if self.can_resume(run_id)
                    else "")
            QMessageBox.information(
                self, "Cannot use this run",
                f"Run {run_id} has no model to review with (it is {state}).{hint}")
            return
        from defect_studio.errors import UserError

        try:
            self._project.set_active_run(run_id)
        except UserError as e:
            warn_user(self, "Cannot use this run", str(e))
            return
        action(f"active run set to {run_id}")
        self.refresh()
        self.active_run_changed.emit(run_id)

    def _on_resume(self) -> None:
        run_id = self.selected_run()
        if run_id is not None and self.can_resume(run_id):
            self.resume_requested.emit(run_id)

    def compare_selected(self):
        """Open the comparison of the two selected runs; returns the dialog (or None)."""
        runs = self.selected_runs()
        if self._project is None or len(runs) != 2:
            return None
        from defect_studio.app.train.run_compare import RunCompareDialog

        dlg = RunCompareDialog(self._project, runs[0], runs[1], self)
        dlg.show()
        return dlg

    def delete_selected(self, *, confirm: bool = True) -> bool:
        """Delete the selected run's folder (after asking); the active run is unset."""
        run_id = self.selected_run()
        if self._project is None or run_id is None:
            return False
        if run_id == self.running_run:
            QMessageBox.information(self, "Delete run",
                                    f"Run {run_id} is training now: cancel it first.")
            return False
        active = self._project.active_run()
        if confirm:
            extra = ("\n\nIt is the active run: Review will have no model until you set "
                     "another one active." if run_id == active else "")
            answer = QMessageBox.question(
                self, "Delete run",
                f"Delete run {run_id} with its model, curves and stored predictions? "
                f"This cannot be undone.{extra}",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return False
        from defect_studio.errors import UserError

        try:
            path = self._project.run_dir(run_id)
            if run_id == active:
                self._project.set_active_run(None)
            self._project.save_predictions(run_id, [])
            shutil.rmtree(path)
        except (UserError, OSError) as e:
            warn_user(self, "Run not deleted", f"Run {run_id} was not deleted: {e}")
            self.refresh()
            return False
        action(f"run {run_id} deleted")
        self.refresh()
        self.run_deleted.emit(run_id)
        if run_id == active:
            self.active_run_changed.emit("")
        return True

    def open_export_dialog(self):
        """Open the export dialog for the selected run (app/export_dialog.py); returns it."""
        run_id = self.selected_run()
        if self._project is None or run_id is None:
            return None
        from defect_studio.app.train.export_model_dialog import ExportModelDialog

        dialog = ExportModelDialog(self._project.root, run_id, self)
        dialog.open()
        return dialog

    def _on_selection(self) -> None:
        self._update_buttons()
        run_id = self.selected_run()
        if run_id:
            self.selection_changed.emit(run_id)

    def _update_buttons(self) -> None:
        run_id = self.selected_run()
        has = self._project is not None
        self.set_active_button.setEnabled(has and self.can_activate(run_id))
        self.set_active_button.setToolTip(
            "Use the selected run for review and prediction" if self.can_activate(run_id)
            else "Only a finished run with a model can be made active")
        self.resume_button.setEnabled(has and self.can_resume(run_id))
        self.delete_button.setEnabled(has and run_id is not None and run_id != self.running_run)
        self.compare_button.setEnabled(has and len(self.selected_runs()) == 2)
        self.export_button.setEnabled(has and self.can_activate(run_id))
        self.refresh_button.setEnabled(has)
