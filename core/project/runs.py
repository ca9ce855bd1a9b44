"""Training runs: one folder per run under PROJECT/runs/, which is its own record.

No database row is needed, so a read-only process (training) can create a run while
the GUI holds the project's write lock. The files are described in
docs/ARCHITECTURE.md ("Runs"); this module only reads them and writes JSON safely.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from defect_studio.errors import ProjectError
from defect_studio.io.atomic import is_temp_name, write_json_atomic

__all__ = ["RunInfo", "list_runs", "read_run", "write_json_atomic", "valid_run_id", "RUN_STATES",
           "require_run_id", "hold_run", "release_run", "owner_alive", "RunLock"]

# "interrupted": status.json says running, but no process holds the run's lock any more
# (killed, crashed, machine switched off). It can be resumed.
RUN_STATES = ("running", "finished", "failed", "cancelled", "interrupted")
RUN_LOCK = "run.lock"
HEARTBEAT_S = 10.0
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class RunInfo:
    """What the runs list shows about one run.

    state: from status.json ("running", "finished", "failed", "cancelled"); "interrupted"
    when it says running but its process is gone; "unknown"
    when the run has no status yet, "damaged" when its JSON cannot be read.
    epochs: epochs completed (status.json "epoch"); for a finished run without it,
    the configured number. created: ISO 8601 UTC time.
    """

    id: str
    path: Path
    state: str
    model: str | None
    created: str
    epochs: int
    metrics: dict = field(default_factory=dict)
    threshold: float | None = None


def valid_run_id(run_id: str) -> bool:
    """True for a run id that is a safe folder name (letters, digits, '.', '_', '-')."""
    return bool(_RUN_ID.match(run_id)) and run_id not in (".", "..")


def require_run_id(run_id: object) -> str:
    """The run id if it is a safe folder name; ProjectError otherwise (`../x`, `/abs`)."""
    if not isinstance(run_id, str) or not valid_run_id(run_id):
        raise ProjectError(
            f"invalid run id {run_id!r}: a run is named by letters, digits, '.', '_' and '-' "
            "(see `defect-studio runs`)")
    return run_id


class RunLock:
    """The lock a training process holds on its run folder while it trains.

    An OS lock (flock) on RUN/run.lock, which the OS drops when the process ends in any
    way (kill -9 included), plus the owner's pid and a heartbeat (the file's mtime,
    touched every HEARTBEAT_S by a daemon thread) for systems without flock.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / RUN_LOCK
        self._fd: int | None = None
        self._stop = None

    def acquire(self) -> RunLock:
        import threading

        from defect_studio.project.lock import _lock, _read_pid

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + 2.0  # readers take the lock shared for an instant
        while True:
            try:
                _lock(fd)
                break
            except OSError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                pid = _read_pid(fd)
                os.close(fd)
                raise ProjectError(
                    f"run '{self.path.parent.name}' is being trained by another process "
                    f"(pid {pid or 'unknown'}); wait for it to end or cancel it there") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        self._stop = threading.Event()
        threading.Thread(target=self._beat, args=(self._stop,), daemon=True,
                         name="run-heartbeat").start()
        return self

    def _beat(self, stop) -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self, *, ended: bool = False) -> None:
        """Let the lock go; ``ended``: the run has ended, so the pid in its lock file (soon
        a dead process's) is wiped while the lock is still held (issue 16). The file stays:
        a run whose status still says "running" next to a lock nobody holds reads as
        interrupted, as before."""
        from defect_studio.project.lock import _unlock

        fd, self._fd = self._fd, None
        if self._stop is not None:
            self._stop.set()
        if fd is None:
            return
        if ended:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass  # a stale pid is harmless: nobody holds the lock
        try:
            _unlock(fd)
        finally:
            os.close(fd)


def check_runs_writable(runs_dir: str | os.PathLike) -> None:
    """ProjectError when training could not write its run folder (read-only project,
    disk full): said before any work is done."""
    import tempfile

    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=runs_dir, prefix=".write-test-") as fh:
            fh.write(b"x")
            fh.flush()
    except OSError as e:
        from defect_studio.project.diskfull import storage_reason

        raise ProjectError(
            f"cannot write to '{runs_dir}' ({storage_reason(e, runs_dir)}): training saves "
            "its model "
            "there. Free some disk space, or copy the project to a folder you can write to "
            "and train there") from None


def hold_run(run_dir: str | os.PathLike) -> RunLock:
    """Take the run's lock (ProjectError naming the pid when a live process has it)."""
    return RunLock(Path(run_dir)).acquire()


def release_run(lock: RunLock | None) -> None:
    """Release a lock from hold_run (None: nothing to do). A run that has ended (its
    status.json says finished, cancelled or failed) keeps no pid in its lock file."""
    if lock is None:
        return
    state = None
    try:
        status = json.loads((lock.path.parent / "status.json").read_text(encoding="utf-8"))
        state = status.get("state") if isinstance(status, dict) else None
    except (OSError, ValueError):
        pass
    lock.release(ended=state in ("finished", "cancelled", "failed"))


def owner_alive(run_dir: str | os.PathLike) -> bool | None:
    """True while a process holds the run's lock, False when none does, None when the
    run has no lock file (made by an older version)."""
    path = Path(run_dir) / RUN_LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            import fcntl
        except ImportError:  # Windows: the heartbeat tells
            try:
                return time.time() - os.fstat(fd).st_mtime < 6 * HEARTBEAT_S
            except OSError:
                return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _read_json(path: Path) -> Any:
    """The JSON in `path`, None when absent; ValueError when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text)


def _model_name(config: dict) -> str | None:
    model = config.get("model")
    if isinstance(model, dict):
        name = model.get("name")
        return str(name) if name is not None else None
    if isinstance(model, str):
        return model
    return None


def _created(path: Path, config: dict) -> str:
    created = config.get("created")
    if isinstance(created, str) and created:
        return created
    try:
        ts = (path / "config.json").stat().st_mtime
    except OSError:
        ts = path.stat().st_mtime
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_run(path: str | os.PathLike) -> RunInfo:
    """RunInfo of the run folder `path` (ProjectError if it is not a folder)."""
    path = Path(path)
    if not path.is_dir():
        raise ProjectError(f"run folder '{path}' does not exist")
    state = "unknown"
    config: dict = {}
    status: dict = {}
    metrics: dict = {}
    threshold: float | None = None
    try:
        config = _read_json(path / "config.json") or {}
        status = _read_json(path / "status.json") or {}
        metrics = _read_json(path / "metrics.json") or {}
        thr = _read_json(path / "threshold.json")
        if isinstance(thr, dict) and isinstance(thr.get("threshold"), (int, float)):
            threshold = float(thr["threshold"])
        if not all(isinstance(x, dict) for x in (config, status, metrics)):
            raise ValueError("not a JSON object")
        state = str(status.get("state", "unknown"))
        if state == "running" and owner_alive(path) is False:
            state = "interrupted"
    except (ValueError, OSError, UnicodeDecodeError):
        state = "damaged"
        config = config if isinstance(config, dict) else {}
        metrics = metrics if isinstance(metrics, dict) else {}
        status = status if isinstance(status, dict) else {}
    epochs = status.get("epoch")
    if isinstance(epochs, float) and epochs.is_integer():
        epochs = int(epochs)
    if not isinstance(epochs, int) or isinstance(epochs, bool):
        planned = config.get("epochs")
        epochs = planned if state == "finished" and isinstance(planned, int) else 0
    if threshold is not None and not math.isfinite(threshold):
        threshold = None
    return RunInfo(
        id=path.name,
        path=path,
        state=state,
        model=_model_name(config),
        created=_created(path, config),
        epochs=int(epochs),
        metrics=metrics,
        threshold=threshold,
    )


def list_runs(runs_dir: str | os.PathLike) -> list[RunInfo]:
    """All runs under `runs_dir`, oldest first (by created time, then id)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = [
        read_run(p)
        for p in runs_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and not is_temp_name(p.name)
    ]
    runs.sort(key=lambda r: (r.created, r.id))
    return runs
