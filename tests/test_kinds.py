"""The model-kind registry: names map to kinds, runs to their kind, entry points load."""

import json

import pytest

from defect_studio.kinds import (
    ModelKind,
    UnknownModelError,
    kind_of_model,
    kind_of_run,
    kinds,
    register,
)
from defect_studio.kinds.segdec.models import MODEL_NAMES


def test_every_segdec_model_name_is_registered():
    for name in MODEL_NAMES:
        assert kind_of_model(name).name == "segdec"
    assert kind_of_model(" MFFPA ").name == "segdec"


def test_unknown_model_is_a_user_error():
    with pytest.raises(UnknownModelError, match="unknown model 'resnet'"):
        kind_of_model("resnet")


def test_kind_of_run_reads_config(tmp_path):
    run = tmp_path / "r1"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "mixsup"}))
    assert kind_of_run(run).name == "segdec"
    # missing, corrupt or hostile configs fall back to the segdec kind (which reports the error)
    (run / "config.json").write_text("{not json")
    assert kind_of_run(run).name == "segdec"
    (run / "config.json").write_text(json.dumps({"model": ["x"]}))
    assert kind_of_run(run).name == "segdec"
    assert kind_of_run(tmp_path / "missing").name == "segdec"


def test_entry_points_load():
    from defect_studio.kinds.segdec.predictor import Predictor
    from defect_studio.kinds.segdec.train import train

    seg = kind_of_model("mffpa")
    assert seg.load("predictor") is Predictor
    assert seg.load("train") is train
    assert callable(seg.load("evaluate"))


def test_register_refuses_a_name_taken_by_another_kind():
    with pytest.raises(ValueError, match="already belong"):
        register(ModelKind("other", "x", ("mffpa",), "mixed", "a:b", "a:b", "a:b", "a:b"))
    with pytest.raises(ValueError, match="trains_on"):
        register(ModelKind("other", "x", ("zz",), "pixels", "a:b", "a:b", "a:b", "a:b"))
    assert [k.name for k in kinds()].count("other") == 0
