"""What the user did and what failed, in the app's log (Help > Open log folder): the log
file otherwise held warnings of the code only, so a report of "the app lost my labels"
could not be followed back (issue 16). Qt-free; the lines go to the "defect_studio.app.actions"
logger, which the file log of defect_studio.app.shell.help_menu records at INFO."""

from __future__ import annotations

import logging

log = logging.getLogger("defect_studio.app.actions")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:500]


def action(text: object) -> None:
    """A user action and what it wrote ("label img_001.png: defective")."""
    log.info("%s", _one_line(text))


def failure(where: str, text: object) -> None:
    """A failure shown to the user (a message box or the status line)."""
    log.warning("failed: %s: %s", where, _one_line(text))


def warn_user(parent, title: str, text: str, *args, critical: bool = False):
    """QMessageBox.warning (or .critical) that also puts the failure in the log."""
    from PySide6.QtWidgets import QMessageBox

    failure(title, text)
    show = QMessageBox.critical if critical else QMessageBox.warning
    return show(parent, title, text, *args)


def critical_user(parent, title: str, text: str, *args):
    """QMessageBox.critical that also puts the failure in the log."""
    return warn_user(parent, title, text, *args, critical=True)
