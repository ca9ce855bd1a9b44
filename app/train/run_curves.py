"""A run's training curves read back from its events.jsonl (no Qt), so any past run's
loss and validation curves can be shown again and two runs compared."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

MODEL_FILES = ("model.safetensors", "model.pt")
CHECKPOINT_FILE = "checkpoint.pt"
STALE_RUNNING_S = 15 * 60  # "running" with no sign of life for this long: interrupted


@dataclass
class RunCurves:
    """Loss per progress event and validation per epoch; x is in epochs (0 = start)."""

    loss_x: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    loss_seg: list[float] = field(default_factory=list)
    loss_dec: list[float] = field(default_factory=list)
    val_x: list[float] = field(default_factory=list)
    val_ap: list[float] = field(default_factory=list)
    val_auc: list[float] = field(default_factory=list)
    final: dict = field(default_factory=dict)  # the finished event's metrics (ap, auc, ...)
    epochs: int | None = None

    def empty(self) -> bool:
        return not self.loss_x and not self.val_x and not self.final


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
        and math.isfinite(v) else float("nan")


def read_curves(run_dir: str | Path, max_bytes: int = 50_000_000) -> RunCurves:
    """The curves of a run; lines that are not valid events are skipped (a run killed
    mid-write leaves a partial last line)."""
    out = RunCurves()
    path = Path(run_dir) / "events.jsonl"
    try:
        if path.stat().st_size > max_bytes:
            return out
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if not isinstance(ev, dict):
            continue
        kind = ev.get("event")
        if kind == "progress":
            epoch, steps = _num(ev.get("epoch")), _num(ev.get("steps"))
            step = _num(ev.get("step"))
            if not (math.isfinite(epoch) and math.isfinite(step) and steps and steps > 0):
                continue
            out.loss_x.append(epoch - 1 + min(1.0, step / steps))
            out.loss.append(_num(ev.get("loss")))
            out.loss_seg.append(_num(ev.get("loss_seg")))
            out.loss_dec.append(_num(ev.get("loss_dec")))
            if isinstance(ev.get("epochs"), int):
                out.epochs = ev["epochs"]
        elif kind == "validation":
            epoch = _num(ev.get("epoch"))
            if math.isfinite(epoch):
                out.val_x.append(epoch)
                out.val_ap.append(_num(ev.get("ap")))
                out.val_auc.append(_num(ev.get("auc")))
        elif kind == "finished" and isinstance(ev.get("metrics"), dict):
            out.final = dict(ev["metrics"])
    return out


def has_model(run) -> bool:
    """A finished run with its model file: the only kind that can be made active."""
    return run.state == "finished" and any((Path(run.path) / f).is_file() for f in MODEL_FILES)


def is_interrupted(run, running_here: str | None = None, now: float | None = None) -> bool:
    """Stopped before the end with a checkpoint to go on from: cancelled, failed, marked
    "interrupted", or still "running" though nothing has written to it for a long time
    (the training process was killed)."""
    import time

    path = Path(run.path)
    if run.id == running_here or not (path / CHECKPOINT_FILE).is_file():
        return False
    if run.state in ("interrupted", "cancelled", "failed"):
        return True
    if run.state == "running":
        try:
            last = max((path / n).stat().st_mtime for n in ("status.json", "events.jsonl")
                       if (path / n).exists())
        except ValueError:
            return True
        return (now if now is not None else time.time()) - last > STALE_RUNNING_S
    return False
