"""Saving and loading weights and checkpoints safely (every model kind).

Model files are data, not code: everything is read with ``torch.load(weights_only=True)``
(no arbitrary unpickling), and each file has a ``<name>.sha256`` beside it so that
truncated or tampered files are rejected with ModelFileError before they are used.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from defect_studio.errors import ModelFileError
from defect_studio.io.atomic import atomic_write, atomic_write_bytes, sha256_file

MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"


def save_torch(path: str | Path, obj: Any) -> Path:
    """torch.save ``obj`` (tensors, dicts, lists, numbers, strings only) atomically,
    with its checksum in ``<path>.sha256``."""
    path = Path(path)
    atomic_write(path, lambda f: torch.save(obj, f))
    digest = sha256_file(path)
    atomic_write_bytes(path.with_name(path.name + ".sha256"), f"{digest}\n".encode())
    return path


def load_torch(path: str | Path, device: torch.device | str = "cpu") -> Any:
    """Load a file written by save_torch; ModelFileError if missing, truncated, tampered
    with, or holding anything but plain data."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        expected = sidecar.read_text(encoding="ascii", errors="replace").strip()
        if sha256_file(path) != expected:
            raise ModelFileError(
                f"{path} does not match its checksum: the file is truncated or was changed "
                "after training; train the model again or restore the file"
            )
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelFileError(
            f"{path} contains more than plain weights (e.g. code) and was not loaded: "
            f"{first_line(e)}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as e:
        raise ModelFileError(f"{path} is not a readable model file (truncated or damaged?): "
                             f"{first_line(e)}") from None


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when empty)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def check_state_dict(sd: Any, path: Path) -> dict[str, torch.Tensor]:
    """``sd`` if it is a plain state dict (names -> tensors), else ModelFileError."""
    if not isinstance(sd, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ModelFileError(f"{path} is not a model state dict (names -> tensors)")
    return sd


_check_state_dict = check_state_dict  # the older private name


def save_model_weights(run_dir: str | Path, model: torch.nn.Module) -> Path:
    """Write the model's plain state dict to ``run_dir/model.pt`` (on the CPU)."""
    sd = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    return save_torch(Path(run_dir) / MODEL_FILE, sd)
