"""Defect Studio: label product images, train a surface-defect model, review and deploy it.

The import package is ``defect_studio`` (the repository's ``core/`` folder; the desktop app
is ``defect_studio.app``, its data files ``defect_studio.resources``). The short Python API::

    from defect_studio import Project, train, evaluate, load_predictor, export_model

    project = Project.open("my-project")             # or Project.create / open_or_create
    run_id = train("my-project", TrainConfig.preset("quick"))
    metrics = evaluate("my-project", run_id, split="test")
    predictor = load_predictor("my-project/runs/" + run_id)
    result = predictor.predict(image)                 # .score, .is_ng, .heatmap
    export_model("my-project/runs/" + run_id, "package-folder", fmt="onnx")

Every name is imported on first use, so ``import defect_studio`` stays light (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute", imported on first use
_API = {
    "Project": "defect_studio.project.store:Project",
    "TrainConfig": "defect_studio.kinds.segdec.config:TrainConfig",
    "train": "defect_studio.training:train",
    "evaluate": "defect_studio.evaluation:evaluate_run",
    "load_predictor": "defect_studio.inference:load_predictor",
    "export_model": "defect_studio.deploy.export:export_model",
    "UserError": "defect_studio.errors:UserError",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    entry = _API.get(name)
    if entry is None:
        raise AttributeError(f"module 'defect_studio' has no attribute {name!r}")
    module, _, attr = entry.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
