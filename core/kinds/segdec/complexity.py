"""Model size: parameters and multiply-accumulates (MACs), counted by torch's
FlopCounterMode (torch.utils.flop_counter); one multiply-add = 1 MAC = 2 FLOPs, as the
seed paper's "FLOPs" column.

What is counted: convolutions (out_elements * in_channels / groups * kh * kw; bias adds
are not counted), linear layers and matrix products (out_elements * in_features), which
includes outlook attention's windowed weighted sum (an einsum, i.e. a bmm). Not
counted, as usual: norms, activations, pooling, softmax, unfold/fold, additions.

The count runs the model once on the "meta" device (shapes only, no arithmetic), so it
is fast at any input size and does not touch the model's weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from defect_studio.kinds.segdec.network import ModelInputError


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape: Sequence[int], *,
               per_module: bool = False) -> int | tuple[int, dict[str, int]]:
    """MACs of one forward pass for an input of shape (C, H, W) or (B, C, H, W).

    With per_module=True also returns {qualified module name: MACs done by that module
    itself (not its children)} for the modules that do any ("" is the model itself).
    Raises ModelInputError for a shape the model cannot take.
    """
    from torch.utils.flop_counter import FlopCounterMode

    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ModelInputError(f"input shape must be (C, H, W) or (B, C, H, W), got {input_shape!r}")

    # A meta copy: shapes only; the caller's model and weights stay untouched.
    meta = copy.deepcopy(model).to("meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(shape, device="meta"))
    total = counter.get_total_flops() // 2
    if not per_module:
        return total
    return total, _own_macs(meta, counter.get_flop_counts())


def _own_macs(model: nn.Module, flops: dict) -> dict[str, int]:
    """Per module, the MACs not accounted for by its children."""
    root = type(model).__name__  # FlopCounterMode names modules "<RootClass>.<fqn>"
    inclusive = {}
    for key, ops in flops.items():
        if key == "Global":
            continue
        name = "" if key == root else key[len(root) + 1:] if key.startswith(root + ".") else None
        if name is not None:
            inclusive[name] = sum(ops.values()) // 2
    own = dict(inclusive)
    for name, macs in inclusive.items():  # subtract each module from its nearest counted parent
        parts = name.split(".") if name else []
        for i in range(len(parts) - 1, -1, -1):
            parent = ".".join(parts[:i])
            if parent in inclusive:
                own[parent] -= macs
                break
    own = {k: v for k, v in own.items() if v > 0}
    return own


def split_params(model: nn.Module) -> tuple[int, int]:
    """(segmentation-net parameters, decision-net parameters) of a SegDecNet."""
    seg = sum(count_params(m) for m in model.seg_modules())
    dec = sum(count_params(m) for m in model.dec_modules())
    return seg, dec
