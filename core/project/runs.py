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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.errors import ProjectError
from core.io.atomic import is_temp_name, write_json_atomic

__all__ = ["RunInfo", "list_runs", "read_run", "write_json_atomic", "valid_run_id", "RUN_STATES"]

RUN_STATES = ("running", "finished", "failed", "cancelled")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class RunInfo:
    """What the runs list shows about one run.

    state: from status.json ("running", "finished", "failed", "cancelled"), "unknown"
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
