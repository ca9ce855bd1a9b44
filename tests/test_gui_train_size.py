"""Train page: the input size comes from the data, with its reason; presets are offered."""

from __future__ import annotations

import pytest

from defect_studio.app.train.page import TrainPage
from defect_studio.project import Project


@pytest.fixture
def project(demo_project_dir):
    p = Project.open(demo_project_dir)
    yield p
    p.close()


def test_size_from_data_shown_with_its_reason(qtbot, project):
    panel = TrainPage()
    qtbot.addWidget(panel)
    assert "once a project is open" in panel.size_reason.text()
    panel.set_project(project)  # the tiny demo: 64x64 images, quick caps the long side at 128
    assert (panel.width_spin.value(), panel.height_spin.value()) == (64, 64)
    assert "median training image 64x64" in panel.size_reason.text()
    panel.width_spin.setValue(48)
    assert "Set by hand" in panel.size_reason.text() and "64x64" in panel.size_reason.text()
    assert panel.settings()["width"] == 48  # what Train will use
    # a paper preset carries its published size
    presets = [panel.preset_combo.itemText(i) for i in range(panel.preset_combo.count())]
    assert presets == ["quick", "thorough", "ksdd", "ksdd2", "dagm", "severstal"]
    panel.preset_combo.setCurrentText("ksdd2")
    assert (panel.width_spin.value(), panel.height_spin.value()) == (232, 640)
    assert "published" in panel.size_reason.text()
    assert panel.epochs_spin.value() == 50
