"""The main window: owns the open project (write lock), hosts the four pages, menus,
toolbar and status bar, and remembers its state between starts."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QTabWidget,
    QTextBrowser,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from defect_studio.app.common.actions import action, warn_user
from defect_studio.app.common.icons import icon
from defect_studio.app.label.page import LabelPage
from defect_studio.app.shell import shortcuts as sc
from defect_studio.app.shell.project_dialogs import (
    ExportLabelsDialog,
    RecentProjects,
    choose_new_project_dir,
    choose_project_dir,
)
from defect_studio.errors import ProjectInUseError, UserError

log = logging.getLogger(__name__)

# (tab title, icon, "module:Class") of the pages written elsewhere; loaded lazily so a
# page that fails to import shows a placeholder instead of taking the app down.
OTHER_PAGES = (
    ("Train", "train", "defect_studio.app.train.page:TrainPage"),
    ("Evaluate", "evaluate", "defect_studio.app.evaluate.page:EvaluatePage"),
    ("Review", "review", "defect_studio.app.review.page:ReviewPage"),
)
DEMO_COUNT = 540  # defect_studio.demo.DEMO_DEFAULTS["count"]


def load_page(spec: str) -> tuple[QWidget, bool]:
    """Build a page from "module:Class"; a QLabel placeholder (and False) if it fails."""
    module_name, cls_name = spec.split(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
        return cls(), True
    except Exception as exc:  # noqa: BLE001 - any failure of another page must not stop the app
        log.warning("page %s not available: %s", spec, exc)
        label = QLabel(f"This page is not available in this build.\n({cls_name}: {exc})")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setWordWrap(True)
        return label, False


class ShortcutHelp(QDialog):
    """F1: all keyboard shortcuts, generated from defect_studio.app.shell.shortcuts.SHORTCUTS."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(520, 640)
        self.text = QTextBrowser()
        self.text.setHtml(sc.help_html())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text)
        lay.addWidget(buttons)


class MainWindow(QMainWindow):
    """The app's window. `project` is the open Project (None when none is open)."""

    def __init__(self) -> None:
        super().__init__()
        self.project = None
        self.recent = RecentProjects()
        self.setWindowTitle("Defect Studio")
        self.setWindowIcon(icon("app"))
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.label_page = LabelPage()
        self.tabs.addTab(self.label_page, icon("label"), "Label")
        self.pages: dict[str, QWidget] = {"Label": self.label_page}
        self.page_ok: dict[str, bool] = {"Label": True}
        for title, icon_name, spec in OTHER_PAGES:
            page, ok = load_page(spec)
            self.pages[title] = page
            self.page_ok[title] = ok
            self.tabs.addTab(page, icon(icon_name), title)
        self.setCentralWidget(self.tabs)
        self._connect_pages()
        self.tabs.currentChanged.connect(self._on_tab_changed)

        self.counts_label = QLabel()
        self.run_label = QLabel()
        self.statusBar().addPermanentWidget(self.counts_label)
        self.statusBar().addPermanentWidget(self.run_label)
        self.label_page.status_message.connect(lambda m: self.statusBar().showMessage(m, 5000))
        # what the status bar says (labels written, errors) goes into the app's log too
        self.statusBar().messageChanged.connect(lambda m: action(m) if m else None)
        self.label_page.labels_changed.connect(self.update_status)
        self.label_page.browser.splits_changed.connect(self.update_status)
        self._build_menus()
        # Light/dark switched while running: recolour what we paint ourselves.
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._on_color_scheme)
        self._restore_window()
        self._on_tab_changed(self.tabs.currentIndex())
        self.update_status()

    # ------------------------------------------------------------------ wiring
    def _connect_pages(self) -> None:
        train, review = self.pages.get("Train"), self.pages.get("Review")
        evaluate = self.pages.get("Evaluate")
        for page, signal, slot in (
            (evaluate, "threshold_saved", self._on_threshold_saved),
            (evaluate, "open_image_requested", self.show_image_in_label_page),
            (train, "run_finished", self._on_run_finished),
            (train, "active_run_changed", lambda _r: self._on_active_run_changed()),
            (review, "labels_changed", self._on_review_labels_changed),
            (review, "labels_changed", getattr(train, "labels_changed", None)),
            (self.label_page, "labels_changed", getattr(train, "labels_changed", None)),
            (review, "retrain_requested", self._on_retrain_requested),
            (review, "edit_mask_requested", self.show_image_in_label_page),
            (review, "propose_mask_requested", self.show_proposed_mask),
            (review, "prediction_ended", lambda _s: self._on_predictions_changed()),
        ):
            sig = getattr(page, signal, None)
            if sig is not None and hasattr(sig, "connect") and slot is not None:
                sig.connect(slot)

    def _on_threshold_saved(self, run_id: str, threshold: float) -> None:
        # the runs table shows thresholds: it must show the new one at once
        self._refresh_page("Train")
        self.update_status()
        # six digits, as the Evaluate page shows and saves it (app.evaluate.state)
        self.statusBar().showMessage(f"Run {run_id}: threshold {threshold:.6f} saved", 8000)

    def _on_run_finished(self, run_id: str) -> None:
        self.statusBar().showMessage(f"Training run {run_id} finished", 8000)
        self._refresh_page("Evaluate")
        self._refresh_page("Review")
        self._on_predictions_changed()

    def _on_active_run_changed(self) -> None:
        # Review and Evaluate show the active run: they must not keep the old one's results.
        self._refresh_page("Evaluate")
        self._refresh_page("Review")
        self._on_predictions_changed()

    def _on_predictions_changed(self) -> None:
        self.label_page.refresh()
        self.update_status()

    def _on_review_labels_changed(self) -> None:
        self.label_page.refresh()
        self.update_status()

    def _on_retrain_requested(self) -> None:
        train = self.pages.get("Train")
        self.tabs.setCurrentWidget(train)
        start = getattr(train, "start_training", None)
        running = getattr(train, "is_running", lambda: False)()
        if callable(start) and not running:
            start()

    def _refresh_page(self, title: str) -> None:
        refresh = getattr(self.pages.get(title), "refresh", None)
        if callable(refresh):
            refresh()

    def show_image_in_label_page(self, image_id: int) -> None:
        """Switch to the Label tab on this image (e.g. to paint its mask from Review)."""
        self.tabs.setCurrentWidget(self.label_page)
        b = self.label_page.browser
        if not b.select_image(image_id):
            b.filter_box.setCurrentIndex(0)  # "all": the image may be filtered out
            b.select_image(image_id)

    def show_proposed_mask(self, image_id: int, mask) -> None:
        """A draft mask from Review: open the image on the Label page with it, to correct and
        save."""
        self.show_image_in_label_page(image_id)
        self.label_page.proposal.start(image_id, mask)

    def _on_color_scheme(self, *_args) -> None:
        from defect_studio.app.common.plot_style import style_all_plots
        from defect_studio.app.shell.theme import colors

        self.label_page.canvas.setBackgroundBrush(colors().canvas_bg)
        style_all_plots(self)
        self.label_page.browser.view.viewport().update()

    def _on_tab_changed(self, index: int) -> None:
        self.label_page.set_active(self.tabs.widget(index) is self.label_page)
        if self.tabs.widget(index) is self.label_page and self.project is not None:
            self.label_page.canvas.setFocus()
        train = self.pages.get("Train")
        if self.tabs.widget(index) is train and callable(getattr(train, "labels_changed", None)):
            train.labels_changed()  # labels may have changed by an import or a restore

    # ------------------------------------------------------------------ menus
    def _act(self, action_id: str, slot, icon_name: str | None = None,
             text: str | None = None) -> QAction:
        a = QAction(text or sc.shortcut(action_id).text, self)
        a.setShortcuts(sc.key_sequences(action_id))
        a.setToolTip(sc.tooltip(action_id, text))
        if icon_name:
            a.setIcon(icon(icon_name))
        a.triggered.connect(slot)
        self.addAction(a)
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        self.act_new = self._act("new_project", self.new_project, "new", "New Project...")
        self.act_open = self._act("open_project", self.open_project_dialog, "open",
                                  "Open Project...")
        self.act_import = self._act("import", self.import_images, "import", "Import...")
        self.act_export = self._act("export", self.export_project, "export", "Export...")
        self.act_quit = self._act("quit", self.close, None, "Quit")
        self.act_help = self._act("help", self.show_help, "help", "Keyboard Shortcuts")
        self.act_demo = QAction("Open Demo Project", self)
        self.act_demo.triggered.connect(self.open_demo)

        m = mb.addMenu("&File")
        m.addAction(self.act_new)
        m.addAction(self.act_open)
        self.recent_menu = m.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        m.addAction(self.act_demo)
        m.addSeparator()
        m.addAction(self.act_import)
        m.addAction(self.act_export)
        m.addSeparator()
        m.addAction(self.act_quit)

        a = self.label_page.actions_by_id
        m = mb.addMenu("&Label")
        for key in ("label_ok", "label_defective", "label_clear", None,
                    "next_image", "prev_image"):
            m.addSeparator() if key is None else m.addAction(a[key])
        m.addSeparator()
        m.addAction(self._checkbox_action(self.label_page.auto_next))
        split_menu = m.addMenu("Move selected images to split")
        for split, text in (("train", "Train"), ("val", "Validation"), ("test", "Test")):
            split_menu.addAction(text, lambda s=split: self.label_page.browser.move_to_split(s))
        m = mb.addMenu("&Mask")
        for key in ("tool_brush", "tool_eraser", "tool_lasso", "tool_grabcut", "tool_pan", None,
                    "brush_smaller", "brush_larger", None, "undo", "redo", "clear_mask"):
            m.addSeparator() if key is None else m.addAction(a[key])
        m = mb.addMenu("&View")
        for key in ("fit", "zoom_in", "zoom_out", "actual_size", "toggle_mask"):
            m.addAction(a[key])
        m.addSeparator()
        self.page_actions = []
        for n, key in enumerate(("page_label", "page_train", "page_evaluate", "page_review")):
            a = self._act(key, lambda _c=False, i=n: self.tabs.setCurrentIndex(i))
            self.page_actions.append(a)
            m.addAction(a)
        step = self.tabs.count()
        m.addAction(self._act("page_next", lambda: self.tabs.setCurrentIndex(
            (self.tabs.currentIndex() + 1) % step)))
        m.addAction(self._act("page_prev", lambda: self.tabs.setCurrentIndex(
            (self.tabs.currentIndex() - 1) % step)))
        m.addSeparator()
        self.theme_menu = m.addMenu("&Theme")
        from PySide6.QtGui import QActionGroup

        from defect_studio.app.shell.theme import theme_choice

        group = QActionGroup(self)
        self.theme_actions = {}
        for key, text in (("system", "Follow the system"), ("light", "Light"), ("dark", "Dark")):
            a = QAction(text, self, checkable=True)
            a.setChecked(theme_choice() == key)
            a.triggered.connect(lambda _c=False, k=key: self.set_theme(k))
            group.addAction(a)
            self.theme_menu.addAction(a)
            self.theme_actions[key] = a
        m = mb.addMenu("&Help")
        guide = QAction("Getting started", self)
        guide.triggered.connect(self.show_guide)
        m.addAction(guide)
        m.addAction(self.act_help)
        logs = QAction("Open log folder", self)
        logs.triggered.connect(self._open_logs)
        m.addAction(logs)
        m.addSeparator()
        about = QAction("About Defect Studio", self)
        about.triggered.connect(self._about)
        m.addAction(about)

        tb = QToolBar("Main")
        tb.setObjectName("main_toolbar")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for act in (self.act_new, self.act_open, self.act_import, self.act_export):
            tb.addAction(act)
        tb.addSeparator()
        tb.addAction(self.act_help)
        self.addToolBar(tb)

    def _checkbox_action(self, box) -> QAction:
        a = QAction(box.text(), self)
        a.setCheckable(True)
        a.setChecked(box.isChecked())
        a.setToolTip(box.toolTip())
        a.toggled.connect(box.setChecked)
        box.toggled.connect(a.setChecked)
        return a

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        paths = self.recent.paths()
        if not paths:
            a = self.recent_menu.addAction("(none)")
            a.setEnabled(False)
        for p in paths:
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda _c=False, path=p: self.open_project(path))

    def _about(self) -> None:
        from defect_studio.app.shell.help_menu import app_version, log_dir

        QMessageBox.about(self, "Defect Studio",
                          f"<b>Defect Studio {app_version()}</b><p>Label product images, train "
                          "a surface-defect model with one click, and review parts with "
                          f"heatmaps.</p><p>Log folder: {log_dir()}</p>")

    def show_guide(self):
        """Help > Getting started: the label, train, review loop (non-modal)."""
        from defect_studio.app.shell.help_menu import GuideDialog

        dlg = getattr(self, "_guide", None)
        if dlg is None:
            dlg = self._guide = GuideDialog(self)
        dlg.show()
        dlg.raise_()
        return dlg

    def _open_logs(self) -> None:
        from defect_studio.app.shell.help_menu import open_log_folder

        d = open_log_folder()
        self.statusBar().showMessage(f"Log folder: {d}", 10000)

    def set_theme(self, choice: str) -> None:
        """Light, dark or the system's scheme (remembered for the next start)."""
        from defect_studio.app.shell.theme import apply_theme

        applied = apply_theme(QApplication.instance(), choice)
        self.theme_actions[applied].setChecked(True)
        self._on_color_scheme()

    def show_help(self) -> ShortcutHelp:
        """Show the keyboard-shortcut help (F1); returns the dialog (non-modal)."""
        dlg = getattr(self, "_help", None)
        if dlg is None:
            dlg = self._help = ShortcutHelp(self)
        dlg.show()
        dlg.raise_()
        return dlg

    # ------------------------------------------------------------------ project
    def open_project(self, path: str | Path) -> bool:
        """Open a project folder for writing; a clear message (no crash) if it cannot."""
        from defect_studio.project import Project

        path = Path(path).expanduser()
        if not self.may_switch_project(path):
            return False
        try:
            project = Project.open(path)
        except ProjectInUseError as exc:
            warn_user(
                self, "Project in use",
                f"{exc}\n\nClose the other Defect Studio window (or process) that has "
                "this project open, then try again.")
            return False
        except UserError as exc:
            warn_user(self, "Cannot open project", str(exc))
            if not path.is_dir():
                self.recent.remove(path)
            return False
        self.set_project(project)
        action(f"opened project {project.root}")
        return True

    def _busy(self) -> list[tuple[str, str]]:
        """The background work that leaving the project stops: [(page title, what)]."""
        busy = []
        for title, probe, what in (("Train", "is_running", "a model is training"),
                                   ("Evaluate", "sweep_running", "a mask sweep is running")):
            page = self.pages.get(title) if self.page_ok.get(title) else None
            if callable(getattr(page, probe, None)) and getattr(page, probe)():
                busy.append((title, what))
        return busy

    def may_switch_project(self, path: str | Path | None = None) -> bool:
        """Ask before leaving a project that is training or sweeping; True when the switch
        may go on (the work is then stopped; Resume continues it later)."""
        busy = self._busy()
        if not busy or self.project is None:
            return True
        if path is not None and Path(path).expanduser().absolute() == Path(self.project.root):
            return True
        what = " and ".join(w for _, w in busy)
        answer = QMessageBox.question(
            self, "Training in progress",
            f"On {Path(self.project.root).name}, {what}. Switching project stops it; you "
            "can resume it later (the Train page's runs list, the sweep's Resume).\n\n"
            "Stop and switch?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        for title, _ in busy:
            self.pages[title].shutdown(timeout_ms=15000)
        return True

    def set_project(self, project) -> None:
        """Show `project` (taking ownership: it is closed when replaced or on exit)."""
        old = self.project
        self._pages_set_project(None)
        if old is not None:
            old.close()
        self.project = project
        if project is not None:
            self.recent.add(project.root)
            self.setWindowTitle(f"{Path(project.root).name} - Defect Studio")
        else:
            self.setWindowTitle("Defect Studio")
        self._pages_set_project(project)
        for act in (self.act_import, self.act_export):
            act.setEnabled(project is not None)
        self._on_tab_changed(self.tabs.currentIndex())
        self.update_status()
        if project is not None and project.orphans_moved:
            self._tell_orphans(project)

    def _tell_orphans(self, project) -> None:
        """Opening moved files no image uses to orphans/ (a cut-short import): say so,
        never silently."""
        text = project.orphans_message
        self.statusBar().showMessage(text, 60000)
        QMessageBox.information(
            self, "Files moved aside",
            f"When {Path(project.root).name} was opened, Defect Studio {text}.\n\n"
            "They are copies left by an import that was cut short; import them again "
            "if you still need them.")

    def _pages_set_project(self, project) -> None:
        for title, page in self.pages.items():
            if not self.page_ok.get(title):
                continue
            try:
                page.set_project(project)
            except Exception as exc:  # noqa: BLE001 - one page's bug must not lose the project
                log.exception("%s page failed on set_project", title)
                self.statusBar().showMessage(f"{title} page: {exc}", 10000)

    def new_project(self) -> None:
        from defect_studio.project import Project

        if not self.may_switch_project():
            return
        path = choose_new_project_dir(self, str(Path(self.recent.last() or Path.home()).parent))
        if path is None:
            return
        try:
            project = Project.open(path) if (path / "project.sqlite").exists() else \
                Project.create(path, exist_ok=True)
        except UserError as exc:
            warn_user(self, "New project", str(exc))
            return
        self.set_project(project)
        if project.counts()["images"] == 0:
            self.import_images()

    def open_project_dialog(self) -> None:
        path = choose_project_dir(self, self.recent.last() or "")
        if path is not None:
            self.open_project(path)

    def open_demo(self) -> bool:
        """Open the demo project, generating it first (with progress) if needed."""
        from defect_studio.demo import DEMO_DEFAULTS, default_demo_dir, generate_demo_project

        root = default_demo_dir()
        if not self.may_switch_project(root):
            return False
        if (root / "project.sqlite").exists():
            return self.open_project(root)
        dlg = QProgressDialog("Generating the demo project...", "", 0, DEMO_COUNT, self)
        dlg.setWindowTitle("Defect Studio")
        dlg.setCancelButton(None)
        dlg.setMinimumDuration(0)
        dlg.setWindowModality(Qt.WindowModality.WindowModal)
        dlg.show()

        def progress(done: int, total: int) -> None:
            dlg.setMaximum(total)
            dlg.setValue(done)
            QApplication.processEvents()

        try:
            project = generate_demo_project(root, progress=progress,
                                            **{**DEMO_DEFAULTS, "count": DEMO_COUNT})
        except UserError as exc:
            dlg.close()
            warn_user(self, "Demo project", str(exc))
            return False
        dlg.close()
        self.set_project(project)
        return True

    def start_up(self, project_dir: str | None = None) -> None:
        """Open the given project, else the last one, else the demo project."""
        if project_dir:
            self.open_project(project_dir)
            return
        last = self.recent.last()
        if last and Path(last).is_dir() and self.open_project(last):
            return
        self.open_demo()

    def import_images(self) -> None:
        from defect_studio.app.shell.import_dialog import ImportDialog

        if self.project is None:
            return
        dlg = ImportDialog(self.project, self)
        dlg.exec()
        if dlg.report is not None:
            self.label_page.refresh()
            for title in ("Train", "Evaluate", "Review"):
                self._refresh_page(title)
            self.update_status()

    def export_project(self) -> None:
        if self.project is not None:
            ExportLabelsDialog(self.project, self).exec()

    # ------------------------------------------------------------------ status
    def update_status(self) -> None:
        """Counts and active run in the status bar."""
        if self.project is None:
            self.counts_label.setText("No project")
            self.run_label.setText("")
            return
        c = self.label_page.browser.model.counts()
        self.counts_label.setText(
            f"{c['images']} images | {c['ok']} OK | {c['defective']} NG | "
            f"{c['unlabeled']} unlabeled | {c['masked']} masked | "
            f"train {c['train']} / val {c['val']} / test {c['test']}"
            + (f" / no split {c['no_split']}" if c["no_split"] else ""))
        try:
            run = self.project.active_run()
        except UserError:
            run = None
        self.run_label.setText(f"  Active run: {run or 'none'}")

    # ------------------------------------------------------------------ state
    def _restore_window(self) -> None:
        s = QSettings()
        geo = s.value("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1280, 800)
        state = s.value("window/state")
        if state is not None:
            self.restoreState(state)
        self.tabs.setCurrentIndex(s.value("window/tab", 0, type=int))

    def closeEvent(self, event: QCloseEvent) -> None:
        busy = self._busy()
        if busy:
            what = " and ".join(w for _, w in busy)
            answer = QMessageBox.question(self, "Quit", f"{what[0].upper()}{what[1:]}. "
                                          "Stop and quit? (Resume continues later.)")
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        s = QSettings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/tab", self.tabs.currentIndex())
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop background work, save what is pending and release the project lock."""
        self.label_page.shutdown()
        for title, page in self.pages.items():
            if title != "Label" and self.page_ok.get(title):
                stop = getattr(page, "shutdown", None)
                if callable(stop):
                    try:
                        stop()
                    except Exception:  # noqa: BLE001 - closing must go on
                        log.exception("%s page failed on shutdown", title)
        self._pages_set_project(None)
        if self.project is not None:
            self.project.close()
            self.project = None


def create_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication with our organisation name (QSettings) and theme."""
    from defect_studio.app.shell.theme import apply_theme

    app = QApplication.instance() or QApplication(argv or ["defect-studio"])
    QApplication.setOrganizationName("DefectStudio")
    QApplication.setApplicationName("Defect Studio")
    from defect_studio.app.shell.help_menu import app_version

    QApplication.setApplicationVersion(app_version())
    apply_theme(app)
    return app


def launch(project_dir: str | None = None) -> int:
    """Start the GUI on a project (or the last / demo one) and run the event loop."""
    app = create_app()
    from defect_studio.app.shell.help_menu import start_file_log

    start_file_log()
    win = MainWindow()
    win.show()
    QTimer.singleShot(0, lambda: win.start_up(project_dir))
    return app.exec()
