"""Crash logs: an unexpected error writes its traceback to a file in the user's data
folder (platformdirs: ~/.local/share/defect-studio/logs on Linux, %LOCALAPPDATA% on
Windows, ~/Library/Application Support on macOS; ~/.defect-studio/logs without
platformdirs) and the user sees one line naming it.
"""

from __future__ import annotations

import os
import platform
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

APP_NAME = "defect-studio"


def log_dir() -> Path:
    """Where crash logs go (DEFECT_STUDIO_LOG_DIR overrides the platform's data folder)."""
    override = os.environ.get("DEFECT_STUDIO_LOG_DIR")
    if override:
        return Path(override)
    try:
        from platformdirs import user_data_dir
    except ImportError:  # a trimmed install: the crash log must still be written
        return Path.home() / f".{APP_NAME}" / "logs"
    return Path(user_data_dir(APP_NAME, appauthor=False)) / "logs"


def write_crash_log(exc_type: type[BaseException], exc: BaseException,
                    tb: TracebackType | None, where: str = "") -> Path | None:
    """Write the traceback (and what ran) to a new log file; its path, or None when even
    that is impossible (then the traceback goes to stderr)."""
    stamp = datetime.now(timezone.utc)
    text = "".join([
        f"Defect Studio crash, {stamp.isoformat(timespec='seconds')}\n",
        f"where: {where or '-'}\n",
        f"command: {' '.join(sys.argv)}\n",
        f"python {platform.python_version()} on {platform.platform()}\n\n",
        *traceback.format_exception(exc_type, exc, tb),
    ])
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{stamp.strftime('%Y%m%d-%H%M%S-%f')}-{os.getpid()}.log"
        path.write_text(text, encoding="utf-8")
        return path
    except OSError:
        sys.stderr.write(text)
        return None


def crash_line(exc: BaseException, path: Path | None) -> str:
    """The one line a user sees for an unexpected error."""
    where = f"; the details are in {path}" if path else ""
    return (f"unexpected error: {type(exc).__name__}: {exc}{where}. Please send that file "
            "with a bug report.")
