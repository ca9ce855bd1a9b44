"""Choosing projects: new / open folder pickers, the recent-projects list, export."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

from defect_studio.app.common.dialog_dirs import pick_folder, pick_new_folder
from defect_studio.errors import UserError

RECENT_KEY = "projects/recent"
LAST_KEY = "projects/last"
MAX_RECENT = 10
EXPORT_FORMATS = ("masks", "coco", "yolo", "voc")  # as `defect-studio export --format`


class RecentProjects:
    """The recent-projects list in QSettings (newest first, existing folders only)."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self.settings = settings or QSettings()

    def paths(self) -> list[str]:
        value = self.settings.value(RECENT_KEY, [])
        if isinstance(value, str):  # QSettings returns a bare string for one-item lists
            value = [value]
        return [p for p in (value or []) if Path(p).is_dir()]

    def add(self, path: str | Path) -> None:
        p = str(Path(path).absolute())
        items = [p] + [q for q in self.paths() if q != p]
        self.settings.setValue(RECENT_KEY, items[:MAX_RECENT])
        self.settings.setValue(LAST_KEY, p)

    def remove(self, path: str | Path) -> None:
        p = str(Path(path).absolute())
        self.settings.setValue(RECENT_KEY, [q for q in self.paths() if q != p])
        if self.last() == p:
            self.settings.remove(LAST_KEY)

    def last(self) -> str | None:
        v = self.settings.value(LAST_KEY)
        return str(v) if v else None


def choose_project_dir(parent: QWidget | None, start: str = "") -> Path | None:
    """Ask for an existing project folder."""
    d = pick_folder(parent, "Open project folder", start)
    return Path(d) if d else None


def choose_new_project_dir(parent: QWidget | None, start: str = "") -> Path | None:
    """Ask for a new folder (a name that does not exist yet is created) or an empty one;
    warns about non-empty folders."""
    d = pick_new_folder(parent, "New project: choose or create an empty folder", start)
    if not d:
        return None
    p = Path(d)
    if p.exists() and not p.is_dir():
        QMessageBox.warning(parent, "New project", f"{p} is a file; choose a folder name.")
        return None
    if not p.exists():
        return p  # a new name: Project.create makes the folder
    if (p / "project.sqlite").exists():
        QMessageBox.information(parent, "New project",
                                f"{p} is already a project; it will be opened.")
    elif any(p.iterdir()):
        answer = QMessageBox.question(
            parent, "New project",
            f"{p} is not empty. Create the project in a new sub-folder 'defect-project'?")
        if answer != QMessageBox.StandardButton.Yes:
            return None
        p = p / "defect-project"
    return p


class ExportLabelsDialog(QDialog):
    """Export the project's labels and masks to another tool's format."""

    def __init__(self, project, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export project")
        self.project = project
        self.result_info: dict | None = None
        self.format_box = QComboBox()
        self.format_box.addItems(EXPORT_FORMATS)
        self.out_edit = QLineEdit(str(Path(project.root).parent / f"{project.root.name}-export"))
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.out_edit, 1)
        row.addWidget(browse)
        form = QFormLayout(self)
        form.addRow("Format", self.format_box)
        form.addRow("Output folder", row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self._export)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        d = pick_folder(self, "Export to folder", self.out_edit.text())
        if d:
            self.out_edit.setText(d)

    def _export(self) -> None:
        out = self.out_edit.text().strip()
        if not out:
            QMessageBox.warning(self, "Export", "Choose an output folder.")
            return
        try:
            from defect_studio.io.exporters import export_project
        except ImportError:
            QMessageBox.warning(self, "Export", "Export is not available in this build.")
            return
        try:
            self.result_info = export_project(self.project, self.format_box.currentText(), out)
        except UserError as exc:
            QMessageBox.warning(self, "Export failed", str(exc))
            return
        QMessageBox.information(self, "Export", f"Exported to {out}.")
        self.accept()
