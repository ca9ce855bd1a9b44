"""The Evaluate page: PR and ROC curves of a run, and a live threshold with its confusion matrix."""

from __future__ import annotations

import math
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from defect_studio.app.common.jobs import FunctionWorker
from defect_studio.app.common.plot_style import SERIES, plot_colors, style_plot
from defect_studio.app.evaluate.drilldown import CELL_AT, CellImages
from defect_studio.app.evaluate.state import (
    EVAL_SPLITS,
    THRESHOLD_DECIMALS,
    EvaluateState,
    RunEvaluation,
    evaluate_and_load,
)

SLIDER_STEPS = 1000
MIN_PLOT_HEIGHT = 220  # the PR and ROC curves stay readable at 1280x800
LOWER_MAX_HEIGHT = 300  # the confusion numbers / sweep tabs under the threshold


class EvaluatePage(QWidget):
    """Evaluate page. `threshold_saved(run_id, threshold)` after Save threshold."""

    threshold_saved = Signal(str, float)
    evaluation_loaded = Signal(str)
    open_image_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = EvaluateState()
        self._worker: FunctionWorker | None = None
        self._evaluate_when_shown = False
        self._build()
        self._update_enabled()

    # -- UI --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.run_combo = QComboBox()
        self.run_combo.setMinimumContentsLength(24)
        self.run_combo.currentIndexChanged.connect(self._on_run_changed)
        self.split_combo = QComboBox()
        self.split_combo.addItems(EVAL_SPLITS)
        self.split_combo.setToolTip("Images to evaluate on "
                                    "(Evaluate writes the run's curves again)")
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setToolTip("Score the split with the run and compute its curves")
        self.evaluate_button.clicked.connect(lambda: self.evaluate())
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)  # indeterminate: evaluate_run reports no steps to the GUI
        self.busy.setMaximumWidth(140)
        self.busy.setVisible(False)
        top = QHBoxLayout()
        top.addWidget(QLabel("Run:"))
        top.addWidget(self.run_combo, 1)
        top.addWidget(QLabel("Split:"))
        top.addWidget(self.split_combo)
        top.addWidget(self.evaluate_button)
        top.addWidget(self.busy)

        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.pr_plot = pg.PlotWidget(title="Precision\u2013recall")
        self.pr_plot.setLabel("bottom", "recall")
        self.pr_plot.setLabel("left", "precision")
        self.roc_plot = pg.PlotWidget(title="ROC")
        self.roc_plot.setLabel("bottom", "false positive rate")
        self.roc_plot.setLabel("left", "true positive rate")
        for p in (self.pr_plot, self.roc_plot):
            p.setMinimumHeight(MIN_PLOT_HEIGHT)
            p.setXRange(0, 1, padding=0.02)
            p.setYRange(0, 1, padding=0.02)
            p.showGrid(x=True, y=True, alpha=0.3)
            p.setMouseEnabled(False, False)
        self.roc_plot.plot([0, 1], [0, 1], pen=pg.mkPen(SERIES["gray"], style=Qt.PenStyle.DashLine))
        self.pr_curve = self.pr_plot.plot([], [], pen=pg.mkPen(SERIES["blue"], width=2))
        self.roc_curve = self.roc_plot.plot([], [], pen=pg.mkPen(SERIES["blue"], width=2))
        for p in (self.pr_plot, self.roc_plot):
            style_plot(p)
        marker = dict(size=12, brush=pg.mkBrush(SERIES["red"]), pen=pg.mkPen(plot_colors()[0]))
        self.pr_marker = pg.ScatterPlotItem(**marker)
        self.roc_marker = pg.ScatterPlotItem(**marker)
        self.pr_plot.addItem(self.pr_marker)
        self.roc_plot.addItem(self.roc_marker)
        plots = QHBoxLayout()
        plots.addWidget(self.pr_plot)
        plots.addWidget(self.roc_plot)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.valueChanged.connect(lambda v: self.set_threshold(v / SLIDER_STEPS))
        self.spin = QDoubleSpinBox()
        self.spin.setRange(0.0, 1.0)
        self.spin.setDecimals(THRESHOLD_DECIMALS)
        self.spin.setSingleStep(0.01)
        self.spin.valueChanged.connect(self.set_threshold)
        self.save_button = QPushButton("Save threshold")
        self.save_button.setToolTip("Prediction and review of this run use this threshold "
                                    "from now on")
        self.save_button.clicked.connect(self.save_threshold)
        self.best_button = QPushButton("Best F1")
        self.best_button.setToolTip("Move the threshold to the best F1 on this split")
        self.best_button.clicked.connect(self._to_best_f1)
        self.escape_spin = QDoubleSpinBox()
        self.escape_spin.setRange(0.0, 100.0)
        self.escape_spin.setDecimals(1)
        self.escape_spin.setSingleStep(0.5)
        self.escape_spin.setSuffix(" %")
        self.escape_spin.setValue(5.0)
        self.escape_spin.setToolTip("Escape rate: the share of defective parts the line may "
                                    "let through (called OK)")
        self.escape_button = QPushButton("For escape rate")
        self.escape_button.setToolTip("Highest threshold that misses at most this share of the "
                                      "defective images (fewest false alarms)")
        self.escape_button.clicked.connect(lambda: self.threshold_for_escape_rate())
        self.report_button = QPushButton("Export report\u2026")
        self.report_button.setToolTip("Write an HTML (and PDF) report of this run's evaluation")
        self.report_button.clicked.connect(self._export_report)
        thr_row = QHBoxLayout()
        thr_row.addWidget(QLabel("Threshold"))
        thr_row.addWidget(self.slider, 1)
        thr_row.addWidget(self.spin)
        thr_row.addWidget(self.best_button)
        thr_row.addWidget(QLabel("Max. escapes"))
        thr_row.addWidget(self.escape_spin)
        thr_row.addWidget(self.escape_button)
        thr_row.addWidget(self.save_button)

        self.confusion = QTableWidget(2, 2)
        self.confusion.setHorizontalHeaderLabels(["Predicted NG", "Predicted OK"])
        self.confusion.setVerticalHeaderLabels(["Actual defective", "Actual OK"])
        self.confusion.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for bar in (self.confusion.setHorizontalScrollBarPolicy,
                    self.confusion.setVerticalScrollBarPolicy):
            bar(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.confusion.horizontalHeader().setMinimumSectionSize(100)
        self._fit_confusion()
        self.confusion.setToolTip("Click a cell to list its images")
        self.confusion.cellClicked.connect(self.show_cell)
        self.rates_label = QLabel("")
        self.cell_images = CellImages()
        self.cell_images.open_image.connect(self.open_image_requested)
        conf_box = QWidget()
        cl = QGridLayout(conf_box)
        cl.addWidget(self.confusion, 0, 0)
        cl.addWidget(self.rates_label, 0, 1)
        cl.addWidget(self.cell_images, 0, 2)
        cl.setColumnStretch(2, 1)

        self.pixel_label = QLabel("")
        self.pixel_label.setWordWrap(True)
        self.pixel_label.setVisible(False)
        head = QHBoxLayout()
        head.addWidget(self.summary_label, 1)
        head.addWidget(self.report_button)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(head)
        lay.addWidget(self.pixel_label)
        lay.addLayout(plots, 3)
        lay.addLayout(thr_row)
        from defect_studio.app.evaluate.sweep_view import (
            SweepView,  # issue 7: test AP vs number of masks
        )

        # The confusion numbers and the mask sweep share the room under the threshold, so
        # the curves keep theirs at 1280x800 (the sweep once squashed them to ~0 px).
        self.sweep_view = SweepView()
        self.lower_tabs = QTabWidget()
        self.lower_tabs.setDocumentMode(True)
        self.lower_tabs.addTab(conf_box, "At this threshold")
        self.lower_tabs.addTab(self.sweep_view, "How many masks? (sweep)")
        # capped: given more room (a taller window), the curves take it
        self.lower_tabs.setMaximumHeight(LOWER_MAX_HEIGHT)
        lay.addWidget(self.lower_tabs, 2)

    def _fit_confusion(self) -> None:
        """Size the 2x2 table to its headers and cells: all of it readable, no scroll bars."""
        t = self.confusion
        t.resizeColumnsToContents()
        t.resizeRowsToContents()
        frame = 2 * t.frameWidth()
        width = t.verticalHeader().sizeHint().width() + frame + sum(
            t.columnWidth(c) for c in range(t.columnCount()))
        height = t.horizontalHeader().sizeHint().height() + frame + sum(
            t.rowHeight(r) for r in range(t.rowCount()))
        t.setFixedSize(width, height)

    # -- project and runs ------------------------------------------------------------------
    @property
    def _project(self):
        return self.state.project

    @property
    def _eval(self) -> RunEvaluation | None:
        return self.state.evaluation

    def set_project(self, project) -> None:
        """List `project`'s finished runs and show the active one; None clears the page.
        Nothing of the previous project stays (a run of the same name is read again)."""
        self.state.project = project
        self.state.forget_runs()
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        self.run_combo.blockSignals(False)
        self._set_evaluation(None)
        self.summary_label.setText("")
        self.sweep_view.set_project(project)
        self.refresh_runs()

    def refresh_runs(self) -> None:
        """Re-read the runs (after a training run ended or the active run changed)."""
        current = self.current_run()
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        runs = self.state.runs()
        for run_id, text in runs:
            self.run_combo.addItem(text, run_id)
        shown = self.state.run_to_show(current, [r for r, _ in runs])
        if shown is not None:
            self.run_combo.setCurrentIndex(self.run_combo.findData(shown))
        self.run_combo.blockSignals(False)
        if self.current_run() != (self._eval.run_id if self._eval else None):
            self._on_run_changed()
        self._update_enabled()

    def refresh(self) -> None:
        """Re-read the runs (the main window calls this after a run finished)."""
        self.refresh_runs()

    def current_run(self) -> str | None:
        return self.run_combo.currentData()

    def select_run(self, run_id: str) -> None:
        idx = self.run_combo.findData(run_id)
        if idx >= 0:
            self.run_combo.setCurrentIndex(idx)

    def _on_run_changed(self, *_args) -> None:
        run_id = self.current_run()
        self._set_evaluation(None)
        self._evaluate_when_shown = False
        if run_id is None or self._project is None:
            self.summary_label.setText("No finished run: train a model first."
                                       if self._project is not None else "")
            return
        from defect_studio.errors import UserError

        try:
            ev = self.state.load(run_id)
        except UserError as e:
            self.summary_label.setText(str(e))
            return
        if ev is None:
            # The curves are missing: compute them in the background, but only once the
            # page is looked at (opening a project must not start scoring images).
            if self.isVisible():
                self.evaluate()
            else:
                self._evaluate_when_shown = True
                self.summary_label.setText(f"Run {run_id} has not been evaluated yet.")
        else:
            self._set_evaluation(ev)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if self._evaluate_when_shown and self._eval is None:
            self._evaluate_when_shown = False
            self.evaluate()

    # -- evaluation ------------------------------------------------------------------------
    def is_busy(self) -> bool:
        """An evaluation runs or its result has not been shown yet: the worker thread ends
        before its queued result reaches this page (a test that waited for the thread alone
        read no counts on a loaded machine); _on_worker_done, queued after the result, ends it."""
        return self._worker is not None

    def evaluate(self, split: str | None = None) -> bool:
        """Run defect_studio.evaluation.evaluate_run for the selected run in a background thread."""
        run_id = self.current_run()
        if self._project is None or run_id is None or self.is_busy():
            return False
        split = split or self.split_combo.currentText()
        root = Path(self._project.root)

        def work():
            import torch

            torch.set_num_threads(2)
            return evaluate_and_load(root, run_id, split)

        w = FunctionWorker(work, self)
        # A result for another project (switched meanwhile) is dropped.
        w.result.connect(lambda ev: self._on_evaluated(ev) if self._project is not None
                         and Path(self._project.root) == root else None)
        w.failed.connect(self._on_eval_failed)
        w.finished.connect(self._on_worker_done)
        self._worker = w
        self.busy.setVisible(True)
        self.summary_label.setText(f"Evaluating run {run_id} on the {split} split\u2026")
        w.start()
        self._update_enabled()
        return True

    def _on_evaluated(self, ev: RunEvaluation | None) -> None:
        if ev is not None and ev.run_id == self.current_run():
            self._set_evaluation(ev)

    def _on_eval_failed(self, message: str) -> None:
        self.summary_label.setText(f"Evaluation failed: {message}")
        QMessageBox.warning(self, "Evaluation failed", message)

    def _on_worker_done(self) -> None:
        w, self._worker = self._worker, None
        if w is not None:
            w.deleteLater()
        self.busy.setVisible(False)
        self._update_enabled()

    def _set_evaluation(self, ev: RunEvaluation | None) -> None:
        if not self.state.set_evaluation(ev):
            self.pr_curve.setData([], [])
            self.roc_curve.setData([], [])
            self.pr_marker.setData([], [])
            self.roc_marker.setData([], [])
            self._show_counts(None)
            self.pixel_label.setText("")
            self.pixel_label.setVisible(False)
            self.summary_label.setToolTip("")
            self.cell_images.clear()
            self._update_enabled()
            return
        self.pr_curve.setData(ev.pr["recall"], ev.pr["precision"])
        self.roc_curve.setData(ev.roc["fpr"], ev.roc["tpr"])
        self._render_summary()
        self.set_threshold(self.state.threshold, exact=True)
        self._update_enabled()
        self.evaluation_loaded.emit(ev.run_id)

    def _render_summary(self) -> None:
        """One clear AP in the header; both AP variants and the counts on hover."""
        if self.state.metrics is None:
            return
        text, tip = self.state.summary()
        self.summary_label.setText(text)
        self.summary_label.setToolTip(tip)
        self.pixel_label.setText(self.state.pixel_text())
        self.pixel_label.setVisible(bool(self.pixel_label.text()))

    def show_cell(self, row: int, col: int) -> list:
        """List the images of a confusion cell (row/col of the 2x2 table); their ids."""
        cell = CELL_AT.get((row, col))
        if cell is None or not self.state.ready():
            return []
        t = self.threshold()
        return self.cell_images.show_cell(cell, self.state.cell_rows(cell, t), t)

    def threshold_for_escape_rate(self, percent: float | None = None) -> float | None:
        """Move the threshold to the highest one that misses at most `percent` % of the
        defective images (the spin box's value when None)."""
        if self._eval is None:
            return None
        from defect_studio.errors import UserError

        if percent is not None:
            self.escape_spin.setValue(float(percent))
        try:
            t = self.state.threshold_for_escape_rate(self.escape_spin.value() / 100.0)
        except UserError as e:
            QMessageBox.information(self, "Escape rate", str(e))
            return None
        self.set_threshold(t)
        return t

    def _export_report(self) -> None:
        from defect_studio.app.evaluate.report_dialog import export_report_dialog

        export_report_dialog(self)

    # -- threshold -------------------------------------------------------------------------
    def threshold(self) -> float:
        """The threshold shown (the spin box's digits), counted with and saved."""
        return self.state.threshold

    def set_threshold(self, t: float, exact: bool = False) -> None:
        """Move slider, spin box and markers to t and update the confusion numbers (t is
        rounded down to the grid shown unless ``exact``: a run's saved threshold)."""
        t = self.state.set_threshold(t, exact=exact)
        for w, v in ((self.slider, round(t * SLIDER_STEPS)), (self.spin, t)):
            w.blockSignals(True)
            w.setValue(v)
            w.blockSignals(False)
        self._show_counts(self.state.counts())
        if self.cell_images.cell is not None and self.state.ready():
            cell = self.cell_images.cell
            self.cell_images.show_cell(cell, self.state.cell_rows(cell), t)

    def counts(self) -> dict | None:
        """Confusion dict at the current threshold (tp, fp, tn, fn, precision, recall, f1...)."""
        return self.state.counts(self.threshold())

    def _show_counts(self, c: dict | None) -> None:
        cells = (("tp", 0, 0), ("fn", 0, 1), ("fp", 1, 0), ("tn", 1, 1))
        for key, r, col in cells:
            self.confusion.setItem(r, col, QTableWidgetItem("" if c is None else str(c[key])))
        self.rates_label.setText(self.state.rates_text(c))
        if c is None:
            self.pr_marker.setData([], [])
            self.roc_marker.setData([], [])
            return
        (recall, prec), (fpr, tpr) = self.state.markers(c)
        self.pr_marker.setData([recall], [prec])
        self.roc_marker.setData([fpr], [tpr])

    def _to_best_f1(self) -> None:
        t = self.state.best_f1_threshold()
        if t is not None:
            self.set_threshold(t)

    def save_threshold(self) -> None:
        """Write threshold.json of the run: {"threshold": t, "source": "user"}."""
        run_id = self.current_run()
        if self._project is None or run_id is None:
            return
        t = self.threshold()
        if not math.isfinite(t):
            return
        try:
            t = self.state.save_threshold(run_id, t)
        except OSError as e:
            QMessageBox.critical(self, "Threshold not saved",
                                 f"Could not write {self.state.threshold_path(run_id)}: {e}")
            return
        if self._eval is not None and self._eval.run_id == run_id:
            self._render_summary()
        self.threshold_saved.emit(run_id, t)

    def _update_enabled(self) -> None:
        has_run = self._project is not None and self.current_run() is not None
        busy = self.is_busy()
        self.evaluate_button.setEnabled(has_run and not busy)
        self.run_combo.setEnabled(not busy)
        ready = self.state.ready()
        for w in (self.slider, self.spin, self.save_button, self.best_button,
                  self.escape_button, self.escape_spin, self.report_button):
            w.setEnabled(ready)

    def sweep_running(self) -> bool:
        return self.sweep_view.is_running()

    def shutdown(self, timeout_ms: int = 15_000) -> None:
        """Before the window or project closes: a running sweep is cancelled (see
        SweepView.shutdown), an evaluation finishes."""
        self.sweep_view.shutdown(timeout_ms)
        if self._worker is not None and self._worker.isRunning():
            self._worker.wait(30000)
