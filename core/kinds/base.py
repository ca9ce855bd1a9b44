"""The ModelKind protocol: what a model kind declares so that callers never branch on it.

Each kind declares one ``ModelKind`` in its own folder (``defect_studio.kinds.<kind>.kind``,
a light module: no torch at import); the registry (``defect_studio.kinds``) collects them.
The entry points are "module:attribute" strings, imported on first use
(``kind.load("train")``), so the registry, the CLI parser and the GUI stay light and the
kind-neutral packages (training, inference, evaluation, deploy) reach a kind's code only
through them. Every kind's entry of one name has the same signature:

- ``train``: ``(project_root, config, *, run_id=None, resume=False, on_event=None,
  should_stop=None) -> run_id`` (defect_studio.training.runjob gives the job machinery);
- ``predictor``: a class ``(run_dir, device="auto", num_threads=None)`` subclassing
  defect_studio.inference.predictor.RunPredictor (``.predict(image)`` -> Prediction);
- ``evaluate``: ``(project_root, run_id, split="test", *, device="auto", batch_size=8,
  progress=None) -> dict`` (at least the keys of defect_studio.evaluation.evaluate.evaluate_run);
- ``config``: the config class, a subclass of defect_studio.training.config.KindConfig
  (``.preset(name, **overrides)``, ``.from_dict(d)``, ``.from_args(args)``, ``.to_dict()``);
- ``export``: ``(run_dir, onnx_path) -> dict`` of manifest fields (at least "model" and
  "preprocess"); "" when the kind cannot be exported;
- ``input_rule``: ``(model, **switches) -> (multiple, minimum side)`` of the network's
  input, for the input size from the data (defect_studio.training.sizing); "" when any
  size fits (multiple 1);
- ``time_probe``: ``(project, config) -> defect_studio.training.estimate.RunPlan``: the
  steps a run repeats, each with a function that runs one (for the time estimate before
  training); "" when the kind has none;
- ``summary_lines``: ``(evaluation result) -> list[str]``, readable lines of the parts of
  an evaluation result that are the kind's own (the `evaluate` command); "" when none.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

TRAINS_ON = ("mixed", "ok_only", "boxes")


def load_entry(entry: str) -> Any:
    """The object behind a "module:attribute" entry point."""
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ModelKind:
    """One model kind: its names, what it trains on, and its entry points (module doc)."""

    name: str                 # the kind's name, e.g. its folder in defect_studio.kinds
    title: str                # shown to the user
    models: tuple[str, ...]   # the model names of this kind (train --model NAME)
    trains_on: str            # one of TRAINS_ON: "mixed" (labels + some masks), "ok_only", "boxes"
    # "module:attribute" entry points, imported on first use (signatures: module doc):
    train: str
    predictor: str
    evaluate: str
    config: str
    export: str = ""  # "" = cannot be exported yet
    # what the GUI and the CLI show and offer, so that no caller lists models by hand:
    model_titles: tuple[tuple[str, str], ...] = ()  # (model name, title shown to the user)
    presets: tuple[str, ...] = ("quick", "thorough")  # names its config's .preset accepts
    outputs_boxes: bool = False  # its predictions carry typed boxes (the Review page draws them)
    data_parallel: bool = False  # its train takes part in `train --gpus N` (training.distributed)
    batch_setting: str = "batch"  # its config's field of the images per optimizer step
    input_rule: str = ""  # "" = any input size (multiple 1, minimum 1)
    summary_lines: str = ""  # "" = the evaluation result has no part of this kind's own
    time_probe: str = ""  # "" = no estimate of the training time before a run
    # what its training events' loss_seg and loss_dec are (the loss plot's legend)
    loss_names: tuple[str, str] = ("segmentation", "decision")

    @property
    def default_model(self) -> str:
        """The model this kind trains when none is named (the first of ``models``)."""
        return self.models[0]

    def model_title(self, model: str) -> str:
        return dict(self.model_titles).get(model, model)

    def load(self, entry: str) -> Any:
        """The object behind one of the entry-point fields ("train", "predictor", ...)."""
        return load_entry(getattr(self, entry))

    # -- hooks, so that callers never branch on a kind --------------------------------
    def config_from_args(self, args: Any) -> Any:
        """This kind's config from the `train` command's arguments (--preset, --config, options)."""
        return self.load("config").from_args(args)

    def build_config(self, preset: str | None = None, **overrides: Any) -> Any:
        """This kind's config: a preset (or the defaults) with some settings changed."""
        cls = self.load("config")
        if preset is not None:
            return cls.preset(preset, **overrides)
        return cls.from_dict(overrides)

    def evaluation_lines(self, result: dict) -> list[str]:
        """Readable lines of the kind's own parts of an evaluation result ([] if none)."""
        return list(self.load("summary_lines")(result)) if self.summary_lines else []

    def input_size_rule(self, model: str, **switches: Any) -> tuple[int, int]:
        """(multiple, minimum side) of the input of ``model`` (see ``input_rule``)."""
        if not self.input_rule:
            return 1, 1
        return tuple(self.load("input_rule")(model, **switches))  # type: ignore[return-value]
