"""The training job machinery every model kind shares (defect_studio.kinds).

One training job = one run folder (docs/ARCHITECTURE.md, "Runs"). Opening the project,
turning errors into ``error`` events and a "failed" status, holding the run's lock while
training, the checks before a resume, creating a new run folder, saving and restoring
checkpoints, cancelling, the ``progress`` events, seeding and the RNG state are the same
for every kind; each kind's ``train`` wraps its job in ``run_training_job`` and keeps only
its data, network and epoch loop.

Public names: RunFolder, EventSink, PROGRESS_INTERVAL_S, run_training_job,
open_run_to_resume, check_new_run_id, create_run_folder, new_run_id, write_json,
last_epoch, restore_checkpoint, save_checkpoint, cancel_run, StepProgress,
seed_everything, rng_state, set_rng_state, is_oom.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from defect_studio.errors import CancelledError, TrainingError, UserError
from defect_studio.project.runs import check_runs_writable, hold_run, release_run, require_run_id
from defect_studio.training.checkpoint import CHECKPOINT_FILE, CONFIG_FILE
from defect_studio.training.config import TrainConfigError

EventSink = Callable[[dict], None]
JobBody = Callable[[Any, "RunFolder", Callable[[], bool]], str]  # (project, folder, should_stop)
PROGRESS_INTERVAL_S = 0.25  # at most four progress events per second


class RunFolder:
    """The run's folder: events.jsonl, status.json and the caller's event sink.

    ``path`` is None until the run folder exists (early events go to the sink only);
    ``run_lock`` is the run's lock while the job holds it.
    """

    def __init__(self, on_event: EventSink | None) -> None:
        self.path: Path | None = None  # set once the run folder exists
        self.on_event = on_event
        self.run_lock: Any = None

    def emit(self, name: str, **fields: Any) -> None:
        """One event: appended to events.jsonl (once the folder exists) and sent to the sink."""
        event = {"event": name, **fields}
        if self.path is not None:
            with open(self.path / "events.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(event) + "\n")
        if self.on_event is not None:
            self.on_event(event)

    def status(self, state: str, epoch: int, message: str = "") -> None:
        """Write status.json: the run's state, its epochs done and a message."""
        write_json(self.path / "status.json", {"state": state, "epoch": epoch, "message": message})


def write_json(path: Path, obj: Any) -> None:
    """Write a JSON file of the run folder atomically."""
    from defect_studio.project.runs import write_json_atomic

    write_json_atomic(path, obj)


def new_run_id(runs_dir: Path, model: str) -> str:
    """A free run id from the time and the model name (``20240101-120000-mffpa``)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{model.replace('+', '-')}"
    run_id, n = base, 2
    while (Path(runs_dir) / run_id).exists():
        run_id, n = f"{base}-{n}", n + 1
    return run_id


def last_epoch(run_dir: Path) -> int:
    """The epochs done according to the run's status.json (0 when unreadable)."""
    try:
        return int(json.loads((Path(run_dir) / "status.json").read_text()).get("epoch", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """torch's generator state (and CUDA's), for a checkpoint."""
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state from ``rng_state``."""
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def is_oom(e: BaseException) -> bool:
    """Whether an exception of the training step is an out-of-memory error."""
    import torch

    text = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in text or \
        "can't allocate memory" in text


# what to change when a segmentation-style job runs out of memory
OOM_ADVICE = "choose a smaller input size (--size), or train on the CPU (--device cpu)"


def fit_within_memory(fit: Callable[[int], int], start_epoch: int, device: Any,
                      input_size: tuple[int, int], advice: str) -> int:
    """``fit(start_epoch)`` (a kind's epochs; returns the epochs done); running out of memory
    becomes a TrainingError that names the device and size and says what to change."""
    import torch

    try:
        return fit(start_epoch)
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if not is_oom(e):
            raise
        W, H = input_size
        raise TrainingError(f"out of memory on {device} at input size {W}x{H}: {advice}") \
            from None


def run_training_job(project_root: str | Path, on_event: EventSink | None,
                     should_stop: Callable[[], bool] | None, body: JobBody) -> str:
    """Open the project read-only and run ``body(project, folder, should_stop)``.

    A UserError or an unexpected exception becomes an ``error`` event and, once the run
    folder exists, a "failed" status; CancelledError passes through (the body reported
    it). The run lock taken by ``open_run_to_resume``/``create_run_folder`` is released
    however the job ends.
    """
    from defect_studio.project import Project

    folder = RunFolder(on_event)  # no folder yet: early errors go to the sink only
    try:
        with Project.open(project_root, readonly=True) as project:
            return body(project, folder, should_stop or (lambda: False))
    except CancelledError:
        raise
    except UserError as e:
        folder.emit("error", message=str(e), kind=type(e).__name__)
        if folder.path is not None:
            folder.status("failed", last_epoch(folder.path), str(e))
        raise
    except Exception as e:
        message = f"training failed unexpectedly: {type(e).__name__}: {e}"
        folder.emit("error", message=message, kind="internal")
        if folder.path is not None:
            folder.status("failed", last_epoch(folder.path), message)
        raise
    finally:
        release_run(getattr(folder, "run_lock", None))


def open_run_to_resume(runs_dir: Path, run_id: str | None, folder: RunFolder) -> Path:
    """The folder of run ``run_id`` after the checks of a resume; takes the run's lock.

    Refuses a missing or unsafe id (never a folder outside runs/), a run without config
    or checkpoint, a finished run, and a run another live process is training.
    """
    check_runs_writable(runs_dir)  # a read-only project: a message before any work
    if not run_id:
        raise TrainConfigError("say which run to resume (--resume RUN)")
    run_dir = Path(runs_dir) / require_run_id(run_id)
    if not (run_dir / CONFIG_FILE).is_file():
        raise TrainConfigError(f"there is no run {run_id!r} in {runs_dir} to resume")
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise TrainingError(f"run {run_id!r} has no checkpoint yet (it stopped before the first "
                            "epoch ended); start a new run instead")
    try:
        state = json.loads((run_dir / "status.json").read_text(encoding="utf-8")).get("state")
    except (OSError, ValueError, AttributeError):
        state = None
    if state == "finished":
        raise TrainConfigError(f"run {run_id!r} has already finished; "
                               "start a new run to train more")
    folder.run_lock = hold_run(run_dir)  # a second resume of a live run is refused
    return run_dir


def check_new_run_id(runs_dir: Path, run_id: str | None) -> None:
    """Before any work: the project can take a new run, and a chosen id is usable and free."""
    check_runs_writable(runs_dir)
    if run_id is None:
        return
    try:
        require_run_id(run_id)
    except UserError:
        raise TrainConfigError(
            f"bad run id {run_id!r}: use letters, digits, '.', '_' and '-'") from None
    if (Path(runs_dir) / run_id).exists():
        raise TrainConfigError(f"a run named {run_id!r} already exists; choose another "
                               f"--run-id or continue it with --resume {run_id}")


def create_run_folder(runs_dir: Path, run_id: str | None, model_name: str, record: dict,
                      folder: RunFolder) -> str:
    """Make the new run's folder (id from the time and model unless given), take its lock
    and write config.json (``record`` + "created"); returns the run id."""
    run_id = run_id or new_run_id(Path(runs_dir), model_name)
    run_dir = Path(runs_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    folder.run_lock = hold_run(run_dir)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_json(run_dir / CONFIG_FILE, {**record, "created": created})
    return run_id


def restore_checkpoint(checkpoint: dict, run_id: str, load_model: Callable[[Any], Any],
                       optimizer: Any) -> tuple[int, float]:
    """Load model, optimiser and RNG state from a checkpoint; (start epoch, elapsed s).

    ``load_model(state_dict)`` loads the network's part (kinds with frozen parts load only
    what they train). A checkpoint that does not fit is a TrainingError saying so.
    """
    try:
        load_model(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        set_rng_state(checkpoint["rng"])
        return int(checkpoint["epoch"]), float(checkpoint.get("elapsed_s", 0.0))
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise TrainingError(
            f"cannot resume run {run_id!r}: its checkpoint does not fit the project's current "
            f"training images or the model ({e}); start a new run instead") from None


def save_checkpoint(folder: Any, state: dict, epochs_done: int) -> None:
    """Write the run's checkpoint (``state`` + epoch), then say so in status and events."""
    from defect_studio.training.checkpoint import save_torch

    path = folder.path / CHECKPOINT_FILE
    save_torch(path, {**state, "epoch": epochs_done})
    folder.status("running", epochs_done)
    folder.emit("checkpoint", epoch=epochs_done, path=str(path))


def cancel_run(folder: Any, run_id: str, epoch: int) -> None:
    """Stop now (raises CancelledError); the last epoch checkpoint, if any, stays, so the
    run can be resumed: the message says how."""
    if (folder.path / CHECKPOINT_FILE).is_file():
        hint = f"continue it with: defect-studio train --project DIR --resume {run_id}"
    else:
        hint = "it stopped before the first epoch ended, so there is nothing to resume"
    message = f"training cancelled during epoch {epoch + 1}; {hint}"
    folder.status("cancelled", epoch, message)
    folder.emit("cancelled", run_id=run_id, epoch=epoch)
    raise CancelledError(message)


class StepProgress:
    """The ``progress`` events of a training job: at most one per PROGRESS_INTERVAL_S (and
    always at an epoch's last step), with an ETA from the steps done in this process."""

    def __init__(self, folder: Any, epochs: int, elapsed: Callable[[], float]) -> None:
        import time

        self.folder, self.epochs, self.elapsed = folder, epochs, elapsed
        self._clock = time.monotonic
        self.t0, self.done, self.last = self._clock(), 0, 0.0

    def step(self, epoch: int, step: int, steps: int, remaining: int, *, loss: float,
             loss_seg: float, loss_dec: float) -> None:
        """One finished step (``epoch``, ``step`` 0-based); ``remaining`` steps in the run."""
        self.done += 1
        now = self._clock()
        if now - self.last < PROGRESS_INTERVAL_S and step + 1 != steps:
            return
        self.last = now
        rate = (now - self.t0) / self.done
        self.folder.emit("progress", epoch=epoch + 1, epochs=self.epochs, step=step + 1,
                         steps=steps, loss=loss, loss_seg=loss_seg, loss_dec=loss_dec,
                         eta_s=round(rate * remaining, 1), elapsed_s=round(self.elapsed(), 1))
