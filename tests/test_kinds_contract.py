"""Every model kind through the same public calls (defect_studio.kinds.base.ModelKind).

For each kind: a tiny project, then ``defect_studio.train`` -> a run folder with model and
metrics, ``defect_studio.evaluate`` -> a metrics dict with "ap", ``load_predictor(run).predict``
-> a Prediction (score in [0, 1], heatmap of the image's size), ``export_model`` -> a package
folder with package.json. Also: the protocol each kind declares, and the import boundaries
(no kind imports another; the kind-neutral packages reach a kind only through the registry).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import defect_studio
from defect_studio.kinds import default_model, kind_of_model, kind_of_run, kinds

CORE = Path(defect_studio.__file__).resolve().parent
KIND_NAMES = ("segdec", "anomaly", "detector")

# A tiny, fast config per kind (a few seconds of training on the CPU).
TINY = {
    "segdec": dict(model="mffpa", epochs=1, input_size=(32, 32), device="cpu", num_threads=1,
                   val_every=0),
    "anomaly": dict(model="anomaly", epochs=1, input_size=(64, 64), batch=8, width=32,
                    sigma=2.0, device="cpu", num_threads=1, val_every=0),
    "detector": dict(model="detector", epochs=1, input_size=(64, 64), batch_size=4,
                     pretrained=False, device="cpu", num_threads=1, val_every=0),
}
PROJECT = {"segdec": "demo", "anomaly": "demo", "detector": "boxes"}

@pytest.fixture(scope="module")
def trained(request, _demo_template, tmp_path_factory):
    """(kind name, project root, run id): a tiny project with one tiny finished run."""
    name = request.param
    root = tmp_path_factory.mktemp(f"contract_{name}") / "proj"
    if PROJECT[name] == "demo":
        shutil.copytree(_demo_template, root, ignore=shutil.ignore_patterns("project.lock"))
    else:
        from detection_fixtures import make_box_project

        make_box_project(root)
    config = kind_of_model(TINY[name]["model"]).build_config(**TINY[name])
    run_id = defect_studio.train(root, config)
    return name, root, run_id


def _params() -> list:
    return list(KIND_NAMES)


@pytest.mark.parametrize("trained", _params(), indirect=True)
def test_train_gives_a_run_folder_with_model_and_metrics(trained):
    name, root, run_id = trained
    run = root / "runs" / run_id
    for f in ("config.json", "model.pt", "metrics.json", "threshold.json", "status.json"):
        assert (run / f).is_file(), f
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert "ap" in json.loads((run / "metrics.json").read_text())
    assert kind_of_run(run).name == name


@pytest.mark.parametrize("trained", _params(), indirect=True)
def test_evaluate_gives_metrics_with_ap(trained):
    _, root, run_id = trained
    result = defect_studio.evaluate(root, run_id, split="all", device="cpu")
    assert result["run_id"] == run_id and result["n"] > 0 and result["n_pos"] > 0
    assert isinstance(result["ap"], float) and 0.0 <= result["ap"] <= 1.0
    assert result["ap"] == result["ap_sklearn"]


@pytest.mark.parametrize("trained", _params(), indirect=True)
def test_load_predictor_predicts_a_score_and_a_heatmap_of_the_image_size(trained):
    from defect_studio.inference.prediction import Prediction
    from defect_studio.inference.predictor import RunPredictor
    from defect_studio.project import Project

    _, root, run_id = trained
    with Project.open(root, readonly=True) as p:
        rec = p.images()[0]
        image = p.read_image(rec)
    predictor = defect_studio.load_predictor(root / "runs" / run_id, device="cpu")
    assert isinstance(predictor, RunPredictor) and predictor.run_id == run_id
    pred = predictor.predict(image)
    assert isinstance(pred, Prediction)
    assert 0.0 <= pred.score <= 1.0 and pred.is_ng == (pred.score >= predictor.threshold)
    assert pred.heatmap.shape == image.shape[:2]
    assert np.isfinite(pred.heatmap).all()


@pytest.mark.parametrize("trained", _params(), indirect=True)
def test_export_model_writes_a_package_that_scores_like_the_run(trained, tmp_path):
    """export_model, then load_predictor on the package (the torch-free runtime)."""
    from defect_studio.project import Project

    name, root, run_id = trained
    out = defect_studio.export_model(root / "runs" / run_id, tmp_path / "pkg", fmt="onnx")
    manifest = json.loads((Path(out) / "package.json").read_text())
    assert manifest["kind"] == name and manifest["run_id"] == run_id
    with Project.open(root, readonly=True) as p:
        images = [p.read_image(r) for r in p.images()[:3]]
    run = defect_studio.load_predictor(root / "runs" / run_id, device="cpu")
    package = defect_studio.load_predictor(out)
    assert type(package).__module__ == "defect_studio.deploy.runtime"
    for image in images:
        a, b = run.predict(image), package.predict(image)
        assert abs(a.score - b.score) < 1e-4, (name, a.score, b.score)
        assert b.heatmap.shape == image.shape[:2]
        # equal but for a few pixels: a 1-epoch detector gives its 50 boxes per image
        # (the cap) nearly tied scores, so which box is the 50th can differ by 1e-7 between
        # torch and ONNX Runtime (tests/test_deploy_kinds.py compares boxes one by one)
        assert float(np.mean(np.abs(a.heatmap - b.heatmap) > 1e-3)) < 0.05, name


@pytest.mark.parametrize("trained", ["segdec"], indirect=True)
def test_a_kind_whose_exporter_is_missing_cannot_be_exported_yet(trained, tmp_path,
                                                                 monkeypatch):
    import defect_studio.kinds as registry
    from defect_studio.deploy.export import ExportError, export_model

    _, root, run_id = trained
    seg = kind_of_model("mffpa")
    for entry in ("", "defect_studio.kinds.segdec.no_such_exporter:export_onnx"):
        fake = dataclasses.replace(seg, export=entry)
        monkeypatch.setattr(registry, "kind_of_run", lambda _run, fake=fake: fake)
        with pytest.raises(ExportError, match="cannot be exported yet"):
            export_model(root / "runs" / run_id, tmp_path / "pkg")
        assert not (tmp_path / "pkg").exists()


# -- the protocol ------------------------------------------------------------------------

@pytest.mark.parametrize("name", KIND_NAMES)
def test_each_kind_declares_its_model_kind_and_its_entries_fit(name):
    import importlib

    from defect_studio.inference.predictor import RunPredictor
    from defect_studio.training.config import KindConfig

    kind = importlib.import_module(f"defect_studio.kinds.{name}.kind").KIND
    assert kind in kinds() and kind.name == name
    assert all(callable(kind.load(e)) for e in ("train", "evaluate"))
    assert issubclass(kind.load("predictor"), RunPredictor)
    config_cls = kind.load("config")
    assert issubclass(config_cls, KindConfig)
    for preset in kind.presets:  # every preset the GUI offers builds and round-trips
        cfg = kind.build_config(preset, seed=3)
        assert cfg.seed == 3 and cfg.model == kind.default_model
        assert config_cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert {m for m, _ in kind.model_titles} == set(kind.models)
    assert kind.export.startswith(f"defect_studio.kinds.{name}.")


def test_config_from_args_goes_through_the_kind_of_the_model():
    from defect_studio.cli import build_parser
    from defect_studio.training.cli import config_from_args

    parse = build_parser().parse_args
    assert config_from_args(parse(["train", "--project", "P"])).model == default_model()
    for name in KIND_NAMES:
        kind = next(k for k in kinds() if k.name == name)
        cfg = config_from_args(parse(["train", "--project", "P", "--model", kind.models[-1],
                                      "--epochs", "2", "--seed", "5"]))
        assert isinstance(cfg, kind.load("config"))
        assert (cfg.model, cfg.epochs, cfg.seed) == (kind.models[-1], 2, 5)


# -- import boundaries ---------------------------------------------------------------------

# That no kind imports another, and that the kind-neutral packages reach a kind only
# through the registry, is checked by the import contracts (tests/test_architecture.py).
