"""How many masks do I need? The label-efficiency sweep on the Evaluate page.

Runs `defect-studio sweep --events` as a background job (the same `TrainingJob` machinery
as training: a child process, live events, Cancel) and plots test AP against the number
of pixel masks, with the time each run took. The last sweep of a project is shown again
when the project is opened (read from runs/.sweeps/<id>/sweep.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from defect_studio.app.common.jobs import TrainingJob
from defect_studio.app.common.plot_style import SERIES, style_plot

DEFAULT_LEVELS = "0,25%,50%,all"


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

    def to_args(self) -> list[str]:
        args = ["-m", "defect_studio", "sweep", "--project", str(self.project_root), "--events",
                "--pixel-labels", self.levels, "--preset", self.preset, "--device", self.device]
        if self.epochs is not None:
            args += ["--epochs", str(int(self.epochs))]
        if self.size is not None:
            args += ["--size", f"{int(self.size[0])}x{int(self.size[1])}"]
        return args


class SweepView(QGroupBox):
    """The sweep box: levels, Run / Cancel, progress, and the AP-vs-masks plot."""

    sweep_ended = Signal(str)  # "finished" | "cancelled" | "failed"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("How many masks do I need? (test AP vs number of pixel masks)", parent)
        self._project = None
        self.job: TrainingJob | None = None
        self.points: list[dict] = []
        # Overrides of the preset for the sweep's runs (None: the quick preset's own).
        self.epochs: int | None = None
        self.size: tuple[int, int] | None = None
        self.device = "auto"
        # the job runs niced, as training does (defect_studio.app.common.jobs)
        self.low_priority = True
        self.levels_edit = QLineEdit(DEFAULT_LEVELS)
        self.levels_edit.setToolTip("Mask counts to compare: counts (12), shares (25%) or 'all'. "
                                    "One quick-preset run per count, on the same splits")
        self.run_button = QPushButton("Run sweep")
        self.run_button.clicked.connect(self.start_sweep)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_sweep)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "defective training images with a pixel mask")
        self.plot.setLabel("left", "test AP")
        self.plot.setYRange(0, 1.02)
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        style_plot(self.plot)
        self.plot.setMinimumHeight(160)
        self.plot.setMaximumHeight(240)  # the PR and ROC curves above keep the room
        green = SERIES["green"]
        self.curve = self.plot.plot([], [], pen=pg.mkPen(green, width=2), symbol="o",
                                    symbolSize=8, symbolBrush=green)
        self._labels: list[pg.TextItem] = []
        row = QHBoxLayout()
        row.addWidget(QLabel("Masks:"))
        row.addWidget(self.levels_edit, 1)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.status)
        lay.addWidget(self.plot, 1)
        self._update_enabled()

    # -- project ---------------------------------------------------------------------------
    def set_project(self, project) -> None:
        """Show the project's last sweep (if any); None clears the box."""
        self._project = project
        self.points = []
        if project is not None:
            from defect_studio.training.sweep import list_sweeps

            sweeps = list_sweeps(project.root)
            if sweeps:
                last = sweeps[-1]
                self.points = list(last["points"])
                self.status.setText(f"Sweep {last['id']} ({last.get('state')}), "
                                    f"{last.get('n_masked')} masked defective training images.")
            else:
                self.status.setText("No sweep yet: Run sweep trains one quick run per mask count.")
        else:
            self.status.setText("")
        self._redraw()
        self._update_enabled()

    def is_running(self) -> bool:
        return self.job is not None and self.job.is_running()

    # -- the job ---------------------------------------------------------------------------
    @Slot()
    def start_sweep(self) -> None:
        if self._project is None or self.is_running():
            return
        from defect_studio.training.sweep import SweepError, parse_levels

        masked = [r for r in self._project.images(split="train", label="defective") if r.has_mask]
        try:
            parse_levels(self.levels_edit.text(), len(masked))
        except SweepError as e:
            self.status.setText(str(e))
            return
        self.points = []
        self._redraw()
        job = TrainingJob(self, low_priority=self.low_priority)
        job.event.connect(self._on_event)
        job.ended.connect(self._on_ended)
        self.job = job
        job.start(SweepRequest(Path(self._project.root), self.levels_edit.text().strip(),
                               epochs=self.epochs, size=self.size, device=self.device))
        self.status.setText("Sweep running...")
        self._update_enabled()

    @Slot()
    def cancel_sweep(self) -> None:
        if self.is_running():
            self.job.cancel()

    def _on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "sweep_started":
            self.status.setText(f"Sweep {ev['sweep_id']}: runs for N = "
                                f"{', '.join(str(n) for n in ev['n'])} masks...")
        elif kind == "progress" and "sweep_n" in ev:
            self.status.setText(f"N = {ev['sweep_n']}: epoch {ev['epoch']}/{ev['epochs']}, "
                                f"step {ev['step']}/{ev['steps']}")
        elif kind == "sweep_point":
            self.points.append(ev)
            self._redraw()
        elif kind == "error":
            self.status.setText(str(ev.get("message", "the sweep failed")))

    def _on_ended(self, state: str) -> None:
        if state == "finished":
            self.status.setText(f"Sweep finished: {len(self.points)} runs.")
        elif state == "cancelled":
            self.status.setText(f"Sweep cancelled after {len(self.points)} runs.")
        elif self.job is not None and not self.status.text().strip():
            self.status.setText("The sweep failed; see the message above.")
        self._update_enabled()
        self.sweep_ended.emit(state)

    # -- drawing ---------------------------------------------------------------------------
    def _redraw(self) -> None:
        for item in self._labels:
            self.plot.removeItem(item)
        self._labels = []
        from defect_studio.training.sweep import mean_points

        pts = mean_points(self.points)  # one point per mask count (the mean over its seeds)
        self.curve.setData([p["n"] for p in pts], [p["ap"] for p in pts])
        for p in pts:
            t = pg.TextItem(f"{p['ap']:.3f}\n{p.get('train_s', 0) / 60:.1f} min", anchor=(0.5, 1.2))
            t.setPos(p["n"], p["ap"])
            self.plot.addItem(t)
            self._labels.append(t)

    def _update_enabled(self) -> None:
        running = self.is_running()
        self.run_button.setEnabled(self._project is not None and not running)
        self.cancel_button.setEnabled(running)
        self.levels_edit.setEnabled(not running)
