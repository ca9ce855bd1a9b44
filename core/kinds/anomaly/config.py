"""AnomalyConfig: every setting of an anomaly-model training run (saved as the run's config.json).

It has the fields the shared preprocessing reads (``input_size``, ``resize``, ``channels``),
so defect_studio.kinds.segdec.data.preprocess_image and defect_studio.kinds.segdec.predictor.heatmap_to_image work
with it unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defect_studio.kinds.segdec.config import (  # the same checks and messages as every training setting
    DEVICES, RESIZE_MODES, TrainConfigError, _check, _is_int, _is_num, _size, parse_size,
    refuse_options,
)

# model name -> default switches
VARIANTS: dict[str, dict[str, bool]] = {
    "anomaly": {"sspcab": True, "simam": True},
    "anomaly-sspcab": {"sspcab": True, "simam": False},
    "anomaly-kd": {"sspcab": False, "simam": False},
}
MODEL_NAMES = tuple(VARIANTS)
PRESETS = ("quick", "thorough")
MAP_TAPS = ("1/4", "1/8", "1/16")
_EXTRA_KEYS = ("model_spec", "created")


@dataclass
class AnomalyConfig:
    """Settings of one anomaly run (docs/models.md, "Anomaly model")."""

    model: str = "anomaly"
    sspcab: bool | None = None  # None: the model name's default
    simam: bool | None = None
    epochs: int = 20
    input_size: tuple[int, int] = (256, 256)  # (W, H), multiples of 16
    resize: str = "resize"
    channels: int | None = None  # None: 1 if every training image is gray, else 3
    lr: float = 0.005  # Adam
    batch: int = 8
    sspcab_weight: float = 0.1  # weight of the SSPCAB reconstruction loss
    width: int = 256  # channels of the bottleneck embedding
    sigma: float = 4.0  # Gaussian smoothing of the anomaly map, in input pixels
    # Teacher taps summed into the anomaly map (training always distils all three). The
    # 1/4 term is left out by default: on the magnetic-tile validation split it added noise
    # (docs/benchmarks.md, "Cold start").
    map_taps: tuple[str, ...] = ("1/8", "1/16")
    include_unlabeled: bool = False  # also train on unlabeled train images (assumed good)
    ok_percentile: float = 99.0  # calibration: this percentile of OK validation scores -> 0.5
    cache_mb: int = 1024  # teacher features kept in memory up to this size
    seed: int = 0
    device: str = "auto"
    val_every: int = 1
    num_threads: int | None = None
    max_minutes: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> AnomalyConfig:
        """"quick" (minutes on a CPU) or "thorough"."""
        if name == "quick":
            base: dict[str, Any] = dict(epochs=10, input_size=(128, 128))
        elif name == "thorough":
            base = dict(epochs=40, input_size=(256, 256))
        else:
            raise TrainConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        base.update(overrides)
        return cls.from_dict(base)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnomalyConfig:
        if not isinstance(data, dict):
            raise TrainConfigError("a training config must be a JSON object of field: value")
        names = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}
        unknown = sorted(k for k in data if k not in names and k not in _EXTRA_KEYS)
        if unknown:
            raise TrainConfigError(f"unknown anomaly-model setting(s): {', '.join(unknown)}; "
                                   f"known settings are: {', '.join(sorted(names))}")
        values = {k: v for k, v in data.items() if k in names}
        if isinstance(values.get("model"), dict):
            values["model"] = values["model"].get("name")
        cfg = cls(**values)
        cfg.extra = {k: data[k] for k in _EXTRA_KEYS if k in data}
        return cfg

    @classmethod
    def from_args(cls, args: Any) -> AnomalyConfig:
        """From the `train` command's arguments: --preset, then --config FILE, then options.
        Options of mixed-supervision training that mean nothing here (--pixel-labels,
        --augment, --cpu-bf16) are an error rather than silently ignored."""
        refuse_options(args, ("--pixel-labels", "--augment", "--cpu-bf16"),
                       "does not apply to the anomaly model (it trains on good images only)")
        data: dict[str, Any] = {}
        if getattr(args, "preset", None):
            data.update(cls.preset(args.preset).to_dict())
        if getattr(args, "config", None):
            path = Path(args.config)
            try:
                file_data = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise TrainConfigError(f"config file not found: {path}") from None
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise TrainConfigError(f"cannot read config file {path}: {e}") from None
            if not isinstance(file_data, dict):
                raise TrainConfigError(f"{path} must hold a JSON object of setting: value")
            cls.from_dict({**data, **file_data})  # names the bad key or value of the file
            data.update(file_data)
        overrides = {
            "model": args.model, "epochs": args.epochs, "device": args.device, "seed": args.seed,
            "lr": getattr(args, "lr", None), "num_threads": getattr(args, "threads", None),
            "include_unlabeled": getattr(args, "include_unlabeled", None),
            "input_size": parse_size(args.size) if getattr(args, "size", None) else None,
        }
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        d["input_size"] = list(self.input_size)
        d["map_taps"] = list(self.map_taps)
        return d

    def replace(self, **changes: Any) -> AnomalyConfig:
        cfg = AnomalyConfig.from_dict({**self.to_dict(), **changes})
        cfg.extra = dict(self.extra)
        return cfg

    def switches(self) -> dict[str, bool]:
        """sspcab / simam after the name's defaults and the overrides."""
        sw = dict(VARIANTS[self.model])
        for key in ("sspcab", "simam"):
            if getattr(self, key) is not None:
                sw[key] = getattr(self, key)
        return sw

    def validate(self) -> None:
        self.input_size = _size(self.input_size)
        if isinstance(self.model, str):
            self.model = self.model.strip().lower()
        _check(self.model in VARIANTS, "model", f"one of {', '.join(MODEL_NAMES)}")
        for key in ("sspcab", "simam"):
            _check(getattr(self, key) in (None, True, False), key, "true, false or null")
        _check(_is_int(self.epochs) and 1 <= self.epochs <= 100_000, "epochs", "an integer >= 1")
        _check(self.resize in RESIZE_MODES, "resize", f"one of {RESIZE_MODES}")
        _check(self.channels in (None, 1, 3), "channels", "1, 3 or null")
        _check(_is_num(self.lr) and 0 < self.lr <= 10, "lr", "a number > 0")
        _check(_is_int(self.batch) and 1 <= self.batch <= 1024, "batch",
               "an integer from 1 to 1024")
        _check(_is_num(self.sspcab_weight) and self.sspcab_weight >= 0, "sspcab_weight",
               "a number >= 0")
        _check(_is_int(self.width) and 8 <= self.width <= 2048, "width",
               "an integer from 8 to 2048")
        _check(_is_num(self.sigma) and 0 <= self.sigma <= 64, "sigma", "a number from 0 to 64")
        taps = self.map_taps
        _check(isinstance(taps, (list, tuple)) and 1 <= len(taps) <= 3
               and all(t in MAP_TAPS for t in taps) and len(set(taps)) == len(taps),
               "map_taps", f"a list of distinct teacher taps out of {list(MAP_TAPS)}")
        self.map_taps = tuple(t for t in MAP_TAPS if t in taps)
        _check(isinstance(self.include_unlabeled, bool), "include_unlabeled", "true or false")
        _check(_is_num(self.ok_percentile) and 50 <= self.ok_percentile <= 100, "ok_percentile",
               "a number from 50 to 100")
        _check(_is_int(self.cache_mb) and self.cache_mb >= 0, "cache_mb", "an integer >= 0")
        _check(_is_int(self.seed), "seed", "an integer")
        _check(self.device in DEVICES, "device", f"one of {DEVICES}")
        _check(_is_int(self.val_every) and self.val_every >= 0, "val_every", "an integer >= 0")
        _check(self.num_threads is None or (_is_int(self.num_threads) and self.num_threads >= 1),
               "num_threads", "an integer >= 1 or null")
        _check(self.max_minutes is None or (_is_num(self.max_minutes) and self.max_minutes > 0),
               "max_minutes", "a number > 0 or null")
        W, H = self.input_size
        _check(W % 16 == 0 and H % 16 == 0 and min(W, H) >= 32, "input_size",
               "[width, height], multiples of 16 and at least 32 for the anomaly model")
