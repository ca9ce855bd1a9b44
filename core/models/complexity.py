"""Model size: parameters and multiply-accumulates (MACs), counted by our own hooks.

What is counted (one multiply-add = 1 MAC, as the seed paper's "FLOPs" column):
- nn.Conv2d: out_elements * (in_channels / groups) * kh * kw (bias adds are not counted);
- nn.Linear: out_elements * in_features;
- modules with a `matmul_macs(input_shape)` method (outlook attention's windowed
  weighted sum), which layer hooks cannot see.
Not counted, as usual: norms, activations, pooling, softmax, unfold/fold, additions.

The count runs the model once on the "meta" device (shapes only, no arithmetic), so it
is fast at any input size and does not touch the model's weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from .segdec import ModelInputError


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _conv_macs(m: nn.Conv2d, out: torch.Tensor) -> int:
    kh, kw = m.kernel_size
    return out.numel() * (m.in_channels // m.groups) * kh * kw


def _linear_macs(m: nn.Linear, out: torch.Tensor) -> int:
    return out.numel() * m.in_features


def count_macs(model: nn.Module, input_shape: Sequence[int], *,
               per_module: bool = False) -> int | tuple[int, dict[str, int]]:
    """MACs of one forward pass for an input of shape (C, H, W) or (B, C, H, W).

    With per_module=True also returns {qualified module name: MACs} for the counted modules.
    Raises ModelInputError for a shape the model cannot take.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ModelInputError(f"input shape must be (C, H, W) or (B, C, H, W), got {input_shape!r}")

    # A meta copy: hooks see shapes only; the caller's model and weights stay untouched.
    meta = copy.deepcopy(model).to("meta")
    counts: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def fn(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            if isinstance(mod, nn.Conv2d):
                n = _conv_macs(mod, out)
            elif isinstance(mod, nn.Linear):
                n = _linear_macs(mod, out)
            else:
                n = 0
            if hasattr(mod, "matmul_macs"):
                n += int(mod.matmul_macs(inputs[0].shape))
            counts[name] = counts.get(name, 0) + n
        return fn

    for name, mod in meta.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)) or hasattr(mod, "matmul_macs"):
            handles.append(mod.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            meta(torch.empty(shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    total = sum(counts.values())
    return (total, counts) if per_module else total


def split_params(model: nn.Module) -> tuple[int, int]:
    """(segmentation-net parameters, decision-net parameters) of a SegDecNet."""
    seg = sum(count_params(m) for m in model.seg_modules())
    dec = sum(count_params(m) for m in model.dec_modules())
    return seg, dec
