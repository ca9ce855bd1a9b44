"""The "Export model…" dialog of the run history: a run as a package for the line.

Calls defect_studio.deploy.export.export_model in a worker thread (an export takes seconds),
so the window stays responsive; the package folder must lie outside the project.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

FORMATS = (("ONNX (ONNX Runtime)", "onnx"), ("OpenVINO IR (Intel CPUs)", "openvino"))


def default_out_dir(project_root: Path, run_id: str, fmt: str) -> Path:
    """A new folder beside the project (never inside it) named after project, run, format."""
    root = Path(project_root).resolve()
    base = root.parent / f"{root.name}-export-{run_id}-{fmt}"
    out, i = base, 2
    while out.exists():
        out = base.with_name(f"{base.name}-{i}")
        i += 1
    return out


class _ExportThread(QThread):
    succeeded = Signal(str)
    failed = Signal(str)
    step = Signal(str)

    def __init__(self, run_dir: Path, out: Path, fmt: str, project_root: Path) -> None:
        super().__init__()
        self.run_dir, self.out, self.fmt, self.project_root = run_dir, out, fmt, project_root

    def run(self) -> None:
        from defect_studio.errors import UserError

        try:
            from defect_studio.deploy.export import export_model

            path = export_model(self.run_dir, self.out, self.fmt, project_root=self.project_root,
                                progress=self.step.emit)
        except UserError as e:
            self.failed.emit(str(e))
        except Exception as e:  # noqa: BLE001 - shown to the user, never a silent crash
            self.failed.emit(f"the export failed: {type(e).__name__}: {e}")
        else:
            self.succeeded.emit(str(path))


class ExportModelDialog(QDialog):
    """Choose a format and a folder, export; ``exported`` carries the package folder."""

    exported = Signal(str)

    def __init__(self, project_root: str | Path, run_id: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Export model — run {run_id}")
        self.project_root = Path(project_root)
        self.run_id = run_id
        self.run_dir = self.project_root / "runs" / run_id
        self._thread: _ExportThread | None = None
        self.package_dir: Path | None = None

        self.format_box = QComboBox()
        for title, key in FORMATS:
            self.format_box.addItem(title, key)
        self.out_edit = QLineEdit(str(default_out_dir(self.project_root, run_id, "onnx")))
        self.format_box.currentIndexChanged.connect(self._format_changed)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.out_edit, 1)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Run", QLabel(run_id))
        form.addRow("Format", self.format_box)
        form.addRow("Package folder", row)
        self.status = QLabel("The package holds the network, the threshold and the "
                             "preprocessing; score with: defect-studio watch / predict --model")
        self.status.setWordWrap(True)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton("Export",
                                                    QDialogButtonBox.ButtonRole.ActionRole)
        self.export_button.clicked.connect(self.start_export)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.status)
        lay.addWidget(self.busy)
        lay.addWidget(self.buttons)
        self.resize(560, self.sizeHint().height())

    def fmt(self) -> str:
        return str(self.format_box.currentData())

    def _format_changed(self) -> None:
        current = Path(self.out_edit.text())
        if current.name.startswith(f"{self.project_root.resolve().name}-export-"):
            self.out_edit.setText(str(default_out_dir(self.project_root, self.run_id, self.fmt())))

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the package",
                                                  str(Path(self.out_edit.text()).parent))
        if folder:
            self.out_edit.setText(str(Path(folder) / f"{self.run_id}-{self.fmt()}"))

    def start_export(self) -> None:
        text = self.out_edit.text().strip()
        if not text:
            QMessageBox.warning(self, "Export model", "Choose a folder for the package.")
            return
        self.export_button.setEnabled(False)
        self.busy.show()
        self.status.setText("Exporting…")
        self._thread = _ExportThread(self.run_dir, Path(text), self.fmt(), self.project_root)
        self._thread.step.connect(lambda m: self.status.setText(m[:1].upper() + m[1:] + "…"))
        self._thread.succeeded.connect(self._done)
        self._thread.failed.connect(self._failed)
        self._thread.start()

    def _done(self, path: str) -> None:
        self.busy.hide()
        self.export_button.setEnabled(True)
        self.package_dir = Path(path)
        self.status.setText(f"Exported to {path}")
        self.exported.emit(path)

    def _failed(self, message: str) -> None:
        self.busy.hide()
        self.export_button.setEnabled(True)
        self.status.setText("Not exported.")
        QMessageBox.warning(self, "Cannot export the model", message)

    def is_exporting(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def done(self, result: int) -> None:  # closing waits for a running export to finish
        if self._thread is not None:
            self._thread.wait()
        super().done(result)
