"""Which torch device a job runs on."""

from __future__ import annotations

import torch

from defect_studio.errors import UserError


class DeviceError(UserError):
    """The requested device is not available on this machine."""


def select_device(name: str = "auto") -> torch.device:
    """"auto": CUDA, then Apple MPS, then CPU. A named device must exist (DeviceError)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA was requested but no CUDA GPU is available; "
                              "use --device auto or cpu")
        return torch.device("cuda")
    if name == "mps":
        if not _mps_available():
            raise DeviceError("MPS was requested but is not available; use --device auto or cpu")
        return torch.device("mps")
    raise DeviceError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cpu_bf16_supported() -> bool:
    """True when this CPU computes bfloat16 natively (oneDNN's check: AVX512-BF16 or AMX).
    Without it bf16 autocast is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False
