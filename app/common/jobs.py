"""Background jobs of the GUI: training in its own process, prediction and other work in a thread.

`TrainingJob` wraps a QProcess running `defect-studio train --events` and turns its
JSON-lines stream into Qt signals. Everything is signal-driven: nothing here waits
on the process, so the event loop keeps running while a model trains.

`PredictionWorker` runs `defect_studio.inference.Predictor.predict_many` in a QThread and hands
each result to the GUI thread; the Project (SQLite, owned by the GUI thread) is only
written by the receiver.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QThread, QTimer, Signal

# Qt-free pieces, re-exported here for the callers of the jobs:
from defect_studio.app.common.heatmaps import HEATMAP_KEEP_SIDE, expand_heatmap, shrink_heatmap
from defect_studio.app.common.train_request import TrainRequest

# Scheduling niceness of background work (POSIX): the GUI thread keeps priority.
TRAIN_NICENESS = 10
PREDICT_NICENESS = 5
# how long TrainingJob.stop waits for a killed process to end
KILLED_EXIT_MS = 30_000

# Exit codes of `defect-studio train` (docs/ARCHITECTURE.md).
EXIT_FINISHED, EXIT_USER_ERROR, EXIT_CANCELLED = 0, 2, 3


class TrainingJob(QObject):
    """One `train --events` child process and the signals made from its output.

    Outcome signals (exactly one per job, after the process has exited):
    `succeeded(run_id, finished_event)`, `cancelled(run_id)`, `failed(message)`;
    then `ended(state)` with state "finished" | "cancelled" | "failed".
    """

    event = Signal(dict)  # every event, as parsed
    started = Signal(dict)
    progress = Signal(dict)
    epoch = Signal(dict)
    validation = Signal(dict)
    log = Signal(str)  # stderr lines and stdout lines that are not events
    succeeded = Signal(str, dict)
    cancelled = Signal(str)
    failed = Signal(str)
    ended = Signal(str)

    def __init__(self, parent: QObject | None = None, *, grace_ms: int = 5000,
                 low_priority: bool = True) -> None:
        super().__init__(parent)
        self.grace_ms = grace_ms
        self.low_priority = low_priority
        self.run_id: str | None = None
        self.state = "idle"  # idle | running | finished | cancelled | failed
        self.last_event: dict | None = None
        self._proc: QProcess | None = None
        self._out_buf = b""
        self._err_buf = b""
        self._stderr_tail: list[str] = []
        self._error_event: dict | None = None
        self._finished_event: dict | None = None
        self._cancel_requested = False
        self._runs_dir: Path | None = None
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self.kill)

    # -- control ---------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning

    def start(self, request: TrainRequest, *, program: str | None = None) -> None:
        """Launch the training process; returns at once."""
        if self.is_running():
            raise RuntimeError("this training job is already running")
        self.run_id = request.run_id or getattr(request, "attach", None)
        self.state = "running"
        self._runs_dir = Path(request.project_root) / "runs"
        self._out_buf = self._err_buf = b""
        self._stderr_tail = []
        self._error_event = self._finished_event = None
        self._cancel_requested = False

        proc = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")  # events must arrive as they happen
        _insert_thread_policy(env)
        proc.setProcessEnvironment(env)
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._on_finished)
        proc.errorOccurred.connect(self._on_error)
        self._proc = proc
        args = request.to_args()
        self.log.emit("$ " + " ".join(["python", *args]))
        program = program or sys.executable
        nice = shutil.which("nice") if self.low_priority and os.name == "posix" else None
        if nice:
            # Training takes every core it gets; at a lower priority it yields to the GUI
            # (and the user's other programs) when they need the CPU, and loses nothing
            # when the machine is otherwise idle. `nice` execs, so the pid is Python's.
            args = ["-n", str(TRAIN_NICENESS), program, *args]
            program = nice
        proc.start(program, args)

    def cancel(self) -> None:
        """Ask the process to stop (SIGTERM); kill it if it has not ended after the grace period."""
        if not self.is_running():
            return
        self._cancel_requested = True
        self.log.emit("cancelling...")
        self._proc.terminate()
        self._kill_timer.start(self.grace_ms)

    def wait_finished(self, timeout_ms: int) -> bool:
        """Block until the process has ended (only for shutdown); True if it has."""
        if not self.is_running():
            return True
        return self._proc.waitForFinished(timeout_ms)

    def stop(self, timeout_ms: int, *, kill: bool = False) -> None:
        """End the process before its window or project closes: cancel() and wait up to
        ``timeout_ms``, then kill (at once with ``kill``); returns when it has ended, its
        ``ended`` signal emitted, or after KILLED_EXIT_MS more. A killed process cannot
        refuse, but its exit takes CPU time: a niced one on a busy machine once needed more
        than 3 s, and reported after its project had closed."""
        if not self.is_running():
            return
        if kill:
            self._proc.kill()
        else:
            self.cancel()
            if not self.wait_finished(timeout_ms):
                self.kill()
        self.wait_finished(KILLED_EXIT_MS)

    def kill(self) -> None:
        """Stop the process at once (SIGKILL): after the grace period of cancel()."""
        if self.is_running():
            self.log.emit(f"training did not stop within {self.grace_ms / 1000:.0f} s: killed")
            self._proc.kill()

    # -- reading -------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        self._out_buf += bytes(self._proc.readAllStandardOutput())
        *lines, self._out_buf = self._out_buf.split(b"\n")
        for raw in lines:
            self._handle_stdout_line(raw.decode("utf-8", "replace").strip())

    def _read_stderr(self) -> None:
        self._err_buf += bytes(self._proc.readAllStandardError())
        *lines, self._err_buf = self._err_buf.split(b"\n")
        for raw in lines:
            self._handle_stderr_line(raw.decode("utf-8", "replace").rstrip())

    def _handle_stderr_line(self, line: str) -> None:
        if not line:
            return
        self._stderr_tail = (self._stderr_tail + [line])[-20:]
        self.log.emit(line)

    def _handle_stdout_line(self, line: str) -> None:
        if not line:
            return
        ev = parse_event(line)
        if ev is None:
            self.log.emit(line)
            return
        self.last_event = ev
        kind = ev["event"]
        if kind == "started":
            self.run_id = ev.get("run_id") or self.run_id
            self.started.emit(ev)
        elif kind == "progress":
            self.progress.emit(ev)
        elif kind == "epoch":
            self.epoch.emit(ev)
        elif kind == "validation":
            self.validation.emit(ev)
        elif kind == "finished":
            self._finished_event = ev
            self.run_id = ev.get("run_id") or self.run_id
        elif kind == "cancelled":
            self.run_id = ev.get("run_id") or self.run_id
        elif kind == "error":
            self._error_event = ev
        if kind not in ("progress",):
            self.log.emit(_describe_event(ev))
        self.event.emit(ev)

    # -- the end -------------------------------------------------------------------------
    def _on_error(self, err: QProcess.ProcessError) -> None:
        # FailedToStart never reaches finished(); the other errors are followed by it.
        if err == QProcess.ProcessError.FailedToStart:
            self._finish("failed", "could not start the training process: "
                         f"{self._proc.errorString()}")

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        # Flush a last line without newline.
        if self._out_buf:
            self._handle_stdout_line(self._out_buf.decode("utf-8", "replace").strip())
            self._out_buf = b""
        if self._err_buf:
            self._handle_stderr_line(self._err_buf.decode("utf-8", "replace").rstrip())
            self._err_buf = b""
        crashed = status == QProcess.ExitStatus.CrashExit
        if self._finished_event is not None and code == EXIT_FINISHED and not crashed:
            self._finish("finished", "")
        elif self._cancel_requested or code == EXIT_CANCELLED:
            self._repair_status("cancelled", "cancelled by the user")
            self._finish("cancelled", "")
        else:
            if self._error_event is not None:
                msg = str(self._error_event.get("message") or "training failed")
            elif crashed:
                msg = "the training process crashed"
            else:
                msg = f"the training process ended with exit code {code}"
            if self._error_event is None and self._stderr_tail:
                msg += ":\n" + "\n".join(self._stderr_tail[-8:])
            self._repair_status("failed", msg)
            self._finish("failed", msg)

    def _repair_status(self, state: str, message: str) -> None:
        """A child killed before it could write its end state leaves status "running" forever;
        the GUI (which holds the project) records what really happened."""
        if not self.run_id or self._runs_dir is None:
            return
        from defect_studio.cluster.client import read_record

        record = read_record(self._runs_dir / self.run_id)
        if record is not None and record.get("state") == "training":
            return  # its cluster job goes on: only this computer's follower ended
        path = self._runs_dir / self.run_id / "status.json"
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if status.get("state") != "running":
            return
        from defect_studio.project.runs import write_json_atomic

        status.update(state=state, message=message)
        try:
            write_json_atomic(path, status)
        except OSError as e:
            self.log.emit(f"could not update {path}: {e}")

    def _finish(self, state: str, message: str) -> None:
        if self.state != "running":
            return
        self.state = state
        if state == "finished":
            self.succeeded.emit(self.run_id or "", self._finished_event or {})
        elif state == "cancelled":
            self.cancelled.emit(self.run_id or "")
        else:
            self.failed.emit(message)
        self.ended.emit(state)


def parse_event(line: str) -> dict | None:
    """One stdout line -> event dict, or None when the line is not an event."""
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        return None
    return obj


def _describe_event(ev: dict) -> str:
    kind = ev["event"]
    rest = {k: v for k, v in ev.items() if k not in ("event", "config")}
    parts = []
    for k, v in rest.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, dict):
            v = "{" + ", ".join(
                f"{a}: {b:.4g}" if isinstance(b, float) else f"{a}: {b}"
                for a, b in v.items() if not isinstance(b, (dict, list))
            ) + "}"
        parts.append(f"{k}={v}")
    return f"[{kind}] " + " ".join(parts)


def format_eta(seconds: float | None) -> str:
    """Seconds -> "1:05:03" / "4:07"; "?" when unknown."""
    if seconds is None or not np.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ------------------------------------------------------------------------------------------
# Prediction in a thread
# ------------------------------------------------------------------------------------------


@dataclass
class PredictionItem:
    """An image to score: a project image (image_id set) or an external file."""

    path: str
    image_id: int | None = None
    name: str = ""


@dataclass
class PredictionResult:
    item: PredictionItem
    score: float = float("nan")
    is_ng: bool = False
    heatmap: np.ndarray | None = None  # uint8, long side <= HEATMAP_KEEP_SIDE
    image_shape: tuple[int, int] | None = None  # (H, W) of the image the heatmap belongs to
    error: str | None = None


class PredictionWorker(QThread):
    """Scores `items` with the run in `run_dir` off the GUI thread.

    Signals: `progress(done, total)`, `results(list[PredictionResult])` in small batches,
    `failed(message)` when the model cannot be used, and `done(state)` last with
    "finished" | "cancelled" | "failed".
    """

    progress = Signal(int, int)
    results = Signal(list)
    failed = Signal(str)
    done = Signal(str)
    heat_range = Signal(float)  # the run's heat range, measured on `range_paths` first

    def __init__(self, run_dir: Path | str, items: list[PredictionItem], *, device: str = "auto",
                 batch_size: int = 8, num_threads: int = 2,
                 parent: QObject | None = None, range_paths: list | None = None) -> None:
        super().__init__(parent)
        self.range_paths = list(range_paths or [])
        self.run_dir = Path(run_dir)
        self.items = list(items)
        self.device = device
        self.batch_size = batch_size
        self.num_threads = num_threads
        self._stop = False
        self.state = "idle"

    def cancel(self) -> None:
        """Stop after the image being scored; `done("cancelled")` follows."""
        self._stop = True

    def run(self) -> None:  # noqa: D401 - QThread entry point
        self.state = "running"
        lower_thread_priority(PREDICT_NICENESS)
        try:
            import torch

            from defect_studio.inference import load_predictor

            torch.set_num_threads(self.num_threads)
            predictor = load_predictor(self.run_dir, device=self.device)
        except Exception as e:  # noqa: BLE001 - shown to the user; nothing was written
            self._end_failed(_error_text(e))
            return
        if self.range_paths:
            from defect_studio.inference.heat_range import run_heat_range

            try:  # how the heatmaps are shown; scoring goes on without it
                vmax = run_heat_range(self.run_dir, predictor, self.range_paths)
            except Exception:  # noqa: BLE001
                vmax = None
            if vmax is not None:
                self.heat_range.emit(float(vmax))
        total = len(self.items)
        by_path = {it.path: it for it in self.items}
        pending: list[PredictionResult] = []
        last_flush = time.monotonic()
        n = 0
        try:
            for item, pred in predictor.predict_many([it.path for it in self.items],
                                                     batch_size=self.batch_size):
                if self._stop:
                    break
                n += 1
                pending.append(self._result(by_path.get(str(item)) or PredictionItem(str(item)),
                                            pred))
                now = time.monotonic()
                # Batching the signals keeps the GUI thread's share of the work small.
                if len(pending) >= 16 or now - last_flush > 0.1:
                    self.results.emit(pending)
                    pending = []
                    last_flush = now
                    self.progress.emit(n, total)
        except Exception as e:  # noqa: BLE001
            if pending:
                self.results.emit(pending)
            self._end_failed(_error_text(e))
            return
        if pending:
            self.results.emit(pending)
        self.progress.emit(n, total)
        self.state = "cancelled" if self._stop else "finished"
        self.done.emit(self.state)

    def _end_failed(self, message: str) -> None:
        self.state = "failed"
        self.failed.emit(message)
        self.done.emit("failed")

    @staticmethod
    def _result(item: PredictionItem, pred: Any) -> PredictionResult:
        if isinstance(pred, BaseException) or pred is None or not hasattr(pred, "score"):
            return PredictionResult(item, error=_error_text(pred) if pred is not None else "failed")
        hm = np.asarray(pred.heatmap)
        return PredictionResult(item, float(pred.score), bool(pred.is_ng), shrink_heatmap(hm),
                                (int(hm.shape[0]), int(hm.shape[1])))


def _insert_thread_policy(env: QProcessEnvironment) -> None:
    """The OpenMP wait policy of defect_studio.threads in a child's environment: a training
    process on a busy desk PC then slows in proportion to the load, not several-fold."""
    from defect_studio.threads import child_env

    current = {k: env.value(k) for k in env.keys()}
    for key, value in child_env(current).items():
        if current.get(key) != value:
            env.insert(key, value)


def lower_thread_priority(niceness: int) -> bool:
    """Lower the calling thread's CPU priority (Linux: per thread); False where unsupported.

    Scoring shares the process with the GUI; at a lower priority the scheduler runs the
    GUI thread first when both want a core."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
        return True
    except OSError:
        return False


def _error_text(e: Any) -> str:
    from defect_studio.errors import UserError

    if isinstance(e, UserError):
        return str(e)
    if isinstance(e, BaseException):
        return f"{type(e).__name__}: {e}"
    return str(e)


class FunctionWorker(QThread):
    """Runs `fn()` in a thread: `result(object)` or `failed(str)`, then `done()`."""

    result = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[], Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._fn = fn

    def run(self) -> None:  # noqa: D401 - QThread entry point
        lower_thread_priority(PREDICT_NICENESS)
        try:
            value = self._fn()
        except Exception as e:  # noqa: BLE001 - reported to the GUI thread
            self.failed.emit(_error_text(e))
            return
        self.result.emit(value)


__all__ = [
    "TrainRequest", "TrainingJob", "PredictionItem", "PredictionResult", "PredictionWorker",
    "FunctionWorker", "parse_event", "format_eta", "shrink_heatmap", "expand_heatmap",
    "HEATMAP_KEEP_SIDE",
]
