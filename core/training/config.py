"""The base of every model kind's training config (defect_studio.kinds).

``KindConfig`` holds what the configs of all kinds share: the settings every training job
reads (seed, device, num_threads, val_every, max_minutes), the ``extra`` keys saved beside
the settings in config.json, and the construction and checks that behave the same for
every kind: ``preset``, ``from_dict``, ``from_file``, ``from_args`` (the `train` command
line), ``to_dict`` and ``replace``. A kind's config is a dataclass that subclasses it,
adds its own fields and ``validate``, and sets the class attributes below.

The validation helpers (``check``, ``is_int``, ``is_num``, ``size_value``,
``parse_size``) give every kind the same wording ("bad training setting 'lr': must be
..."); ``refuse_options`` turns an option of the command line that a kind ignores into
an error. Importing this module stays light (no torch).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from defect_studio.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")
RESIZE_MODES = ("resize", "pad")

# `train` options every kind reads: argparse attribute -> config field
COMMON_ARGS: dict[str, str] = {
    "model": "model", "epochs": "epochs", "device": "device", "seed": "seed", "lr": "lr",
    "threads": "num_threads",
}


class TrainConfigError(UserError):
    """A training configuration has an unknown key or a bad value."""


def is_int(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    """A finite int or float that is not a bool."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def check(ok: Any, key: str, allowed: str) -> None:
    """TrainConfigError "bad training setting KEY: must be ALLOWED" unless ``ok``."""
    if not ok:
        raise TrainConfigError(f"bad training setting {key!r}: must be {allowed}")


def parse_size(text: str) -> tuple[int, int]:
    """Parse "WxH" (or a single number for a square) into (W, H)
    (defect_studio.units.parse_size)."""
    from defect_studio.units import parse_size as _parse

    return size_value(list(_parse(text, TrainConfigError, "160x160")))


def size_value(value: Any) -> tuple[int, int]:
    """An input size setting ("WxH" or [W, H], each 8..8192) as a (W, H) tuple."""
    if isinstance(value, str):
        return parse_size(value)
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(is_int(v) and 8 <= v <= 8192 for v in value))
    check(ok, "input_size", "[width, height], each an integer between 8 and 8192")
    return int(value[0]), int(value[1])


def refuse_options(args: Any, options: tuple[str, ...], why: str) -> None:
    """TrainConfigError "--OPTION <why>" for the first of ``options`` (``--pixel-labels``...)
    that the `train` command line set: an option another model kind ignores is an error,
    not silently dropped."""
    for opt in options:
        if getattr(args, opt.lstrip("-").replace("-", "_"), None) is not None:
            raise TrainConfigError(f"{opt} {why}")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The JSON object of settings in a --config file (TrainConfigError when unreadable)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TrainConfigError(f"cannot read config file {path}: {e}") from None
    if not isinstance(data, dict):
        raise TrainConfigError(f"{path} must hold a JSON object of setting: value")
    return data


@dataclass
class KindConfig:
    """Settings shared by the training configs of every model kind (see the module doc).

    The shared fields are keyword-only, so a kind's own fields keep their order; a kind's
    ``validate`` checks its own fields and calls ``super().validate()``.
    """

    seed: int = field(default=0, kw_only=True)
    device: str = field(default="auto", kw_only=True)  # one of DEVICES
    num_threads: int | None = field(default=None, kw_only=True)  # CPU threads; None: torch's
    val_every: int = field(default=1, kw_only=True)  # 0: validate only at the end
    max_minutes: float | None = field(default=None, kw_only=True)  # time budget
    # keys saved beside the settings in config.json (model_spec, created, ...)
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    # -- what a kind sets (class attributes, not settings) --------------------------------
    PRESET_SETTINGS: ClassVar[Any] = {}  # preset name -> settings (``preset``)
    DEFAULT_PRESET: ClassVar[Any] = "quick"  # the app's and `train`'s default preset
    EXTRA_KEYS: ClassVar[Any] = ("model_spec", "created")  # saved keys that are not settings
    SETTINGS_NOUN: ClassVar[Any] = "training"  # "unknown <noun> setting(s)" in messages
    # `train` options read besides COMMON_ARGS and --size (same name)
    ARG_FIELDS: ClassVar[Any] = ()
    REFUSED_ARGS: ClassVar[Any] = ()  # `train` options this kind refuses (e.g. "--pixel-labels")
    REFUSED_WHY: ClassVar[Any] = "does not apply to this model"

    def __post_init__(self) -> None:
        self.validate()

    # -- construction -------------------------------------------------------------------
    @classmethod
    def setting_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Any:
        """A named starting point (``PRESET_SETTINGS``); overrides win over its values."""
        if name not in cls.PRESET_SETTINGS:
            raise TrainConfigError(
                f"unknown preset {name!r}; choose one of {', '.join(cls.PRESET_SETTINGS)}")
        return cls.from_dict({**cls.PRESET_SETTINGS[name], **overrides})

    @classmethod
    def preset_for_model(cls, name: str, model: str | None = None) -> Any:
        """Preset ``name`` for ``model`` (None: the preset's own model), as the app's Train
        page and `train` build it.

        A preset's learning rate was tuned for its own model; for another model the lower
        rate of a preset of this kind made for that model is taken (if there is one), so
        every model/preset pair trains.
        """
        if model is None:
            return cls.preset(name)
        cfg = cls.preset(name, model=model)
        if cls.preset(name).model != model:
            rates = [c.lr for c in (cls.preset(p) for p in cls.PRESET_SETTINGS)
                     if c.model == model]
            if rates and min(rates) < cfg.lr:
                cfg = cfg.replace(lr=min(rates))
        return cfg

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Build from a dict (e.g. config.json); unknown keys are an error, not ignored."""
        if not isinstance(data, dict):
            raise TrainConfigError("a training config must be a JSON object of field: value")
        names = set(cls.setting_names())
        unknown = sorted(k for k in data if k not in names and k not in cls.EXTRA_KEYS)
        if unknown:
            raise TrainConfigError(
                f"unknown {cls.SETTINGS_NOUN} setting(s): {', '.join(unknown)}; "
                f"known settings are: {', '.join(sorted(names))}")
        values = {k: v for k, v in data.items() if k in names}
        if isinstance(values.get("model"), dict):  # a saved "model" block: {"name": ...}
            values["model"] = values["model"].get("name")
        try:
            cfg = cls(**values)
        except TypeError as e:  # pragma: no cover - guarded by the key check above
            raise TrainConfigError(str(e)) from e
        cfg.extra = {k: data[k] for k in cls.EXTRA_KEYS if k in data}
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> Any:
        """Read a JSON file of this config's settings."""
        return cls.from_dict(read_config_file(path))

    @classmethod
    def preset_of_args(cls, args: Any) -> str | None:
        """The preset the `train` command line starts from: --preset; with neither it nor
        --config, the app's default (``DEFAULT_PRESET``), so that `train` trains what the
        Train button trains; None for a --config file alone, read as ``from_file`` reads it
        (on the dataclass defaults), so a saved or shared config trains the same from the
        CLI and from Python."""
        return getattr(args, "preset", None) or (
            None if getattr(args, "config", None) else cls.DEFAULT_PRESET)

    @classmethod
    def from_args(cls, args: Any) -> Any:
        """From the `train` command's arguments: --preset (``DEFAULT_PRESET`` when neither
        it nor --config is given), then --config FILE, then the single options. An option
        this kind ignores (``REFUSED_ARGS``) is an error."""
        refuse_options(args, tuple(cls.REFUSED_ARGS), cls.REFUSED_WHY)
        name = cls.preset_of_args(args)
        data: dict[str, Any] = {} if name is None else cls.preset_for_model(
            name, getattr(args, "model", None)).to_dict()
        if getattr(args, "config", None):
            file_data = read_config_file(args.config)
            # names the file's bad key or value; the dict keeps only what the file set,
            # so a preset's values survive for the fields the file leaves out
            cls.from_dict({**data, **file_data})
            data.update(file_data)
        overrides = {fld: getattr(args, opt, None) for opt, fld in COMMON_ARGS.items()}
        overrides.update({fld: getattr(args, fld, None) for fld in cls.ARG_FIELDS})
        size = getattr(args, "size", None)
        overrides["input_size"] = parse_size(size) if size else None
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    # -- use ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the settings: the kind's own first, then the shared ones;
        tuples become lists."""
        shared = [f.name for f in dataclasses.fields(KindConfig) if f.name != "extra"]
        names = [n for n in self.setting_names() if n not in shared] + shared
        return {n: _plain(getattr(self, n)) for n in names}

    def replace(self, **changes: Any) -> Any:
        """A validated copy with some settings changed."""
        cfg = type(self).from_dict({**self.to_dict(), **changes})
        cfg.extra = dict(self.extra)
        return cfg

    def with_epochs(self, epochs: int) -> Any:
        """A copy that trains exactly ``epochs`` epochs, as when the user set them (`train
        --epochs`, the Train page's field); a kind whose rules change the epoch count turns
        them off here."""
        return self.replace(epochs=epochs)

    def model_switches(self) -> dict[str, Any]:
        """Keyword switches of the kind's network builder that the config sets ({} here)."""
        return {}

    def defect_rule(self) -> Any:
        """How the kind's network must see the defects, for the input size from the data
        (defect_studio.training.sizing.DefectRule; the segmentation kind's here)."""
        from defect_studio.training.sizing import DefectRule

        return DefectRule()

    def validate(self) -> None:
        """Check the shared settings; TrainConfigError names the field and what is allowed."""
        check(is_int(self.seed), "seed", "an integer")
        check(self.device in DEVICES, "device", f"one of {DEVICES}")
        check(is_int(self.val_every) and self.val_every >= 0, "val_every", "an integer >= 0")
        check(self.num_threads is None or (is_int(self.num_threads) and self.num_threads >= 1),
              "num_threads", "an integer >= 1 or null")
        check(self.max_minutes is None or (is_num(self.max_minutes) and self.max_minutes > 0),
              "max_minutes", "a number > 0 or null")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
