"""Entry of the desktop app: `defect-studio` without a command, or `defect-studio gui`."""

from __future__ import annotations

import os
import sys


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
    from app.main_window import launch

    return launch(project_dir)


if __name__ == "__main__":
    sys.exit(run_gui(sys.argv[1] if len(sys.argv) > 1 else None))
