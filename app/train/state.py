"""The Train page's state and decisions, without Qt (TrainPage only shows them).

What the form offers and fills in comes from the kind registry (``defect_studio.kinds``):
the models (every model whose title does not say "ablation": the main model of each
kind and the MixSup baseline), the presets of the chosen model's kind, the learning
rate that works for the chosen model, the input size and why, how often the run
validates, the cold-start proposal, and the `defect-studio train` request.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defect_studio.app.common.train_request import TrainRequest
from defect_studio.kinds import ModelKind, kind_of_model, kinds

DEVICES = (("Auto", "auto"), ("CPU", "cpu"), ("CUDA", "cuda"), ("Apple MPS", "mps"))
SETTINGS_KEY = "ui.train_settings"
VALIDATION_POINTS = 5  # a preset without validation still gets about this many points
MODEL_FILES = ("model.safetensors", "model.pt")
CHECKPOINT_FILE = "checkpoint.pt"
STALE_RUNNING_S = 15 * 60  # "running" with no sign of life for this long: interrupted
UPSCALE_WARN = 4.0  # warn when the input is this many times the images' median side


# -- models and presets (from the registry) -------------------------------------------------
def offered_models() -> list[tuple[str, str]]:
    """(model, title) of the models the form offers, kind by kind: all but the ablations."""
    return [(m, kind.model_title(m)) for kind in kinds() for m in kind.models
            if "ablation" not in kind.model_title(m).lower()]


def preset_config(preset: str, model: str) -> Any:
    """The config of `preset` for `model` (the config class of the model's kind), built as
    `train --preset PRESET --model MODEL` builds it (KindConfig.preset_for_model: another
    model than the preset's own gets the lower learning rate of a preset made for it)."""
    return kind_of_model(model).load("config").preset_for_model(preset, model)


def device_availability() -> dict[str, str | None]:
    """device -> None when usable, else the reason it is not."""
    import torch

    out: dict[str, str | None] = {"auto": None, "cpu": None}
    out["cuda"] = None if torch.cuda.is_available() else (
        "no CUDA GPU found (or this PyTorch build has no CUDA support)")
    mps = getattr(torch.backends, "mps", None)
    out["mps"] = None if (mps is not None and mps.is_available()) else (
        "Apple Metal (MPS) is only available on Apple-silicon Macs")
    return out


# -- runs ------------------------------------------------------------------------------------
def has_model(run) -> bool:
    """A finished run with its model file: the only kind that can be made active."""
    return run.state == "finished" and any((Path(run.path) / f).is_file() for f in MODEL_FILES)


def is_interrupted(run, running_here: str | None = None, now: float | None = None) -> bool:
    """Stopped before the end with a checkpoint to go on from: cancelled, failed, marked
    "interrupted", or still "running" though nothing has written to it for a long time
    (the training process was killed)."""
    path = Path(run.path)
    if run.id == running_here or not (path / CHECKPOINT_FILE).is_file():
        return False
    if run.state in ("interrupted", "cancelled", "failed"):
        return True
    if run.state == "running":
        try:
            last = max((path / n).stat().st_mtime for n in ("status.json", "events.jsonl")
                       if (path / n).exists())
        except ValueError:
            return True
        return (now if now is not None else time.time()) - last > STALE_RUNNING_S
    return False


def metric_value(metrics: dict | None, name: str) -> float | None:
    """`metrics["ap"]`, or the first nested dict's value ("test"/"val" blocks), or None."""
    if not isinstance(metrics, dict):
        return None
    v = metrics.get(name)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    for key in ("test", "val", "validation"):
        sub = metrics.get(key)
        if isinstance(sub, dict) and isinstance(sub.get(name), (int, float)):
            return float(sub[name])
    return None


@dataclass(frozen=True)
class FinalMetrics:
    """The finished model's AP / AUC (None: not given), where to plot them, and the text."""

    x: float  # the epoch whose weights the model kept
    ap: float | None
    auc: float | None
    text: str
    epochs: float | None = None  # epochs the run trained


def final_metrics(event: dict, last_x: float | None = None) -> FinalMetrics | None:
    """What a "finished" event (or a run's final curves) says about the model; None when it
    has neither AP nor AUC. `last_x`: the last loss point's epoch (when the event has none)."""
    m = event.get("metrics") if isinstance(event.get("metrics"), dict) else {}

    def num(key):
        v = m.get(key)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    ap, auc = num("ap"), num("auc")
    if ap is None and auc is None:
        return None
    epochs = num("epochs")
    # the stars sit at the epoch whose weights were kept (the best on validation), not
    # at the last one (issue 16)
    best = num("best_epoch")
    x = best or epochs or (last_x if last_x is not None else 1.0)
    parts = [f"{name} {v:.3f}" for name, v in (("AP", ap), ("ROC AUC", auc)) if v is not None]
    if best is not None and epochs is not None and best != epochs:
        parts[-1] += f" (weights of epoch {best:g} of {epochs:g})"
    split = {"val": "validation", "train": "training"}.get(m.get("split"), m.get("split"))
    where = f" on the {split} images" if split else ""
    if isinstance(m.get("n"), int):
        where += f" ({m['n']}, {m.get('n_pos', '?')} defective)"
    thr = event.get("threshold")
    thr_text = (f"; decision threshold {float(thr):.3f}"
                if isinstance(thr, (int, float)) and math.isfinite(thr) else "")
    return FinalMetrics(x, ap, auc, f" {', '.join(parts)}{where}{thr_text}.", epochs)


@dataclass(frozen=True)
class ActiveRunChoice:
    """What a finished run does to the active run (issue 16): "set" (none is set, or the
    active one has no model), "offer" (it is better on validation: ask), "keep"."""

    action: str
    text: str


def _validation_score(run) -> tuple[str, float] | None:
    for name, title in (("ap", "AP"), ("auc", "ROC AUC")):
        v = metric_value(getattr(run, "metrics", None), name)
        if v is not None and math.isfinite(v):
            return title, v
    return None


def active_run_choice(project, run_id: str) -> ActiveRunChoice:
    """A finished run becomes the active run only when none is set (or the active one
    cannot be used); when it scores better on validation than the active one, it is
    offered; otherwise the active run the user set stays."""
    from defect_studio.errors import UserError

    active = project.active_run()
    if not active or active == run_id:
        return ActiveRunChoice("set", f"Run {run_id} is now the active run.")
    try:
        current = project.run(active)
    except (UserError, OSError):
        current = None
    if current is None or not has_model(current):
        return ActiveRunChoice("set", f"Run {run_id} is now the active run (the active run "
                                      f"{active} has no usable model).")
    new = _validation_score(project.run(run_id))
    old = _validation_score(current)
    if new is not None and (old is None or (new[0] == old[0] and new[1] > old[1])):
        than = f" ({old[0]} {old[1]:.3f})" if old is not None else ""
        return ActiveRunChoice(
            "offer", f"Run {run_id} scores {new[0]} {new[1]:.3f} on validation, better than "
                     f"the active run {active}{than}.")
    return ActiveRunChoice(
        "keep", f"The active run stays {active}; select run {run_id} in the table and press "
                "Set active to use it.")


def failure_hint(message: str, lr: float) -> str:
    """The failure message, with where to change the learning rate in this form after a NaN."""
    if "nan" in message.lower():
        # The core message names the CLI setting; say where it is in this form.
        message += (f"\n\nIn this form: set Learning rate lower (now {lr:g}; try {lr / 10:g}) "
                    "and press Train again.")
    return message


# -- the form ----------------------------------------------------------------------------------
class TrainState:
    """The Train form as plain values, and what follows from them.

    `project` is the open Project (or None). `availability` maps each device of DEVICES to
    None (usable) or the reason it is not (default: asked of torch).
    """

    def __init__(self, availability: dict[str, str | None] | None = None) -> None:
        self.project = None
        self.models: list[tuple[str, str]] = offered_models()
        self.availability = availability if availability is not None else device_availability()
        self.model = self.models[0][0]
        self.preset = self.kind.load("config").DEFAULT_PRESET  # as `train`
        self.epochs = 1
        self.size: tuple[int, int] = (64, 64)
        self.lr = 0.01
        self.device = "auto"
        self._size_cache: tuple[tuple, Any] | None = None
        # The model the cold-start proposal replaced (None: the user chose the model): put
        # back when defects are labelled again, so the proposal follows the labels.
        self.cold_start_from: str | None = None
        self.apply_preset(self.preset)

    # -- what is offered -------------------------------------------------------------------
    @property
    def kind(self) -> ModelKind:
        return kind_of_model(self.model)

    @property
    def presets(self) -> tuple[str, ...]:
        """The presets of the chosen model's kind."""
        return tuple(self.kind.presets)

    def offers(self, model: str | None) -> bool:
        return any(m == model for m, _ in self.models)

    def device_usable(self, device: str | None) -> bool:
        return device in self.availability and self.availability[device] is None

    def config(self) -> Any:
        """The config the chosen preset gives the chosen model."""
        return preset_config(self.preset, self.model)

    # -- changes ---------------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        """A preset fills model (the one it was tuned for, when offered), epochs, input size
        and learning rate; all stay editable."""
        if name not in self.presets:
            raise ValueError(f"preset {name!r} is not one of {', '.join(self.presets)}")
        self.preset = name
        own = self.kind.load("config").preset(name).model
        if self.offers(own):
            self.model = own
        self._fill_from_preset()

    def set_model(self, model: str) -> bool:
        """Choose a model: it gets the learning rate that works for it with the preset. A
        model of another kind gets that kind's presets (the same name where it has one) and
        the preset's epochs and size. True when the list of presets changed."""
        if not self.offers(model):
            raise ValueError(f"model {model!r} is not offered")
        old_kind = self.kind
        self.model = model
        if self.kind.name == old_kind.name:
            self.lr = float(self.config().lr)
            return False
        if self.preset not in self.presets:
            self.preset = self.presets[0]
        self._fill_from_preset()
        return tuple(old_kind.presets) != self.presets

    def choose_model(self, model: str) -> bool:
        """The user chose a model: it stays, whatever the labels (see set_model)."""
        self.cold_start_from = None
        return self.set_model(model)

    def _fill_from_preset(self) -> None:
        cfg = self.config()
        self.epochs = int(cfg.epochs)
        self.apply_size()
        self.lr = float(cfg.lr)

    # -- input size ------------------------------------------------------------------------
    def size_choice(self):
        """The size the preset would train at on the open project, and why (or None)."""
        key = (self.preset, self.model, id(self.project))
        if self._size_cache is not None and self._size_cache[0] == key:
            return self._size_cache[1]  # the spins change often; the data does not
        choice = self._size_choice_uncached()
        self._size_cache = (key, choice)
        return choice

    def _size_choice_uncached(self):
        import sqlite3

        from defect_studio.errors import UserError
        from defect_studio.training.sizing import SizeChoice, choose_input_size

        cfg = self.config()
        if cfg.input_size is not None:
            w, h = cfg.input_size
            return SizeChoice((w, h), f"input {w}x{h}: the {self.preset} preset's published size")
        if self.project is None:
            return None
        try:
            return choose_input_size(self.project, cfg)
        except (UserError, OSError, sqlite3.Error):
            return None

    def data_median(self) -> tuple[float, float] | None:
        """The median (width, height) of the labelled training images (None: no project or
        no such image); cached like the size choice."""
        import sqlite3

        import numpy as np

        from defect_studio.errors import UserError

        key = id(self.project)
        cached = getattr(self, "_median_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        median = None
        if self.project is not None:
            try:
                recs = [r for r in self.project.images(split="train")
                        if r.label in ("ok", "defective") and r.width > 0 and r.height > 0]
            except (UserError, OSError, sqlite3.Error):
                recs = []
            if recs:
                median = (float(np.median([r.width for r in recs])),
                          float(np.median([r.height for r in recs])))
        self._median_cache = (key, median)
        return median

    def upscale_warning(self) -> str:
        """A warning when the input size is many times the training images' size (an 11x
        upscale adds no detail and costs time), else ""."""
        median = self.data_median()
        if median is None:
            return ""
        factor = min(self.size[0] / median[0], self.size[1] / median[1])
        if factor < UPSCALE_WARN:
            return ""
        return (f" Warning: the training images (median {median[0]:g}x{median[1]:g}) are "
                f"upscaled {factor:.0f}\u00d7 to this size; that adds no detail and makes "
                "training slower: a smaller input size is enough.")

    def apply_size(self) -> None:
        """The input size from the preset or the data (a preset or project change)."""
        self._size_cache = None  # look at the data again
        self._median_cache = None
        choice = self.size_choice()
        if choice is not None:
            self.size = (int(choice.size[0]), int(choice.size[1]))

    def size_reason(self) -> str:
        """Why the form's size (issue 7): the data's median size within the preset's cap."""
        choice = self.size_choice()
        if choice is None:
            return "Sized from the training images once a project is open."
        warn = self.upscale_warning()
        if tuple(choice.size) == tuple(self.size):
            return choice.reason + ("." if warn else "") + warn
        w, h = choice.size
        if self.config().input_size is not None:  # the preset's fixed size, not the data's
            return f"Set by hand; the {self.preset} preset's size is {w}x{h}." + warn
        return (f"Set by hand; from the data it would be {w}x{h} "
                f"({choice.reason.split(': ', 1)[-1]}).") + warn

    # -- validation ------------------------------------------------------------------------
    def val_every(self) -> int:
        """How often the run validates: the preset's, or about 5 points over the run."""
        every = int(self.config().val_every)
        return every if every else max(1, int(self.epochs) // VALIDATION_POINTS)

    def val_title(self) -> str:
        every = self.val_every()
        # An empty Validation plot during a run must not look broken: say when points come.
        when = ("after the last epoch" if not every
                else f"every {every} epochs" if every > 1 else "every epoch")
        return f"Validation ({when}; \u2605 = final model)"

    # -- settings kept with the project ----------------------------------------------------
    def settings(self) -> dict:
        """The form as plain values (also kept with the project)."""
        out = {"model": self.model, "preset": self.preset, "epochs": int(self.epochs),
               "width": int(self.size[0]), "height": int(self.size[1]), "lr": float(self.lr),
               "device": self.device}
        if self.cold_start_from:
            out["cold_start_from"] = self.cold_start_from
        return out

    def restore(self, saved: dict) -> None:
        """The form as kept with the project; what is unknown or unusable is left as is."""
        if self.offers(saved.get("model")) and saved["model"] != self.model:
            self.set_model(saved["model"])
        if saved.get("preset") in self.presets:
            self.preset = saved["preset"]
        for key in ("epochs", "width", "height"):
            v = saved.get(key)
            if isinstance(v, int) and not isinstance(v, bool):
                if key == "epochs":
                    self.epochs = v
                else:
                    w, h = self.size
                    self.size = (v, h) if key == "width" else (w, v)
        lr = saved.get("lr")
        if isinstance(lr, (int, float)) and not isinstance(lr, bool) \
                and math.isfinite(lr) and lr > 0:
            self.lr = float(lr)
        if self.device_usable(saved.get("device")):
            self.device = saved["device"]
        before = saved.get("cold_start_from")
        self.cold_start_from = before if self.offers(before) else None

    # -- the request -----------------------------------------------------------------------
    def overrides(self) -> dict:
        """The form's settings that have no `train` option (the --config file)."""
        out: dict[str, Any] = {"lr": float(self.lr)}
        if not self.config().val_every:
            # the validation plot fills while training: about 5 points over the run
            out["val_every"] = self.val_every()
        return out

    def request(self, config_path: Path | None) -> TrainRequest:
        """The `defect-studio train` request of the form (`config_path`: the overrides file)."""
        if self.project is None:
            raise ValueError("no project is open")
        return TrainRequest(project_root=Path(self.project.root), model=self.model,
                            preset=self.preset, epochs=self.request_epochs(),
                            size=self.request_size(),
                            device=self.device, config_path=config_path)

    # -- crops and the time estimate (issue 18) ----------------------------------------------
    def request_size(self) -> tuple[int, int] | None:
        """The --size of the request: None when the form keeps the size the data chose with
        crops (`train` then chooses the same size and trains on its crops)."""
        choice = self.size_choice()
        if choice is not None and choice.crop is not None \
                and tuple(choice.size) == tuple(self.size):
            return None
        return (int(self.size[0]), int(self.size[1]))

    def request_epochs(self) -> int | None:
        """The --epochs of the request: None when the form keeps the preset's epochs (`train`
        then applies the preset's epochs rule: a crop run gets more, segdec/crops.py)."""
        if int(self.epochs) == int(self.config().epochs):
            return None
        return int(self.epochs)

    def run_config(self) -> Any:
        """The config a run of the form would start with (for the time estimate)."""
        size = self.request_size()
        epochs, cfg = self.request_epochs(), self.config()
        if epochs is not None:  # an epoch count set on the form wins (as `train --epochs`)
            cfg = cfg.with_epochs(epochs)
        return cfg.replace(
            device=self.device, input_size=None if size is None else list(size),
            **{k: v for k, v in self.overrides().items() if k in ("lr", "val_every")})

    def time_estimate_job(self, fresh: bool = False) -> Any:
        """A function (for a worker thread: it opens its own read-only project) that returns
        the estimate's line for the form and the epochs the run will train (a crop run of
        the preset's epochs gets more: the epochs rule), or None when the model's kind has
        no probe. ``fresh``: time the steps again instead of using the cached figures."""
        if self.project is None or not self.kind.time_probe:
            return None
        root, config = Path(self.project.root), self.run_config()

        def job() -> tuple[str, int]:
            from defect_studio.project import Project
            from defect_studio.training.estimate import estimate_time

            with Project.open(root, readonly=True) as project:
                estimate = estimate_time(project, config, use_cache=not fresh)
            text = estimate.text()
            again = " Estimate times them again." if estimate.measured_at is not None else ""
            return text[:1].upper() + text[1:] + "." + again, int(estimate.plan.epochs)
        return job

    def epochs_note(self, planned: int) -> str:
        """The Epochs field's suffix when the run will train another count than the field
        shows (the epochs rule of a crop run), else ""."""
        if planned <= 0 or planned == int(self.epochs) or self.request_epochs() is not None:
            return ""
        return f"  (trains {planned}: crops, see Time)"

    def resume_request(self, run_id: str) -> TrainRequest:
        """Go on training an interrupted run (its saved settings) on the form's device."""
        if self.project is None:
            raise ValueError("no project is open")
        return TrainRequest(project_root=Path(self.project.root), resume=run_id,
                            device=self.device)

    # -- cold start ------------------------------------------------------------------------
    def cold_start_model(self, counts: dict) -> str | None:
        """With images but none labelled defective: the model of the kind that trains on good
        parts only (its default model), else None."""
        if counts.get("defective", 0) > 0 or counts.get("ok", 0) + counts.get("unlabeled", 0) == 0:
            return None
        for kind in kinds():
            if kind.trains_on == "ok_only" and self.offers(kind.default_model):
                return kind.default_model
        return None

    def propose_cold_start(self) -> str | None:
        """Make the model follow the labels (issue 16): with no image labelled defective, the
        model of the kind that trains on good parts only; once images are labelled defective
        again, the model the proposal replaced. The status line saying why, or None when
        nothing was changed. A model the user chose by hand is replaced only when it cannot
        train on the labels (no defective image)."""
        if self.project is None:
            return None
        counts = self.project.counts()
        model = self.cold_start_model(counts)
        if model is not None:
            if self.kind.trains_on == "ok_only":
                return None  # already a good-parts model
            self.cold_start_from = self.model
            self.set_model(model)
            title = dict(self.models)[model]
            return (f"No image is labelled defective yet, so the {title} is selected: it "
                    f"learns from the {counts['ok']} OK images, then proposes the first "
                    "defects to label (Review page, and 'Likely defects first' on the Label "
                    "page).")
        back = self.cold_start_from
        if counts.get("defective", 0) > 0 and back and self.kind.trains_on == "ok_only":
            self.cold_start_from = None
            self.set_model(back)
            return (f"{counts['defective']} images are labelled defective now, so the "
                    f"{dict(self.models)[back]} is selected again (it learns from OK and "
                    "defective images).")
        return None


def good_parts_hint(message: str) -> str:
    """A failure for want of defective images names the model that needs none."""
    if "no defective" not in message.lower():
        return message
    for kind in kinds():
        if kind.trains_on == "ok_only":
            title = kind.model_title(kind.default_model)
            return (message + f"\n\nWith good parts only, train the {title}: choose it under "
                    "Model; it proposes the first defects to label.")
    return message
