"""File dialogs that remember the last folder the user chose (QSettings), so the next
dialog opens there instead of the home folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QWidget

LAST_KEY = "dialogs/last_folder"


def last_folder(default: str = "") -> str:
    v = QSettings().value(LAST_KEY)
    if v and Path(str(v)).is_dir():
        return str(v)
    return default or str(Path.home())


def remember(path: str | Path) -> None:
    """Remember the folder of `path` (the path itself when it is a folder)."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if folder.is_dir():
        QSettings().setValue(LAST_KEY, str(folder))


def pick_folder(parent: QWidget | None, title: str, start: str = "") -> str:
    """An existing folder ("" when cancelled); starts in `start` or the last folder."""
    d = QFileDialog.getExistingDirectory(parent, title, start or last_folder())
    if d:
        remember(d)
    return d


def pick_new_folder(parent: QWidget | None, title: str, start: str = "") -> str:
    """A folder that may not exist yet: the user can type a new name ("" when cancelled)."""
    d, _ = QFileDialog.getSaveFileName(
        parent, title, start or last_folder(), "",
        options=QFileDialog.Option.ShowDirsOnly | QFileDialog.Option.DontConfirmOverwrite)
    if d:
        remember(Path(d).parent)
    return d


def pick_save_file(parent: QWidget | None, title: str, name: str, filters: str) -> str:
    """A file to write ("" when cancelled), proposed as `name` in the last folder."""
    f, _ = QFileDialog.getSaveFileName(parent, title, str(Path(last_folder()) / name), filters)
    if f:
        remember(Path(f).parent)
    return f
