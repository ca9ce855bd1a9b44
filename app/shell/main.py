"""Entry of the desktop app: `defect-studio` without a command, or `defect-studio gui`."""

from __future__ import annotations

import os
import sys
import threading


def run_gui(project_dir: str | None = None) -> int:
    """Build the QApplication and the main window, open a project, run the event loop."""
    # Qt's platform plugins need a display; say so plainly instead of aborting inside Qt.
    if (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY")
            and not os.environ.get("QT_QPA_PLATFORM")):
        print("defect-studio: no display found (DISPLAY is not set). Run the desktop app "
              "on a desktop, under xvfb-run, or use the headless commands "
              "(defect-studio --help).", file=sys.stderr)
        return 2
    install_excepthook()
    from defect_studio.app.shell.window import launch

    return launch(project_dir)


def install_excepthook() -> None:
    """Unexpected errors of the desktop app: traceback to a log file in the user's data
    folder (defect_studio.crashlog), one line on stderr and in a dialog; the app keeps running."""
    from defect_studio.crashlog import crash_line, write_crash_log

    def hook(exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        path = write_crash_log(exc_type, exc, tb, "desktop app")
        line = crash_line(exc, path)
        print(f"defect-studio: {line}", file=sys.stderr)
        try:
            from PySide6.QtCore import QThread
            from PySide6.QtWidgets import QApplication, QMessageBox

            app = QApplication.instance()
            if app is not None and QThread.currentThread() == app.thread():  # GUI thread only
                QMessageBox.critical(None, "Defect Studio: unexpected error", line)
        except Exception:  # noqa: BLE001 - the dialog is a courtesy; the log is written
            pass

    sys.excepthook = hook
    threading.excepthook = lambda a: hook(a.exc_type, a.exc_value, a.exc_traceback)


if __name__ == "__main__":
    sys.exit(run_gui(sys.argv[1] if len(sys.argv) > 1 else None))
