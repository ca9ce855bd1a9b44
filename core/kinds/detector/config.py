"""DetectorConfig: every setting of a detector training run.

Two model names: "detector" (the plain two-stage detector) and "relational" (all
relational parts on). Each relational part is a switch that can be set on its own:
``relation`` (the relation module across regions), ``geometry`` (its sin/cos
embedding of relative box geometry), ``gate`` (a refining gate on the relation
output) and ``iou_loss`` (the position-sensitive classification loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from defect_studio.training.config import (
    KindConfig,
)
from defect_studio.training.config import (
    check as _check,
)
from defect_studio.training.config import (
    is_int as _is_int,
)
from defect_studio.training.config import (
    is_num as _is_num,
)
from defect_studio.training.config import (
    size_value as _size,
)

DETECTOR_MODELS = ("detector", "relational")
DETECTOR_PRESETS = ("quick", "thorough")
_SWITCHES = ("relation", "geometry", "gate", "iou_loss")

# The anchors (defect_studio.kinds.detector.network.build_detector): per FPN level (strides
# 8, 16, 32), their sizes for an input whose short side is ANCHOR_BASE px, scaled with the
# input's short side; each size in every aspect ratio (h / w).
ANCHOR_BASE = 224
ANCHOR_SIZES = ((16, 32), (48, 80), (128, 208))
ASPECT_RATIOS = (0.25, 0.5, 1.0, 2.0, 4.0)
FPN_STRIDES = (8, 16, 32)
# The region proposals' matching (torchvision's defaults, kept): an anchor of IoU >= 0.7
# with a box is a positive, < 0.3 a negative; a box none reaches 0.3 with learns only
# from its single best anchor (a low-quality match).
RPN_NEGATIVE_IOU = 0.3
RAISED_SIDE_FACTOR = 2  # small boxes raise the input's long side to at most 2x max_side
MIN_BOX_PX = FPN_STRIDES[0]  # the small boxes keep at least this short side at the input


def anchor_shapes(input_size: tuple[int, int]) -> list[tuple[float, float]]:
    """(w, h) of every anchor shape of the detector at this input size (W, H)."""
    s = min(input_size) / ANCHOR_BASE
    out = []
    for level in ANCHOR_SIZES:
        for v in level:
            size = int(round(v * s))
            for r in ASPECT_RATIOS:  # as torchvision's AnchorGenerator rounds half sides
                out.append((2.0 * round(size / math.sqrt(r) / 2),
                            2.0 * round(size * math.sqrt(r) / 2)))
    return out


def best_anchor_iou(box: tuple[float, float], anchors: list[tuple[float, float]]) -> float:
    """The highest IoU of a box (w, h) with any anchor shape, both centred on one point
    (an upper bound: anchor centres lie on the level's grid)."""
    bw, bh = box
    best = 0.0
    for aw, ah in anchors:
        inter = min(bw, aw) * min(bh, ah)
        best = max(best, inter / (bw * bh + aw * ah - inter))
    return best


def anchor_warnings(defects: Any, size: tuple[int, int], scales: tuple[float, float]
                    ) -> list[str]:
    """Warnings of the size rule (DefectRule.check) for boxes no anchor matches at this
    input size: best centred IoU under RPN_NEGATIVE_IOU."""
    shapes = [(w * scales[0], h * scales[1]) for w, h in getattr(defects, "shapes", ())]
    if not shapes:
        return []
    anchors = anchor_shapes(size)
    small_a = min(math.sqrt(w * h) for w, h in anchors)
    large_a = max(math.sqrt(w * h) for w, h in anchors)
    bad = [b for b in shapes if best_anchor_iou(b, anchors) < RPN_NEGATIVE_IOU]
    if not bad:
        return []
    small = sum(math.sqrt(w * h) < small_a for w, h in bad)
    parts = []
    if small:
        parts.append(f"{small} smaller than the smallest anchor ({small_a:.0f} px)")
    if len(bad) - small:
        parts.append(f"{len(bad) - small} too large or too elongated for the anchors (up to "
                     f"{large_a:.0f} px, aspect 1:4 to 4:1)")
    return [f"warning: {len(bad)} of {len(shapes)} boxes overlap no anchor by IoU "
            f"{RPN_NEGATIVE_IOU:g} at this size ({', '.join(parts)}; the anchors scale with "
            "the input's short side): the detector learns them poorly"]


@dataclass
class DetectorConfig(KindConfig):
    """Settings of one detector run; the shared settings and the construction come from
    KindConfig (defect_studio.training.config)."""

    # input_size None: from the data (defect_studio.training.sizing, ``defect_rule`` below)
    PRESET_SETTINGS = {"quick": dict(epochs=6, input_size=None, max_side=160, batch_size=4),
                       "thorough": dict(epochs=24, input_size=None, max_side=320, batch_size=4,
                                        val_every=2)}
    EXTRA_KEYS = ("model_spec", "created", "classes")
    SETTINGS_NOUN = "detector"
    ARG_FIELDS = ("augment",)
    REFUSED_ARGS = ("--pixel-labels", "--cpu-bf16")
    REFUSED_WHY = "applies to segmentation models, not to the box detector"

    model: str = "relational"
    relation: bool | None = None  # None: the model's default (on for "relational")
    geometry: bool | None = None
    gate: bool | None = None
    iou_loss: bool | None = None
    pretrained: bool = True  # EfficientNet-Lite0 ImageNet weights for the backbone
    epochs: int = 12
    input_size: tuple[int, int] | None = None  # (W, H): images are resized to this; None:
    # from the data: the images' median size, long side at most max_side, raised for small
    # boxes up to RAISED_SIDE_FACTOR x max_side (``defect_rule``)
    max_side: int | None = 224
    lr: float = 0.01
    batch_size: int = 4
    augment: bool = True  # random horizontal / vertical flips
    channels: int | None = 3  # the backbone is RGB: gray images are repeated
    resize: str = "resize"  # for defect_studio.training.data.preprocess_image

    def switches(self) -> dict[str, bool]:
        """The relational switches in effect (defaults from the model name)."""
        on = self.model == "relational"
        out = {k: on if getattr(self, k) is None else bool(getattr(self, k)) for k in _SWITCHES}
        if not out["relation"]:  # geometry and gate are parts of the relation module
            out["geometry"] = out["gate"] = False
        return out

    def defect_rule(self) -> Any:
        """The detector's size rule (defect_studio.training.sizing.DefectRule).

        The finest FPN level has stride 8 (FPN_STRIDES): one feature cell per 8 input px.
        A box at least 8 px on its short side covers a cell centre of that level, so an
        anchor is centred inside it and the region's pooled features read at least one
        cell of its own, not only its neighbours' interpolated cells; so ``min_px`` =
        MIN_BOX_PX = 8, measured on the boxes of the train split (short sides; masks do
        not count: the detector learns boxes). The detector trains whole images (no
        crops), so a raised input is capped at RAISED_SIDE_FACTOR x max_side (at most 4x
        the pixels, the cost, of a step at max_side). Boxes no anchor overlaps by IoU 0.3
        at the chosen size get a warning in the reason (``anchor_warnings``)."""
        from defect_studio.training.sizing import MAX_INPUT_SIDE, DefectRule

        top = MAX_INPUT_SIDE if self.max_side is None else RAISED_SIDE_FACTOR * self.max_side
        return DefectRule(min_px=MIN_BOX_PX, masks=False, crops=False, max_raised_side=top,
                          check=anchor_warnings, boxed_images=True)

    def validate(self) -> None:
        self.input_size = None if self.input_size is None else _size(self.input_size)
        _check(self.model in DETECTOR_MODELS, "model", f"one of {DETECTOR_MODELS}")
        for key in _SWITCHES:
            v = getattr(self, key)
            _check(v is None or isinstance(v, bool), key, "true, false or null")
        for key in ("pretrained", "augment"):
            _check(isinstance(getattr(self, key), bool), key, "true or false")
        _check(_is_int(self.epochs) and self.epochs >= 1, "epochs", "an integer >= 1")
        _check(self.input_size is None or min(self.input_size) >= 64, "input_size",
               "at least 64x64 for the detector")
        _check(self.max_side is None or (_is_int(self.max_side) and 64 <= self.max_side <= 8192),
               "max_side", "an integer between 64 and 8192, or null (no cap)")
        _check(_is_num(self.lr) and 0 < self.lr <= 1, "lr", "a number in (0, 1]")
        _check(_is_int(self.batch_size) and 1 <= self.batch_size <= 256, "batch_size",
               "an integer from 1 to 256")
        _check(self.channels == 3, "channels", "3 (the backbone is RGB)")
        _check(self.resize == "resize", "resize", "\"resize\"")
        super().validate()


def input_rule(model: str, **switches: Any) -> tuple[int, int]:
    """(multiple, minimum side) of the detector's input (the kind's ``input_rule`` entry):
    the coarsest FPN level has stride 32 (the detector pads to it); at least 64 px."""
    return 32, 64
