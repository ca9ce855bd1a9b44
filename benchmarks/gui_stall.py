"""How long does the GUI event loop stall while a model trains and parts are scored?

Opens the main window (or, if it cannot be built, the Train and Review pages) on a
generated demo project, starts a training job (child process, Train page) and a
prediction run over every image (thread, Review page) at the same time, and probes
the event loop with a 10 ms QTimer until both have ended. A stall is the gap between
two timer ticks minus the interval; the figure reported is the longest one.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_stall.py

The target is a longest stall under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

INTERVAL_MS = 10


class StallProbe:
    """Records the gaps between ticks of a 10 ms timer on the GUI thread."""

    def __init__(self, interval_ms: int = INTERVAL_MS) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval_s = interval_ms / 1000.0
        self.gaps: list[float] = []
        self.timeline: list[tuple[float, str]] = []  # long stalls and job events, for --verbose
        self._t0 = time.perf_counter()
        self._last: float | None = None
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._t0 = self._last = time.perf_counter()
        self.timer.start()

    def mark(self, label: str) -> None:
        self.timeline.append((time.perf_counter() - self._t0, label))

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            gap = now - self._last
            self.gaps.append(gap)
            if gap - self.interval_s > 0.05:
                self.timeline.append((now - self._t0,
                                      f"stall {1000 * (gap - self.interval_s):.0f} ms"))
        self._last = now

    def summary(self) -> dict:
        import numpy as np

        stalls = np.maximum(np.array(self.gaps or [0.0]) - self.interval_s, 0.0) * 1000.0
        return {
            "ticks": len(self.gaps),
            "max_stall_ms": round(float(stalls.max()), 1),
            "p99_stall_ms": round(float(np.percentile(stalls, 99)), 1),
            "median_stall_ms": round(float(np.median(stalls)), 2),
            "stalls_over_100ms": int(np.count_nonzero(stalls > 100.0)),
            "stalls_over_50ms": int(np.count_nonzero(stalls > 50.0)),
        }


def prepare_project(root: Path, count: int, size: int) -> None:
    """Demo project + one small finished run to predict with (made before measuring)."""
    import torch

    from defect_studio.demo import generate_demo_project
    from defect_studio.training import TrainConfig, train

    torch.set_num_threads(2)
    project = generate_demo_project(root, count=count, size=(size, size), seed=0, defect_rate=0.2)
    project.close()
    cfg = TrainConfig.preset("quick", epochs=1, input_size=(size, size),
                           device="cpu", num_threads=2)
    run_id = train(root, cfg, run_id="bench-base")
    from defect_studio.project import Project

    with Project.open(root) as p:
        p.set_active_run(run_id)


def build_window(project):
    """(window, train_page, review_page): the main window if available, else the two pages."""
    try:
        from defect_studio.app.shell.window import MainWindow

        win = MainWindow()
        win.set_project(project)
        return win, win.pages["Train"], win.pages["Review"], "main window"
    except Exception as e:  # noqa: BLE001 - fall back to the pages alone
        print(f"main window unavailable ({e}); measuring the pages alone", file=sys.stderr)
    from PySide6.QtWidgets import QTabWidget

    from defect_studio.app.review.page import ReviewPage
    from defect_studio.app.train.page import TrainPage

    tabs = QTabWidget()
    train_page, review_page = TrainPage(), ReviewPage()
    tabs.addTab(train_page, "Train")
    tabs.addTab(review_page, "Review")
    train_page.set_project(project)
    review_page.set_project(project)
    tabs.project = project
    return tabs, train_page, review_page, "pages"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", help="use this demo-like project (needs an active run)")
    ap.add_argument("--count", type=int, default=160, help="demo images (default 160)")
    ap.add_argument("--size", type=int, default=128, help="demo image side (default 128)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the measured run")
    ap.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--verbose", action="store_true",
                    help="also print a timeline of the stalls over 50 ms and the job events")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    tmp = None
    if args.project:
        root = Path(args.project)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="gui_stall_")
        root = Path(tmp.name) / "demo"
        t0 = time.perf_counter()
        prepare_project(root, args.count, args.size)
        print(f"prepared demo project ({args.count} images {args.size}x{args.size}) and a base run "
              f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from defect_studio.project import Project

    _app = QApplication.instance() or QApplication(["gui_stall"])
    project = Project.open(root)
    win, train_page, review_page, what = build_window(project)
    win.resize(1280, 800)
    win.show()
    # Let the window settle (first paint, thumbnails): the figure is about the jobs.
    settle = QEventLoop()
    QTimer.singleShot(3000, settle.quit)
    settle.exec()

    train_page.preset_combo.setCurrentText("thorough")
    train_page.preset_combo.setCurrentText("quick")  # its model, lr etc.
    train_page.epochs_spin.setValue(args.epochs)
    train_page.width_spin.setValue(args.size)
    train_page.height_spin.setValue(args.size)
    train_page.device_combo.setCurrentIndex(train_page.device_combo.findData("cpu"))

    pending = {"train", "predict"}
    states: dict[str, str] = {}
    loop = QEventLoop()

    def ended(which: str, state: str) -> None:
        states[which] = state
        pending.discard(which)
        if not pending:
            loop.quit()

    train_page.job_ended.connect(lambda s: ended("train", s))
    review_page.prediction_ended.connect(lambda s: ended("predict", s))
    probe = StallProbe()
    train_page.job_ended.connect(lambda s: probe.mark(f"training {s}"))
    review_page.prediction_ended.connect(lambda s: probe.mark(f"prediction {s}"))
    probe.start()
    t0 = time.perf_counter()
    train_page.start_training()
    job = train_page.job
    job.started.connect(lambda e: probe.mark("training started"))
    job.epoch.connect(lambda e: probe.mark(f"epoch {e.get('epoch')} done"))
    job.validation.connect(lambda e: probe.mark(f"validation {e.get('epoch')}"))
    n_images = len(project.images())
    if not review_page.predict("all"):
        pending.discard("predict")
        states["predict"] = "not started"
    QTimer.singleShot(int(args.timeout * 1000), loop.quit)
    # Keep the Train page (live curves) in front: it repaints on every progress event.
    if hasattr(win, "tabs"):
        win.tabs.setCurrentWidget(train_page)
    loop.exec()
    elapsed = time.perf_counter() - t0
    probe.stop()
    result = {"window": what, "images_scored": n_images, "epochs": args.epochs,
              "size": args.size, "elapsed_s": round(elapsed, 1), **states, **probe.summary()}
    if pending:
        result["timed_out"] = sorted(pending)
        train_page.shutdown()
        review_page.shutdown()
    if hasattr(win, "shutdown"):
        win.shutdown()
    else:
        project.close()
    win.close()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"GUI stall benchmark ({what}): training {states.get('train')} + prediction of "
              f"{n_images} images {states.get('predict')} in {elapsed:.1f} s")
        print(f"longest event-loop stall: {result['max_stall_ms']} ms "
              f"(p99 {result['p99_stall_ms']} ms, {result['stalls_over_100ms']} stalls > 100 ms, "
              f"{result['ticks']} ticks of {INTERVAL_MS} ms)")
    if args.verbose:
        for t, label in probe.timeline:
            print(f"{t:8.2f} s  {label}")
    if tmp is not None:
        tmp.cleanup()
    return 0 if not pending else 1


if __name__ == "__main__":
    sys.exit(main())
