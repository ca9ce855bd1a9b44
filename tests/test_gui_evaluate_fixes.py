"""Evaluate page, issue 16 part 2: what the page shows is what it saves (threshold), the
curves keep their room at 1280x800, and it opens the run marked active."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from PySide6.QtCore import Qt

from defect_studio.app.evaluate.page import EvaluatePage
from defect_studio.app.evaluate.state import fmt_threshold
from defect_studio.evaluation.metrics import confusion_at, image_metrics


def write_evaluation(run_dir, labels, scores) -> None:
    """The three files evaluate_run writes, for given scores (full precision)."""
    m = image_metrics(labels, scores)
    with open(run_dir / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "path", "label", "score", "decision", "split"])
        for i, (y, s) in enumerate(zip(labels, scores)):
            w.writerow([i + 1, f"images/{i}.png", "defective" if y else "ok", repr(s), "", "test"])
    for name, keys in (("pr_curve", ("precision", "recall")), ("roc_curve", ("fpr", "tpr"))):
        curve = m[name]
        with open(run_dir / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(keys)
            w.writerows(zip(*(curve[k] for k in keys)))


def test_threshold_for_escape_rate_is_saved_as_shown_and_never_above_its_score(
        qtbot, trained_project, dialogs):
    project = trained_project
    run_dir = project.runs_dir / "tiny"
    # 7 defects; the one that sets the threshold for 2 escapes scores 0.113587 (4 decimals
    # would show and save 0.1136, above it); an OK part sits just below it
    defects = [0.05, 0.09, 0.113587, 0.2, 0.4, 0.7, 0.9]
    oks = [0.01, 0.03, 0.1135861, 0.12, 0.3]
    labels = [1] * len(defects) + [0] * len(oks)
    scores = defects + oks
    write_evaluation(run_dir, labels, scores)
    page = EvaluatePage()
    qtbot.addWidget(page)
    page.resize(1280, 800)
    page.set_project(project)
    assert page.current_run() == "tiny" and page.state.ready()
    page.escape_spin.setValue(30.0)  # 2 of 7 may escape
    qtbot.mouseClick(page.escape_button, Qt.MouseButton.LeftButton)
    shown = float(page.spin.text().replace(",", "."))
    fn_shown = int(page.confusion.item(0, 1).text())
    assert fn_shown == 2 and "2 of 7" in page.rates_label.text()
    with qtbot.waitSignal(page.threshold_saved):
        qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    saved = json.loads((run_dir / "threshold.json").read_text())
    assert saved["source"] == "user"
    # what is shown is what is saved, and never above the score it was chosen at
    assert saved["threshold"] == shown <= 0.113587
    # the saved threshold, applied to the scores again, misses what the page said
    again = confusion_at(np.array(labels), np.array(scores), saved["threshold"])
    assert again["fn"] == fn_shown == 2 and again["fp"] == int(page.confusion.item(1, 0).text())
    assert f"threshold {fmt_threshold(saved['threshold'])} (user)" in page.summary_label.text()
    assert project.run("tiny").threshold == saved["threshold"]
    assert dialogs == []


def test_evaluate_opens_the_run_marked_active(qtbot, trained_project, dialogs):
    import shutil

    project = trained_project
    runs = project.runs_dir
    shutil.copytree(runs / "tiny", runs / "other")  # a second finished run
    labels, scores = [1, 1, 0, 0], [0.9, 0.6, 0.2, 0.1]
    for run in ("tiny", "other"):
        write_evaluation(runs / run, labels, scores)
    page = EvaluatePage()
    qtbot.addWidget(page)
    page.set_project(project)
    assert page.current_run() == "tiny" == project.active_run()
    assert page.run_combo.currentText() == "tiny  (active)"
    # the user looks at the other run; a refresh (a run finished) keeps it
    page.run_combo.setCurrentIndex(page.run_combo.findData("other"))
    page.refresh()
    assert page.current_run() == "other" and page.state.evaluation.run_id == "other"
    # the active run changes elsewhere (the Train page): the page follows it
    page.run_combo.setCurrentIndex(page.run_combo.findData("tiny"))
    project.set_active_run("other")
    saved_active = project.active_run()
    assert saved_active == "other"
    page.refresh()
    assert page.current_run() == saved_active
    assert page.run_combo.currentText() == "other  (active)"
    assert page.state.evaluation.run_id == "other"
    assert dialogs == []


def test_report_plots_are_drawn_for_the_page_and_thumbnails_fit_it(
        qtbot, trained_project, tmp_path, dialogs):
    import cv2
    from PySide6.QtGui import QTextDocument

    from defect_studio.app.evaluate.report_dialog import CURVE_PX, write_report

    project = trained_project
    rng = np.random.default_rng(0)
    ids = []
    for k in range(8):  # 200x200 parts: thumbnails at full THUMB_SIDE
        f = tmp_path / f"part{k}.png"
        cv2.imwrite(str(f), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
        ids.append(project.add_image(f, label="defective" if k < 6 else "ok",
                                     split="test").id)
    labels, scores = [1] * 6 + [0] * 2, [0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.05, 0.06]
    run_dir = project.runs_dir / "tiny"
    write_evaluation(run_dir, labels, scores)
    rows = list(csv.DictReader(open(run_dir / "scores.csv", newline="")))
    with open(run_dir / "scores.csv", "w", newline="") as f:  # the parts' real ids
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "image_id": i, "path": project.image(i).path} for r, i in zip(rows, ids))
    page = EvaluatePage()
    qtbot.addWidget(page)
    page.resize(1280, 420)  # squashed on screen: the report must not copy that
    page.show()
    page.set_project(project)
    page.set_threshold(0.5)  # all 6 defects missed: 6 thumbnails
    html, pdf = write_report(page, tmp_path / "r" / "report.html")
    assert pdf is not None and pdf.stat().st_size > 1000 and pdf.read_bytes()[:4] == b"%PDF"
    files = html.parent / "report_files"
    curves = sorted(files.glob("curve_*.png"))
    assert len(curves) == 2
    for c in curves:
        h, w = cv2.imread(str(c)).shape[:2]
        assert (w, h) == CURVE_PX
    text = html.read_text()
    assert text.count("fn_") == 6
    # on an A4 page (15 mm margins: 510 points, the width Qt prints into) what cannot wrap
    # fits: the two curves side by side, each row of thumbnails
    from PySide6.QtCore import QUrl

    def ideal_width(fragment: str) -> float:
        doc = QTextDocument()
        doc.setBaseUrl(QUrl.fromLocalFile(str(html.parent) + "/"))
        doc.setHtml(fragment)
        return doc.idealWidth()

    blocks = re.findall(r"<h2>Curves</h2><p>.*?</p>|<table cellpadding='4'>.*?</table>", text,
                        flags=re.S)
    assert len(blocks) == 2
    for block in blocks:
        assert ideal_width(block) <= (210 - 30) / 25.4 * 72, block[:60]
    # the PDF holds the pictures themselves, not 16 px "missing image" icons
    widths = re.findall(rb"/Width (\d+)", pdf.read_bytes())
    assert widths.count(str(CURVE_PX[0]).encode()) == 2 and b"16" not in widths
    assert widths.count(b"140") == 6
    assert dialogs == []


@pytest.mark.parametrize("size", [(1280, 800), (1380, 860)])
def test_curves_keep_their_room_in_the_window(qtbot, _trained_template, tmp_path,
                                             label_window_on, size):
    from gui_support import copy_project

    from defect_studio.app.evaluate.page import MIN_PLOT_HEIGHT

    root = copy_project(_trained_template, tmp_path / "p")
    write_evaluation(root / "runs" / "tiny", [1, 1, 0, 0, 0], [0.9, 0.4, 0.5, 0.2, 0.1])
    win = label_window_on(root, size=size)
    page = win.pages.get("Evaluate")
    win.tabs.setCurrentWidget(page)
    qtbot.waitUntil(page.state.ready, timeout=10_000)
    qtbot.wait(50)
    for plot in (page.pr_plot, page.roc_plot):
        assert plot.isVisible() and plot.height() >= MIN_PLOT_HEIGHT
    # the threshold row, the confusion table and the sweep are all within the window
    bottom = page.mapTo(win, page.rect().bottomLeft()).y()
    assert bottom <= win.height()
    for w in (page.save_button, page.confusion):
        assert w.isVisible() and w.mapTo(win, w.rect().bottomLeft()).y() <= bottom
    page.lower_tabs.setCurrentWidget(page.sweep_view)
    qtbot.wait(20)
    sweep = page.sweep_view
    assert sweep.run_button.isVisible() and sweep.plot.height() >= 100
    assert sweep.mapTo(win, sweep.rect().bottomLeft()).y() <= bottom
    assert page.pr_plot.height() >= MIN_PLOT_HEIGHT
