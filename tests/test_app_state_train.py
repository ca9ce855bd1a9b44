"""TrainState (defect_studio.app.train.state): the Train form's decisions without Qt, on a
real tiny project. No QApplication here."""

from __future__ import annotations

import json
import math
import time

import pytest

from defect_studio.app.train.state import (
    TrainState,
    failure_hint,
    final_metrics,
    is_interrupted,
    offered_models,
    preset_config,
)
from defect_studio.kinds import kind_of_model, kinds

USABLE = {"auto": None, "cpu": None, "cuda": "no CUDA GPU", "mps": "no Metal"}


def make_state(project=None) -> TrainState:
    st = TrainState(dict(USABLE))
    if project is not None:
        st.project = project
        st.apply_size()
    return st


def test_models_come_from_the_registry_without_ablations():
    offered = dict(offered_models())
    registry = {m: k.model_title(m) for k in kinds() for m in k.models}
    assert set(offered) <= set(registry)
    for kind in kinds():  # the main model of every kind is offered, under its title
        assert offered[kind.default_model] == kind.model_title(kind.default_model)
    left_out = set(registry) - set(offered)
    assert left_out and all("ablation" in registry[m].lower() for m in left_out)
    assert any(kind_of_model(m).trains_on == "boxes" for m in offered)  # the detector
    # every model/preset pair the form offers gives a valid config of the model's kind
    for model in offered:
        kind = kind_of_model(model)
        for preset in kind.presets:
            cfg = preset_config(preset, model)
            assert cfg.model == model and math.isfinite(cfg.lr) and cfg.lr > 0
            assert isinstance(cfg, kind.load("config"))


def test_a_model_gets_the_lowest_rate_of_its_own_presets():
    kind = kind_of_model("mixsup")
    config_class = kind.load("config")
    for preset in kind.presets:
        own = config_class.preset(preset)
        cfg = preset_config(preset, "mixsup")
        if own.model == "mixsup":
            assert cfg.lr == pytest.approx(own.lr)  # tuned for it: kept
        else:
            tuned = [config_class.preset(p).lr for p in kind.presets
                     if config_class.preset(p).model == "mixsup"]
            expected = min([own.lr, *tuned])
            assert cfg.lr == pytest.approx(expected)


def test_input_size_from_the_data_and_its_reason(demo_project):
    st = TrainState(dict(USABLE))
    assert st.size_choice() is None
    assert "once a project is open" in st.size_reason()
    st.project = demo_project
    st.apply_size()  # quick caps the long side at 128; the demo images are 64x64
    assert st.size == (64, 64)
    assert "median training image 64x64" in st.size_reason()
    st.size = (48, 64)
    assert st.size_reason().startswith("Set by hand; from the data it would be 64x64")
    st.apply_preset("ksdd2")  # a paper preset: its published size and epochs
    cfg = preset_config("ksdd2", st.model)
    assert st.size == tuple(cfg.input_size) and st.epochs == cfg.epochs
    assert "published" in st.size_reason()


def test_choosing_another_kind_switches_presets_and_fills_its_values(demo_project):
    st = make_state(demo_project)
    segdec = st.kind
    detector = next(m for m, _ in st.models if kind_of_model(m).trains_on == "boxes")
    assert st.set_model(detector) is True  # the preset list changed
    kind = kind_of_model(detector)
    assert st.presets == tuple(kind.presets) and st.preset in kind.presets
    own = kind.load("config").preset(st.preset)
    # the detector's presets size from the data too (issue 18): the demo has no boxes
    from defect_studio.training.sizing import choose_input_size

    size = choose_input_size(demo_project, own).size
    assert (st.epochs, st.size, st.lr) == (own.epochs, tuple(size), own.lr)
    assert max(size) <= own.max_side and "no boxes to measure" in st.size_reason()
    assert st.model == detector  # the chosen model stays (not the preset's)
    st.apply_preset("thorough")
    assert st.epochs == kind.load("config").preset("thorough").epochs
    with pytest.raises(ValueError):
        st.apply_preset("ksdd2")  # not a detector preset
    baseline = "mixsup"
    st.set_model(baseline)
    assert st.presets == tuple(segdec.presets) and st.preset == "thorough"
    assert st.lr == pytest.approx(preset_config("thorough", baseline).lr)


def test_request_and_overrides_from_the_form(demo_project, tmp_path):
    st = make_state(demo_project)
    st.apply_preset("quick")
    assert preset_config("quick", st.model).val_every == 0
    st.epochs, st.lr, st.device = 20, 0.0123, "cpu"
    # no validation in the preset: about 5 points over the run
    assert st.overrides() == {"lr": 0.0123, "val_every": 4}
    assert "every 4 epochs" in st.val_title()
    args = st.request(tmp_path / "o.json").to_args()
    for opt, value in (("--model", st.model), ("--preset", "quick"), ("--epochs", "20"),
                       ("--size", "64x64"), ("--device", "cpu"),
                       ("--config", str(tmp_path / "o.json"))):
        assert args[args.index(opt) + 1] == value
    assert args[args.index("--project") + 1] == str(demo_project.root)
    assert st.run_config().epochs == 20 and st.run_config().area_epochs is False
    # the preset's own epochs: not sent, so `train` applies the preset's epochs rule (a run
    # on crops gets more epochs, segdec/crops.py)
    st.epochs = preset_config("quick", st.model).epochs
    assert "--epochs" not in st.request(tmp_path / "o.json").to_args()
    assert st.run_config().area_epochs is True
    # the Epochs field says when the run trains another count (the estimate's plan)
    assert st.epochs_note(3 * st.epochs) == f"  (trains {3 * st.epochs}: crops, see Time)"
    for planned in (st.epochs, 0, -1):
        assert st.epochs_note(planned) == ""
    st.epochs += 1  # an epoch count set on the form is what the run trains
    assert st.epochs_note(3 * st.epochs) == ""
    resume = st.resume_request("r1").to_args()
    assert resume[resume.index("--resume") + 1] == "r1" and "--model" not in resume
    # a kind whose preset validates has nothing to add
    detector = next(m for m, _ in st.models if kind_of_model(m).trains_on == "boxes")
    st.set_model(detector)
    assert st.overrides() == {"lr": pytest.approx(st.lr)}


def test_settings_round_trip_ignores_what_is_unknown_or_unusable(demo_project):
    st = make_state(demo_project)
    st.set_model("mixsup")
    st.epochs, st.size, st.lr, st.device = 3, (96, 80), 0.002, "cpu"
    saved = json.loads(json.dumps(st.settings()))  # as kept in the project
    other = make_state(demo_project)
    other.restore(saved)
    assert other.settings() == saved
    bad = dict(saved, model="no-such-model", preset="dagm-not", lr=float("nan"), device="cuda",
               epochs=True, width="wide")
    other.restore(bad)
    assert other.settings() == saved  # nothing of the bad values was taken


def test_cold_start_proposes_the_good_parts_model(demo_project):
    st = make_state(demo_project)
    assert st.propose_cold_start() is None  # the demo has defective labels
    first = st.model
    ids = [r.id for r in demo_project.images(label="defective")]
    for i in ids:
        demo_project.delete_mask(i)
    demo_project.set_labels([(i, "unlabeled") for i in ids])
    note = st.propose_cold_start()
    assert st.model != first and kind_of_model(st.model).trains_on == "ok_only"
    assert st.model == kind_of_model(st.model).default_model
    ok = demo_project.counts()["ok"]
    assert f"from the {ok} OK images" in note
    assert st.cold_start_model({"defective": 0, "ok": 0, "unlabeled": 0}) is None


def test_finished_metrics_failure_hint_and_interrupted_runs(tmp_path):
    fm = final_metrics({"metrics": {"ap": 0.5, "auc": float("nan"), "epochs": 4, "split": "val",
                                    "n": 10, "n_pos": 3}, "threshold": 0.25})
    assert (fm.x, fm.ap, fm.auc) == (4.0, 0.5, None)
    assert fm.text == (" AP 0.500 on the validation images (10, 3 defective); "
                       "decision threshold 0.250.")
    assert final_metrics({"metrics": {}}) is None
    assert "try 0.005" in failure_hint("loss became NaN", 0.05)
    assert failure_hint("disk full", 0.05) == "disk full"

    class Run:
        def __init__(self, run_id, state):
            self.id, self.state, self.path = run_id, state, tmp_path / run_id

    run = Run("r", "running")
    run.path.mkdir()
    assert not is_interrupted(run)  # no checkpoint to go on from
    (run.path / "checkpoint.pt").write_bytes(b"x")
    (run.path / "status.json").write_text("{}")
    assert not is_interrupted(run, now=time.time())  # alive
    assert is_interrupted(run, now=time.time() + 3600)  # nothing written for an hour
    assert not is_interrupted(run, running_here="r", now=time.time() + 3600)
    assert is_interrupted(Run("r", "cancelled"))


def test_stars_at_the_kept_epoch_and_the_good_parts_hint():
    """Issue 16: the final model's stars sit at the epoch whose weights were kept; a failure
    for want of defective images names the model that needs none."""
    from defect_studio.app.train.state import good_parts_hint

    fm = final_metrics({"metrics": {"ap": 0.7, "auc": 0.8, "epochs": 10, "best_epoch": 6}})
    assert (fm.x, fm.epochs) == (6.0, 10.0)
    assert "weights of epoch 6 of 10" in fm.text
    msg = good_parts_hint("the train split has 20 OK images but no defective one: ...")
    title = next(k.model_title(k.default_model) for k in kinds() if k.trains_on == "ok_only")
    assert f"train the {title}" in msg
    assert good_parts_hint("disk full") == "disk full"


def test_active_run_choice_keeps_what_the_user_set(trained_project):
    """A finished run is made active only when none is set; offered when better on
    validation; never replaces the active run by itself."""
    import shutil

    from defect_studio.app.train.state import active_run_choice

    p = trained_project
    for name, ap in (("better", 2.0), ("worse", -1.0)):
        shutil.copytree(p.run_dir("tiny"), p.runs_dir / name)
        path = p.runs_dir / name / "metrics.json"
        m = json.loads(path.read_text())
        m["ap"] = ap
        path.write_text(json.dumps(m))
    assert active_run_choice(p, "better").action == "offer"
    keep = active_run_choice(p, "worse")
    assert keep.action == "keep" and "stays tiny" in keep.text
    p.set_active_run(None)
    assert active_run_choice(p, "worse").action == "set"
    shutil.rmtree(p.runs_dir / "better" / "model.pt", ignore_errors=True)
    (p.runs_dir / "better" / "model.pt").unlink(missing_ok=True)
    p.set_active_run("tiny")
    shutil.rmtree(p.run_dir("tiny"))  # the active run's folder is gone
    assert active_run_choice(p, "worse").action == "set"


def test_cold_start_is_undone_when_defects_are_labelled(demo_project):
    st = make_state(demo_project)
    first = st.model
    ids = [r.id for r in demo_project.images(label="defective")]
    for i in ids:
        demo_project.delete_mask(i)
    demo_project.set_labels([(i, "unlabeled") for i in ids])
    assert st.propose_cold_start() and st.cold_start_from == first
    assert st.settings()["cold_start_from"] == first  # kept with the project's form
    again = make_state(demo_project)
    again.restore(st.settings())
    assert again.cold_start_from == first
    demo_project.set_label(ids[0], "defective")
    assert "selected again" in again.propose_cold_start()
    assert again.model == first and again.cold_start_from is None
    assert again.propose_cold_start() is None
