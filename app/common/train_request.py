"""What the Train button asks for, as plain data (Qt-free): the Train page's state builds
it from the form, `defect_studio.app.common.jobs.TrainingJob` runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def default_model() -> str:
    """The model trained when none is named: the first kind's default (the registry's)."""
    from defect_studio.kinds import kinds

    return kinds()[0].default_model


@dataclass
class TrainRequest:
    """Turned into `defect-studio train` arguments."""

    project_root: Path
    model: str = field(default_factory=default_model)
    preset: str | None = None
    epochs: int | None = None
    size: tuple[int, int] | None = None  # (W, H)
    device: str = "auto"
    seed: int | None = None
    run_id: str | None = None
    config_path: Path | None = None  # extra config fields as JSON
    resume: str | None = None  # go on with this interrupted run (its saved settings)
    cluster: str | None = None  # train on the Ray cluster at this address (docs/cluster.md)
    attach: str | None = None  # follow this run's cluster job again (never trains)

    def to_args(self) -> list[str]:
        """Arguments after the interpreter: `-m defect_studio train ... --events`."""
        args = ["-m", "defect_studio", "train", "--project", str(self.project_root), "--events"]
        if self.attach:
            return args + ["--attach", self.attach]
        if self.cluster:
            args += ["--cluster", self.cluster]
        if self.resume:
            args += ["--resume", self.resume]
            if self.device:
                args += ["--device", self.device]
            return args
        args += ["--model", self.model]
        if self.config_path is not None:
            args += ["--config", str(self.config_path)]
        if self.preset:
            args += ["--preset", self.preset]
        if self.epochs is not None:
            args += ["--epochs", str(int(self.epochs))]
        if self.size is not None:
            args += ["--size", f"{int(self.size[0])}x{int(self.size[1])}"]
        if self.device:
            args += ["--device", self.device]
        if self.seed is not None:
            args += ["--seed", str(int(self.seed))]
        if self.run_id:
            args += ["--run-id", self.run_id]
        return args
