"""Model kinds: the one place that says which family a model name belongs to.

The product has three kinds of model that share the job machinery (events, cancel,
resume, checkpoints, run folder), the review page and the export, but differ in what
they train on, their network, loss and evaluation (docs/ARCHITECTURE.md, "Model kinds"):

- ``segdec``: segmentation + decision networks (MixSup, MFFPA), mixed supervision;
- ``anomaly``: trained on good parts only (cold start);
- ``detector``: boxes with defect types.

A kind registers itself here with "module:attribute" entry points, loaded on first use,
so that importing this module (the CLI parser, the GUI) stays light. Callers ask
``kind_of_model(name)`` or ``kind_of_run(run_dir)`` and call the entry point instead
of spreading ``if model == ...`` through the code.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defect_studio.errors import UserError

TRAINS_ON = ("mixed", "ok_only", "boxes")


class UnknownModelError(UserError):
    """A model name that no registered kind knows."""


@dataclass(frozen=True)
class ModelKind:
    name: str                 # "segdec" | "anomaly" | "detector"
    title: str                # shown to the user
    models: tuple[str, ...]   # the model names of this kind (train --model NAME)
    trains_on: str            # one of TRAINS_ON
    # "module:attribute" entry points, imported on first use:
    train: str      # (project_root, config, *, run_id=None, resume=False, on_event=None,
                    #  should_stop=None) -> run_id
    predictor: str  # class: (run_dir, device="auto", num_threads=None) -> .predict(image)
    evaluate: str   # (project_root, run_id, split="test", *, device, batch_size, progress) -> dict
    config: str     # config dataclass: .preset(name, **overrides), .from_dict(d), .to_dict()
    export: str = ""  # (run_dir, onnx_path) -> manifest fields; "" = cannot be exported yet
    # what the GUI and the CLI show and offer, so that no caller lists models by hand:
    model_titles: tuple[tuple[str, str], ...] = ()  # (model name, title shown to the user)
    presets: tuple[str, ...] = ("quick", "thorough")  # names its config's .preset accepts
    outputs_boxes: bool = False  # its predictions carry typed boxes (the Review page draws them)

    @property
    def default_model(self) -> str:
        """The model this kind trains when none is named (the first of ``models``)."""
        return self.models[0]

    def model_title(self, model: str) -> str:
        return dict(self.model_titles).get(model, model)

    def load(self, entry: str) -> Any:
        """The object behind one of the entry-point fields ("train", "predictor", ...)."""
        return load_entry(getattr(self, entry))


_KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    if kind.trains_on not in TRAINS_ON:
        raise ValueError(f"trains_on must be one of {TRAINS_ON}, not {kind.trains_on!r}")
    clash = {m for k in _KINDS.values() if k.name != kind.name for m in k.models} & set(kind.models)
    if clash:
        raise ValueError(f"model name(s) {sorted(clash)} already belong to another kind")
    _KINDS[kind.name] = kind
    return kind


def kinds() -> list[ModelKind]:
    return list(_KINDS.values())


def all_model_names() -> tuple[str, ...]:
    return tuple(m for k in _KINDS.values() for m in k.models)


def kind_of_model(name: str) -> ModelKind:
    key = str(name).strip().lower()
    for kind in _KINDS.values():
        if key in kind.models:
            return kind
    raise UnknownModelError(f"unknown model {name!r}; choose one of: {', '.join(all_model_names())}")


def kind_of_run(run_dir: str | Path) -> ModelKind:
    """The kind of a run folder, from the "model" name in its config.json.

    A folder without a readable config is taken as ``segdec`` (the first kind, whose code
    gives the precise error about the folder).
    """
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
        model = config.get("model")
        if isinstance(model, dict):
            model = model.get("name")
        return kind_of_model(str(model))
    except (OSError, ValueError, AttributeError, UnknownModelError):
        return _KINDS["segdec"]


def load_entry(entry: str) -> Any:
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


register(ModelKind(
    name="segdec",
    title="Segmentation + decision (mixed supervision)",
    models=("mffpa", "mixsup", "mixsup+mff", "mixsup+pa"),
    trains_on="mixed",
    train="defect_studio.kinds.segdec.train:train",
    predictor="defect_studio.kinds.segdec.predictor:Predictor",
    evaluate="defect_studio.evaluation.evaluate:evaluate_run",
    config="defect_studio.kinds.segdec.config:TrainConfig",
    export="defect_studio.kinds.segdec.export:export_onnx",
    model_titles=(("mffpa", "MFFPA"), ("mixsup", "MixSup (baseline)"),
                  ("mixsup+mff", "MixSup + MFF (ablation)"), ("mixsup+pa", "MixSup + PA (ablation)")),
    presets=("quick", "thorough", "ksdd", "ksdd2", "dagm", "severstal"),
))

register(ModelKind(
    name="anomaly",
    title="Anomaly model (good parts only)",
    models=("anomaly", "anomaly-sspcab", "anomaly-kd"),
    trains_on="ok_only",
    train="defect_studio.kinds.anomaly.train:train",
    predictor="defect_studio.kinds.anomaly.predictor:AnomalyPredictor",
    evaluate="defect_studio.kinds.anomaly.evaluate:evaluate_anomaly_run",
    config="defect_studio.kinds.anomaly.config:AnomalyConfig",
    model_titles=(("anomaly", "Anomaly model (good parts only)"),
                  ("anomaly-sspcab", "Anomaly model without SimAM (ablation)"),
                  ("anomaly-kd", "Anomaly model, plain distillation (ablation)")),
))

register(ModelKind(
    name="detector",
    title="Defect boxes with types (relational enhancement detector)",
    models=("relational", "detector"),
    trains_on="boxes",
    train="defect_studio.kinds.detector.train:train",
    predictor="defect_studio.kinds.detector.predictor:DetectorPredictor",
    evaluate="defect_studio.kinds.detector.evaluate:evaluate_detector",
    config="defect_studio.kinds.detector.config:DetectorConfig",
    model_titles=(("relational", "Relational detector (boxes with types)"),
                  ("detector", "Plain two-stage detector (ablation)")),
    outputs_boxes=True,
))
