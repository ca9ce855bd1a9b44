"""A run's training curves read back from its events.jsonl (no Qt), so any past run's
loss and validation curves can be shown again and two runs compared."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

# What a run folder says about its run (Qt-free), kept with the Train page's state:


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


def rewind(x: float, xs: list[float], *series: list[float]) -> None:
    """Before a point at ``x`` is added: drop the points at ``x`` or later. A resumed run
    starts again from its last checkpoint, so the events of the cancelled or killed
    attempt past that point are replaced, not drawn as a line going back in time."""
    while xs and not xs[-1] < x:
        xs.pop()
        for s in series:
            if s:
                s.pop()


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
            x = epoch - 1 + min(1.0, step / steps)
            rewind(x, out.loss_x, out.loss, out.loss_seg, out.loss_dec)
            out.loss_x.append(x)
            out.loss.append(_num(ev.get("loss")))
            out.loss_seg.append(_num(ev.get("loss_seg")))
            out.loss_dec.append(_num(ev.get("loss_dec")))
            if isinstance(ev.get("epochs"), int):
                out.epochs = ev["epochs"]
        elif kind == "validation":
            epoch = _num(ev.get("epoch"))
            if math.isfinite(epoch):
                rewind(epoch, out.val_x, out.val_ap, out.val_auc)
                out.val_x.append(epoch)
                out.val_ap.append(_num(ev.get("ap")))
                out.val_auc.append(_num(ev.get("auc")))
        elif kind == "finished" and isinstance(ev.get("metrics"), dict):
            out.final = dict(ev["metrics"])
    return out
