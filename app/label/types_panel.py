"""The defect types panel of the Label page: the project's types with their colour,
hotkey and counts (boxes / images), a field to add a type, and the type filter of
the image browser ("only images with a box of the selected type")."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from defect_studio.units import count_of

NameRole = Qt.ItemDataRole.UserRole + 1


def _swatch(color: str) -> QIcon:
    pm = QPixmap(12, 12)
    pm.fill(QColor(color))
    return QIcon(pm)


class TypesPanel(QWidget):
    """Signals: current_type_changed(str) when a type is picked (the type of new boxes);
    filter_changed(object) with a type name or None (all images); add_requested(str)."""

    current_type_changed = Signal(str)
    filter_changed = Signal(object)
    add_requested = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel("<b>Defect types</b>")
        self.list = QListWidget()
        self.list.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.list.setToolTip("The type of new boxes; its hotkey changes the selected box")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("New type, e.g. scratch")
        self.name_edit.setMaxLength(64)
        self.add_button = QPushButton("Add")
        self.filter_check = QCheckBox("Only images with this type")
        self.filter_check.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        row = QHBoxLayout()
        row.addWidget(self.name_edit, 1)
        row.addWidget(self.add_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.list, 1)
        lay.addLayout(row)
        lay.addWidget(self.filter_check)
        self.add_button.clicked.connect(self._add)
        self.name_edit.returnPressed.connect(self._add)
        self.list.currentItemChanged.connect(self._on_current)
        self.filter_check.toggled.connect(lambda _on: self._emit_filter())

    def set_types(self, types: list, counts: dict[str, dict[str, int]]) -> None:
        """Show the types (DefectType) with their counts, keeping the current one."""
        keep = self.current_type()
        self.list.blockSignals(True)
        self.list.clear()
        for t in types:
            n = counts.get(t.name, {"boxes": 0, "images": 0})
            key = f"  [{t.hotkey}]" if t.hotkey else ""
            item = QListWidgetItem(_swatch(t.color),
                                   f"{t.name}  {count_of(n['boxes'], 'box')} / "
                                   f"{count_of(n['images'], 'image')}{key}")
            item.setData(NameRole, t.name)
            self.list.addItem(item)
            if t.name == keep:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        self.list.blockSignals(False)
        current = self.current_type()
        if current is not None and current != keep:
            self.current_type_changed.emit(current)

    def current_type(self) -> str | None:
        item = self.list.currentItem()
        return None if item is None else item.data(NameRole)

    def select_type(self, name: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(NameRole) == name:
                self.list.setCurrentRow(i)
                return

    def _on_current(self, item, _prev) -> None:
        if item is not None:
            self.current_type_changed.emit(item.data(NameRole))
        if self.filter_check.isChecked():
            self._emit_filter()

    def _emit_filter(self) -> None:
        self.filter_changed.emit(self.current_type() if self.filter_check.isChecked() else None)

    def _add(self) -> None:
        name = self.name_edit.text().strip()
        if name:
            self.add_requested.emit(name)
            self.name_edit.clear()
