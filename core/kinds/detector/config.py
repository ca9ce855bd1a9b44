"""DetectorConfig: every setting of a detector training run.

Two model names: "detector" (the plain two-stage detector) and "relational" (all
relational parts on). Each relational part is a switch that can be set on its own:
``relation`` (the relation module across regions), ``geometry`` (its sin/cos
embedding of relative box geometry), ``gate`` (a refining gate on the relation
output) and ``iou_loss`` (the position-sensitive classification loss).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class DetectorConfig(KindConfig):
    """Settings of one detector run; the shared settings and the construction come from
    KindConfig (defect_studio.training.config)."""

    PRESET_SETTINGS = {"quick": dict(epochs=6, input_size=(160, 160), batch_size=4),
                       "thorough": dict(epochs=24, input_size=(320, 320), batch_size=4,
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
    input_size: tuple[int, int] = (224, 224)  # (W, H): images are resized to this
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

    def validate(self) -> None:
        self.input_size = _size(self.input_size)
        _check(self.model in DETECTOR_MODELS, "model", f"one of {DETECTOR_MODELS}")
        for key in _SWITCHES:
            v = getattr(self, key)
            _check(v is None or isinstance(v, bool), key, "true, false or null")
        for key in ("pretrained", "augment"):
            _check(isinstance(getattr(self, key), bool), key, "true or false")
        _check(_is_int(self.epochs) and self.epochs >= 1, "epochs", "an integer >= 1")
        _check(min(self.input_size) >= 64, "input_size", "at least 64x64 for the detector")
        _check(_is_num(self.lr) and 0 < self.lr <= 1, "lr", "a number in (0, 1]")
        _check(_is_int(self.batch_size) and 1 <= self.batch_size <= 256, "batch_size",
               "an integer from 1 to 256")
        _check(self.channels == 3, "channels", "3 (the backbone is RGB)")
        _check(self.resize == "resize", "resize", "\"resize\"")
        super().validate()
