"""Help menu pieces: version, the short guide of the labelling loop, the log folder."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

LOG_FILE = "defect-studio.log"

GUIDE_HTML = """
<h2>The loop: label, train, review, retrain</h2>
<ol>
<li><b>Label</b> (Ctrl+1): press <b>O</b> for a good part, <b>D</b> for a defective one.
Paint a few defect masks with the brush (<b>B</b>); masks make the model far better.
Ctrl+Z undoes a mask edit or a label. Right-click thumbnails to move them to another split.</li>
<li><b>Train</b> (Ctrl+2): pick a preset and press <b>Train</b>. Training runs in the
background; the curves fill as it goes. An interrupted run can be resumed from the runs list.</li>
<li><b>Evaluate</b> (Ctrl+3): check AP and the confusion matrix; click a cell to see its
images. Choose a threshold by best F1 or by the escape rate you can accept, then
<b>Save threshold</b>. <b>Export report&hellip;</b> writes an HTML/PDF \
for the release decision.</li>
<li><b>Review</b> (Ctrl+4): score new parts, walk the rejected ones worst first, press
<b>A</b> to accept the model's decision or <b>O</b>/<b>D</b> to correct it.</li>
<li><b>Retrain</b> with your corrections and compare the new run with the old one
(Train page: select two runs, <b>Compare&hellip;</b>).</li>
</ol>
<p>F1 lists every keyboard shortcut.</p>
"""


def app_version() -> str:
    """The version of defect-studio (defect_studio.__version__, its one place)."""
    from defect_studio import __version__

    return __version__


def log_dir() -> Path:
    """The folder of the app's log file (created if missing)."""
    import platformdirs

    d = Path(platformdirs.user_log_dir("defect-studio", appauthor=False))
    d.mkdir(parents=True, exist_ok=True)
    return d


def start_file_log() -> Path | None:
    """Log warnings and errors of the app to a rotating file in log_dir() (once)."""
    try:
        path = log_dir() / LOG_FILE
    except OSError:
        return None
    root = logging.getLogger()
    for h in root.handlers:
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path:
            return path
    try:
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=3,
                                                       encoding="utf-8")
    except OSError:
        return None
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return path


def open_log_folder() -> Path:
    """Show the log folder in the file manager; returns it."""
    d = log_dir()
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(d)))
    return d


class GuideDialog(QDialog):
    """Help > Getting started: the loop in five steps."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Getting started")
        self.resize(560, 480)
        self.text = QTextBrowser()
        self.text.setHtml(GUIDE_HTML)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text)
        lay.addWidget(buttons)
