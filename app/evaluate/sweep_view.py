"""How many masks do I need? The label-efficiency sweep on the Evaluate page.

Runs `defect-studio sweep --events` as a background job (the same `TrainingJob` machinery
as training: a child process, live events, Cancel) and plots test AP against the number
of pixel masks, with the time each run took. The last sweep of a project is shown again
when the project is opened (read from runs/.sweeps/<id>/sweep.json).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from defect_studio.app.common.jobs import TrainingJob, format_eta
from defect_studio.app.common.plot_style import SERIES, style_plot
from defect_studio.app.train.run_on import RunOnBox

DEFAULT_LEVELS = "0,25%,50%,all"
SIZE_AUTO = "from data"


@dataclass
class SweepRequest:
    """What the Run sweep button asks for; turned into `defect-studio sweep` arguments."""

    project_root: Path
    levels: str = DEFAULT_LEVELS
    preset: str = "quick"
    epochs: int | None = None
    size: tuple[int, int] | None = None
    device: str = "auto"
    run_id: str | None = None  # TrainingJob reads it; a sweep names its runs itself
    resume: str | None = None  # a sweep id: continue it with its own settings
    seeds: str | None = None  # "0,1,2": one run per level and seed
    cluster: str | None = None  # the runs train as parallel jobs on this Ray cluster

    def to_args(self) -> list[str]:
        args = ["-m", "defect_studio", "sweep", "--project", str(self.project_root), "--events",
                "--device", self.device]
        if self.cluster:
            args += ["--cluster", self.cluster]
        if self.resume is not None:
            return args + ["--resume", self.resume]
        args += ["--pixel-labels", self.levels, "--preset", self.preset]
        if self.seeds:
            args += ["--seeds", self.seeds]
        if self.epochs is not None:
            args += ["--epochs", str(int(self.epochs))]
        if self.size is not None:
            args += ["--size", f"{int(self.size[0])}x{int(self.size[1])}"]
        return args


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


class SweepView(QGroupBox):
    """The sweep box: levels, the runs' epochs and size, Run / Resume / Cancel, overall
    progress with ETA, and the AP-vs-masks plot."""

    sweep_ended = Signal(str)  # "finished" | "cancelled" | "failed"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("How many masks do I need? (test AP vs number of pixel masks)", parent)
        self._project = None
        self.job: TrainingJob | None = None
        self.points: list[dict] = []
        self.device = "auto"
        # the job runs niced, as training does (defect_studio.app.common.jobs)
        self.low_priority = True
        self._last: dict | None = None  # the project's last sweep record
        self._levels: list[int] = []  # this job's levels still to run
        self._n_runs = 0  # this job's runs (levels x seeds)
        self._cluster: str | None = None  # where this job's runs train (None: here)
        self._fraction: dict[object, float] = {}  # run -> its share done (runs in parallel)
        self._t0 = 0.0
        self._finished_seen = False
        self._n_masked = 0
        self.levels_edit = QLineEdit(DEFAULT_LEVELS)
        self.levels_edit.setToolTip("Mask counts to compare: counts (12), shares (25%) or 'all'. "
                                    "One run per count, on the same splits")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(0, 1000)
        self.epochs_spin.setSpecialValueText("preset")
        self.epochs_spin.setToolTip("Epochs of each sweep run (\u201cpreset\u201d: the quick "
                                    "preset's)")
        self.size_combo = QComboBox()
        self.size_combo.setEditable(True)
        self.size_combo.addItems([SIZE_AUTO, "64x64", "128x128", "256x256", "512x512"])
        self.size_combo.setToolTip("Input size WxH of each sweep run (\u201cfrom data\u201d: "
                                   "chosen from the images)")
        self.seeds_edit = QLineEdit("")
        self.seeds_edit.setPlaceholderText("one seed")
        self.seeds_edit.setMaximumWidth(90)
        self.seeds_edit.setToolTip("Seeds, e.g. 0,1,2: one run per mask count and seed; the "
                                   "plot shows the mean per count")
        # this computer, or the runs in parallel on a Ray cluster (the Train page's choice
        # and remembered address: app/train/run_on.py)
        self.run_on = RunOnBox()
        self.run_button = QPushButton("Run sweep")
        self.run_button.clicked.connect(self.start_sweep)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the last sweep: its tested levels are kept, "
                                      "the others run with its own settings")
        self.resume_button.clicked.connect(self.resume_sweep)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_sweep)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.progress.setMinimumWidth(180)  # room for "42% · ETA 0:26"
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "defective training images with a pixel mask")
        self.plot.setLabel("left", "test AP")
        self.plot.setYRange(0, 1.02)
        self.plot.setXRange(0, 1)
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.setMouseEnabled(False, False)
        style_plot(self.plot)
        self.plot.setMinimumHeight(120)
        green = SERIES["green"]
        self.curve = self.plot.plot([], [], pen=pg.mkPen(green, width=2), symbol="o",
                                    symbolSize=8, symbolBrush=green)
        self._labels: list[pg.TextItem] = []
        row = QHBoxLayout()
        row.addWidget(QLabel("Masks:"))
        row.addWidget(self.levels_edit, 1)
        row.addWidget(QLabel("Epochs:"))
        row.addWidget(self.epochs_spin)
        row.addWidget(QLabel("Size:"))
        row.addWidget(self.size_combo)
        row.addWidget(QLabel("Seeds:"))
        row.addWidget(self.seeds_edit)
        row.addWidget(self.run_button)
        row.addWidget(self.resume_button)
        row.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        where = QHBoxLayout()
        where.addWidget(QLabel("Run on:"))
        where.addWidget(self.run_on, 1)
        lay.addLayout(where)
        state_row = QHBoxLayout()
        state_row.addWidget(self.status, 1)
        state_row.addWidget(self.progress)
        lay.addLayout(state_row)
        lay.addWidget(self.plot, 1)
        self._update_enabled()

    # -- the runs' settings ----------------------------------------------------------------
    @property
    def epochs(self) -> int | None:
        """Epochs of each run (None: the preset's)."""
        return self.epochs_spin.value() or None

    @epochs.setter
    def epochs(self, value: int | None) -> None:
        self.epochs_spin.setValue(int(value or 0))

    @property
    def size(self) -> tuple[int, int] | None:
        """Input size (W, H) of each run (None: from the data); UserError when unreadable."""
        from defect_studio.training.config import parse_size

        text = self.size_combo.currentText().strip()
        if not text or text == SIZE_AUTO:
            return None
        return parse_size(text)

    @size.setter
    def size(self, value: tuple[int, int] | None) -> None:
        self.size_combo.setCurrentText(SIZE_AUTO if value is None
                                       else f"{int(value[0])}x{int(value[1])}")

    # -- project ---------------------------------------------------------------------------
    def set_project(self, project) -> None:
        """Show the project's last sweep (if any); None clears the box."""
        self._project = project
        self.points = []
        self._last = None
        self._n_masked = 0
        if project is not None:
            from defect_studio.training.sweep import list_sweeps

            self._n_masked = len([r for r in project.images(split="train", label="defective")
                                  if r.has_mask])
            sweeps = list_sweeps(project.root)
            if sweeps:
                self._last = sweeps[-1]
                self.points = list(self._last["points"])
                self.status.setText(self._record_text(self._last))
            else:
                self.status.setText("No sweep yet: Run sweep trains one run per mask count.")
        else:
            self.status.setText("")
        self._redraw()
        self._update_enabled()

    @staticmethod
    def _record_text(record: dict) -> str:
        from defect_studio.training.sweep import sweep_state

        state = sweep_state(record)
        text = (f"Sweep {record.get('id')} ({state}): {len(record['points'])} of "
                f"{len(record.get('n') or [])} levels tested, "
                f"{record.get('n_masked')} masked defective training images.")
        stopped = [r for r in (record.get("runs") or {}).values()
                   if isinstance(r, dict) and r.get("state") in ("cancelled", "failed")]
        if stopped:
            text += " " + "; ".join(f"run {r.get('run_id')} was {r.get('state')}"
                                    for r in stopped) + "."
        if state in ("cancelled", "failed", "interrupted"):
            text += " Resume continues it."
        return text

    def is_running(self) -> bool:
        return self.job is not None and self.job.is_running()

    # -- the job ---------------------------------------------------------------------------
    @Slot()
    def start_sweep(self) -> None:
        if self._project is None or self.is_running():
            return
        from defect_studio.errors import UserError
        from defect_studio.training.sweep import check_sweep_possible, parse_levels, parse_seeds

        try:
            n_masked, _ = check_sweep_possible(self._project)
            levels = parse_levels(self.levels_edit.text(), n_masked)
            epochs, size = self.epochs, self.size
            seeds = parse_seeds(self.seeds_edit.text().strip() or None)
            cluster = self.run_on.address()
        except UserError as e:
            self.status.setText(f"The sweep cannot run: {e}")
            return
        self.points = []
        self._start(SweepRequest(Path(self._project.root), self.levels_edit.text().strip(),
                                 epochs=epochs, size=size, device=self.device,
                                 seeds=",".join(map(str, seeds)) if seeds else None,
                                 cluster=cluster), levels)

    @Slot()
    def resume_sweep(self) -> None:
        if self._project is None or self.is_running() or self._last is None:
            return
        from defect_studio.errors import UserError
        from defect_studio.training.sweep import check_sweep_possible

        try:
            check_sweep_possible(self._project)
            cluster = self.run_on.address()
        except UserError as e:
            self.status.setText(f"The sweep cannot run: {e}")
            return
        done = {p.get("n") for p in self.points}
        self._start(SweepRequest(Path(self._project.root), device=self.device,
                                 resume=str(self._last["id"]), cluster=cluster),
                    [n for n in self._last.get("n", []) if n not in done])

    def _start(self, request: SweepRequest, levels: list[int]) -> None:
        self._redraw()
        self._levels = list(levels)
        self._n_runs = len(self._levels)
        self._fraction = {}
        self._cluster = request.cluster
        self._finished_seen = False
        # a cluster's jobs stop at their next step there, then come home
        job = TrainingJob(self, low_priority=self.low_priority,
                          grace_ms=60_000 if request.cluster else 5000)
        job.event.connect(self._on_event)
        job.failed.connect(self._on_failed)
        job.ended.connect(self._on_ended)
        self.job = job
        self._t0 = time.monotonic()
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.progress.setVisible(True)
        job.start(request)
        where = f" on the cluster at {request.cluster}" if request.cluster else ""
        self.status.setText(f"Sweep starting{where}\u2026" if request.resume is None
                            else f"Resuming sweep {request.resume}{where}\u2026")
        self._update_enabled()

    @Slot()
    def cancel_sweep(self) -> None:
        if self.is_running():
            self.job.cancel()

    def shutdown(self, timeout_ms: int = 15_000) -> None:
        """Stop a running sweep before its window or project closes, as Cancel does (the
        runs trained so far stay; Resume continues it); killed when it has not ended in
        ``timeout_ms`` (then it reads "interrupted", and Resume continues it too)."""
        if self.is_running():
            self.job.stop(timeout_ms)

    def _set_progress(self, fraction: float) -> None:
        fraction = min(1.0, max(0.0, fraction))
        self.progress.setValue(round(fraction * 1000))
        elapsed = time.monotonic() - self._t0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.01 else None
        self.progress.setFormat(f"%p% \u00b7 ETA {format_eta(eta)}")

    def _on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "sweep_started":
            self._levels = [n for n in ev.get("n", []) if n not in set(ev.get("done") or [])]
            runs = ev.get("runs")
            per_level = runs // max(1, len(ev.get("n") or [])) if isinstance(runs, int) else 1
            self._n_runs = len(self._levels) * max(1, per_level)
            kept = f" (kept: N = {', '.join(map(str, ev['done']))})" if ev.get("done") else ""
            where = (f", in parallel on the cluster at {ev['cluster']}"
                     if ev.get("cluster") else "")
            self.status.setText(f"Sweep {ev['sweep_id']}: runs for N = "
                                f"{', '.join(str(n) for n in self._levels)} masks{where}"
                                f"{kept}\u2026")
        elif kind == "progress" and "sweep_n" in ev:
            n = ev["sweep_n"]
            k = self._levels.index(n) if n in self._levels else 0
            epochs, steps = max(1, int(ev.get("epochs") or 1)), max(1, int(ev.get("steps") or 1))
            within = (int(ev.get("epoch", 1)) - 1 + int(ev.get("step", 0)) / steps) / epochs
            key = ev.get("sweep_run") or k
            self._fraction[key] = max(self._fraction.get(key, 0.0), min(1.0, within))
            self._set_progress(sum(self._fraction.values()) / max(1, self._n_runs))
            if self._cluster:
                self.status.setText(f"{len(self._fraction)} of {self._n_runs} runs started on "
                                    f"the cluster; N = {n}: epoch {ev['epoch']}/{ev['epochs']}")
            else:
                self.status.setText(f"Run {k + 1} of {len(self._levels)} (N = {n}): epoch "
                                    f"{ev['epoch']}/{ev['epochs']}, step {ev['step']}/"
                                    f"{ev['steps']}")
        elif kind == "sweep_point":
            same = (ev.get("n"), ev.get("seed"))
            self.points = sorted([p for p in self.points if (p.get("n"), p.get("seed")) != same]
                                 + [ev], key=lambda p: p["n"])
            if ev.get("run_id"):
                self._fraction[ev["run_id"]] = 1.0
            self._set_progress(sum(self._fraction.values()) / max(1, self._n_runs))
            self._redraw()
        elif kind == "sweep_cancelled":
            run = ev.get("cancelled_run")
            self.status.setText(f"Sweep cancelled after {_runs(len(self.points))}"
                                + (f"; run {run} was cancelled" if run else "")
                                + ". Resume continues it.")
        elif kind == "sweep_finished":
            self._finished_seen = True
        elif kind == "error":
            self.status.setText(f"The sweep failed: {ev.get('message', 'unknown error')}")

    def _on_failed(self, message: str) -> None:
        if not self._finished_seen:
            self.status.setText(f"The sweep failed: {message.strip()}")

    def _on_ended(self, state: str) -> None:
        if self._finished_seen:  # a resumed sweep may end without training anything
            state = "finished"
        self.progress.setVisible(False)
        self._reload_last()
        if state == "finished":
            self.status.setText(f"Sweep finished: {len(self.points)} levels tested."
                                + self._no_ap_note())
        elif state == "cancelled" and "cancelled" not in self.status.text():
            self.status.setText(f"Sweep cancelled after {_runs(len(self.points))}. "
                                "Resume continues it.")
        self._update_enabled()
        self.sweep_ended.emit(state)

    def _reload_last(self) -> None:
        if self._project is None:
            return
        from defect_studio.training.sweep import list_sweeps

        sweeps = list_sweeps(self._project.root)
        self._last = sweeps[-1] if sweeps else None

    def _no_ap_note(self) -> str:
        missing = [p["n"] for p in self.points if p.get("ap") is None]
        if not missing:
            return ""
        return (f" No test AP for N = {', '.join(map(str, missing))}: the test split needs OK "
                "and defective images.")

    # -- drawing ---------------------------------------------------------------------------
    def _redraw(self) -> None:
        for item in self._labels:
            self.plot.removeItem(item)
        self._labels = []
        from defect_studio.training.sweep import mean_points

        pts = mean_points(self.points)  # one point per mask count (the mean over its seeds)
        xs = [p["n"] for p in pts]
        self.curve.setData(xs, [p["ap"] for p in pts])
        # an explicit range: with no point (or one) autorange draws a meaningless axis
        hi = max(xs + [self._n_masked, 1])
        lo = min(xs + [0])
        pad = max(0.5, 0.05 * (hi - lo))
        self.plot.setXRange(lo - pad, hi + pad, padding=0)
        self.plot.setYRange(0, 1.02, padding=0)
        for p in pts:
            t = pg.TextItem(f"{p['ap']:.3f}\n{p.get('train_s', 0) / 60:.1f} min",
                            anchor=(0.5, 1.2))
            t.setPos(p["n"], p["ap"])
            self.plot.addItem(t)
            self._labels.append(t)

    def _update_enabled(self) -> None:
        from defect_studio.training.sweep import sweep_state

        running = self.is_running()
        self.run_button.setEnabled(self._project is not None and not running)
        resumable = self._last is not None and sweep_state(self._last) in (
            "cancelled", "failed", "interrupted")
        self.resume_button.setEnabled(self._project is not None and not running and resumable)
        self.cancel_button.setEnabled(running)
        for w in (self.levels_edit, self.epochs_spin, self.size_combo, self.seeds_edit,
                  self.run_on):
            w.setEnabled(not running)
