"""Issue 16, part 2: the GUI says what it saved (folder corrections, cold start, the active
run, heatmap display, and the smaller items), checked against the SQLite project and files."""

from __future__ import annotations

import json
import shutil

import pytest
from PySide6.QtCore import Qt

from defect_studio.project import Project


def _shown(qtbot, panel, project, size):
    """``panel`` (a page) showing ``project``, at ``size``, on screen."""
    qtbot.addWidget(panel)
    panel.set_project(project)
    panel.resize(*size)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def _review_panel(qtbot, project):
    from defect_studio.app.review.page import ReviewPage

    return _shown(qtbot, ReviewPage(), project, (900, 600))


# -- item 4: D on a folder part that is already in the project --------------------------------
def test_folder_part_already_in_project_gets_the_correction(qtbot, trained_project, tmp_path,
                                                            dialogs):
    project = trained_project
    ok = [r for r in project.images(label="ok") if not r.has_mask][0]
    folder = tmp_path / "new_parts"
    folder.mkdir()
    shutil.copy(project.image_path(ok), folder / "same_part.png")  # same bytes, other path
    n_before = project.counts()["images"]
    panel = _review_panel(qtbot, project)
    with qtbot.waitSignal(panel.prediction_ended, timeout=120_000):
        assert panel.predict_folder(folder)
    item = panel.model.items()[0]
    assert item.image_id == ok.id and item.label == "ok"  # known by its content
    panel.select_row(0)
    panel.queue_view.setFocus()
    qtbot.keyClick(panel.queue_view, Qt.Key.Key_D)
    assert "labelled defective (corrected)" in panel.status_label.text()
    with Project.open(project.root, readonly=True) as fresh:  # what is saved
        rec = fresh.image(ok.id)
        assert (rec.label, rec.label_source) == ("defective", "user")
        assert fresh.counts()["images"] == n_before
    assert panel.model.items()[0].label == "defective"
    assert dialogs == []


# -- item 5: the cold-start model follows the labels -------------------------------------------
def test_cold_start_model_follows_the_labels_as_they_change(qtbot, demo_project_dir,
                                                            label_window_on, dialogs):
    from defect_studio.kinds import kind_of_model

    with Project.open(demo_project_dir) as p:  # one defective image left, without a mask
        defective = [r.id for r in p.images(label="defective")]
        last = defective[0]
        for i in defective:
            if p.image(i).has_mask:
                p.delete_mask(i)
        p.set_labels([(i, "unlabeled") for i in defective[1:]])
    win = label_window_on(demo_project_dir)
    train = win.pages["Train"]
    first = train.model_combo.currentData()
    assert kind_of_model(first).trains_on == "mixed"
    page = win.label_page
    page.browser.select_image(last)
    qtbot.keyClick(page.canvas, Qt.Key.Key_O)  # no defect label is left
    with Project.open(demo_project_dir, readonly=True) as fresh:
        assert fresh.counts()["defective"] == 0
    good_parts = train.model_combo.currentData()
    assert kind_of_model(good_parts).trains_on == "ok_only"
    assert "No image is labelled defective" in train.status_label.text()
    assert train.loss_legend()[1:] == list(kind_of_model(good_parts).loss_names)
    qtbot.keyClick(page.canvas, Qt.Key.Key_D)  # a defect again: the model the user had
    assert train.model_combo.currentData() == first
    assert "selected again" in train.status_label.text()
    assert train.loss_legend()[1:] == ["segmentation", "decision"]
    # a model chosen by hand stays while it can train on the labels
    other = next(train.model_combo.itemData(i) for i in range(train.model_combo.count())
                 if train.model_combo.itemData(i) not in (first, good_parts))
    train.model_combo.setCurrentIndex(train.model_combo.findData(other))
    qtbot.keyClick(page.canvas, Qt.Key.Key_O)
    qtbot.keyClick(page.canvas, Qt.Key.Key_D)
    assert train.model_combo.currentData() in (other, good_parts)
    assert dialogs == []


# -- item 7 (+ 10: stars at the kept epoch, a crashed run's state) ------------------------------
# A stand-in for `python -m defect_studio train --events` (the page's real QProcess path): it
# makes run NEW from the tiny run's files with the given metrics, then prints the events.
FAKE_TRAIN = """import json, os, shutil, signal, sys
runs, new, mode = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.copytree(os.path.join(runs, "tiny"), os.path.join(runs, new))
def put(name, obj):
    with open(os.path.join(runs, new, name), "w") as f:
        json.dump(obj, f)
open(os.path.join(runs, new, "events.jsonl"), "w").close()
def emit(**ev):
    print(json.dumps(ev), flush=True)
    with open(os.path.join(runs, new, "events.jsonl"), "a") as f:
        f.write(json.dumps(ev) + "\\n")
emit(event="started", run_id=new, device="cpu", n_train=9, n_val=5, epochs=3)
for e in (1, 2, 3):
    emit(event="progress", epoch=e, epochs=3, step=1, steps=1, loss=1.0 / e, loss_seg=0.5,
         loss_dec=0.5)
    emit(event="validation", epoch=e, ap=(0.2, 0.9, 0.7)[e - 1], auc=0.9)
if mode == "crash":
    put("status.json", {"state": "running", "epoch": 2, "message": ""})
    os.kill(os.getpid(), signal.SIGKILL)
metrics = {"ap": 0.9, "auc": 0.9, "epochs": 3, "best_epoch": 2, "split": "val"}
put("metrics.json", metrics)
put("status.json", {"state": "finished", "epoch": 3, "message": ""})
emit(event="finished", run_id=new, metrics=metrics, threshold=0.5, elapsed_s=1.0)
"""


def _train_with_stand_in(qtbot, monkeypatch, panel, tmp_path, new: str, mode: str) -> str:
    import stat
    import sys

    from defect_studio.app.common.jobs import TrainingJob

    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    runner = tmp_path / "fake_train.sh"
    runner.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" '
                      f'"{panel.state.project.runs_dir}" {new} {mode}\n')
    runner.chmod(runner.stat().st_mode | stat.S_IEXEC)
    real_start = TrainingJob.start
    monkeypatch.setattr(TrainingJob, "start",
                        lambda job, request, program=None: real_start(job, request,
                                                                      program=str(runner)))
    with qtbot.waitSignal(panel.job_ended, timeout=60_000) as ended:
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    return ended.args[0]


def _train_panel(qtbot, project):
    from defect_studio.app.train.page import TrainPage

    return _shown(qtbot, TrainPage(), project, (1000, 700))


def test_finished_run_never_replaces_the_active_run_silently(qtbot, monkeypatch, trained_project,
                                                              tmp_path, dialogs):
    project = trained_project
    assert project.active_run() == "tiny"  # set by the user
    panel = _train_panel(qtbot, project)
    assert _train_with_stand_in(qtbot, monkeypatch, panel, tmp_path, "r2", "ok") == "finished"
    with Project.open(project.root, readonly=True) as fresh:
        assert fresh.active_run() == "tiny"  # kept
    assert panel.offer_button.isVisible()  # r2 scores AP 0.9 on validation, better
    assert "better than the active run tiny" in panel.status_label.text()
    # the final model's stars sit at epoch 2, whose weights were kept, not at epoch 3
    assert "weights of epoch 2 of 3" in panel.status_label.text()
    x, y = panel.final_ap.getData()
    assert (x.tolist(), y.tolist()) == ([2.0], [0.9])
    qtbot.mouseClick(panel.offer_button, Qt.MouseButton.LeftButton)
    with Project.open(project.root, readonly=True) as fresh:
        assert fresh.active_run() == "r2"
    assert not panel.offer_button.isVisible()
    assert dialogs == []


def test_a_worse_run_is_not_offered_and_a_crashed_run_says_so_at_once(
        qtbot, monkeypatch, trained_project, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    from defect_studio.app.train.run_history import COLUMNS

    project = trained_project
    m = project.run("tiny").metrics
    (project.run_dir("tiny") / "metrics.json").write_text(json.dumps({**m, "ap": 0.99}))
    panel = _train_panel(qtbot, project)
    assert _train_with_stand_in(qtbot, monkeypatch, panel, tmp_path, "r2", "ok") == "finished"
    assert not panel.offer_button.isVisible()
    assert "The active run stays tiny" in panel.status_label.text()
    assert project.active_run() == "tiny"

    seen = []

    def at_dialog(_parent, title, text, *args, **kwargs):
        row = panel.history.run_ids().index("r3")
        seen.append((title, text, panel.history.table.item(row, COLUMNS.index("State")).text()))
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "critical", staticmethod(at_dialog))
    (tmp_path / "fake_train.sh").unlink()
    assert _train_with_stand_in(qtbot, monkeypatch, panel, tmp_path, "r3", "crash") == "failed"
    assert len(seen) == 1 and seen[0][0] == "Training failed"
    assert seen[0][2] == "failed"  # the table says so while the message is up, no Refresh
    with Project.open(project.root, readonly=True) as fresh:
        assert fresh.run("r3").state == "failed"
        assert fresh.active_run() == "tiny"


# -- item 9: NG parts never look clean -----------------------------------------------------------
def test_weak_heat_is_shown_relative_to_the_range_and_the_peak_is_ringed(tmp_path):
    import numpy as np

    from defect_studio.inference.heat_range import (
        HEAT_RANGE_FILE,
        clean_range,
        range_from_peaks,
        read_heat_range,
    )
    from defect_studio.inference.overlay import decision_overlay, overlay

    image = np.full((64, 64, 3), 128, np.uint8)
    heat = np.zeros((64, 64), np.float32)
    heat[40:48, 10:18] = 0.14  # weak heat inside a defect (real data: 0.19 at most)
    plain = overlay(image, heat, alpha=0.6)
    assert (plain == image).all()  # below the floor: nothing drawn at an absolute scale
    scaled = overlay(image, heat, alpha=0.6, vmax=0.14)
    assert not (scaled[44, 14] == image[44, 14]).all() and (scaled[5, 50] == image[5, 50]).all()
    ng = decision_overlay(image, heat, 0.9, True, vmax=None)
    ok = decision_overlay(image, heat, 0.1, False, vmax=None)
    ring = ng[30:60, 0:30].astype(int) - ok[30:60, 0:30].astype(int)
    assert np.abs(ring).sum() > 0  # the NG part's peak is marked although no heat shows
    # hostile range values are refused, never used
    for bad in (float("nan"), -1.0, 0.0, "0.5", True, None, float("inf")):
        assert clean_range(bad) is None
    assert clean_range(5.0) == 1.0 and clean_range(1e-9) == 0.02
    assert range_from_peaks([float("nan"), 0.1, 0.19]) == pytest.approx(0.19)
    assert range_from_peaks([]) is None
    run = tmp_path / "run"
    run.mkdir()
    for text in ('{"vmax": NaN}', '{"vmax": -3}', "[1, 2]", "not json", '{"vmax": "x"}'):
        (run / HEAT_RANGE_FILE).write_text(text)
        assert read_heat_range(run) is None, text
    (run / HEAT_RANGE_FILE).unlink()
    (run / HEAT_RANGE_FILE).symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text('{"vmax": 0.3}')
    assert read_heat_range(run) is None  # a link is not the run's file


def test_review_shows_heat_in_the_runs_range_and_predict_overlays_agree(
        qtbot, trained_project, tmp_path, dialogs):
    import csv

    import numpy as np

    from defect_studio.cli import main
    from defect_studio.inference.heat_range import read_heat_range

    project = trained_project
    run_dir = project.run_dir("tiny")
    assert read_heat_range(run_dir) is None
    panel = _review_panel(qtbot, project)
    with qtbot.waitSignal(panel.prediction_ended, timeout=120_000):
        assert panel.predict("test")
    vmax = read_heat_range(run_dir)  # measured on the defective images, kept with the run
    assert vmax is not None and panel.view.run_range() == pytest.approx(vmax)
    panel.select_row(0)
    qtbot.waitUntil(lambda: panel.view.has_heatmap(), timeout=30_000)
    assert panel.view.scale_text().endswith("run's range")
    assert panel.view.peak() is not None and panel.view.markers  # the peak is marked
    run_rgb = panel.view.displayed_rgb()
    panel.scale_combo.setCurrentIndex(panel.scale_combo.findData("part"))
    assert panel.view.vmax() == pytest.approx(
        max(0.02, float(np.nanmax(panel.view._heatmap))), rel=1e-5)
    assert panel.view.scale_text().endswith("this part")
    panel.scale_combo.setCurrentIndex(panel.scale_combo.findData("absolute"))
    assert panel.view.vmax() is None and "absolute" in panel.view.scale_text()
    if vmax < 1.0:
        assert not np.array_equal(panel.view.displayed_rgb(), run_rgb)
    # the review export names run and threshold
    panel.scale_combo.setCurrentIndex(panel.scale_combo.findData("run"))
    with qtbot.waitSignal(panel.export_finished, timeout=60_000):
        assert panel.export_results(tmp_path / "export")
    with open(tmp_path / "export" / "review.csv", newline="") as f:
        row = next(csv.DictReader(f))
    thr = json.loads((run_dir / "threshold.json").read_text())["threshold"]
    assert row["run_id"] == "tiny" and float(row["threshold"]) == pytest.approx(thr)
    # predict's overlays use the same stored range, written on each overlay
    part = project.image_path(project.images(split="test")[0])
    assert main(["predict", str(part), "--project", str(project.root), "--run", "tiny",
                 "--out", str(tmp_path / "pred")]) == 0
    assert read_heat_range(run_dir) == pytest.approx(vmax)
    assert list((tmp_path / "pred").glob("*_overlay.png"))
    assert dialogs == []


# -- item 10: the smaller ones -------------------------------------------------------------------
def test_label_page_says_what_ctrl_delete_and_a_split_move_did(qtbot, window, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="defect_studio.app.actions")
    page, root = window.label_page, window.project.root
    rec = next(r for r in window.project.images(label="defective") if r.has_mask)
    page.browser.select_image(rec.id)
    page.canvas.setFocus()
    qtbot.keyClick(page.canvas, Qt.Key.Key_Delete, Qt.KeyboardModifier.ControlModifier)
    assert window.statusBar().currentMessage() == (
        f"{rec.name}: mask cleared and saved (Ctrl+Z brings it back).")
    with Project.open(root, readonly=True) as fresh:
        assert not fresh.image(rec.id).has_mask  # what it says is what is saved
    qtbot.keyClick(page.canvas, Qt.Key.Key_Delete, Qt.KeyboardModifier.ControlModifier)
    assert window.statusBar().currentMessage() == f"{rec.name}: no mask to clear."
    # the user's actions are in the app's log
    logged = [r.getMessage() for r in caplog.records if r.name == "defect_studio.app.actions"]
    assert any("mask cleared" in m for m in logged)
    # a move to another split shows in the image's info line at once
    other = "test" if rec.split != "test" else "val"
    assert f"split: {rec.split}" in page.info.text()
    page.browser.move_to_split(other, [rec.id])
    assert f"split: {other}" in page.info.text()
    with Project.open(root, readonly=True) as fresh:
        assert fresh.image(rec.id).split == other


def test_f1_lists_the_box_keys_and_counts_read_right(qtbot, box_project):
    from defect_studio.app.label.page import LabelPage
    from defect_studio.app.shell.shortcuts import help_html, keys_text
    from defect_studio.units import count_of

    html = help_html()
    assert "<b>X</b>" in html and "<b>Alt+1</b> \u2026 <b>Alt+9</b>" in html
    assert (count_of(1, "box"), count_of(2, "box"), count_of(0, "image")) == (
        "1 box", "2 boxes", "0 images")
    page = LabelPage()
    qtbot.addWidget(page)
    page.set_project(box_project)
    assert page.boxes.action.shortcut().toString() == keys_text("tool_box") == "X"
    texts = [page.boxes.panel.list.item(i).text() for i in range(page.boxes.panel.list.count())]
    page.set_project(None)
    page.shutdown()
    assert texts and not any(" 1 boxes" in t or " 1 images" in t for t in texts)


def test_review_viewer_starts_each_part_fitted_and_failures_are_logged(
        qtbot, trained_project, caplog, monkeypatch):
    import logging

    from PySide6.QtWidgets import QMessageBox

    caplog.set_level(logging.INFO, logger="defect_studio.app.actions")
    panel = _review_panel(qtbot, trained_project)
    with qtbot.waitSignal(panel.prediction_ended, timeout=120_000):
        assert panel.predict("test")
    panel.select_row(0)
    panel.view.zoom_by(4.0)
    assert not panel.view.is_fitted()
    panel.select_row(1)
    assert panel.view.is_fitted()  # the next part is seen whole
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda *a, **k: None))
    panel._on_failed("the model file is damaged")
    assert any("failed: Prediction failed: the model file is damaged" in r.getMessage()
               for r in caplog.records)


def test_runs_table_shows_several_rows_at_1380x860(qtbot, demo_project_dir, label_window_on):
    from defect_studio.app.train.run_history import MIN_ROWS

    win = label_window_on(demo_project_dir, size=(1380, 860))
    train = win.pages["Train"]
    win.tabs.setCurrentWidget(train)
    qtbot.waitUntil(lambda: train.history.table.isVisible())
    assert train.history.visible_rows() >= MIN_ROWS, train.history.table.height()


def test_size_reason_names_a_presets_fixed_size_and_warns_of_a_large_upscale(qtbot, demo_project):
    from defect_studio.app.train.page import TrainPage

    panel = TrainPage()
    qtbot.addWidget(panel)
    panel.set_project(demo_project)  # 64x64 images
    assert "Warning" not in panel.size_reason.text()
    panel.preset_combo.setCurrentText("dagm")  # the paper's fixed 512x512
    text = panel.size_reason.text()
    assert "dagm preset" in text and "from the data" not in text
    assert "upscaled 8\u00d7" in text
    panel.width_spin.setValue(256)
    text = panel.size_reason.text()
    assert text.startswith("Set by hand; the dagm preset's size is 512x512.")
    assert "from the data" not in text and "upscaled 4\u00d7" in text
    panel.width_spin.setValue(64)
    panel.height_spin.setValue(64)
    assert "Warning" not in panel.size_reason.text()


def test_every_shortcut_group_is_listed_once():
    import itertools

    from defect_studio.app.shell.shortcuts import SHORTCUTS

    groups = [g for g, _ in itertools.groupby(s.group for s in SHORTCUTS)]
    assert len(groups) == len(set(groups)) and "Boxes" in groups
