"""A word-wrapped QLabel that asks for the height of its wrapped text.

Qt computes a layout's minimum size from its labels' minimumSizeHint, which for a
word-wrapped label is one short line: in a scroll area (the Train page's form at
1280x800) the form was then squeezed to the viewport and long wrapped lines (the size
reason, the time estimate with its advice) overlapped their neighbours instead of
scrolling. This label's minimum height is its text's height at its current width.
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QWidget


class WrappedLabel(QLabel):
    """QLabel with word wrap whose minimum height fits all of its text at its width."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        if not self.text():
            return hint
        return QSize(hint.width(), max(hint.height(), self.heightForWidth(max(1, self.width()))))

    def setText(self, text: str) -> None:
        super().setText(text)
        self.updateGeometry()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self.updateGeometry()  # another width wraps into another height
