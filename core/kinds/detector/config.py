"""DetectorConfig: every setting of a detector training run.

Two model names: "detector" (the plain two-stage detector) and "relational" (all
relational parts on). Each relational part is a switch that can be set on its own:
``relation`` (the relation module across regions), ``geometry`` (its sin/cos
embedding of relative box geometry), ``gate`` (a refining gate on the relation
output) and ``iou_loss`` (the position-sensitive classification loss).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defect_studio.kinds.segdec.config import (
    DEVICES, TrainConfigError, _check, _is_int, _is_num, _size, parse_size, refuse_options,
)

DETECTOR_MODELS = ("detector", "relational")
DETECTOR_PRESETS = ("quick", "thorough")
_SWITCHES = ("relation", "geometry", "gate", "iou_loss")
_EXTRA_KEYS = ("model_spec", "created", "classes")


@dataclass
class DetectorConfig:
    """Settings of one detector run."""

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
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    val_every: int = 1
    max_minutes: float | None = None
    augment: bool = True  # random horizontal / vertical flips
    channels: int | None = 3  # the backbone is RGB: gray images are repeated
    resize: str = "resize"  # for defect_studio.kinds.segdec.data.preprocess_image

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DetectorConfig:
        """"quick" (minutes on a CPU) or "thorough"."""
        if name == "quick":
            base: dict[str, Any] = dict(epochs=6, input_size=(160, 160), batch_size=4)
        elif name == "thorough":
            base = dict(epochs=24, input_size=(320, 320), batch_size=4, val_every=2)
        else:
            raise TrainConfigError(
                f"unknown preset {name!r}; choose one of {', '.join(DETECTOR_PRESETS)}")
        base.update(overrides)
        return cls.from_dict(base)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        """From a dict (config.json); unknown keys are an error."""
        if not isinstance(data, dict):
            raise TrainConfigError("a training config must be a JSON object of field: value")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in names and k not in _EXTRA_KEYS)
        if unknown:
            raise TrainConfigError(f"unknown detector setting(s): {', '.join(unknown)}; known "
                                   f"settings are: {', '.join(sorted(names))}")
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_args(cls, args: Any) -> DetectorConfig:
        """From the arguments of `defect-studio train` (--preset, --config, single options)."""
        data: dict[str, Any] = {}
        if getattr(args, "preset", None):
            data.update(cls.preset(args.preset).to_dict())
        if getattr(args, "config", None):
            path = Path(args.config)
            try:
                data.update(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError, ValueError) as e:
                raise TrainConfigError(f"cannot read config file {path}: {e}") from None
        overrides = {
            "model": getattr(args, "model", None), "epochs": getattr(args, "epochs", None),
            "device": getattr(args, "device", None), "seed": getattr(args, "seed", None),
            "lr": getattr(args, "lr", None), "num_threads": getattr(args, "threads", None),
            "augment": getattr(args, "augment", None),
            "input_size": parse_size(args.size) if getattr(args, "size", None) else None,
        }
        data.update({k: v for k, v in overrides.items() if v is not None})
        refuse_options(args, ("--pixel-labels", "--cpu-bf16"),
                       "applies to segmentation models, not to the box detector")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["input_size"] = list(self.input_size)
        return d

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
        _check(_is_int(self.seed), "seed", "an integer")
        _check(self.device in DEVICES, "device", f"one of {DEVICES}")
        _check(self.num_threads is None or (_is_int(self.num_threads) and self.num_threads >= 1),
               "num_threads", "an integer >= 1 or null")
        _check(_is_int(self.val_every) and self.val_every >= 0, "val_every", "an integer >= 0")
        _check(self.max_minutes is None or (_is_num(self.max_minutes) and self.max_minutes > 0),
               "max_minutes", "a number > 0 or null")
        _check(self.channels == 3, "channels", "3 (the backbone is RGB)")
        _check(self.resize == "resize", "resize", "\"resize\"")
