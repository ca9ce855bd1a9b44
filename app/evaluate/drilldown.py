"""The images behind one confusion-matrix cell (Evaluate page): name, score, label,
worst first; double-click (or Enter) opens one."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from defect_studio.app.evaluate.state import CELL_TITLES, CellRow, fmt_threshold

# (row, column) of each cell in the Evaluate page's 2x2 table
CELL_AT = {(0, 0): "tp", (0, 1): "fn", (1, 0): "fp", (1, 1): "tn"}


class CellImages(QWidget):
    """List of one cell's images. Signal open_image(image_id)."""

    open_image = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel("Click a cell of the table to list its images.")
        self.title.setWordWrap(True)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Image", "Score", "Label"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        h = self.table.horizontalHeader()
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.table.cellDoubleClicked.connect(lambda r, _c: self._open(r))
        self.table.setToolTip("Double-click an image to open it on the Label page")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.table, 1)
        self.cell: str | None = None
        self._ids: list[int | None] = []

    def clear(self) -> None:
        self.cell = None
        self._ids = []
        self.table.setRowCount(0)
        self.title.setText("Click a cell of the table to list its images.")

    def show_cell(self, cell: str, rows: list[CellRow], threshold: float) -> list[int | None]:
        """List the images of `cell` (EvaluateState.cell_rows) at `threshold`; their ids."""
        self.cell = cell
        self._ids = [r.image_id for r in rows]
        self.table.setRowCount(len(rows))
        for row, r in enumerate(rows):
            for col, text in enumerate((r.name, f"{r.score:.6f}", r.label)):
                item = QTableWidgetItem(text)
                if col == 0:
                    item.setToolTip(r.name)
                self.table.setItem(row, col, item)
        self.title.setText(f"<b>{CELL_TITLES[cell]}</b>: {len(rows)} image"
                           f"{'s' if len(rows) != 1 else ''} at threshold "
                           f"{fmt_threshold(threshold)}"
                           + (" (double-click to open)" if rows else ""))
        return list(self._ids)

    def image_ids(self) -> list[int | None]:
        return list(self._ids)

    def _open(self, row: int) -> None:
        if 0 <= row < len(self._ids) and self._ids[row] is not None:
            self.open_image.emit(int(self._ids[row]))
