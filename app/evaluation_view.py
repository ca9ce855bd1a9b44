"""The Evaluate page: PR and ROC curves of a run, and a live threshold with its confusion matrix."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QMessageBox,
    QProgressBar, QPushButton, QSlider, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from app.jobs import FunctionWorker
from app.plot_style import SERIES, plot_colors, style_plot

SLIDER_STEPS = 1000
EVAL_SPLITS = ("test", "val", "all")


@dataclass
class RunEvaluation:
    """What the page shows of one run's evaluation (read from the files evaluate_run writes)."""

    run_id: str
    split: str
    y_true: np.ndarray  # 1 = defective
    scores: np.ndarray
    pr: dict  # precision, recall (arrays)
    roc: dict  # fpr, tpr (arrays)
    threshold: float | None  # the run's threshold.json value
    threshold_source: str


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _floats(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows if r.get(key, "") != ""], dtype=np.float64)


def load_evaluation(run_dir: Path) -> RunEvaluation | None:
    """The run's scores.csv + pr_curve.csv + roc_curve.csv; None when not evaluated yet."""
    files = [run_dir / n for n in ("scores.csv", "pr_curve.csv", "roc_curve.csv")]
    if not all(f.is_file() for f in files):
        return None
    from core.errors import UserError

    try:
        scores_rows, pr_rows, roc_rows = (_read_csv(f) for f in files)
        y = np.array([1 if r["label"] == "defective" else 0 for r in scores_rows], dtype=np.int8)
        s = _floats(scores_rows, "score")
        pr = {"precision": _floats(pr_rows, "precision"), "recall": _floats(pr_rows, "recall")}
        roc = {"fpr": _floats(roc_rows, "fpr"), "tpr": _floats(roc_rows, "tpr")}
    except (KeyError, ValueError, OSError) as e:
        raise UserError(f"the evaluation files of run {run_dir.name} are damaged ({e}); "
                        "press Evaluate to write them again") from None
    splits = {r.get("split", "") for r in scores_rows}
    split = splits.pop() if len(splits) == 1 else "all"
    from core.inference.predictor import read_threshold

    thr, source = read_threshold(run_dir)
    return RunEvaluation(run_dir.name, split or "all", y, s, pr, roc, thr, source)


class EvaluationView(QWidget):
    """Evaluate page. `threshold_saved(run_id, threshold)` after Save threshold."""

    threshold_saved = Signal(str, float)
    evaluation_loaded = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._project = None
        self._eval: RunEvaluation | None = None
        self._sweep = None
        self._metrics: dict | None = None
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
        self.split_combo.setToolTip("Images to evaluate on (Evaluate writes the run's curves again)")
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
        self.spin.setDecimals(4)
        self.spin.setSingleStep(0.01)
        self.spin.valueChanged.connect(self.set_threshold)
        self.save_button = QPushButton("Save threshold")
        self.save_button.setToolTip("Prediction and review of this run use this threshold from now on")
        self.save_button.clicked.connect(self.save_threshold)
        self.best_button = QPushButton("Best F1")
        self.best_button.setToolTip("Move the threshold to the best F1 on this split")
        self.best_button.clicked.connect(self._to_best_f1)
        thr_row = QHBoxLayout()
        thr_row.addWidget(QLabel("Threshold"))
        thr_row.addWidget(self.slider, 1)
        thr_row.addWidget(self.spin)
        thr_row.addWidget(self.best_button)
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
        self.rates_label = QLabel("")
        conf_box = QGroupBox("At this threshold")
        cl = QGridLayout(conf_box)
        cl.addWidget(self.confusion, 0, 0)
        cl.addWidget(self.rates_label, 0, 1)
        cl.setColumnStretch(1, 1)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.summary_label)
        lay.addLayout(plots, 1)
        lay.addLayout(thr_row)
        lay.addWidget(conf_box)
        from app.sweep_view import SweepView  # issue 7: test AP vs number of masks

        self.sweep_view = SweepView()
        lay.addWidget(self.sweep_view)

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
    def set_project(self, project) -> None:
        """List `project`'s finished runs and show the active one; None clears the page."""
        self._project = project
        self.sweep_view.set_project(project)
        self.refresh_runs()

    def refresh_runs(self) -> None:
        """Re-read the runs (after a training run ended or the active run changed)."""
        current = self.current_run()
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        if self._project is not None:
            active = self._project.active_run()
            for r in reversed(self._project.runs()):
                if r.state == "finished":
                    self.run_combo.addItem(r.id + ("  (active)" if r.id == active else ""), r.id)
            want = current or active
            if self._project.active_run() and current is None:
                want = active
            idx = self.run_combo.findData(want)
            if idx >= 0:
                self.run_combo.setCurrentIndex(idx)
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
        from core.errors import UserError

        try:
            ev = load_evaluation(Path(self._project.runs_dir) / run_id)
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
        return self._worker is not None and self._worker.isRunning()

    def evaluate(self, split: str | None = None) -> bool:
        """Run core.evaluation.evaluate_run for the selected run in a background thread."""
        run_id = self.current_run()
        if self._project is None or run_id is None or self.is_busy():
            return False
        split = split or self.split_combo.currentText()
        root = Path(self._project.root)

        def work():
            import torch

            from core.evaluation import evaluate_run

            torch.set_num_threads(2)
            evaluate_run(root, run_id, split=split)
            return load_evaluation(root / "runs" / run_id)

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
        from core.evaluation.metrics import ThresholdSweep, image_metrics

        self._eval = ev
        self._sweep = None
        self._metrics = None
        if ev is None or ev.scores.size == 0:
            self.pr_curve.setData([], [])
            self.roc_curve.setData([], [])
            self.pr_marker.setData([], [])
            self.roc_marker.setData([], [])
            self._show_counts(None)
            self._update_enabled()
            return
        self._metrics = image_metrics(ev.y_true, ev.scores)
        self._sweep = ThresholdSweep(ev.y_true, ev.scores)
        self.pr_curve.setData(ev.pr["recall"], ev.pr["precision"])
        self.roc_curve.setData(ev.roc["fpr"], ev.roc["tpr"])
        m = self._metrics

        def f(v):
            return "n/a" if v is None else f"{v:.4f}"

        text = (f"Run {ev.run_id}, {ev.split} split: {m['n']} images, {m['n_pos']} defective.  "
                f"AP (scikit-learn average precision) {f(m['ap_sklearn'])}, "
                f"AP (trapezoidal PR area) {f(m['ap_trapz'])}, ROC AUC {f(m['auc'])}.")
        if ev.threshold is not None:
            text += f"  Run threshold {ev.threshold:.4f} ({ev.threshold_source})."
        if m.get("note"):
            text += f"  Note: {m['note']}."
        self.summary_label.setText(text)
        start = ev.threshold
        if start is None:
            start = m["best_f1"]["threshold"] if m["best_f1"]["threshold"] is not None else 0.5
        self.set_threshold(float(start))
        self._update_enabled()
        self.evaluation_loaded.emit(ev.run_id)

    # -- threshold -------------------------------------------------------------------------
    def threshold(self) -> float:
        return float(self.spin.value())

    def set_threshold(self, t: float) -> None:
        """Move slider, spin box and markers to t and update the confusion numbers."""
        t = float(min(1.0, max(0.0, t)))
        for w, v in ((self.slider, round(t * SLIDER_STEPS)), (self.spin, t)):
            w.blockSignals(True)
            w.setValue(v)
            w.blockSignals(False)
        counts = self._sweep.at(t) if self._sweep is not None else None
        self._show_counts(counts)

    def counts(self) -> dict | None:
        """Confusion dict at the current threshold (tp, fp, tn, fn, precision, recall, f1...)."""
        return self._sweep.at(self.threshold()) if self._sweep is not None else None

    def _show_counts(self, c: dict | None) -> None:
        cells = (("tp", 0, 0), ("fn", 0, 1), ("fp", 1, 0), ("tn", 1, 1))
        for key, r, col in cells:
            self.confusion.setItem(r, col, QTableWidgetItem("" if c is None else str(c[key])))
        if c is None:
            self.rates_label.setText("")
            self.pr_marker.setData([], [])
            self.roc_marker.setData([], [])
            return
        self.rates_label.setText(
            f"Precision {c['precision']:.3f}\nRecall {c['recall']:.3f}\nF1 {c['f1']:.3f}\n"
            f"Accuracy {c['accuracy']:.3f}")
        neg = c["fp"] + c["tn"]
        fpr = c["fp"] / neg if neg else 0.0
        # With no NG call precision is undefined; the marker sits at the curve's end (0, 1).
        prec = c["precision"] if (c["tp"] + c["fp"]) else 1.0
        self.pr_marker.setData([c["recall"]], [prec])
        self.roc_marker.setData([fpr], [c["recall"]])

    def _to_best_f1(self) -> None:
        if self._metrics and self._metrics["best_f1"]["threshold"] is not None:
            self.set_threshold(self._metrics["best_f1"]["threshold"])

    def save_threshold(self) -> None:
        """Write threshold.json of the run: {"threshold": t, "source": "user"}."""
        run_id = self.current_run()
        if self._project is None or run_id is None:
            return
        from core.project.runs import write_json_atomic

        t = self.threshold()
        if not math.isfinite(t):
            return
        path = Path(self._project.runs_dir) / run_id / "threshold.json"
        try:
            write_json_atomic(path, {"threshold": t, "source": "user"})
        except OSError as e:
            QMessageBox.critical(self, "Threshold not saved", f"Could not write {path}: {e}")
            return
        if self._eval is not None and self._eval.run_id == run_id:
            self._eval.threshold, self._eval.threshold_source = t, "user"
        self.threshold_saved.emit(run_id, t)

    def _update_enabled(self) -> None:
        has_run = self._project is not None and self.current_run() is not None
        busy = self.is_busy()
        self.evaluate_button.setEnabled(has_run and not busy)
        self.run_combo.setEnabled(not busy)
        ready = self._sweep is not None
        for w in (self.slider, self.spin, self.save_button, self.best_button):
            w.setEnabled(ready)

    def shutdown(self) -> None:
        if self._worker is not None and self._worker.isRunning():
            self._worker.wait(30000)
