"""Model kinds: the one place that says which family a model name belongs to.

The product has three kinds of model that share the job machinery (events, cancel,
resume, checkpoints, run folder), the review page and the export, but differ in what
they train on, their network, loss and evaluation (docs/ARCHITECTURE.md, "Model kinds"):

- ``segdec``: segmentation + decision networks (MixSup, MFFPA), mixed supervision;
- ``anomaly``: trained on good parts only (cold start);
- ``detector``: boxes with defect types.

Each kind declares its ``ModelKind`` (the protocol: defect_studio.kinds.base) in its own
folder, ``<kind>/kind.py``, with "module:attribute" entry points loaded on first use, so
that importing this module (the CLI parser, the GUI) stays light; the registry collects
them (KIND_MODULES). Callers ask ``kind_of_model(name)`` or ``kind_of_run(run_dir)`` and
call the entry point or hook (``kind.load("evaluate")``, ``kind.config_from_args(args)``)
instead of spreading ``if model == ...`` through the code. The kinds never import one
another; the kind-neutral packages never import a kind's modules.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from defect_studio.errors import UserError
from defect_studio.kinds.base import TRAINS_ON, ModelKind, load_entry

__all__ = ["ModelKind", "TRAINS_ON", "UnknownModelError", "register", "kinds", "all_model_names",
           "kind_of_model", "kind_of_run", "default_model", "load_entry"]

# The kinds, in the order the GUI and the CLI offer them (the first one is the default):
# each module declares ``KIND``. Named as strings so that importing the registry does not
# make a kind-neutral package depend on a kind's code.
KIND_MODULES = (
    "defect_studio.kinds.segdec.kind",
    "defect_studio.kinds.anomaly.kind",
    "defect_studio.kinds.detector.kind",
)


class UnknownModelError(UserError):
    """A model name that no registered kind knows."""


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


def default_model() -> str:
    """The model trained when none is named: the first kind's default model."""
    return kinds()[0].default_model


def kind_of_model(name: str) -> ModelKind:
    key = str(name).strip().lower()
    for kind in _KINDS.values():
        if key in kind.models:
            return kind
    raise UnknownModelError(f"unknown model {name!r}; choose one of: "
                            f"{', '.join(all_model_names())}")


def kind_of_run(run_dir: str | Path) -> ModelKind:
    """The kind of a run folder, from the "model" name in its config.json.

    A folder without a readable config is taken as the first kind (whose code gives the
    precise error about the folder).
    """
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
        model = config.get("model")
        if isinstance(model, dict):
            model = model.get("name")
        return kind_of_model(str(model))
    except (OSError, ValueError, AttributeError, UnknownModelError):
        return kinds()[0]


for _module in KIND_MODULES:
    register(importlib.import_module(_module).KIND)
