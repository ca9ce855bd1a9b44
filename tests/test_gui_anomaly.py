"""Cold start in the GUI: the Train page proposes the anomaly model when nothing is labelled
defective; Review -> "Propose mask" -> corrected on the Label page -> saved; "Likely defects
first" sorts the unlabeled images by anomaly score."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gui_support import train_one_tiny_epoch
from PySide6.QtCore import Qt

from defect_studio.project import Project


def good_parts_only(project) -> list[int]:
    """Make the demo project a cold start: the defective images become unlabeled, maskless."""
    ids = [r.id for r in project.images(label="defective")]
    for i in ids:
        project.delete_mask(i)
    project.set_labels([(i, "unlabeled") for i in ids])
    assert project.counts()["defective"] == 0
    return ids


@pytest.fixture
def cold_project(demo_project_dir):
    p = Project.open(demo_project_dir)
    hidden = good_parts_only(p)
    yield p, hidden
    p.close()


def test_train_page_proposes_and_trains_the_anomaly_model(qtbot, cold_project, dialogs):
    from defect_studio.app.train.page import TrainPage

    project, _ = cold_project
    for r in project.images(split="train", label="ok")[4:]:  # one small step of training
        project.set_split(r.id, "test")
    panel = TrainPage()
    qtbot.addWidget(panel)
    panel.set_project(project)
    assert panel.model_combo.currentData() == "anomaly"
    assert "good parts only" in panel.status_label.text()
    assert panel.lr_spin.value() == pytest.approx(0.005)  # the anomaly preset's rate
    run = train_one_tiny_epoch(qtbot, panel, dialogs)
    run_id = run.id
    assert run.state == "finished" and run.model == "anomaly"
    assert project.active_run() == run_id
    config = json.loads((project.runs_dir / run_id / "config.json").read_text())
    assert config["model"] == "anomaly" and config["input_size"] == [64, 64]
    # the run's note (here: too few good images to set a percentile threshold on) is on the
    # page, as `train` prints it
    note = json.loads((project.runs_dir / run_id / "status.json").read_text())["message"]
    assert "good" in note and f"Note: {note.rstrip('.')}." in panel.status_label.text()
    assert config["lr"] == pytest.approx(0.005)


def test_train_page_keeps_the_form_when_defects_are_labelled(qtbot, demo_project_dir):
    from defect_studio.app.train.page import TrainPage

    with Project.open(demo_project_dir) as project:
        panel = TrainPage()
        qtbot.addWidget(panel)
        panel.set_project(project)
        assert panel.model_combo.currentData() != "anomaly"


@pytest.fixture
def cold_window(qtbot, cold_project):
    """The main window on the cold-start project with a tiny finished anomaly run active."""
    from defect_studio.app.shell.window import MainWindow
    from defect_studio.kinds.anomaly.config import AnomalyConfig
    from defect_studio.training import train

    project, hidden = cold_project
    root = project.root
    project.close()
    cfg = AnomalyConfig(epochs=1, input_size=(64, 64), device="cpu", num_threads=1, width=32,
                        sigma=2.0, val_every=0)
    train(root, cfg, run_id="cold")
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1100, 750)
    with qtbot.waitExposed(win):
        win.show()
    assert win.open_project(root)
    win.project.set_active_run("cold")
    win._on_active_run_changed()
    yield win, hidden
    win.close()


def test_propose_mask_is_corrected_then_saved(qtbot, cold_window, dialogs):
    win, hidden = cold_window
    review = win.pages["Review"]
    with qtbot.waitSignal(review.prediction_ended, timeout=120_000):
        assert review.predict("unlabeled")
    it = review.current_item()
    assert it is not None and it.image_id in hidden and it.heatmap is not None
    project = win.project
    assert project.load_mask(it.image_id) is None
    qtbot.mouseClick(review.propose_button, Qt.MouseButton.LeftButton)

    page = win.label_page
    assert win.tabs.currentWidget() is page and page.current_image_id() == it.image_id
    assert page.proposal.pending and page.proposal.isVisible()
    draft = page.canvas.mask().copy()
    assert draft.any()
    # the draft is not stored until Save, also after the inspector edits it
    page.canvas.set_tool("eraser")
    page.canvas.set_brush_size(6)
    ys, xs = np.nonzero(draft)
    spot = page.canvas.mapFromScene(float(xs[0]) + 0.5, float(ys[0]) + 0.5)
    qtbot.mouseClick(page.canvas.viewport(), Qt.MouseButton.LeftButton, pos=spot)
    edited = page.canvas.mask().copy()
    assert edited.sum() < draft.sum()
    assert project.load_mask(it.image_id) is None
    assert project.image(it.image_id).label == "unlabeled"

    qtbot.mouseClick(page.proposal.save_button, Qt.MouseButton.LeftButton)
    assert not page.proposal.pending and not page.proposal.isVisible()
    stored = project.load_mask(it.image_id)
    assert stored is not None and np.array_equal(stored > 0, edited > 0)
    rec = project.image(it.image_id)
    assert rec.label == "defective" and rec.has_mask and dialogs == []


def test_discarded_proposal_leaves_the_store_unchanged(qtbot, cold_window):
    win, hidden = cold_window
    page = win.label_page
    image_id = hidden[0]
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 10:20] = 255
    win.show_proposed_mask(image_id, mask)
    assert page.proposal.pending and page.canvas.mask()[15, 15] > 0
    qtbot.mouseClick(page.proposal.discard_button, Qt.MouseButton.LeftButton)
    assert not page.proposal.pending
    assert not page.canvas.mask().any()
    assert win.project.load_mask(image_id) is None
    assert win.project.image(image_id).label == "unlabeled"


def test_likely_defects_first_sorts_unlabeled_by_anomaly_score(qtbot, cold_window):
    win, hidden = cold_window
    page = win.label_page
    button = page.likely_defects_button
    assert button.start()
    qtbot.waitUntil(lambda: button.worker is None, timeout=120_000)
    b = page.browser
    stored = win.project.predictions("cold")
    unlabeled = {r.id for r in win.project.images(label="unlabeled")}
    assert unlabeled <= set(stored)  # scored and kept with the run
    ids = b.model.image_ids()
    assert set(ids) == unlabeled and b.model.filter_name == "unlabeled"
    assert b.model.sort_name == "score"
    scores = [stored[i][0] for i in ids]
    assert scores == sorted(scores, reverse=True)
    assert page.current_image_id() == ids[0]


def test_propose_mask_draft_from_a_heatmap():
    from defect_studio.errors import UserError
    from defect_studio.inference.propose import propose_mask

    heat = np.zeros((40, 40), np.float32)
    heat[5:15, 5:15] = 0.9
    heat[30, 30] = 0.95  # a one-pixel speck is dropped
    heat[8, 8] = 0.2  # a hole inside the region is filled
    mask, used = propose_mask(heat, 0.5)
    assert used == 0.5 and mask.dtype == np.uint8
    assert (mask > 0).sum() == 100 and mask[30, 30] == 0 and mask[8, 8] == 255
    low = heat * 0.3  # nothing reaches the threshold: the hottest spot is the draft
    mask, used = propose_mask(low, 0.5)
    assert used < 0.5 and mask[10, 10] == 255 and mask[0, 0] == 0
    assert not propose_mask(np.full((8, 8), 0.7, np.float32), 0.5)[0].any()
    for bad in (np.full((4, 4), np.nan), np.zeros((2, 2, 2)), np.zeros((0, 3))):
        with pytest.raises(UserError):
            propose_mask(bad, 0.5)
    with pytest.raises(UserError):
        propose_mask(heat, float("nan"))
