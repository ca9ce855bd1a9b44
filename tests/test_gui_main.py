"""The main window, the image browser, the import dialog and the help."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from defect_studio.project import ImageRecord, Project

pytestmark = pytest.mark.usefixtures("isolated_qsettings")


@pytest.fixture
def warnings(monkeypatch):
    """Collect QMessageBox warnings instead of blocking on a modal box."""
    seen: list[str] = []

    def fake(parent, title, text, *a, **k):
        seen.append(f"{title}: {text}")
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "warning", fake)
    return seen


@pytest.fixture
def make_window(qtbot):
    from defect_studio.app.shell.window import MainWindow

    made = []

    def make():
        win = MainWindow()
        qtbot.addWidget(win)
        win.resize(1000, 700)
        with qtbot.waitExposed(win):
            win.show()
        made.append(win)
        return win

    yield make
    for win in made:
        win.close()


def test_open_demo_project_shows_pages_and_counts(make_window, demo_project_dir, qtbot):
    win = make_window()
    assert win.open_project(demo_project_dir)
    assert [win.tabs.tabText(i) for i in range(win.tabs.count())] == [
        "Label", "Train", "Evaluate", "Review"]
    with Project.open(demo_project_dir, readonly=True) as p:
        c = p.counts()
    assert f"{c['images']} images" in win.counts_label.text()
    assert f"{c['defective']} NG" in win.counts_label.text()
    assert win.label_page.browser.model.rowCount() == c["images"]
    assert win.label_page.canvas.has_image()
    # Thumbnails are made in the background and cached in the project.
    qtbot.waitUntil(lambda: any((demo_project_dir / "cache" / "thumbs").glob("*.png")),
                    timeout=5000)


def test_project_in_use_gives_message_not_crash(make_window, demo_project_dir, warnings):
    holder = Project.open(demo_project_dir)          # another "process" holds the lock
    try:
        win = make_window()
        assert not win.open_project(demo_project_dir)
        assert win.project is None
        assert warnings and "in use" in warnings[0]
    finally:
        holder.close()
    assert win.open_project(demo_project_dir)        # free again: opens


def test_not_a_project_gives_message(make_window, tmp_path, warnings):
    win = make_window()
    assert not win.open_project(tmp_path / "nothing-here")
    assert warnings and "does not exist" in warnings[0]


def test_reopens_last_project_and_releases_lock_on_close(make_window, demo_project_dir):
    win = make_window()
    win.open_project(demo_project_dir)
    win.close()
    assert win.project is None
    with Project.open(demo_project_dir):             # lock released by close
        pass
    win2 = make_window()
    win2.start_up()
    assert win2.project is not None and win2.project.root == demo_project_dir.absolute()


def test_opening_a_project_that_moves_orphans_says_so(make_window, demo_project_dir,
                                                      dialogs):
    # a copy left by an import killed before its commit: no row points at it
    (demo_project_dir / "images" / "left_by_a_killed_import.png").write_bytes(b"not used")
    win = make_window()
    assert win.open_project(demo_project_dir)
    assert win.project.orphans_moved == ["images/left_by_a_killed_import.png"]
    assert [t for t, _ in dialogs] == ["Files moved aside"]
    text = dialogs[0][1]
    assert "images/left_by_a_killed_import.png" in text and "orphans" in text
    assert "moved 1 file" in win.statusBar().currentMessage()
    assert list((demo_project_dir / "orphans").glob("*/images/left_by_a_killed_import.png"))
    # the next open has nothing to move: no message
    win.set_project(None)
    assert win.open_project(demo_project_dir)
    assert win.project.orphans_moved == [] and len(dialogs) == 1


def test_first_start_generates_demo(make_window, tmp_path, monkeypatch):
    import defect_studio.app.shell.window as mw
    import defect_studio.demo

    monkeypatch.setattr(defect_studio.demo, "default_demo_dir",
                        lambda: tmp_path / "userdata" / "demo")
    monkeypatch.setattr(mw, "DEMO_COUNT", 6)
    win = make_window()
    win.start_up()
    assert win.project is not None
    assert win.project.counts()["images"] == 6
    assert (tmp_path / "userdata" / "demo" / "project.sqlite").is_file()


def test_f1_opens_help_from_shortcut_table(make_window, demo_project_dir, qtbot):
    from defect_studio.app.shell.shortcuts import SHORTCUTS

    win = make_window()
    win.open_project(demo_project_dir)
    win.label_page.canvas.setFocus()
    qtbot.keyClick(win.label_page.canvas, Qt.Key.Key_F1)
    dlg = getattr(win, "_help", None)
    assert dlg is not None and dlg.isVisible()
    text = dlg.text.toPlainText()
    for s in SHORTCUTS:
        assert s.text in text
    dlg.close()


def test_tooltips_carry_shortcuts(make_window):
    win = make_window()
    assert win.label_page.actions_by_id["tool_brush"].toolTip().endswith("(B)")
    assert "D" in win.label_page.actions_by_id["label_defective"].toolTip()


# ---------------------------------------------------------------------- browser
def _records(n: int, labels=("ok", "defective", "unlabeled")) -> list[ImageRecord]:
    return [ImageRecord(id=i + 1, path=f"images/img_{i:05d}.png", hash=f"{i:040x}", width=64,
                        height=64, channels=3, bit_depth=8, split="train", split_pinned=False,
                        label=labels[i % len(labels)], label_source="import",
                        has_mask=(i % 6 == 1), mask_rough=False, name=f"img_{i:05d}.png")
            for i in range(n)]


def test_browser_filters_and_sort(qtbot):
    from defect_studio.app.label.image_browser import ImageBrowser

    b = ImageBrowser()
    qtbot.addWidget(b)
    recs = _records(12)
    # ids 1..12 labels cycle ok/defective/unlabeled; predictions on the first six
    preds = {1: (0.9, True), 2: (0.8, True), 3: (0.1, False), 4: (0.2, False),
             5: (0.05, False), 6: (0.6, True)}
    b.model.set_images(recs, {}, preds)
    m = b.model
    assert m.rowCount() == 12
    m.set_filter("unlabeled")
    assert [m.record(i).label for i in m.image_ids()] == ["unlabeled"] * 4
    m.set_filter("ok")
    assert m.image_ids() == [1, 4, 7, 10]
    m.set_filter("defective")
    assert m.image_ids() == [2, 5, 8, 11]
    m.set_filter("masked")
    assert m.image_ids() == [2, 8]
    m.set_filter("pred_ng")
    assert m.image_ids() == [1, 2, 6]
    m.set_filter("disagree")      # 1: OK but NG; 5: defective but OK
    assert m.image_ids() == [1, 5]
    m.set_filter("all")
    m.set_sort("score")
    assert m.image_ids()[:6] == [1, 2, 6, 4, 3, 5]
    m.set_sort("name")
    assert m.image_ids() == list(range(1, 13))
    b.filter_box.setCurrentIndex(b.filter_box.findData("unlabeled"))
    assert m.filter_name == "unlabeled"
    assert "12 images" in b.counts_label.text() and "4 shown" in b.counts_label.text()
    with pytest.raises(ValueError):
        m.set_filter("nonsense")


def test_browser_model_setup_is_fast_for_2000_images(qtbot):
    from defect_studio.app.label.image_browser import ImageBrowser

    b = ImageBrowser()
    qtbot.addWidget(b)
    b.resize(400, 600)
    b.show()
    recs = _records(2000)
    t0 = time.perf_counter()
    b.model.set_images(recs, {}, {r.id: (r.id / 2000, r.id % 2 == 0) for r in recs})
    b.model.set_sort("score")
    b.model.set_filter("pred_ng")
    b.model.set_filter("all")
    QApplication.processEvents()
    elapsed = time.perf_counter() - t0
    assert b.model.rowCount() == 2000
    assert elapsed < 1.0, f"model set-up took {elapsed:.2f} s"


def test_browser_step_and_update_record(qtbot):
    from dataclasses import replace

    from defect_studio.app.label.image_browser import ImageBrowser

    b = ImageBrowser()
    qtbot.addWidget(b)
    recs = _records(6)
    b.model.set_images(recs, {}, {})
    b.select_image(1)
    assert b.step(+1, unlabeled_only=True) and b.current_id() == 3
    assert b.step(-1) and b.current_id() == 2
    b.update_record(replace(recs[2], label="ok"))
    assert "1 unlabeled" in b.counts_label.text() and b.model.counts()["unlabeled"] == 1
    b.select_image(3)
    assert b.step(+1, unlabeled_only=True) and b.current_id() == 6
    assert not b.step(+1)


# ---------------------------------------------------------------------- import
def _write_folder_dataset(root, n_ok=3, n_ng=2):
    rng = np.random.default_rng(0)
    for sub, n in (("ok", n_ok), ("defective", n_ng)):
        d = root / sub
        d.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(d / f"{sub}_{i}.png"), rng.integers(0, 255, (64, 64), np.uint8))
    (root / "ok" / "broken.png").write_bytes(b"not an image at all")


def test_import_dialog_imports_a_small_folder(make_window, demo_project_dir, tmp_path, qtbot):
    from defect_studio.app.shell.import_dialog import ImportDialog

    src = tmp_path / "src"
    _write_folder_dataset(src)
    win = make_window()
    win.open_project(demo_project_dir)
    before = win.project.counts()["images"]
    dlg = ImportDialog(win.project, win)
    qtbot.addWidget(dlg)
    dlg.set_source(src)
    assert "folders" in dlg.format_box.itemText(0)
    assert "6 image files" in dlg.preview.text()
    assert dlg.run_import()
    assert dlg.report.imported == 5
    assert dlg.table.rowCount() == len(dlg.report.skipped) >= 1
    assert any("broken.png" in dlg.table.item(r, 0).text() for r in range(dlg.table.rowCount()))
    dlg.close()
    win.label_page.refresh()
    assert win.label_page.browser.model.counts()["images"] == before + 5
    with Project.open(demo_project_dir, readonly=True) as p:
        assert p.counts()["images"] == before + 5


def test_import_dialog_missing_folder(demo_project_dir, qtbot):
    from defect_studio.app.shell.import_dialog import ImportDialog

    with Project.open(demo_project_dir) as p:
        dlg = ImportDialog(p)
        qtbot.addWidget(dlg)
        dlg.set_source(demo_project_dir / "no-such-folder")
        assert "does not exist" in dlg.preview.text()
        assert not dlg.import_button.isEnabled()
        dlg.close()


def test_export_dialog_writes_masks(demo_project_dir, tmp_path, qtbot, monkeypatch, warnings):
    from defect_studio.app.shell.project_dialogs import ExportLabelsDialog

    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: QMessageBox.StandardButton.Ok)
    with Project.open(demo_project_dir) as p:
        masked = p.counts()["masked"]
        dlg = ExportLabelsDialog(p)
        qtbot.addWidget(dlg)
        dlg.format_box.setCurrentText("masks")
        dlg.out_edit.setText(str(tmp_path / "export"))
        dlg._export()
        assert not warnings
        assert dlg.result_info is not None
        assert len(list((tmp_path / "export").rglob("*.png"))) >= masked


def test_active_run_change_refreshes_review_and_evaluate(make_window, demo_project_dir):
    win = make_window()
    win.open_project(demo_project_dir)
    called: list[str] = []
    for title in ("Review", "Evaluate"):
        page = win.pages[title]
        orig = page.refresh
        page.refresh = lambda t=title, f=orig: (called.append(t), f())
    win.pages["Train"].active_run_changed.emit("some-run")
    assert sorted(called) == ["Evaluate", "Review"]


def test_qt_calls_do_not_leak_references_to_none(qtbot):
    """PySide6 6.12.0 dropped a reference to None on every void call, which aborts
    CPython 3.11 after a few thousand calls (live plots hit that in minutes)."""
    import sys

    from PySide6.QtWidgets import QLabel

    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for _ in range(2000):
        label.setText("x")
        label.update()
    assert abs(sys.getrefcount(None) - before) < 100


def test_import_dialog_asks_when_an_ok_folder_holds_a_part_twice(tmp_path, qtbot):
    """OK/a.png beside OK/a.jpg is one part saved twice, or an image + mask: the dialog asks
    for the format; with "folders" the part is imported OK, never defective."""
    from defect_studio.app.shell.import_dialog import ImportDialog

    src = tmp_path / "src"
    for sub in ("OK", "NG"):
        (src / sub).mkdir(parents=True)
    photo = np.random.default_rng(0).integers(0, 255, (48, 48), np.uint8)
    cv2.imwrite(str(src / "OK" / "a.png"), photo)
    cv2.imwrite(str(src / "OK" / "a.jpg"), photo)
    cv2.imwrite(str(src / "NG" / "b.png"), 255 - photo)
    with Project.create(tmp_path / "proj") as p:
        dlg = ImportDialog(p)
        qtbot.addWidget(dlg)
        dlg.set_source(src)
        assert "Choose the format" in dlg.preview.text() and "OK/a.png" in dlg.preview.text()
        assert "ambiguous" in dlg.format_box.itemText(0)
        assert not dlg.import_button.isEnabled()
        assert not dlg.run_import()  # auto refuses too: nothing imported
        assert p.counts()["images"] == 0
        dlg.format_box.setCurrentIndex(dlg.format_box.findData("folders"))
        assert dlg.import_button.isEnabled() and "chosen" in dlg.preview.text()
        assert dlg.run_import()
        dlg.close()
    with Project.open(tmp_path / "proj", readonly=True) as p:
        labels = {p.image_path(r).name: r.label for r in p.images()}
        assert not any(r.has_mask for r in p.images())
    assert labels["b.png"] == "defective"
    assert {labels.get("a.png"), labels.get("a.jpg")} - {None} == {"ok"}
