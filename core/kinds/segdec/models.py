"""Segmentation + decision networks: MixSup (baseline) and MFFPA with its ablation variants.

build_model(name, in_channels, **switches) is the one entry point; see docs/models.md.
"""

from __future__ import annotations

from typing import Any

from defect_studio.kinds.segdec.network import (
    ModelConfigError,
    ModelInputError,
    SegDecNet,
    canonical_name,
    pad_to_multiple,
    padded_size,
)

# name -> default switches (mff, pa); the other switches default to weight_module="ca",
# grad_adjust=True, norm="instance" (what a spec saved without "norm" was built with).
_VARIANTS = {
    "mixsup": {"mff": False, "pa": False},
    "mixsup+mff": {"mff": True, "pa": False},
    "mixsup+pa": {"mff": False, "pa": True},
    "mffpa": {"mff": True, "pa": True},
}
MODEL_NAMES: tuple[str, ...] = tuple(_VARIANTS)
SWITCHES = ("mff", "pa", "weight_module", "grad_adjust", "norm")

__all__ = ["MODEL_NAMES", "SWITCHES", "SegDecNet", "build_model", "build_from_spec", "input_rule",
           "ModelConfigError", "ModelInputError", "canonical_name", "pad_to_multiple",
           "padded_size"]


def build_model(name: str = "mffpa", in_channels: int = 3, **switches: Any) -> SegDecNet:
    """Build a model variant by name; switches (mff, pa, weight_module, grad_adjust) override.

    Switches given as None are ignored (so a config with unset fields can be passed through).
    Raises ModelConfigError for an unknown name or switch.
    """
    key = str(name).strip().lower()
    if key not in _VARIANTS:
        raise ModelConfigError(
            f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    unknown = sorted(set(switches) - set(SWITCHES))
    if unknown:
        raise ModelConfigError(
            f"unknown model switch(es) {', '.join(unknown)}; known: {', '.join(SWITCHES)}")
    opts: dict[str, Any] = {"weight_module": "ca", "grad_adjust": True, "norm": "instance",
                            **_VARIANTS[key]}
    opts.update({k: v for k, v in switches.items() if v is not None})
    return SegDecNet(in_channels, **opts)


def input_rule(model: str, **switches: Any) -> tuple[int, int]:
    """(multiple, minimum side) of a model variant's input, without building it (the
    kind's ``input_rule`` entry, read by defect_studio.training.sizing)."""
    from defect_studio.kinds.segdec.network import MixSupDecisionHead, PADecisionHead

    pa = switches.get("pa")
    if pa is None:
        pa = _VARIANTS.get(str(model).strip().lower(), {"pa": True})["pa"]
    head = PADecisionHead if pa else MixSupDecisionHead
    return SegDecNet.input_multiple, max(SegDecNet.input_multiple, head.min_input)


def build_from_spec(spec: dict) -> SegDecNet:
    """Rebuild a model from SegDecNet.spec() (as saved with a run)."""
    try:
        name, in_channels = spec["name"], int(spec["in_channels"])
        switches = dict(spec.get("switches") or {})
    except (KeyError, TypeError, ValueError) as e:
        raise ModelConfigError(f"model spec is incomplete or malformed ({e}): {spec!r}") from None
    return build_model(name, in_channels, **switches)
