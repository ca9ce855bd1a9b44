"""The Train page: settings, one-click training in a child process, live curves, run history."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from defect_studio.app.common.actions import action, critical_user, warn_user
from defect_studio.app.common.jobs import TrainingJob, format_eta
from defect_studio.app.common.plot_style import SERIES, foreground_curve, plot_colors, style_plot
from defect_studio.app.common.train_request import TrainRequest
from defect_studio.app.common.wrapped_label import WrappedLabel
from defect_studio.app.train.run_curves import read_curves, rewind
from defect_studio.app.train.run_history import RunHistory
from defect_studio.app.train.run_on import RunOnBox
from defect_studio.app.train.state import (
    DEVICES,
    SETTINGS_KEY,
    TrainState,
    active_run_choice,
    device_availability,
    failure_hint,
    final_metrics,
    good_parts_hint,
)

CLUSTER_NO_ESTIMATE = ("No estimate: the run trains on the cluster, whose speed this computer "
                       "cannot time (`train --cluster` says the same)")
# background probes of the time estimate that are still running (see estimate_time)
_LIVE_WORKERS: set = set()


class TrainPage(QWidget):
    """Train page. `run_finished(run_id)` after a run finished; `start_training()` is a slot."""

    run_finished = Signal(str)
    active_run_changed = Signal(str)
    job_ended = Signal(str)  # "finished" | "cancelled" | "failed"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._project = None
        self.job: TrainingJob | None = None
        self._epoch_base: int | None = None
        self._job_root: Path | None = None  # project the running job trains on
        self._t0 = 0.0
        self._tmp_dir: Path | None = None
        self._job_visible = False  # the running job belongs to the project shown
        self._run_id: str | None = None  # the run being trained
        self._reattach: list[str] = []  # cluster runs of the shown project to follow again
        self._auto_job = False  # the running job is such a re-attach (no dialogs)
        self._closing = False  # shutdown() ends the job
        self.state = TrainState(device_availability())
        self._build()
        self._show_form()
        self._update_enabled()

    # -- UI --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.model_combo = QComboBox()
        for name, text in self.state.models:  # from the kind registry
            self.model_combo.addItem(text, name)
        self.preset_combo = QComboBox()
        self.preset_combo.setToolTip("Fills model, epochs and input size; all stay editable")
        self.preset_combo.currentTextChanged.connect(self._on_preset)
        self.model_combo.currentIndexChanged.connect(self._on_model)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(4)
        self.lr_spin.setRange(0.0001, 1.0)
        self.lr_spin.setSingleStep(0.005)
        self.lr_spin.setToolTip("Step size of training. Set by the preset for the chosen model; "
                                "lower it if a run fails with a NaN loss")
        self.lr_spin.valueChanged.connect(self._on_lr)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.valueChanged.connect(self._on_epochs)
        self.width_spin = QSpinBox()
        self.height_spin = QSpinBox()
        for s in (self.width_spin, self.height_spin):
            s.setRange(16, 4096)
            s.setSingleStep(8)
        size_row = QHBoxLayout()
        size_row.addWidget(self.width_spin)
        size_row.addWidget(QLabel("\u00d7"))
        size_row.addWidget(self.height_spin)
        # Why this size (issue 7): the data's median size within the preset's cap.
        self.size_reason = WrappedLabel("")
        self.size_reason.setStyleSheet("color: gray")
        for spin in (self.width_spin, self.height_spin):
            spin.valueChanged.connect(self._on_size)
        self.device_combo = QComboBox()
        avail = self.state.availability
        for text, name in DEVICES:
            self.device_combo.addItem(text, name)
            reason = avail.get(name)
            if reason:
                idx = self.device_combo.count() - 1
                item = self.device_combo.model().item(idx)
                item.setEnabled(False)
                self.device_combo.setItemData(idx, reason, Qt.ItemDataRole.ToolTipRole)
        self.device_combo.currentIndexChanged.connect(self._on_device)

        form = QFormLayout()
        form.addRow("Model", self.model_combo)
        form.addRow("Preset", self.preset_combo)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Input size (W\u00d7H)", size_row)
        form.addRow("", self.size_reason)
        form.addRow("Time", self._build_time_estimate())
        form.addRow("", self.time_estimate)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Device", self.device_combo)
        self.run_on = RunOnBox()  # this computer | a Ray cluster (app/train/run_on.py)
        form.addRow("Run on", self.run_on)
        self.run_on.where.currentIndexChanged.connect(self._run_on_changed)
        settings = QGroupBox("Training")
        settings.setLayout(form)

        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("Train a new model on the labelled images "
                                     "(runs in the background)")
        self.train_button.clicked.connect(self.start_training)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_training)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFormat("ready")
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setValue(0)  # a bar that was never set shows no text at all
        self.status_label = WrappedLabel("")
        # A finished run better on validation than the active one is offered, never forced.
        self.offer_button = QPushButton("")
        self.offer_button.setVisible(False)
        self.offer_button.clicked.connect(self.accept_offered_run)
        self._offered_run: str | None = None

        left = QVBoxLayout()
        left.addWidget(settings)
        left.addStretch(1)
        left_inner = QWidget()
        left_inner.setLayout(left)
        # the form scrolls rather than squeezing its wrapped lines (the size reason, the
        # time estimate) into each other when the window is small (1280x800); the Train
        # button, the progress and the run's status stay in view below it
        scroll = QScrollArea()
        scroll.setWidget(left_inner)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(left_inner.sizeHint().width()
                               + scroll.verticalScrollBar().sizeHint().width())
        pinned = QVBoxLayout()
        pinned.setContentsMargins(0, 0, 0, 0)
        pinned.addWidget(scroll, 1)
        pinned.addLayout(buttons)
        pinned.addWidget(self.progress_bar)
        pinned.addWidget(self.status_label)
        pinned.addWidget(self.offer_button)
        left_w = QWidget()
        left_w.setLayout(pinned)

        self.loss_plot = pg.PlotWidget(title="Training loss")
        self.loss_plot.setLabel("bottom", "epoch")
        self.loss_plot.addLegend(offset=(-10, 10))
        self.loss_plot.showGrid(x=True, y=True, alpha=0.3)
        self.curve_total = foreground_curve(self.loss_plot.plot([], [], name="total"))
        self.curve_seg = self.loss_plot.plot([], [], pen=pg.mkPen(SERIES["blue"], width=1.5),
                                             name="segmentation")
        self.curve_dec = self.loss_plot.plot([], [], pen=pg.mkPen(SERIES["orange"], width=1.5),
                                             name="decision")
        self.val_plot = pg.PlotWidget(title="Validation")
        self.val_plot.setLabel("bottom", "epoch")
        self.val_plot.setYRange(0, 1.02)
        # Top left: the final stars sit at the right edge, early validation scores are low.
        self.val_plot.addLegend(offset=(10, 10))
        self.val_plot.showGrid(x=True, y=True, alpha=0.3)
        green, magenta = SERIES["green"], SERIES["magenta"]
        self.curve_ap = self.val_plot.plot([], [], pen=pg.mkPen(green, width=2), symbol="o",
                                           symbolSize=6, symbolBrush=green, name="AP")
        self.curve_auc = self.val_plot.plot([], [], pen=pg.mkPen(magenta, width=2), symbol="t",
                                            symbolSize=6, symbolBrush=magenta, name="ROC AUC")
        # The metrics of the finished model (the only ones when val_every is 0).
        self.final_ap = self.val_plot.plot([], [], pen=None, symbol="star", symbolSize=16,
                                           symbolBrush=green, symbolPen=green, name="final AP")
        self.final_auc = self.val_plot.plot([], [], pen=None, symbol="star", symbolSize=16,
                                            symbolBrush=magenta, symbolPen=magenta,
                                            name="final ROC AUC")
        for plot in (self.loss_plot, self.val_plot):
            style_plot(plot)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        tabs = QTabWidget()
        plots = QWidget()
        pl = QVBoxLayout(plots)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.loss_plot)
        pl.addWidget(self.val_plot)
        tabs.addTab(plots, "Curves")
        tabs.addTab(self.log_view, "Log")
        self.tabs = tabs

        self.history = RunHistory()
        self.history.active_run_changed.connect(self.active_run_changed)
        self.history.resume_requested.connect(self.resume_training)
        self.history.selection_changed.connect(self._on_history_selection)

        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(left_w)
        top.addWidget(tabs)
        top.setStretchFactor(1, 1)
        main = QSplitter(Qt.Orientation.Vertical)
        main.addWidget(top)
        hist_box = QGroupBox("Runs")
        hl = QVBoxLayout(hist_box)
        hl.addWidget(self.history)
        main.addWidget(hist_box)
        main.setStretchFactor(0, 3)
        main.setStretchFactor(1, 2)
        main.setChildrenCollapsible(False)
        self.main_split = main
        self._split_placed = False
        lay = QVBoxLayout(self)
        lay.addWidget(main)
        self._reset_curves()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not self._split_placed and self.height() > 0:
            # The plots' size hints would take nearly all the height: the runs table gets
            # room for its minimum rows (plus its buttons), the curves the rest.
            self._split_placed = True
            h = self.main_split.height() or self.height()
            runs = self.history.table.minimumHeight() + 80
            self.main_split.setSizes([max(h - runs, h // 2), min(runs, h // 2)])

    def _hidden_job(self) -> bool:
        """The job's reports belong to another project than the one shown."""
        return self.job is not None and not self._job_visible

    def _reset_display(self) -> None:
        """Nothing of another project's run stays on the page."""
        self._reset_curves()
        self.log_view.clear()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("ready")
        self.status_label.setText("")
        self._offer_run(None)

    def _on_history_selection(self, run_id: str) -> None:
        """A past run selected while nothing trains here: show its curves again."""
        if (self.is_running() and self._job_visible) or self._project is None:
            return
        self.show_run_curves(run_id)

    def show_run_curves(self, run_id: str) -> None:
        """Plot a run's loss and validation curves from its events.jsonl."""
        from defect_studio.errors import UserError

        try:
            c = read_curves(self._project.run_dir(run_id))
        except UserError:
            return
        self._reset_curves()
        self._epoch_base = 0
        self._loss = {"x": list(c.loss_x), "total": list(c.loss), "seg": list(c.loss_seg),
                      "dec": list(c.loss_dec)}
        self._val = {"x": list(c.val_x), "ap": list(c.val_ap), "auc": list(c.val_auc)}
        self.curve_total.setData(self._loss["x"], self._loss["total"])
        self.curve_seg.setData(self._loss["x"], self._loss["seg"])
        self.curve_dec.setData(self._loss["x"], self._loss["dec"])
        self.curve_ap.setData(self._val["x"], self._val["ap"])
        self.curve_auc.setData(self._val["x"], self._val["auc"])
        if c.final:
            epochs = {"epochs": c.epochs} if c.epochs else {}
            self._show_final_metrics({"metrics": {**c.final, **epochs}})
        self.loss_plot.setTitle(f"Training loss \u2014 run {run_id}")
        self._set_loss_names(run_id)

    def _set_loss_names(self, run_id: str | None = None) -> None:
        """The loss legend names what the kind's two losses are (anomaly: distillation and
        SSPCAB, detector: region proposal and box head): the run's kind, else the form's."""
        from defect_studio.errors import UserError
        from defect_studio.kinds import kind_of_run

        kind = self.state.kind
        if run_id and self._project is not None:
            try:
                kind = kind_of_run(self._project.run_dir(run_id))
            except (UserError, OSError, ValueError):
                pass
        legend = self.loss_plot.plotItem.legend
        for curve, name in zip((self.curve_seg, self.curve_dec), kind.loss_names, strict=True):
            curve.opts["name"] = name
            for sample, label in legend.items:
                if sample.item is curve:
                    label.setText(name)

    def loss_legend(self) -> list[str]:
        """The names the loss plot's legend shows."""
        return [label.text for _sample, label in self.loss_plot.plotItem.legend.items]

    def _reset_curves(self) -> None:
        self._loss = {"x": [], "total": [], "seg": [], "dec": []}
        self._val = {"x": [], "ap": [], "auc": []}
        self.loss_plot.setTitle("Training loss")
        for c in (self.curve_total, self.curve_seg, self.curve_dec, self.curve_ap, self.curve_auc,
                  self.final_ap, self.final_auc):
            c.setData([], [])

    # -- the form: TrainState decides, the widgets show it -----------------------------------
    def _show_form(self) -> None:
        """Put the state's values into the widgets (without their change signals)."""
        st = self.state
        widgets = (self.model_combo, self.preset_combo, self.epochs_spin, self.width_spin,
                   self.height_spin, self.lr_spin, self.device_combo)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(st.model)))
            shown = [self.preset_combo.itemText(i) for i in range(self.preset_combo.count())]
            if shown != list(st.presets):
                self.preset_combo.clear()
                self.preset_combo.addItems(list(st.presets))
            self.preset_combo.setCurrentText(st.preset)
            self.epochs_spin.setValue(int(st.epochs))
            self.width_spin.setValue(int(st.size[0]))
            self.height_spin.setValue(int(st.size[1]))
            self.lr_spin.setValue(float(st.lr))
            idx = self.device_combo.findData(st.device)
            if idx >= 0:
                self.device_combo.setCurrentIndex(idx)
        finally:
            for w in widgets:
                w.blockSignals(False)
        # what the widgets could hold (their ranges) is what trains
        st.epochs = self.epochs_spin.value()
        st.size = (self.width_spin.value(), self.height_spin.value())
        st.lr = self.lr_spin.value()
        self._update_val_title()

    def _on_preset(self, name: str) -> None:
        if name and name in self.state.presets:
            self.state.apply_preset(name)
            self._show_form()

    def _on_model(self, *_args) -> None:
        model = self.model_combo.currentData()
        if model:
            self.state.choose_model(model)
            self._show_form()
            if not self.is_running():
                self._set_loss_names()

    def _on_epochs(self, value: int) -> None:
        self.state.epochs = int(value)
        self.epochs_spin.setSuffix("")  # until the next estimate says what the run trains
        self._update_val_title()

    def _on_size(self, *_args) -> None:
        self.state.size = (self.width_spin.value(), self.height_spin.value())
        self._show_size_reason()

    def _on_lr(self, value: float) -> None:
        self.state.lr = float(value)

    def _on_device(self, *_args) -> None:
        self.state.device = self.device_combo.currentData()

    def _show_size_reason(self, *_args) -> None:
        self.size_reason.setText(self.state.size_reason())
        self.size_reason.setToolTip(self.size_reason.text())
        self._estimate_soon()

    # -- the time estimate before a run (issue 18) -----------------------------------------
    def _build_time_estimate(self) -> QHBoxLayout:
        """A line with the estimated training time and a button to measure it again; it is
        measured (a few timed steps, in a thread) a moment after the form stops changing."""

        self.time_estimate = WrappedLabel("")
        self.time_estimate.setStyleSheet("color: gray")
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.setToolTip("Time a few training steps at this size on this device")
        # the button measures afresh (a figure cached while the machine was busy stays
        # until then); the estimate made when the form changes uses the cache
        self.estimate_button.clicked.connect(lambda: self.estimate_time(fresh=True))
        self._estimate_worker = None
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(800)
        self._estimate_timer.timeout.connect(self.estimate_time)
        # the button on the "Time" row, the wrapped text on the row below it, straight in
        # the form (as the size reason): a label nested in a row layout was squeezed to a
        # few lines at 1280x800 instead of the form scrolling
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.estimate_button)
        row.addStretch(1)
        return row

    def _estimate_soon(self) -> None:
        # DEFECT_STUDIO_AUTO_ESTIMATE=0: only the Estimate button measures (the test suite,
        # where dozens of pages would each run a probe)
        if os.environ.get("DEFECT_STUDIO_AUTO_ESTIMATE", "1") == "0":
            return
        if hasattr(self, "_estimate_timer") and self.state.project is not None \
                and not self.is_running():  # a running job would slow the probe and itself
            self._estimate_timer.start()

    def estimate_time(self, fresh: bool = False) -> None:
        """Measure the estimated training time of the form's settings (in a thread)."""
        from defect_studio.app.common.jobs import FunctionWorker

        if getattr(self, "_estimate_closed", False):
            return
        if self._estimate_worker is not None:  # one at a time; try again after a pause
            self._estimate_timer.start()
            return
        if self.run_on.on_cluster():
            self.time_estimate.setText(CLUSTER_NO_ESTIMATE)
            return
        job = self.state.time_estimate_job(fresh=fresh)
        self.epochs_spin.setSuffix("")
        if job is None:
            self.time_estimate.setText("")
            return
        self.time_estimate.setText("Estimating the training time (a few timed steps)...")
        # no parent: a page deleted while its probe runs must not destroy a running thread
        # (Qt aborts the process); the worker lives in _LIVE_WORKERS until it has finished
        worker = FunctionWorker(job)
        _LIVE_WORKERS.add(worker)
        worker.finished.connect(lambda w=worker: (w.wait(), _LIVE_WORKERS.discard(w)))
        worker.result.connect(self._estimate_shown)
        worker.failed.connect(self._estimate_failed)
        worker.finished.connect(self._estimate_done)
        self._estimate_worker = worker
        worker.start()

    def _run_on_changed(self, *_args) -> None:
        """The estimate times this computer: for a run on a cluster there is none."""
        self.estimate_button.setEnabled(not self.run_on.on_cluster())
        if self.run_on.on_cluster():
            self.time_estimate.setText(CLUSTER_NO_ESTIMATE)
            self.time_estimate.setToolTip("")
        else:
            self.time_estimate.setText("")
            self._estimate_soon()

    def _estimate_shown(self, result: object) -> None:
        if self.run_on.on_cluster():  # the user chose the cluster while the probe ran
            return
        text, planned = result if isinstance(result, tuple) else (result, 0)
        self.time_estimate.setText(str(text))
        self.time_estimate.setToolTip(str(text))
        # the epochs the run will train, where the epochs rule of a crop run gives more
        self.epochs_spin.setSuffix(self.state.epochs_note(int(planned)))

    def _estimate_failed(self, message: str) -> None:
        self.time_estimate.setText(f"No estimate: {message}")

    def _estimate_done(self) -> None:
        self._estimate_worker = None

    def _val_every(self) -> int:
        return self.state.val_every()

    def _update_val_title(self, *_args) -> None:
        self.val_plot.setTitle(self.state.val_title(), color=plot_colors()[1].name())
        self._show_size_reason()

    # -- project -------------------------------------------------------------------------
    def set_project(self, project) -> None:
        """Show `project`'s runs; None clears the page. A running job keeps running, but
        what it reports is shown only with its own project."""
        old_root = Path(self._project.root) if self._project is not None else None
        self._project = project
        new_root = Path(project.root) if project is not None else None
        if new_root != old_root:
            self._job_visible = (self.is_running() and new_root is not None
                                 and new_root == self._job_root)
            if not self._job_visible:
                self._reset_display()
        self.history.running_run = self._run_id if self._job_visible else None
        self.history.set_project(project)
        self.state.project = project
        if project is not None:
            saved = project.get_setting(SETTINGS_KEY, None)
            if isinstance(saved, dict):
                self.state.restore(saved)
            else:
                self.state.apply_size()
            if not self.is_running():  # no defective label yet: good parts only
                note = self.state.propose_cold_start()
                if note:
                    self.status_label.setText(note)
        self._show_form()
        if not self._job_visible:
            self._set_loss_names()
        self._update_enabled()
        if new_root != old_root:
            self._reattach = []
            if project is not None:
                from defect_studio.cluster.client import pending_runs

                self._reattach = pending_runs(project.root)
            self.reattach_pending()

    # -- cluster runs left running when the app closed (docs/cluster.md) -------------------
    def reattach_pending(self) -> None:
        """Follow the next cluster run of the shown project that nobody follows (its job
        went on while the app was closed): live curves when it still trains, its result
        when it ended; a note on the run when the cluster is unreachable or the job gone.
        Runs in the training child process: nothing here waits for the cluster."""
        while self._reattach and self._project is not None and not self.is_running():
            from defect_studio.cluster.client import pending_runs

            run_id = self._reattach.pop(0)
            if run_id not in pending_runs(self._project.root):
                continue  # followed or finished meanwhile
            request = TrainRequest(project_root=Path(self._project.root), attach=run_id)
            self._launch(request, auto=True)
            return

    def reattaching(self) -> list[str]:
        """Runs waiting to be followed again (the one followed now not included)."""
        return list(self._reattach)

    def settings(self) -> dict:
        """The form as plain values (also kept with the project)."""
        return self.state.settings()

    def refresh(self) -> None:
        """Re-read the runs list (e.g. after the active run changed elsewhere)."""
        self.history.refresh()

    @Slot()
    def labels_changed(self) -> None:
        """Labels changed on another page: the cold-start model follows them."""
        if self._project is None or self.is_running():
            return
        note = self.state.propose_cold_start()
        if note:
            self._show_form()
            self._set_loss_names()
            self.status_label.setText(note)

    def is_running(self) -> bool:
        return self.job is not None and self.job.is_running()

    # -- the job -------------------------------------------------------------------------
    @Slot()
    def start_training(self) -> None:
        """Start a run with the form's settings (no-op with a note while one is running)."""
        if self._project is None:
            self.status_label.setText("Open a project first.")
            return
        if self.is_running():
            self.status_label.setText("A training run is already in progress.")
            return
        s = self.settings()
        from defect_studio.errors import UserError

        try:  # every labelled image in a split: training reads the splits
            self._project.assign_splits(only_unassigned=True)
        except UserError as e:
            self._append_log(f"could not give new images a split: {e}")

        try:
            self._project.set_setting(SETTINGS_KEY, s)
        except (UserError, OSError, sqlite3.Error) as e:
            # remembering the form is a nicety, never a blocker
            self._append_log(f"could not remember the training settings: {e}")
        try:
            config_path = self._write_overrides(self.state.overrides())
        except OSError as e:
            self.status_label.setText(
                f"Cannot start training: cannot write a temporary file ({e}).")
            return
        self._launch(self.state.request(config_path))

    def resume_training(self, run_id: str) -> None:
        """Go on training an interrupted run from its last checkpoint."""
        if self._project is None or self.is_running():
            self.status_label.setText("A training run is already in progress."
                                      if self._project is not None else "Open a project first.")
            return
        self.history.set_note(run_id, None)
        self._launch(self.state.resume_request(run_id))
        # the curves so far, continued live
        self.show_run_curves(run_id)
        self._epoch_base = 1

    def _launch(self, request: TrainRequest, *, auto: bool = False) -> None:
        from defect_studio.errors import UserError

        if not auto:
            try:
                request.cluster = self.run_on.address()
            except UserError as e:
                self.status_label.setText(f"Cannot start training: {e}")
                return
        self._auto_job = auto
        self._closing = False
        self._job_root = Path(self._project.root)
        self._job_visible = True
        self._run_id = request.resume or request.attach
        self.history.running_run = self._run_id
        self._reset_curves()
        self.log_view.clear()
        self._epoch_base = None
        self._t0 = time.monotonic()
        self._set_loss_names(self._run_id)
        # a cluster job stops at its next step there, then its run folder comes home
        job = TrainingJob(self, grace_ms=60_000 if request.cluster or request.resume
                          or request.attach else 5000)
        job.log.connect(self._append_log)
        job.started.connect(self._on_started)
        job.progress.connect(self._on_progress)
        job.epoch.connect(self._on_epoch)
        job.validation.connect(self._on_validation)
        job.succeeded.connect(self._on_succeeded)
        job.cancelled.connect(self._on_cancelled)
        job.failed.connect(self._on_failed)
        job.ended.connect(self._on_ended)
        self.job = job
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("starting...")
        self.status_label.setText(
            f"Following run {request.attach} on the cluster again..." if auto else
            "Starting the training process...")
        job.start(request)
        action(f"training started: {' '.join(request.to_args()[2:])}")
        self._update_enabled()
        self.history.refresh()

    def _write_overrides(self, values: dict) -> Path:
        """A --config file with the form's settings that have no CLI option (the child reads it
        at start; it is removed when the job ends)."""
        if self._tmp_dir is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="defect-studio-train-"))
        path = self._tmp_dir / "overrides.json"
        path.write_text(json.dumps(values), encoding="utf-8")
        return path

    @Slot()
    def cancel_training(self) -> None:
        if self.is_running():
            self.status_label.setText("Cancelling...")
            self.cancel_button.setEnabled(False)
            self.job.cancel()

    def _on_started(self, ev: dict) -> None:
        self._run_id = ev.get("run_id") or self._run_id
        self.history.running_run = self._run_id
        if self._hidden_job():
            return
        self.status_label.setText(
            f"Run {ev.get('run_id', '?')} on {ev.get('device', '?')}: "
            f"{ev.get('n_train', '?')} training / {ev.get('n_val', '?')} validation images")
        self.history.refresh()

    def _x(self, epoch: float, frac: float = 0.0) -> float:
        """Epoch axis position: completed epochs (+ fraction of the current one)."""
        base = self._epoch_base if self._epoch_base is not None else 0
        return float(epoch) - base + frac

    def _on_progress(self, ev: dict) -> None:
        if self._hidden_job():
            return
        epoch, epochs = ev.get("epoch", 0), max(1, int(ev.get("epochs") or 1))
        step, steps = ev.get("step", 0), max(1, int(ev.get("steps") or 1))
        if self._epoch_base is None:
            # Epochs may be numbered from 0 or 1; the first event tells (step counts from
            # 0 or 1 too).
            self._epoch_base = 0 if epoch == 0 else 1
        frac = min(1.0, float(step) / steps)
        x = self._x(epoch, frac)
        done = min(1.0, max(0.0, x / epochs))
        self.progress_bar.setValue(int(done * 1000))
        eta = ev.get("eta_s")
        shown_epoch = int(epoch) - self._epoch_base + 1
        if self._run_id:
            done_epochs = int(epoch) - self._epoch_base + (1 if step >= steps else 0)
            self.history.set_live(self._run_id, f"{done_epochs}/{epochs}")
        self.progress_bar.setFormat(
            f"epoch {shown_epoch}/{epochs} \u00b7 step {step}/{steps} \u00b7 ETA {format_eta(eta)}")
        if "loss" in ev:
            rewind(x, self._loss["x"], self._loss["total"], self._loss["seg"], self._loss["dec"])
            self._loss["x"].append(x)
            self._loss["total"].append(float(ev.get("loss") or 0.0))
            self._loss["seg"].append(float(ev.get("loss_seg") or 0.0))
            self._loss["dec"].append(float(ev.get("loss_dec") or 0.0))
            self.curve_total.setData(self._loss["x"], self._loss["total"])
            self.curve_seg.setData(self._loss["x"], self._loss["seg"])
            self.curve_dec.setData(self._loss["x"], self._loss["dec"])

    def _on_epoch(self, ev: dict) -> None:
        if self._hidden_job():
            return
        self._append_log(
            f"epoch {ev.get('epoch')}: loss {float(ev.get('loss') or 0):.4f} "
            f"(seg {float(ev.get('loss_seg') or 0):.4f}, dec {float(ev.get('loss_dec') or 0):.4f})")

    def _on_validation(self, ev: dict) -> None:
        if self._hidden_job():
            return
        if self._epoch_base is None:
            self._epoch_base = 0 if ev.get("epoch") == 0 else 1
        x = self._x(ev.get("epoch", 0), 1.0)
        rewind(x, self._val["x"], self._val["ap"], self._val["auc"])
        self._val["x"].append(x)
        self._val["ap"].append(float(ev.get("ap") if ev.get("ap") is not None else float("nan")))
        self._val["auc"].append(float(ev.get("auc") if ev.get("auc") is not None else float("nan")))
        self.curve_ap.setData(self._val["x"], self._val["ap"])
        self.curve_auc.setData(self._val["x"], self._val["auc"])

    def _on_succeeded(self, run_id: str, ev: dict) -> None:
        if self._hidden_job():
            return
        self.progress_bar.setValue(1000)
        self.progress_bar.setFormat("finished")
        took = ev.get("elapsed_s", time.monotonic() - self._t0)
        # the run's note (a time budget reached, a threshold that validation could not set,
        # too few good images) is what the CLI prints after "note:": the page says it too
        note = str(ev.get("note") or "").strip()
        self.status_label.setText(
            f"Run {run_id} finished in {format_eta(took)}." + self._show_final_metrics(ev)
            + (f" Note: {note.rstrip('.')}." if note else ""))
        action(f"training run {run_id} finished")
        same_project = (self._project is not None and self._job_root is not None
                        and Path(self._project.root) == self._job_root)
        if same_project and run_id:
            self._choose_active(run_id)
        self.history.refresh()
        self.history.select_run(run_id)
        self.run_finished.emit(run_id)

    def _choose_active(self, run_id: str) -> None:
        """A new run becomes active only when none is set; offered when it is better on
        validation; an active run the user set is never replaced silently (issue 16)."""
        from defect_studio.errors import UserError

        try:
            choice = active_run_choice(self._project, run_id)
            if choice.action == "set":
                self._project.set_active_run(run_id)
                self.active_run_changed.emit(run_id)
        except (UserError, OSError) as e:  # the run stays usable via "Set active"
            self._append_log(f"could not make {run_id} the active run: {e}")
            return
        self.status_label.setText(f"{self.status_label.text()} {choice.text}".strip())
        self._append_log(choice.text)
        action(choice.text)
        self._offer_run(run_id if choice.action == "offer" else None)

    def _offer_run(self, run_id: str | None) -> None:
        self._offered_run = run_id
        self.offer_button.setText(f"Make run {run_id} the active run" if run_id else "")
        self.offer_button.setVisible(run_id is not None)

    @Slot()
    def accept_offered_run(self) -> None:
        """The user takes the offered run as the active run."""
        run_id, project = self._offered_run, self._project
        self._offer_run(None)
        if run_id is None or project is None:
            return
        from defect_studio.errors import UserError

        try:
            project.set_active_run(run_id)
        except UserError as e:
            warn_user(self, "Cannot use this run", str(e))
            return
        self.status_label.setText(f"Run {run_id} is now the active run.")
        action(f"active run set to {run_id} (offered after training)")
        self.history.refresh()
        self.active_run_changed.emit(run_id)

    def _show_final_metrics(self, ev: dict) -> str:
        """Plot the finished model's AP / AUC as stars; the status-line text for them."""
        fm = final_metrics(ev, self._loss["x"][-1] if self._loss["x"] else None)
        if fm is None:
            return ""
        for curve, value in ((self.final_ap, fm.ap), (self.final_auc, fm.auc)):
            curve.setData([fm.x], [value]) if value is not None else curve.setData([], [])
        # Same epoch axis as the loss plot (a lone point would get a range around itself).
        self.val_plot.setXRange(0, max(fm.x, fm.epochs or 0), padding=0.05)
        return fm.text

    def _on_cancelled(self, run_id: str) -> None:
        if self._hidden_job():
            return
        self.progress_bar.setFormat("cancelled")
        action(f"training run {run_id} cancelled")
        self.status_label.setText(f"Run {run_id or ''} cancelled.".replace("  ", " "))

    def _on_failed(self, message: str) -> None:
        if self._closing:
            return
        if self._auto_job:  # a re-attach: the run keeps its state, a note says why
            if self._run_id and not self._hidden_job():
                note = ("cluster unreachable" if "unreachable" in message else
                        "job lost" if "job lost" in message else "not followed")
                self.history.set_note(self._run_id, note, message)
            if not self._hidden_job():
                self.progress_bar.setFormat("not followed")
                self.status_label.setText(f"Run {self._run_id}: {message}")
            return
        if self._hidden_job():
            return
        self.progress_bar.setFormat("failed")
        self.status_label.setText("Training failed.")
        self.history.refresh()  # the table says "failed" while the message is up
        critical_user(self, "Training failed",
                             good_parts_hint(failure_hint(message, self.lr_spin.value())))

    def _on_ended(self, state: str) -> None:
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
        self.history.running_run = None
        self._run_id = None
        self._auto_job = False
        self.history.refresh()
        self._update_enabled()
        self.job_ended.emit(state)
        if self._reattach:
            QTimer.singleShot(0, self.reattach_pending)

    def _append_log(self, line: str) -> None:
        if self.is_running() and self._hidden_job():
            return
        self.log_view.appendPlainText(line)

    def _update_enabled(self) -> None:
        running = self.is_running()
        has_project = self._project is not None
        self.train_button.setEnabled(has_project and not running)
        self.cancel_button.setEnabled(running)
        for w in (self.model_combo, self.preset_combo, self.epochs_spin, self.width_spin,
                  self.height_spin, self.lr_spin, self.device_combo, self.run_on):
            w.setEnabled(not running)

    def shutdown(self, timeout_ms: int = 3000) -> None:
        """Stop a running job (used when the window closes). A cluster job goes on there:
        only this computer's follower ends; Resume on the run follows it again."""
        if hasattr(self, "_estimate_timer"):  # no new estimate; let a running one end
            self._estimate_timer.stop()
            self._estimate_closed = True
            if self._estimate_worker is not None:
                self._estimate_worker.wait(max(timeout_ms, 30000))
        if self.is_running() and self.job.grace_ms > 5000:
            self._closing = True  # the follower is killed: no "Training failed" at close
            self.job.stop(timeout_ms, kill=True)
        elif self.is_running():
            self.job.stop(timeout_ms)
