"""EvaluateState (defect_studio.app.evaluate.state): which run is shown, the threshold
(best F1, for an escape rate, saved), the confusion cells, on a real tiny trained run.
No QApplication here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from defect_studio.app.evaluate.state import CELLS, EvaluateState, evaluate_and_load, on_grid
from defect_studio.project import Project


@pytest.fixture(scope="module")
def _evaluated_template(_trained_template, tmp_path_factory):
    """The trained tiny project with run "tiny" evaluated on its test split (once)."""
    from gui_support import copy_project

    root = copy_project(_trained_template, tmp_path_factory.mktemp("evaluated") / "demo")
    ev = evaluate_and_load(root, "tiny", "test")
    assert ev is not None and ev.scores.size > 0
    return root


@pytest.fixture
def state(_evaluated_template, tmp_path):
    from gui_support import copy_project

    project = Project.open(copy_project(_evaluated_template, tmp_path / "proj"))
    project.set_active_run("tiny")
    st = EvaluateState()
    st.project = project
    yield st
    project.close()


def f1_at(y: np.ndarray, s: np.ndarray, t: float) -> float:
    ng = s >= t
    tp = int(np.sum(ng & (y == 1)))
    fp = int(np.sum(ng & (y == 0)))
    fn = int(np.sum(~ng & (y == 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def test_the_evaluation_is_read_back_and_starts_at_the_saved_threshold(state):
    assert state.runs() == [("tiny", "tiny  (active)")]
    ev = state.load("tiny")
    test_ids = {r.id for r in state.project.images(split="test")}
    assert ev.split == "test" and set(ev.image_ids) == test_ids
    assert ev.y_true.size == ev.scores.size == len(test_ids)
    labels = {r.id: r.label for r in state.project.images(split="test")}
    assert [labels[i] == "defective" for i in ev.image_ids] == [bool(v) for v in ev.y_true]
    assert state.set_evaluation(ev)
    saved = json.loads((state.run_dir("tiny") / "threshold.json").read_text())["threshold"]
    assert state.threshold == pytest.approx(saved)
    assert not EvaluateState().set_evaluation(None)


def test_which_run_is_shown(state):
    listed = ["newer", "tiny", "older"]
    assert state.run_to_show(None, listed) == "tiny"  # first read: the active run
    assert state.run_to_show("older", listed) == "older"  # the one shown stays
    assert state.run_to_show("gone", listed) == "tiny"  # else the active run
    state.project.set_active_run(None)
    assert state.run_to_show(None, listed) == "newer"  # else the newest
    # the active run changed since the list was last read: it is shown
    state.project.set_active_run("tiny")
    assert state.run_to_show("older", listed) == "tiny"
    assert state.run_to_show("older", listed) == "older"
    assert state.run_to_show("x", []) is None


def test_best_f1_is_the_best_threshold_over_all_scores(state):
    ev = state.load("tiny")
    state.set_evaluation(ev)
    t = state.best_f1_threshold()
    assert t is not None
    state.set_threshold(t)
    c = state.counts()
    best = max(f1_at(ev.y_true, ev.scores, float(s)) for s in ev.scores)
    assert c["f1"] == pytest.approx(best)
    assert f1_at(ev.y_true, ev.scores, t) == pytest.approx(best)


@pytest.mark.parametrize("fraction", [0.0, 0.34])
def test_threshold_for_an_escape_rate_is_the_highest_that_keeps_it(state, fraction):
    ev = state.load("tiny")
    state.set_evaluation(ev)
    n_pos = int(ev.y_true.sum())
    t = state.threshold_for_escape_rate(fraction)
    assert state.threshold == t
    assert state.counts()["fn"] <= fraction * n_pos
    # the threshold is on the page's grid, at or just below the score it was chosen at
    higher = sorted(float(s) for s in ev.scores if on_grid(s) > t)
    if higher:  # any higher threshold lets more defects through
        assert state.counts(higher[0])["fn"] > fraction * n_pos


def test_confusion_cells_list_their_images_worst_first(state):
    ev = state.load("tiny")
    state.set_evaluation(ev)
    state.set_threshold(float(np.median(ev.scores)))
    c = state.counts()
    seen = []
    for cell in CELLS:
        rows = state.cell_rows(cell)
        assert len(rows) == c[cell]
        want = "defective" if cell in ("tp", "fn") else "ok"
        assert all(r.label == want for r in rows)
        ng = cell in ("tp", "fp")
        assert all((r.score >= state.threshold) == ng for r in rows)
        scores = [r.score for r in rows]
        assert scores == sorted(scores, reverse=cell in ("tp", "fp"))
        seen += [r.image_id for r in rows]
    assert sorted(seen) == sorted(ev.image_ids)  # every image in exactly one cell
    with pytest.raises(ValueError):
        state.cell_rows("xx")


def test_saved_threshold_is_written_and_shown(state):
    from defect_studio.inference.prediction import read_threshold

    state.set_evaluation(state.load("tiny"))
    state.set_threshold(0.4321)
    assert state.save_threshold("tiny") == pytest.approx(0.4321)
    assert read_threshold(state.run_dir("tiny")) == (pytest.approx(0.4321), "user")
    assert state.evaluation.threshold_source == "user"
    assert "threshold 0.432100 (user)" in state.summary()[0]
    # read again, the run starts at it
    fresh = EvaluateState()
    fresh.project = state.project
    fresh.set_evaluation(fresh.load("tiny"))
    assert fresh.threshold == pytest.approx(0.4321)


def test_rates_and_markers_when_nothing_is_called_ng(state):
    state.set_evaluation(state.load("tiny"))
    state.set_threshold(2.0)  # clamped to 1: above every score
    assert state.threshold == 1.0
    c = state.counts()
    assert c["tp"] + c["fp"] == 0
    text = state.rates_text(c)
    assert "no part called NG" in text and f"({c['fn']} of {c['fn']})" in text
    (recall, precision), (fpr, tpr) = state.markers(c)
    assert (recall, precision, fpr, tpr) == (0.0, 1.0, 0.0, 0.0)
