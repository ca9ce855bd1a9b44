"""The segdec kind's trained model of a run: its saved TrainConfig and network.

``load_run_model(run_dir)`` gives the predictor and the exporter the trained network
in eval mode and the config it was trained with.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from defect_studio.errors import ModelFileError, UserError
from defect_studio.kinds.segdec.config import TrainConfig
from defect_studio.training.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    check_state_dict,
    first_line,
    load_torch,
)


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig saved with a run (ModelFileError if missing or unreadable)."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{path} not found: {run_dir} is not a training run folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"cannot read {path}: {e}") from None
    try:
        return TrainConfig.from_saved(data)
    except UserError as e:
        raise ModelFileError(f"{path} is not a valid run config: {e}") from None


def build_run_model(config: TrainConfig) -> torch.nn.Module:
    """The (untrained) network a config describes; channels must be resolved."""
    from defect_studio.kinds.segdec.models import build_model

    if config.channels is None:
        raise ModelFileError("the run config does not say how many input channels the model has")
    try:
        return build_model(config.model, in_channels=config.channels, **config.model_switches())
    except UserError:
        raise
    except (KeyError, ValueError, TypeError) as e:
        raise ModelFileError(f"cannot build model {config.model!r}: {e}") from None


def load_run_model(run_dir: str | Path, device: torch.device | str = "auto"
                   ) -> tuple[torch.nn.Module, TrainConfig]:
    """The trained model of a run, in eval mode on ``device``, and its TrainConfig.

    ``device`` is a torch.device or a name ("auto", "cpu", "cuda", "mps").
    """
    from defect_studio.training.device import select_device

    run_dir = Path(run_dir)
    dev = device if isinstance(device, torch.device) else select_device(device)
    config = read_run_config(run_dir)
    model = build_run_model(config)
    path = run_dir / MODEL_FILE
    sd = check_state_dict(load_torch(path, "cpu"), path)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ModelFileError(
            f"{path} does not fit model {config.model!r}: {first_line(e)}") from None
    model.to(dev).eval()
    return model, config
