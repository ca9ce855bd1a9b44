"""Main window (issue 11): page shortcuts, theme choice, Help (guide, version, log folder),
a new project in a folder name that does not exist yet, dialogs that remember the last
folder, and the small first-run texts."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from defect_studio.project import Project

pytestmark = pytest.mark.usefixtures("isolated_qsettings")


@pytest.fixture
def win(qtbot):
    from defect_studio.app.shell.window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1000, 700)
    with qtbot.waitExposed(w):
        w.show()
    yield w
    w.close()
    from defect_studio.app.shell.theme import apply_theme

    apply_theme(QApplication.instance(), "system")


def test_page_shortcuts(win, qtbot, demo_project_dir):
    assert win.open_project(demo_project_dir)
    win.label_page.canvas.setFocus()
    for n, key in enumerate((Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3, Qt.Key.Key_4)):
        qtbot.keyClick(win.tabs.currentWidget(), key, Qt.KeyboardModifier.ControlModifier)
        assert win.tabs.currentIndex() == n
    qtbot.keyClick(win.tabs.currentWidget(), Qt.Key.Key_Tab, Qt.KeyboardModifier.ControlModifier)
    assert win.tabs.currentIndex() == 0  # wraps around
    win.show_help()
    assert "Ctrl+3" in win._help.text.toPlainText()


def test_theme_choice_is_applied_and_remembered(win):
    from defect_studio.app.shell.theme import is_dark, theme_choice

    win.theme_actions["dark"].trigger()
    assert theme_choice() == "dark" and is_dark()
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128
    assert QSettings().value("ui/theme") == "dark"
    win.theme_actions["light"].trigger()
    assert not is_dark()
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() > 128
    assert win.theme_actions["light"].isChecked()


def test_help_guide_version_and_log_folder(win, monkeypatch, tmp_path):
    import defect_studio.app.shell.help_menu as hm

    dlg = win.show_guide()
    assert "Label" in dlg.text.toPlainText() and "Retrain" in dlg.text.toPlainText()
    assert hm.app_version() not in ("", None)
    opened = []
    monkeypatch.setattr(hm, "log_dir", lambda: tmp_path / "logs")
    (tmp_path / "logs").mkdir()
    monkeypatch.setattr(hm.QDesktopServices, "openUrl", lambda url: opened.append(url))
    win._open_logs()
    assert opened and opened[0].toLocalFile() == str(tmp_path / "logs")
    shown = []
    monkeypatch.setattr(QMessageBox, "about", lambda parent, title, text: shown.append(text))
    win._about()
    assert hm.app_version() in shown[0]


def test_new_project_in_a_new_folder_name_and_first_texts(win, tmp_path, monkeypatch):
    target = tmp_path / "projects" / "line-3"  # does not exist yet
    (tmp_path / "projects").mkdir()
    seen = []

    def fake_save(parent, title, start, filters="", options=None):
        seen.append(start)
        return str(target), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake_save))
    import defect_studio.app.shell.window as mw

    monkeypatch.setattr(mw.MainWindow, "import_images", lambda self: None)
    win.new_project()
    assert win.project is not None and (target / "project.sqlite").is_file()
    assert "No project open" not in win.label_page.info.text()
    assert "Import" in win.label_page.info.text()
    # the next dialog starts where the user went last
    from defect_studio.app.common.dialog_dirs import last_folder

    assert last_folder() == str(tmp_path / "projects")
    review = win.pages["Review"]
    assert review.progress_bar.text() == "not started"


def test_dialogs_remember_the_last_folder(win, tmp_path, monkeypatch, demo_project_dir):
    starts = []

    def fake_dir(parent, title, start="", *a, **k):
        starts.append(start)
        return str(tmp_path)

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(fake_dir))
    assert win.open_project(demo_project_dir)
    from defect_studio.app.common.dialog_dirs import pick_folder

    pick_folder(win, "Import from folder")
    win.pages["Review"].source_combo.setCurrentIndex(
        win.pages["Review"].source_combo.findData("folder"))
    monkeypatch.setattr(type(win.pages["Review"]), "predict_folder", lambda self, f: True)
    win.pages["Review"]._on_predict_clicked()
    assert starts[-1] == str(tmp_path)


def test_error_names_the_file_not_the_id(win, qtbot, demo_project_dir):
    assert win.open_project(demo_project_dir)
    page = win.label_page
    page.auto_next.setChecked(False)
    b = page.browser
    masked = next(i for i in b.model.image_ids() if b.model.record(i).has_mask
                  and b.model.record(i).label == "defective")
    b.select_image(masked)
    messages = []
    page.status_message.connect(messages.append)
    page.canvas.setFocus()
    qtbot.keyClick(page.canvas, Qt.Key.Key_O)
    name = b.model.record(masked).name
    assert any(name in m and "delete its mask" in m for m in messages)
    with Project.open(demo_project_dir, readonly=True) as p:
        assert p.image(masked).label == "defective"
    assert np.any(page.canvas.mask())
