"""The review queue: predicted parts sorted worst-first, as a Qt table model."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from defect_studio.inference.overlay import NG_COLOR, OK_COLOR


@dataclass
class ReviewItem:
    """One scored part. image_id is None for a file outside the project (until labelled)."""

    path: str  # absolute path of the image file
    name: str
    image_id: int | None = None
    score: float = float("nan")
    is_ng: bool = False
    label: str = "unlabeled"
    label_source: str = ""
    heatmap: np.ndarray | None = None  # uint8, small (see defect_studio.app.common.jobs.shrink_heatmap)
    image_shape: tuple[int, int] | None = None
    error: str | None = None

    @property
    def decision(self) -> str:
        if self.error:
            return "error"
        return "NG" if self.is_ng else "OK"

    def sort_key(self) -> tuple:
        """Worst first: NG before OK, then by score descending; errors last."""
        bad = self.error is not None or not math.isfinite(self.score)
        return (bad, not self.is_ng, -(self.score if not bad else 0.0), self.name)


COLUMNS = ("Image", "Score", "Decision", "Label")


class ReviewQueueModel(QAbstractTableModel):
    """Rows of ReviewItem, always kept in worst-first order."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._items: list[ReviewItem] = []
        self._keys: list[tuple] = []  # sort keys of _items, for bisect

    # -- content ---------------------------------------------------------------------------
    def items(self) -> list[ReviewItem]:
        return list(self._items)

    def item(self, row: int) -> ReviewItem:
        return self._items[row]

    def set_items(self, items: list[ReviewItem]) -> None:
        self.beginResetModel()
        self._items = sorted(items, key=ReviewItem.sort_key)
        self._keys = [it.sort_key() for it in self._items]
        self.endResetModel()

    def add_items(self, new: list[ReviewItem]) -> None:
        """Merge results (replacing the same path) and keep the order.

        Rows are inserted one by one at their sorted place instead of resetting the
        model, so the selection (the part the user is looking at) survives a batch
        of results arriving while prediction runs.
        """
        for it in new:
            old = self.row_of_path(it.path)
            if old >= 0:
                self.beginRemoveRows(QModelIndex(), old, old)
                del self._items[old]
                del self._keys[old]
                self.endRemoveRows()
            key = it.sort_key()
            row = bisect.bisect_left(self._keys, key)
            self.beginInsertRows(QModelIndex(), row, row)
            self._items.insert(row, it)
            self._keys.insert(row, key)
            self.endInsertRows()

    def clear(self) -> None:
        self.set_items([])

    def row_of(self, item: ReviewItem) -> int:
        for i, it in enumerate(self._items):
            if it is item:
                return i
        return -1

    def row_of_path(self, path: str) -> int:
        for i, it in enumerate(self._items):
            if it.path == path:
                return i
        return -1

    def item_changed(self, row: int) -> None:
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    # -- Qt model API ----------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802,B008
        return 0 if parent.isValid() else len(self._items)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802,B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        it = self._items[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return it.name
            if col == 1:
                return "" if it.error else f"{it.score:.3f}"
            if col == 2:
                return it.decision
            if col == 3:
                src = f" ({it.label_source})" if it.label_source and it.label != "unlabeled" else ""
                return it.label + src
        if role == Qt.ItemDataRole.ForegroundRole and col == 2 and not it.error:
            return QBrush(QColor(*(NG_COLOR if it.is_ng else OK_COLOR)))
        if role == Qt.ItemDataRole.ToolTipRole:
            return it.error or it.path
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 1:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None
