"""AnomalyConfig: every setting of an anomaly-model training run (saved as the run's config.json).

It has the fields the shared preprocessing reads (``input_size``, ``resize``, ``channels``),
so defect_studio.training.data.preprocess_image and defect_studio.preprocess.heatmap_to_image
work with it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# the same checks and messages as every training setting
from defect_studio.training.config import (
    RESIZE_MODES,
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

# model name -> default switches
VARIANTS: dict[str, dict[str, bool]] = {
    "anomaly": {"sspcab": True, "simam": True},
    "anomaly-sspcab": {"sspcab": True, "simam": False},
    "anomaly-kd": {"sspcab": False, "simam": False},
}
MODEL_NAMES = tuple(VARIANTS)
PRESETS = ("quick", "thorough")
MAP_TAPS = ("1/4", "1/8", "1/16")


@dataclass
class AnomalyConfig(KindConfig):
    """Settings of one anomaly run (docs/models.md, "Anomaly model"); the shared settings
    and the construction come from KindConfig (defect_studio.training.config)."""

    # input_size None: from the data (defect_studio.training.sizing, ``defect_rule`` below)
    PRESET_SETTINGS = {"quick": dict(epochs=10, input_size=None, max_side=128),
                       "thorough": dict(epochs=40, input_size=None, max_side=256)}
    SETTINGS_NOUN = "anomaly-model"
    ARG_FIELDS = ("include_unlabeled",)
    # options of mixed-supervision training that mean nothing here
    REFUSED_ARGS = ("--pixel-labels", "--augment", "--cpu-bf16")
    REFUSED_WHY = "does not apply to the anomaly model (it trains on good images only)"

    model: str = "anomaly"
    sspcab: bool | None = None  # None: the model name's default
    simam: bool | None = None
    epochs: int = 20
    input_size: tuple[int, int] | None = None  # (W, H), multiples of 16; None: from the data
    # input size from the data: the parts' median size, long side at most max_side, raised
    # when the labelled defects need it; then training on crops of max_side (crop_size)
    max_side: int | None = 256
    crop_size: tuple[int, int] | None = None  # (W, H): train on crops of OK images this big
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

    def switches(self) -> dict[str, bool]:
        """sspcab / simam after the name's defaults and the overrides."""
        sw = dict(VARIANTS[self.model])
        for key in ("sspcab", "simam"):
            if getattr(self, key) is not None:
                sw[key] = getattr(self, key)
        return sw

    def defect_rule(self) -> Any:
        """The anomaly model's size rule (defect_studio.training.sizing.DefectRule).

        The anomaly map is the teacher/student disagreement at the map taps (default 1/8
        and 1/16); the student can only fail where the teacher's features change. A line
        changes a tap's features more as it widens, up to about a quarter of the tap's
        cell: measured on good magnetic tiles (benchmarks/anomaly_line_visibility.py,
        lines of contrast 0.1), the 1/8 tap's change reaches its full size at 2 px, the
        1/16 tap's is 0.88 of it at 2 px, 0.95 at 4 px, full at 6 px; thinner lines fade
        (0.49 at 1 px, 0.10 at 0.5 px at 1/16). So the small defects keep a quarter of the
        coarsest map tap's stride: ``min_px`` = 4 px by default (2 px with taps 1/4 and
        1/8 only). The model trains on OK images only, so the defects are measured on the
        defective images of the train and validation splits (exact masks first, else
        boxes); the test split stays unseen. Large parts: training on crops of OK images
        (every crop of a good part is good)."""
        from defect_studio.training.sizing import DefectRule

        coarsest = max(int(t.split("/")[1]) for t in self.map_taps)
        return DefectRule(min_px=coarsest / 4, splits=("train", "val"))

    def validate(self) -> None:
        self.input_size = None if self.input_size is None else _size(self.input_size)
        self.crop_size = None if self.crop_size is None else _size(self.crop_size)
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
        for key in ("input_size", "crop_size"):
            size = getattr(self, key)
            if size is not None:
                W, H = size
                _check(W % 16 == 0 and H % 16 == 0 and min(W, H) >= 32, key,
                       "[width, height], multiples of 16 and at least 32 for the anomaly model")
        _check(self.max_side is None or (_is_int(self.max_side) and 32 <= self.max_side <= 8192),
               "max_side", "an integer between 32 and 8192, or null (no cap)")
        super().validate()


def input_rule(model: str, **switches: Any) -> tuple[int, int]:
    """(multiple, minimum side) of the anomaly model's input (the kind's ``input_rule``
    entry): the teacher's coarsest map is 1/16, and the model needs at least 32 px."""
    return 16, 32
