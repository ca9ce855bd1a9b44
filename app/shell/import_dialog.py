"""The Import dialog: choose a folder and format, preview, import with progress, and
show what was skipped and why (defect_studio.io.importers does the work)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from defect_studio.errors import UserError
from defect_studio.io.importers import IMPORT_FORMATS


class ImportDialog(QDialog):
    """Import images (with labels and masks) into the open project.

    After a successful import `report` holds the ImportReport; the dialog stays
    open to show the skipped files until the user closes it.
    """

    def __init__(self, project, parent: QWidget | None = None, source: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Import images")
        self.resize(720, 520)
        self.project = project
        self.report = None
        self._detected: str | None = None

        self.source_edit = QLineEdit(source or QSettings().value("import/last_dir", "", str))
        self.source_edit.setPlaceholderText("Folder with images (and labels / masks)")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        src_row = QHBoxLayout()
        src_row.addWidget(self.source_edit, 1)
        src_row.addWidget(browse)

        self.format_box = QComboBox()
        for f in IMPORT_FORMATS:
            self.format_box.addItem(f, f)
        self.copy_radio = QRadioButton("Copy images into the project")
        self.link_radio = QRadioButton("Link (leave the images where they are)")
        self.copy_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.copy_radio)
        group.addButton(self.link_radio)
        mode = QVBoxLayout()
        mode.addWidget(self.copy_radio)
        mode.addWidget(self.link_radio)

        self.preview = QLabel("Choose a folder to see what will be imported.")
        self.preview.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Skipped file", "Reason"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setVisible(False)

        form = QFormLayout()
        form.addRow("Source", src_row)
        form.addRow("Format", self.format_box)
        form.addRow("Images", mode)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.import_button = self.buttons.addButton(
            "Import", QDialogButtonBox.ButtonRole.AcceptRole)
        self.import_button.clicked.connect(self.run_import)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.preview)
        lay.addWidget(self.progress)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.buttons)

        self.source_edit.editingFinished.connect(self.update_preview)
        self.format_box.currentIndexChanged.connect(lambda _i: self.update_preview())
        if self.source_edit.text():
            self.update_preview()

    def accept(self) -> None:  # the Import button must not close the dialog
        pass

    def _browse(self) -> None:
        from defect_studio.app.common.dialog_dirs import pick_folder

        d = pick_folder(self, "Import from folder", self.source_edit.text())
        if d:
            self.source_edit.setText(d)
            self.update_preview()

    def set_source(self, path: str | Path) -> None:
        """Set the source folder and refresh the preview."""
        self.source_edit.setText(str(path))
        self.update_preview()

    def update_preview(self) -> bool:
        """Detect the format and count the image files; False if the source is not usable."""
        src = self.source_edit.text().strip()
        self._detected = None
        if not src:
            self.preview.setText("Choose a folder to see what will be imported.")
            self.import_button.setEnabled(False)
            return False
        p = Path(src).expanduser()
        if not p.exists():
            self.preview.setText(f"<b>{p}</b> does not exist.")
            self.import_button.setEnabled(False)
            return False
        from defect_studio.io.importers import AmbiguousFormatError, detect_format
        from defect_studio.io.importers.base import walk_images

        try:
            self._detected = detect_format(p)
        except AmbiguousFormatError as exc:
            # ask: the user picks one of the readings; "auto" never guesses a label
            self.format_box.setItemText(0, "auto (ambiguous: choose a format)")
            fmt = self.format_box.currentData()
            if fmt == "auto":
                self.preview.setText(
                    "<b>Choose the format</b> ("
                    + " or ".join(f"<b>{c}</b>" for c in exc.choices)
                    + f" under Format): {exc}.")
                self.import_button.setEnabled(False)
                return False
            self.preview.setText(
                f"Format <b>{fmt}</b> (chosen; the folder can also be read as "
                + " or ".join(c for c in exc.choices if c != fmt) + f"): "
                f"{len(walk_images(p))} image files found in {p}.")
            self.import_button.setEnabled(True)
            return True
        except UserError as exc:
            self.preview.setText(f"Format not recognised: {exc}")
            self.format_box.setItemText(0, "auto")
            self.import_button.setEnabled(self.format_box.currentData() != "auto")
            return False
        self.format_box.setItemText(0, f"auto (detected: {self._detected})")
        n = len(walk_images(p)) if p.is_dir() else 0
        fmt = self.format_box.currentData()
        chosen = self._detected if fmt == "auto" else fmt
        where = "" if n else " (image files are named in the annotation file)"
        self.preview.setText(
            f"Format <b>{chosen}</b>: {n} image files found in {p}{where}. "
            f"The project has {self.project.counts()['images']} images now; "
            "images already in it are not added twice.")
        self.import_button.setEnabled(True)
        return True

    def run_import(self) -> bool:
        """Import now (progress bar), then show the report; True on success."""
        src = self.source_edit.text().strip()
        if not src:
            return False
        from defect_studio.io.importers import import_dataset

        self.import_button.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        QSettings().setValue("import/last_dir", src)

        def progress(*args) -> None:
            # Importers report (done, total); keep the window painting meanwhile.
            if len(args) >= 2 and args[1]:
                self.progress.setRange(0, int(args[1]))
                self.progress.setValue(int(args[0]))
            QApplication.processEvents()

        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            report = import_dataset(Path(src).expanduser(), self.project,
                                    fmt=self.format_box.currentData(),
                                    copy=self.copy_radio.isChecked(), progress=progress)
        except UserError as exc:
            self.preview.setText(f"<b>Import failed:</b> {exc}")
            self.progress.setVisible(False)
            self.import_button.setEnabled(True)
            return False
        finally:
            QApplication.restoreOverrideCursor()
        self.report = report
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self._show_report(report)
        return True

    def _show_report(self, report) -> None:
        labels = ", ".join(f"{v} {k}" for k, v in sorted(report.by_label.items())) or "none"
        self.preview.setText(
            f"Imported <b>{report.imported}</b> images ({labels}) as <b>{report.format}</b>; "
            f"{report.duplicates} duplicates, {len(report.skipped)} files skipped.")
        self.table.setRowCount(len(report.skipped))
        for i, (f, reason) in enumerate(report.skipped):
            self.table.setItem(i, 0, QTableWidgetItem(str(f)))
            self.table.setItem(i, 1, QTableWidgetItem(str(reason)))
        self.table.setVisible(bool(report.skipped))
        self.table.resizeColumnToContents(0)
