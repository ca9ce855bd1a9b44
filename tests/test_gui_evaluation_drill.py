"""Evaluate page (issue 11): confusion-cell drill-down, threshold by escape rate, pixel
metrics, one clear AP, the header after Save threshold, and Export report (HTML + PDF)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt
from test_gui_evaluation import project, scores_csv, shown_counts, view  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("isolated_qsettings")


def test_drilldown_escape_rate_pixels_and_report(qtbot, view, project, tmp_path):  # noqa: F811
    y, s = scores_csv(project)
    # pixel metrics of the evaluation are kept with the run and shown
    saved = json.loads((project.runs_dir / "tiny" / "evaluation.json").read_text())
    assert "pixel" in saved and "pr_curve" not in saved
    if saved["pixel"].get("pixel_auroc") is not None:
        assert "Pixel level" in view.pixel_label.text() and "AUROC" in view.pixel_label.text()

    # click the "missed defects" cell: its images, lowest score first; open one
    view.set_threshold(float(np.median(s)))
    c = shown_counts(view)
    rect = view.confusion.visualItemRect(view.confusion.item(0, 1))
    qtbot.mouseClick(view.confusion.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    ids = view.cell_images.image_ids()
    assert view.cell_images.cell == "fn" and len(ids) == c["fn"]
    listed = [float(view.cell_images.table.item(r, 1).text()) for r in range(len(ids))]
    assert listed == sorted(listed) and all(v < view.threshold() for v in listed)
    for image_id in ids:
        assert project.image(image_id).label == "defective"
    assert view.cell_images.table.item(0, 0).text() == project.image(ids[0]).name
    with qtbot.waitSignal(view.open_image_requested) as blocker:
        view.cell_images.table.cellDoubleClicked.emit(0, 0)
    assert blocker.args == [ids[0]]
    # false alarms: highest score first
    assert len(view.show_cell(1, 0)) == c["fp"]

    # threshold by escape rate: at most that share of defective images below it
    n_pos = int(y.sum())
    t = view.threshold_for_escape_rate(0.0)
    # at the lowest defect score, rounded down to the 6 digits shown
    assert s[y == 1].min() - 1e-6 < t <= s[y == 1].min()
    assert shown_counts(view)["fn"] == 0
    view.threshold_for_escape_rate(100.0 / n_pos * 1.01)  # one escape allowed
    assert shown_counts(view)["fn"] <= 1
    assert "Escape rate" in view.rates_label.text()

    # above the top score nothing is called NG: precision is not "0.000"
    view.set_threshold(1.0)
    assert "0.000" not in view.rates_label.text().splitlines()[0]
    assert "no part called NG" in view.rates_label.text()

    # Save threshold: the header shows the new one at once
    view.set_threshold(0.4321)
    view.save_threshold()
    assert "0.432100 (user)" in view.summary_label.text()

    # Export report: HTML with the run's numbers and thumbnails, and a PDF
    from defect_studio.app.evaluate.report_dialog import write_report

    html_path, pdf_path = write_report(view, tmp_path / "out" / "release")
    text = html_path.read_text(encoding="utf-8")
    assert html_path.suffix == ".html" and "run tiny" in text
    assert "0.4321" in text and "Confusion matrix" in text and "Worst missed defects" in text
    pics = list((tmp_path / "out" / "release_files").glob("*.png"))
    assert any(p.name.startswith("curve_") for p in pics)
    fn_now = int(((s < 0.4321) & (y == 1)).sum())
    assert len([p for p in pics if p.name.startswith("fn_")]) == min(6, fn_now)
    assert pdf_path.read_bytes()[:5] == b"%PDF-" and pdf_path.stat().st_size > 2000
