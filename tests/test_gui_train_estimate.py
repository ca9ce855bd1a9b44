"""Train page (issue 18): the size reason names the defects, crops reach `train`, and the
estimated training time is shown before a run."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from defect_studio.app.train.page import TrainPage
from defect_studio.project import Project


@pytest.fixture
def thin_project(tmp_path):
    """Eight 256x64 parts, four with 2-px scratches (masked), in the train split."""
    p = Project.create(tmp_path / "p")
    rng = np.random.default_rng(0)
    for i in range(8):
        img = (rng.random((64, 256, 3)) * 255).astype(np.uint8)
        path = tmp_path / f"part{i}.png"
        cv2.imwrite(str(path), img)
        mask = None
        if i < 4:
            mask = np.zeros((64, 256), np.uint8)
            mask[10 + 8 * i:12 + 8 * i, 30:220] = 255
        rec = p.add_image(path, label="defective" if mask is not None else "ok", mask=mask)
        p.set_split(rec.id, "train")
    yield p
    p.close()


def test_reason_names_the_defects_and_the_estimate_is_shown(qtbot, thin_project, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("DEFECT_STUDIO_AUTO_ESTIMATE", "1")  # as in the app
    panel = TrainPage()
    qtbot.addWidget(panel)
    panel.set_project(thin_project)
    reason = panel.size_reason.text()
    # quick caps at 128: the 2-px scratches (measured 1 px at their widest) keep scale 1
    assert "smallest masked defects ~1 px wide: scale 1" in reason
    assert (panel.width_spin.value(), panel.height_spin.value()) == (256, 64)
    assert "128x64 crops" in reason
    args = panel.state.request(None).to_args()
    assert "--size" not in args  # `train` chooses the same size and its crops
    qtbot.waitUntil(lambda: panel._estimate_worker is not None, timeout=5000)  # after a pause
    qtbot.waitUntil(lambda: "Estimated training time" in panel.time_estimate.text(),
                    timeout=120000)
    qtbot.waitUntil(lambda: panel._estimate_worker is None, timeout=5000)
    text = panel.time_estimate.text()
    assert "crops 128x64" in text and "on cpu" in text
    cache = thin_project.cache_dir / "step_times.json"
    assert cache.is_file() and "train|128x64" in cache.read_text()
    if os.environ.get("DS_SCREENSHOTS"):
        panel.resize(1100, 700)
        panel.grab().save(os.path.join(os.environ["DS_SCREENSHOTS"], "train_estimate.png"))
    # a size set by hand is passed on, with no crops
    panel.width_spin.setValue(128)
    assert "--size" in panel.state.request(None).to_args()
    # a run on a cluster: this computer's speed says nothing about it, so no estimate
    qtbot.waitUntil(lambda: panel._estimate_worker is None, timeout=120000)
    panel.run_on.where.setCurrentIndex(panel.run_on.where.findData("cluster"))
    assert panel.time_estimate.text().startswith("No estimate: the run trains on the cluster")
    assert not panel.estimate_button.isEnabled()
    panel.estimate_time()  # e.g. the settings changed: still none
    assert panel._estimate_worker is None and "cluster" in panel.time_estimate.text()
    panel.run_on.where.setCurrentIndex(panel.run_on.where.findData("here"))
    assert panel.estimate_button.isEnabled()
    qtbot.waitUntil(lambda: "Estimated training time" in panel.time_estimate.text(),
                    timeout=120000)
    panel.shutdown()


def test_the_anomaly_model_and_the_detector_get_an_estimate_too(qtbot, thin_project,
                                                                monkeypatch):
    """Every model kind plans its run (its time probe): the Train page estimates the anomaly
    model's time (good parts) and the detector's (parts with boxes) before a run, and says
    when the data cannot train."""
    monkeypatch.setenv("DEFECT_STUDIO_AUTO_ESTIMATE", "1")  # as in the app
    panel = TrainPage()
    qtbot.addWidget(panel)
    panel.set_project(thin_project)
    panel.model_combo.setCurrentIndex(panel.model_combo.findData("anomaly"))
    qtbot.waitUntil(lambda: panel._estimate_worker is None
                    and "Estimated training time" in panel.time_estimate.text()
                    and f"{panel.epochs_spin.value()} epochs" in panel.time_estimate.text(),
                    timeout=120000)
    cache = thin_project.cache_dir / "step_times.json"
    assert "anomaly|" in cache.read_text()
    # the detector needs boxes: this project has none, and the page says so instead of a time
    panel.model_combo.setCurrentIndex(panel.model_combo.findData("relational"))
    qtbot.waitUntil(lambda: panel._estimate_worker is None
                    and panel.time_estimate.text().startswith("No estimate:"), timeout=120000)
    assert "box" in panel.time_estimate.text()
    recs = thin_project.images()
    thin_project.add_type("scratch")
    for r in recs[:4]:
        thin_project.set_boxes(r.id, [("scratch", 30, 10 + 8 * r.id % 40, 190, 4)])
    panel.estimate_time()
    qtbot.waitUntil(lambda: panel._estimate_worker is None
                    and "Estimated training time" in panel.time_estimate.text(), timeout=120000)
    assert "detector|" in cache.read_text()
    panel.shutdown()


def test_long_reasons_scroll_instead_of_squeezing_and_train_stays_in_view(qtbot):
    """At 1280x800 the Train page's left column is about 450 px high: a long size reason and
    a long estimate with its advice used to be squeezed to a few clipped lines (seen on a
    screenshot); now each label gets the height of its wrapped text, the form scrolls, and
    the Train button, the progress bar and the status stay below it, in view."""
    panel = TrainPage()
    qtbot.addWidget(panel)
    panel.resize(1280, 450)
    panel.show()
    qtbot.waitExposed(panel)
    long = "; ".join(["a long line of the reason that wraps over several lines"] * 6)
    panel.size_reason.setText(long)
    panel.time_estimate.setText("Estimated training time on this machine: 30 min; long: "
                                + long)
    panel.status_label.setText("Run r1 finished. Note: " + long[:200])

    def fits(label):
        return label.height() >= label.heightForWidth(label.width()) > 0

    qtbot.waitUntil(lambda: all(fits(x) for x in (panel.size_reason, panel.time_estimate,
                                                  panel.status_label)), timeout=5000)
    for w in (panel.train_button, panel.progress_bar, panel.status_label):
        bottom = w.mapTo(panel, w.rect().bottomLeft()).y()
        assert w.isVisible() and bottom <= panel.height(), (w, bottom, panel.height())
    scroll = panel.size_reason.parentWidget()
    while scroll is not None and not hasattr(scroll, "verticalScrollBar"):
        scroll = scroll.parentWidget()
    assert scroll is not None and scroll.verticalScrollBar().maximum() > 0  # the form scrolls


def test_the_estimate_button_times_afresh_what_the_cache_holds(qtbot, thin_project,
                                                               monkeypatch):
    """A step time cached while the machine was busy would stay for good: the form's own
    estimate uses the cache, the Estimate button times the steps again and stores them."""
    import json

    from PySide6.QtCore import Qt

    from defect_studio.training import estimate

    monkeypatch.setattr(estimate, "_MEMORY", {})
    panel = TrainPage()
    qtbot.addWidget(panel)
    panel.set_project(thin_project)
    panel.estimate_time()
    qtbot.waitUntil(lambda: panel._estimate_worker is None
                    and "Estimated training time" in panel.time_estimate.text(), timeout=120000)
    cache = thin_project.cache_dir / "step_times.json"
    measured = json.loads(cache.read_text())
    assert "from steps timed now" in panel.time_estimate.text()
    # as if timed on a busy PC two hours ago
    cache.write_text(json.dumps({k: {**v, "s": 5000.0, "at": v["at"] - 7200}
                                 for k, v in measured.items()}))
    estimate._MEMORY.clear()
    panel.estimate_time()
    qtbot.waitUntil(lambda: panel._estimate_worker is None
                    and " h " in panel.time_estimate.text(), timeout=120000)
    # the line says the figures are old and how to renew them
    assert "from steps timed 2 h 00 min ago on this machine" in panel.time_estimate.text()
    assert panel.time_estimate.text().endswith("Estimate times them again.")
    qtbot.mouseClick(panel.estimate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel._estimate_worker is None
                    and "Estimated training time" in panel.time_estimate.text()
                    and " h " not in panel.time_estimate.text(), timeout=120000)
    assert "from steps timed now" in panel.time_estimate.text()
    again = json.loads(cache.read_text())
    assert set(again) == set(measured) and all(v["s"] < 5000.0 for v in again.values())
    panel.shutdown()
