"""The review queue as a Qt table model (its order and content: ReviewQueue, Qt-free)."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from defect_studio.app.review.state import ReviewItem, ReviewQueue
from defect_studio.inference.overlay import NG_COLOR, OK_COLOR

COLUMNS = ("Image", "Score", "Decision", "Label")


class ReviewQueueModel(QAbstractTableModel):
    """Shows a ReviewQueue (always in worst-first order) as rows."""

    def __init__(self, parent=None, queue: ReviewQueue | None = None) -> None:
        super().__init__(parent)
        self.queue = queue if queue is not None else ReviewQueue()

    # -- content ---------------------------------------------------------------------------
    def items(self) -> list[ReviewItem]:
        return self.queue.items()

    def item(self, row: int) -> ReviewItem:
        return self.queue.item(row)

    def set_items(self, items: list[ReviewItem]) -> None:
        self.beginResetModel()
        self.queue.set_items(items)
        self.endResetModel()

    def add_items(self, new: list[ReviewItem]) -> None:
        """Merge results (replacing the same path) and keep the order.

        Rows are inserted one by one at their sorted place instead of resetting the
        model, so the selection (the part the user is looking at) survives a batch
        of results arriving while prediction runs.
        """
        for it in new:
            old = self.queue.row_of_path(it.path)
            if old >= 0:
                self.beginRemoveRows(QModelIndex(), old, old)
                self.queue.remove(old)
                self.endRemoveRows()
            row = self.queue.insertion_row(it)
            self.beginInsertRows(QModelIndex(), row, row)
            self.queue.insert(row, it)
            self.endInsertRows()

    def clear(self) -> None:
        self.set_items([])

    def row_of(self, item: ReviewItem) -> int:
        return self.queue.row_of(item)

    def row_of_path(self, path: str) -> int:
        return self.queue.row_of_path(path)

    def item_changed(self, row: int) -> None:
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    # -- Qt model API ----------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802,B008
        return 0 if parent.isValid() else len(self.queue)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802,B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        it = self.queue.item(index.row())
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
