"""The Train page's "Run on" row: this computer, or a Ray cluster at an address, with a
connection test that shows the cluster's nodes, GPUs and free memory.

The test runs `defect-studio cluster-info ADDRESS --json` in a child process (QProcess):
Ray never loads into the GUI process and a slow cluster never blocks the window.
"""

from __future__ import annotations

import json
import sys

from PySide6.QtCore import QProcess, QSettings, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

HERE, CLUSTER = "here", "cluster"
SETTINGS_ADDRESS = "train/cluster_address"


class RunOnBox(QWidget):
    """Where a new run trains; ``address()`` is None for this computer."""

    tested = Signal(bool, str)  # ok, the text shown

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.where = QComboBox()
        self.where.addItem("this computer", HERE)
        self.where.addItem("cluster at ...", CLUSTER)
        self.address_edit = QLineEdit(str(QSettings().value(SETTINGS_ADDRESS, "") or ""))
        self.address_edit.setPlaceholderText("HOST:PORT, e.g. 10.0.0.5:6379")
        self.address_edit.setToolTip("The Ray head's address (`ray start --head` on the server; "
                                     "ray://HOST:10001 for Ray Client). See docs/cluster.md")
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        row = QHBoxLayout()  # the address gets its own line: the form column is narrow
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.address_edit, 1)
        row.addWidget(self.test_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.where)
        lay.addLayout(row)
        lay.addWidget(self.result)
        self.where.currentIndexChanged.connect(self._update)
        self._proc: QProcess | None = None
        self._update()

    def _update(self, *_args) -> None:
        on_cluster = self.where.currentData() == CLUSTER
        self.address_edit.setVisible(on_cluster)
        self.test_button.setVisible(on_cluster)
        self.result.setVisible(on_cluster and bool(self.result.text()))

    def set_cluster(self, address: str | None) -> None:
        """Choose "cluster at ``address``" (None: this computer)."""
        if address:
            self.address_edit.setText(address)
        self.where.setCurrentIndex(self.where.findData(CLUSTER if address else HERE))

    def on_cluster(self) -> bool:
        """True when "cluster at ..." is chosen (whatever the address)."""
        return self.where.currentData() == CLUSTER

    def address(self) -> str | None:
        """The cluster's address when "cluster at" is chosen (ClusterError when it is not
        a usable address), None for this computer."""
        if self.where.currentData() != CLUSTER:
            return None
        from defect_studio.cluster.address import parse_address

        text = self.address_edit.text().strip()
        parse_address(text)
        QSettings().setValue(SETTINGS_ADDRESS, text)
        return text

    @Slot()
    def test_connection(self) -> None:
        """Ask the cluster for its nodes, GPUs and memory (in a child process)."""
        from defect_studio.errors import UserError

        try:
            address = self.address()
        except UserError as e:
            self._show(False, str(e))
            return
        if address is None or (self._proc is not None and
                               self._proc.state() != QProcess.ProcessState.NotRunning):
            return
        self._show(None, f"connecting to {address}...")
        proc = QProcess(self)
        proc.finished.connect(lambda *_: self._tested(proc))
        self._proc = proc
        proc.start(sys.executable, ["-m", "defect_studio", "cluster-info", address, "--json"])

    def _tested(self, proc: QProcess) -> None:
        out = bytes(proc.readAllStandardOutput()).decode("utf-8", "replace").strip()
        err = bytes(proc.readAllStandardError()).decode("utf-8", "replace").strip()
        if proc.exitCode() == 0 and out:
            try:
                info = json.loads(out.splitlines()[-1])
                from defect_studio.cluster.cli import describe

                self._show(True, describe(info))
                return
            except (ValueError, KeyError, TypeError):
                pass
        line = err.splitlines()[-1] if err else "the connection test failed"
        self._show(False, line.removeprefix("error: "))

    def _show(self, ok: bool | None, text: str) -> None:
        color = {True: "green", False: "#c0392b", None: "gray"}[ok]
        self.result.setStyleSheet(f"color: {color}")
        self.result.setText(text)
        self._update()
        if ok is not None:
            self.tested.emit(ok, text)
