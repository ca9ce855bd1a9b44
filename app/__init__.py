"""The Defect Studio desktop app (PySide6). core/ holds everything that is not GUI."""

from __future__ import annotations

import ctypes
import sys

# PySide6 6.12 releases a reference to None on every call of a method that returns
# nothing (QPainter.setPen, QWidget.update, ...) without having taken one. From
# CPython 3.12 None is immortal and this is harmless; on 3.11 None's count runs down
# and the process aborts with "none_dealloc" after minutes of live plotting. Giving
# None a huge count makes it as good as immortal, as on 3.12.
_NONE_RESERVE = 1 << 40


def keep_none_alive() -> None:
    """Top up None's reference count on CPython < 3.12 (see the note above)."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return
    count = ctypes.c_ssize_t.from_address(id(None))
    if count.value < _NONE_RESERVE // 2:
        count.value += _NONE_RESERVE


keep_none_alive()
